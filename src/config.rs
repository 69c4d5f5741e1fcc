//! Gateway configuration: raw YAML (unknown keys refused, `${VAR}` expanded) validated into a
//! [`Config`] that cannot hold an invalid route.

use crate::profile::{yaml_message, ProfileSet};
use crate::verify::Verifier;
use http::uri::{Authority, Scheme};
use http::{Method, Uri};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
pub const DEFAULT_TTL: Duration = Duration::from_secs(72 * 3600);
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

// ---------------------------------------------------------------------------------------------
// Raw YAML

// No `Debug`: it holds secrets.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: String,
    providers_dir: Option<PathBuf>,
    admin: Option<RawAdmin>,
    tls: Option<RawTls>,
    /// Proxies whose `X-Forwarded-For` is believed when checking `allow_ips`.
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    limits: RawLimits,
    routes: Vec<RawRoute>,
}

// No `Debug`: it holds secrets.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default = "default_kind")]
    kind: String,
    max_keys: Option<usize>,
    path: Option<String>,
    url: Option<String>,
    nodes: Option<Vec<String>>,
    key_prefix: Option<String>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            kind: default_kind(),
            max_keys: None,
            path: None,
            url: None,
            nodes: None,
            key_prefix: None,
            timeout: None,
        }
    }
}

fn default_kind() -> String {
    "memory".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default, with = "humantime_serde")]
    header_read_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    body_read_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    drain_timeout: Option<Duration>,
    max_connections: Option<usize>,
    max_in_flight: Option<usize>,
    max_body_reads_per_client: Option<usize>,
    /// Bytes per second a body must arrive at, after a second's grace; 0 for any rate.
    min_body_rate: Option<Size>,
    max_headers: Option<usize>,
    max_header_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    upstream_connect_timeout: Option<Duration>,
    upstream_max_idle_per_host: Option<usize>,
    workers: Option<usize>,
}

// No `Debug`: it holds secrets.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path: String,
    name: Option<String>,
    provider: String,
    #[serde(default)]
    secrets: Vec<RawSecret>,
    /// Files holding one secret each (as Kubernetes mounts them); read at load and reload.
    #[serde(default)]
    secret_files: Vec<PathBuf>,
    upstream: Option<String>,
    /// A header whose value picks one of `variants` (Payable's `X-Live-Mode`).
    select_by: Option<String>,
    #[serde(default)]
    variants: BTreeMap<String, RawVariant>,
    /// Addresses (CIDR) allowed to send to this route; others get 403.
    allow_ips: Option<Vec<String>>,
    forward_signing: Option<RawForwardSigning>,
    /// `sync` (default): the provider waits for the upstream. `queued`: answered once a
    /// durable queue holds the delivery; workers deliver with retries.
    #[serde(default)]
    delivery: DeliveryMode,
    queue: Option<RawQueue>,
    methods: Option<Vec<String>>,
    max_body: Option<Size>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    lease: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    tolerance: Option<Duration>,
    public_url: Option<String>,
    #[serde(default)]
    on_store_error: OnStoreError,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
}

/// One value of a route's `select_by` header: its own secrets and upstream.
// No `Debug`: it holds secrets.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    #[serde(default)]
    secrets: Vec<RawSecret>,
    #[serde(default)]
    secret_files: Vec<PathBuf>,
    upstream: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryMode {
    #[default]
    Sync,
    Queued,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    max_attempts: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    max_age: Option<Duration>,
    concurrency: Option<usize>,
    accept_status: Option<u16>,
    #[serde(default, with = "humantime_serde")]
    backoff: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    max_backoff: Option<Duration>,
    /// A JSON pointer whose value orders deliveries: those with the same value are delivered
    /// one at a time, in the order accepted. Default: the profile's `order_by`.
    order_by: Option<String>,
}

/// How a queued route delivers.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// Attempts before a delivery goes to the dead-letter list.
    pub max_attempts: u32,
    /// Age past which a delivery goes to the dead-letter list.
    pub max_age: Duration,
    /// Deliveries to this route's upstream at once, per gateway instance.
    pub concurrency: usize,
    /// The status answered once the queue holds a delivery (202).
    pub accept_status: u16,
    /// First retry delay; doubled each attempt (with jitter) up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Deliveries with the same value here go one at a time, in the order accepted.
    pub order_by: Option<crate::jsonptr::Pointer>,
}

// No `Debug`: it holds secrets.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForwardSigning {
    /// A Standard Webhooks secret, `whsec_` + base64.
    secret: String,
}

/// A secret: its value, or its value with an expiry (during a rotation). No `Debug`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawSecret {
    Value(String),
    WithExpiry(RawSecretExpiry),
}

