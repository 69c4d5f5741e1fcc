//! Group commit: the one writer of a redb file. Every write waiting at a moment, from every
//! connection worker, goes into one write transaction and one commit, and each caller is
//! answered only after the commit that holds its write has returned (and, when any write of
//! the batch asks for durability, after the batch is on disk).
//!
//! Why one writer: redb takes one write transaction at a time, and making a batch durable costs
//! an `fsync`. Writers that each begin their own transaction queue up on redb's lock and pay one
//! `fsync` each; one thread that drains its channel into a batch pays one `fsync` for everyone
//! who was waiting while the previous one ran. Under load the batch grows by itself: the
//! longer a commit takes, the more writes are waiting for the next.
//!
//! How a batch is made durable: not by a redb durable commit but by the file's redo log
//! ([`redo`]). What a redb durable commit costs (redb 4, read in its sources): it writes every
//! page the batch dirtied (copied on write, a leaf and its branches per key), checksums them,
//! writes the inactive commit slot, flips the primary bit in the header and calls `fsync` once
//! (one-phase; two-phase commit adds a second `fsync` before the flip, against an attacker who
//! controls the order pages reach the disk and can crash the process mid-`fsync`, not the
//! threat here). Measured under load, ~1.4 ms and a third of the process' CPU for nine
//! 25-byte completions. So each batch is committed to redb with `Durability::None` (visible to
//! every later transaction at once, its pages left in redb's write buffer), its row changes
//! are appended to the redo log, and a batch holding a durable write syncs the log
//! (`fdatasync` of a few hundred bytes to a few tens of KiB: ~0.15 ms) before anyone is
//! answered. A batch of only non-durable writes (a worker taking a delivery) is logged but not
//! synced; one that wrote nothing is not committed at all.
//!
//! Every [`CHECKPOINT_EVERY`] or [`CHECKPOINT_BYTES`] of log, the batch at hand is committed
//! durably instead (the *checkpoint*: it carries every page since the last one), and the log
//! starts over. Quick repair (`set_quick_repair`) stays off: it would write the allocator
//! state on every durable commit to make reopening after a crash instant; we pay the full
//! repair (a checksum walk of the file) on the rare start after a crash instead. After a
//! crash the file opens at its last checkpoint and the log's frames since are replayed
//! ([`Write::replay`]) before the writer starts.

use super::redo::{self, Log, Redo};
use super::StoreError;
use redb::{Database, Durability, WriteTransaction};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// One write of a group-committed file, holding its caller's reply.
pub trait Write: Send + Sized + 'static {
    /// What the writer keeps from batch to batch (a clock, in-memory hints).
    type State: Send + 'static;
    /// Whether the caller may be answered only once this write is on disk.
    fn durable(&self) -> bool;
    /// Applies `batch`, in order, inside one transaction, every change through a
    /// [`redo::Logged`] table so that `redo` holds them; each write keeps its answer until the
    /// commit. An error voids the whole transaction. `Ok(false)`: nothing was written (every
    /// answer was decided from memory and reads), so the transaction is dropped instead of
    /// committed.
    fn apply(
        txn: &WriteTransaction,
        state: &mut Self::State,
        batch: &mut [Self],
        redo: &mut Redo,
    ) -> Result<bool, StoreError>;
    /// Logs `batch` without a transaction, when the file can: its rows go to `redo` (through
    /// [`Redo::put`]) and are kept in `state` until [`Write::checkpoint`] writes them, so a
    /// batch costs the log's `fdatasync` and no redb commit at all. `Ok(false)`: the batch
    /// needs [`Write::apply`] (the default). A checkpoint's batch always goes to `apply`.
    fn log(_state: &mut Self::State, _batch: &mut [Self], _redo: &mut Redo) -> Result<bool, StoreError> {
        Ok(false)
    }
    /// Writes into the checkpoint's transaction every row [`Write::log`] kept in `state`
    /// since the last checkpoint.
    fn checkpoint(_txn: &WriteTransaction, _state: &mut Self::State) -> Result<(), StoreError> {
        Ok(())
    }
    /// The checkpoint is durable: the rows it wrote are read from the file from now on.
    fn checkpointed(_state: &mut Self::State) {}
    /// Applies one change read back from the redo log after a crash: `op.table` is the number
    /// `apply` opened the table under.
    fn replay(txn: &WriteTransaction, op: &redo::Op<'_>) -> Result<(), String>;
    /// A batch begins (before anything of it is logged or applied).
    fn begin(_state: &mut Self::State) {}
    /// The batch failed: whatever `log`, `apply` or `checkpoint` noted in `state` since
    /// [`Write::begin`] is void.
    fn aborted(_state: &mut Self::State) {}
    /// Answers the caller with the fate of the commit that held the write.
    fn answer(self, committed: Result<(), StoreError>);
}

