//! Routes: a raw route validated into one [`Route`] per variant, by small validators whose
//! errors name the field (`secrets[1]: is empty`, `queue.order_by: …`).

use super::destination::{Destination, HttpSettings, Target as DestTarget};
use super::env::{expand_env, expand_env_noting, is_optional};
use super::parse_net;
use super::raw::{RawForwardSigning, RawQueue, RawRoute, RawSecret, RawSecretFile, Size};
use super::redact_url;
use crate::verify::certificate::CertScheme;
use crate::verify::handshake::VerifyToken;
use crate::verify::mac::{Algorithm, MacKey, SecretEncoding};
use crate::verify::profile::{Profile, ProfileSet};
use crate::verify::{Secret, Verifier};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderName, HeaderValue, Method, Uri};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
pub const DEFAULT_TTL: Duration = Duration::from_secs(72 * 3600);
/// Bytes of a captured body kept by default (`capture_max_bytes`).
pub const DEFAULT_CAPTURE_MAX_BYTES: u64 = 64 * 1024;
/// How long a captured request is kept by default (`capture_ttl`).
pub const DEFAULT_CAPTURE_TTL: Duration = Duration::from_secs(24 * 3600);
/// A secret this close to its `expires_at` is warned about at load and shown in `/api/routes`:
/// a week leaves time to roll the next one out.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where a secret stands against its `expires_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No expiry, or more than [`EXPIRY_WARNING`] away.
    Valid,
    /// Within [`EXPIRY_WARNING`] of it.
    Soon,
    /// Past it: the secret no longer verifies.
    Expired,
}

/// Where a secret expiring at `expires_at` (Unix seconds) stands at `now`.
pub fn expiry(expires_at: Option<u64>, now: u64) -> Expiry {
    match expires_at {
        Some(t) if t <= now => Expiry::Expired,
        Some(t) if t - now <= EXPIRY_WARNING.as_secs() => Expiry::Soon,
        _ => Expiry::Valid,
    }
}

/// Unix seconds as RFC 3339, for messages.
fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

/// One validated route. It holds configuration only: the routing table pairs it with its
/// runtime counters ([`crate::routing::RouteEntry`]).
#[derive(Debug)]
pub struct Route {
    /// Namespace of the route's idempotency keys, and its label in logs and metrics.
    pub name: String,
    pub path: String,
    pub verifier: Verifier,
    /// Where its deliveries go: one or more destinations (`upstream:` is one HTTP(S) one).
    /// Never empty; names unique.
    pub destinations: Box<[Destination]>,
    pub methods: Vec<Method>,
    pub max_body: u64,
    pub upstream_timeout: Duration,
    pub lease: Duration,
    pub ttl: Duration,
    pub public_url: Option<String>,
    pub on_store_error: OnStoreError,
    /// For a variant of a route: the header and the value that select it.
    pub selector: Option<(HeaderName, String)>,
    /// Networks allowed to send; `None` allows all.
    pub allow_ips: Option<Vec<ipnet::IpNet>>,
    /// Re-sign what is forwarded with Standard Webhooks headers under this key.
    pub forward_signing: Option<MacKey>,
    /// Set for `delivery: queued`.
    pub queue: Option<QueueSettings>,
    /// The provider's name as the `Portcullis-Provider` header value, made once.
    pub provider_value: HeaderValue,
    /// The token the profile's GET handshake must carry (Meta's `hub.verify_token`). Its
    /// `Debug` never shows the value.
    pub verify_token: Option<VerifyToken>,
    /// FOR TESTS ONLY (`certificate_test_override`): an extra CA and certificate hosts.
    pub certificate_test: Option<std::sync::Arc<crate::cert_fetch::TestTrust>>,
    /// Which requests are kept whole for the console (`capture:`); `None` for `capture: none`
    /// (the default), so the request path of such a route copies nothing.
    pub capture: Option<CaptureSettings>,
}

impl Route {
    pub fn provider(&self) -> &str {
        &self.verifier.profile().name
    }

    /// The route's one HTTP(S) destination when it has no other and no filter: such a route
    /// forwards as a plain reverse proxy does, the upstream's answer relayed to the provider
    /// (the request path's fast path; a slice length and a tag to check).
    pub fn direct(&self) -> Option<&HttpSettings> {
        match &*self.destinations {
            [Destination { target: DestTarget::Http(h), when: None, .. }] => Some(h),
            _ => None,
        }
    }

