//! The embedded delivery queue (redb), for a single instance that must not lose an accepted
//! delivery when it restarts. A file of its own beside the idempotency store's.
//!
//! - `items`: sequence number → the encoded delivery;
//! - `due`: (route, due time in ms, sequence number) → (), the order deliveries are taken in:
//!   taking the due ones is a range scan from the route's start that stops at "now", so it
//!   touches only what it takes. Taking a delivery moves its due time forward by the stale
//!   time, so a worker that dies (or a process that restarts) leaves it to be taken again later;
//! - `due_of`: sequence number → its due time, so acknowledging, retrying or burying one finds
//!   its `due` row directly instead of scanning the route's backlog;
//! - `age`: (route, first seen in ms, sequence number) → (): the oldest undelivered one first;
//! - `counts`: (route, kind) → how many are waiting, waiting after a failed attempt, dead;
//!   kept in the same transactions as the moves, so stats read a consistent snapshot in a
//!   handful of rows, whatever the backlog;
//! - `dead`: sequence number → the encoded delivery, the dead-letter list.
//!
//! Every operation touches rows in proportion to what it takes or moves, never to the backlog
//! (`rows_touched` counts them, for the tests). Every write goes through the file's one writer
//! ([`group_commit`]): the pushes, takes and acknowledgements waiting at a moment share one
//! transaction, and a batch holding a push, an acknowledgement, a retry or a burial is
//! made durable (one `fdatasync` of the file's redo log for the batch) before any of them is answered, so a provider
//! hears 202 only once its delivery is on disk. The writer also keeps, per route, the earliest
//! due time left after each move (`hints`): a worker asking for work before then is answered
//! from memory, without a transaction or a read of what is not due.

use super::{now_ms, Backend, DeadLetter, Item, Stats};
use crate::store_conn::group_commit::{self, GroupCommit};
use crate::store_conn::redo::{self, Logged, Redo};
use crate::store_conn::{redb_file, StoreError, StoreFuture};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

const ITEMS: TableDefinition<u64, &[u8]> = TableDefinition::new("queue_items");
const DUE: TableDefinition<(&str, u64, u64), ()> = TableDefinition::new("queue_due");
const DUE_OF: TableDefinition<u64, u64> = TableDefinition::new("queue_due_of");
const AGE: TableDefinition<(&str, u64, u64), ()> = TableDefinition::new("queue_age");
const COUNTS: TableDefinition<(&str, u8), u64> = TableDefinition::new("queue_counts");
const DEAD: TableDefinition<u64, &[u8]> = TableDefinition::new("queue_dead");
const META: TableDefinition<&str, u64> = TableDefinition::new("queue_meta");
/// (route, ordering value, sequence number): the lines of ordered deliveries.
const LINES: TableDefinition<(&str, &str, u64), ()> = TableDefinition::new("queue_lines");

/// `counts` kinds.
const WAITING: u8 = 0;
const IN_RETRY: u8 = 1;
const DEAD_N: u8 = 2;
/// `queue_meta["index"]`: the version of the `due_of`, `age` and `counts` indexes.
const INDEX_VERSION: u64 = 2;

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("embedded queue: {e}"))
}

fn backend(e: String) -> StoreError {
    err(e)
}

/// Route → the earliest time any of its deliveries is due (`u64::MAX`: none waiting). Written
/// only by the writer, in the order of its writes; a route that is absent is unknown and read
/// from the file. Earlier than the truth costs one empty take; never later.
type Hints = Mutex<HashMap<Box<str>, u64>>;

/// Deliveries of `route` may be due from `at` on.
fn lower(hints: &Hints, route: &str, at: u64) {
    if let Some(h) = hints.lock().unwrap_or_else(|p| p.into_inner()).get_mut(route) {
        *h = (*h).min(at);
    }
}

/// The tables' numbers in the redo log.
const ITEMS_ID: u8 = 1;
const DUE_ID: u8 = 2;
const DUE_OF_ID: u8 = 3;
const AGE_ID: u8 = 4;
const COUNTS_ID: u8 = 5;
const DEAD_ID: u8 = 6;
const META_ID: u8 = 7;
const LINES_ID: u8 = 8;

