//! The embedded delivery queue (redb), for a single instance that must not lose an accepted
//! delivery when it restarts. A file of its own beside the idempotency store's.
//!
//! - `items`: sequence number → the encoded delivery;
//! - `due`: (route, due time in ms, sequence number) → (), the order deliveries are taken in.
//!   Taking a delivery moves its due time forward by the stale time, so a worker that dies
//!   (or a process that restarts) leaves it to be taken again later;
//! - `dead`: sequence number → the encoded delivery, the dead-letter list.
//!
//! A push is committed durably (fsync) before the provider is answered.

use super::{now_ms, DeadLetter, Item, Stats};
use crate::idempotency::StoreError;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const ITEMS: TableDefinition<u64, &[u8]> = TableDefinition::new("queue_items");
const DUE: TableDefinition<(&str, u64, u64), ()> = TableDefinition::new("queue_due");
const DEAD: TableDefinition<u64, &[u8]> = TableDefinition::new("queue_dead");
const META: TableDefinition<&str, u64> = TableDefinition::new("queue_meta");
/// (route, ordering value, sequence number): the lines of ordered deliveries.
const LINES: TableDefinition<(&str, &str, u64), ()> = TableDefinition::new("queue_lines");

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("embedded queue: {e}"))
}

pub struct EmbeddedQueue {
    db: Arc<Database>,
}

impl EmbeddedQueue {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let db = Database::create(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(ITEMS).map_err(err)?;
        txn.open_table(DUE).map_err(err)?;
        txn.open_table(DEAD).map_err(err)?;
        txn.open_table(META).map_err(err)?;
        txn.open_table(LINES).map_err(err)?;
        txn.commit().map_err(err)?;
        Ok(EmbeddedQueue { db: Arc::new(db) })
    }

