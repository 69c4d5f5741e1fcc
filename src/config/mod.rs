//! Gateway configuration: raw YAML (unknown keys refused, `${VAR}` expanded) validated into a
//! [`Config`] that cannot hold an invalid route.
//!
//! # Layout
//! - `raw`: the YAML as written (serde types, unknown keys refused);
//! - `env`: `${VAR}` expansion;
//! - `store`, `limits`, `route`: each validates its part into the types below;
//! - this file: [`Config`], the whole, and the helpers the parts share.
//!
//! Validated types hold configuration only, no runtime state: the routing table
//! ([`crate::routing`]) pairs each route with its counters.

mod admin;
pub mod destination;
mod env;
mod hints;
mod limits;
mod locate;
mod raw;
mod route;
mod store;
mod telemetry;

pub use admin::AdminTokens;
pub use env::expand_env;
pub use limits::Limits;
pub use route::{
    expiry, DeliveryMode, Expiry, OnStoreError, QueueSettings, Route, Upstream, DEFAULT_LEASE,
    DEFAULT_MAX_BODY, DEFAULT_TTL, DEFAULT_UPSTREAM_TIMEOUT, EXPIRY_WARNING,
};
pub use store::{queue_path, StoreConfig, StoreKind, DEFAULT_MAX_KEYS, DEFAULT_STORE_TIMEOUT};
pub use telemetry::TelemetryConfig;

use crate::clock::Clock;
use crate::verify::profile::{yaml_message, ProfileSet};
use raw::RawConfig;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Config {
    /// Every file this configuration was read from besides its own: `secret_files`, the TLS
    /// certificate and key. A change to one of them is reloaded (`reload.rs`).
    pub files: Vec<std::path::PathBuf>,
    pub listen: SocketAddr,
    pub admin: Option<SocketAddr>,
    /// The bearer tokens the admin API needs; none: it is open (loopback listeners only).
    pub admin_tokens: AdminTokens,
    /// Where delivery events are kept for the admin API, and for how long.
    pub event_log: EventLogConfig,
    /// Where trace spans are exported; none: trace context is only passed on.
    pub telemetry: Option<TelemetryConfig>,
    pub tls: Option<TlsFiles>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub store: StoreConfig,
    pub limits: Limits,
    /// Every route; a route with `variants` appears once per variant, with a `selector`.
    pub routes: Vec<Arc<Route>>,
    pub profiles: ProfileSet,
}

/// The delivery event log (`event_log:`). Its backend follows the store's kind: the memory
/// store keeps a ring per instance, the Redis kinds a Redis Stream the whole fleet shares,
/// the embedded store a redb file beside its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLogConfig {
    /// Events kept at most (at least 1); the oldest go first.
    pub keep: usize,
    /// Events older than this are dropped.
    pub max_age: std::time::Duration,
    /// False: nothing is recorded, and the console's listings are empty. For measuring what
    /// the log costs the request path.
    pub enabled: bool,
}

impl Default for EventLogConfig {
    fn default() -> Self {
        EventLogConfig {
            keep: crate::event_log::DEFAULT_KEEP,
            max_age: crate::event_log::DEFAULT_MAX_AGE,
            enabled: true,
        }
    }
}

impl raw::RawEventLog {
    fn validate(self) -> Result<EventLogConfig, String> {
        let d = EventLogConfig::default();
        let enabled = self.enabled.unwrap_or(true);
        let keep = match self.keep {
            Some(0) if enabled => return Err("event_log.keep: must be at least 1".into()),
            Some(n) => n.max(1),
            None => d.keep,
        };
        let max_age = match self.max_age {
            Some(a) if a < std::time::Duration::from_secs(1) => {
                return Err("event_log.max_age: must be at least 1s".into())
            }
            Some(a) => a,
            None => d.max_age,
        };
        Ok(EventLogConfig { keep, max_age, enabled })
    }
}

