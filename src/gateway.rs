//! The gateway's shared state: routes, the idempotency store, the upstream client and the
//! clock, as every connection's stack sees them.

use crate::config::{Config, Limits};
use crate::forward::{self, UpstreamClient};
use crate::idempotency::Store;
use crate::routing::{Routing, SharedRouting};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;

pub struct Gateway {
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The routing in force; the route layer of every connection holds it too.
    routing: Arc<SharedRouting>,
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
    /// Puts the configuration file in force again, for `POST /api/reload`: set by `serve`
    /// (a gateway started without a file has none).
    pub reloader: std::sync::OnceLock<Arc<dyn Reload>>,
    /// Where the observe layer records each delivery for the admin API.
    pub events: Arc<crate::event_log::Recorder>,
    /// False when `event_log: {enabled: false}`: the observe layer is given no recorder.
    pub recording: bool,
    /// The broker connections of NATS and RabbitMQ destinations, one per server URL, kept
    /// across reloads; shared by the request path and the queue's workers.
    pub brokers: Arc<crate::destination::Brokers>,
}

impl Gateway {
    pub fn new(config: &Config, store: Arc<dyn Store>, clock: Clock) -> Self {
        let metrics = Arc::new(crate::metrics::Metrics::default());
        Gateway {
            routing: Arc::new(SharedRouting::from_pointee(Routing::new(config, &metrics))),
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
            events: Arc::new(crate::event_log::Recorder::new(Arc::new(
                crate::event_log::memory::MemoryLog::new(config.event_log.keep)
                    .with_max_age(config.event_log.max_age),
            ))),
            recording: config.event_log.enabled,
            reloader: std::sync::OnceLock::new(),
            brokers: Arc::new(crate::destination::Brokers::new(config.limits.upstream_connect_timeout)),
        }
    }

    /// What the forwarding service of a stack shares beyond its HTTP client, with `store`
    /// (the connection worker's) for the fan-out's memory.
    pub fn outlets(&self, store: Arc<dyn Store>) -> Arc<crate::layer::forward::Outlets> {
        Arc::new(crate::layer::forward::Outlets {
            queue: self.queue.clone(),
            store,
            store_timeout: self.store_timeout,
            metrics: self.metrics.clone(),
            brokers: self.brokers.clone(),
            options: crate::destination::client_options(&self.limits),
            remember: true,
        })
    }

    /// With the event log the store's kind calls for ([`crate::runtime::open_event_log`]);
    /// without, the in-memory ring. Before the gateway serves: its appender starts then.
    pub fn with_event_log(mut self, log: Arc<dyn crate::event_log::EventLog>) -> Self {
        self.events = Arc::new(crate::event_log::Recorder::new(log));
        self
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

    /// The handle to the routing in force, which sees every reload.
    pub fn routing_handle(&self) -> Arc<SharedRouting> {
        self.routing.clone()
    }

    /// Puts a new configuration's routes in force; connections and in-flight requests go on.
    /// Returns what the new configuration changes that only a restart applies.
    pub fn reload(&self, config: &Config) -> Vec<String> {
        let ignored =
            self.routing.load().config.restart_only_changes(config).into_iter().map(String::from).collect();
        self.routing.store(Arc::new(Routing::new(config, &self.metrics)));
        self.metrics.reloads_ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ignored
    }
}

/// What a reload that was put in force changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reloaded {
    pub routes: usize,
    /// Settings that changed but take effect only after a restart.
    pub restart_needed: Vec<String>,
}

/// Loads the configuration file again and puts it in force (`reload.rs`); an error says why
/// it was refused, and the running configuration stays.
pub trait Reload: Send + Sync {
    fn reload<'a>(
        &'a self,
        trigger: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reloaded, String>> + Send + 'a>>;
}
