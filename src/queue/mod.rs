//! The durable delivery queue of `delivery: queued` routes, in Redis Streams: the provider is
//! answered once the queue holds a delivery; workers on every instance deliver it to the
//! upstream with retries, and a delivery that exhausts its attempts goes to a dead-letter list.
//!
//! With Redis (`redis.rs` types below), per route, three keys share one hash tag (one cluster
//! slot):
//! - `{prefix}{q:ROUTE}:s`, a stream read by the consumer group `portcullis`; a worker that
//!   dies leaves its entries pending, and another instance takes them over (`XAUTOCLAIM`);
//! - `{prefix}{q:ROUTE}:d`, a sorted set of deliveries waiting for their next attempt;
//! - `{prefix}{q:ROUTE}:x`, the dead-letter list.
//!
//! With the embedded store ([`embedded`]), a file beside the store's, for a single instance.
//!
//! "Accepted" is as durable as Redis is configured to be: with `appendonly yes` and
//! `appendfsync always` an accepted delivery survives a Redis crash; with `everysec`, up to a
//! second of them may not.

use crate::config::Route;
use crate::forward::Outgoing;
use crate::gateway::Gateway;
use crate::idempotency::redis::{Conn, RedisStore};
use crate::idempotency::{bounded, StoreError};
use crate::metrics::QueueGauges;

pub mod embedded;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use redis::Script;
use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const GROUP: &str = "portcullis";

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// One queued delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub route: String,
    pub method: String,
    pub query: Option<String>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The idempotency id, sent as `Portcullis-Idempotency-Key` on every attempt.
    pub id: Vec<u8>,
    pub attempts: u32,
    pub first_seen_ms: u64,
    pub last_error: String,
    /// The stream id the delivery was first given (stable across retries), for replay.
    pub origin: String,
    /// The ordering value (`queue.order_by`), when the route orders deliveries.
    pub order: Option<String>,
}

fn put(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// An optional string: a presence byte, then the string when present.
fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            put(out, s.as_bytes());
        }
        None => out.push(0),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
    /// What `put_opt` wrote.
    fn opt_string(&mut self) -> Option<Option<String>> {
        Some(match self.take(1)?[0] {
            1 => Some(self.string()?),
            _ => None,
        })
    }
}

impl Item {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 512);
        out.push(1); // format version
        put(&mut out, self.route.as_bytes());
        put(&mut out, self.method.as_bytes());
        put_opt(&mut out, self.query.as_deref());
        out.extend_from_slice(&(self.headers.len() as u32).to_le_bytes());
        for (k, v) in &self.headers {
            put(&mut out, k.as_bytes());
            put(&mut out, v);
        }
        put(&mut out, &self.body);
        put(&mut out, &self.id);
        out.extend_from_slice(&self.attempts.to_le_bytes());
        out.extend_from_slice(&self.first_seen_ms.to_le_bytes());
        put(&mut out, self.last_error.as_bytes());
        put(&mut out, self.origin.as_bytes());
        put_opt(&mut out, self.order.as_deref());
        out
    }

    pub fn decode(b: &[u8]) -> Option<Item> {
        let mut r = Reader(b);
        if r.take(1)? != [1] {
            return None;
        }
        let route = r.string()?;
        let method = r.string()?;
        let query = r.opt_string()?;
        let n = r.u32()? as usize;
        let mut headers = Vec::with_capacity(n.min(256));
        for _ in 0..n {
            headers.push((r.string()?, r.bytes()?.to_vec()));
        }
        let body = r.bytes()?.to_vec();
        let id = r.bytes()?.to_vec();
        let attempts = r.u32()?;
        let first_seen_ms = r.u64()?;
        let last_error = r.string()?;
        let origin = r.string()?;
        let order = r.opt_string()?;
        Some(Item {
            route,
            method,
            query,
            headers,
            body,
            id,
            attempts,
            first_seen_ms,
            last_error,
            origin,
            order,
        })
    }

    pub(crate) fn from_outgoing(route: &Route, o: &Outgoing) -> Item {
        Item {
            route: route.name.clone(),
            method: o.method.as_str().to_string(),
            query: o.query.clone(),
            headers: o.headers.iter().map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec())).collect(),
            body: o.body.to_vec(),
            id: o.id.as_bytes().to_vec(),
            attempts: 0,
            first_seen_ms: now_ms(),
            last_error: String::new(),
            origin: String::new(),
            order: route
                .queue
                .as_ref()
                .and_then(|q| q.order_by.as_ref())
                .and_then(|p| p.lookup(&o.body).ok().flatten())
                .map(|v| v.into_owned()),
        }
    }

    fn to_outgoing(&self) -> Option<Outgoing> {
        let mut headers = HeaderMap::with_capacity(self.headers.len());
        for (k, v) in &self.headers {
            headers.append(HeaderName::from_bytes(k.as_bytes()).ok()?, HeaderValue::from_bytes(v).ok()?);
        }
        Some(Outgoing {
            method: Method::from_bytes(self.method.as_bytes()).ok()?,
            query: self.query.clone(),
            headers,
            body: self.body.clone().into(),
            id: HeaderValue::from_bytes(&self.id).ok()?,
        })
    }
}

