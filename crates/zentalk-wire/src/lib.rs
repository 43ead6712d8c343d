//! # zentalk-wire
//!
//! Layer 0 of ZenTalk: the 32-byte frame header, message types, protobuf bodies and a
//! streaming decoder that never panics. (Being built: see the foundation issue.)
#![forbid(unsafe_code)]
#![warn(missing_docs)]
