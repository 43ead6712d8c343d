//! `zentalk`: the ZenTalk command-line client.
//!
//! `zentalk demo` runs what the workspace has built so far, in one process, and prints only
//! what actually happened.

#![allow(
    clippy::disallowed_types,
    reason = "a binary is the place that creates the OS random number generator"
)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;

/// The ZenTalk command-line client.
#[derive(Parser, Debug)]
#[command(name = "zentalk", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a local demonstration of the layers built so far, in one process.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo => demo::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zentalk: {e}");
            ExitCode::FAILURE
        }
    }
}
