//! The `portcullis` binary: parse flags, set up logging, run the command.

#![deny(clippy::print_stdout, clippy::print_stderr)]

use clap::Parser;
use portcullis::cli::Cli;
use portcullis::commands::{self, Usage};
use std::process::ExitCode;

/// mimalloc: the request path allocates small, short-lived objects on two threads; glibc's
/// allocator spent about a tenth of the gateway's time on them in the profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    commands::init_tracing(cli.log_format);
    match commands::run(cli.command) {
        Ok(code) => code,
        // `portcullis providers | head -1`: the reader had what it wanted.
        Err(e) if portcullis::output::is_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            if commands::json_logs() {
                // stderr carries JSON lines only.
                tracing::error!(error = format!("{e:#}"), "portcullis stopped");
            } else {
                portcullis::errln!("error: {e:#}");
            }
            ExitCode::from(if e.is::<Usage>() { 2 } else { 1 })
        }
    }
}
