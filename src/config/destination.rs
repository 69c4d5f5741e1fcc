//! A route's destinations as configured: `upstream:` (one HTTP(S) upstream, the short form),
//! `destination:` (one of any kind) or `destinations:` (several: fan-out), each with an
//! optional `when:` filter on the body.
//!
//! ```yaml
//! destinations:
//!   - name: billing                      # unique in the route; remembered per delivery
//!     upstream: https://billing.internal/hooks
//!     upstream_tls: {ca_file: ca.pem, client_cert_file: c.pem, client_key_file: k.pem}
//!     when: {pointer: /type, in: [payment.succeeded, refund.created]}
//!   - name: bus
//!     nats: {url: "nats://127.0.0.1:4222", subject: webhooks.stripe, headers: true}
//!   - name: audit
//!     amqp: {url: "amqp://guest:guest@127.0.0.1:5672/%2f", exchange: webhooks, routing_key: stripe}
//! ```
//!
//! The validated types live here; the raw (serde) ones and their validation are the config
//! module's. The runtime side (connections, publishing) is `crate::destination`.

use super::env::expand_env;
use super::raw::{RawDestination, RawUpstreamTls, RawWhen};
use super::redact_url;
use super::route::{parse_upstream, Context, Upstream};
use crate::upstream_tls::{TlsFiles, UpstreamTls};
use std::sync::Arc;

/// One validated destination of a route.
#[derive(Debug)]
pub struct Destination {
    /// Unique in its route: the name a partial failure remembers it by, shown in logs and the
    /// console. Defaults to the kind (`http`, `nats`, `amqp`) for a route's only destination.
    pub name: String,
    pub target: Target,
    /// Deliveries whose body does not match are not sent here (the destination does not want
    /// them); `None` wants every delivery.
    pub when: Option<When>,
}

/// What kind of destination, with its settings.
#[derive(Debug)]
pub enum Target {
    Http(HttpSettings),
    Nats(NatsSettings),
    Amqp(AmqpSettings),
}

/// An HTTP(S) upstream.
#[derive(Debug)]
pub struct HttpSettings {
    pub upstream: Upstream,
    /// `upstream_tls:`: a private CA, a client certificate (mTLS), a server name. `None` for
    /// `http://`, and for `https://` verified against the system's roots.
    pub tls: Option<Arc<crate::upstream_tls::UpstreamTls>>,
}

/// `nats: {url, subject, headers}`.
#[derive(Debug, Clone)]
pub struct NatsSettings {
    /// `nats://host:port` (credentials in the URL allowed; never shown).
    pub url: String,
    pub subject: String,
    /// Whether the request's (prepared) headers go along as NATS headers (default true);
    /// the `Portcullis-*` ones always do.
    pub headers: bool,
}

/// `amqp: {url, exchange, routing_key}`.
#[derive(Debug, Clone)]
pub struct AmqpSettings {
    /// `amqp://user:pass@host:port/vhost` (never shown with its password).
    pub url: String,
    /// The exchange (`""`, the default exchange, routes by queue name).
    pub exchange: String,
    pub routing_key: String,
}

/// `when: {pointer, in}`: the value at the JSON pointer equals one of `in` (JSON equality:
/// a string matches a string, a number a number). A body that is not JSON, or lacks the
/// pointer, does not match.
#[derive(Debug, Clone)]
pub struct When {
    pub pointer: crate::jsonptr::Pointer,
    pub any_of: Vec<serde_json::Value>,
}

impl Target {
    /// `http`, `nats` or `amqp`: the default name of a route's only destination.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Http(_) => "http",
            Target::Nats(_) => "nats",
            Target::Amqp(_) => "amqp",
        }
    }

    /// The destination's server URL, its password hidden.
    pub fn shown_url(&self) -> String {
        let url = match self {
            Target::Http(h) => &h.upstream.url,
            Target::Nats(n) => &n.url,
            Target::Amqp(a) => &a.url,
        };
        redact_url(url).into_owned()
    }
}

impl When {
    /// Whether `body` is wanted: the value at the pointer is one of `any_of`. The pointer's
    /// scalar is compared as text (a string unescaped, a number or boolean as written), so
    /// `in: [1]` also takes the string `"1"`.
    pub fn wants(&self, body: &[u8]) -> bool {
        let Ok(Some(found)) = self.pointer.lookup(body) else { return false };
        self.any_of.iter().any(|v| match v {
            serde_json::Value::String(s) => *s == found,
            serde_json::Value::Number(n) => n.to_string() == found,
            serde_json::Value::Bool(b) => (if *b { "true" } else { "false" }) == found,
            _ => false,
        })
    }
}

