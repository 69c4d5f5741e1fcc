//! The embedded on-disk store (redb), for a single instance that must not forget delivered
//! events when it restarts. Only "delivered" is kept on disk, by the file's one writer
//! ([`group_commit`]): every completion waiting at a moment is appended to the file's redo log
//! as one frame and made durable with one `fdatasync` before any of them is answered. The
//! marks stay in memory, beside the claims, until the next checkpoint (every
//! [`group_commit::CHECKPOINT_EVERY`]) writes them all into the redb file in one durable
//! commit; so a batch costs a few hundred bytes of log and no redb transaction at all.
//!
//! The claims in flight (key → token, lease end) live in memory, decided under one lock in the
//! order they come: the file is this process's alone (redb locks it), a claim is a lease that
//! a crash ends anyway, and writing it would cost a commit and its pages for nothing a restart
//! may keep. A claim looks in memory first (in flight, or delivered since the last
//! checkpoint), then reads the file, and answers at once, never waiting behind an `fsync`. A
//! key being completed stays in flight until its frame is on disk, then is marked delivered,
//! so no claim can slip between the two; the checkpoint that writes a mark into the file
//! removes it from memory only once that commit is durable. After a crash, the log's frames
//! since the last checkpoint are replayed into the file before the store opens. (A file
//! written by an earlier version may hold in-flight rows: they are honoured until their lease
//! ends, and swept.)

use super::{Claim, Store, StoreError, StoreFuture, Token};
use crate::store_conn::group_commit::{self, GroupCommit};
use crate::store_conn::redb_file;
use crate::store_conn::redo::{self, Redo};
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// key → state (1 byte: 1 delivered; 0 in flight, written by earlier versions only) + token
/// (16 bytes) + expiry (8 bytes, unix ms).
const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("claims");
/// (expiry, key) for every row of `TABLE`, one to one: the sweep reads what expired, not the
/// whole table.
const EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("claims_by_expiry");
/// `TABLE`'s number in the redo log.
const TABLE_ID: u8 = 1;

/// Expired rows removed per checkpoint at most (every checkpoint sweeps, reading only what
/// expired), so that a sweep never stalls the writer for long: up to 20,000 a second.
const SWEEP_LIMIT: usize = 10_000;
/// How often lapsed claims are dropped from memory.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

const DELIVERED: u8 = 1;

/// A claim in flight, or a delivered mark not yet in the file.
struct Held {
    token: Token,
    /// Lease end, unix ms; once `delivered`, the end of the delivered mark.
    expires: u64,
    /// Its completion is being committed: in flight until the commit returned.
    completing: bool,
    /// Delivered: the mark is in the redo log (on disk), and in the file from the next
    /// checkpoint on, which removes it from here.
    delivered: bool,
}

/// The file as the last checkpoint left it. Nothing writes the table between checkpoints,
/// so one read snapshot serves every claim until the next one replaces it.
type FileView = redb::ReadOnlyTable<&'static str, &'static [u8]>;

/// What the claims read: the keys held in memory, and the file's snapshot that goes with
/// them (a mark leaves `keys` only once `file` holds it).
struct Memory {
    keys: HashMap<Box<str>, Held>,
    file: Arc<FileView>,
}

type InFlight = Mutex<Memory>;

fn lock(m: &InFlight) -> MutexGuard<'_, Memory> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn snapshot(db: &Database) -> Result<Arc<FileView>, StoreError> {
    Ok(Arc::new(db.begin_read().map_err(db_err)?.open_table(TABLE).map_err(db_err)?))
}

/// The answer memory gives for a key it holds, if any.
fn from_memory(h: Option<&Held>, now: u64) -> Option<Claim> {
    let h = h?;
    if h.delivered && h.expires > now {
        return Some(Claim::Delivered);
    }
    if !h.delivered && (h.completing || h.expires > now) {
        return Some(Claim::InFlight { retry_after: Duration::from_millis(h.expires.saturating_sub(now)) });
    }
    None
}

