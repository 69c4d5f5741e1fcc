//! The event log of the embedded store: a redb file of its own beside the store's
//! (`claims.redb` → `claims.events.redb`, as the queue's is `claims.queue.redb`), so the
//! log survives a restart.
//!
//! # Why a file of its own
//! redb has one writer at a time per file, and a durable commit writes out every page the
//! non-durable commits before it left. In the store's file, log writes would wait for (and
//! make wait) the claims, and each completion's fsync would also carry the log's pages. In a
//! file of its own the log can never slow or weaken the store's durable commits.
//!
//! # Durability
//! Each appended batch is one write transaction committed with [`redb::Durability::None`]
//! (no fsync); a background task makes them durable every [`FLUSH_EVERY`], and closing the
//! file does too. So on power loss (or a killed process) the last few seconds of log records
//! can be lost, which is acceptable for an operator's history; the file stays consistent.
//!
//! # Tables
//! - `events`: ULID → event JSON; ascending keys, so a listing is a reverse range, and the
//!   oldest (first) go when there are more than `keep` or they are older than `max_age`;
//! - `captures`: ULID → expiry (8 bytes, unix ms, big-endian) + capture JSON; never served
//!   once expired, swept every [`SWEEP_EVERY`], and dropped with their event;
//! - `last_matches`: (route, secret index) → unix ms of the last match (newest wins);
//! - `meta`: `capture_bytes` → the stored captures' total size; past
//!   [`super::memory::CAPTURE_BUDGET`] the oldest captures go (their events stay).

use super::{Capture, Entry, Event, EventLog, Filter, LastMatch, LogError, LogFuture, Ulids};
use crate::store_conn::redb_file;
use crate::store_conn::StoreError;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const EVENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("events");
const CAPTURES: TableDefinition<&str, &[u8]> = TableDefinition::new("captures");
const LAST: TableDefinition<(&str, u64), u64> = TableDefinition::new("last_matches");
/// `capture_bytes` → the sum of the stored captures' sizes, kept under
/// [`super::memory::CAPTURE_BUDGET`] by evicting the oldest captures. A file written before
/// this total existed starts it at 0 (its older captures go with their events or ttl).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const CAPTURE_BYTES: &str = "capture_bytes";

/// Removes the capture `id`, taking its size off `total`.
fn remove_capture(
    captures: &mut redb::Table<'_, &str, &[u8]>,
    id: &str,
    total: &mut u64,
) -> Result<(), LogError> {
    if let Some(v) = captures.remove(id).map_err(err)? {
        *total = total.saturating_sub(v.value().len() as u64);
    }
    Ok(())
}

/// How often lazily committed log writes are made durable.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// How often expired captures and events past `max_age` are removed.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Entries removed per sweep transaction at most, so that one never holds the file long.
const SWEEP_LIMIT: usize = 10_000;

/// The event log's file for the embedded store at `store`.
pub fn events_path(store: &Path) -> PathBuf {
    store.with_extension("events.redb")
}

fn err(e: impl std::fmt::Display) -> LogError {
    LogError(format!("embedded: {e}"))
}

fn store_err(e: String) -> StoreError {
    StoreError::Backend(e)
}

/// Where "now" is read (unix ms); injected by tests that move time by hand.
pub type NowMs = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The event log in a redb file.
pub struct EmbeddedLog {
    inner: Arc<Inner>,
    background: tokio::task::JoinHandle<()>,
}

struct Inner {
    db: Database,
    keep: u64,
    max_age_ms: u64,
    now: NowMs,
    /// True when a commit since the last durable one is not yet on disk.
    dirty: AtomicBool,
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        // Closing the file (once the last blocking call holding it ends) makes the lazy
        // commits durable.
        self.background.abort();
    }
}

impl EmbeddedLog {
    /// Opens (or creates) the log's file at `path` and starts its flush and sweep task.
    /// Needs a tokio runtime.
    pub fn open(path: &Path, keep: usize, max_age: Duration) -> Result<Self, LogError> {
        Self::open_with_clock(path, keep, max_age, Arc::new(super::now_ms))
    }

