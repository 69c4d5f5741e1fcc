//! The queue in Redis Streams, shared by every instance. Per route, three keys share one hash
//! tag (one cluster slot):
//! - `{prefix}{q:ROUTE}:s`, a stream read by the consumer group `portcullis`; a worker that
//!   dies leaves its entries pending, and another instance takes them over (`XAUTOCLAIM`);
//! - `{prefix}{q:ROUTE}:d`, a sorted set of deliveries waiting for their next attempt;
//! - `{prefix}{q:ROUTE}:x`, the dead-letter list;
//! - `{prefix}{q:ROUTE}:o:VALUE`, the line of an ordering value (`queue.order_by`).
//!
//! Each move is one Lua script, so no other worker sees a delivery half moved; the
//! acknowledgement of a delivered one is two native commands in one pipeline (see
//! [`RedisQueue::ack`]).
//!
//! "Accepted" is as durable as Redis is configured to be: with `appendonly yes` and
//! `appendfsync always` an accepted delivery survives a Redis crash; with `everysec`, up to a
//! second of them may not.

use super::{now_ms, Backend, DeadLetter, Item, Stats};
use crate::store_conn::redis_pool::{Conn, RedisPool};
use crate::store_conn::{bounded, StoreError, StoreFuture};
use redis::Script;
use std::sync::LazyLock;
use std::time::Duration;

const GROUP: &str = "portcullis";

static RETRY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
",
    )
});

static DEAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[3])
return 1
",
    )
});

/// Appends to the stream; with a push mark (ARGV[2] > 0, the mark KEYS[2]) only if the mark
/// was not set yet, and sets it; an ordered delivery joins its ordering value's line (the last
/// key) in the same step. Returns the entry's id, or nil when the mark was set already.
static PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local line = nil
if tonumber(ARGV[2]) > 0 then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return false end
  line = KEYS[3]
else
  line = KEYS[2]
end
local id = redis.call('XADD', KEYS[1], '*', 'd', ARGV[1])
if line then redis.call('RPUSH', line, id) end
return id
",
    )
});

/// Moves deliveries whose retry time has come from the waiting set back to the stream.
static PROMOTE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, item in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'd', item)
  redis.call('ZREM', KEYS[1], item)
end
return #due
",
    )
});

/// Moves dead letters back to the stream: ARGV holds pairs of (the stored bytes to remove,
/// the fresh bytes to queue). Returns the 0-based places of the pairs it moved: a letter a
/// purge (or another replay) took meanwhile is not in the list any more and is skipped.
static REPLAY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local moved = {}
for i = 1, #ARGV, 2 do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) > 0 then
    redis.call('XADD', KEYS[2], '*', 'd', ARGV[i + 1])
    table.insert(moved, (i - 1) / 2)
  end
end
return moved
",
    )
});

/// Deletes dead letters: ARGV holds the stored bytes of each; a letter that a replay (or
/// another purge) moved meanwhile is no longer in the list and is not counted.
static PURGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = 0
for i = 1, #ARGV do
  n = n + redis.call('LREM', KEYS[1], 1, ARGV[i])
end
return n
",
    )
});

/// One consistent snapshot of a route's queue, in one script (no move can fall between the
/// reads): the stream's length, the waiting set's size, the dead-letter list's length, the
/// first stream entry's delivery and the first waiting delivery ("" when none).
static STATS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local xlen = redis.call('XLEN', KEYS[1])
local waiting = redis.call('ZCARD', KEYS[2])
local dead = redis.call('LLEN', KEYS[3])
local first = ''
local entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #entries > 0 then
  local fields = entries[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'd' then first = fields[i + 1] end
  end
end
local next_retry = redis.call('ZRANGE', KEYS[2], 0, 0)[1] or ''
return {xlen, waiting, dead, first, next_retry}
",
    )
});

/// The queue in Redis (or Redis Cluster), shared by every instance.
pub struct RedisQueue {
    redis: RedisPool,
    timeout: Duration,
    /// This instance's name in the consumer group.
    consumer: String,
}

type Entries = Vec<(String, Vec<(String, Vec<u8>)>)>;