impl Destination {
    /// One line for `check` and logs: `name: kind url` and the subject or exchange and routing
    /// key, and the filter (the URL's password hidden).
    pub fn describe(&self) -> String {
        let mut out = format!("{}: {} {}", self.name, self.target.kind(), self.target.shown_url());
        match &self.target {
            Target::Http(h) if h.tls.is_some() => out.push_str(" (upstream_tls)"),
            Target::Http(_) => {}
            Target::Nats(n) => out.push_str(&format!(" subject {}", n.subject)),
            Target::Amqp(a) => {
                out.push_str(&format!(" exchange '{}' routing_key '{}'", a.exchange, a.routing_key))
            }
        }
        if let Some(w) = &self.when {
            let values: Vec<String> = w.any_of.iter().map(|v| v.to_string()).collect();
            out.push_str(&format!(" when {} in [{}]", w.pointer, values.join(", ")));
        }
        out
    }

    /// The destination as `/api/routes` shows it.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "name": self.name,
            "kind": self.target.kind(),
            "url": self.target.shown_url(),
        });
        match &self.target {
            Target::Http(h) => v["upstream_tls"] = serde_json::Value::Bool(h.tls.is_some()),
            Target::Nats(n) => {
                v["subject"] = n.subject.clone().into();
                v["headers"] = n.headers.into();
            }
            Target::Amqp(a) => {
                v["exchange"] = a.exchange.clone().into();
                v["routing_key"] = a.routing_key.clone().into();
            }
        }
        if let Some(w) = &self.when {
            v["when"] = serde_json::json!({"pointer": w.pointer.as_str(), "in": w.any_of});
        }
        v
    }

    /// Whether this destination wants a delivery with this body (no filter: every one).
    pub fn wants(&self, body: &[u8]) -> bool {
        self.when.as_ref().is_none_or(|w| w.wants(body))
    }
}

/// `upstream_tls:` loaded: its files resolved against the configuration's directory and
/// watched (a renewed certificate reloads the configuration).
pub(super) fn load_tls(raw: &RawUpstreamTls, cx: &Context<'_>) -> Result<Arc<UpstreamTls>, String> {
    let resolve = |p: &Option<std::path::PathBuf>| {
        p.as_ref().map(|p| {
            let path = cx.base.join(p);
            cx.files.borrow_mut().push(path.clone());
            path
        })
    };
    let (ca, cert, key) =
        (resolve(&raw.ca_file), resolve(&raw.client_cert_file), resolve(&raw.client_key_file));
    let server_name = raw
        .server_name
        .as_ref()
        .map(|s| expand_env(s, cx.env).map_err(|e| format!("server_name: {e}")))
        .transpose()?;
    let files = TlsFiles {
        ca_file: ca.as_deref(),
        client_cert_file: cert.as_deref(),
        client_key_file: key.as_deref(),
        server_name: server_name.as_deref(),
    };
    UpstreamTls::load(&files).map(Arc::new)
}

/// An HTTP(S) destination: `raw` (`${VAR}` expanded) parsed; `upstream_tls` only for
/// `https://`. `at` names the field in errors.
pub(super) fn http(
    raw: &str,
    tls: Option<Arc<UpstreamTls>>,
    cx: &Context<'_>,
    at: &str,
) -> Result<HttpSettings, String> {
    let up = expand_env(raw, cx.env).map_err(|e| format!("{at}: {e}"))?;
    let upstream = parse_upstream(&up).map_err(|e| format!("{at}: {e}"))?;
    if tls.is_some() && upstream.scheme != http::uri::Scheme::HTTPS {
        return Err(format!(
            "upstream_tls: '{}' is an http:// upstream; upstream_tls is for https:// ones",
            redact_url(&upstream.url)
        ));
    }
    Ok(HttpSettings { upstream, tls })
}

/// `destination:` or `destinations:` (exactly one given): validated, names unique.
pub(super) fn validate(
    one: Option<&RawDestination>,
    many: Option<&[RawDestination]>,
    cx: &Context<'_>,
) -> Result<Box<[Destination]>, String> {
    let (list, field): (&[RawDestination], &str) = match (one, many) {
        (Some(d), None) => (std::slice::from_ref(d), "destination"),
        (None, Some(l)) => (l, "destinations"),
        _ => return Err("destination and destinations: give one of them".into()),
    };
    if list.is_empty() {
        return Err("destinations: at least one destination is needed".into());
    }
    let mut out: Vec<Destination> = Vec::with_capacity(list.len());
    for (i, raw) in list.iter().enumerate() {
        let at = if field == "destination" { field.to_string() } else { format!("{field}[{i}]") };
        let d = destination(raw, cx, list.len() > 1).map_err(|e| format!("{at}.{e}"))?;
        if out.iter().any(|o| o.name == d.name) {
            return Err(format!("{at}.name: '{}' is used by another destination of the route", d.name));
        }
        out.push(d);
    }
    Ok(out.into_boxed_slice())
}