/// The tables one batch changes, open once in its write transaction; every change also goes
/// to `redo`.
struct Tables<'t> {
    items: Logged<'t, u64, &'static [u8]>,
    due: Logged<'t, (&'static str, u64, u64), ()>,
    due_of: Logged<'t, u64, u64>,
    age: Logged<'t, (&'static str, u64, u64), ()>,
    counts: Logged<'t, (&'static str, u8), u64>,
    dead: Logged<'t, u64, &'static [u8]>,
    meta: Logged<'t, &'static str, u64>,
    lines: Logged<'t, (&'static str, &'static str, u64), ()>,
    redo: Redo,
    /// Rows read or written, for `rows_touched`.
    rows: u64,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction, redo: Redo) -> Result<Self, StoreError> {
        Ok(Tables {
            items: Logged::open(txn, ITEMS, ITEMS_ID).map_err(err)?,
            due: Logged::open(txn, DUE, DUE_ID).map_err(err)?,
            due_of: Logged::open(txn, DUE_OF, DUE_OF_ID).map_err(err)?,
            age: Logged::open(txn, AGE, AGE_ID).map_err(err)?,
            counts: Logged::open(txn, COUNTS, COUNTS_ID).map_err(err)?,
            dead: Logged::open(txn, DEAD, DEAD_ID).map_err(err)?,
            meta: Logged::open(txn, META, META_ID).map_err(err)?,
            lines: Logged::open(txn, LINES, LINES_ID).map_err(err)?,
            redo,
            rows: 0,
        })
    }

    fn count(&mut self, route: &str, kind: u8, delta: i64) -> Result<(), StoreError> {
        let now = self.counts.get((route, kind)).map_err(err)?.map(|v| v.value()).unwrap_or(0);
        self.counts.insert(&mut self.redo, (route, kind), now.saturating_add_signed(delta)).map_err(err)?;
        self.rows += 1;
        Ok(())
    }

    /// The stored delivery `seq`.
    fn item(&mut self, seq: u64) -> Result<Option<Item>, StoreError> {
        self.rows += 1;
        Ok(self.items.get(seq).map_err(err)?.and_then(|v| Item::decode(v.value())))
    }

    /// The next sequence number.
    fn next_seq(&mut self) -> Result<u64, StoreError> {
        let seq = self.meta.get("seq").map_err(err)?.map(|v| v.value()).unwrap_or(0) + 1;
        self.meta.insert(&mut self.redo, "seq", seq).map_err(err)?;
        Ok(seq)
    }

    /// Makes `seq` due at `at` (wherever it was due before).
    fn set_due(&mut self, route: &str, seq: u64, at: u64) -> Result<(), StoreError> {
        self.undue(route, seq)?;
        self.due.insert(&mut self.redo, (route, at, seq), ()).map_err(err)?;
        self.due_of.insert(&mut self.redo, seq, at).map_err(err)?;
        self.rows += 2;
        Ok(())
    }

    /// Removes `seq` from the due index: one lookup, not a scan.
    fn undue(&mut self, route: &str, seq: u64) -> Result<(), StoreError> {
        self.rows += 1;
        if let Some(at) = self.due_of.remove(&mut self.redo, seq).map_err(err)?.map(|v| v.value()) {
            self.due.remove(&mut self.redo, (route, at, seq)).map_err(err)?;
            self.rows += 1;
        }
        Ok(())
    }

    /// Adds a delivery (`encoded`, first seen at `first_seen_ms`, after `attempts`) to the
    /// backlog, due at `at`.
    fn enqueue(
        &mut self,
        route: &str,
        seq: u64,
        encoded: &[u8],
        (first_seen_ms, attempts): (u64, u32),
        at: u64,
    ) -> Result<(), StoreError> {
        self.items.insert(&mut self.redo, seq, encoded).map_err(err)?;
        self.age.insert(&mut self.redo, (route, first_seen_ms, seq), ()).map_err(err)?;
        self.rows += 2;
        self.set_due(route, seq, at)?;
        self.count(route, WAITING, 1)?;
        if attempts > 0 {
            self.count(route, IN_RETRY, 1)?;
        }
        Ok(())
    }

    /// Takes a delivery out of the backlog; returns what was stored.
    fn dequeue(&mut self, route: &str, seq: u64) -> Result<Option<Item>, StoreError> {
        self.undue(route, seq)?;
        self.rows += 1;
        let stored =
            self.items.remove(&mut self.redo, seq).map_err(err)?.and_then(|v| Item::decode(v.value()));
        if let Some(old) = &stored {
            self.age.remove(&mut self.redo, (route, old.first_seen_ms, seq)).map_err(err)?;
            self.rows += 1;
            self.count(route, WAITING, -1)?;
            if old.attempts > 0 {
                self.count(route, IN_RETRY, -1)?;
            }
        }
        Ok(stored)
    }

    /// Lets the next delivery of the same ordering value go.
    fn leave_line(&mut self, route: &str, order: Option<&str>, seq: u64) -> Result<(), StoreError> {
        if let Some(order) = order {
            self.lines.remove(&mut self.redo, (route, order, seq)).map_err(err)?;
        }
        Ok(())
    }
}

/// One write of the queue's writer, with its caller's reply.
trait Job: Send {
    fn durable(&self) -> bool;
    fn apply(&mut self, t: &mut Tables<'_>, hints: &Hints) -> Result<(), StoreError>;
    fn answer(self: Box<Self>, committed: Result<(), StoreError>);
}

/// A write as a closure, and the value it answers once committed.
struct Call<T, F> {
    durable: bool,
    f: Option<F>,
    out: Option<T>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Call<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut Tables<'_>, &Hints) -> Result<T, StoreError> + Send + 'static,
{
    fn durable(&self) -> bool {
        self.durable
    }

    fn apply(&mut self, t: &mut Tables<'_>, hints: &Hints) -> Result<(), StoreError> {
        let f = self.f.take().expect("a write is applied once");
        self.out = Some(f(t, hints)?);
        Ok(())
    }

    fn answer(self: Box<Self>, committed: Result<(), StoreError>) {
        let Call { out, reply, .. } = *self;
        let _ = reply.send(committed.map(|_| out.expect("applied before its commit")));
    }
}

/// What the writer keeps from batch to batch.
struct Writer {
    hints: Arc<Hints>,
    rows: Arc<AtomicU64>,
}

impl group_commit::Write for Box<dyn Job> {
    type State = Writer;

    fn durable(&self) -> bool {
        (**self).durable()
    }

    fn apply(
        txn: &WriteTransaction,
        w: &mut Writer,
        batch: &mut [Self],
        redo: &mut Redo,
    ) -> Result<bool, StoreError> {
        let mut t = Tables::open(txn, std::mem::take(redo))?;
        for job in batch {
            job.apply(&mut t, &w.hints)?;
        }
        w.rows.fetch_add(t.rows, Relaxed);
        *redo = t.redo;
        Ok(true)
    }

