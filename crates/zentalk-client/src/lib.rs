//! # zentalk-client
//!
//! Layer 2 of ZenTalk: the client SDK. Not built yet: this crate exports nothing until the
//! network issue lands.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
