//! The durable delivery queue of `delivery: queued` routes: the provider is answered once the
//! queue holds a delivery; workers on every instance deliver it to the upstream with retries,
//! and a delivery that exhausts its attempts goes to a dead-letter list.
//!
//! - [`item`]: one queued delivery and its encoding;
//! - [`redis`]: the queue in Redis Streams (or a Redis Cluster), shared by every instance;
//! - [`embedded`]: the queue in a file beside the embedded store's, for a single instance;
//! - [`worker`]: the workers that deliver, retry and bury.
//!
//! This file holds what every backend shares: the [`Backend`] trait, [`Queue`] over it, and
//! the stats and dead letters the commands show.

pub mod embedded;
pub mod item;
pub mod redis;
pub mod worker;

pub use item::Item;
pub use redis::RedisQueue;
pub use worker::{backoff, supervise, QueueWorkers};

use crate::config::{Config, Route, StoreKind};
use crate::forward::Outgoing;
use crate::store_conn::redis_pool::RedisPool;
use crate::store_conn::{StoreError, StoreFuture};
use std::time::Duration;

pub(crate) use crate::clock::now_ms;

/// What `portcullis queue stats` shows for one route.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub route: String,
    /// Deliveries accepted and not yet delivered (ready, in progress and waiting to retry).
    pub depth: u64,
    pub in_retry: u64,
    pub dead: u64,
    /// Age of the oldest undelivered delivery, in seconds.
    pub oldest_age_secs: u64,
}

/// A dead letter, as listed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    pub id: String,
    pub route: String,
    pub event_id: String,
    pub attempts: u32,
    pub age_secs: u64,
    pub last_error: String,
    /// When it was buried, unix ms (`None` for one buried by a version that did not note it).
    pub dead_at_ms: Option<u64>,
}

impl DeadLetter {
    pub(super) fn of(id: String, i: &Item, now_ms: u64) -> Self {
        DeadLetter {
            id,
            route: i.route.clone(),
            event_id: String::from_utf8_lossy(&i.id).into_owned(),
            attempts: i.attempts,
            age_secs: now_ms.saturating_sub(i.first_seen_ms) / 1000,
            last_error: i.last_error.clone(),
            dead_at_ms: i.dead_at_ms,
        }
    }
}

/// A queue backend. Deliveries are named by the id the backend gave them when taken.
pub trait Backend: Send + Sync + 'static {
    /// Appends a delivery; answers once the backend holds it durably. With `once`, the same
    /// event pushed again within that time appends nothing (it is there already): a push whose
    /// answer was lost or late, which the connection or the provider's retry repeats.
    fn push<'a>(&'a self, route: &'a str, item: &'a Item, once: Option<Duration>) -> StoreFuture<'a, ()>;
    /// Prepares the route's queue (a consumer group in Redis).
    fn ensure_group<'a>(&'a self, route: &'a str) -> StoreFuture<'a, ()>;
    /// Up to `count` deliveries due now, including those a dead worker left for longer than
    /// `stale`.
    fn take<'a>(
        &'a self,
        route: &'a str,
        count: usize,
        stale: Duration,
    ) -> StoreFuture<'a, Vec<(String, Item)>>;
    /// Forgets a delivered delivery.
    fn ack<'a>(&'a self, route: &'a str, id: &'a str, item: &'a Item) -> StoreFuture<'a, ()>;
    /// Puts a delivery aside until `due_ms`.
    fn retry<'a>(&'a self, route: &'a str, id: &'a str, item: &'a Item, due_ms: u64) -> StoreFuture<'a, ()>;
    /// Moves a delivery to the dead-letter list.
    fn bury<'a>(&'a self, route: &'a str, id: &'a str, item: &'a Item) -> StoreFuture<'a, ()>;
    /// Whether the ordered `item` is the oldest undelivered one of its ordering value.
    fn is_head<'a>(&'a self, route: &'a str, item: &'a Item) -> StoreFuture<'a, bool>;
    /// Makes due retries deliverable again; answers how many.
    fn promote<'a>(&'a self, route: &'a str) -> StoreFuture<'a, u64>;
    fn stats<'a>(&'a self, route: &'a str) -> StoreFuture<'a, Stats>;
    fn dead_letters<'a>(&'a self, route: &'a str) -> StoreFuture<'a, Vec<DeadLetter>>;
    /// Moves dead letters back to the queue, attempts reset: the one with this id, or all.
    fn replay<'a>(&'a self, route: &'a str, id: Option<&'a str>) -> StoreFuture<'a, u64>;
    /// One dead letter of `route` and the delivery it holds (headers, body), by id.
    fn dead_letter<'a>(&'a self, route: &'a str, id: &'a str) -> StoreFuture<'a, Option<(DeadLetter, Item)>>;
    /// Deletes dead letters for good: the one with this id, or all of the route's. Returns how
    /// many. Atomic against [`Backend::replay`]: a dead letter is either replayed or purged,
    /// never both, never neither.
    fn purge<'a>(&'a self, route: &'a str, id: Option<&'a str>) -> StoreFuture<'a, u64>;
}

/// The queue of a gateway: Redis Streams when instances share a Redis, or an embedded file
/// for a single instance. Its own methods add what is the same for every backend (the item
/// codec, the unordered shortcut); the rest are the [`Backend`]'s, reached through `Deref`.
pub struct Queue {
    backend: Box<dyn Backend>,
}

impl Queue {
    pub fn new(backend: impl Backend) -> Self {
        Queue { backend: Box::new(backend) }
    }

    /// The queue of the configured store, when a route is `delivery: queued` (validation
    /// ensures a durable store).
    pub fn open(config: &Config) -> Result<Option<Queue>, StoreError> {
        if !config.routes.iter().any(|r| r.queue.is_some()) {
            return Ok(None);
        }
        let c = &config.store;
        Ok(Some(match &c.kind {
            StoreKind::Redis { url } => Queue::new(RedisQueue::new(
                RedisPool::single(url, &c.key_prefix, c.timeout, config.limits.workers)?,
                c.timeout,
            )),
            StoreKind::RedisCluster { nodes } => {
                Queue::new(RedisQueue::new(RedisPool::cluster(nodes, &c.key_prefix, c.timeout)?, c.timeout))
            }
            StoreKind::Embedded { path } => {
                Queue::new(embedded::EmbeddedQueue::open(&crate::config::queue_path(path))?)
            }
            StoreKind::Memory { .. } => {
                return Err(StoreError::Backend("delivery: queued needs a durable store".into()))
            }
        }))
    }

    /// Appends a delivery; returns once the queue holds it durably. Once per event within the
    /// route's `ttl` (a repeated push appends nothing), unless `again` (a forced replay).
    pub async fn push(&self, route: &Route, o: &Outgoing, again: bool) -> Result<(), StoreError> {
        let item = Item::from_outgoing(route, o);
        self.backend.push(&route.name, &item, (!again).then_some(route.ttl)).await
    }
    /// Whether `item` is the oldest undelivered one of its ordering value (always true for an
    /// unordered item).
    pub async fn is_head(&self, route: &str, item: &Item) -> Result<bool, StoreError> {
        if item.order.is_none() {
            return Ok(true);
        }
        self.backend.is_head(route, item).await
    }
}

impl std::ops::Deref for Queue {
    type Target = dyn Backend;
    fn deref(&self) -> &dyn Backend {
        &*self.backend
    }
}