/// Most writes in one transaction: a bound on how long the first of them waits.
const MAX_BATCH: usize = 1024;
/// Writes waiting for the writer before callers wait to send: when the disk falls behind,
/// callers wait in `send`, and the store timeout turns a long wait into a 503.
const QUEUE: usize = 8192;
/// How often the writer logs its totals (at debug), when it committed anything meanwhile.
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// A durable redb commit at least this often while the log is not empty. What a checkpoint
/// writes grows with the time since the last (the pages dirtied meanwhile), and the batch
/// that carries it waits for all of it: measured under load here, 22–29 ms on average for
/// either file (10–12 ms for the queue at a 150 ms interval, which did not lower the total).
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// ... or once the log holds this much.
pub const CHECKPOINT_BYTES: u64 = 8 << 20;

/// Batch sizes the writer reached: batches by the number of writes they held.
#[derive(Debug, Default)]
pub struct BatchStats {
    pub batches: AtomicU64,
    /// Batches that wrote, so were committed (the others were answered from reads).
    pub commits: AtomicU64,
    pub durable_commits: AtomicU64,
    /// Durable redb commits (the others were made durable by the redo log).
    pub checkpoints: AtomicU64,
    /// Time the checkpoints took, in all and the longest (µs): the writer answers nothing
    /// meanwhile.
    pub checkpoint_micros: AtomicU64,
    pub longest_checkpoint_micros: AtomicU64,
    pub writes: AtomicU64,
    pub largest: AtomicU64,
    /// Batches of 1, 2–3, 4–7, …, 512–1023 and ≥ 1024 writes.
    pub sizes: [AtomicU64; 11],
}

impl BatchStats {
    fn record(&self, writes: usize, committed: bool, durable: bool) {
        self.batches.fetch_add(1, Relaxed);
        if committed {
            self.commits.fetch_add(1, Relaxed);
        }
        if committed && durable {
            self.durable_commits.fetch_add(1, Relaxed);
        }
        self.writes.fetch_add(writes as u64, Relaxed);
        self.largest.fetch_max(writes as u64, Relaxed);
        let bucket = (usize::BITS - writes.max(1).leading_zeros() - 1) as usize;
        self.sizes[bucket.min(self.sizes.len() - 1)].fetch_add(1, Relaxed);
    }

    /// `1:n 2:n 4:n …`: batches by their smallest power-of-two size, empty buckets left out.
    pub fn histogram(&self) -> String {
        let mut s = String::new();
        for (i, n) in self.sizes.iter().enumerate() {
            let n = n.load(Relaxed);
            if n > 0 {
                use std::fmt::Write as _;
                let _ = write!(s, "{}{}:{n}", if s.is_empty() { "" } else { " " }, 1u64 << i);
            }
        }
        s
    }
}

/// The writer of one redb file: a thread that commits batches of `W`.
pub struct GroupCommit<W: Write> {
    tx: Option<mpsc::Sender<W>>,
    thread: Option<std::thread::JoinHandle<()>>,
    stats: Arc<BatchStats>,
}

