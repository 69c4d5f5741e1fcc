//! The composition root: from a validated [`Config`] and the listeners it was given, the one
//! place a running gateway is wired — store, queue and its workers, admin listener, webhook
//! listener, drain. `serve` and the integration tests both start a gateway here, so the tests
//! exercise the wiring that production runs.

use crate::config::{Config, StoreKind};
use crate::event_log::{self, EventLog};
use crate::idempotency::{self, Store};
use crate::server::TlsHandle;
use crate::shutdown::Shutdown;
use crate::store_conn::redis_pool::RedisPool;
use crate::{clock::Clock, gateway::Gateway};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The sockets a gateway serves on, bound by the caller: `serve` binds the configured
/// addresses, a test binds port 0.
pub struct Listeners {
    /// Where webhooks arrive.
    pub webhook: TcpListener,
    /// Health, readiness, metrics and the queue's admin API; none when `admin:` is off.
    pub admin: Option<TcpListener>,
}

/// A gateway started by [`start`]: serving until its [`Shutdown`] is triggered, then draining.
pub struct Running {
    /// The shared state, for tests that look inside.
    pub gateway: Arc<Gateway>,
    /// The webhook listener's address (the port a `:0` bind got).
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    shutdown: Shutdown,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
    /// This gateway started the span exporter (`telemetry:`): it flushes it when stopped.
    exports_spans: bool,
}

/// Opens the store and the queue, starts the queue's workers, the admin listener and the
/// webhook listener, and returns at once. When `shutdown` is triggered the webhook listener
/// stops accepting and drains ([`crate::shutdown`]); then the queue's workers and the admin
/// listener stop (queued deliveries not yet acknowledged stay pending for another instance).
pub async fn start(
    config: &Config,
    clock: Clock,
    listeners: Listeners,
    tls: Option<TlsHandle>,
    shutdown: Shutdown,
) -> anyhow::Result<Running> {
    let store = open_store(config).await?;
    let gateway = Arc::new(
        Gateway::new(config, store, clock)
            .with_queue(open_queue(config)?)
            .with_event_log(open_event_log(config)?),
    );
    // Spans are exported from the first request on; `telemetry:` is applied at start only
    // (a reload that changes it says a restart is needed).
    if let Some(t) = &config.telemetry {
        crate::telemetry::install(t)?;
    }
    let mut running = serve(gateway, listeners, tls, shutdown)?;
    running.exports_spans = config.telemetry.is_some();
    Ok(running)
}

/// [`start`] for a gateway already built (a test that brings its own store): starts the
/// queue's workers, the admin listener and the webhook listener.
pub fn serve(
    gateway: Arc<Gateway>,
    listeners: Listeners,
    tls: Option<TlsHandle>,
    shutdown: Shutdown,
) -> anyhow::Result<Running> {
    let addr = listeners.webhook.local_addr()?;
    let admin = listeners.admin.as_ref().map(TcpListener::local_addr).transpose()?;
    let (stop_workers, workers_stop) = tokio::sync::watch::channel(false);
    start_queue_workers(&gateway, workers_stop);
    gateway.events.spawn_appender();
    let (stop_admin, admin_stop) = tokio::sync::oneshot::channel::<()>();
    if let Some(listener) = listeners.admin {
        // /readyz answers 503 while the webhook listener drains: the admin listener stops
        // only after the drain.
        tokio::spawn(crate::admin::run(listener, gateway.clone(), async {
            let _ = admin_stop.await;
        }));
    }
    let serving = crate::server::run(listeners.webhook, gateway.clone(), tls, shutdown.requested());
    let done = tokio::spawn(async move {
        let served = serving.await;
        stop_workers.send_replace(true);
        drop(stop_admin);
        served
    });
    Ok(Running { gateway, addr, admin, shutdown, done, exports_spans: false })
}

