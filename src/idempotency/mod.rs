//! Idempotency stores: the claim protocol every backend keeps, and its backends.
//!
//! 1. [`Store::claim`] atomically creates the key as *in flight* with a random token and a
//!    lease; it answers [`Claim::Delivered`] or [`Claim::InFlight`] when the key exists.
//!    A claim whose lease has expired is taken over.
//! 2. [`Store::complete`] turns our claim into *delivered*, kept for the dedupe window.
//! 3. [`Store::release`] deletes the key only if it still holds our token.
//!
//! - [`memory`]: bounded, in-process; for tests and throw-away instances;
//! - [`embedded`]: an on-disk file (redb) for one instance that must survive restarts;
//! - [`redis`]: one Redis server, or a Redis Cluster, shared by many instances.

pub mod embedded;
pub mod memory;
pub mod redis;

pub use crate::store_conn::{bounded, StoreError, StoreFuture};
use std::time::Duration;

/// The random value that proves a claim is ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token(pub u128);

impl Token {
    pub fn random() -> Self {
        Token(rand::random())
    }
}

/// The answer to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours until the lease ends.
    Acquired(Token),
    /// The event was delivered before.
    Delivered,
    /// Another request holds the key; try again after `retry_after`.
    InFlight { retry_after: Duration },
}

/// An idempotency store. Keys arrive already namespaced by route.
pub trait Store: Send + Sync + 'static {
    /// Creates `key` as in flight for `lease`, unless it exists.
    fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim>;
    /// Marks `key` delivered, kept for `ttl`, once the upstream accepted the event. The
    /// in-process stores leave a claim that is no longer ours alone; the Redis store marks
    /// the key delivered whoever holds it (one native command; see its `complete`).
    fn complete<'a>(&'a self, key: &'a str, token: Token, ttl: Duration) -> StoreFuture<'a, ()>;
    /// Deletes `key` if it still holds `token`.
    fn release<'a>(&'a self, key: &'a str, token: Token) -> StoreFuture<'a, ()>;
    /// Answers when the store is reachable.
    fn ping(&self) -> StoreFuture<'_, ()>;
    /// The backend's name, for logs.
    fn kind(&self) -> &'static str;
    /// True for a store inside the process, whose calls cannot hang: no timeout is armed.
    fn in_process(&self) -> bool {
        false
    }
    /// The handle connection worker `worker` uses, for a backend with resources of its own
    /// per worker (Redis: a connection each); `None` when this one serves every worker.
    fn for_worker(&self, _worker: usize) -> Option<std::sync::Arc<dyn Store>> {
        None
    }
}

/// The store as connection worker `worker` uses it (see [`Store::for_worker`]). Called when
/// the worker's stack is built, so the index is passed down, never looked up.
pub fn for_worker(store: &std::sync::Arc<dyn Store>, worker: usize) -> std::sync::Arc<dyn Store> {
    store.for_worker(worker).unwrap_or_else(|| store.clone())
}

/// Calls the store under `limit` (no timer for an in-process store, whose calls cannot
/// hang), counting failures in `portcullis_store_errors_total`.
pub async fn guarded<T>(
    store: &dyn Store,
    limit: Duration,
    metrics: &crate::metrics::Metrics,
    fut: StoreFuture<'_, T>,
) -> Result<T, StoreError> {
    let r = if store.in_process() { fut.await } else { bounded(limit, fut).await };
    if r.is_err() {
        metrics.store_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    r
}

/// Shared by the backends' tests: 50 concurrent claims of one key, exactly one acquires.
#[cfg(test)]
pub(crate) async fn assert_claims_once(store: std::sync::Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move { s.claim("same", Duration::from_secs(30)).await.unwrap() }));
    }
    let mut acquired = 0;
    for t in tasks {
        acquired += matches!(t.await.unwrap(), Claim::Acquired(_)) as usize;
    }
    assert_eq!(acquired, 1);
}