/// A completion, for the writer.
struct Complete {
    key: Box<str>,
    token: Token,
    ttl: Duration,
    /// The delivered mark's end, unix ms, set when it is logged.
    until: u64,
    in_flight: Arc<InFlight>,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

/// What the writer keeps from batch to batch.
struct Writer {
    db: Arc<Database>,
    now: NowMs,
    swept_at: Instant,
    in_flight: Arc<InFlight>,
    /// The delivered marks logged since the last checkpoint (key, token, row), in order: the
    /// next checkpoint writes them into the file.
    pending: Vec<(Box<str>, Token, [u8; 25])>,
    /// `pending`'s length when the batch at hand began, to take it back if the batch fails.
    mark: usize,
}

pub struct EmbeddedStore {
    in_flight: Arc<InFlight>,
    now: NowMs,
    writer: GroupCommit<Complete>,
}

/// Where the store reads "now" (unix ms). Injected so that a test can move time by hand
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

    /// [`EmbeddedStore::open`] with the store's notion of "now" (unix ms) injected.
    pub fn open_with_clock(path: &Path, now: NowMs) -> Result<Self, StoreError> {
        let db = redb_file::open(path, db_err)?;
        {
            let txn = db.begin_write().map_err(db_err)?;
            index_if_missing(&txn)?;
            txn.commit().map_err(db_err)?;
        }
        let db = Arc::new(db);
        let in_flight = Arc::new(Mutex::new(Memory { keys: HashMap::new(), file: snapshot(&db)? }));
        let state = Writer {
            db: db.clone(),
            now: now.clone(),
            swept_at: Instant::now(),
            in_flight: in_flight.clone(),
            pending: Vec::new(),
            mark: 0,
        };
        let writer = GroupCommit::start("embedded-store", db.clone(), &redo::beside(path), state, backend)?;
        // The log replayed into the file: read it from there.
        lock(&in_flight).file = snapshot(&db)?;
        Ok(EmbeddedStore { in_flight, now, writer })
    }

    /// The batch sizes the writer reached.
    pub fn batch_stats(&self) -> &group_commit::BatchStats {
        self.writer.stats()
    }

    /// Decided under the lock, in the order claims come: the first acquires, the next see it
    /// in flight. The file is read between two holds of the lock, so that the connection
    /// workers never wait on each other's B-tree walk; a checkpoint that replaced the
    /// snapshot meanwhile (and may have moved marks from memory into the file) means reading
    /// again.
    fn decide(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        let now = (self.now)();
        loop {
            let file = {
                let held = lock(&self.in_flight);
                if let Some(c) = from_memory(held.keys.get(key), now) {
                    return Ok(c);
                }
                held.file.clone()
            };
            let stored = file.get(key).map_err(db_err)?.and_then(|v| decode(v.value()));
            let mut held = lock(&self.in_flight);
            if !Arc::ptr_eq(&file, &held.file) {
                continue;
            }
            if let Some(c) = from_memory(held.keys.get(key), now) {
                return Ok(c);
            }
            if let Some((state, _, expires)) = stored.filter(|(_, _, exp)| *exp > now) {
                return Ok(if state == DELIVERED {
                    Claim::Delivered
                } else {
                    Claim::InFlight { retry_after: Duration::from_millis(expires - now) }
                });
            }
            let token = Token::random();
            let h =
                Held { token, expires: now + lease.as_millis() as u64, completing: false, delivered: false };
            match held.keys.get_mut(key) {
                // A lapsed claim taken over.
                Some(old) => *old = h,
                None => {
                    held.keys.insert(key.into(), h);
                }
            }
            return Ok(Claim::Acquired(token));
        }
    }

    async fn complete_held(&self, key: &str, token: Token, ttl: Duration) -> Result<(), StoreError> {
        {
            let mut held = lock(&self.in_flight);
            match held.keys.get_mut(key) {
                Some(h) if h.token == token && !h.completing && !h.delivered => h.completing = true,
                // No longer ours (the lease lapsed and another took it over), or already
                // being completed: nothing to record.
                _ => return Ok(()),
            }
        }
        let (reply, rx) = oneshot::channel();
        let c = Complete { key: key.into(), token, ttl, until: 0, in_flight: self.in_flight.clone(), reply };
        if let Err(e) = self.writer.send(c, backend).await {
            // Never reached the writer: the claim is ours again, to complete or release.
            if let Some(h) = lock(&self.in_flight).keys.get_mut(key).filter(|h| h.token == token) {
                h.completing = false;
            }
            return Err(e);
        }
        rx.await.map_err(|_| db_err("writer thread stopped"))?
    }

    fn release_held(&self, key: &str, token: Token) {
        let mut held = lock(&self.in_flight);
        if held.keys.get(key).is_some_and(|h| h.token == token && !h.completing && !h.delivered) {
            held.keys.remove(key);
        }
    }
}

