//! The gateway YAML as written: serde types that refuse unknown keys, before `${VAR}`
//! expansion and validation. None has `Debug`: most hold secrets.

use super::route::{CaptureMode, DeliveryMode, OnStoreError};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub listen: String,
    pub providers_dir: Option<PathBuf>,
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub event_log: RawEventLog,
    /// Trace export (OTLP/HTTP); none: trace context is only passed on.
    pub telemetry: Option<RawTelemetry>,
    pub tls: Option<RawTls>,
    /// Proxies whose `X-Forwarded-For` is believed when checking `allow_ips`.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// An invalid `store:` is reported after parsing, as other invalid values are.
    #[serde(default = "memory_store", deserialize_with = "store")]
    pub store: Result<RawStore, String>,
    #[serde(default)]
    pub limits: RawLimits,
    pub routes: Vec<RawRoute>,
}

/// The idempotency store: `kind` picks the variant, and each kind takes only its own keys
/// (`kind: memory` with a `url` is refused). Without `kind`, the memory store.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub(super) enum RawStore {
    Memory {
        max_keys: Option<usize>,
        #[serde(default, with = "humantime_serde")]
        timeout: Option<Duration>,
    },
    Embedded {
        path: String,
        #[serde(default, with = "humantime_serde")]
        timeout: Option<Duration>,
    },
    Redis {
        url: String,
        key_prefix: Option<String>,
        #[serde(default, with = "humantime_serde")]
        timeout: Option<Duration>,
    },
    RedisCluster {
        nodes: Vec<String>,
        key_prefix: Option<String>,
        #[serde(default, with = "humantime_serde")]
        timeout: Option<Duration>,
    },
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore::Memory { max_keys: None, timeout: None }
    }
}

fn memory_store() -> Result<RawStore, String> {
    Ok(RawStore::default())
}

/// `store:` parsed as [`RawStore`], with `kind: memory` when no kind is given. Errors name
/// the kind, so "unknown field `url`" reads as what it is: a key of another kind. (They
/// carry no line: the mapping was read whole before its kind was known.)
fn store<'de, D: Deserializer<'de>>(d: D) -> Result<Result<RawStore, String>, D::Error> {
    use serde_yaml_ng::Value;
    let mut v = Value::deserialize(d)?;
    let Value::Mapping(m) = &mut v else {
        return Ok(Err("store: a mapping is needed, such as {kind: redis, url: ...}".into()));
    };
    let at = match m.get("kind") {
        Some(Value::String(kind)) => format!("store (kind '{kind}')"),
        Some(_) => "store.kind".into(),
        None => {
            m.insert("kind".into(), "memory".into());
            "store (kind 'memory')".into()
        }
    };
    Ok(RawStore::deserialize(v).map_err(|e| {
        let e = e.to_string();
        if e.starts_with("unknown variant") {
            format!("store.kind: {e}")
        } else {
            format!("{at}: {e}")
        }
    }))
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    #[serde(default, with = "humantime_serde")]
    pub header_read_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub body_read_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub drain_timeout: Option<Duration>,
    pub max_connections: Option<usize>,
    /// Open connections from one client address; 0 for no bound.
    pub max_connections_per_client: Option<usize>,
    pub max_in_flight: Option<usize>,
    pub max_body_reads_per_client: Option<usize>,
    /// Bytes per second a body must arrive at, after a second's grace; 0 for any rate.
    pub min_body_rate: Option<Size>,
    pub max_headers: Option<usize>,
    pub max_header_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub upstream_connect_timeout: Option<Duration>,
    pub upstream_max_idle_per_host: Option<usize>,
    pub workers: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub path: String,
    pub name: Option<String>,
    pub provider: String,
    #[serde(default)]
    pub secrets: Vec<RawSecret>,
    /// Files holding one secret each (as Kubernetes mounts them); read at load and reload.
    #[serde(default)]
    pub secret_files: Vec<RawSecretFile>,
    pub upstream: Option<String>,
    /// The TLS of an `https://` `upstream:` (and of each variant's): a private CA, a client
    /// certificate, a server name.
    pub upstream_tls: Option<RawUpstreamTls>,
    /// One destination of any kind (instead of `upstream:`).
    pub destination: Option<RawDestination>,
    /// Several destinations: each delivery goes to every one that wants it (fan-out).
    pub destinations: Option<Vec<RawDestination>>,
    /// A header whose value picks one of `variants` (Payable's `X-Live-Mode`).
    pub select_by: Option<String>,
    #[serde(default)]
    pub variants: BTreeMap<String, RawVariant>,
    /// Addresses (CIDR) allowed to send to this route; others get 403.
    pub allow_ips: Option<Vec<String>>,
    pub forward_signing: Option<RawForwardSigning>,
    /// `sync` (default): the provider waits for the upstream. `queued`: answered once a
    /// durable queue holds the delivery; workers deliver with retries.
    #[serde(default)]
    pub delivery: DeliveryMode,
    pub queue: Option<RawQueue>,
    pub methods: Option<Vec<String>>,
    pub max_body: Option<Size>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub lease: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub tolerance: Option<Duration>,
    pub public_url: Option<String>,
    #[serde(default)]
    pub on_store_error: OnStoreError,
    /// The token a GET handshake (Meta's `hub.verify_token`) must carry; secret-like.
    pub verify_token: Option<String>,
    /// Amazon SNS: the topic whose messages the route accepts (their signed `TopicArn`).
    pub topic_arn: Option<String>,
    /// Certificate-URL schemes: fewer hosts than the profile pins (each one it allows).
    pub certificate_hosts: Option<Vec<String>>,
    /// FOR TESTS ONLY: certificate-URL schemes may also fetch from these hosts, and trust
    /// this CA (for the fetch and the signing certificate's chain).
    pub certificate_test_override: Option<RawCertificateOverride>,
    /// Which requests are kept whole for the console: none (default), refused, failed, all.
    #[serde(default)]
    pub capture: CaptureMode,
    /// Body bytes a capture keeps (64 KiB); past it the capture is marked truncated.
    pub capture_max_bytes: Option<Size>,
    /// How long a capture is kept (24h).
    #[serde(default, with = "humantime_serde")]
    pub capture_ttl: Option<Duration>,
}

