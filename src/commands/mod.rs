//! What each command does, one file per command; `main.rs` only parses flags ([`crate::cli`])
//! and maps the result to an exit code.
//!
//! - [`serve`]: run the gateway;
//! - [`check`]: validate a configuration and print what it holds ([`connect`]: with
//!   `--connect`, reach the store and the upstreams);
//! - [`completions`], [`man`]: the shell completion scripts and the man page, generated from
//!   [`crate::cli`] so they never drift from the flags;
//! - [`providers`]: list the provider profiles;
//! - [`verify`], [`sign`]: check or make one request's signature offline;
//! - [`queue`]: the delivery queue and its dead letters, through a running gateway's admin API;
//! - [`deliveries`]: the deliveries a running gateway recorded, through its admin API
//!   ([`admin_client`] is their client);
//! - [`echo`]: a demo upstream for the quick start;
//! - [`health`]: a gateway's health, for a container's health check.

pub mod admin_client;
pub mod check;
pub mod completions;
pub mod connect;
pub mod deliveries;
pub mod echo;
pub mod health;
pub mod man;
pub mod providers;
pub mod queue;
pub mod serve;
pub mod sign;
pub mod verify;

use crate::cli::{Command, LogFormat};
use crate::verify::profile::{Profile, ProfileSet};
use anyhow::Context;
use http::Method;
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// A usage error: exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// The log format chosen at start (`--log-format`).
static LOG_FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// True when logs are JSON lines: then nothing else may be written to stderr.
pub fn json_logs() -> bool {
    matches!(LOG_FORMAT.get(), Some(LogFormat::Json))
}

/// Logs to stderr: JSON lines, or readable lines, coloured only on a terminal and only
/// when `NO_COLOR` is unset (<https://no-color.org>).
pub fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    let _ = LOG_FORMAT.set(format);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        // lapin logs a message RabbitMQ returns (unroutable) whole at WARN: body and headers,
        // the provider's signature among them. Kept out whatever RUST_LOG says; the delivery
        // line already names the refusal.
        .add_directive("lapin::returned_messages=off".parse().expect("a valid directive"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        // A failed write to stderr (closed pipe) is dropped; reporting it would `eprintln!`,
        // which panics on the same closed stderr.
        .log_internal_errors(false);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Pretty => builder.compact().init(),
    }
}

/// Runs one command.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config } => serve::run(&config),
        Command::Check { config, connect } => check::run(&config, connect),
        Command::Completions { shell } => completions::run(shell),
        Command::Man => man::run(),
        Command::Providers { json, providers_dir } => providers::run(json, providers_dir.as_deref()),
        Command::Verify(args) => verify::run(args),
        Command::Echo { listen } => echo::run(listen),
        Command::Health { admin, timeout } => health::run(&admin, timeout),
        Command::Queue { admin, route, command } => queue::run(&admin, route.as_deref(), command),
        Command::Deliveries { admin, command } => deliveries::run(&admin, command),
        Command::Sign(args) => sign::run(args),
    }
}

/// The profile `name`, built-in or from `dir` (for `verify` and `sign`).
fn lookup_profile(name: &str, dir: Option<&Path>) -> anyhow::Result<Arc<Profile>> {
    let mut set = ProfileSet::builtin();
    if let Some(d) = dir {
        set.extend_from_dir(d).map_err(|e| Usage(e.to_string()))?;
    }
    set.get(name)
        .cloned()
        .ok_or_else(|| Usage(format!("unknown provider '{name}' (known: {})", set.names().join(", "))).into())
}

fn parse_method(m: &str) -> anyhow::Result<Method> {
    Method::from_bytes(m.as_bytes()).map_err(|_| Usage(format!("--method: '{m}' is not a method")).into())
}

/// The body of `--body-file`, or stdin's.
fn read_body(path: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match path {
        Some(p) => std::fs::read(p).map_err(|e| Usage(format!("--body-file {}: {e}", p.display())).into()),
        None => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).context("reading the body from stdin")?;
            Ok(buf)
        }
    }
}