// No `Debug`: it holds secrets.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecretExpiry {
    value: String,
    /// RFC 3339, e.g. `2026-12-31T00:00:00Z`; after it the secret no longer verifies.
    expires_at: String,
}

/// A byte size: an integer, or a string such as `"1MiB"`, `"512KiB"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn bytes(&self) -> Result<u64, String> {
        match self {
            Size::Bytes(b) => Ok(*b),
            Size::Text(t) => {
                let t = t.trim();
                let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
                let (num, unit) = t.split_at(split);
                let n: u64 = num.parse().map_err(|_| format!("'{t}' is not a size"))?;
                let mult = match unit.trim() {
                    "" | "B" => 1,
                    "KiB" | "KB" | "K" => 1024,
                    "MiB" | "MB" | "M" => 1024 * 1024,
                    other => return Err(format!("unknown size unit '{other}' (use B, KiB or MiB)")),
                };
                Ok(n * mult)
            }
        }
    }
}

/// What a route does when the idempotency store cannot answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnStoreError {
    /// Answer 503 with `Retry-After` and forward nothing: the provider retries later, and
    /// nothing is lost or delivered twice. The default.
    #[default]
    Reject,
    /// Forward without deduplication: the delivery gets through, but a retry of it may be
    /// delivered a second time while the store is down.
    Forward,
}

// ---------------------------------------------------------------------------------------------
// Validated

/// Which idempotency store to use. Its `Debug` hides the passwords of Redis URLs.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreKind {
    Memory { max_keys: usize },
    Embedded { path: PathBuf },
    Redis { url: String },
    RedisCluster { nodes: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub kind: StoreKind,
    pub key_prefix: String,
    /// Bound on every store call; past it the request is answered 503.
    pub timeout: Duration,
}

/// Edge limits of the webhook listener and the upstream client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time a client has to send a request's headers, and the most an idle keep-alive
    /// connection waits for the next request.
    pub header_read_timeout: Duration,
    /// Time a client has to send a request's whole body (408 past it).
    pub body_read_timeout: Duration,
    /// On SIGTERM, how long in-flight deliveries may finish before their keys are released.
    pub drain_timeout: Duration,
    /// Open connections at most; past it a connection is answered 503 and closed.
    pub max_connections: usize,
    /// Requests being handled at once at most, counted once their body is read; past it,
    /// 503 with `Retry-After`.
    pub max_in_flight: usize,
    /// Bodies read at once from one client address at most; past it, 503 with
    /// `Retry-After` and the connection closed. Slow senders at one address cannot hold
    /// more; genuine deliveries from other addresses are read as usual.
    pub max_body_reads_per_client: usize,
    /// Bytes per second a body must arrive at on average, a second after its read began
    /// (408 past it, and the connection closed); 0 accepts any rate up to the body read
    /// timeout.
    pub min_body_rate: u64,
    /// Header lines in a request at most (431 past it).
    pub max_headers: usize,
    /// Bytes of request line and headers at most (431 past it).
    pub max_header_bytes: usize,
    pub upstream_connect_timeout: Duration,
    /// Idle pooled connections kept per upstream host.
    pub upstream_max_idle_per_host: usize,
    /// Threads serving webhook connections, each with its own event loop and upstream pool.
    pub workers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_in_flight: 4_096,
            max_body_reads_per_client: 64,
            min_body_rate: 1024,
            max_headers: 100,
            max_header_bytes: 16 * 1024,
            upstream_connect_timeout: Duration::from_secs(2),
            upstream_max_idle_per_host: 256,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// Where a route forwards to. Its `Debug` hides a password in the URL.
#[derive(Clone)]
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// The upstream's path; the request's query string is appended to it.
    pub path: String,
    /// The path, parsed once for requests without a query string.
    pub path_and_query: http::uri::PathAndQuery,
    pub url: String,
}

/// One validated route.
#[derive(Debug)]
pub struct Route {
    /// Namespace of the route's idempotency keys, and its label in logs and metrics.
    pub name: String,
    pub path: String,
    pub verifier: Verifier,
    pub upstream: Upstream,
    pub methods: Vec<Method>,
    pub max_body: u64,
    pub upstream_timeout: Duration,
    pub lease: Duration,
    pub ttl: Duration,
    pub public_url: Option<String>,
    pub on_store_error: OnStoreError,
    /// The route's counters; attached by the gateway, kept across reloads.
    pub metrics: std::sync::OnceLock<Arc<crate::metrics::RouteMetrics>>,
    /// For a variant of a route: the header and the value that select it.
    pub selector: Option<(http::HeaderName, String)>,
    /// Networks allowed to send; `None` allows all.
    pub allow_ips: Option<Vec<ipnet::IpNet>>,
    /// Re-sign what is forwarded with Standard Webhooks headers under this key.
    pub forward_signing: Option<crate::verify::mac::MacKey>,
    /// Set for `delivery: queued`.
    pub queue: Option<QueueSettings>,
    /// The provider's name as the `Portcullis-Provider` header value, made once.
    pub provider_value: http::HeaderValue,
}