    /// The destination named `name`.
    pub fn destination(&self, name: &str) -> Option<&Destination> {
        self.destinations.iter().find(|d| d.name == name)
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
    pub path_and_query: PathAndQuery,
    pub url: String,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("url", &redact_url(&self.url)).finish()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryMode {
    #[default]
    Sync,
    Queued,
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

/// Which of a route's requests are captured (`capture:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaptureMode {
    /// Nothing is captured. The default: a request holds payment data, personal data.
    #[default]
    None,
    /// Requests the gateway refused (a 4xx verdict: signature, timestamp, replay, …).
    Refused,
    /// Refused ones, and those whose delivery failed (upstream error or timeout, 5xx, store
    /// down).
    Failed,
    All,
}

/// A capturing route's settings: which requests, how many body bytes, for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureSettings {
    pub mode: CaptureMode,
    /// Body bytes kept; a longer body is cut here and marked truncated (readable, not
    /// replayable).
    pub max_bytes: u64,
    /// How long the event log keeps the capture.
    pub ttl: Duration,
}

impl CaptureSettings {
    /// Whether a request answered `status` (with this `outcome`) is captured: `refused` for a
    /// 4xx verdict, `failed` for that or a delivery that did not succeed.
    pub fn wants(&self, status: u16, outcome: crate::outcome::Outcome) -> bool {
        let refused = (400..500).contains(&status);
        let failed = refused || status >= 500 || outcome == crate::outcome::Outcome::UpstreamError;
        match self.mode {
            CaptureMode::None => false,
            CaptureMode::Refused => refused,
            CaptureMode::Failed => failed,
            CaptureMode::All => true,
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

/// What validating a route needs from around it.
pub(super) struct Context<'a> {
    pub profiles: &'a ProfileSet,
    /// Resolves `${VAR}`.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The directory relative paths (`secret_files`) are taken from.
    pub base: &'a Path,
    /// Every file read, as it is read (see `Config::files`).
    pub files: &'a std::cell::RefCell<Vec<PathBuf>>,
    /// The variables of secrets that fell back to the default written in the file (a demo
    /// value, public in the README): such a gateway serves on loopback only.
    pub demo_secrets: &'a std::cell::RefCell<Vec<String>>,
    /// Unix seconds secrets' `expires_at` are compared to.
    pub now: u64,
}

/// What differs between the variants of a route: the rest is the route's.
struct Variant<'a> {
    name: String,
    secrets: &'a [RawSecret],
    secret_files: &'a [RawSecretFile],
    /// The variant's upstream; `None`: the route's `destination(s):`.
    upstream: Option<&'a str>,
    selector: Option<(HeaderName, String)>,
}

/// How long a route's deliveries and keys last.
struct Timing {
    upstream_timeout: Duration,
    lease: Duration,
    ttl: Duration,
}

impl RawRoute {
    /// Validates the route; one `Route` per variant when it selects by a header.
    pub(super) fn validate(self, cx: &Context<'_>) -> Result<Vec<Route>, String> {
        if !self.path.starts_with('/') || self.path.contains(['?', '#']) {
            return Err(format!("path: '{}' must start with '/' and hold no query", self.path));
        }
        let name = self.name.clone().unwrap_or_else(|| self.path.clone());
        // Sub-keys of fan-out (`destination::sub_key`) put a U+001F after the route's name:
        // a name holding control characters could make one look like another route's key.
        if name.chars().any(char::is_control) {
            return Err(format!("name: '{}' holds control characters", name.escape_debug()));
        }
        // `upstream_tls:` of the route applies to `upstream:` (and the variants' upstreams);
        // a destination of `destination(s):` has its own.
        let tls = match &self.upstream_tls {
            None => None,
            Some(_) if self.destination.is_some() || self.destinations.is_some() => {
                return Err(
                    "upstream_tls: with destination(s), each destination has its own upstream_tls".into()
                )
            }
            Some(t) => Some(super::destination::load_tls(t, cx).map_err(|e| format!("upstream_tls.{e}"))?),
        };
        match (&self.select_by, self.variants.is_empty()) {
            (None, true) => {
                let given =
                    [self.upstream.is_some(), self.destination.is_some(), self.destinations.is_some()];
                match given.iter().filter(|g| **g).count() {
                    0 => return Err("upstream: is needed (or destination: / destinations:)".into()),
                    1 => {}
                    _ => {
                        return Err("upstream, destination and destinations: give exactly one of them".into())
                    }
                }
                let target = Variant {
                    name,
                    secrets: &self.secrets,
                    secret_files: &self.secret_files,
                    upstream: self.upstream.as_deref(),
                    selector: None,
                };
                Ok(vec![self.build(cx, target, tls.as_ref())?])
            }
            (Some(header), false) => {
                if self.upstream.is_some() || !self.secrets.is_empty() || !self.secret_files.is_empty() {
                    return Err("with select_by, secrets and upstream belong to each of the variants".into());
                }
                if self.destination.is_some() || self.destinations.is_some() {
                    return Err(
                        "with select_by, each variant has its upstream (destination(s) cannot be used)"
                            .into(),
                    );
                }
                let header = HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| format!("select_by: '{header}' is not a header name"))?;
                self.variants
                    .iter()
                    .map(|(value, v)| {
                        let target = Variant {
                            name: format!("{name}[{value}]"),
                            secrets: &v.secrets,
                            secret_files: &v.secret_files,
                            upstream: Some(&v.upstream),
                            selector: Some((header.clone(), value.clone())),
                        };
                        self.build(cx, target, tls.as_ref()).map_err(|e| format!("variants.{value}.{e}"))
                    })
                    .collect()
            }
            _ => Err("select_by and variants go together".into()),
        }
    }

