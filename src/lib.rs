//! portcullis: the gate that drops in front of forged and duplicate webhooks.
//!
//! An inbound webhook gateway. For each request it picks the route by path, verifies the
//! provider's signature over the raw body, claims the event's idempotency key, and forwards
//! the untouched request to the route's upstream.
//!
//! # Layout
//! - [`cli`], [`commands`]: the command line, and what each command does (one file each);
//! - [`runtime`]: the composition root: a running gateway wired from its config and listeners,
//!   used by `serve` and by the tests;
//! - [`output`]: the commands' standard output, where a closed pipe ends the output quietly;
//! - [`admin`]: health, readiness, metrics and the admin API on their own listener;
//! - [`console`]: the admin API's JSON (`/api/deliveries`, `/api/routes`);
//! - [`console_ui`]: the operator's console, static files embedded in the binary;
//! - [`event_log`]: the delivery records the admin API lists, kept off the request path;
//! - [`config`]: gateway YAML as written, `${VAR}` expansion, validated into routes, store
//!   settings and edge limits;
//! - [`verify`]: signature schemes: provider profiles ([`verify::profile`], YAML, built-ins
//!   from `providers/`), header parsing, payload templates, canonicalisers, MACs,
//!   timestamps, and the diagnosis of a signature that did not match;
//! - [`jsonptr`]: JSON pointer lookups into raw bodies;
//! - [`cert_fetch`]: the signing certificates of certificate-URL schemes (PayPal, SNS),
//!   fetched over HTTPS from pinned hosts and cached;
//! - [`idempotency`]: the `Store` trait and its backends;
//! - [`store_conn`]: what the stores and the queue share: the store error, the Redis
//!   connections, the redb file handling;
//! - [`delivery`]: the request's typed stages (routed, received, verified), its event key and
//!   the route-scoped id forwarded to the upstream;
//! - [`queue`]: the durable delivery queue of `delivery: queued` routes, and its workers;
//! - [`layer`]: one tower layer per phase of the request path, and the innermost `Forward`;
//! - [`forward`]: the pooled upstream client and the header hygiene of what is forwarded;
//! - [`destination`]: a route's destinations (HTTP(S), NATS JetStream, RabbitMQ), fan-out and
//!   filters;
//! - [`upstream_pool`]: the keep-alive pool of plain-HTTP upstream connections;
//! - [`upstream_tls`]: HTTPS upstreams' TLS: private CAs, client certificates;
//! - [`stack`]: the one place the layers are assembled;
//! - [`routing`]: the route table, each route paired with its metrics, and the handle a reload
//!   swaps;
//! - [`gateway`]: shared state (routing, store, upstream clients, clock, limits, queue);
//! - [`server`]: listener, connections, connection workers;
//! - [`shutdown`]: the request to stop (signals) and the drain that follows;
//! - [`reload`]: a new configuration put in force (SIGHUP, a changed file, the admin API);
//! - [`watch`]: the configuration's files watched for changes;
//! - [`clock`]: the wall clock, one `now`, fixed in tests;
//! - [`tls`]: the listener's certificate and key;
//! - [`metrics`]: Prometheus counters and histograms;
//! - [`process_metrics`]: the `process_*` series and `portcullis_build_info`;
//! - [`telemetry`]: W3C trace context passed on to the upstream, and the optional OTLP span export;
//! - [`outcome`]: the outcome table, what metrics count and logs say of each request;
//! - [`response`]: how the gateway answers: rejections and the log record.

// Commands print through `output`, where a reader closing the pipe ends the output quietly;
// `println!` would panic instead.
#![deny(clippy::print_stdout)]
#![deny(clippy::print_stderr)]

pub mod admin;
pub mod cert_fetch;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod console;
pub mod console_ui;
pub mod delivery;
pub mod destination;
pub mod event_log;
pub mod forward;
pub mod gateway;
pub mod idempotency;
pub mod jsonptr;
pub mod layer;
pub mod metrics;
pub mod outcome;
pub mod output;
pub mod process_metrics;
pub mod queue;
pub mod reload;
pub mod response;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod stack;
pub mod store_conn;
pub mod telemetry;
pub mod tls;
pub mod upstream_pool;
pub mod upstream_tls;
pub mod verify;
pub mod watch;