    fn replay(txn: &WriteTransaction, op: &redo::Op<'_>) -> Result<(), String> {
        match op.table {
            ITEMS_ID => op.apply(txn, ITEMS),
            DUE_ID => op.apply(txn, DUE),
            DUE_OF_ID => op.apply(txn, DUE_OF),
            AGE_ID => op.apply(txn, AGE),
            COUNTS_ID => op.apply(txn, COUNTS),
            DEAD_ID => op.apply(txn, DEAD),
            META_ID => op.apply(txn, META),
            LINES_ID => op.apply(txn, LINES),
            n => Err(format!("no table {n} in the embedded queue")),
        }
    }

    fn aborted(w: &mut Writer) {
        // The moves the hints followed did not happen: read the file again.
        w.hints.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn answer(self, committed: Result<(), StoreError>) {
        Job::answer(self, committed)
    }
}

pub struct EmbeddedQueue {
    db: Arc<Database>,
    writer: GroupCommit<Box<dyn Job>>,
    hints: Arc<Hints>,
    rows: Arc<AtomicU64>,
}

impl EmbeddedQueue {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = redb_file::open(path, err)?;
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(ITEMS).map_err(err)?;
        txn.open_table(DUE).map_err(err)?;
        txn.open_table(DEAD).map_err(err)?;
        txn.open_table(LINES).map_err(err)?;
        let built = txn.open_table(META).map_err(err)?.get("index").map_err(err)?.map(|v| v.value());
        if built != Some(INDEX_VERSION) {
            Self::build_indexes(&txn)?;
        }
        txn.commit().map_err(err)?;
        let db = Arc::new(db);
        let (hints, rows) = (Arc::new(Hints::default()), Arc::new(AtomicU64::new(0)));
        let state = Writer { hints: hints.clone(), rows: rows.clone() };
        let writer = GroupCommit::start("embedded-queue", db.clone(), &redo::beside(path), state, backend)?;
        Ok(EmbeddedQueue { db, writer, hints, rows })
    }

    /// Builds `due_of`, `age` and `counts` from `due`, `items` and `dead`: once, for a file
    /// written before they existed.
    fn build_indexes(txn: &WriteTransaction) -> Result<(), StoreError> {
        txn.delete_table(DUE_OF).map_err(err)?;
        txn.delete_table(AGE).map_err(err)?;
        txn.delete_table(COUNTS).map_err(err)?;
        // Written in the caller's own durable commit, not through the writer: nothing to log.
        let mut t = Tables::open(txn, Redo::default())?;
        let due: Vec<(String, u64, u64)> = t
            .due
            .iter()
            .map_err(err)?
            .filter_map(|e| e.ok())
            .map(|(k, _)| (k.value().0.to_string(), k.value().1, k.value().2))
            .collect();
        for (route, at, seq) in due {
            t.due_of.insert(&mut t.redo, seq, at).map_err(err)?;
            if let Some(item) = t.item(seq)? {
                t.age.insert(&mut t.redo, (route.as_str(), item.first_seen_ms, seq), ()).map_err(err)?;
                t.count(&route, WAITING, 1)?;
                if item.attempts > 0 {
                    t.count(&route, IN_RETRY, 1)?;
                }
            }
        }
        let dead: Vec<String> = t
            .dead
            .iter()
            .map_err(err)?
            .filter_map(|e| e.ok())
            .filter_map(|(_, v)| Item::decode(v.value()).map(|i| i.route))
            .collect();
        for route in dead {
            t.count(&route, DEAD_N, 1)?;
        }
        t.meta.insert(&mut t.redo, "index", INDEX_VERSION).map_err(err)?;
        Ok(())
    }

    /// Rows read or written by this queue's operations so far.
    pub fn rows_touched(&self) -> u64 {
        self.rows.load(Relaxed)
    }

    /// The batch sizes the writer reached.
    pub fn batch_stats(&self) -> &group_commit::BatchStats {
        self.writer.stats()
    }

    /// Runs `f` in the writer's next transaction; answers once that transaction is committed
    /// (on disk, when `durable`).
    async fn write<T: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut Tables<'_>, &Hints) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Call { durable, f: Some(f), out: None, reply });
        self.writer.send(job, backend).await?;
        rx.await.map_err(|_| err("the writer thread stopped"))?
    }

    /// Appends many deliveries in one (non-durable) transaction: for measurements.
    #[cfg(test)]
    pub(crate) async fn push_many(&self, route: &str, items: Vec<Item>) -> Result<(), StoreError> {
        let route = route.to_string();
        self.write(false, move |t, hints| {
            let now = now_ms();
            for item in items {
                let seq = t.next_seq()?;
                t.enqueue(&route, seq, &item.encode(), (item.first_seen_ms, item.attempts), now)?;
            }
            lower(hints, &route, now);
            Ok(())
        })
        .await
    }

    pub async fn push(&self, route: &str, item: &Item) -> Result<(), StoreError> {
        // Encoded here, on the caller's thread: the writer only copies bytes.
        let (route, encoded) = (route.to_string(), item.encode());
        let (meta, order) = ((item.first_seen_ms, item.attempts), item.order.clone());
        self.write(true, move |t, hints| {
            let seq = t.next_seq()?;
            let now = now_ms();
            t.enqueue(&route, seq, &encoded, meta, now)?;
            if let Some(order) = &order {
                t.lines.insert(&mut t.redo, (route.as_str(), order.as_str(), seq), ()).map_err(err)?;
            }
            lower(hints, &route, now);
            Ok(())
        })
        .await
    }