    /// The route, or one of its variants.
    fn build(
        &self,
        cx: &Context<'_>,
        t: Variant<'_>,
        tls: Option<&Arc<crate::upstream_tls::UpstreamTls>>,
    ) -> Result<Route, String> {
        let profile = cx.profiles.get(&self.provider).ok_or_else(|| {
            let names = cx.profiles.names();
            match super::hints::closest(&self.provider, names.iter().copied()) {
                // With a likely match, the full list (100 names) would only bury it.
                Some(m) => format!(
                    "provider: unknown provider '{}': did you mean '{m}'? (`portcullis providers` lists them all)",
                    self.provider
                ),
                None => format!("provider: unknown provider '{}' (known: {})", self.provider, names.join(", ")),
            }
        })?;
        let secrets = match (profile.certificate.as_ref().map(|c| c.scheme), &self.topic_arn) {
            // SNS signs with Amazon's key: what a route pins is the topic it accepts.
            (Some(CertScheme::AmazonSns), Some(arn)) if t.secrets.is_empty() && t.secret_files.is_empty() => {
                let arn = expand_env(arn, cx.env).map_err(|e| format!("topic_arn: {e}"))?;
                if !arn.starts_with("arn:") {
                    return Err(format!("topic_arn: '{arn}' is not an ARN"));
                }
                vec![Secret::from(arn)]
            }
            (Some(CertScheme::AmazonSns), _) => {
                return Err("topic_arn: an amazon-sns route names its topic (and no secrets)".into())
            }
            (_, Some(_)) => return Err("topic_arn: only amazon-sns routes have one".into()),
            _ => secrets(t.secrets, t.secret_files, cx, &t.name)?,
        };
        let certificate_test = match (&self.certificate_test_override, &profile.certificate) {
            (None, _) => None,
            (Some(_), None) => {
                return Err("certificate_test_override: only for certificate-URL providers".into())
            }
            (Some(o), Some(_)) => {
                let trust =
                    crate::cert_fetch::TestTrust::from_file(&cx.base.join(&o.ca_file), o.hosts.clone())
                        .map_err(|e| format!("certificate_test_override.ca_file: {e}"))?;
                tracing::warn!(route = %t.name, hosts = ?o.hosts, "certificate_test_override: this route trusts a test CA for signing certificates");
                Some(std::sync::Arc::new(trust))
            }
        };
        let profile = match (&self.certificate_hosts, &profile.certificate) {
            (None, _) => profile.clone(),
            (Some(_), None) => return Err("certificate_hosts: only for certificate-URL providers".into()),
            (Some(hosts), Some(rule)) => {
                // A route narrows the pinned hosts, never widens them.
                let narrowed = rule.narrowed(hosts).map_err(|e| format!("certificate_hosts: {e}"))?;
                let mut p = (**profile).clone();
                p.certificate = Some(narrowed);
                std::sync::Arc::new(p)
            }
        };
        let profile = &profile;
        let verifier =
            Verifier::new(profile.clone(), &secrets, self.tolerance).map_err(|e| format!("secrets: {e}"))?;
        let destinations = match t.upstream {
            Some(up) => {
                let http = super::destination::http(up, tls.cloned(), cx, "upstream")?;
                vec![Destination { name: "http".into(), target: DestTarget::Http(http), when: None }]
                    .into_boxed_slice()
            }
            None => {
                super::destination::validate(self.destination.as_ref(), self.destinations.as_deref(), cx)?
            }
        };
        let public_url = self
            .public_url
            .as_ref()
            .map(|u| expand_env(u, cx.env).map_err(|e| format!("public_url: {e}")))
            .transpose()?;
        if verifier.needs_url() && public_url.is_none() {
            return Err(format!(
                "public_url: provider '{}' signs the URL it sent to, so the route needs the public URL",
                profile.name
            ));
        }
        let methods = match &self.methods {
            None => profile.methods.clone(),
            Some(ms) => crate::verify::profile::parse_methods(ms)?,
        };
        let max_body = max_body(self.max_body.as_ref())?;
        let Timing { upstream_timeout, lease, ttl } = self.timing(&t.name, profile)?;
        let allow_ips = self.allow_ips.as_deref().map(allow_ips).transpose()?;
        let forward_signing =
            self.forward_signing.as_ref().map(|f| forward_signing(f, cx.env)).transpose()?;
        let queue = self.queue_settings(profile)?;
        let verify_token = self.verify_token(cx, profile)?;
        let capture = self.capture_settings()?;
        let provider_value = HeaderValue::from_str(&profile.name)
            .map_err(|_| format!("provider: '{}' cannot be a header value", profile.name))?;
        Ok(Route {
            provider_value,
            name: t.name,
            path: self.path.clone(),
            verifier,
            destinations,
            methods,
            max_body,
            upstream_timeout,
            lease,
            ttl,
            public_url,
            on_store_error: self.on_store_error,
            selector: t.selector,
            allow_ips,
            forward_signing,
            queue,
            verify_token,
            certificate_test,
            capture,
        })
    }

