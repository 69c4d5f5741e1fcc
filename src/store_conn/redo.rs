//! The redo log in front of a redb file: what makes a group commit cost one small `fdatasync`
//! instead of a redb durable commit.
//!
//! A redb durable commit writes every page the batch dirtied (a leaf and its branches per key,
//! 4 KiB each, copied on write), checksums them, writes the header and syncs: measured under
//! load here, ~1.4 ms and a third of the process' CPU for a batch of nine 25-byte completions.
//! Appending the same nine changes to a log and syncing it costs ~0.15 ms. So each batch is
//! committed to redb *without* durability (visible to every later transaction at once, its
//! pages left in redb's write buffer) and its changes, as rows put and removed, are appended
//! to this log and synced before any caller of the batch is answered. Every so often the
//! writer makes one durable redb commit (a *checkpoint*) and starts the log over; after a
//! crash, the file holds the last checkpoint and the log holds every batch since, replayed in
//! order at the next start.
//!
//! The file: frames, one per batch, from offset 0, each `magic, payload length, epoch, frame
//! number, CRC-32 of the rest` followed by the payload (the batch's rows, [`Op`]). The
//! *epoch* is a random 64-bit number chosen at each checkpoint and written in the checkpoint's
//! own durable commit; a log is read from offset 0 for as long as frames carry that epoch,
//! number on from 0 and check out (CRC-32), and no further. Frames left behind by an earlier epoch
//! (the file is reused, not truncated), a frame torn by a crash, and the zeros the file is
//! grown with all end the log. The epoch is random rather than counted because payloads carry
//! webhook bodies: a body crafted to look like a frame would have to guess it.
//!
//! The file is grown ahead of the writes in zero-filled steps, so that a sync only has to
//! write data blocks, not the file's size and extents through the journal.
//!
//! Written by hand, not taken from a crate: the log is on the path of every acknowledged
//! delivery, and its one property (a frame is replayed only if all of it reached the disk in
//! this epoch) is small enough to state and test here.

use redb::{Key, ReadableDatabase, TableDefinition, Value, WriteTransaction};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

const MAGIC: u32 = 0x5043_524c; // "PCRL"
const HEADER: usize = 4 + 4 + 8 + 8 + 4;
/// The log grows by this much at a time, zero-filled.
const GROW: u64 = 1 << 20;

/// Where the file's current epoch is kept (written only by checkpoints).
const EPOCH: TableDefinition<&str, u64> = TableDefinition::new("portcullis_redo");

/// The redo log of the redb file at `path`: `claims.redb` → `claims.redb.redo`.
pub fn beside(path: &Path) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".redo");
    p.into()
}

/// The rows one batch changed, in order, as they go into a frame.
#[derive(Default)]
pub struct Redo {
    buf: Vec<u8>,
}

const PUT: u8 = 1;
const REMOVE: u8 = 2;

impl Redo {
    fn op(&mut self, table: u8, kind: u8, key: &[u8], value: &[u8]) {
        self.buf.extend_from_slice(&[table, kind]);
        self.buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(value);
    }

    /// Logs row `key` of table `table` put to `value` without writing the table: for a file
    /// that keeps its rows in memory until the next checkpoint ([`crate::store_conn::group_commit::Write::log`]).
    /// `key` and `value` are the bytes redb's `as_bytes` gives, as replay reads them back.
    pub fn put(&mut self, table: u8, key: &[u8], value: &[u8]) {
        self.op(table, PUT, key, value);
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

/// One row change read back from the log.
#[derive(Debug)]
pub struct Op<'a> {
    /// The table, as numbered by its [`Logged`] handle.
    pub table: u8,
    /// `None`: the row was removed.
    pub value: Option<&'a [u8]>,
    pub key: &'a [u8],
}

impl Op<'_> {
    /// Applies this change to `def` (the table it was numbered for) in `txn`.
    pub fn apply<K: Key + 'static, V: Value + 'static>(
        &self,
        txn: &WriteTransaction,
        def: TableDefinition<K, V>,
    ) -> Result<(), String> {
        let mut t = txn.open_table(def).map_err(|e| e.to_string())?;
        match self.value {
            Some(v) => t.insert(K::from_bytes(self.key), V::from_bytes(v)).map(|_| ()),
            None => t.remove(K::from_bytes(self.key)).map(|_| ()),
        }
        .map_err(|e| e.to_string())
    }
}