/// What `portcullis queue stats` shows for one route.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub route: String,
    /// Deliveries accepted and not yet delivered (ready, in progress and waiting to retry).
    pub depth: u64,
    pub in_retry: u64,
    pub dead: u64,
    /// Age of the oldest undelivered delivery, in seconds.
    pub oldest_age_secs: u64,
}

/// A dead letter, as listed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    pub id: String,
    pub route: String,
    pub event_id: String,
    pub attempts: u32,
    pub age_secs: u64,
    pub last_error: String,
}

impl DeadLetter {
    pub(super) fn of(id: String, i: &Item, now_ms: u64) -> Self {
        DeadLetter {
            id,
            route: i.route.clone(),
            event_id: String::from_utf8_lossy(&i.id).into_owned(),
            attempts: i.attempts,
            age_secs: now_ms.saturating_sub(i.first_seen_ms) / 1000,
            last_error: i.last_error.clone(),
        }
    }
}

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

/// Appends to the stream and to the ordering line of the delivery's ordering value.
static PUSH_ORDERED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local id = redis.call('XADD', KEYS[1], '*', 'd', ARGV[1])
redis.call('RPUSH', KEYS[2], id)
return id
",
    )
});

static ACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return redis.call('XDEL', KEYS[1], ARGV[2])
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
/// the fresh bytes to queue).
static REPLAY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) > 0 then
    redis.call('XADD', KEYS[2], '*', 'd', ARGV[i + 1])
    n = n + 1
  end
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

/// The queue of a gateway: Redis Streams when instances share a Redis, or an embedded file
/// for a single instance.
pub enum Queue {
    Redis(Box<RedisQueue>),
    Embedded(embedded::EmbeddedQueue),
}

macro_rules! dispatch {
    ($self:ident, $q:ident => $e:expr) => {
        match $self {
            Queue::Redis($q) => $e,
            Queue::Embedded($q) => $e,
        }
    };
}