    /// `capture`, `capture_max_bytes` and `capture_ttl`: `None` for `capture: none`.
    fn capture_settings(&self) -> Result<Option<CaptureSettings>, String> {
        let max_bytes = match &self.capture_max_bytes {
            Some(s) => s.bytes().map_err(|e| format!("capture_max_bytes: {e}"))?,
            None => DEFAULT_CAPTURE_MAX_BYTES,
        };
        if max_bytes == 0 {
            return Err("capture_max_bytes must be more than zero (capture: none captures nothing)".into());
        }
        let ttl = self.capture_ttl.unwrap_or(DEFAULT_CAPTURE_TTL);
        if ttl.is_zero() {
            return Err("capture_ttl must be more than zero (capture: none captures nothing)".into());
        }
        Ok((self.capture != CaptureMode::None).then_some(CaptureSettings {
            mode: self.capture,
            max_bytes,
            ttl,
        }))
    }

    /// `verify_token` (`${VAR}` expanded): needed exactly when the profile's handshake checks one.
    fn verify_token(&self, cx: &Context<'_>, profile: &Profile) -> Result<Option<VerifyToken>, String> {
        let needed = profile.handshake.as_ref().is_some_and(|h| h.needs_verify_token());
        let token = match &self.verify_token {
            None => None,
            Some(raw) => {
                let v = expand_env(raw, cx.env).map_err(|e| format!("verify_token: {e}"))?;
                Some(VerifyToken::new(v).map_err(|e| format!("verify_token: {e}"))?)
            }
        };
        match (needed, &token) {
            (true, None) => Err(format!(
                "verify_token: provider '{}' answers a handshake that checks a verify token; the route needs verify_token",
                profile.name
            )),
            (false, Some(_)) => {
                Err(format!("verify_token: provider '{}' has no handshake that checks one", profile.name))
            }
            _ => Ok(token),
        }
    }

    /// The upstream timeout, the claim's lease and the key's lifetime, which must nest.
    fn timing(&self, name: &str, profile: &Profile) -> Result<Timing, String> {
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
        Ok(Timing { upstream_timeout, lease, ttl })
    }