impl RedisQueue {
    pub fn new(redis: RedisPool, timeout: Duration) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let consumer = format!("{}-{}-{:08x}", host.trim(), std::process::id(), rand::random::<u32>());
        RedisQueue { redis, timeout, consumer }
    }

    fn keys(&self, route: &str) -> (String, String, String) {
        let base = self.redis.key(&format!("q:{route}"));
        (format!("{base}:s"), format!("{base}:d"), format!("{base}:x"))
    }

    async fn conn(&self) -> Result<Conn, StoreError> {
        self.redis.conn().await
    }

    /// The list that orders deliveries sharing one ordering value.
    fn order_key(&self, route: &str, order: &str) -> String {
        format!("{}:o:{order}", self.redis.key(&format!("q:{route}")))
    }

    /// Appends a delivery; returns once Redis holds it. An ordered delivery also joins the
    /// end of its ordering value's line, in the same script. With `once`, the script first sets
    /// the event's push mark (`SET … NX PX once`, in the stream's slot) and appends only if it
    /// was not set: repeating the push — the connection's one retry after a lost reply, or the
    /// provider's retry after a reply that came past `store.timeout` — appends nothing.
    pub async fn push(&self, route: &str, item: &Item, once: Option<Duration>) -> Result<(), StoreError> {
        let (stream, _, _) = self.keys(route);
        let mut c = self.conn().await?;
        let mut inv = PUSH.prepare_invoke();
        inv.key(&stream).arg(item.encode());
        match once {
            Some(ttl) => inv.arg(ttl.as_millis().max(1) as u64),
            None => inv.arg(0),
        };
        if once.is_some() {
            inv.key(format!(
                "{}:p:{}",
                self.redis.key(&format!("q:{route}")),
                String::from_utf8_lossy(&item.id)
            ));
        }
        if let Some(order) = &item.order {
            inv.key(self.order_key(route, order));
        }
        bounded(self.timeout, c.invoke::<Option<String>>(&inv)).await.map(|_| ())
    }

    pub async fn is_head(&self, route: &str, item: &Item) -> Result<bool, StoreError> {
        let Some(order) = &item.order else { return Ok(true) };
        let mut c = self.conn().await?;
        let head: Option<String> =
            c.query(redis::cmd("LINDEX").arg(self.order_key(route, order)).arg(0)).await?;
        Ok(head.is_none_or(|h| h == item.origin))
    }

    /// Lets the next delivery of the same ordering value go.
    async fn leave_line(&self, route: &str, item: &Item) -> Result<(), StoreError> {
        let Some(order) = &item.order else { return Ok(()) };
        let mut c = self.conn().await?;
        let _: i64 =
            c.query(redis::cmd("LREM").arg(self.order_key(route, order)).arg(1).arg(&item.origin)).await?;
        Ok(())
    }

    /// Creates the route's consumer group if it does not exist yet.
    pub async fn ensure_group(&self, route: &str) -> Result<(), StoreError> {
        let (stream, _, _) = self.keys(route);
        let mut c = self.conn().await?;
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE").arg(&stream).arg(GROUP).arg("0").arg("MKSTREAM");
        match c.query::<String>(&cmd).await {
            Ok(_) => Ok(()),
            Err(StoreError::Backend(e)) if e.contains("BUSYGROUP") => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn parse_entries(entries: Entries) -> Vec<(String, Item)> {
        entries
            .into_iter()
            .filter_map(|(id, fields)| {
                let data = fields.into_iter().find(|(k, _)| k == "d")?.1;
                let mut item = Item::decode(&data)?;
                if item.origin.is_empty() {
                    item.origin = id.clone();
                }
                Some((id, item))
            })
            .collect()
    }

    /// Up to `count` deliveries for this instance: first those another consumer left pending
    /// for longer than `stale` (it died), then new ones.
    pub async fn take(
        &self,
        route: &str,
        count: usize,
        stale: Duration,
    ) -> Result<Vec<(String, Item)>, StoreError> {
        let (stream, _, _) = self.keys(route);
        let mut c = self.conn().await?;
        let mut claim = redis::cmd("XAUTOCLAIM");
        claim
            .arg(&stream)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(stale.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(count);
        let (_, claimed, _): (String, Entries, Vec<String>) = bounded(self.timeout, c.query(&claim)).await?;
        let mut out = Self::parse_entries(claimed);
        if out.len() < count {
            let mut read = redis::cmd("XREADGROUP");
            read.arg("GROUP")
                .arg(GROUP)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(count - out.len())
                .arg("STREAMS")
                .arg(&stream)
                .arg(">");
            let reply: Option<Vec<(String, Entries)>> = bounded(self.timeout, c.query(&read)).await?;
            for (_, entries) in reply.unwrap_or_default() {
                out.extend(Self::parse_entries(entries));
            }
        }
        Ok(out)
    }

    /// Forgets a delivered delivery: `XACK` and `XDEL` in one pipeline, native commands (a
    /// script cost Redis more than both). Not atomic, and need not be: an entry acknowledged
    /// but not deleted is never read again and only counts in the depth until the ack, which
    /// the worker repeats after an error, deletes it; one deleted but still pending is dropped
    /// from the pending list by the next `XAUTOCLAIM` that meets it.
    pub async fn ack(&self, route: &str, id: &str, item: &Item) -> Result<(), StoreError> {
        let (stream, _, _) = self.keys(route);
        let mut c = self.conn().await?;
        let mut pipe = redis::pipe();
        pipe.cmd("XACK").arg(&stream).arg(GROUP).arg(id).ignore();
        pipe.cmd("XDEL").arg(&stream).arg(id).ignore();
        bounded(self.timeout, c.pipe::<()>(&pipe)).await?;
        self.leave_line(route, item).await
    }

    /// Puts a delivery aside until `due_ms`.
    pub async fn retry(&self, route: &str, id: &str, item: &Item, due_ms: u64) -> Result<(), StoreError> {
        let (stream, delayed, _) = self.keys(route);
        let mut c = self.conn().await?;
        let mut inv = RETRY.prepare_invoke();
        inv.key(&stream).key(&delayed).arg(GROUP).arg(id).arg(due_ms).arg(item.encode());
        bounded(self.timeout, c.invoke::<i64>(&inv)).await.map(|_| ())
    }

    pub async fn bury(&self, route: &str, id: &str, item: &Item) -> Result<(), StoreError> {
        let (stream, _, dead) = self.keys(route);
        let mut c = self.conn().await?;
        let mut inv = DEAD.prepare_invoke();
        inv.key(&stream).key(&dead).arg(GROUP).arg(id).arg(item.encode());
        bounded(self.timeout, c.invoke::<i64>(&inv)).await?;
        self.leave_line(route, item).await
    }

    /// Moves due retries back to the stream.
    pub async fn promote(&self, route: &str) -> Result<u64, StoreError> {
        let (stream, delayed, _) = self.keys(route);
        let mut c = self.conn().await?;
        let mut inv = PROMOTE.prepare_invoke();
        inv.key(&delayed).key(&stream).arg(now_ms()).arg(500);
        bounded(self.timeout, c.invoke::<u64>(&inv)).await
    }

    pub async fn stats(&self, route: &str) -> Result<Stats, StoreError> {
        let (stream, delayed, dead) = self.keys(route);
        let mut c = self.conn().await?;
        let mut inv = STATS.prepare_invoke();
        inv.key(&stream).key(&delayed).key(&dead);
        let (xlen, in_retry, dead_n, first, waiting): (u64, u64, u64, Vec<u8>, Vec<u8>) =
            bounded(self.timeout, c.invoke(&inv)).await?;
        let oldest =
            [first, waiting].iter().filter_map(|raw| Item::decode(raw)).map(|i| i.first_seen_ms).min();
        Ok(Stats {
            route: route.to_string(),
            depth: xlen + in_retry,
            in_retry,
            dead: dead_n,
            oldest_age_secs: oldest.map(|t| now_ms().saturating_sub(t) / 1000).unwrap_or(0),
        })
    }

    async fn dead_raw(&self, route: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let (_, _, dead) = self.keys(route);
        let mut c = self.conn().await?;
        c.query(redis::cmd("LRANGE").arg(&dead).arg(0).arg(-1)).await
    }

    pub async fn dead_letters(&self, route: &str) -> Result<Vec<DeadLetter>, StoreError> {
        let now = now_ms();
        Ok(self
            .dead_raw(route)
            .await?
            .iter()
            .filter_map(|raw| Item::decode(raw))
            .map(|i| DeadLetter::of(i.origin.clone(), &i, now))
            .collect())
    }

    /// Moves dead letters back to the queue, with their attempts reset: the one whose id is
    /// `id`, or all of them. Returns how many.
    pub async fn replay(&self, route: &str, id: Option<&str>) -> Result<u64, StoreError> {
        let (stream, _, dead) = self.keys(route);
        let raws = self.dead_raw(route).await?;
        let chosen: Vec<&Vec<u8>> = raws
            .iter()
            .filter(|r| id.is_none_or(|id| Item::decode(r).is_some_and(|i| i.origin == id)))
            .collect();
        if chosen.is_empty() {
            return Ok(0);
        }
        let mut c = self.conn().await?;
        let mut inv = REPLAY.prepare_invoke();
        inv.key(&dead).key(&stream);
        let mut items = Vec::with_capacity(chosen.len());
        for raw in chosen {
            let Some(mut item) = Item::decode(raw) else { continue };
            item.attempts = 0;
            item.first_seen_ms = now_ms();
            item.last_error.clear();
            item.dead_at_ms = None;
            inv.arg(raw.as_slice()).arg(item.encode());
            items.push(item);
        }
        let moved: Vec<usize> = bounded(self.timeout, c.invoke(&inv)).await?;
        // A replayed ordered delivery joins the end of its line again; one that was purged
        // meanwhile must not (it would hold the line forever).
        for item in moved.iter().filter_map(|&i| items.get(i)) {
            if let Some(order) = &item.order {
                let _: i64 =
                    c.query(redis::cmd("RPUSH").arg(self.order_key(route, order)).arg(&item.origin)).await?;
            }
        }
        Ok(moved.len() as u64)
    }
}

impl RedisQueue {
    /// The dead letter whose id (its first stream id) is `id`, and its delivery.
    pub async fn dead_letter(&self, route: &str, id: &str) -> Result<Option<(DeadLetter, Item)>, StoreError> {
        let now = now_ms();
        Ok(self
            .dead_raw(route)
            .await?
            .iter()
            .filter_map(|raw| Item::decode(raw))
            .find(|i| i.origin == id)
            .map(|i| (DeadLetter::of(i.origin.clone(), &i, now), i)))
    }

    /// Deletes the dead letter `id`, or all of the route's (those listed when the call began:
    /// one buried meanwhile stays). One script removes them by their stored bytes, so a
    /// replay of the same letter removes it once, for one of the two.
    pub async fn purge(&self, route: &str, id: Option<&str>) -> Result<u64, StoreError> {
        let (_, _, dead) = self.keys(route);
        let raws = self.dead_raw(route).await?;
        let chosen: Vec<&Vec<u8>> = raws
            .iter()
            .filter(|r| id.is_none_or(|id| Item::decode(r).is_some_and(|i| i.origin == id)))
            .collect();
        if chosen.is_empty() {
            return Ok(0);
        }
        let mut c = self.conn().await?;
        let mut inv = PURGE.prepare_invoke();
        inv.key(&dead);
        for raw in chosen {
            inv.arg(raw.as_slice());
        }
        bounded(self.timeout, c.invoke(&inv)).await
    }
}

impl Backend for RedisQueue {
    fn push<'a>(&'a self, route: &'a str, item: &'a Item, once: Option<Duration>) -> StoreFuture<'a, ()> {
        Box::pin(RedisQueue::push(self, route, item, once))
    }
    fn ensure_group<'a>(&'a self, route: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(RedisQueue::ensure_group(self, route))
    }
    fn take<'a>(
        &'a self,
        route: &'a str,
        count: usize,
        stale: Duration,
    ) -> StoreFuture<'a, Vec<(String, Item)>> {
        Box::pin(RedisQueue::take(self, route, count, stale))
    }
    fn ack<'a>(&'a self, route: &'a str, id: &'a str, item: &'a Item) -> StoreFuture<'a, ()> {
        Box::pin(RedisQueue::ack(self, route, id, item))
    }
    fn retry<'a>(&'a self, route: &'a str, id: &'a str, item: &'a Item, due_ms: u64) -> StoreFuture<'a, ()> {
        Box::pin(RedisQueue::retry(self, route, id, item, due_ms))
    }
    fn bury<'a>(&'a self, route: &'a str, id: &'a str, item: &'a Item) -> StoreFuture<'a, ()> {
        Box::pin(RedisQueue::bury(self, route, id, item))
    }
    fn is_head<'a>(&'a self, route: &'a str, item: &'a Item) -> StoreFuture<'a, bool> {
        Box::pin(RedisQueue::is_head(self, route, item))
    }
    fn promote<'a>(&'a self, route: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(RedisQueue::promote(self, route))
    }
    fn stats<'a>(&'a self, route: &'a str) -> StoreFuture<'a, Stats> {
        Box::pin(RedisQueue::stats(self, route))
    }
    fn dead_letters<'a>(&'a self, route: &'a str) -> StoreFuture<'a, Vec<DeadLetter>> {
        Box::pin(RedisQueue::dead_letters(self, route))
    }
    fn replay<'a>(&'a self, route: &'a str, id: Option<&'a str>) -> StoreFuture<'a, u64> {
        Box::pin(RedisQueue::replay(self, route, id))
    }
    fn dead_letter<'a>(&'a self, route: &'a str, id: &'a str) -> StoreFuture<'a, Option<(DeadLetter, Item)>> {
        Box::pin(RedisQueue::dead_letter(self, route, id))
    }
    fn purge<'a>(&'a self, route: &'a str, id: Option<&'a str>) -> StoreFuture<'a, u64> {
        Box::pin(RedisQueue::purge(self, route, id))
    }
}
