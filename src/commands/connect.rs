//! `portcullis check --connect`: reach what the configuration names — the store and every
//! destination — and say, one line per check, what was found.
//!
//! A broker is pinged (`Nats::ping`, `Amqp::ping`). An upstream is tried with a TCP connect to its host and port and nothing is sent: a HEAD
//! or OPTIONS request could trigger work at an upstream that treats any request as an event,
//! and a connect already finds the usual faults (wrong host, wrong port, firewall, DNS).

use crate::config::{redact_url, Config, StoreKind};
use crate::store_conn::{bounded, StoreError};
use std::time::{Duration, Instant};

/// The longest an upstream connect is waited for: a route's timeout bounds a whole delivery,
/// and `check` should answer promptly.
const UPSTREAM_CONNECT_LIMIT: Duration = Duration::from_secs(5);

/// One check's outcome: what was checked, and `Ok(elapsed)` or the reason it failed.
pub struct Found {
    pub what: String,
    pub result: Result<Duration, String>,
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.result {
            Ok(took) => write!(f, "{}: ok ({} ms)", self.what, took.as_millis()),
            Err(reason) => write!(f, "{}: {reason}", self.what),
        }
    }
}

/// Runs every check concurrently; the results come back in the configuration's order (the
/// store first, then each distinct destination: an upstream by scheme, host and port, named
/// without its path, so routes to the same host share one check; a broker by URL).
pub async fn reach(config: &Config) -> Vec<Found> {
    use crate::config::destination::Target;
    let store = ping_store(config);
    let brokers = crate::destination::Brokers::new(config.limits.upstream_connect_timeout);
    let mut seen = std::collections::HashSet::new();
    let mut checks: Vec<futures_util::future::BoxFuture<'_, Found>> = Vec::new();
    for r in &config.routes {
        let limit = r.upstream_timeout.min(UPSTREAM_CONNECT_LIMIT);
        for d in r.destinations.iter() {
            match &d.target {
                Target::Http(h) => {
                    let u = &h.upstream;
                    if !seen.insert(format!("{}://{}", u.scheme, u.authority)) {
                        continue;
                    }
                    let https = u.scheme == http::uri::Scheme::HTTPS;
                    let port = u.authority.port_u16().unwrap_or(if https { 443 } else { 80 });
                    checks.push(Box::pin(connect(
                        format!("upstream {}", redact_url(&format!("{}://{}", u.scheme, u.authority))),
                        u.authority.host().trim_start_matches('[').trim_end_matches(']').to_owned(),
                        port,
                        limit,
                    )));
                }
                Target::Nats(n) if seen.insert(n.url.clone()) => {
                    let nats = brokers.nats(&n.url);
                    let what = format!("nats {}", redact_url(&n.url));
                    checks.push(Box::pin(async move { ping(what, nats.ping(limit)).await }));
                }
                Target::Amqp(a) if seen.insert(a.url.clone()) => {
                    let amqp = brokers.amqp(&a.url);
                    let what = format!("amqp {}", redact_url(&a.url));
                    checks.push(Box::pin(async move { ping(what, amqp.ping(limit)).await }));
                }
                Target::Nats(_) | Target::Amqp(_) => {}
            }
        }
    }
    let (store, checks) = tokio::join!(store, futures_util::future::join_all(checks));
    std::iter::once(store).chain(checks).collect()
}

/// A broker's ping (it bounds itself by the limit it was given).
async fn ping(
    what: String,
    fut: impl std::future::Future<Output = Result<(), crate::destination::PublishError>>,
) -> Found {
    let start = Instant::now();
    Found { what, result: fut.await.map(|()| start.elapsed()).map_err(|e| e.to_string()) }
}

/// Opens the store as `serve` does and pings it, all within `store.timeout`.
async fn ping_store(config: &Config) -> Found {
    let what = match &config.store.kind {
        StoreKind::Memory { .. } => "store memory".to_owned(),
        StoreKind::Embedded { path } => format!("store embedded {}", path.display()),
        StoreKind::Redis { url } => format!("store {}", redact_url(url)),
        StoreKind::RedisCluster { nodes } => format!(
            "store redis-cluster {}",
            nodes.iter().map(|n| redact_url(n)).collect::<Vec<_>>().join(", ")
        ),
    };
    let limit = config.store.timeout;
    let start = Instant::now();
    let result = bounded(limit, async {
        let store =
            crate::runtime::open_store(config).await.map_err(|e| StoreError::Backend(format!("{e:#}")))?;
        store.ping().await
    })
    .await
    .map(|()| start.elapsed())
    .map_err(|e| match e {
        StoreError::Timeout(d) => format!("no answer within {}", humantime::format_duration(d)),
        other => other.to_string(),
    });
    Found { what, result }
}

/// A TCP connect to `host:port` within `limit`; the connection is closed at once.
async fn connect(what: String, host: String, port: u16, limit: Duration) -> Found {
    let start = Instant::now();
    let result =
        match tokio::time::timeout(limit, tokio::net::TcpStream::connect((host.as_str(), port))).await {
            Ok(Ok(_stream)) => Ok(start.elapsed()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err("refused".to_owned()),
            Ok(Err(e)) => Err(format!("cannot connect to {host}:{port}: {e}")),
            Err(_) => Err(format!("no answer within {}", humantime::format_duration(limit))),
        };
    Found { what, result }
}
