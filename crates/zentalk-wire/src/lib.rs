//! # zentalk-wire
//!
//! Layer 0 of ZenTalk: the 32-byte frame header, message types, protobuf bodies and a
//! streaming decoder that never panics. (Being built: see the foundation issue.)
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// Protobuf bodies generated from `proto/*.proto` (package `zentalk.wire.v1`).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/zentalk.wire.v1.rs"));
}