impl Queue {
    /// Appends a delivery; returns once the queue holds it durably.
    pub async fn push(&self, route: &Route, o: &Outgoing) -> Result<(), StoreError> {
        let item = Item::from_outgoing(route, o);
        dispatch!(self, q => q.push(&route.name, &item).await)
    }
    pub async fn ensure_group(&self, route: &str) -> Result<(), StoreError> {
        dispatch!(self, q => q.ensure_group(route).await)
    }
    /// Up to `count` deliveries due now, including those a dead worker left for longer than
    /// `stale`.
    pub async fn take(
        &self,
        route: &str,
        count: usize,
        stale: Duration,
    ) -> Result<Vec<(String, Item)>, StoreError> {
        dispatch!(self, q => q.take(route, count, stale).await)
    }
    pub async fn ack(&self, route: &str, id: &str, item: &Item) -> Result<(), StoreError> {
        dispatch!(self, q => q.ack(route, id, item).await)
    }
    /// Puts a delivery aside until `due_ms`.
    pub async fn retry(&self, route: &str, id: &str, item: &Item, due_ms: u64) -> Result<(), StoreError> {
        dispatch!(self, q => q.retry(route, id, item, due_ms).await)
    }
    /// Moves a delivery to the dead-letter list.
    pub async fn bury(&self, route: &str, id: &str, item: &Item) -> Result<(), StoreError> {
        dispatch!(self, q => q.bury(route, id, item).await)
    }
    /// Whether `item` is the oldest undelivered one of its ordering value (always true for an
    /// unordered item).
    pub async fn is_head(&self, route: &str, item: &Item) -> Result<bool, StoreError> {
        if item.order.is_none() {
            return Ok(true);
        }
        dispatch!(self, q => q.is_head(route, item).await)
    }
    /// Makes due retries deliverable again.
    pub async fn promote(&self, route: &str) -> Result<u64, StoreError> {
        dispatch!(self, q => q.promote(route).await)
    }
    pub async fn stats(&self, route: &str) -> Result<Stats, StoreError> {
        dispatch!(self, q => q.stats(route).await)
    }
    pub async fn dead_letters(&self, route: &str) -> Result<Vec<DeadLetter>, StoreError> {
        dispatch!(self, q => q.dead_letters(route).await)
    }
    /// Moves dead letters back to the queue, attempts reset: the one with this id, or all.
    pub async fn replay(&self, route: &str, id: Option<&str>) -> Result<u64, StoreError> {
        dispatch!(self, q => q.replay(route, id).await)
    }
}

/// The queue in Redis (or Redis Cluster), shared by every instance.
pub struct RedisQueue {
    redis: RedisStore,
    timeout: Duration,
    /// This instance's name in the consumer group.
    consumer: String,
}

type Entries = Vec<(String, Vec<(String, Vec<u8>)>)>;

impl RedisQueue {
    pub fn new(redis: RedisStore, timeout: Duration) -> Self {
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
    /// end of its ordering value's line, in the same script.
    pub async fn push(&self, route: &str, item: &Item) -> Result<(), StoreError> {
        let (stream, _, _) = self.keys(route);
        let mut c = self.conn().await?;
        match &item.order {
            None => {
                let mut cmd = redis::cmd("XADD");
                cmd.arg(&stream).arg("*").arg("d").arg(item.encode());
                bounded(self.timeout, async { c.query::<String>(&cmd).await }).await.map(|_| ())
            }
            Some(order) => {
                let mut inv = PUSH_ORDERED.prepare_invoke();
                inv.key(&stream).key(self.order_key(route, order)).arg(item.encode());
                bounded(self.timeout, c.invoke::<String>(&inv)).await.map(|_| ())
            }
        }
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

    pub async fn ack(&self, route: &str, id: &str, item: &Item) -> Result<(), StoreError> {
        let (stream, _, _) = self.keys(route);
        let mut c = self.conn().await?;
        let mut inv = ACK.prepare_invoke();
        inv.key(&stream).arg(GROUP).arg(id);
        bounded(self.timeout, c.invoke::<i64>(&inv)).await?;
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
        for raw in chosen {
            let Some(mut item) = Item::decode(raw) else { continue };
            item.attempts = 0;
            item.first_seen_ms = now_ms();
            item.last_error.clear();
            inv.arg(raw.as_slice()).arg(item.encode());
        }
        let n: u64 = bounded(self.timeout, c.invoke(&inv)).await?;
        // A replayed ordered delivery joins the end of its line again.
        for raw in raws.iter().filter(|r| id.is_none_or(|id| Item::decode(r).is_some_and(|i| i.origin == id)))
        {
            if let Some(item) = Item::decode(raw) {
                if let Some(order) = &item.order {
                    let _: i64 = c
                        .query(redis::cmd("RPUSH").arg(self.order_key(route, order)).arg(&item.origin))
                        .await?;
                }
            }
        }
        Ok(n)
    }
}

/// The delay before attempt `attempts + 1`: exponential from `base`, capped, with ±25 % jitter.
pub fn backoff(base: Duration, max: Duration, attempts: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempts.min(20));
    let capped = exp.min(max);
    let jitter = rand::random::<f64>() * 0.5 + 0.75;
    capped.mul_f64(jitter)
}

/// Keeps one set of workers running for every queued route of the routing in force, until
/// `stop` turns true.
pub async fn supervise(
    gateway: Arc<Gateway>,
    queue: Arc<Queue>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut started: HashSet<String> = HashSet::new();
    loop {
        let routes: Vec<Arc<Route>> = gateway.routing().routes().filter(|r| r.queue.is_some()).collect();
        for r in routes {
            if started.insert(r.name.clone()) {
                if let Err(e) = queue.ensure_group(&r.name).await {
                    tracing::warn!(route = %r.name, error = %e, "cannot create the queue's consumer group yet");
                    started.remove(&r.name);
                    continue;
                }
                let concurrency = r.queue.as_ref().map(|q| q.concurrency).unwrap_or(1);
                for _ in 0..concurrency {
                    tokio::spawn(worker(gateway.clone(), queue.clone(), r.name.clone(), stop.clone()));
                }
                tokio::spawn(maintain(gateway.clone(), queue.clone(), r.name.clone(), stop.clone()));
            }
        }
        if rest(Duration::from_millis(500), &mut stop).await {
            return;
        }
    }
}

/// Waits `d`, or until `stop` turns true; true when stopping.
async fn rest(d: Duration, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    }
}