impl group_commit::Write for Complete {
    type State = Writer;

    fn durable(&self) -> bool {
        // "Delivered" is what a provider's retry is answered from: on disk before anyone
        // hears of it.
        true
    }

    /// A batch of completions is only logged: the marks stay in memory (the claims read
    /// them there) until the next checkpoint writes them into the file.
    fn log(w: &mut Writer, batch: &mut [Complete], redo: &mut Redo) -> Result<bool, StoreError> {
        let now = (w.now)();
        for c in batch {
            c.until = now + c.ttl.as_millis() as u64;
            let v = encode(DELIVERED, c.token, c.until);
            redo.put(TABLE_ID, c.key.as_bytes(), &v);
            w.pending.push((c.key.clone(), c.token, v));
        }
        Ok(true)
    }

    fn apply(
        _txn: &WriteTransaction,
        w: &mut Writer,
        batch: &mut [Complete],
        redo: &mut Redo,
    ) -> Result<bool, StoreError> {
        // Only a checkpoint's batch comes here: its marks go in with the rest.
        Self::log(w, batch, redo)
    }

    fn checkpoint(txn: &WriteTransaction, w: &mut Writer) -> Result<(), StoreError> {
        let mut table = txn.open_table(TABLE).map_err(db_err)?;
        let mut index = txn.open_table(EXPIRY).map_err(db_err)?;
        let now = (w.now)();
        if w.swept_at.elapsed() >= SWEEP_EVERY {
            w.swept_at = Instant::now();
            // Claims whose holder never finished (their lease is over), and marks that ended
            // before a checkpoint could move them.
            lock(&w.in_flight).keys.retain(|_, h| h.completing || h.expires > now);
        }
        sweep(&mut table, &mut index, now)?;
        for (key, _, v) in &w.pending {
            put(&mut table, &mut index, key, v)?;
        }
        Ok(())
    }

    fn checkpointed(w: &mut Writer) {
        w.mark = 0;
        // The marks are in the file: claims read them there once they read this snapshot.
        let file = match snapshot(&w.db) {
            Ok(f) => f,
            Err(e) => {
                // Memory keeps answering for them until they end.
                tracing::warn!(error = %e, "embedded store: no read snapshot after a checkpoint");
                w.pending.clear();
                return;
            }
        };
        let mut held = lock(&w.in_flight);
        held.file = file;
        for (key, token, _) in w.pending.drain(..) {
            // Read from the file from now on (unless a later claim took the key over).
            if held.keys.get(&key).is_some_and(|h| h.token == token) {
                held.keys.remove(&key);
            }
        }
    }

    fn begin(w: &mut Writer) {
        w.mark = w.pending.len();
    }

    fn aborted(w: &mut Writer) {
        w.pending.truncate(w.mark);
    }

    fn replay(txn: &WriteTransaction, op: &redo::Op<'_>) -> Result<(), String> {
        match op.table {
            TABLE_ID => {
                let key = std::str::from_utf8(op.key).map_err(|e| e.to_string())?;
                let mut table = txn.open_table(TABLE).map_err(|e| e.to_string())?;
                let mut index = txn.open_table(EXPIRY).map_err(|e| e.to_string())?;
                match op.value {
                    Some(v) => put(&mut table, &mut index, key, v),
                    None => remove(&mut table, &mut index, key),
                }
                .map_err(|e| e.to_string())
            }
            n => Err(format!("no table {n} in the embedded store")),
        }
    }

    fn answer(self, committed: Result<(), StoreError>) {
        {
            let mut held = lock(&self.in_flight);
            if let Some(h) = held.keys.get_mut(&*self.key).filter(|h| h.token == self.token) {
                if committed.is_ok() {
                    // Delivered is on disk (in the log) and read by every claim from now on;
                    // from here until the next checkpoint writes it into the file.
                    h.delivered = true;
                    h.expires = self.until;
                }
                // Not recorded: the claim is ours again, to complete (the caller retries) or
                // to lapse.
                h.completing = false;
            }
        }
        let _ = self.reply.send(committed);
    }
}