    pub async fn is_head(&self, route: &str, item: &Item) -> Result<bool, StoreError> {
        let Some(order) = &item.order else { return Ok(true) };
        let seq: u64 = item.origin.parse().map_err(err)?;
        self.read(|txn| {
            let lines = txn.open_table(LINES).map_err(err)?;
            let head = lines
                .range((route, order.as_str(), 0)..=(route, order.as_str(), u64::MAX))
                .map_err(err)?
                .next()
                .transpose()
                .map_err(err)?
                .map(|(k, _)| k.value().2);
            self.rows.fetch_add(1, Relaxed);
            Ok(head.is_none_or(|h| h == seq))
        })
    }

    pub async fn ensure_group(&self, _route: &str) -> Result<(), StoreError> {
        Ok(())
    }

    pub async fn take(
        &self,
        route: &str,
        count: usize,
        stale: Duration,
    ) -> Result<Vec<(String, Item)>, StoreError> {
        // Nothing due before the route's hint: answered without a transaction.
        let hint = self.hints.lock().unwrap_or_else(|p| p.into_inner()).get(route).copied();
        if hint.is_some_and(|h| h > now_ms()) {
            return Ok(Vec::new());
        }
        let route = route.to_string();
        let taken: Vec<(u64, Vec<u8>)> = self
            .write(false, move |t, hints| {
                let now = now_ms();
                // From the route's first due time up to now, and no further than `count`.
                let ready: Vec<u64> = t
                    .due
                    .range((route.as_str(), 0, 0)..=(route.as_str(), now, u64::MAX))
                    .map_err(err)?
                    .take(count)
                    .filter_map(|e| e.ok())
                    .map(|(k, _)| k.value().2)
                    .collect();
                t.rows += ready.len() as u64;
                let mut out = Vec::with_capacity(ready.len());
                for seq in ready {
                    // Leased: due again only if this worker does not finish in time.
                    t.set_due(&route, seq, now + stale.as_millis() as u64)?;
                    t.rows += 1;
                    if let Some(v) = t.items.get(seq).map_err(err)? {
                        out.push((seq, v.value().to_vec()));
                    }
                }
                // The earliest due time left: until then, taking reads nothing.
                let next = t
                    .due
                    .range((route.as_str(), 0, 0)..=(route.as_str(), u64::MAX, u64::MAX))
                    .map_err(err)?
                    .next()
                    .transpose()
                    .map_err(err)?
                    .map_or(u64::MAX, |(k, _)| k.value().1);
                t.rows += 1;
                let mut hints = hints.lock().unwrap_or_else(|p| p.into_inner());
                match hints.get_mut(route.as_str()) {
                    Some(h) => *h = next,
                    None => {
                        hints.insert(route.into_boxed_str(), next);
                    }
                }
                Ok(out)
            })
            .await?;
        // Decoded on the caller's thread, not the writer's.
        Ok(taken
            .into_iter()
            .filter_map(|(seq, v)| {
                let mut item = Item::decode(&v)?;
                if item.origin.is_empty() {
                    item.origin = seq.to_string();
                }
                Some((seq.to_string(), item))
            })
            .collect())
    }

    pub async fn ack(&self, route: &str, id: &str, item: &Item) -> Result<(), StoreError> {
        let (route, seq, order) = (route.to_string(), id.parse::<u64>().map_err(err)?, item.order.clone());
        self.write(true, move |t, _| {
            t.dequeue(&route, seq)?;
            t.leave_line(&route, order.as_deref(), seq)
        })
        .await
    }

    pub async fn retry(&self, route: &str, id: &str, item: &Item, due_ms: u64) -> Result<(), StoreError> {
        let (route, seq) = (route.to_string(), id.parse::<u64>().map_err(err)?);
        let (encoded, meta) = (item.encode(), (item.first_seen_ms, item.attempts));
        self.write(true, move |t, hints| {
            // Acknowledged meanwhile (a retry racing an ack): nothing to put back.
            if t.dequeue(&route, seq)?.is_some() {
                t.enqueue(&route, seq, &encoded, meta, due_ms)?;
                lower(hints, &route, due_ms);
            }
            Ok(())
        })
        .await
    }

    pub async fn bury(&self, route: &str, id: &str, item: &Item) -> Result<(), StoreError> {
        let (route, seq) = (route.to_string(), id.parse::<u64>().map_err(err)?);
        let (encoded, order) = (item.encode(), item.order.clone());
        self.write(true, move |t, _| {
            if t.dequeue(&route, seq)?.is_some() {
                t.count(&route, DEAD_N, 1)?;
                t.dead.insert(&mut t.redo, seq, encoded.as_slice()).map_err(err)?;
                t.rows += 1;
            }
            t.leave_line(&route, order.as_deref(), seq)
        })
        .await
    }

    /// Due times already order the deliveries; nothing to move.
    pub async fn promote(&self, _route: &str) -> Result<u64, StoreError> {
        Ok(0)
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        f(&txn)
    }

    /// One read transaction: the route's counters and its oldest delivery, a handful of rows.
    pub async fn stats(&self, route: &str) -> Result<Stats, StoreError> {
        let now = now_ms();
        self.read(|txn| {
            let counts = txn.open_table(COUNTS).map_err(err)?;
            let count = |kind| -> Result<u64, StoreError> {
                Ok(counts.get((route, kind)).map_err(err)?.map(|v| v.value()).unwrap_or(0))
            };
            let (depth, in_retry, dead) = (count(WAITING)?, count(IN_RETRY)?, count(DEAD_N)?);
            let oldest = txn
                .open_table(AGE)
                .map_err(err)?
                .range((route, 0, 0)..=(route, u64::MAX, u64::MAX))
                .map_err(err)?
                .next()
                .transpose()
                .map_err(err)?
                .map(|(k, _)| k.value().1);
            self.rows.fetch_add(4, Relaxed);
            Ok(Stats {
                route: route.to_string(),
                depth,
                in_retry,
                dead,
                oldest_age_secs: oldest.map(|t| now.saturating_sub(t) / 1000).unwrap_or(0),
            })
        })
    }

