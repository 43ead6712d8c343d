//! # zentalk-relay
//!
//! Layer 2 of ZenTalk: the relay node. Not built yet: this crate exports nothing until the
//! network issue lands.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