/// The certificate and key of the webhook listener, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
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
        Config::from_yaml_at(file, text, base, env, &Clock::System)
    }

    /// [`Config::from_yaml`] with the time secrets' `expires_at` are compared to taken from
    /// `clock` (tests fix it).
    pub fn from_yaml_at(
        file: &str,
        text: &str,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        clock: &Clock,
    ) -> Result<Config, ConfigError> {
        let err = |message: String| ConfigError { file: file.to_string(), message };
        let raw: RawConfig = serde_yaml_ng::from_str(text).map_err(|e| err(hints::hint(yaml_message(&e))))?;
        raw.validate(base, env, clock.now()).map_err(|e| {
            // A semantic error names its line as a syntax error does (looked up only now: the
            // text is parsed a second time only when there is an error to place).
            let e = hints::hint(e);
            err(match locate::line_of_error(text, &e) {
                Some(line) => format!("line {line}: {e}"),
                None => e,
            })
        })
    }

    /// The settings `new` changes that only a restart applies (a reload keeps the running
    /// ones), compared by value.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.listen != new.listen {
            changed.push("listen");
        }
        if self.admin != new.admin {
            changed.push("admin");
        }
        if self.event_log != new.event_log {
            changed.push("event_log");
        }
        if self.telemetry != new.telemetry {
            changed.push("telemetry");
        }
        if self.store != new.store {
            changed.push("store");
        }
        if self.limits != new.limits {
            changed.push("limits");
        }
        changed
    }
}

/// `url` with the password of its user information, if any, and the values of its
/// credential-named query parameters replaced by `***`: the one way every URL is printed
/// (`check`, `serve`, `Debug`).
pub fn redact_url(url: &str) -> std::borrow::Cow<'_, str> {
    let shown = redact_userinfo(url);
    match redact_query(&shown) {
        Some(q) => q.into(),
        None => shown,
    }
}

fn redact_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    let Some(start) = url.find("://").map(|i| i + 3) else { return url.into() };
    let authority_end = url[start..].find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    let Some(at) = url[start..authority_end].rfind('@').map(|i| start + i) else {
        // A password holding an unescaped `/`, `?` or `#` (`amqp://u:pa#ss@host`) ends the
        // authority early for a parser, but it is still a password to the person who wrote
        // it. When what precedes that delimiter reads `user:something` and not `host:port`,
        // and an `@` follows, everything before the last `@` is hidden.
        let auth = &url[start..authority_end];
        let user_colon = auth.rfind(':').is_some_and(|i| !auth[i + 1..].bytes().all(|b| b.is_ascii_digit()));
        return match url[authority_end..].rfind('@') {
            Some(i) if user_colon => format!("{}***{}", &url[..start], &url[authority_end + i..]).into(),
            _ => url.into(),
        };
    };
    match url[start..at].find(':') {
        Some(colon) => format!("{}:***{}", &url[..start + colon], &url[at..]).into(),
        // A user name alone is often a token (`redis://token@host`): hidden too.
        None => format!("{}***{}", &url[..start], &url[at..]).into(),
    }
}

/// Query parameters whose name holds one of these (ASCII case-insensitive) carry a
/// credential by the usual naming (`api_key`, `access_token`, `sig`, `password`...): their
/// values are hidden. A rule on names only: a credential under another name is not found.
const SECRET_QUERY_NAMES: [&str; 6] = ["token", "key", "secret", "pass", "sig", "auth"];

/// `url` with the values of its credential-named query parameters replaced by `***`;
/// `None` when it has none.
fn redact_query(url: &str) -> Option<String> {
    let end = url.find('#').unwrap_or(url.len());
    let q = url[..end].find('?')? + 1;
    let secret = |name: &str| {
        let name = name.to_ascii_lowercase();
        SECRET_QUERY_NAMES.iter().any(|s| name.contains(s))
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..q]);
    let mut changed = false;
    for (i, pair) in url[q..end].split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, value)) if !value.is_empty() && secret(name) => {
                out.push_str(name);
                out.push_str("=***");
                changed = true;
            }
            _ => out.push_str(pair),
        }
    }
    out.push_str(&url[end..]);
    changed.then_some(out)
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