    pub async fn dead_letters(&self, route: &str) -> Result<Vec<DeadLetter>, StoreError> {
        let now = now_ms();
        self.read(|txn| {
            let dead = txn.open_table(DEAD).map_err(err)?;
            Ok(dead
                .iter()
                .map_err(err)?
                .filter_map(|e| e.ok())
                .filter_map(|(k, v)| Item::decode(v.value()).map(|i| (k.value(), i)))
                .filter(|(_, i)| i.route == route)
                .map(|(seq, i)| DeadLetter::of(seq.to_string(), &i, now))
                .collect())
        })
    }

    pub async fn replay(&self, route: &str, id: Option<&str>) -> Result<u64, StoreError> {
        let route = route.to_string();
        let only = match id.map(str::parse::<u64>) {
            None => None,
            Some(Ok(seq)) => Some(seq),
            // Not an id this queue gives: no dead letter has it.
            Some(Err(_)) => return Ok(0),
        };
        self.write(true, move |t, hints| {
            let chosen: Vec<(u64, Item)> = match only {
                Some(seq) => t
                    .dead
                    .get(seq)
                    .map_err(err)?
                    .and_then(|v| Item::decode(v.value()))
                    .map(|i| (seq, i))
                    .into_iter()
                    .collect(),
                None => t
                    .dead
                    .iter()
                    .map_err(err)?
                    .filter_map(|e| e.ok())
                    .filter_map(|(k, v)| Item::decode(v.value()).map(|i| (k.value(), i)))
                    .collect(),
            };
            let chosen: Vec<(u64, Item)> = chosen.into_iter().filter(|(_, i)| i.route == route).collect();
            let now = now_ms();
            for (seq, mut item) in chosen.iter().cloned() {
                t.dead.remove(&mut t.redo, seq).map_err(err)?;
                t.count(&route, DEAD_N, -1)?;
                item.attempts = 0;
                item.first_seen_ms = now;
                item.last_error.clear();
                item.dead_at_ms = None;
                t.enqueue(&route, seq, &item.encode(), (now, 0), now)?;
                if let Some(order) = &item.order {
                    // A replayed ordered delivery takes its place in its line again, by the
                    // order it was first accepted in.
                    t.lines.insert(&mut t.redo, (route.as_str(), order.as_str(), seq), ()).map_err(err)?;
                }
            }
            lower(hints, &route, now);
            Ok(chosen.len() as u64)
        })
        .await
    }
}

impl EmbeddedQueue {
    /// The dead letter `id` (its sequence number) of `route`, and its delivery.
    pub async fn dead_letter(&self, route: &str, id: &str) -> Result<Option<(DeadLetter, Item)>, StoreError> {
        let Ok(seq) = id.parse::<u64>() else { return Ok(None) };
        let now = now_ms();
        self.read(|txn| {
            let dead = txn.open_table(DEAD).map_err(err)?;
            self.rows.fetch_add(1, Relaxed);
            Ok(dead
                .get(seq)
                .map_err(err)?
                .and_then(|v| Item::decode(v.value()))
                .filter(|i| i.route == route)
                .map(|i| (DeadLetter::of(seq.to_string(), &i, now), i)))
        })
    }