type Table<'t> = redb::Table<'t, &'static str, &'static [u8]>;
type Index<'t> = redb::Table<'t, (u64, &'static str), ()>;

/// A row's place in the expiry index: its expiry, or 0 for a row that does not decode (so
/// the next sweep removes it).
fn expiry(v: &[u8]) -> u64 {
    decode(v).map_or(0, |(_, _, exp)| exp)
}

/// Writes row `key`, keeping the expiry index one to one with the table.
fn put(table: &mut Table<'_>, index: &mut Index<'_>, key: &str, v: &[u8]) -> Result<(), StoreError> {
    if let Some(old) = table.insert(key, v).map_err(db_err)?.map(|o| expiry(o.value())) {
        index.remove((old, key)).map_err(db_err)?;
    }
    index.insert((expiry(v), key), ()).map_err(db_err)?;
    Ok(())
}

fn remove(table: &mut Table<'_>, index: &mut Index<'_>, key: &str) -> Result<(), StoreError> {
    if let Some(old) = table.remove(key).map_err(db_err)?.map(|o| expiry(o.value())) {
        index.remove((old, key)).map_err(db_err)?;
    }
    Ok(())
}

/// Creates the tables; a file written before the expiry index existed gets it built once.
fn index_if_missing(txn: &WriteTransaction) -> Result<(), StoreError> {
    let table = txn.open_table(TABLE).map_err(db_err)?;
    let mut index = txn.open_table(EXPIRY).map_err(db_err)?;
    if index.is_empty().map_err(db_err)? && !table.is_empty().map_err(db_err)? {
        let mut n = 0u64;
        for row in table.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            index.insert((expiry(v.value()), k.value()), ()).map_err(db_err)?;
            n += 1;
        }
        tracing::info!(rows = n, "embedded store: expiry index built");
    }
    Ok(())
}

/// Removes rows expired at `now` (unix ms), at most `SWEEP_LIMIT` at a time, in the
/// checkpoint's transaction: a range of the expiry index, however large the table.
fn sweep(table: &mut Table<'_>, index: &mut Index<'_>, now: u64) -> Result<(), StoreError> {
    let expired: Vec<(u64, String)> = index
        .range(..(now.saturating_add(1), ""))
        .map_err(db_err)?
        .take(SWEEP_LIMIT)
        .map(|e| e.map(|(k, _)| (k.value().0, k.value().1.to_owned())))
        .collect::<Result<_, _>>()
        .map_err(db_err)?;
    for (exp, key) in &expired {
        index.remove((*exp, key.as_str())).map_err(db_err)?;
        // One to one: the row expires when its index entry says; checked all the same.
        let stale = table
            .get(key.as_str())
            .map_err(db_err)?
            .is_some_and(|v| decode(v.value()).is_none_or(|(_, _, e)| e <= now));
        if stale {
            table.remove(key.as_str()).map_err(db_err)?;
        }
    }
    if !expired.is_empty() {
        tracing::debug!(removed = expired.len(), "embedded store swept expired keys");
    }
    Ok(())
}

impl Store for EmbeddedStore {
    fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim> {
        Box::pin(std::future::ready(self.decide(key, lease)))
    }