impl RawConfig {
    fn validate(self, base: &Path, env: &dyn Fn(&str) -> Option<String>, now: u64) -> Result<Config, String> {
        let listen_s = expand_env(&self.listen, env).map_err(|e| format!("listen: {e}"))?;
        let listen: SocketAddr = listen_s
            .parse()
            .map_err(|_| format!("listen: '{listen_s}' is not an address such as 0.0.0.0:8080"))?;

        let mut profiles = ProfileSet::builtin();
        if let Some(dir) = &self.providers_dir {
            profiles.extend_from_dir(&base.join(dir)).map_err(|e| format!("providers_dir: {e}"))?;
        }

        let (admin, admin_tokens) = match self.admin {
            Some(a) => {
                let (addr, tokens) = admin::validate(a, env)?;
                (Some(addr), tokens)
            }
            None => (None, AdminTokens::default()),
        };
        let event_log = self.event_log.validate()?;
        let telemetry = self.telemetry.map(|t| telemetry::validate(t, env)).transpose()?;
        let tls =
            self.tls.map(|t| TlsFiles { cert_file: base.join(t.cert_file), key_file: base.join(t.key_file) });
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, n)| parse_net(n).map_err(|e| format!("trusted_proxies[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let store = self.store?.validate(base, env)?;
        let limits = self.limits.validate()?;

        if self.routes.is_empty() {
            return Err("routes: at least one route is needed".into());
        }
        let files = std::cell::RefCell::new(Vec::new());
        let demo_secrets = std::cell::RefCell::new(Vec::new());
        let cx = route::Context {
            profiles: &profiles,
            env,
            base,
            files: &files,
            demo_secrets: &demo_secrets,
            now,
        };
        let mut paths = HashSet::new();
        let mut names = HashSet::new();
        let mut routes = Vec::with_capacity(self.routes.len());
        for (i, r) in self.routes.into_iter().enumerate() {
            let at = format!("routes[{i}]");
            let variants = r.validate(&cx).map_err(|e| format!("{at} (route): {e}"))?;
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
        let mut demo = demo_secrets.into_inner();
        if !demo.is_empty() && !listen.ip().is_loopback() {
            demo.sort();
            demo.dedup();
            return Err(format!(
                "listen: {listen} is reachable from other hosts, but secrets fall back to the values \
                 written in the configuration because {} {} unset; those are demo values anyone can \
                 read: set {}, or listen on 127.0.0.1",
                demo.join(", "),
                if demo.len() == 1 { "is" } else { "are" },
                if demo.len() == 1 { "it" } else { "them" },
            ));
        }
        let mut files = files.into_inner();
        if let Some(t) = &tls {
            files.extend([t.cert_file.clone(), t.key_file.clone()]);
        }
        files.sort();
        files.dedup();
        Ok(Config {
            files,
            listen,
            admin,
            admin_tokens,
            event_log,
            telemetry,
            tls,
            trusted_proxies,
            store,
            limits,
            routes,
            profiles,
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
    fn optional_secret_files_may_be_absent_and_are_watched() {
        let dir = std::env::temp_dir().join(format!("portcullis-sf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("current"), "whsec_current\n").unwrap();
        let yaml = |previous: &str| {
            format!(
                "listen: 127.0.0.1:0\nroutes:\n  - path: /p\n    provider: paylent\n    secret_files:\n      - current\n      - {previous}\n    upstream: http://127.0.0.1:3000/x\n"
            )
        };
        let env = |_: &str| None;
        let load = |y: String| Config::from_yaml("gw.yaml", &y, &dir, &env);
        let c = load(yaml("{path: previous, optional: true}")).unwrap();
        assert_eq!(c.routes[0].verifier.secret_expiries().len(), 1);
        assert_eq!(c.files, vec![dir.join("current"), dir.join("previous")], "the absent one is watched");
        let e = load(yaml("previous")).unwrap_err().message;
        assert!(e.contains("secret_files[1]") && e.contains("previous"), "{e}");
        std::fs::write(dir.join("previous"), "whsec_previous").unwrap();
        assert_eq!(
            load(yaml("{path: previous, optional: true}")).unwrap().routes[0]
                .verifier
                .secret_expiries()
                .len(),
            2
        );
        assert!(load(yaml("{path: previous, optonal: true}")).is_err(), "unknown keys refused");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn demo_secrets_serve_on_loopback_only() {
        let with = |listen: &str, secret: &str| {
            load(&format!(
                "listen: {listen}\nroutes:\n  - path: /p\n    provider: paylent\n    secrets: ['{secret}', '${{OLD:-}}']\n    upstream: http://127.0.0.1:3000/x\n"
            ))
        };
        let e = with("0.0.0.0:8080", "${DEMO_SECRET:-whsec_try}").unwrap_err().message;
        assert!(
            e.contains("0.0.0.0:8080") && e.contains("DEMO_SECRET is unset") && e.contains("demo"),
            "{e}"
        );
        assert!(with("127.0.0.1:8080", "${DEMO_SECRET:-whsec_try}").is_ok(), "a demo on loopback");
        assert!(with("'[::1]:8080'", "${DEMO_SECRET:-whsec_try}").is_ok());
        assert!(with("0.0.0.0:8080", "${SECRET:-whsec_try}").is_ok(), "the variable is set");
        assert!(with("0.0.0.0:8080", "${SECRET}").is_ok());
    }

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
        // A password with an unescaped `#`, `/` or `?` is still hidden.
        assert_eq!(redact_url("amqp://bob:pa#ss-hunter4@h:5672/%2f"), "amqp://***@h:5672/%2f");
        assert_eq!(redact_url("nats://al:pa/ss-hunter5@h:4222"), "nats://***@h:4222");
        assert_eq!(redact_url("nats://al:pa?ss@h"), "nats://***@h");
        assert_eq!(redact_url("http://host:8080/p@x"), "http://host:8080/p@x");
        assert_eq!(
            redact_url("https://u:p@h/x?a=1&api_key=abc&Access_Token=t&sig=&SIGNATURE=s#f?key=z"),
            "https://u:***@h/x?a=1&api_key=***&Access_Token=***&sig=&SIGNATURE=***#f?key=z"
        );
        assert!(matches!(redact_url("http://h/x?page=2"), std::borrow::Cow::Borrowed(_)));
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
    fn each_store_kind_takes_its_own_keys() {
        let with_store =
            |store: &str| load(&format!("listen: 127.0.0.1:0\nstore: {store}\nroutes:\n{ROUTE}"));
        let c = with_store("{max_keys: 5}").unwrap();
        assert_eq!(c.store.kind, StoreKind::Memory { max_keys: 5 }, "memory without a kind");
        let c = with_store("{kind: redis, url: 'redis://h:6379', key_prefix: 'p:', timeout: 1s}").unwrap();
        assert_eq!(c.store.kind, StoreKind::Redis { url: "redis://h:6379".into() });
        assert_eq!((c.store.key_prefix.as_str(), c.store.timeout), ("p:", std::time::Duration::from_secs(1)));
        let c = with_store("{kind: redis-cluster, nodes: ['redis://a:1']}").unwrap();
        assert_eq!(c.store.key_prefix, "portcullis:");
        let c = with_store("{kind: embedded, path: claims.redb}").unwrap();
        assert_eq!(c.store.kind, StoreKind::Embedded { path: Path::new(".").join("claims.redb") });
        for (store, want) in [
            ("{kind: memory, url: 'redis://h'}", "store (kind 'memory'): unknown field `url`"),
            ("{url: 'redis://h'}", "store (kind 'memory'): unknown field `url`"),
            ("{kind: redis, path: x, url: 'redis://h'}", "store (kind 'redis'): unknown field `path`"),
            ("{kind: embedded, nodes: [a], path: x}", "store (kind 'embedded'): unknown field `nodes`"),
            ("{kind: redis}", "store (kind 'redis'): missing field `url`"),
            ("{kind: redis-cluster}", "store (kind 'redis-cluster'): missing field `nodes`"),
            ("{kind: embedded}", "store (kind 'embedded'): missing field `path`"),
            ("{kind: mongo}", "store.kind: unknown variant `mongo`"),
            ("{kind: redis, url: 'http://h'}", "store.url must start with redis://"),
            ("{kind: redis-cluster, nodes: []}", "store.nodes: at least one node is needed"),
            ("{max_keys: 0}", "store.max_keys must be at least 1"),
            ("{timeout: 0s}", "store.timeout must be more than zero"),
            ("7", "store: a mapping is needed"),
            ("{kind: 5}", "store.kind: invalid type"),
        ] {
            let e = with_store(store).unwrap_err().to_string();
            assert!(e.contains(want), "{store}: {e:?} should contain {want:?}");
        }
    }

    #[test]
    fn restart_only_changes_are_compared_by_value() {
        let a = load(&format!("listen: 127.0.0.1:0\nroutes:\n{ROUTE}")).unwrap();
        let b = load(&format!("listen: 127.0.0.1:0\nroutes:\n{ROUTE}")).unwrap();
        assert!(a.restart_only_changes(&b).is_empty());
        let c = load(&format!("listen: 127.0.0.1:1\nstore: {{max_keys: 9}}\nroutes:\n{ROUTE}")).unwrap();
        assert_eq!(a.restart_only_changes(&c), ["listen", "store"]);
    }
}