    /// Deletes the dead letter `id`, or all of the route's, in one write transaction: a replay
    /// of the same letter runs wholly before or after it, so the letter is replayed or purged,
    /// never both.
    pub async fn purge(&self, route: &str, id: Option<&str>) -> Result<u64, StoreError> {
        let route = route.to_string();
        let only = match id.map(str::parse::<u64>) {
            None => None,
            Some(Ok(seq)) => Some(seq),
            Some(Err(_)) => return Ok(0),
        };
        self.write(true, move |t, _| {
            let chosen: Vec<u64> = match only {
                Some(seq) => t
                    .dead
                    .get(seq)
                    .map_err(err)?
                    .and_then(|v| Item::decode(v.value()))
                    .filter(|i| i.route == route)
                    .map(|_| seq)
                    .into_iter()
                    .collect(),
                None => t
                    .dead
                    .iter()
                    .map_err(err)?
                    .filter_map(|e| e.ok())
                    .filter(|(_, v)| Item::decode(v.value()).is_some_and(|i| i.route == route))
                    .map(|(k, _)| k.value())
                    .collect(),
            };
            for seq in &chosen {
                t.dead.remove(&mut t.redo, *seq).map_err(err)?;
                t.count(&route, DEAD_N, -1)?;
            }
            t.rows += chosen.len() as u64;
            Ok(chosen.len() as u64)
        })
        .await
    }
}

impl Backend for EmbeddedQueue {
    /// `once` is not needed here: the queue is in the process, so a push's answer is never
    /// lost on the way back, and it is not bounded by a timeout that could outrun it.
    fn push<'a>(&'a self, route: &'a str, item: &'a Item, _once: Option<Duration>) -> StoreFuture<'a, ()> {
        Box::pin(EmbeddedQueue::push(self, route, item))
    }
    fn ensure_group<'a>(&'a self, route: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(EmbeddedQueue::ensure_group(self, route))
    }
    fn take<'a>(
        &'a self,
        route: &'a str,
        count: usize,
        stale: Duration,
    ) -> StoreFuture<'a, Vec<(String, Item)>> {
        Box::pin(EmbeddedQueue::take(self, route, count, stale))
    }
    fn ack<'a>(&'a self, route: &'a str, id: &'a str, item: &'a Item) -> StoreFuture<'a, ()> {
        Box::pin(EmbeddedQueue::ack(self, route, id, item))
    }
    fn retry<'a>(&'a self, route: &'a str, id: &'a str, item: &'a Item, due_ms: u64) -> StoreFuture<'a, ()> {
        Box::pin(EmbeddedQueue::retry(self, route, id, item, due_ms))
    }
    fn bury<'a>(&'a self, route: &'a str, id: &'a str, item: &'a Item) -> StoreFuture<'a, ()> {
        Box::pin(EmbeddedQueue::bury(self, route, id, item))
    }
    fn is_head<'a>(&'a self, route: &'a str, item: &'a Item) -> StoreFuture<'a, bool> {
        Box::pin(EmbeddedQueue::is_head(self, route, item))
    }
    fn promote<'a>(&'a self, route: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(EmbeddedQueue::promote(self, route))
    }
    fn stats<'a>(&'a self, route: &'a str) -> StoreFuture<'a, Stats> {
        Box::pin(EmbeddedQueue::stats(self, route))
    }
    fn dead_letters<'a>(&'a self, route: &'a str) -> StoreFuture<'a, Vec<DeadLetter>> {
        Box::pin(EmbeddedQueue::dead_letters(self, route))
    }
    fn replay<'a>(&'a self, route: &'a str, id: Option<&'a str>) -> StoreFuture<'a, u64> {
        Box::pin(EmbeddedQueue::replay(self, route, id))
    }
    fn dead_letter<'a>(&'a self, route: &'a str, id: &'a str) -> StoreFuture<'a, Option<(DeadLetter, Item)>> {
        Box::pin(EmbeddedQueue::dead_letter(self, route, id))
    }
    fn purge<'a>(&'a self, route: &'a str, id: Option<&'a str>) -> StoreFuture<'a, u64> {
        Box::pin(EmbeddedQueue::purge(self, route, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(route: &str, id: &str) -> Item {
        Item {
            route: route.into(),
            method: "POST".into(),
            query: None,
            headers: vec![],
            body: b"{}".to_vec(),
            id: id.as_bytes().to_vec(),
            attempts: 0,
            first_seen_ms: now_ms(),
            last_error: String::new(),
            origin: String::new(),
            order: None,
            dead_at_ms: None,
            done: Vec::new(),
        }
    }

    fn path() -> std::path::PathBuf {
        std::env::temp_dir().join(format!(
            "portcullis-queue-{}-{}.redb",
            std::process::id(),
            rand::random::<u64>()
        ))
    }

    #[tokio::test]
    async fn deliveries_are_taken_once_acked_retried_buried_and_replayed() {
        let p = path();
        let q = EmbeddedQueue::open(&p).unwrap();
        q.push("/r", &item("/r", "a")).await.unwrap();
        q.push("/r", &item("/r", "b")).await.unwrap();
        q.push("/other", &item("/other", "c")).await.unwrap();
        let stale = Duration::from_secs(60);
        let taken = q.take("/r", 10, stale).await.unwrap();
        assert_eq!(taken.len(), 2);
        assert!(q.take("/r", 10, stale).await.unwrap().is_empty(), "leased, not taken twice");
        q.ack("/r", &taken[0].0, &taken[0].1).await.unwrap();
        let mut again = taken[1].1.clone();
        again.attempts = 1;
        q.retry("/r", &taken[1].0, &again, now_ms() + 60_000).await.unwrap();
        let s = q.stats("/r").await.unwrap();
        assert_eq!((s.depth, s.in_retry, s.dead), (1, 1, 0));
        q.bury("/r", &taken[1].0, &again).await.unwrap();
        assert_eq!(q.dead_letters("/r").await.unwrap().len(), 1);
        let (letter, held) = q.dead_letter("/r", &taken[1].0).await.unwrap().unwrap();
        assert_eq!((letter.attempts, held.body.as_slice()), (1, b"{}".as_slice()));
        assert!(q.dead_letter("/other", &taken[1].0).await.unwrap().is_none(), "another route's");
        assert_eq!(q.purge("/other", None).await.unwrap(), 0);
        assert_eq!(q.replay("/r", None).await.unwrap(), 1);
        let back = q.take("/r", 10, stale).await.unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].1.attempts, 0);
        assert_eq!(q.take("/other", 10, stale).await.unwrap().len(), 1);
        // Buried again, then purged: gone for good, and the count follows.
        q.bury("/r", &back[0].0, &back[0].1).await.unwrap();
        assert_eq!(q.purge("/r", Some(&back[0].0)).await.unwrap(), 1);
        assert_eq!(q.purge("/r", Some(&back[0].0)).await.unwrap(), 0);
        assert_eq!(q.replay("/r", None).await.unwrap(), 0);
        assert_eq!(q.stats("/r").await.unwrap().dead, 0);
        drop(q);
        let _ = std::fs::remove_file(p);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_purge_racing_a_replay_neither_loses_nor_duplicates_a_dead_letter() {
        let p = path();
        let q = Arc::new(EmbeddedQueue::open(&p).unwrap());
        let n = 50u64;
        q.push_many("/r", (0..n).map(|i| item("/r", &format!("d{i}"))).collect()).await.unwrap();
        for (id, item) in q.take("/r", n as usize, Duration::from_secs(60)).await.unwrap() {
            q.bury("/r", &id, &item).await.unwrap();
        }
        let ids: Vec<String> = q.dead_letters("/r").await.unwrap().into_iter().map(|d| d.id).collect();
        let (replayer, purger) = (q.clone(), q.clone());
        let ids2 = ids.clone();
        let replays = tokio::spawn(async move {
            let mut n = 0;
            for id in &ids {
                n += replayer.replay("/r", Some(id)).await.unwrap();
            }
            n
        });
        let purges = tokio::spawn(async move {
            let mut n = 0;
            for id in ids2.iter().rev() {
                n += purger.purge("/r", Some(id)).await.unwrap();
            }
            n
        });
        let (replayed, purged) = (replays.await.unwrap(), purges.await.unwrap());
        assert_eq!(replayed + purged, n, "each letter replayed or purged, once");
        let s = q.stats("/r").await.unwrap();
        assert_eq!((s.depth, s.dead), (replayed, 0), "{s:?}");
        drop(q);
        let _ = std::fs::remove_file(p);
    }

    #[tokio::test]
    async fn ordered_deliveries_wait_for_the_earlier_ones_of_their_line() {
        let p = path();
        let q = EmbeddedQueue::open(&p).unwrap();
        let ordered = |id: &str, order: &str| Item { order: Some(order.into()), ..item("/r", id) };
        for (id, o) in [("a1", "A"), ("a2", "A"), ("b1", "B")] {
            q.push("/r", &ordered(id, o)).await.unwrap();
        }
        let taken = q.take("/r", 10, Duration::from_secs(60)).await.unwrap();
        let head = |id: &str| taken.iter().find(|(_, i)| i.id == id.as_bytes()).unwrap().clone();
        assert!(q.is_head("/r", &head("a1").1).await.unwrap());
        assert!(!q.is_head("/r", &head("a2").1).await.unwrap(), "a2 waits for a1");
        assert!(q.is_head("/r", &head("b1").1).await.unwrap(), "another line is free");
        q.ack("/r", &head("a1").0, &head("a1").1).await.unwrap();
        assert!(q.is_head("/r", &head("a2").1).await.unwrap(), "a2's turn");
        drop(q);
        let _ = std::fs::remove_file(p);
    }

    /// `cargo test --release --lib backlog_of_100k -- --ignored --nocapture` (on stderr): the cost of one
    /// delivery (take + ack) and of one stats read with 100,000 deliveries waiting.
    #[tokio::test]
    #[ignore]
    async fn backlog_of_100k_waiting_deliveries() {
        let p = path();
        let q = EmbeddedQueue::open(&p).unwrap();
        let n = 100_000;
        q.push_many("/r", (0..n).map(|i| item("/r", &format!("evt_{i}"))).collect()).await.unwrap();
        let stale = Duration::from_secs(60);
        let (started, rows) = (std::time::Instant::now(), q.rows_touched());
        let rounds = 200;
        for _ in 0..rounds {
            let taken = q.take("/r", 1, stale).await.unwrap();
            q.ack("/r", &taken[0].0, &taken[0].1).await.unwrap();
        }
        let per_delivery = started.elapsed() / rounds;
        let rows_per_delivery = (q.rows_touched() - rows) / rounds as u64;
        let (started, rows) = (std::time::Instant::now(), q.rows_touched());
        for _ in 0..20 {
            assert_eq!(q.stats("/r").await.unwrap().depth, n as u64 - rounds as u64);
        }
        let per_stats = started.elapsed() / 20;
        let rows_per_stats = (q.rows_touched() - rows) / 20;
        crate::errln!(
            "{n} waiting: take+ack {per_delivery:?} ({rows_per_delivery} rows) per delivery; \
             stats {per_stats:?} ({rows_per_stats} rows)"
        );
        drop(q);
        let _ = std::fs::remove_file(p);
    }

    #[tokio::test]
    async fn accepted_deliveries_survive_a_restart_and_a_dead_worker_s_lease_lapses() {
        let p = path();
        let leased_at = std::time::Instant::now();
        {
            let q = EmbeddedQueue::open(&p).unwrap();
            q.push("/r", &item("/r", "a")).await.unwrap();
            // A worker takes it and the process dies before it finishes. The lease is long
            // enough that reopening on a busy machine cannot outlast it by accident.
            assert_eq!(q.take("/r", 1, Duration::from_secs(2)).await.unwrap().len(), 1);
        }
        let q = EmbeddedQueue::open(&p).unwrap();
        assert!(q.take("/r", 1, Duration::from_secs(60)).await.unwrap().is_empty(), "still leased");
        // Taken again once the lease lapsed: polled, with a deadline.
        let back = loop {
            let back = q.take("/r", 1, Duration::from_secs(60)).await.unwrap();
            if !back.is_empty() {
                break back;
            }
            assert!(leased_at.elapsed() < Duration::from_secs(30), "the lease never lapsed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(leased_at.elapsed() >= Duration::from_millis(1900), "not before the lease lapsed");
        assert_eq!(back.len(), 1, "taken again once the lease lapsed");
        drop(q);
        let _ = std::fs::remove_file(p);
    }

    #[tokio::test]
    async fn a_delivery_touches_rows_in_proportion_to_what_it_moves_not_to_the_backlog() {
        let p = path();
        let q = EmbeddedQueue::open(&p).unwrap();
        let stale = Duration::from_secs(60);
        // One delivery (take, ack) and one stats read: the rows they touch.
        async fn cycle(q: &EmbeddedQueue, stale: Duration) -> u64 {
            let before = q.rows_touched();
            let taken = q.take("/r", 1, stale).await.unwrap();
            q.ack("/r", &taken[0].0, &taken[0].1).await.unwrap();
            q.stats("/r").await.unwrap();
            q.rows_touched() - before
        }
        q.push_many("/r", (0..10).map(|i| item("/r", &format!("a{i}"))).collect()).await.unwrap();
        let small = cycle(&q, stale).await;
        q.push_many("/r", (0..5_000).map(|i| item("/r", &format!("b{i}"))).collect()).await.unwrap();
        let large = cycle(&q, stale).await;
        assert_eq!(large, small, "rows touched with 9 or 5,009 waiting");
        assert!(small <= 20, "{small} rows for one delivery and one stats read");
        assert_eq!(q.stats("/r").await.unwrap().depth, 5_008);
        drop(q);
        let _ = std::fs::remove_file(p);
    }

    #[tokio::test]
    async fn a_worker_asking_before_anything_is_due_costs_no_transaction_and_no_read() {
        let p = path();
        let q = EmbeddedQueue::open(&p).unwrap();
        let stale = Duration::from_secs(60);
        q.push("/r", &item("/r", "a")).await.unwrap();
        let taken = q.take("/r", 1, stale).await.unwrap();
        assert_eq!(taken.len(), 1);
        let mut failed = taken[0].1.clone();
        failed.attempts = 1;
        q.retry("/r", &taken[0].0, &failed, now_ms() + 60_000).await.unwrap();
        // Nothing due for a minute: the first take learns it, the next ones are answered
        // from the hint, without a commit or a row read.
        assert!(q.take("/r", 1, stale).await.unwrap().is_empty());
        let (commits, rows) = (q.batch_stats().commits.load(Relaxed), q.rows_touched());
        for _ in 0..50 {
            assert!(q.take("/r", 1, stale).await.unwrap().is_empty());
        }
        assert_eq!(q.batch_stats().commits.load(Relaxed), commits, "no transaction");
        assert_eq!(q.rows_touched(), rows, "no row read");
        // A push makes the route due at once, and only the due one is taken.
        q.push("/r", &item("/r", "b")).await.unwrap();
        let taken = q.take("/r", 10, stale).await.unwrap();
        assert_eq!(taken.iter().map(|(_, i)| i.id.clone()).collect::<Vec<_>>(), vec![b"b".to_vec()]);
        // Another route knows nothing of this one's hint.
        q.push("/other", &item("/other", "c")).await.unwrap();
        assert_eq!(q.take("/other", 10, stale).await.unwrap().len(), 1);
        drop(q);
        let _ = std::fs::remove_file(p);
    }

    #[tokio::test]
    async fn stats_never_count_a_delivery_twice_while_deliveries_move() {
        let p = path();
        let q = Arc::new(EmbeddedQueue::open(&p).unwrap());
        let n = 200u64;
        q.push_many("/r", (0..n).map(|i| item("/r", &format!("e{i}"))).collect()).await.unwrap();
        let taken = q.take("/r", n as usize, Duration::from_secs(60)).await.unwrap();
        let mover = {
            let q = q.clone();
            tokio::spawn(async move {
                for (i, (id, item)) in taken.into_iter().enumerate() {
                    let mut item = item;
                    item.attempts = 1;
                    if i % 2 == 0 {
                        q.bury("/r", &id, &item).await.unwrap();
                    } else {
                        q.retry("/r", &id, &item, now_ms() + 60_000).await.unwrap();
                    }
                }
            })
        };
        // Every snapshot, whenever it is read, holds each delivery exactly once.
        loop {
            let s = q.stats("/r").await.unwrap();
            assert_eq!(s.depth + s.dead, n, "{s:?}");
            assert!(s.in_retry <= s.depth, "{s:?}");
            if mover.is_finished() {
                break;
            }
            tokio::task::yield_now().await;
        }
        mover.await.unwrap();
        let s = q.stats("/r").await.unwrap();
        assert_eq!((s.depth, s.in_retry, s.dead), (n / 2, n / 2, n / 2));
        drop(q);
        let _ = std::fs::remove_file(p);
    }

    #[tokio::test]
    async fn a_file_without_the_indexes_gets_them_built_on_open() {
        let p = path();
        let q = EmbeddedQueue::open(&p).unwrap();
        q.push_many("/r", (0..5).map(|i| item("/r", &format!("m{i}"))).collect()).await.unwrap();
        let taken = q.take("/r", 2, Duration::from_secs(60)).await.unwrap();
        let mut failed = taken[0].1.clone();
        failed.attempts = 1;
        q.retry("/r", &taken[0].0, &failed, now_ms() + 60_000).await.unwrap();
        q.bury("/r", &taken[1].0, &failed).await.unwrap();
        let before = q.stats("/r").await.unwrap();
        assert_eq!((before.depth, before.in_retry, before.dead), (4, 1, 1));
        // As a file written before the indexes existed.
        let txn = q.db.begin_write().unwrap();
        txn.open_table(META).unwrap().remove("index").unwrap();
        txn.delete_table(COUNTS).unwrap();
        txn.delete_table(AGE).unwrap();
        txn.delete_table(DUE_OF).unwrap();
        txn.commit().unwrap();
        drop(q);
        let q = EmbeddedQueue::open(&p).unwrap();
        assert_eq!(q.stats("/r").await.unwrap(), before);
        // And the rebuilt `due_of` finds the waiting ones.
        let taken = q.take("/r", 10, Duration::from_secs(60)).await.unwrap();
        assert_eq!(taken.len(), 3);
        for (id, item) in &taken {
            q.ack("/r", id, item).await.unwrap();
        }
        let s = q.stats("/r").await.unwrap();
        assert_eq!((s.depth, s.in_retry, s.dead), (1, 1, 1));
        drop(q);
        let _ = std::fs::remove_file(p);
    }
}