    fn complete<'a>(&'a self, key: &'a str, token: Token, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(self.complete_held(key, token, ttl))
    }

    fn release<'a>(&'a self, key: &'a str, token: Token) -> StoreFuture<'a, ()> {
        self.release_held(key, token);
        Box::pin(std::future::ready(Ok(())))
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
    async fn only_a_completion_is_written_and_it_is_durable() {
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
        // Completed: in flight until its commit returned, delivered after.
        let Claim::Acquired(t) = s.claim("k", LEASE).await.unwrap() else { panic!("released") };
        s.complete("k", t, TTL).await.unwrap();
        assert_eq!(stats(), (1, 1));
        assert_eq!(s.claim("k", LEASE).await.unwrap(), Claim::Delivered);
        drop(s);
        let _ = std::fs::remove_file(p);
    }

    /// A delivered mark lives in memory (and the redo log) until a checkpoint writes it into
    /// the file; after that it is read from the file, and memory holds nothing of it.
    #[tokio::test]
    async fn a_checkpoint_moves_delivered_marks_from_memory_into_the_file() {
        let p = path();
        let s = EmbeddedStore::open(&p).unwrap();
        let Claim::Acquired(t) = s.claim("first", LEASE).await.unwrap() else { panic!() };
        s.complete("first", t, TTL).await.unwrap();
        assert!(lock(&s.in_flight).keys.get("first").is_some_and(|h| h.delivered));
        assert_eq!(s.claim("first", LEASE).await.unwrap(), Claim::Delivered);
        // A checkpoint comes with the first batch past CHECKPOINT_EVERY: complete more keys
        // until one has.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut n = 0;
        while s.batch_stats().checkpoints.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            assert!(std::time::Instant::now() < deadline, "no checkpoint");
            n += 1;
            let key = format!("more-{n}");
            let Claim::Acquired(t) = s.claim(&key, LEASE).await.unwrap() else { panic!() };
            s.complete(&key, t, TTL).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(lock(&s.in_flight).keys.is_empty(), "every mark is in the file now");
        assert_eq!(s.claim("first", LEASE).await.unwrap(), Claim::Delivered);
        assert_eq!(s.claim(&format!("more-{n}"), LEASE).await.unwrap(), Claim::Delivered);
        drop(s);
        let _ = std::fs::remove_file(&p);
        let _ = std::fs::remove_file(redo::beside(&p));
    }

    /// Completes fresh keys until the writer has made `n` checkpoints (one comes with the
    /// first batch past `CHECKPOINT_EVERY`).
    async fn until_checkpoints(s: &EmbeddedStore, n: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while s.batch_stats().checkpoints.load(std::sync::atomic::Ordering::Relaxed) < n {
            assert!(std::time::Instant::now() < deadline, "no checkpoint");
            let key = format!("filler-{}", rand::random::<u64>());
            let Claim::Acquired(t) = s.claim(&key, LEASE).await.unwrap() else { panic!() };
            s.complete(&key, t, TTL).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn in_file(s: &EmbeddedStore, key: &str) -> bool {
        lock(&s.in_flight).file.get(key).unwrap().is_some()
    }

    /// The sweep reads the expiry index: an expired mark leaves the file at the next
    /// checkpoint, a live one stays.
    #[tokio::test]
    async fn expired_marks_leave_the_file_at_a_checkpoint() {
        let p = path();
        let (clock, now) = manual_clock(10_000_000);
        let s = EmbeddedStore::open_with_clock(&p, now).unwrap();
        for (key, ttl) in [("short", Duration::from_secs(1)), ("long", TTL)] {
            let Claim::Acquired(t) = s.claim(key, LEASE).await.unwrap() else { panic!() };
            s.complete(key, t, ttl).await.unwrap();
        }
        until_checkpoints(&s, 1).await;
        assert!(in_file(&s, "short") && in_file(&s, "long"));
        clock.fetch_add(1_000, std::sync::atomic::Ordering::SeqCst);
        let done = s.batch_stats().checkpoints.load(std::sync::atomic::Ordering::Relaxed);
        until_checkpoints(&s, done + 1).await;
        assert!(!in_file(&s, "short"), "expired: swept");
        assert!(in_file(&s, "long"));
        assert!(matches!(s.claim("short", LEASE).await.unwrap(), Claim::Acquired(_)));
        assert_eq!(s.claim("long", LEASE).await.unwrap(), Claim::Delivered);
        drop(s);
        let _ = std::fs::remove_file(&p);
        let _ = std::fs::remove_file(redo::beside(&p));
    }

    /// A file written before the expiry index existed gets it built at open, so that its
    /// rows are swept too.
    #[tokio::test]
    async fn a_file_without_the_expiry_index_gets_it_at_open() {
        let p = path();
        {
            let db = Database::create(&p).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(TABLE).unwrap();
                t.insert("old", &encode(DELIVERED, Token(1), 5_000)[..]).unwrap();
                t.insert("live", &encode(DELIVERED, Token(2), 50_000_000)[..]).unwrap();
            }
            txn.commit().unwrap();
        }
        let (_clock, now) = manual_clock(10_000_000);
        let s = EmbeddedStore::open_with_clock(&p, now).unwrap();
        assert!(in_file(&s, "old"), "not swept before a checkpoint");
        until_checkpoints(&s, 1).await;
        assert!(!in_file(&s, "old"));
        assert_eq!(s.claim("live", LEASE).await.unwrap(), Claim::Delivered);
        drop(s);
        let _ = std::fs::remove_file(&p);
        let _ = std::fs::remove_file(redo::beside(&p));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_claims_acquire_once() {
        let p = path();
        super::super::assert_claims_once(std::sync::Arc::new(EmbeddedStore::open(&p).unwrap())).await;
        let _ = std::fs::remove_file(p);
    }
}