impl<W: Write> GroupCommit<W> {
    /// Replays the redo log at `log` into `db` (what was acknowledged since the file's last
    /// checkpoint), then starts the writer thread of `db`; `name` names the thread and the log
    /// lines.
    pub fn start(
        name: &'static str,
        db: Arc<Database>,
        log: &Path,
        state: W::State,
        err: fn(String) -> StoreError,
    ) -> Result<Self, StoreError> {
        let (log, found) =
            Log::recover(&db, log, W::replay).map_err(|e| err(format!("redo log {}: {e}", log.display())))?;
        if found.frames > 0 {
            tracing::info!(file = name, batches = found.frames, rows = found.rows, "replayed the redo log");
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(BatchStats::default());
        let s = stats.clone();
        let thread = std::thread::Builder::new()
            .name(format!("portcullis-{name}"))
            .spawn(move || run(name, &db, log, rx, state, &s, err))
            .map_err(|e| err(e.to_string()))?;
        Ok(GroupCommit { tx: Some(tx), thread: Some(thread), stats })
    }

    /// Hands `w` to the writer; its reply comes once the commit holding it returned.
    pub async fn send(&self, w: W, err: fn(String) -> StoreError) -> Result<(), StoreError> {
        let tx = self.tx.as_ref().expect("the sender lives until drop");
        tx.send(w).await.map_err(|_| err("the writer thread stopped".into()))
    }

    /// The batch sizes reached so far.
    pub fn stats(&self) -> &BatchStats {
        &self.stats
    }
}

impl<W: Write> Drop for GroupCommit<W> {
    fn drop(&mut self) {
        // The writer ends once its channel is closed and empty; waiting for it means the file
        // is closed when the store is gone, so that it can be opened again at once.
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run<W: Write>(
    name: &'static str,
    db: &Database,
    mut log: Log,
    mut rx: mpsc::Receiver<W>,
    mut state: W::State,
    stats: &BatchStats,
    err: fn(String) -> StoreError,
) {
    let mut batch: Vec<W> = Vec::with_capacity(MAX_BATCH);
    let mut redo = Redo::default();
    let mut checkpointed_at = Instant::now();
    let mut failed = false;
    let (mut reported_at, mut reported) = (Instant::now(), 0);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        // Everything that arrived while the previous commit ran.
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let durable = batch.iter().any(W::durable);
        let checkpoint = failed
            || log.len() >= CHECKPOINT_BYTES
            || (!log.is_empty() && checkpointed_at.elapsed() >= CHECKPOINT_EVERY);
        let started = Instant::now();
        W::begin(&mut state);
        let committed = commit(db, &mut log, durable, checkpoint, &mut state, &mut batch, &mut redo, err);
        // After a failure the log's tail is uncertain (a frame taken back or not, a sync that
        // failed): the next batch goes to redb durably and starts a new epoch instead.
        failed = committed.is_err();
        match &committed {
            Err(_) => W::aborted(&mut state),
            Ok(Committed::Checkpoint) => {
                checkpointed_at = Instant::now();
                let took = started.elapsed().as_micros() as u64;
                stats.checkpoints.fetch_add(1, Relaxed);
                stats.checkpoint_micros.fetch_add(took, Relaxed);
                stats.longest_checkpoint_micros.fetch_max(took, Relaxed);
            }
            Ok(_) => {}
        }
        let wrote = committed.as_ref().is_ok_and(|c| !matches!(c, Committed::Nothing));
        stats.record(batch.len(), wrote, durable);
        let committed = committed.map(|_| ());
        for w in batch.drain(..) {
            w.answer(committed.clone());
        }
        let batches = stats.batches.load(Relaxed);
        if reported_at.elapsed() >= REPORT_EVERY && batches != reported {
            (reported_at, reported) = (Instant::now(), batches);
            let writes = stats.writes.load(Relaxed);
            let checkpoints = stats.checkpoints.load(Relaxed);
            tracing::debug!(
                file = name,
                batches,
                commits = stats.commits.load(Relaxed),
                durable = stats.durable_commits.load(Relaxed),
                checkpoints,
                checkpoint_ms_mean = format_args!(
                    "{:.1}",
                    stats.checkpoint_micros.load(Relaxed) as f64 / 1000.0 / checkpoints.max(1) as f64
                ),
                checkpoint_ms_max = format_args!("{:.1}", stats.longest_checkpoint_micros.load(Relaxed) as f64 / 1000.0),
                writes,
                mean = format_args!("{:.1}", writes as f64 / batches as f64),
                largest = stats.largest.load(Relaxed),
                sizes = %stats.histogram(),
                "group commit totals"
            );
        }
    }
    // Closed: one last checkpoint, so that the next start has nothing to replay.
    if !log.is_empty() {
        if let Err(e) = commit::<W>(db, &mut log, false, true, &mut state, &mut [], &mut redo, err) {
            tracing::warn!(file = name, error = %e, "the last checkpoint failed; the redo log will be replayed at the next start");
        }
    }
}

/// What became of a batch.
enum Committed {
    /// Nothing was written: the transaction was dropped.
    Nothing,
    /// Committed to redb and logged (and the log synced, for a durable batch).
    Logged,
    /// Committed durably to redb; the log started over.
    Checkpoint,
}

/// One log frame, or one transaction, for the whole batch.
#[allow(clippy::too_many_arguments)]
fn commit<W: Write>(
    db: &Database,
    log: &mut Log,
    durable: bool,
    checkpoint: bool,
    state: &mut W::State,
    batch: &mut [W],
    redo: &mut Redo,
    err: fn(String) -> StoreError,
) -> Result<Committed, StoreError> {
    redo.clear();
    if !checkpoint && W::log(state, batch, redo)? {
        if redo.is_empty() {
            return Ok(Committed::Nothing);
        }
        log_frame(log, redo, durable).map_err(|e| err(format!("redo log: {e}")))?;
        return Ok(Committed::Logged);
    }
    let mut txn = db.begin_write().map_err(|e| err(e.to_string()))?;
    txn.set_durability(if checkpoint { Durability::Immediate } else { Durability::None })
        .map_err(|e| err(e.to_string()))?;
    // One fsync per checkpoint, and no allocator state written each time; see the module's
    // docs.
    txn.set_two_phase_commit(false);
    txn.set_quick_repair(false);
    let wrote = match W::apply(&txn, state, batch, redo) {
        Ok(wrote) => wrote,
        Err(e) => {
            let _ = txn.abort();
            return Err(e);
        }
    };
    if checkpoint {
        if let Err(e) = W::checkpoint(&txn, state) {
            let _ = txn.abort();
            return Err(e);
        }
        let epoch = log.checkpoint(&txn).map_err(&err)?;
        txn.commit().map_err(|e| err(e.to_string()))?;
        log.started(epoch);
        W::checkpointed(state);
        return Ok(Committed::Checkpoint);
    }
    if !wrote {
        txn.abort().map_err(|e| err(e.to_string()))?;
        return Ok(Committed::Nothing);
    }
    let start = log.len();
    if !redo.is_empty() {
        if let Err(e) = log_frame(log, redo, durable) {
            let _ = txn.abort();
            return Err(err(format!("redo log: {e}")));
        }
    }
    if let Err(e) = txn.commit() {
        // Logged but not applied: taken back, so that a restart does not replay it.
        if !redo.is_empty() {
            let _ = log.unappend(start);
        }
        return Err(err(e.to_string()));
    }
    Ok(Committed::Logged)
}

/// Appends `redo` as one frame, synced when `durable`. A frame whose sync failed is taken
/// back; one whose write failed was never counted. Whatever happened, the writer's next batch
/// is a checkpoint, so no frame follows a failed one in the same epoch.
fn log_frame(log: &mut Log, redo: &Redo, durable: bool) -> std::io::Result<()> {
    let start = log.len();
    log.append(redo)?;
    if durable {
        if let Err(e) = log.sync() {
            let _ = log.unappend(start);
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableTable, TableDefinition};
    use tokio::sync::oneshot;

    const T: TableDefinition<u64, u64> = TableDefinition::new("t");

    /// Adds one to counter `k`; answers the value it saw, decided in batch order.
    struct Incr {
        k: u64,
        durable: bool,
        /// Fails the batch it is in.
        fail: bool,
        saw: u64,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    }

    impl Write for Incr {
        type State = ();
        fn durable(&self) -> bool {
            self.durable
        }
        fn apply(
            txn: &WriteTransaction,
            _: &mut (),
            batch: &mut [Self],
            redo: &mut Redo,
        ) -> Result<bool, StoreError> {
            if batch.iter().any(|w| w.fail) {
                return Err(StoreError::Backend("failed on purpose".into()));
            }
            let mut t = redo::Logged::open(txn, T, 1).map_err(|e| StoreError::Backend(e.to_string()))?;
            for w in batch {
                w.saw = t.get(w.k).map_err(|e| StoreError::Backend(e.to_string()))?.map_or(0, |v| v.value());
                t.insert(redo, w.k, w.saw + 1).map_err(|e| StoreError::Backend(e.to_string()))?;
            }
            Ok(true)
        }
        fn replay(txn: &WriteTransaction, op: &redo::Op<'_>) -> Result<(), String> {
            op.apply(txn, T)
        }
        fn answer(self, committed: Result<(), StoreError>) {
            let _ = self.reply.send(committed.map(|_| self.saw));
        }
    }

    /// A fresh redb file, opened, and the path of its redo log.
    fn file() -> (std::path::PathBuf, Arc<Database>, std::path::PathBuf) {
        let p = std::env::temp_dir().join(format!(
            "portcullis-gc-{}-{}.redb",
            std::process::id(),
            rand::random::<u64>()
        ));
        let db = Arc::new(Database::create(&p).unwrap());
        let log = redo::beside(&p);
        (p, db, log)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits_and_see_each_other_in_order() {
        let (p, db, log) = file();
        let gc = Arc::new(GroupCommit::<Incr>::start("test", db, &log, (), StoreError::Backend).unwrap());
        let n = 400u64;
        let mut tasks = Vec::new();
        for i in 0..n {
            let gc = gc.clone();
            tasks.push(tokio::spawn(async move {
                let (reply, rx) = oneshot::channel();
                gc.send(Incr { k: 7, durable: i % 2 == 0, fail: false, saw: 0, reply }, StoreError::Backend)
                    .await
                    .unwrap();
                rx.await.unwrap().unwrap()
            }));
        }
        let mut seen: Vec<u64> = Vec::new();
        for t in tasks {
            seen.push(t.await.unwrap());
        }
        seen.sort_unstable();
        // Each write saw every earlier one: 0, 1, …, n − 1, once each.
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
        let s = gc.stats();
        assert_eq!(s.writes.load(Relaxed), n);
        // 400 writes sent at once while commits fsync: they share commits.
        assert!(s.commits.load(Relaxed) < n, "{s:?}");
        assert_eq!(s.commits.load(Relaxed), s.batches.load(Relaxed), "every batch wrote");
        assert_eq!(s.sizes.iter().map(|b| b.load(Relaxed)).sum::<u64>(), s.batches.load(Relaxed));
        drop(gc);
        // The writer closed the file on drop: it opens again at once.
        let db = Database::create(&p).unwrap();
        let v = redb::ReadableDatabase::begin_read(&db)
            .unwrap()
            .open_table(T)
            .unwrap()
            .get(7)
            .unwrap()
            .unwrap()
            .value();
        assert_eq!(v, n);
        drop(db);
        let _ = std::fs::remove_file(p);
        let _ = std::fs::remove_file(log);
    }

    /// After a failed batch the log's tail is uncertain: the next batch is a checkpoint, not
    /// a frame after the failed one.
    #[tokio::test]
    async fn a_failed_batch_makes_the_next_one_a_checkpoint() {
        let (p, db, log) = file();
        let gc = GroupCommit::<Incr>::start("test", db, &log, (), StoreError::Backend).unwrap();
        let send = |fail| {
            let (reply, rx) = oneshot::channel();
            let gc = &gc;
            async move {
                gc.send(Incr { k: 1, durable: true, fail, saw: 0, reply }, StoreError::Backend)
                    .await
                    .unwrap();
                rx.await.unwrap()
            }
        };
        assert_eq!(send(false).await.unwrap(), 0);
        assert_eq!(gc.stats().checkpoints.load(Relaxed), 0, "logged, not checkpointed");
        assert!(send(true).await.is_err());
        assert_eq!(send(false).await.unwrap(), 1);
        assert_eq!(gc.stats().checkpoints.load(Relaxed), 1, "the batch after the failure");
        assert_eq!(send(false).await.unwrap(), 2);
        drop(gc);
        let _ = std::fs::remove_file(p);
        let _ = std::fs::remove_file(log);
    }
}
