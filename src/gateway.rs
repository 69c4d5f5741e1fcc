//! The gateway's shared state: routes, the idempotency store, the upstream client and the
//! clock, as every connection's stack sees them.

use crate::config::{Config, Limits, Route};
use crate::error::GatewayError;
use crate::forward::{self, UpstreamClient};
use crate::idempotency::Store;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub use crate::clock::Clock;

/// What a configuration reload may change: the routes (secrets, upstreams, profiles) and
/// the trusted proxies. Swapped whole, so a request sees one version or the other.
pub struct Routing {
    routes: HashMap<String, Vec<Arc<Route>>>,
    trusted_proxies: Vec<ipnet::IpNet>,
    /// The configuration it came from, to tell what a reload could not apply.
    pub config: Config,
}

impl Routing {
    fn new(config: &Config, metrics: &crate::metrics::Metrics) -> Self {
        let mut routes: HashMap<String, Vec<Arc<Route>>> = HashMap::new();
        for r in &config.routes {
            let _ = r.metrics.set(metrics.route(&r.name));
            routes.entry(r.path.clone()).or_default().push(r.clone());
        }
        Routing { routes, trusted_proxies: config.trusted_proxies.clone(), config: config.clone() }
    }

    /// The route for an exact path, and for routes with variants, the variant the request's
    /// selector header names.
    pub fn route(&self, path: &str, headers: &http::HeaderMap) -> Result<Arc<Route>, GatewayError> {
        Self::select(self.variants(path)?, headers)
    }

    /// The routes at an exact path: one, or one per variant. Every variant of a path shares
    /// the path's `allow_ips`, so the allowlist can be checked before a variant is chosen.
    pub fn variants(&self, path: &str) -> Result<&[Arc<Route>], GatewayError> {
        self.routes.get(path).map(Vec::as_slice).ok_or(GatewayError::NotFound)
    }

    /// The variant of `list` (from [`Routing::variants`]) the selector header names, or the
    /// one route of a path without variants.
    pub fn select(list: &[Arc<Route>], headers: &http::HeaderMap) -> Result<Arc<Route>, GatewayError> {
        let first = &list[0];
        let Some((header, _)) = &first.selector else { return Ok(first.clone()) };
        let mut values = headers.get_all(header).iter();
        let value = values.next().and_then(|v| v.to_str().ok()).map(str::trim);
        if values.next().is_some() {
            return Err(GatewayError::NoVariant(format!("{header} appears more than once")));
        }
        let Some(value) = value else {
            return Err(GatewayError::NoVariant(format!("no {header} header")));
        };
        list.iter()
            .find(|r| r.selector.as_ref().is_some_and(|(_, v)| v.eq_ignore_ascii_case(value)))
            .cloned()
            .ok_or_else(|| GatewayError::NoVariant(format!("{header} '{value}' names no variant")))
    }

    /// Every route (each variant of a route with variants).
    pub fn routes(&self) -> impl Iterator<Item = Arc<Route>> + '_ {
        self.routes.values().flatten().cloned()
    }

    /// The client's address: the peer, or where the peer is a trusted proxy, the last
    /// address of `X-Forwarded-For` that is not a trusted proxy. Every address is taken in its
    /// canonical form: on a dual-stack listener an IPv4 sender is `::ffff:a.b.c.d`, which no
    /// IPv4 network contains.
    pub fn client_ip(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        let trusted = |ip: &IpAddr| self.trusted_proxies.iter().any(|n| n.contains(ip));
        if !trusted(&peer) {
            return peer;
        }
        let mut client = peer;
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
                Ok(ip) if trusted(&ip) => client = ip,
                Ok(ip) => return ip,
                // An entry that is not an address cannot be believed; stop at the last good one.
                Err(_) => return client,
            }
        }
        client
    }
}

pub struct Gateway {
    pub metrics: Arc<crate::metrics::Metrics>,
    routing: ArcSwap<Routing>,
    /// Set when the drain timeout has passed: in-flight deliveries stop waiting for their
    /// upstream, release their keys and answer 503, so the provider retries elsewhere.
    /// One channel per connection worker, so that waiting on it never touches memory that
    /// another core writes.
    pub abort: Box<[tokio::sync::watch::Sender<bool>]>,
    /// Set once shutdown has begun: readiness answers 503.
    pub draining: std::sync::atomic::AtomicBool,
    pub store: Arc<dyn Store>,
    pub store_timeout: Duration,
    /// The upstream client of the queue's delivery workers.
    pub client: UpstreamClient,
    /// One upstream client per connection worker: a worker's deliveries reuse connections
    /// that its own event loop drives.
    pub worker_clients: Box<[Arc<UpstreamClient>]>,
    pub clock: Clock,
    pub limits: Limits,
    /// Requests in flight across every connection (their bodies read).
    pub in_flight: Arc<crate::layer::limit::InFlight>,
    /// Bodies being read, per client address.
    pub body_reads: Arc<crate::layer::read_body::BodyReads>,
    /// The delivery queue of `delivery: queued` routes.
    pub queue: Option<Arc<crate::queue::Queue>>,
}

impl Gateway {
    pub fn new(config: &Config, store: Arc<dyn Store>, clock: Clock) -> Self {
        let metrics = Arc::new(crate::metrics::Metrics::default());
        Gateway {
            routing: ArcSwap::from_pointee(Routing::new(config, &metrics)),
            metrics,
            store,
            abort: (0..config.limits.workers).map(|_| tokio::sync::watch::Sender::new(false)).collect(),
            draining: std::sync::atomic::AtomicBool::new(false),
            store_timeout: config.store.timeout,
            client: forward::client(&config.limits),
            worker_clients: (0..config.limits.workers)
                .map(|_| Arc::new(forward::client(&config.limits)))
                .collect(),
            clock,
            in_flight: Arc::new(crate::layer::limit::InFlight::new(config.limits.max_in_flight)),
            body_reads: Arc::new(crate::layer::read_body::BodyReads::new(
                config.limits.max_body_reads_per_client,
            )),
            limits: config.limits.clone(),
            queue: None,
        }
    }

    /// With the queue that `delivery: queued` routes put their deliveries in.
    pub fn with_queue(mut self, queue: Option<Arc<crate::queue::Queue>>) -> Self {
        self.queue = queue;
        self
    }

    /// The routing in force.
    pub fn routing(&self) -> arc_swap::Guard<Arc<Routing>> {
        self.routing.load()
    }

    /// Puts a new configuration's routes in force; connections and in-flight requests go on.
    /// Returns what the new configuration changes that only a restart applies.
    pub fn reload(&self, config: &Config) -> Vec<String> {
        let old = self.routing.load();
        let mut ignored = Vec::new();
        if old.config.listen != config.listen {
            ignored.push("listen".to_string());
        }
        if old.config.admin != config.admin {
            ignored.push("admin".to_string());
        }
        if old.config.store != config.store {
            ignored.push("store".to_string());
        }
        if old.config.limits != config.limits {
            ignored.push("limits".to_string());
        }
        self.routing.store(Arc::new(Routing::new(config, &self.metrics)));
        self.metrics.reloads_ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ignored
    }
}