/// Moves due retries back to the stream and publishes the queue's gauges.
async fn maintain(
    gateway: Arc<Gateway>,
    queue: Arc<Queue>,
    route: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = queue.promote(&route).await {
            tracing::debug!(route = %route, error = %e, "queue maintenance failed");
        }
        if let Ok(s) = queue.stats(&route).await {
            gateway.metrics.set_queue(
                &route,
                QueueGauges { depth: s.depth, dead: s.dead, oldest_age_secs: s.oldest_age_secs },
            );
        }
        if rest(Duration::from_millis(100), &mut stop).await {
            return;
        }
    }
}

/// Takes deliveries of one route and delivers them, one at a time.
async fn worker(
    gateway: Arc<Gateway>,
    queue: Arc<Queue>,
    route_name: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        let Some(route) = gateway.routing().routes().find(|r| r.name == route_name) else {
            // The route was removed by a reload; its queue stays for a later configuration.
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        // Entries left pending longer than a delivery can take belong to a dead instance.
        let stale = route.upstream_timeout * 2 + Duration::from_secs(1);
        let taken = match queue.take(&route_name, 1, stale).await {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(route = %route_name, error = %e, "cannot read the queue");
                Vec::new()
            }
        };
        if taken.is_empty() {
            if rest(Duration::from_millis(25), &mut stop).await {
                return;
            }
            continue;
        }
        for (id, item) in taken {
            deliver(&gateway, &queue, &route, &id, item).await;
        }
    }
}

/// How long after taking a delivery its acknowledgement may still be retried: until one second
/// before the stale time (`2 × upstream timeout + 1 s`), after which another worker may take
/// the entry over and deliver it again.
fn ack_window(route: &Route) -> Duration {
    route.upstream_timeout * 2
}