impl Running {
    /// The request to stop this gateway.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Reloads the configuration at `path` on SIGHUP, on `POST /api/reload`, and when a
    /// file it was read from changes (see [`crate::reload`], [`crate::watch`]).
    pub fn reload_on_change(&self, path: PathBuf, tls: Option<TlsHandle>) {
        let reloader = crate::reload::Reloader::new(path, &self.gateway, tls);
        let _ = self.gateway.reloader.set(reloader.clone());
        crate::reload::on_sighup(reloader.clone());
        if let Err(e) = crate::watch::spawn(reloader, crate::watch::DEBOUNCE) {
            tracing::warn!(error = %e, "cannot watch the configuration's files; reload with SIGHUP");
        }
    }

    /// Waits until the gateway has stopped: shutdown asked, drained, workers told to stop.
    pub async fn stopped(self) -> anyhow::Result<()> {
        let served = self.done.await;
        if self.exports_spans {
            // The spans of the last deliveries are still batched: sent before the exit.
            crate::telemetry::shutdown().await;
        }
        served?.map_err(|e| anyhow::anyhow!("starting the connection workers: {e}"))
    }
}

/// The delivery queue, when a route is `delivery: queued` (validation ensures a durable store).
pub fn open_queue(config: &Config) -> anyhow::Result<Option<Arc<crate::queue::Queue>>> {
    Ok(crate::queue::Queue::open(config)?.map(Arc::new))
}

/// Starts the queue's workers; they stop when `stop` turns true.
pub fn start_queue_workers(gateway: &Arc<Gateway>, stop: tokio::sync::watch::Receiver<bool>) {
    if let Some(queue) = &gateway.queue {
        let gw = gateway.clone();
        let workers = crate::queue::QueueWorkers {
            queue: queue.clone(),
            client: gateway.client.clone(),
            brokers: gateway.brokers.clone(),
            options: crate::destination::client_options(&gateway.limits),
            metrics: gateway.metrics.clone(),
            routes: Box::new(move || gw.routing().routes().filter(|r| r.queue.is_some()).collect()),
            events: Some(gateway.events.clone()),
        };
        tokio::spawn(crate::queue::supervise(Arc::new(workers), stop));
    }
}

/// The event log where the store's kind keeps it: the memory store's ring per instance, a
/// Redis Stream shared by the fleet (on connections of its own), or a redb file beside the
/// embedded store's. With `event_log: {enabled: false}` nothing is recorded, so a small ring
/// stands in and nothing is opened.
pub fn open_event_log(config: &Config) -> anyhow::Result<Arc<dyn EventLog>> {
    let (log, c) = (&config.event_log, &config.store);
    if !log.enabled {
        return Ok(Arc::new(event_log::memory::MemoryLog::new(1)));
    }
    let redis = |pool| Arc::new(event_log::redis::RedisLog::new(pool, log.keep, log.max_age, c.timeout));
    Ok(match &c.kind {
        StoreKind::Memory { .. } => {
            Arc::new(event_log::memory::MemoryLog::new(log.keep).with_max_age(log.max_age))
        }
        StoreKind::Embedded { path } => Arc::new(event_log::embedded::EmbeddedLog::open(
            &event_log::embedded::events_path(path),
            log.keep,
            log.max_age,
        )?),
        StoreKind::Redis { url } => redis(RedisPool::single(url, &c.key_prefix, c.timeout, 0)?),
        StoreKind::RedisCluster { nodes } => redis(RedisPool::cluster(nodes, &c.key_prefix, c.timeout)?),
    })
}

/// Opens the configured idempotency store.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let c = &config.store;
    Ok(match &c.kind {
        StoreKind::Memory { max_keys } => Arc::new(idempotency::memory::MemoryStore::new(*max_keys)),
        StoreKind::Embedded { path } => Arc::new(idempotency::embedded::EmbeddedStore::open(path)?),
        StoreKind::Redis { url } => Arc::new(idempotency::redis::RedisStore::single(
            url,
            &c.key_prefix,
            c.timeout,
            config.limits.workers,
        )?),
        StoreKind::RedisCluster { nodes } => {
            Arc::new(idempotency::redis::RedisStore::cluster(nodes, &c.key_prefix, c.timeout)?)
        }
    })
}
