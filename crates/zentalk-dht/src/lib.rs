//! # zentalk-dht
//!
//! Layer 1 of ZenTalk: Kademlia discovery with signed, key-bound records. Not built yet: this
//! crate exports nothing until its issue lands.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
