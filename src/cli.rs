//! Command-line definitions: the flags of every command, parsed by clap; what each command
//! does is in [`crate::commands`].

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// The environment variable that supplies `--config` to every command that takes one.
pub const CONFIG_ENV: &str = "PORTCULLIS_CONFIG";

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "The gate that drops in front of forged and duplicate webhooks"
)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// The configuration file (or PORTCULLIS_CONFIG).
        #[arg(long, short, env = CONFIG_ENV)]
        config: PathBuf,
    },
    /// Validate a configuration (TLS certificate and key included) and print what it holds;
    /// exit 1 when it is invalid or, with --connect, when anything it needs is unreachable.
    Check {
        /// The configuration file (or PORTCULLIS_CONFIG).
        #[arg(long, short, env = CONFIG_ENV)]
        config: PathBuf,
        /// Also reach the store (open and ping it within store.timeout) and each upstream (a
        /// TCP connect, nothing sent), one line per check.
        #[arg(long)]
        connect: bool,
    },
    /// Print a shell completion script to stdout, e.g.
    /// `portcullis completions bash > /etc/bash_completion.d/portcullis`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, e.g. `portcullis man > portcullis.1`.
    Man,
    /// Exit 0 when a gateway's admin listener answers /healthz with 200 in time, 1 otherwise
    /// (with the reason on one line): a container's health check, without curl.
    Health {
        /// The admin listener of the gateway.
        #[arg(long, default_value = "http://127.0.0.1:9090")]
        admin: String,
        /// How long to wait for the answer.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// List the built-in provider profiles.
    Providers {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also load the profiles of this directory.
        #[arg(long)]
        providers_dir: Option<PathBuf>,
    },
    /// Verify one request's signature; exit 0 when valid, 1 when invalid, 2 on a usage error.
    Verify(VerifyArgs),
    /// The delivery queue of `delivery: queued` routes, through a gateway's admin API.
    Queue {
        #[command(flatten)]
        admin: AdminArgs,
        /// Only this route.
        #[arg(long, global = true)]
        route: Option<String>,
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// The deliveries a running gateway recorded (its event log), through its admin API.
    Deliveries {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: DeliveriesCommand,
    },
    /// A demo upstream: answers 200 to everything and prints each request it receives.
    Echo {
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: std::net::SocketAddr,
    },
    /// Print the headers a provider would send for a body.
    Sign(SignArgs),
}

/// How the `queue` and `deliveries` commands reach a gateway's admin API. The token is never
/// a flag's value (a flag shows in the process list): a file, or the environment.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// The admin listener of a running gateway.
    #[arg(long, global = true, default_value = "http://127.0.0.1:9090")]
    pub admin: String,
    /// A file whose first line is the admin token; without it, the token is read from
    /// PORTCULLIS_ADMIN_TOKEN (when set).
    #[arg(long, global = true, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Print the admin API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Depth, oldest age, in retry and dead, per queued route.
    Stats,
    /// The dead-letter list.
    Dead {
        #[command(subcommand)]
        command: DeadCommand,
    },
    /// One dead letter and the request it holds (headers, body).
    Show { id: String },
    /// Put dead letters back in the queue: one by id, or all of them.
    Replay {
        id: Option<String>,
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Delete dead letters for good: one by id, or all of them (of --route).
    Purge {
        /// The dead letter to delete.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        id: Option<String>,
        /// Every dead letter (of --route).
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// Recorded deliveries, newest first.
    List {
        #[arg(long)]
        route: Option<String>,
        /// forwarded, invalid_signature, duplicate, queued, delivered, retry, dead, …
        #[arg(long)]
        outcome: Option<String>,
        /// The provider's event id (or the whole event key).
        #[arg(long)]
        event_id: Option<String>,
        /// Only since this time: unix milliseconds or RFC 3339.
        #[arg(long)]
        since: Option<String>,
        /// Only older than this delivery id (the previous page's last).
        #[arg(long)]
        before: Option<String>,
        /// At most this many (1 to 1000; default 50).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// One delivery: what happened, and its captured request when kept.
    Show { id: String },
    /// Send a captured, verified delivery to its upstream again.
    Replay {
        id: String,
        /// Replay even what the gateway would refuse by default (e.g. already delivered).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// List the dead letters.
    List,
}

// The flags of `verify` (no doc comment: the variant's is the command's help). The secrets
// come from one place: `--config` and `--route` (the route's, as the gateway holds them),
// `--secret-file`, or `--secret` (which `ps` and the shell's history see).
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["secrets", "secret_files", "route"])))]
pub struct VerifyArgs {
    /// The provider profile; with --route, the route's (given, it must match).
    #[arg(long, required_unless_present = "route")]
    pub provider: Option<String>,
    /// A secret to try (for public-key schemes, the provider's public key as published, PEM
    /// included; paypal: the webhook id; amazon-sns: the topic ARN); repeat for several.
    /// Prefer --secret-file or --config: a flag's value shows in the process list.
    #[arg(long = "secret", allow_hyphen_values = true)]
    pub secrets: Vec<String>,
    /// A file holding one secret (trailing newline ignored); repeat for several.
    #[arg(long = "secret-file", value_name = "FILE")]
    pub secret_files: Vec<PathBuf>,
    /// A gateway configuration (or PORTCULLIS_CONFIG): with --route, verify with that route's
    /// secrets, tolerance and public URL.
    #[arg(long, short, env = CONFIG_ENV, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The route of --config whose secrets are used: its path or its name (a variant:
    /// `name[value]`).
    #[arg(long, value_name = "PATH", requires = "config", conflicts_with_all = ["secrets", "secret_files", "providers_dir"])]
    pub route: Option<String>,
    /// A request header, "Name: value"; repeat for several.
    #[arg(long = "header")]
    pub headers: Vec<String>,
    #[arg(long, default_value = "POST")]
    pub method: String,
    /// The URL the provider sent the request to.
    #[arg(long, default_value = "")]
    pub url: String,
    /// Unix time to check timestamps against (default: now).
    #[arg(long)]
    pub now: Option<u64>,
    /// The body; read from stdin when absent.
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// Load profiles from this directory too.
    #[arg(long)]
    pub providers_dir: Option<PathBuf>,
    /// When invalid, explain why and what would have matched.
    #[arg(long)]
    pub explain: bool,
    /// Certificate-URL schemes (PayPal, SNS): use FILE (PEM) as what URL serves, instead of
    /// fetching it; still checked (chain, validity, names). "URL=FILE"; repeat for several.
    #[arg(long = "certificate", value_name = "URL=FILE")]
    pub certificates: Vec<String>,
    /// FOR TESTS ONLY: also trust this CA (PEM) for signing certificates and their fetch.
    #[arg(long, value_name = "FILE")]
    pub test_ca: Option<PathBuf>,
    /// FOR TESTS ONLY: with --test-ca, also fetch certificates from this "host:port".
    #[arg(long = "test-cert-host", value_name = "HOST:PORT", requires = "test_ca")]
    pub test_cert_hosts: Vec<String>,
}

// The flags of `sign` (no doc comment: the variant's is the command's help).
#[derive(Debug, Args)]
pub struct SignArgs {
    #[arg(long)]
    pub provider: String,
    #[arg(long, allow_hyphen_values = true)]
    pub secret: String,
    /// Event id, for schemes that sign or send one in a header (default: random).
    #[arg(long)]
    pub id: Option<String>,
    /// Unix time to sign (default: now).
    #[arg(long)]
    pub timestamp: Option<u64>,
    #[arg(long, default_value = "POST")]
    pub method: String,
    #[arg(long, default_value = "")]
    pub url: String,
    /// The body; read from stdin when absent.
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// Load profiles from this directory too.
    #[arg(long)]
    pub providers_dir: Option<PathBuf>,
}
