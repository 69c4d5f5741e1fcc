//! The embedded on-disk store (redb), for a single instance that must not forget delivered
//! events when it restarts. One writer thread applies operations in batches, one transaction
//! per batch: claims and releases are committed lazily, a batch holding a completion is
//! committed durably before anyone is answered.

use super::{Claim, Store, StoreError, StoreFuture, Token};
use crate::store_conn::redb_file;
use redb::{Database, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// key → state (1 byte: 0 in flight, 1 delivered) + token (16 bytes) + expiry (8 bytes, unix ms).
const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("claims");

/// Most operations applied in one transaction.
const MAX_BATCH: usize = 256;
/// Expired entries removed per sweep, so that a sweep never stalls the writer for long.
const SWEEP_LIMIT: usize = 10_000;
const SWEEP_EVERY: Duration = Duration::from_secs(30);

const IN_FLIGHT: u8 = 0;
const DELIVERED: u8 = 1;

enum Op {
    Claim {
        key: Box<str>,
        lease: Duration,
        reply: oneshot::Sender<Result<Claim, StoreError>>,
    },
    Complete {
        key: Box<str>,
        token: Token,
        ttl: Duration,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Release {
        key: Box<str>,
        token: Token,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Remove expired entries; sent periodically.
    Sweep,
}

pub struct EmbeddedStore {
    ops: mpsc::Sender<Op>,
    sweeper: tokio::task::JoinHandle<()>,
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Once every sender is gone the writer thread ends and the file is closed.
        self.sweeper.abort();
    }
}

/// Where the writer reads "now" (unix ms). Injected so that a test can move time by hand
/// instead of sleeping past a lease.
pub type NowMs = Arc<dyn Fn() -> u64 + Send + Sync>;

use crate::clock::now_ms;

fn encode(state: u8, token: Token, expires: u64) -> [u8; 25] {
    let mut v = [0u8; 25];
    v[0] = state;
    v[1..17].copy_from_slice(&token.0.to_be_bytes());
    v[17..25].copy_from_slice(&expires.to_be_bytes());
    v
}

fn decode(v: &[u8]) -> Option<(u8, Token, u64)> {
    if v.len() != 25 {
        return None;
    }
    let token = u128::from_be_bytes(v[1..17].try_into().ok()?);
    let expires = u64::from_be_bytes(v[17..25].try_into().ok()?);
    Some((v[0], Token(token), expires))
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("embedded store: {e}"))
}

impl EmbeddedStore {
    /// Opens (or creates) the store file and starts its writer thread. Needs a tokio runtime.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_clock(path, Arc::new(now_ms))
    }

    /// [`EmbeddedStore::open`] with the writer's notion of "now" (unix ms) injected.
    pub fn open_with_clock(path: &Path, now: NowMs) -> Result<Self, StoreError> {
        let db = redb_file::open(path, db_err)?;
        {
            let txn = db.begin_write().map_err(db_err)?;
            txn.open_table(TABLE).map_err(db_err)?;
            txn.commit().map_err(db_err)?;
        }
        let (tx, rx) = mpsc::channel(4096);
        std::thread::Builder::new()
            .name("portcullis-embedded-store".into())
            .spawn(move || writer(db, rx, now))
            .map_err(db_err)?;
        let weak = tx.downgrade();
        let sweeper = tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                match weak.upgrade() {
                    Some(tx) if tx.send(Op::Sweep).await.is_ok() => {}
                    _ => return,
                }
            }
        });
        Ok(EmbeddedStore { ops: tx, sweeper })
    }

    async fn send<T>(&self, op: Op, rx: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
        // The channel is bounded: when the disk falls behind, callers wait here, and the
        // store timeout turns a long wait into a 503.
        self.ops.send(op).await.map_err(|_| db_err("writer thread stopped"))?;
        rx.await.map_err(|_| db_err("writer thread stopped"))?
    }
}

/// Whether `key` is in flight under our `token`.
fn holds(table: &redb::Table<&str, &[u8]>, key: &str, token: Token) -> Result<bool, StoreError> {
    Ok(table
        .get(key)
        .map_err(db_err)?
        .and_then(|v| decode(v.value()))
        .is_some_and(|(s, t, _)| s == IN_FLIGHT && t == token))
}