/// One raw destination; `named`: the route has several, so each needs its name.
fn destination(raw: &RawDestination, cx: &Context<'_>, named: bool) -> Result<Destination, String> {
    let kinds = [raw.upstream.is_some(), raw.nats.is_some(), raw.amqp.is_some()];
    match kinds.iter().filter(|k| **k).count() {
        1 => {}
        0 => return Err("upstream: is needed (or nats: / amqp:): a destination has one kind".into()),
        _ => return Err("upstream, nats, amqp: a destination has exactly one of them".into()),
    }
    if raw.upstream_tls.is_some() && raw.upstream.is_none() {
        return Err("upstream_tls: only for an upstream: destination".into());
    }
    let target = if let Some(up) = &raw.upstream {
        let tls = raw
            .upstream_tls
            .as_ref()
            .map(|t| load_tls(t, cx).map_err(|e| format!("upstream_tls.{e}")))
            .transpose()?;
        Target::Http(http(up, tls, cx, "upstream")?)
    } else if let Some(n) = &raw.nats {
        let url = expand_env(&n.url, cx.env).map_err(|e| format!("nats.url: {e}"))?;
        broker_url(&url, &["nats", "tls"]).map_err(|e| format!("nats.url: {e}"))?;
        subject(&n.subject).map_err(|e| format!("nats.subject: {e}"))?;
        Target::Nats(NatsSettings { url, subject: n.subject.clone(), headers: n.headers })
    } else if let Some(a) = &raw.amqp {
        let url = expand_env(&a.url, cx.env).map_err(|e| format!("amqp.url: {e}"))?;
        broker_url(&url, &["amqp", "amqps"]).map_err(|e| format!("amqp.url: {e}"))?;
        if a.routing_key.len() > 255 || a.exchange.len() > 255 {
            return Err("amqp: exchange and routing_key are at most 255 bytes".into());
        }
        Target::Amqp(AmqpSettings { url, exchange: a.exchange.clone(), routing_key: a.routing_key.clone() })
    } else {
        unreachable!("one kind, checked above")
    };
    let name = match &raw.name {
        Some(n) => {
            check_name(n).map_err(|e| format!("name: {e}"))?;
            n.clone()
        }
        None if named => {
            return Err("name: is needed: a route with several destinations names each one".into())
        }
        None => target.kind().to_string(),
    };
    let when = raw.when.as_ref().map(|w| when(w).map_err(|e| format!("when.{e}"))).transpose()?;
    Ok(Destination { name, target, when })
}

/// Destination names are remembered in idempotency sub-keys and queued deliveries, and shown
/// in logs: letters, digits, `-`, `_` and `.`, up to 64.
fn check_name(n: &str) -> Result<(), String> {
    if n.is_empty() || n.len() > 64 {
        return Err(format!("'{}' must be 1 to 64 characters", n.escape_debug()));
    }
    if !n.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err(format!("'{}' may hold only letters, digits, '-', '_' and '.'", n.escape_debug()));
    }
    Ok(())
}

/// A broker's URL: one of `schemes`, with a host.
fn broker_url(url: &str, schemes: &[&str]) -> Result<(), String> {
    let shown = redact_url(url);
    let list = schemes.iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(" or ");
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("'{shown}' has no scheme: write {list}…"));
    };
    if !schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
        return Err(format!("'{shown}': the scheme must be {list}"));
    }
    // A user name or password must be percent-encoded: an unescaped `/`, `?` or `#` before
    // the `@` ends the authority early, so the broker's client would read a different host
    // and the password could be shown as part of the URL. Said without the URL.
    if let Some(at) = rest.rfind('@') {
        if rest[..at].contains(['/', '?', '#']) {
            return Err("the user name or password holds an unescaped '/', '?' or '#': percent-encode it (%2F, %3F, %23)".into());
        }
    }
    let host = rest.split(['/', '?']).next().unwrap_or_default().rsplit('@').next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("'{shown}' has no host"));
    }
    Ok(())
}

/// A NATS subject to publish to: tokens separated by `.`, none empty, no whitespace, no
/// wildcard (`*`, `>`): a publish names one subject.
fn subject(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("'{}' holds whitespace", s.escape_debug()));
    }
    if s.split('.').any(|t| t == "*" || t == ">") || s.contains(['*', '>']) {
        return Err(format!("'{s}' holds a wildcard ('*', '>'): a delivery is published to one subject"));
    }
    if s.split('.').any(str::is_empty) {
        return Err(format!("'{s}' has an empty token (a leading, trailing or doubled '.')"));
    }
    Ok(())
}

fn when(w: &RawWhen) -> Result<When, String> {
    let pointer = crate::jsonptr::Pointer::parse(&w.pointer).map_err(|e| format!("pointer: {e}"))?;
    if pointer.is_wildcard() {
        return Err(format!("pointer: '{}' holds a wildcard; a filter reads one value", w.pointer));
    }
    if w.any_of.is_empty() {
        return Err("in: list at least one value".into());
    }
    for (i, v) in w.any_of.iter().enumerate() {
        if !matches!(
            v,
            serde_json::Value::String(_) | serde_json::Value::Number(_) | serde_json::Value::Bool(_)
        ) {
            return Err(format!("in[{i}]: {v} is not a string, number or boolean"));
        }
    }
    Ok(When { pointer, any_of: w.any_of.clone() })
}