impl Route {
    pub fn provider(&self) -> &str {
        &self.verifier.profile().name
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub tls: Option<TlsFiles>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub store: StoreConfig,
    pub limits: Limits,
    /// Every route; a route with `variants` appears once per variant, with a `selector`.
    pub routes: Vec<Arc<Route>>,
    pub profiles: ProfileSet,
}

/// The certificate and key of the webhook listener, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl std::fmt::Debug for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreKind::Memory { max_keys } => f.debug_struct("Memory").field("max_keys", max_keys).finish(),
            StoreKind::Embedded { path } => f.debug_struct("Embedded").field("path", path).finish(),
            StoreKind::Redis { url } => f.debug_struct("Redis").field("url", &redact_url(url)).finish(),
            StoreKind::RedisCluster { nodes } => f
                .debug_struct("RedisCluster")
                .field("nodes", &nodes.iter().map(|n| redact_url(n)).collect::<Vec<_>>())
                .finish(),
        }
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("url", &redact_url(&self.url)).finish()
    }
}

/// `url` with the password of its user information, if any, replaced by `***`: the one
/// way every URL is printed (`check`, `serve`, `Debug`).
pub fn redact_url(url: &str) -> std::borrow::Cow<'_, str> {
    let Some(start) = url.find("://").map(|i| i + 3) else { return url.into() };
    let authority_end = url[start..].find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    let Some(at) = url[start..authority_end].rfind('@').map(|i| start + i) else { return url.into() };
    match url[start..at].find(':') {
        Some(colon) => format!("{}:***{}", &url[..start + colon], &url[at..]).into(),
        // A user name alone is often a token (`redis://token@host`): hidden too.
        None => format!("{}***{}", &url[..start], &url[at..]).into(),
    }
}

/// The embedded queue's file, beside the embedded store's: `claims.redb` → `claims.queue.redb`.
pub fn queue_path(store: &Path) -> PathBuf {
    store.with_extension("queue.redb")
}

/// Parses `10.0.0.0/8` or a single address. An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`)
/// is taken as the IPv4 network it maps, as client addresses are taken in canonical form.
pub fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    let net = s
        .parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("'{s}' is not an address or a CIDR network"))?;
    Ok(match net {
        ipnet::IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).expect("a prefix of at most 32").into(),
            None => net,
        },
        _ => net,
    })
}

/// A configuration that cannot be used: the file, where, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub message: String,
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_yaml(&path.display().to_string(), &text, base, &|k| std::env::var(k).ok())
    }

    /// Parses and validates configuration text. `env` resolves `${VAR}`; relative paths are
    /// taken from `base`.
    pub fn from_yaml(
        file: &str,
        text: &str,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let err = |message: String| ConfigError { file: file.to_string(), message };
        let raw: RawConfig = serde_yaml_ng::from_str(text).map_err(|e| err(yaml_message(&e)))?;
        raw.validate(base, env).map_err(err)
    }
}

