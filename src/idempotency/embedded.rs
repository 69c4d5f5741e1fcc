//! The embedded on-disk store (redb), for a single instance that must not forget delivered
//! events when it restarts. Its one writer ([`group_commit`]) takes every claim, completion
//! and release waiting at a moment as one batch and decides them in order; a batch holding a
//! completion is one transaction committed durably (one `fsync` for the whole batch) before
//! anyone in it is answered.
//!
//! Only "delivered" is written to the file. The claims in flight (key → token, lease end) live
//! in the writer's memory: the file is this process's alone (redb locks it), a claim is a
//! lease that a crash ends anyway, and a claim written to the file would cost a commit and
//! its pages for nothing a restart may keep. A batch of claims and releases alone reads the
//! file and commits nothing. (A file written by an earlier version may hold in-flight rows:
//! they are honoured until their lease ends, and swept.)

use super::{Claim, Store, StoreError, StoreFuture, Token};
use crate::store_conn::group_commit::{self, GroupCommit};
use crate::store_conn::redb_file;
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// key → state (1 byte: 1 delivered; 0 in flight, written by earlier versions only) + token
/// (16 bytes) + expiry (8 bytes, unix ms).
const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("claims");

/// Expired entries removed per sweep, so that a sweep never stalls the writer for long.
const SWEEP_LIMIT: usize = 10_000;
const SWEEP_EVERY: Duration = Duration::from_secs(30);

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
    /// The claims in flight: key → (token, lease end in unix ms).
    in_flight: HashMap<Box<str>, (Token, u64)>,
    /// What this batch changed in `in_flight`, undone if its transaction fails.
    undo: Vec<Undo>,
}

enum Undo {
    Claimed(Box<str>),
    Ended(Box<str>, (Token, u64)),
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
        let state = Writer { now, swept_at: Instant::now(), in_flight: HashMap::new(), undo: Vec::new() };
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

impl Writer {
    /// Ends the claim on `key` if `token` holds it; whether it did.
    fn end(&mut self, key: &str, token: Token) -> bool {
        match self.in_flight.get(key) {
            Some((t, _)) if *t == token => {
                let (k, v) = self.in_flight.remove_entry(key).expect("just found");
                self.undo.push(Undo::Ended(k, v));
                true
            }
            _ => false,
        }
    }

    /// Decides one operation inside the batch's transaction; whether it wrote to the file.
    fn apply(
        &mut self,
        table: &mut redb::Table<&str, &[u8]>,
        op: &mut Op,
        now: u64,
    ) -> Result<bool, StoreError> {
        match op {
            Op::Claim { key, lease, answer, .. } => {
                if let Some((_, expires)) = self.in_flight.get(&**key).filter(|(_, exp)| *exp > now) {
                    *answer = Some(Claim::InFlight { retry_after: Duration::from_millis(expires - now) });
                    return Ok(false);
                }
                let existing = table.get(&**key).map_err(db_err)?.and_then(|v| decode(v.value()));
                if let Some((state, _, expires)) = existing.filter(|(_, _, exp)| *exp > now) {
                    *answer = Some(if state == DELIVERED {
                        Claim::Delivered
                    } else {
                        Claim::InFlight { retry_after: Duration::from_millis(expires - now) }
                    });
                    return Ok(false);
                }
                let token = Token::random();
                // The op's key moves into the map: no copy.
                let key = std::mem::take(key);
                if let Some(old) = self.in_flight.insert(key.clone(), (token, now + lease.as_millis() as u64))
                {
                    // A lapsed claim taken over.
                    self.undo.push(Undo::Ended(key.clone(), old));
                }
                self.undo.push(Undo::Claimed(key));
                *answer = Some(Claim::Acquired(token));
                Ok(false)
            }
            Op::Complete { key, token, ttl, .. } => {
                if !self.end(key, *token) {
                    return Ok(false);
                }
                let v = encode(DELIVERED, *token, now + ttl.as_millis() as u64);
                table.insert(&**key, &v[..]).map_err(db_err)?;
                Ok(true)
            }
            Op::Release { key, token, .. } => {
                self.end(key, *token);
                Ok(false)
            }
        }
    }
}

impl group_commit::Write for Op {
    type State = Writer;

    fn durable(&self) -> bool {
        // "Delivered" is what a provider's retry is answered from: on disk before anyone
        // hears of it. A claim or a release lost to a crash costs a retry or a lease.
        matches!(self, Op::Complete { .. })
    }

    fn apply(txn: &WriteTransaction, w: &mut Writer, batch: &mut [Op]) -> Result<bool, StoreError> {
        let mut table = txn.open_table(TABLE).map_err(db_err)?;
        let now = (w.now)();
        w.undo.clear();
        let mut wrote = false;
        if w.swept_at.elapsed() >= SWEEP_EVERY {
            w.swept_at = Instant::now();
            // Claims whose holder never finished: their lease is over.
            w.in_flight.retain(|_, (_, exp)| *exp > now);
            wrote = sweep(&mut table, now)?;
        }
        for op in batch {
            wrote |= w.apply(&mut table, op, now)?;
        }
        Ok(wrote)
    }

    fn aborted(w: &mut Writer) {
        // The batch's answers are errors: its claims were not taken, its ends did not happen.
        for u in w.undo.drain(..).rev() {
            match u {
                Undo::Claimed(k) => {
                    w.in_flight.remove(&k);
                }
                Undo::Ended(k, v) => {
                    w.in_flight.insert(k, v);
                }
            }
        }
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
fn sweep(table: &mut redb::Table<&str, &[u8]>, now: u64) -> Result<bool, StoreError> {
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
    Ok(!expired.is_empty())
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

    #[tokio::test]
    async fn only_a_completion_is_committed_and_it_is_durable() {
        let p = path();
        let s = EmbeddedStore::open(&p).unwrap();
        let stats = || {
            let b = s.batch_stats();
            (
                b.commits.load(std::sync::atomic::Ordering::Relaxed),
                b.durable_commits.load(std::sync::atomic::Ordering::Relaxed),
            )
        };
        let Claim::Acquired(t) = s.claim("k", LEASE).await.unwrap() else { panic!() };
        assert!(matches!(s.claim("k", LEASE).await.unwrap(), Claim::InFlight { .. }));
        s.release("k", t).await.unwrap();
        assert_eq!(stats(), (0, 0), "claims and releases are decided without a commit");
        let Claim::Acquired(t) = s.claim("k", LEASE).await.unwrap() else { panic!("released") };
        s.complete("k", t, TTL).await.unwrap();
        assert_eq!(stats(), (1, 1));
        assert_eq!(s.claim("k", LEASE).await.unwrap(), Claim::Delivered);
        drop(s);
        let _ = std::fs::remove_file(p);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_claims_acquire_once() {
        let p = path();
        super::super::assert_claims_once(std::sync::Arc::new(EmbeddedStore::open(&p).unwrap())).await;
        let _ = std::fs::remove_file(p);
    }
}
