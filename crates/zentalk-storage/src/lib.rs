//! # zentalk-storage
//!
//! Layer 2 of ZenTalk: the encrypted client store and the relay mailbox on sqlx. Not built
//! yet: this crate exports nothing until its issue lands.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
