//! # zentalk-cli
//!
//! The library half of the `zentalk` command-line client. The commands themselves live in the
//! binary; what is here is shared by `zentalk demo` and the end-to-end tests:
//! [`testnet`], a local network of one DHT bootstrap node and N relays that publish their
//! signed descriptors in the DHT, run in this process or as `zentalk-relayd` child processes.
//!
//! ```no_run
//! use std::time::Duration;
//! use zentalk_cli::testnet::{Runner, Testnet, TestnetConfig};
//!
//! # async fn run() -> Result<(), zentalk_cli::testnet::TestnetError> {
//! let net = Testnet::start(&TestnetConfig {
//!     relays: 5,
//!     runner: Runner::InProcess,
//!     demo_observe: true,
//! })
//! .await?;
//! // A client's directory, built from the relays' signed descriptors found in the DHT.
//! let directory = net.wait_for_descriptors(Duration::from_secs(10)).await?;
//! assert_eq!(directory.relays().len(), 5);
//! net.stop().await;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![allow(
    clippy::disallowed_types,
    reason = "the harness of a binary creates OS random number generators for relay keys"
)]

pub mod testnet;