/// Records a delivery the upstream accepted (XACK+XDEL, or its embedded equivalent),
/// retrying with backoff (50 ms doubling to 1 s) until `deadline`: a store that is back
/// within the window never sees the delivery again. Acknowledging twice is harmless.
async fn acknowledge(
    gateway: &Gateway,
    queue: &Queue,
    route: &Route,
    id: &str,
    item: &Item,
    deadline: tokio::time::Instant,
) -> Result<(), StoreError> {
    let mut wait = Duration::from_millis(50);
    loop {
        match queue.ack(&route.name, id, item).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                let next = tokio::time::Instant::now() + wait;
                if next >= deadline {
                    return Err(e); // counted by the caller
                }
                gateway.metrics.queue_errors.fetch_add(1, Relaxed);
                tracing::debug!(route = %route.name, id = %item.origin, error = %e,
                    "acknowledging a delivered queued delivery failed; retrying");
                tokio::time::sleep_until(next).await;
                wait = (wait * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// One attempt at one queued delivery, and what follows from its answer.
async fn deliver(gateway: &Gateway, queue: &Queue, route: &Route, id: &str, mut item: Item) {
    let settings = route.queue.as_ref().expect("a queued route");
    let m = &gateway.metrics;
    let taken = tokio::time::Instant::now();
    // An ordered delivery waits for the earlier ones of its ordering value.
    match queue.is_head(&route.name, &item).await {
        Ok(true) => {}
        Ok(false) | Err(_) => {
            let _ = queue.retry(&route.name, id, &item, now_ms() + 100).await;
            return;
        }
    }
    let result = match item.to_outgoing().map(|o| crate::forward::to_request(route, o)) {
        Some(Ok(req)) => crate::forward::send(&gateway.client, route, req)
            .await
            .map(|res| res.status())
            .map_err(|e| e.to_string()),
        _ => Err("the queued delivery cannot be decoded".to_string()),
    };
    item.attempts += 1;
    let outcome = match result {
        Ok(status) if status.is_success() => {
            m.queue_attempts[0].fetch_add(1, Relaxed);
            acknowledge(gateway, queue, route, id, &item, taken + ack_window(route)).await
        }
        other => {
            item.last_error = match other {
                Ok(status) => format!("upstream answered {status}"),
                Err(e) => e,
            };
            let age = Duration::from_millis(now_ms().saturating_sub(item.first_seen_ms));
            if item.attempts >= settings.max_attempts || age >= settings.max_age {
                m.queue_attempts[2].fetch_add(1, Relaxed);
                // `id` is the dead letter's id, as `queue dead list` shows and `queue replay` takes.
                tracing::warn!(route = %route.name, id = %item.origin, attempts = item.attempts,
                    error = %item.last_error,
                    "queued delivery exhausted its attempts; moved to the dead-letter list");
                queue.bury(&route.name, id, &item).await
            } else {
                m.queue_attempts[1].fetch_add(1, Relaxed);
                let wait = backoff(settings.backoff, settings.max_backoff, item.attempts - 1);
                queue.retry(&route.name, id, &item, now_ms() + wait.as_millis() as u64).await
            }
        }
    };
    if let Err(e) = outcome {
        m.queue_errors.fetch_add(1, Relaxed);
        // The entry stays pending and is taken over after the stale time: delivered again at
        // worst, with the same idempotency key.
        tracing::warn!(route = %route.name, id = %item.origin, error = %e,
            "could not record a queued delivery's outcome");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip() {
        let item = Item {
            route: "/p".into(),
            method: "POST".into(),
            query: Some("a=1".into()),
            headers: vec![("x-a".into(), b"1".to_vec()), ("x-b".into(), vec![0xff, b'z'])],
            body: vec![0, 1, 2, 255],
            id: b"evt_1".to_vec(),
            attempts: 3,
            first_seen_ms: 42,
            last_error: "upstream answered 500".into(),
            origin: "1-0".into(),
            order: Some("obj_1".into()),
        };
        assert_eq!(Item::decode(&item.encode()), Some(item.clone()));
        assert_eq!(Item::decode(&item.encode()[..10]), None);
        assert_eq!(Item::decode(b""), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = |n| backoff(Duration::from_secs(1), Duration::from_secs(60), n);
        assert!(b(0) >= Duration::from_millis(750) && b(0) <= Duration::from_millis(1250));
        assert!(b(3) >= Duration::from_secs(6));
        assert!(b(30) <= Duration::from_secs(75));
    }
}
