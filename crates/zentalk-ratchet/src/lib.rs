//! # zentalk-ratchet
//!
//! Layer 1 of ZenTalk: X3DH, the Double Ratchet and sender-key group sessions. Not built yet:
//! this crate exports nothing until its issue lands.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
