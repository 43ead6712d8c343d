//! # zentalk-onion
//!
//! Layer 1 of ZenTalk: fixed-size onion packets of the Sphinx family. Not built yet: this
//! crate exports nothing until its issue lands.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