/// Expands `${VAR}` and `${VAR:-default}` in `s`. An unset `${VAR}` is an error.
pub fn expand_env(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or("unclosed '${'")?;
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("'${{{expr}}}' is not a variable name"));
        }
        match (env(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn parse_upstream(s: &str) -> Result<Upstream, String> {
    let uri: Uri = s.parse().map_err(|e| format!("'{s}' is not a URL: {e}"))?;
    let scheme = uri.scheme().cloned().ok_or_else(|| format!("'{s}' has no scheme"))?;
    if scheme != Scheme::HTTP {
        return Err(format!(
            "'{s}': only http:// upstreams are supported (the upstream is an internal service)"
        ));
    }
    let authority = uri.authority().cloned().ok_or_else(|| format!("'{s}' has no host"))?;
    if uri.query().is_some() {
        return Err(format!("'{s}': the upstream URL cannot carry a query string"));
    }
    let path_and_query = http::uri::PathAndQuery::try_from(uri.path()).map_err(|e| format!("'{s}': {e}"))?;
    Ok(Upstream { scheme, authority, path: uri.path().to_string(), path_and_query, url: s.to_string() })
}

impl RawConfig {
    fn validate(self, base: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
        let listen_s = expand_env(&self.listen, env).map_err(|e| format!("listen: {e}"))?;
        let listen: SocketAddr = listen_s
            .parse()
            .map_err(|_| format!("listen: '{listen_s}' is not an address such as 0.0.0.0:8080"))?;

        let mut profiles = ProfileSet::builtin();
        if let Some(dir) = &self.providers_dir {
            profiles.extend_from_dir(&base.join(dir)).map_err(|e| format!("providers_dir: {e}"))?;
        }

        let admin = self
            .admin
            .map(|a| {
                let l = expand_env(&a.listen, env).map_err(|e| format!("admin.listen: {e}"))?;
                l.parse::<SocketAddr>().map_err(|_| format!("admin.listen: '{l}' is not an address"))
            })
            .transpose()?;
        let tls =
            self.tls.map(|t| TlsFiles { cert_file: base.join(t.cert_file), key_file: base.join(t.key_file) });
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, n)| parse_net(n).map_err(|e| format!("trusted_proxies[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let store = self.store.validate(base, env)?;
        let d = Limits::default();
        let l = self.limits;
        let limits = Limits {
            header_read_timeout: l.header_read_timeout.unwrap_or(d.header_read_timeout),
            body_read_timeout: l.body_read_timeout.unwrap_or(d.body_read_timeout),
            drain_timeout: l.drain_timeout.unwrap_or(d.drain_timeout),
            max_connections: l.max_connections.unwrap_or(d.max_connections),
            max_in_flight: l.max_in_flight.unwrap_or(d.max_in_flight),
            max_body_reads_per_client: l.max_body_reads_per_client.unwrap_or(d.max_body_reads_per_client),
            min_body_rate: match &l.min_body_rate {
                Some(s) => s.bytes().map_err(|e| format!("limits.min_body_rate: {e}"))?,
                None => d.min_body_rate,
            },
            max_headers: l.max_headers.unwrap_or(d.max_headers),
            max_header_bytes: l.max_header_bytes.unwrap_or(d.max_header_bytes),
            upstream_connect_timeout: l.upstream_connect_timeout.unwrap_or(d.upstream_connect_timeout),
            upstream_max_idle_per_host: l.upstream_max_idle_per_host.unwrap_or(d.upstream_max_idle_per_host),
            workers: l.workers.unwrap_or(d.workers),
        };
        if limits.max_header_bytes < 8192 {
            return Err("limits.max_header_bytes must be at least 8192".into());
        }
        if limits.max_connections == 0
            || limits.max_in_flight == 0
            || limits.max_body_reads_per_client == 0
            || limits.max_headers == 0
            || limits.workers == 0
        {
            return Err(
                "limits: max_connections, max_in_flight, max_body_reads_per_client, max_headers and workers must be at least 1".into()
            );
        }
        for (name, t) in [
            ("header_read_timeout", limits.header_read_timeout),
            ("body_read_timeout", limits.body_read_timeout),
            ("upstream_connect_timeout", limits.upstream_connect_timeout),
        ] {
            if t.is_zero() {
                return Err(format!("limits.{name} must be more than zero"));
            }
        }

        if self.routes.is_empty() {
            return Err("routes: at least one route is needed".into());
        }
        let mut paths = HashSet::new();
        let mut names = HashSet::new();
        let mut routes = Vec::with_capacity(self.routes.len());
        for (i, r) in self.routes.into_iter().enumerate() {
            let at = format!("routes[{i}]");
            let variants = r.validate(&profiles, env, base).map_err(|e| format!("{at} (route): {e}"))?;
            let path = variants[0].path.clone();
            if !paths.insert(path.clone()) {
                return Err(format!("{at}.path: '{path}' is used by another route"));
            }
            for route in variants {
                if !names.insert(route.name.clone()) {
                    return Err(format!("{at}.name: '{}' is used by another route", route.name));
                }
                routes.push(Arc::new(route));
            }
        }
        if routes.iter().any(|r| r.queue.is_some()) && matches!(store.kind, StoreKind::Memory { .. }) {
            return Err(
                "delivery: queued needs a durable queue: store.kind redis, redis-cluster or embedded".into(),
            );
        }
        Ok(Config { listen, admin, tls, trusted_proxies, store, limits, routes, profiles })
    }
}

impl RawStore {
    fn validate(self, base: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<StoreConfig, String> {
        let forbid = |what: &str, present: bool| {
            if present {
                Err(format!("store.{what} does not apply to store.kind '{}'", self.kind))
            } else {
                Ok(())
            }
        };
        let kind = match self.kind.as_str() {
            "memory" => {
                forbid("path", self.path.is_some())?;
                forbid("url", self.url.is_some())?;
                forbid("nodes", self.nodes.is_some())?;
                let max_keys = self.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
                if max_keys == 0 {
                    return Err("store.max_keys must be at least 1".into());
                }
                StoreKind::Memory { max_keys }
            }
            "embedded" => {
                forbid("url", self.url.is_some())?;
                forbid("nodes", self.nodes.is_some())?;
                let p = self.path.as_deref().ok_or("store.path is needed for kind 'embedded'")?;
                let p = expand_env(p, env).map_err(|e| format!("store.path: {e}"))?;
                StoreKind::Embedded { path: base.join(p) }
            }
            "redis" => {
                forbid("path", self.path.is_some())?;
                forbid("nodes", self.nodes.is_some())?;
                let u = self.url.as_deref().ok_or("store.url is needed for kind 'redis'")?;
                let url = expand_env(u, env).map_err(|e| format!("store.url: {e}"))?;
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err("store.url must start with redis:// or rediss://".into());
                }
                StoreKind::Redis { url }
            }
            "redis-cluster" => {
                forbid("path", self.path.is_some())?;
                forbid("url", self.url.is_some())?;
                let nodes = self.nodes.ok_or("store.nodes is needed for kind 'redis-cluster'")?;
                if nodes.is_empty() {
                    return Err("store.nodes: at least one node is needed".into());
                }
                let nodes = nodes
                    .iter()
                    .map(|n| expand_env(n, env).map_err(|e| format!("store.nodes: {e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                StoreKind::RedisCluster { nodes }
            }
            other => {
                return Err(format!(
                    "store.kind: unknown kind '{other}' (memory, embedded, redis, redis-cluster)"
                ))
            }
        };
        let timeout = self.timeout.unwrap_or(DEFAULT_STORE_TIMEOUT);
        if timeout.is_zero() {
            return Err("store.timeout must be more than zero".into());
        }
        Ok(StoreConfig { kind, key_prefix: self.key_prefix.unwrap_or_else(|| "portcullis:".into()), timeout })
    }
}

impl RawRoute {
    /// Validates the route; one `Route` per variant when it selects by a header.
    fn validate(
        self,
        profiles: &ProfileSet,
        env: &dyn Fn(&str) -> Option<String>,
        base: &Path,
    ) -> Result<Vec<Route>, String> {
        if !self.path.starts_with('/') || self.path.contains(['?', '#']) {
            return Err(format!("path: '{}' must start with '/' and hold no query", self.path));
        }
        let name = self.name.clone().unwrap_or_else(|| self.path.clone());
        match (&self.select_by, self.variants.is_empty()) {
            (None, true) => {
                let upstream = self.upstream.as_deref().ok_or("upstream: is needed")?;
                Ok(vec![self.build(
                    name,
                    &self.secrets,
                    &self.secret_files,
                    upstream,
                    None,
                    profiles,
                    env,
                    base,
                )?])
            }
            (Some(header), false) => {
                if self.upstream.is_some() || !self.secrets.is_empty() || !self.secret_files.is_empty() {
                    return Err("with select_by, secrets and upstream belong to each of the variants".into());
                }
                let header = http::HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| format!("select_by: '{header}' is not a header name"))?;
                self.variants
                    .iter()
                    .map(|(value, v)| {
                        let selector = Some((header.clone(), value.clone()));
                        self.build(
                            format!("{name}[{value}]"),
                            &v.secrets,
                            &v.secret_files,
                            &v.upstream,
                            selector,
                            profiles,
                            env,
                            base,
                        )
                        .map_err(|e| format!("variants.{value}.{e}"))
                    })
                    .collect()
            }
            _ => Err("select_by and variants go together".into()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        name: String,
        raw_secrets: &[RawSecret],
        secret_files: &[PathBuf],
        upstream: &str,
        selector: Option<(http::HeaderName, String)>,
        profiles: &ProfileSet,
        env: &dyn Fn(&str) -> Option<String>,
        base: &Path,
    ) -> Result<Route, String> {
        let profile = profiles.get(&self.provider).ok_or_else(|| {
            format!("provider: unknown provider '{}' (known: {})", self.provider, profiles.names().join(", "))
        })?;

        let mut secrets = Vec::with_capacity(raw_secrets.len() + secret_files.len());
        for (i, raw) in raw_secrets.iter().enumerate() {
            let (s, expires_at) = match raw {
                RawSecret::Value(s) => (s, None),
                RawSecret::WithExpiry(e) => {
                    let t = humantime::parse_rfc3339(&e.expires_at).map_err(|_| {
                        format!("secrets[{i}].expires_at: '{}' is not an RFC 3339 time", e.expires_at)
                    })?;
                    let unix = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                    (&e.value, Some(unix))
                }
            };
            let v = expand_env(s, env).map_err(|e| format!("secrets[{i}]: {e}"))?;
            // `${VAR:-}` marks an optional secret (a previous one during rotation): dropped
            // when unset. Any other empty secret is an error.
            let optional = s.starts_with("${") && s.ends_with(":-}");
            if v.is_empty() {
                if optional {
                    continue;
                }
                return Err(format!("secrets[{i}]: is empty"));
            }
            secrets.push(crate::verify::Secret { value: v, expires_at });
        }
        for (i, f) in secret_files.iter().enumerate() {
            let path = base.join(f);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("secret_files[{i}]: {}: {e}", path.display()))?;
            let v = text.trim_end_matches(['\n', '\r']).to_string();
            if v.is_empty() {
                return Err(format!("secret_files[{i}]: {} is empty", path.display()));
            }
            secrets.push(crate::verify::Secret { value: v, expires_at: None });
        }
        if secrets.is_empty() {
            return Err("secrets: at least one non-empty secret is needed".into());
        }
        let verifier =
            Verifier::new(profile.clone(), &secrets, self.tolerance).map_err(|e| format!("secrets: {e}"))?;

        let up = expand_env(upstream, env).map_err(|e| format!("upstream: {e}"))?;
        let upstream = parse_upstream(&up).map_err(|e| format!("upstream: {e}"))?;
        let public_url = self
            .public_url
            .as_ref()
            .map(|u| expand_env(u, env).map_err(|e| format!("public_url: {e}")))
            .transpose()?;
        if verifier.needs_url() && public_url.is_none() {
            return Err(format!(
                "public_url: provider '{}' signs the URL it sent to, so the route needs the public URL",
                profile.name
            ));
        }

        let methods = match &self.methods {
            None => profile.methods.clone(),
            Some(ms) => crate::profile::parse_methods(ms)?,
        };
        let max_body = match &self.max_body {
            Some(s) => s.bytes().map_err(|e| format!("max_body: {e}"))?,
            None => DEFAULT_MAX_BODY,
        };
        if max_body == 0 {
            return Err("max_body must be more than zero".into());
        }
        let upstream_timeout = self.timeout.unwrap_or(DEFAULT_UPSTREAM_TIMEOUT);
        let lease = self.lease.unwrap_or(DEFAULT_LEASE.max(upstream_timeout * 2));
        if lease <= upstream_timeout {
            return Err(format!(
                "lease ({}) must be longer than the upstream timeout ({}), or a slow delivery's claim could expire while it is still being forwarded",
                humantime::format_duration(lease),
                humantime::format_duration(upstream_timeout)
            ));
        }
        let ttl = self.ttl.unwrap_or(DEFAULT_TTL);
        if ttl < lease {
            return Err("ttl must be at least the lease".into());
        }
        // A signed timestamp is accepted from `tolerance` before the time it names to
        // `tolerance` after it, so a captured copy verifies for up to twice the tolerance after
        // the first delivery. Its key (and its replay nonce, remembered as long) must outlive
        // that window, or the copy is forwarded again once the key expires.
        if let Some(rule) = profile.timestamp.as_ref().filter(|t| t.check) {
            let tolerance = self.tolerance.unwrap_or(rule.tolerance);
            if ttl < tolerance * 2 {
                return Err(format!(
                    "route '{name}': ttl ({}) must be at least twice the signed-timestamp tolerance ({}): a signed request verifies for that long, and a copy replayed after its key expired would be forwarded again",
                    humantime::format_duration(ttl),
                    humantime::format_duration(tolerance)
                ));
            }
        }
        let allow_ips = self
            .allow_ips
            .as_ref()
            .map(|list| {
                list.iter()
                    .enumerate()
                    .map(|(i, n)| parse_net(n).map_err(|e| format!("allow_ips[{i}]: {e}")))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let forward_signing =
            self.forward_signing
                .as_ref()
                .map(|f| {
                    let secret =
                        expand_env(&f.secret, env).map_err(|e| format!("forward_signing.secret: {e}"))?;
                    if !secret.starts_with("whsec_") {
                        return Err("forward_signing.secret: a Standard Webhooks secret starts with whsec_"
                            .to_string());
                    }
                    let key = crate::verify::mac::SecretEncoding::WhsecBase64
                        .decode(&secret)
                        .map_err(|e| format!("forward_signing.secret {e}"))?;
                    Ok(crate::verify::mac::MacKey::new(crate::verify::mac::Algorithm::HmacSha256, &key))
                })
                .transpose()?;
        let queue = match (self.delivery, &self.queue) {
            (DeliveryMode::Sync, None) => None,
            (DeliveryMode::Sync, Some(_)) => return Err("queue: belongs to delivery: queued".into()),
            (DeliveryMode::Queued, q) => {
                let d = RawQueue::default();
                let q = q.as_ref().unwrap_or(&d);
                let settings = QueueSettings {
                    max_attempts: q.max_attempts.unwrap_or(12),
                    max_age: q.max_age.unwrap_or(Duration::from_secs(72 * 3600)),
                    concurrency: q.concurrency.unwrap_or(8),
                    accept_status: q.accept_status.unwrap_or(202),
                    backoff: q.backoff.unwrap_or(Duration::from_secs(1)),
                    max_backoff: q.max_backoff.unwrap_or(Duration::from_secs(600)),
                    order_by: match &q.order_by {
                        Some(p) => Some(
                            crate::jsonptr::Pointer::parse(p).map_err(|e| format!("queue.order_by: {e}"))?,
                        ),
                        None => profile.order_by.clone(),
                    },
                };
                if settings.max_attempts == 0 || settings.concurrency == 0 {
                    return Err("queue: max_attempts and concurrency must be at least 1".into());
                }
                if !(200..300).contains(&settings.accept_status) {
                    return Err("queue.accept_status must be a 2xx status".into());
                }
                Some(settings)
            }
        };
        let provider_value = http::HeaderValue::from_str(&verifier.profile().name)
            .map_err(|_| format!("provider: '{}' cannot be a header value", verifier.profile().name))?;
        Ok(Route {
            provider_value,
            name,
            path: self.path.clone(),
            verifier,
            upstream,
            methods,
            max_body,
            upstream_timeout,
            lease,
            ttl,
            public_url,
            on_store_error: self.on_store_error,
            metrics: std::sync::OnceLock::new(),
            selector,
            allow_ips,
            forward_signing,
            queue,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<Config, ConfigError> {
        let env = |k: &str| match k {
            "SECRET" => Some("s3cret".to_string()),
            _ => None,
        };
        Config::from_yaml("gw.yaml", yaml, Path::new("."), &env)
    }

    const ROUTE: &str = "  - path: /p\n    provider: paylent\n    secrets: ['${SECRET}']\n    upstream: http://127.0.0.1:3000/x\n";

    #[test]
    fn minimal_config_loads_with_defaults() {
        let c = load(&format!("listen: 127.0.0.1:0\nroutes:\n{ROUTE}")).unwrap();
        let r = &c.routes[0];
        assert_eq!(r.name, "/p");
        assert_eq!(r.max_body, DEFAULT_MAX_BODY);
        assert_eq!(r.ttl, DEFAULT_TTL);
        assert!(r.lease > r.upstream_timeout);
        assert_eq!(c.store.kind, StoreKind::Memory { max_keys: DEFAULT_MAX_KEYS });
    }

    #[test]
    fn errors_name_the_file_and_the_place() {
        let cases = [
            ("listen: x\nroutes:\n", "listen"),
            ("listen: 127.0.0.1:0\ncolour: red\nroutes: []\n", "line 2"),
            (
                "listen: 127.0.0.1:0\nroutes:\n  - path: /p\n    provider: nope\n    secrets: [a]\n    upstream: http://h/\n",
                "routes[0] (route): provider: unknown provider 'nope'",
            ),
            (
                "listen: 127.0.0.1:0\nroutes:\n  - path: /p\n    provider: paylent\n    secrets: ['']\n    upstream: http://h/\n",
                "secrets[0]: is empty",
            ),
            (
                "listen: 127.0.0.1:0\nroutes:\n  - path: /p\n    provider: paylent\n    secrets: ['${NOPE}']\n    upstream: http://h/\n",
                "NOPE is not set",
            ),
            (
                "listen: 127.0.0.1:0\nroutes:\n  - path: /p\n    provider: paylent\n    secrets: [a]\n    upstream: 'not a url'\n",
                "upstream",
            ),
            (&format!("listen: 127.0.0.1:0\nroutes:\n{ROUTE}{ROUTE}"), "used by another route"),
            (
                "listen: 127.0.0.1:0\nroutes:\n  - path: /p\n    provider: paylent\n    secrets: [a]\n    upstream: http://h/\n    timeout: 30s\n    lease: 10s\n",
                "lease",
            ),
            (
                "listen: 127.0.0.1:0\nroutes:\n  - path: /p\n    provider: paylent\n    secrets: [a]\n    upstream: http://h/\n    secret: x\n",
                "unknown field `secret`",
            ),
            (&format!("listen: 127.0.0.1:0\nlimits: {{workers: 0}}\nroutes:\n{ROUTE}"), "workers must be at least 1"),
        ];
        for (yaml, want) in cases {
            let e = load(yaml).unwrap_err().to_string();
            assert!(e.starts_with("gw.yaml: "), "{e}");
            assert!(e.contains(want), "{e:?} should contain {want:?}");
        }
    }

    #[test]
    fn ttl_shorter_than_the_replay_window_of_signed_timestamps_is_refused() {
        // stripe signs its timestamp and holds it to 5 minutes: a key must live 10.
        let route = |extra: &str| {
            format!(
                "listen: 127.0.0.1:0\nroutes:\n  - path: /p\n    name: pm\n    provider: stripe\n    secrets: [a]\n    upstream: http://h/\n{extra}"
            )
        };
        let e = load(&route("    ttl: 5m\n")).unwrap_err().to_string();
        assert!(e.contains("route 'pm'") && e.contains("ttl (5m)") && e.contains("tolerance (5m)"), "{e}");
        assert!(load(&route("    ttl: 10m\n")).is_ok());
        // A route's own tolerance is the one that counts.
        let e = load(&route("    ttl: 10m\n    tolerance: 1h\n")).unwrap_err().to_string();
        assert!(e.contains("tolerance (1h)"), "{e}");
        assert!(load(&route("    ttl: 2m\n    tolerance: 1m\n")).is_ok());
        // Without a signed timestamp there is no window to cover.
        let unsigned = "listen: 127.0.0.1:0\nroutes:\n  - path: /p\n    provider: paylent\n    secrets: [a]\n    upstream: http://h/\n    ttl: 1m\n";
        assert!(load(unsigned).is_ok());
    }

    #[test]
    fn ipv4_mapped_networks_are_taken_as_ipv4() {
        assert_eq!(parse_net("::ffff:10.0.0.0/104").unwrap(), parse_net("10.0.0.0/8").unwrap());
        assert_eq!(parse_net("::ffff:192.0.2.1").unwrap(), parse_net("192.0.2.1/32").unwrap());
        assert_eq!(parse_net("2001:db8::/32").unwrap().to_string(), "2001:db8::/32");
    }

    #[test]
    fn urls_are_printed_without_their_password() {
        assert_eq!(redact_url("http://user:pass@host:8080/a@b"), "http://user:***@host:8080/a@b");
        assert_eq!(redact_url("redis://:pw@127.0.0.1:6379/0"), "redis://:***@127.0.0.1:6379/0");
        assert_eq!(redact_url("redis://token@h"), "redis://***@h");
        assert_eq!(redact_url("http://host/path@x?q=a:b@c"), "http://host/path@x?q=a:b@c");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn config_debug_prints_no_secret() {
        let c = load(
            "listen: 127.0.0.1:0\nstore: {kind: redis, url: 'redis://:redispw@127.0.0.1:6379'}\nroutes:\n  - path: /p\n    provider: paylent\n    secrets: ['routesecret']\n    upstream: http://user:upstreampw@127.0.0.1:3000/x\n    forward_signing: {secret: whsec_Zm9yd2FyZHNpZ25pbmdzZWNyZXQ=}\n",
        )
        .unwrap();
        let debug = format!("{c:?}");
        for secret in
            ["redispw", "upstreampw", "routesecret", "Zm9yd2FyZHNpZ25pbmdzZWNyZXQ", "forwardsigning"]
        {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(debug.contains("127.0.0.1:3000"), "{debug}");
    }

    #[test]
    fn optional_secret_is_dropped_when_unset() {
        let c = load(
            "listen: 127.0.0.1:0\nroutes:\n  - path: /p\n    provider: paylent\n    secrets: ['${SECRET}', '${PREVIOUS:-}']\n    upstream: http://h/\n",
        )
        .unwrap();
        assert_eq!(c.routes[0].name, "/p");
    }

    #[test]
    fn env_expansion() {
        let env = |k: &str| (k == "A").then(|| "1".to_string());
        assert_eq!(expand_env("x${A}y", &env).unwrap(), "x1y");
        assert_eq!(expand_env("${B:-d}", &env).unwrap(), "d");
        assert!(expand_env("${B}", &env).is_err());
        assert!(expand_env("${A", &env).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(Size::Text("1MiB".into()).bytes().unwrap(), 1 << 20);
        assert_eq!(Size::Text("512 KiB".into()).bytes().unwrap(), 512 << 10);
        assert_eq!(Size::Bytes(7).bytes().unwrap(), 7);
        assert!(Size::Text("1 parsec".into()).bytes().is_err());
    }
}