/// Applies one operation inside the batch's transaction.
fn apply(table: &mut redb::Table<&str, &[u8]>, op: &Op, now: u64) -> Result<Option<Claim>, StoreError> {
    match op {
        Op::Claim { key, lease, .. } => {
            let existing = table.get(&**key).map_err(db_err)?.and_then(|v| decode(v.value()));
            if let Some((state, _, expires)) = existing.filter(|(_, _, exp)| *exp > now) {
                return Ok(Some(if state == DELIVERED {
                    Claim::Delivered
                } else {
                    Claim::InFlight { retry_after: Duration::from_millis(expires - now) }
                }));
            }
            let token = Token::random();
            let v = encode(IN_FLIGHT, token, now + lease.as_millis() as u64);
            table.insert(&**key, &v[..]).map_err(db_err)?;
            Ok(Some(Claim::Acquired(token)))
        }
        Op::Sweep => Ok(None),
        Op::Complete { key, token, ttl, .. } => {
            if holds(table, key, *token)? {
                let v = encode(DELIVERED, *token, now + ttl.as_millis() as u64);
                table.insert(&**key, &v[..]).map_err(db_err)?;
            }
            Ok(None)
        }
        Op::Release { key, token, .. } => {
            if holds(table, key, *token)? {
                table.remove(&**key).map_err(db_err)?;
            }
            Ok(None)
        }
    }
}

fn writer(db: Database, mut rx: mpsc::Receiver<Op>, now: NowMs) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let Some(first) = rx.blocking_recv() else {
            return;
        };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let swept = batch.len();
        batch.retain(|op| !matches!(op, Op::Sweep));
        if batch.len() != swept {
            sweep(&db, now());
        }
        let durable = batch.iter().any(|op| matches!(op, Op::Complete { .. }));
        let results = run_batch(&db, &batch, durable, &*now);
        for (op, r) in batch.drain(..).zip(results) {
            match op {
                Op::Claim { reply, .. } => {
                    let _ = reply.send(r.map(|c| c.expect("a claim answers")));
                }
                Op::Complete { reply, .. } | Op::Release { reply, .. } => {
                    let _ = reply.send(r.map(|_| ()));
                }
                Op::Sweep => {}
            }
        }
    }
}

/// Applies a batch in one transaction; every operation gets the transaction's fate.
fn run_batch(
    db: &Database,
    batch: &[Op],
    durable: bool,
    now: &(dyn Fn() -> u64 + Send + Sync),
) -> Vec<Result<Option<Claim>, StoreError>> {
    let attempt = || -> Result<Vec<Option<Claim>>, StoreError> {
        let txn = redb_file::write(db, durable, db_err)?;
        let now = now();
        let mut out = Vec::with_capacity(batch.len());
        {
            let mut table = txn.open_table(TABLE).map_err(db_err)?;
            for op in batch {
                out.push(apply(&mut table, op, now)?);
            }
        }
        txn.commit().map_err(db_err)?;
        Ok(out)
    };
    match attempt() {
        Ok(v) => v.into_iter().map(Ok).collect(),
        Err(e) => batch.iter().map(|_| Err(e.clone())).collect(),
    }
}