    /// `delivery` and `queue:` together: the queue settings of a queued route.
    fn queue_settings(&self, profile: &Profile) -> Result<Option<QueueSettings>, String> {
        let q = match (self.delivery, &self.queue) {
            (DeliveryMode::Sync, None) => return Ok(None),
            (DeliveryMode::Sync, Some(_)) => return Err("queue: belongs to delivery: queued".into()),
            (DeliveryMode::Queued, q) => q,
        };
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
                Some(p) => {
                    Some(crate::jsonptr::Pointer::parse(p).map_err(|e| format!("queue.order_by: {e}"))?)
                }
                None => profile.order_by.clone(),
            },
        };
        if settings.max_attempts == 0 || settings.concurrency == 0 {
            return Err("queue: max_attempts and concurrency must be at least 1".into());
        }
        if !(200..300).contains(&settings.accept_status) {
            return Err("queue.accept_status must be a 2xx status".into());
        }
        Ok(Some(settings))
    }
}

/// `secrets` (values, `${VAR}` expanded, with optional expiry) then `secret_files`; at
/// least one, and not all expired.
fn secrets(
    raw: &[RawSecret],
    files: &[RawSecretFile],
    cx: &Context<'_>,
    route: &str,
) -> Result<Vec<Secret>, String> {
    let mut secrets = Vec::with_capacity(raw.len() + files.len());
    for (i, raw) in raw.iter().enumerate() {
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
        let v = expand_env_noting(s, cx.env, &mut cx.demo_secrets.borrow_mut())
            .map_err(|e| format!("secrets[{i}]: {e}"))?;
        // `${VAR:-}` marks an optional secret (a previous one during rotation): dropped
        // when unset. Any other empty secret is an error.
        if v.is_empty() {
            if is_optional(s) {
                continue;
            }
            return Err(format!("secrets[{i}]: is empty"));
        }
        secrets.push(Secret { value: v, expires_at });
    }
    for (i, f) in files.iter().enumerate() {
        let path = cx.base.join(f.path());
        // Watched even when absent: an optional file that appears is a new secret.
        cx.files.borrow_mut().push(path.clone());
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if f.optional() && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("secret_files[{i}]: {}: {e}", path.display())),
        };
        let v = text.trim_end_matches(['\n', '\r']).to_string();
        if v.is_empty() {
            if f.optional() {
                continue;
            }
            return Err(format!("secret_files[{i}]: {} is empty", path.display()));
        }
        secrets.push(Secret { value: v, expires_at: None });
    }
    if secrets.is_empty() {
        return Err("secrets: at least one non-empty secret is needed".into());
    }
    check_expiry(&secrets, cx.now, route)?;
    Ok(secrets)
}

/// Refuses a route whose secrets have all expired (it could verify nothing), and warns about
/// each secret expired or within [`EXPIRY_WARNING`] of expiring. `index` is the secret's place
/// in the route's list, as `/api/routes` numbers them; the value is never logged.
fn check_expiry(secrets: &[Secret], now: u64, route: &str) -> Result<(), String> {
    let states: Vec<_> = secrets.iter().map(|s| expiry(s.expires_at, now)).collect();
    if states.iter().all(|s| *s == Expiry::Expired) {
        let last = secrets.iter().filter_map(|s| s.expires_at).max().unwrap_or_default();
        return Err(format!(
            "secrets: every secret of the route has expired (the last at {}): add a current secret",
            rfc3339(last)
        ));
    }
    for (index, (s, state)) in secrets.iter().zip(states).enumerate() {
        let expires_at = rfc3339(s.expires_at.unwrap_or_default());
        match state {
            Expiry::Soon => {
                tracing::warn!(route, index, %expires_at, "a secret of the route expires within 7 days")
            }
            Expiry::Expired => {
                tracing::warn!(route, index, %expires_at, "a secret of the route has expired and no longer verifies")
            }
            Expiry::Valid => {}
        }
    }
    Ok(())
}

fn max_body(raw: Option<&Size>) -> Result<u64, String> {
    let max_body = match raw {
        Some(s) => s.bytes().map_err(|e| format!("max_body: {e}"))?,
        None => DEFAULT_MAX_BODY,
    };
    if max_body == 0 {
        return Err("max_body must be more than zero".into());
    }
    Ok(max_body)
}

fn allow_ips(list: &[String]) -> Result<Vec<ipnet::IpNet>, String> {
    list.iter().enumerate().map(|(i, n)| parse_net(n).map_err(|e| format!("allow_ips[{i}]: {e}"))).collect()
}