    /// [`EmbeddedLog::open`] with the notion of "now" (unix ms) injected.
    pub fn open_with_clock(
        path: &Path,
        keep: usize,
        max_age: Duration,
        now: NowMs,
    ) -> Result<Self, LogError> {
        let db = redb_file::open(path, store_err).map_err(err)?;
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(EVENTS).map_err(err)?;
        txn.open_table(CAPTURES).map_err(err)?;
        txn.open_table(LAST).map_err(err)?;
        txn.commit().map_err(err)?;
        let inner = Arc::new(Inner {
            db,
            keep: keep.max(1) as u64,
            max_age_ms: max_age.as_millis().min(u64::MAX as u128) as u64,
            now,
            dirty: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        let background = tokio::spawn(async move {
            let mut flush = tokio::time::interval(FLUSH_EVERY);
            let sweeps_per_flush = (SWEEP_EVERY.as_secs() / FLUSH_EVERY.as_secs()).max(1);
            let mut ticks = 0u64;
            flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                flush.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                ticks += 1;
                let sweep = ticks.is_multiple_of(sweeps_per_flush);
                let r = tokio::task::spawn_blocking(move || {
                    if sweep {
                        inner.sweep()?;
                    }
                    inner.flush()
                })
                .await;
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "event log flush or sweep failed"),
                    Err(_) => return,
                }
            }
        });
        Ok(EmbeddedLog { inner, background })
    }

    /// Runs `f` on the blocking pool (redb calls block on the disk).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, LogError> + Send + 'static,
    ) -> Result<T, LogError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner)).await.map_err(err)?
    }

    /// Makes every lazy commit durable now (also done every [`FLUSH_EVERY`]).
    pub async fn flush(&self) -> Result<(), LogError> {
        self.blocking(Inner::flush).await
    }

    /// Removes expired captures and events past `max_age` now (also done every
    /// [`SWEEP_EVERY`]).
    pub async fn sweep(&self) -> Result<(), LogError> {
        self.blocking(Inner::sweep).await
    }
}

fn encode_capture(expires_ms: u64, c: &Capture) -> Result<Vec<u8>, LogError> {
    let mut v = expires_ms.to_be_bytes().to_vec();
    serde_json::to_writer(&mut v, c).map_err(err)?;
    Ok(v)
}

/// The expiry of a stored capture, and its JSON.
fn split_capture(v: &[u8]) -> Option<(u64, &[u8])> {
    let (exp, json) = v.split_at_checked(8)?;
    Some((u64::from_be_bytes(exp.try_into().ok()?), json))
}

impl Inner {
    fn oldest_kept_ms(&self, now: u64) -> u64 {
        now.saturating_sub(self.max_age_ms)
    }

    fn append(&self, entries: &[Entry]) -> Result<(), LogError> {
        let now = (self.now)();
        let txn = redb_file::write(&self.db, false, store_err).map_err(err)?;
        {
            let mut events = txn.open_table(EVENTS).map_err(err)?;
            let mut captures = txn.open_table(CAPTURES).map_err(err)?;
            let mut last = txn.open_table(LAST).map_err(err)?;
            let mut meta = txn.open_table(META).map_err(err)?;
            let mut total = meta.get(CAPTURE_BYTES).map_err(err)?.map_or(0, |v| v.value());
            for Entry { event, capture } in entries {
                let json = serde_json::to_vec(event).map_err(err)?;
                events.insert(event.id.as_str(), json.as_slice()).map_err(err)?;
                if let Some((c, ttl)) = capture {
                    let expires = now.saturating_add(ttl.as_millis().min(u64::MAX as u128) as u64);
                    let v = encode_capture(expires, c)?;
                    total += v.len() as u64;
                    if let Some(old) = captures.insert(event.id.as_str(), v.as_slice()).map_err(err)? {
                        total = total.saturating_sub(old.value().len() as u64);
                    }
                }
                if let Some(i) = event.secret_index {
                    let key = (event.route.as_str(), i as u64);
                    let cur = last.get(key).map_err(err)?.map(|v| v.value());
                    if cur.is_none_or(|t| t < event.time_ms) {
                        last.insert(key, event.time_ms).map_err(err)?;
                    }
                }
            }
            // Past `keep`, or older than `max_age`: the oldest go, with their captures.
            let oldest = self.oldest_kept_ms(now);
            loop {
                let over = events.len().map_err(err)? > self.keep;
                let Some(first) = events.first().map_err(err)?.map(|(k, _)| k.value().to_string()) else {
                    break;
                };
                if !over && Ulids::time_ms(&first).is_some_and(|t| t >= oldest) {
                    break;
                }
                events.remove(first.as_str()).map_err(err)?;
                remove_capture(&mut captures, &first, &mut total)?;
            }
            // Past the byte budget: the oldest captures go (ULID keys ascend).
            while total > super::memory::CAPTURE_BUDGET as u64 {
                let Some(first) = captures.first().map_err(err)?.map(|(k, _)| k.value().to_string()) else {
                    total = 0;
                    break;
                };
                remove_capture(&mut captures, &first, &mut total)?;
            }
            meta.insert(CAPTURE_BYTES, total).map_err(err)?;
        }
        txn.commit().map_err(err)?;
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// A durable commit when lazy ones are pending: it writes them out with it.
    fn flush(&self) -> Result<(), LogError> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let r = (|| {
            let txn = redb_file::write(&self.db, true, store_err).map_err(err)?;
            txn.commit().map_err(err)
        })();
        if r.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        r
    }