    /// Runs `f` in a write transaction on a blocking thread.
    async fn write<T: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write().map_err(err)?;
            txn.set_durability(if durable { Durability::Immediate } else { Durability::None })
                .map_err(err)?;
            let out = f(&txn)?;
            txn.commit().map_err(err)?;
            Ok(out)
        })
        .await
        .map_err(err)?
    }

    pub async fn push(&self, route: &str, item: &Item) -> Result<(), StoreError> {
        let (route, bytes, order) = (route.to_string(), item.encode(), item.order.clone());
        self.write(true, move |txn| {
            let mut meta = txn.open_table(META).map_err(err)?;
            let seq = meta.get("seq").map_err(err)?.map(|v| v.value()).unwrap_or(0) + 1;
            meta.insert("seq", seq).map_err(err)?;
            txn.open_table(ITEMS).map_err(err)?.insert(seq, bytes.as_slice()).map_err(err)?;
            txn.open_table(DUE).map_err(err)?.insert((route.as_str(), now_ms(), seq), ()).map_err(err)?;
            if let Some(order) = &order {
                txn.open_table(LINES)
                    .map_err(err)?
                    .insert((route.as_str(), order.as_str(), seq), ())
                    .map_err(err)?;
            }
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
            Ok(head.is_none_or(|h| h == seq))
        })
    }

    /// Lets the next delivery of the same ordering value go.
    fn leave_line(
        txn: &redb::WriteTransaction,
        route: &str,
        item: &Item,
        seq: u64,
    ) -> Result<(), StoreError> {
        if let Some(order) = &item.order {
            txn.open_table(LINES).map_err(err)?.remove((route, order.as_str(), seq)).map_err(err)?;
        }
        Ok(())
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
        let route = route.to_string();
        self.write(false, move |txn| {
            let now = now_ms();
            let mut due = txn.open_table(DUE).map_err(err)?;
            let items = txn.open_table(ITEMS).map_err(err)?;
            let ready: Vec<(u64, u64)> = due
                .range((route.as_str(), 0, 0)..=(route.as_str(), now, u64::MAX))
                .map_err(err)?
                .take(count)
                .filter_map(|e| e.ok())
                .map(|(k, _)| (k.value().1, k.value().2))
                .collect();
            let mut out = Vec::with_capacity(ready.len());
            for (at, seq) in ready {
                due.remove((route.as_str(), at, seq)).map_err(err)?;
                // Leased: due again only if this worker does not finish in time.
                due.insert((route.as_str(), now + stale.as_millis() as u64, seq), ()).map_err(err)?;
                if let Some(mut item) = items.get(seq).map_err(err)?.and_then(|v| Item::decode(v.value())) {
                    if item.origin.is_empty() {
                        item.origin = seq.to_string();
                    }
                    out.push((seq.to_string(), item));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Removes `seq` from the due index, wherever its due time is.
    fn undue(due: &mut redb::Table<(&str, u64, u64), ()>, route: &str, seq: u64) -> Result<(), StoreError> {
        let keys: Vec<(u64, u64)> = due
            .range((route, 0, 0)..=(route, u64::MAX, u64::MAX))
            .map_err(err)?
            .filter_map(|e| e.ok())
            .map(|(k, _)| (k.value().1, k.value().2))
            .filter(|(_, s)| *s == seq)
            .collect();
        for (at, s) in keys {
            due.remove((route, at, s)).map_err(err)?;
        }
        Ok(())
    }

    pub async fn ack(&self, route: &str, id: &str, item: &Item) -> Result<(), StoreError> {
        let (route, seq, item) = (route.to_string(), id.parse::<u64>().map_err(err)?, item.clone());
        self.write(true, move |txn| {
            Self::undue(&mut txn.open_table(DUE).map_err(err)?, &route, seq)?;
            txn.open_table(ITEMS).map_err(err)?.remove(seq).map_err(err)?;
            Self::leave_line(txn, &route, &item, seq)
        })
        .await
    }

    pub async fn retry(&self, route: &str, id: &str, item: &Item, due_ms: u64) -> Result<(), StoreError> {
        let (route, seq, bytes) = (route.to_string(), id.parse::<u64>().map_err(err)?, item.encode());
        self.write(true, move |txn| {
            let mut due = txn.open_table(DUE).map_err(err)?;
            Self::undue(&mut due, &route, seq)?;
            due.insert((route.as_str(), due_ms, seq), ()).map_err(err)?;
            txn.open_table(ITEMS).map_err(err)?.insert(seq, bytes.as_slice()).map_err(err)?;
            Ok(())
        })
        .await
    }

    pub async fn bury(&self, route: &str, id: &str, item: &Item) -> Result<(), StoreError> {
        let (route, seq, bytes, item) =
            (route.to_string(), id.parse::<u64>().map_err(err)?, item.encode(), item.clone());
        self.write(true, move |txn| {
            Self::undue(&mut txn.open_table(DUE).map_err(err)?, &route, seq)?;
            txn.open_table(ITEMS).map_err(err)?.remove(seq).map_err(err)?;
            txn.open_table(DEAD).map_err(err)?.insert(seq, bytes.as_slice()).map_err(err)?;
            Self::leave_line(txn, &route, &item, seq)
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

    pub async fn stats(&self, route: &str) -> Result<Stats, StoreError> {
        let now = now_ms();
        self.read(|txn| {
            let due = txn.open_table(DUE).map_err(err)?;
            let items = txn.open_table(ITEMS).map_err(err)?;
            let dead = txn.open_table(DEAD).map_err(err)?;
            let (mut depth, mut in_retry, mut oldest) = (0u64, 0u64, None::<u64>);
            for e in due.range((route, 0, 0)..=(route, u64::MAX, u64::MAX)).map_err(err)? {
                let (k, _) = e.map_err(err)?;
                depth += 1;
                if let Some(item) = items.get(k.value().2).map_err(err)?.and_then(|v| Item::decode(v.value()))
                {
                    if item.attempts > 0 {
                        in_retry += 1;
                    }
                    oldest = Some(oldest.map_or(item.first_seen_ms, |o| o.min(item.first_seen_ms)));
                }
            }
            let dead_n = dead
                .iter()
                .map_err(err)?
                .filter_map(|e| e.ok())
                .filter(|(_, v)| Item::decode(v.value()).is_some_and(|i| i.route == route))
                .count() as u64;
            Ok(Stats {
                route: route.to_string(),
                depth,
                in_retry,
                dead: dead_n,
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
        self.write(true, move |txn| {
            let mut dead = txn.open_table(DEAD).map_err(err)?;
            let chosen: Vec<(u64, Item)> = dead
                .iter()
                .map_err(err)?
                .filter_map(|e| e.ok())
                .filter_map(|(k, v)| Item::decode(v.value()).map(|i| (k.value(), i)))
                .filter(|(seq, i)| i.route == route && only.is_none_or(|o| o == *seq))
                .collect();
            let mut items = txn.open_table(ITEMS).map_err(err)?;
            let mut due = txn.open_table(DUE).map_err(err)?;
            let now = now_ms();
            for (seq, mut item) in chosen.iter().cloned() {
                dead.remove(seq).map_err(err)?;
                item.attempts = 0;
                item.first_seen_ms = now;
                item.last_error.clear();
                items.insert(seq, item.encode().as_slice()).map_err(err)?;
                due.insert((route.as_str(), now, seq), ()).map_err(err)?;
                if let Some(order) = &item.order {
                    // A replayed ordered delivery takes its place in its line again, by the
                    // order it was first accepted in.
                    let mut lines = txn.open_table(LINES).map_err(err)?;
                    lines.insert((route.as_str(), order.as_str(), seq), ()).map_err(err)?;
                }
            }
            Ok(chosen.len() as u64)
        })
        .await
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
        assert_eq!(q.replay("/r", None).await.unwrap(), 1);
        let back = q.take("/r", 10, stale).await.unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].1.attempts, 0);
        assert_eq!(q.take("/other", 10, stale).await.unwrap().len(), 1);
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
}