fn ops(mut payload: &[u8]) -> Result<Vec<Op<'_>>, String> {
    let mut out = Vec::new();
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if b.len() < n {
            return Err("a row runs past its frame".into());
        }
        let (h, t) = b.split_at(n);
        *b = t;
        Ok(h)
    }
    fn len(b: &mut &[u8]) -> Result<usize, String> {
        Ok(u32::from_le_bytes(take(b, 4)?.try_into().expect("4 bytes")) as usize)
    }
    while !payload.is_empty() {
        let head = take(&mut payload, 2)?;
        let key_len = len(&mut payload)?;
        let key = take(&mut payload, key_len)?;
        let value_len = len(&mut payload)?;
        let value = take(&mut payload, value_len)?;
        let value = match head[1] {
            PUT => Some(value),
            REMOVE => None,
            k => return Err(format!("unknown row change {k}")),
        };
        out.push(Op { table: head[0], key, value });
    }
    Ok(out)
}

/// A table opened in a batch's transaction whose changes are also written to the batch's
/// [`Redo`]. Reads go to the table itself (through `Deref`, which gives no `&mut`, so no
/// change can bypass the log).
pub struct Logged<'t, K: Key + 'static, V: Value + 'static> {
    table: redb::Table<'t, K, V>,
    id: u8,
}

impl<'t, K: Key + 'static, V: Value + 'static> Logged<'t, K, V> {
    /// Opens `def` in `txn`; `id` names it in the log, and must be the number the file's
    /// replay maps back to `def`.
    pub fn open(
        txn: &'t WriteTransaction,
        def: TableDefinition<K, V>,
        id: u8,
    ) -> Result<Self, redb::TableError> {
        Ok(Logged { table: txn.open_table(def)?, id })
    }

    pub fn insert<'k, 'v>(
        &mut self,
        redo: &mut Redo,
        key: impl std::borrow::Borrow<K::SelfType<'k>>,
        value: impl std::borrow::Borrow<V::SelfType<'v>>,
    ) -> Result<(), redb::StorageError> {
        let (key, value) = (key.borrow(), value.borrow());
        self.table.insert(key, value)?;
        redo.op(self.id, PUT, K::as_bytes(key).as_ref(), V::as_bytes(value).as_ref());
        Ok(())
    }

    /// Removes `key`; what it held, if anything.
    pub fn remove<'k>(
        &mut self,
        redo: &mut Redo,
        key: impl std::borrow::Borrow<K::SelfType<'k>>,
    ) -> Result<Option<redb::AccessGuard<'_, V>>, redb::StorageError> {
        let key = key.borrow();
        let old = self.table.remove(key)?;
        if old.is_some() {
            redo.op(self.id, REMOVE, K::as_bytes(key).as_ref(), &[]);
        }
        Ok(old)
    }
}

impl<'t, K: Key + 'static, V: Value + 'static> std::ops::Deref for Logged<'t, K, V> {
    type Target = redb::Table<'t, K, V>;
    fn deref(&self) -> &Self::Target {
        &self.table
    }
}

/// The log file of one redb file.
pub struct Log {
    file: File,
    /// Bytes allocated (zero-filled) in the file.
    allocated: u64,
    /// Where the next frame goes: the bytes of this epoch so far.
    at: u64,
    epoch: u64,
    frame_no: u64,
    frame: Vec<u8>,
}

/// What recovery found.
pub struct Recovered {
    pub frames: usize,
    pub rows: usize,
}

