//! The embedded on-disk store (redb), for a single instance that must not forget delivered
//! events when it restarts. Its one writer ([`group_commit`]) applies every claim, completion
//! and release waiting at a moment in one transaction, in order, and answers each once the
//! commit holding it returned: a batch holding a completion is committed durably (one
//! `fsync` for the whole batch) before anyone is answered; claims and releases alone are
//! committed lazily (a lapsed claim costs a retry, never a delivery).

use super::{Claim, Store, StoreError, StoreFuture, Token};
use crate::store_conn::group_commit::{self, GroupCommit};
use crate::store_conn::redb_file;
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// key → state (1 byte: 0 in flight, 1 delivered) + token (16 bytes) + expiry (8 bytes, unix ms).
const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("claims");

/// Expired entries removed per sweep, so that a sweep never stalls the writer for long.
const SWEEP_LIMIT: usize = 10_000;
const SWEEP_EVERY: Duration = Duration::from_secs(30);

const IN_FLIGHT: u8 = 0;
const DELIVERED: u8 = 1;

enum Op {
    Claim {
        key: Box<str>,
        lease: Duration,
        /// Decided inside the batch, in order; sent once the commit returned.
        answer: Option<Claim>,
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
}

/// What the writer keeps from batch to batch.
struct Writer {
    now: NowMs,
    swept_at: Instant,
}

pub struct EmbeddedStore {
    writer: GroupCommit<Op>,
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

fn backend(e: String) -> StoreError {
    db_err(e)
}

impl EmbeddedStore {
    /// Opens (or creates) the store file and starts its writer thread.
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
        let state = Writer { now, swept_at: Instant::now() };
        let writer = GroupCommit::start("embedded-store", Arc::new(db), state, backend)?;
        Ok(EmbeddedStore { writer })
    }

    async fn send<T>(&self, op: Op, rx: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
        self.writer.send(op, backend).await?;
        rx.await.map_err(|_| db_err("writer thread stopped"))?
    }

    /// The batch sizes the writer reached.
    pub fn batch_stats(&self) -> &group_commit::BatchStats {
        self.writer.stats()
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
fn apply(table: &mut redb::Table<&str, &[u8]>, op: &mut Op, now: u64) -> Result<(), StoreError> {
    match op {
        Op::Claim { key, lease, answer, .. } => {
            let existing = table.get(&**key).map_err(db_err)?.and_then(|v| decode(v.value()));
            if let Some((state, _, expires)) = existing.filter(|(_, _, exp)| *exp > now) {
                *answer = Some(if state == DELIVERED {
                    Claim::Delivered
                } else {
                    Claim::InFlight { retry_after: Duration::from_millis(expires - now) }
                });
                return Ok(());
            }
            let token = Token::random();
            let v = encode(IN_FLIGHT, token, now + lease.as_millis() as u64);
            table.insert(&**key, &v[..]).map_err(db_err)?;
            *answer = Some(Claim::Acquired(token));
        }
        Op::Complete { key, token, ttl, .. } => {
            if holds(table, key, *token)? {
                let v = encode(DELIVERED, *token, now + ttl.as_millis() as u64);
                table.insert(&**key, &v[..]).map_err(db_err)?;
            }
        }
        Op::Release { key, token, .. } => {
            if holds(table, key, *token)? {
                table.remove(&**key).map_err(db_err)?;
            }
        }
    }
    Ok(())
}

impl group_commit::Write for Op {
    type State = Writer;

    fn durable(&self) -> bool {
        // "Delivered" is what a provider's retry is answered from: on disk before anyone
        // hears of it. A claim or a release lost to a crash costs a retry or a lease.
        matches!(self, Op::Complete { .. })
    }

    fn apply(txn: &WriteTransaction, w: &mut Writer, batch: &mut [Op]) -> Result<(), StoreError> {
        let mut table = txn.open_table(TABLE).map_err(db_err)?;
        let now = (w.now)();
        if w.swept_at.elapsed() >= SWEEP_EVERY {
            w.swept_at = Instant::now();
            sweep(&mut table, now)?;
        }
        for op in batch {
            apply(&mut table, op, now)?;
        }
        Ok(())
    }

    fn answer(self, committed: Result<(), StoreError>) {
        match self {
            Op::Claim { answer, reply, .. } => {
                let _ = reply.send(committed.map(|_| answer.expect("a claim is answered in its batch")));
            }
            Op::Complete { reply, .. } | Op::Release { reply, .. } => {
                let _ = reply.send(committed);
            }
        }
    }
}

/// Removes entries expired at `now` (unix ms), at most `SWEEP_LIMIT` at a time, in the
/// batch's transaction.
fn sweep(table: &mut redb::Table<&str, &[u8]>, now: u64) -> Result<(), StoreError> {
    let expired: Vec<String> = table
        .iter()
        .map_err(db_err)?
        .filter_map(|e| e.ok())
        .filter(|(_, v)| decode(v.value()).is_none_or(|(_, _, exp)| exp <= now))
        .take(SWEEP_LIMIT)
        .map(|(k, _)| k.value().to_string())
        .collect();
    for k in &expired {
        table.remove(k.as_str()).map_err(db_err)?;
    }
    if !expired.is_empty() {
        tracing::debug!(removed = expired.len(), "embedded store swept expired keys");
    }
    Ok(())
}

impl Store for EmbeddedStore {
    fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim> {
        let (reply, rx) = oneshot::channel();
        Box::pin(self.send(Op::Claim { key: key.into(), lease, answer: None, reply }, rx))
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