/// `upstream_tls: {ca_file, client_cert_file, client_key_file, server_name}`; paths are
/// relative to the configuration file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstreamTls {
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub server_name: Option<String>,
}

/// One destination: exactly one of `upstream`, `nats`, `amqp`, and an optional filter.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDestination {
    pub name: Option<String>,
    pub upstream: Option<String>,
    pub upstream_tls: Option<RawUpstreamTls>,
    pub nats: Option<RawNats>,
    pub amqp: Option<RawAmqp>,
    pub when: Option<RawWhen>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNats {
    pub url: String,
    pub subject: String,
    #[serde(default = "yes")]
    pub headers: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAmqp {
    pub url: String,
    #[serde(default)]
    pub exchange: String,
    pub routing_key: String,
}

/// `when: {pointer, in: [..]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWhen {
    pub pointer: String,
    #[serde(rename = "in")]
    pub any_of: Vec<serde_json::Value>,
}

/// A route's test-only extra source of signing certificates.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCertificateOverride {
    pub ca_file: PathBuf,
    /// `host:port` names, compared exactly.
    pub hosts: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub listen: String,
    /// The bearer token `/api` needs, or several (a rotation); secret-like.
    pub token: Option<RawTokens>,
}

/// One token, or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawTokens {
    One(String),
    Many(Vec<String>),
}

/// Trace export: `{otlp_endpoint, service_name?, sample_ratio?}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
    pub otlp_endpoint: String,
    pub service_name: Option<String>,
    pub sample_ratio: Option<f64>,
}

/// The delivery event log of the admin API.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEventLog {
    /// Events kept; the oldest go first.
    pub keep: Option<usize>,
    /// Events older than this are dropped (the Redis and embedded logs; the ring too).
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// False: nothing is recorded (the observe layer gets no recorder).
    pub enabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// One value of a route's `select_by` header: its own secrets and upstream.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVariant {
    #[serde(default)]
    pub secrets: Vec<RawSecret>,
    #[serde(default)]
    pub secret_files: Vec<RawSecretFile>,
    pub upstream: String,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueue {
    pub max_attempts: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
    pub concurrency: Option<usize>,
    pub accept_status: Option<u16>,
    #[serde(default, with = "humantime_serde")]
    pub backoff: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub max_backoff: Option<Duration>,
    /// A JSON pointer whose value orders deliveries: those with the same value are delivered
    /// one at a time, in the order accepted. Default: the profile's `order_by`.
    pub order_by: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForwardSigning {
    /// A Standard Webhooks secret, `whsec_` + base64.
    pub secret: String,
}

/// A secret: its value, or its value with an expiry (during a rotation).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawSecret {
    Value(String),
    WithExpiry(RawSecretExpiry),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecretExpiry {
    pub value: String,
    /// RFC 3339, e.g. `2026-12-31T00:00:00Z`; after it the secret no longer verifies.
    pub expires_at: String,
}

/// A secret file: its path, or `{path, optional: true}` for one that may be absent (the
/// previous secret, removed at the end of a rotation).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawSecretFile {
    Path(PathBuf),
    Entry(RawSecretFileEntry),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecretFileEntry {
    pub path: PathBuf,
    #[serde(default)]
    pub optional: bool,
}

impl RawSecretFile {
    pub fn path(&self) -> &std::path::Path {
        match self {
            RawSecretFile::Path(p) | RawSecretFile::Entry(RawSecretFileEntry { path: p, .. }) => p,
        }
    }

    pub fn optional(&self) -> bool {
        matches!(self, RawSecretFile::Entry(RawSecretFileEntry { optional: true, .. }))
    }
}

/// A byte size: an integer, or a string such as `"1MiB"`, `"1.5MiB"`, `"2MB"`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    /// The size in bytes: `512KiB`, `1.5MiB`, `1GiB` (powers of 1024) or `2MB`, `500kB` (powers
    /// of 1000), as `bytesize` reads them.
    pub fn bytes(&self) -> Result<u64, String> {
        match self {
            Size::Bytes(b) => Ok(*b),
            Size::Text(t) => t.trim().parse::<bytesize::ByteSize>().map(|b| b.as_u64()).map_err(|_| {
                format!("'{t}' is not a size: write a number and a unit, such as 512KiB, 1.5MiB, 1GiB or 2MB")
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(Size::Text("1MiB".into()).bytes().unwrap(), 1 << 20);
        assert_eq!(Size::Text("512 KiB".into()).bytes().unwrap(), 512 << 10);
        assert_eq!(Size::Bytes(7).bytes().unwrap(), 7);
        assert_eq!(Size::Text("1.5MiB".into()).bytes().unwrap(), 3 << 19);
        assert_eq!(Size::Text("1GiB".into()).bytes().unwrap(), 1 << 30);
        assert_eq!(Size::Text("2MB".into()).bytes().unwrap(), 2_000_000);
        let e = Size::Text("1 parsec".into()).bytes().unwrap_err();
        assert!(e.contains("1.5MiB"), "{e}");
    }
}
