//! `portcullis check --connect`: reach what the configuration names — the store and every
//! upstream — and say, one line per check, what was found.
//!
//! An upstream is tried with a TCP connect to its host and port and nothing is sent: a HEAD
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
/// store first, then each distinct upstream scheme, host and port, named without its path:
/// routes to the same host share one check).
pub async fn reach(config: &Config) -> Vec<Found> {
    let store = ping_store(config);
    let mut seen = std::collections::HashSet::new();
    let upstreams = config
        .routes
        .iter()
        .filter(|r| seen.insert((r.upstream.scheme.clone(), r.upstream.authority.clone())))
        .map(|r| {
            let u = &r.upstream;
            let port =
                u.authority.port_u16().unwrap_or(if u.scheme == http::uri::Scheme::HTTPS { 443 } else { 80 });
            connect(
                format!("upstream {}", redact_url(&format!("{}://{}", u.scheme, u.authority))),
                u.authority.host().trim_start_matches('[').trim_end_matches(']').to_owned(),
                port,
                r.upstream_timeout.min(UPSTREAM_CONNECT_LIMIT),
            )
        })
        .collect::<Vec<_>>();
    let (store, upstreams) = tokio::join!(store, futures_util::future::join_all(upstreams));
    std::iter::once(store).chain(upstreams).collect()
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