/// Removes entries expired at `now` (unix ms), at most `SWEEP_LIMIT` at a time.
fn sweep(db: &Database, now: u64) {
    let r = (|| -> Result<usize, StoreError> {
        let txn = redb_file::write(db, false, db_err)?;
        let removed;
        {
            let mut table = txn.open_table(TABLE).map_err(db_err)?;
            let expired: Vec<String> = table
                .iter()
                .map_err(db_err)?
                .filter_map(|e| e.ok())
                .filter(|(_, v)| decode(v.value()).is_none_or(|(_, _, exp)| exp <= now))
                .take(SWEEP_LIMIT)
                .map(|(k, _)| k.value().to_string())
                .collect();
            removed = expired.len();
            for k in expired {
                table.remove(k.as_str()).map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)?;
        Ok(removed)
    })();
    match r {
        Ok(n) if n > 0 => tracing::debug!(removed = n, "embedded store swept expired keys"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "embedded store sweep failed"),
    }
}

impl Store for EmbeddedStore {
    fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim> {
        let (reply, rx) = oneshot::channel();
        Box::pin(self.send(Op::Claim { key: key.into(), lease, reply }, rx))
    }

    fn complete<'a>(&'a self, key: &'a str, token: Token, ttl: Duration) -> StoreFuture<'a, ()> {
        let (reply, rx) = oneshot::channel();
        Box::pin(self.send(Op::Complete { key: key.into(), token, ttl, reply }, rx))
    }

    fn release<'a>(&'a self, key: &'a str, token: Token) -> StoreFuture<'a, ()> {
        let (reply, rx) = oneshot::channel();
        Box::pin(self.send(Op::Release { key: key.into(), token, reply }, rx))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(30);
    const TTL: Duration = Duration::from_secs(3600);

    fn path() -> std::path::PathBuf {
        std::env::temp_dir().join(format!(
            "portcullis-embedded-{}-{}.redb",
            std::process::id(),
            rand::random::<u64>()
        ))
    }

    #[tokio::test]
    async fn delivered_keys_survive_reopening() {
        let p = path();
        {
            let s = EmbeddedStore::open(&p).unwrap();
            let Claim::Acquired(t) = s.claim("k", LEASE).await.unwrap() else { panic!() };
            assert!(matches!(s.claim("k", LEASE).await.unwrap(), Claim::InFlight { .. }));
            s.complete("k", t, TTL).await.unwrap();
            let Claim::Acquired(t2) = s.claim("other", LEASE).await.unwrap() else { panic!() };
            s.release("other", t2).await.unwrap();
        }
        // The writer thread ends once the store is dropped and the file is free again.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let s = loop {
            match EmbeddedStore::open(&p) {
                Ok(s) => break s,
                Err(e) if std::time::Instant::now() > deadline => panic!("reopening: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        assert_eq!(s.claim("k", LEASE).await.unwrap(), Claim::Delivered);
        assert!(matches!(s.claim("other", LEASE).await.unwrap(), Claim::Acquired(_)));
        let _ = std::fs::remove_file(p);
    }

    /// A clock moved by hand: the lease lapses when the test says so, never by accident of
    /// a slow fsync on a busy machine.
    fn manual_clock(start: u64) -> (Arc<std::sync::atomic::AtomicU64>, NowMs) {
        let t = Arc::new(std::sync::atomic::AtomicU64::new(start));
        let read = t.clone();
        (t, Arc::new(move || read.load(std::sync::atomic::Ordering::SeqCst)))
    }

    #[tokio::test]
    async fn release_needs_our_token_and_expired_lease_is_taken_over() {
        let p = path();
        let (clock, now) = manual_clock(1_000_000);
        let s = EmbeddedStore::open_with_clock(&p, now).unwrap();
        let Claim::Acquired(t) = s.claim("k", Duration::from_millis(50)).await.unwrap() else { panic!() };
        s.release("k", Token(t.0 ^ 1)).await.unwrap();
        // Still within the lease, however long the batches above took.
        clock.fetch_add(49, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(s.claim("k", LEASE).await.unwrap(), Claim::InFlight { .. }));
        clock.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let Claim::Acquired(t2) = s.claim("k", LEASE).await.unwrap() else { panic!("taken over") };
        // The old holder can no longer finish.
        s.complete("k", t, TTL).await.unwrap();
        assert!(matches!(s.claim("k", LEASE).await.unwrap(), Claim::InFlight { .. }));
        s.complete("k", t2, TTL).await.unwrap();
        assert_eq!(s.claim("k", LEASE).await.unwrap(), Claim::Delivered);
        let _ = std::fs::remove_file(p);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_claims_acquire_once() {
        let p = path();
        super::super::assert_claims_once(std::sync::Arc::new(EmbeddedStore::open(&p).unwrap())).await;
        let _ = std::fs::remove_file(p);
    }
}