fn forward_signing(f: &RawForwardSigning, env: &dyn Fn(&str) -> Option<String>) -> Result<MacKey, String> {
    let secret = expand_env(&f.secret, env).map_err(|e| format!("forward_signing.secret: {e}"))?;
    if !secret.starts_with("whsec_") {
        return Err("forward_signing.secret: a Standard Webhooks secret starts with whsec_".to_string());
    }
    let key =
        SecretEncoding::WhsecBase64.decode(&secret).map_err(|e| format!("forward_signing.secret {e}"))?;
    Ok(MacKey::new(Algorithm::HmacSha256, &key))
}

/// An `http://` or `https://` URL without a query string: the request's query is appended to
/// its path.
pub(super) fn parse_upstream(s: &str) -> Result<Upstream, String> {
    // Every message names the URL with its password hidden.
    let shown = redact_url(s);
    // `127.0.0.1:3000/x`, `backend:3000`: a URL without its scheme.
    if !s.contains("://") && !s.starts_with('/') && !s.trim().is_empty() {
        return Err(format!("'{shown}' has no scheme: write http://{shown}"));
    }
    let uri: Uri = s.parse().map_err(|e| format!("'{shown}' is not a URL: {e}"))?;
    let scheme = uri.scheme().cloned().ok_or_else(|| format!("'{shown}' has no scheme"))?;
    if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
        return Err(format!("'{shown}': only http:// and https:// upstreams are supported"));
    }
    let authority = uri.authority().cloned().ok_or_else(|| format!("'{shown}' has no host"))?;
    // `http::Uri` takes any digits as a port (`:99999`) and leaves it unread.
    let host_port = authority.as_str().rsplit('@').next().unwrap_or_default();
    let port =
        if host_port.ends_with(']') { None } else { host_port.rfind(':').map(|i| &host_port[i + 1..]) };
    if let Some(port) = port.filter(|p| p.parse::<u16>().is_err()) {
        return Err(format!("'{shown}': port '{port}' is not a port number (0-65535)"));
    }
    if uri.query().is_some() {
        return Err(format!("'{shown}': the upstream URL cannot carry a query string"));
    }
    let path_and_query = PathAndQuery::try_from(uri.path()).map_err(|e| format!("'{shown}': {e}"))?;
    Ok(Upstream { scheme, authority, path: uri.path().to_string(), path_and_query, url: s.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Outcome;

    #[test]
    fn each_capture_mode_keeps_its_outcomes() {
        let s = |mode| CaptureSettings { mode, max_bytes: 1, ttl: Duration::from_secs(1) };
        let cases = [
            (200, Outcome::Forwarded),
            (401, Outcome::InvalidSignature),
            (500, Outcome::UpstreamError),
            (302, Outcome::UpstreamError),
            (503, Outcome::StoreError),
        ];
        let kept = |mode| cases.iter().map(|&(st, o)| s(mode).wants(st, o)).collect::<Vec<_>>();
        assert_eq!(kept(CaptureMode::None), [false; 5]);
        assert_eq!(kept(CaptureMode::Refused), [false, true, false, false, false]);
        assert_eq!(kept(CaptureMode::Failed), [false, true, true, true, true]);
        assert_eq!(kept(CaptureMode::All), [true; 5]);
    }

    #[test]
    fn expiring_secrets_are_warned_about_without_their_value() {
        #[derive(Clone, Default)]
        struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber =
            tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let now = 1_796_083_200; // 2026-12-01T00:00:00Z
        let secrets = [
            Secret { value: "keep-me-secret".into(), expires_at: Some(now + 86_400) },
            Secret { value: "other".into(), expires_at: None },
        ];
        tracing::subscriber::with_default(subscriber, || check_expiry(&secrets, now, "pay")).unwrap();
        let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("expires within 7 days"), "{log}");
        assert!(log.contains("route=\"pay\"") || log.contains("route=pay"), "{log}");
        assert!(log.contains("index=0") && log.contains("2026-12-02T00:00:00Z"), "{log}");
        assert!(!log.contains("keep-me-secret") && !log.contains("index=1"), "{log}");
        let all_expired = [Secret { value: "x".into(), expires_at: Some(now) }];
        assert!(check_expiry(&all_expired, now, "pay").unwrap_err().contains("2026-12-01T00:00:00Z"));
    }
}