    fn sweep(&self) -> Result<(), LogError> {
        let now = (self.now)();
        let oldest = self.oldest_kept_ms(now);
        let txn = redb_file::write(&self.db, false, store_err).map_err(err)?;
        let removed;
        {
            let mut captures = txn.open_table(CAPTURES).map_err(err)?;
            let expired: Vec<String> = captures
                .iter()
                .map_err(err)?
                .filter_map(Result::ok)
                .filter(|(_, v)| split_capture(v.value()).is_none_or(|(exp, _)| exp <= now))
                .take(SWEEP_LIMIT)
                .map(|(k, _)| k.value().to_string())
                .collect();
            let mut events = txn.open_table(EVENTS).map_err(err)?;
            let old: Vec<String> = events
                .iter()
                .map_err(err)?
                .filter_map(Result::ok)
                .map(|(k, _)| k.value().to_string())
                .take_while(|k| Ulids::time_ms(k).is_none_or(|t| t < oldest))
                .take(SWEEP_LIMIT)
                .collect();
            removed = expired.len() + old.len();
            let mut meta = txn.open_table(META).map_err(err)?;
            let mut total = meta.get(CAPTURE_BYTES).map_err(err)?.map_or(0, |v| v.value());
            for id in &expired {
                remove_capture(&mut captures, id, &mut total)?;
            }
            for id in &old {
                events.remove(id.as_str()).map_err(err)?;
                remove_capture(&mut captures, id, &mut total)?;
            }
            meta.insert(CAPTURE_BYTES, total).map_err(err)?;
        }
        txn.commit().map_err(err)?;
        if removed > 0 {
            self.dirty.store(true, Ordering::Release);
            tracing::debug!(removed, "event log swept");
        }
        Ok(())
    }

    fn list(&self, filter: &Filter) -> Result<Vec<Event>, LogError> {
        let page = filter.page();
        let oldest = self.oldest_kept_ms((self.now)());
        let txn = self.db.begin_read().map_err(err)?;
        let events = txn.open_table(EVENTS).map_err(err)?;
        let range = match filter.before.as_deref() {
            Some(b) => events.range(..b).map_err(err)?,
            None => events.iter().map_err(err)?,
        };
        let mut out = Vec::with_capacity(page.min(64));
        for row in range.rev() {
            let (k, v) = row.map_err(err)?;
            // Ids are given after arrival, by the same clock: once an id is older than
            // `since` (or than `max_age`), so are the events' times from there on.
            let t = Ulids::time_ms(k.value()).unwrap_or(0);
            if t < oldest || filter.since_ms.is_some_and(|s| t < s) {
                break;
            }
            let e: Event = match serde_json::from_slice(v.value()) {
                Ok(e) => e,
                Err(e) => {
                    tracing::debug!(error = %e, id = k.value(), "event log entry is not an event");
                    continue;
                }
            };
            if filter.matches(&e) {
                out.push(e);
                if out.len() == page {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn get(&self, id: &str) -> Result<Option<Event>, LogError> {
        let txn = self.db.begin_read().map_err(err)?;
        let events = txn.open_table(EVENTS).map_err(err)?;
        let Some(v) = events.get(id).map_err(err)? else { return Ok(None) };
        let oldest = self.oldest_kept_ms((self.now)());
        if Ulids::time_ms(id).is_some_and(|t| t < oldest) {
            return Ok(None);
        }
        serde_json::from_slice(v.value()).map(Some).map_err(err)
    }

    fn capture(&self, id: &str) -> Result<Option<Capture>, LogError> {
        let txn = self.db.begin_read().map_err(err)?;
        let captures = txn.open_table(CAPTURES).map_err(err)?;
        let Some(v) = captures.get(id).map_err(err)? else { return Ok(None) };
        match split_capture(v.value()) {
            Some((exp, json)) if exp > (self.now)() => serde_json::from_slice(json).map(Some).map_err(err),
            _ => Ok(None),
        }
    }

    fn last_matches(&self, route: &str) -> Result<Vec<LastMatch>, LogError> {
        let txn = self.db.begin_read().map_err(err)?;
        let last = txn.open_table(LAST).map_err(err)?;
        let mut out = Vec::new();
        for row in last.range((route, 0)..=(route, u64::MAX)).map_err(err)? {
            let (k, v) = row.map_err(err)?;
            out.push(LastMatch { index: k.value().1 as usize, time_ms: v.value() });
        }
        Ok(out)
    }
}

impl EventLog for EmbeddedLog {
    fn append<'a>(&'a self, entries: &'a [Entry]) -> LogFuture<'a, ()> {
        // Copied once for the blocking pool; the appender is off the request path.
        let entries = entries.to_vec();
        Box::pin(self.blocking(move |i| i.append(&entries)))
    }

    fn list<'a>(&'a self, filter: &'a Filter) -> LogFuture<'a, Vec<Event>> {
        let filter = filter.clone();
        Box::pin(self.blocking(move |i| i.list(&filter)))
    }

    fn get<'a>(&'a self, id: &'a str) -> LogFuture<'a, Option<Event>> {
        let id = id.to_string();
        Box::pin(self.blocking(move |i| i.get(&id)))
    }

    fn capture<'a>(&'a self, id: &'a str) -> LogFuture<'a, Option<Capture>> {
        let id = id.to_string();
        Box::pin(self.blocking(move |i| i.capture(&id)))
    }

    fn last_matches<'a>(&'a self, route: &'a str) -> LogFuture<'a, Vec<LastMatch>> {
        let route = route.to_string();
        Box::pin(self.blocking(move |i| i.last_matches(&route)))
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }
}