impl Log {
    /// Opens the log of `db` at `path`, replays the frames of the file's epoch into `db` with
    /// `replay` (in order, in one transaction), then checkpoints: one durable commit that
    /// also starts a new epoch, after which the log is empty.
    pub fn recover(
        db: &redb::Database,
        path: &Path,
        replay: impl Fn(&WriteTransaction, &Op<'_>) -> Result<(), String>,
    ) -> Result<(Log, Recovered), String> {
        let epoch = {
            let txn = db.begin_read().map_err(|e| e.to_string())?;
            match txn.open_table(EPOCH) {
                Ok(t) => t.get("epoch").map_err(|e| e.to_string())?.map(|v| v.value()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(e.to_string()),
            }
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let bytes = {
            use std::io::Read;
            let mut b = Vec::new();
            (&file).read_to_end(&mut b).map_err(|e| format!("{}: {e}", path.display()))?;
            b
        };
        let allocated = bytes.len() as u64;
        let mut log = Log { file, allocated, at: 0, epoch: 0, frame_no: 0, frame: Vec::new() };
        let mut found = Recovered { frames: 0, rows: 0 };
        let txn = db.begin_write().map_err(|e| e.to_string())?;
        if let Some(epoch) = epoch {
            let mut at = 0;
            while let Some((payload, next)) = frame(&bytes, at, epoch, found.frames as u64) {
                for op in ops(payload)? {
                    replay(&txn, &op)?;
                    found.rows += 1;
                }
                found.frames += 1;
                at = next;
            }
        }
        let epoch = log.checkpoint(&txn)?;
        txn.commit().map_err(|e| e.to_string())?;
        log.started(epoch);
        Ok((log, found))
    }

    /// Writes a new epoch into `txn`, which the caller commits durably, then passes to
    /// [`Log::started`]. Until then the log goes on in its current epoch: a checkpoint whose
    /// commit failed changes nothing.
    pub fn checkpoint(&self, txn: &WriteTransaction) -> Result<u64, String> {
        let epoch = rand::random();
        let mut t = txn.open_table(EPOCH).map_err(|e| e.to_string())?;
        t.insert("epoch", epoch).map_err(|e| e.to_string())?;
        Ok(epoch)
    }

    /// The checkpoint that wrote `epoch` is durable: the log starts over, empty.
    pub fn started(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.at = 0;
        self.frame_no = 0;
    }

    /// Bytes logged since the last checkpoint.
    pub fn len(&self) -> u64 {
        self.at
    }

    /// Nothing logged since the last checkpoint.
    pub fn is_empty(&self) -> bool {
        self.at == 0
    }

    /// Appends `redo` as one frame (not yet synced). On error the frame counts as not
    /// written: the next one goes to the same place.
    pub fn append(&mut self, redo: &Redo) -> std::io::Result<()> {
        let f = &mut self.frame;
        f.clear();
        f.extend_from_slice(&MAGIC.to_le_bytes());
        f.extend_from_slice(&(redo.buf.len() as u32).to_le_bytes());
        f.extend_from_slice(&self.epoch.to_le_bytes());
        f.extend_from_slice(&self.frame_no.to_le_bytes());
        let crc = crc32(&f[4..], &redo.buf);
        f.extend_from_slice(&crc.to_le_bytes());
        f.extend_from_slice(&redo.buf);
        let end = self.at + f.len() as u64;
        if end > self.allocated {
            // Zeros ahead of the writes: the frames then overwrite allocated blocks.
            let grow = (end - self.allocated).div_ceil(GROW) * GROW;
            let zeros = vec![0u8; grow as usize];
            self.file.write_all_at(&zeros, self.allocated)?;
            self.allocated += grow;
        }
        self.file.write_all_at(&self.frame, self.at)?;
        self.at = end;
        self.frame_no += 1;
        Ok(())
    }

    /// Makes every appended frame durable.
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// Takes back the last frame appended (its batch failed to commit after it was written):
    /// its header is zeroed and synced, so that it ends the log.
    pub fn unappend(&mut self, frame_start: u64) -> std::io::Result<()> {
        self.file.write_all_at(&[0u8; HEADER], frame_start)?;
        self.file.sync_data()?;
        self.at = frame_start;
        self.frame_no = self.frame_no.saturating_sub(1);
        Ok(())
    }
}

fn crc32(head: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(head);
    h.update(payload);
    h.finalize()
}

/// The payload of the frame at `at`, and where the next frame starts, if it is a whole frame
/// of `epoch` numbered `no`.
fn frame(bytes: &[u8], at: usize, epoch: u64, no: u64) -> Option<(&[u8], usize)> {
    let head = bytes.get(at..at + HEADER)?;
    let word = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().expect("4 bytes"));
    let long = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().expect("8 bytes"));
    if word(0) != MAGIC || long(8) != epoch || long(16) != no {
        return None;
    }
    let len = word(4) as usize;
    let payload = bytes.get(at + HEADER..at + HEADER + len)?;
    (crc32(&head[4..HEADER - 4], payload) == word(HEADER - 4)).then_some((payload, at + HEADER + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, Durability};

    const T: TableDefinition<&str, u64> = TableDefinition::new("t");

    fn replay(txn: &WriteTransaction, op: &Op<'_>) -> Result<(), String> {
        match op.table {
            1 => op.apply(txn, T),
            n => Err(format!("table {n}")),
        }
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!(
            "portcullis-redo-{name}-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ))
    }

    fn read(db: &Database, k: &str) -> Option<u64> {
        let txn = db.begin_read().unwrap();
        txn.open_table(T).ok()?.get(k).unwrap().map(|v| v.value())
    }

    /// Commits `puts` without durability and logs them, as the writer does.
    fn batch(db: &Database, log: &mut Log, puts: &[(&str, Option<u64>)], sync: bool) {
        let mut txn = db.begin_write().unwrap();
        txn.set_durability(Durability::None).unwrap();
        let mut redo = Redo::default();
        {
            let mut t = Logged::open(&txn, T, 1).unwrap();
            for (k, v) in puts {
                match v {
                    Some(v) => t.insert(&mut redo, *k, *v).unwrap(),
                    None => drop(t.remove(&mut redo, *k).unwrap()),
                }
            }
        }
        txn.commit().unwrap();
        log.append(&redo).unwrap();
        if sync {
            log.sync().unwrap();
        }
    }

    /// A crash, as far as redb is concerned: the file as of its last durable commit. Copying
    /// the file while the database is open gives exactly that (non-durable commits live in
    /// redb's write buffer, never in the file until a durable commit).
    fn crash_copy(db_path: &Path, log_path: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let (d, l) = (tmp("crash-db"), tmp("crash-log"));
        std::fs::copy(db_path, &d).unwrap();
        std::fs::copy(log_path, &l).unwrap();
        (d, l)
    }

    #[test]
    fn what_was_logged_since_the_checkpoint_is_replayed_in_order_and_only_that() {
        let (dp, lp) = (tmp("db"), tmp("log"));
        let db = Database::create(&dp).unwrap();
        let (mut log, found) = Log::recover(&db, &lp, replay).unwrap();
        assert_eq!(found.frames, 0);
        batch(&db, &mut log, &[("a", Some(1)), ("b", Some(2))], true);
        batch(&db, &mut log, &[("a", Some(3)), ("b", None), ("c", Some(4))], true);
        let (cd, cl) = crash_copy(&dp, &lp);
        let crashed = Database::create(&cd).unwrap();
        // The durable file alone knows nothing of the batches.
        assert_eq!(read(&crashed, "a"), None);
        let (mut log2, found) = Log::recover(&crashed, &cl, replay).unwrap();
        assert_eq!((found.frames, found.rows), (2, 5));
        assert_eq!((read(&crashed, "a"), read(&crashed, "b"), read(&crashed, "c")), (Some(3), None, Some(4)));
        // The recovery checkpointed: a new epoch, so a second crash right away replays
        // nothing more (the old frames are still in the file, of the old epoch).
        batch(&crashed, &mut log2, &[("d", Some(5))], true);
        drop(crashed);
        let again = Database::create(&cd).unwrap();
        let (_, found) = Log::recover(&again, &cl, replay).unwrap();
        assert_eq!((found.frames, found.rows), (1, 1));
        assert_eq!((read(&again, "a"), read(&again, "d")), (Some(3), Some(5)));
        for p in [dp, lp, cd, cl] {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn a_torn_or_forged_frame_ends_the_log() {
        let (dp, lp) = (tmp("db"), tmp("log"));
        let db = Database::create(&dp).unwrap();
        let (mut log, _) = Log::recover(&db, &lp, replay).unwrap();
        batch(&db, &mut log, &[("a", Some(1))], true);
        let second = log.len();
        batch(&db, &mut log, &[("b", Some(2))], true);
        batch(&db, &mut log, &[("c", Some(3))], true);
        let (cd, cl) = crash_copy(&dp, &lp);
        // Tear the second frame: one byte of its payload flipped.
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&cl).unwrap();
        let mut byte = [0u8; 1];
        f.read_exact_at(&mut byte, second + HEADER as u64 + 3).unwrap();
        f.write_all_at(&[byte[0] ^ 0x40], second + HEADER as u64 + 3).unwrap();
        let crashed = Database::create(&cd).unwrap();
        let (_, found) = Log::recover(&crashed, &cl, replay).unwrap();
        // The first frame only: the third is whole but comes after the torn one.
        assert_eq!(found.frames, 1);
        assert_eq!((read(&crashed, "a"), read(&crashed, "b"), read(&crashed, "c")), (Some(1), None, None));
        for p in [dp, lp, cd, cl] {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn a_checkpoint_empties_the_log_and_a_failed_batch_is_taken_back() {
        let (dp, lp) = (tmp("db"), tmp("log"));
        let db = Database::create(&dp).unwrap();
        let (mut log, _) = Log::recover(&db, &lp, replay).unwrap();
        batch(&db, &mut log, &[("a", Some(1))], true);
        {
            let txn = db.begin_write().unwrap();
            let epoch = log.checkpoint(&txn).unwrap();
            txn.commit().unwrap();
            log.started(epoch);
        }
        assert_eq!(log.len(), 0);
        batch(&db, &mut log, &[("b", Some(2))], true);
        let start = log.len();
        batch(&db, &mut log, &[("c", Some(3))], true);
        log.unappend(start).unwrap();
        let (cd, cl) = crash_copy(&dp, &lp);
        let crashed = Database::create(&cd).unwrap();
        let (_, found) = Log::recover(&crashed, &cl, replay).unwrap();
        assert_eq!(found.frames, 1, "b only: a is in the checkpoint, c was taken back");
        assert_eq!((read(&crashed, "a"), read(&crashed, "b"), read(&crashed, "c")), (Some(1), Some(2), None));
        for p in [dp, lp, cd, cl] {
            let _ = std::fs::remove_file(p);
        }
    }
}
