//! The event log in a Redis Stream, shared by every instance on one Redis (or Redis Cluster):
//! each instance's console lists the whole fleet's deliveries.
//!
//! # Keys
//! Every key of the log starts with the hash tag `<prefix>{events}`, so that in a Redis
//! Cluster they all live in one slot (one script touches them together):
//! - `<tag>` — the stream; one entry per event, its JSON in the field `e`, capped by
//!   `XADD MAXLEN ~ keep` and trimmed by age now and then (`XTRIM MINID ~`);
//! - `<tag>:ids` — a hash ULID → stream id: where each event sits in the stream; and
//!   `<tag>:order`, a list of the same ULIDs in the order appended, by which the hash is
//!   trimmed to twice `keep` (the oldest appended go first);
//! - `<tag>:capture:<ulid>` — a captured request, expiring at its ttl;
//! - `<tag>:last` — a hash `"<secret index>:<route>"` → unix ms of that secret's last match
//!   (newest wins; never expires: it outlives the events, and holds one field per secret).
//!
//! # Why an index of ids
//! The console names events by ULID (the `before` cursor and `get`), but the stream orders
//! them by their Redis stream id. The stream id cannot be the ULID's time: instances' clocks
//! differ, and `XADD` refuses an id lower than the stream's last, so a lagging instance could
//! not append. So the stream ids are Redis's own (`*`, one clock for the fleet, and listings
//! newest first by arrival at Redis), and each append records `ulid → stream id` in the
//! `ids` hash. The script trims it in append order to twice `keep`, so it stays as small as
//! the stream whatever the traffic (a key per event expiring at `max_age` would grow with
//! the rate: a week of 1000 deliveries a second is 600 million keys), and an instance whose
//! clock lags keeps its events indexed as long as the others' (trimming by ULID would drop
//! its events first); an event trimmed from the stream but still indexed is simply not
//! found. `get` is then two lookups; a `before` cursor pages by stream position, so pages
//! never skip or repeat an event even when the instances' ULIDs interleave out of order. A
//! cursor no longer indexed falls back to its ULID's time.
//!
//! One batch is one script call (one round trip): the stream entries, their index, the
//! captures and the last matches. It is safe to repeat (the connection retries once after a
//! connection-level failure): a batch whose first event is indexed was already appended.

use super::{Capture, Entry, Event, EventLog, Filter, LastMatch, LogError, LogFuture};
use crate::store_conn::redis_pool::RedisPool;
use crate::store_conn::{bounded, StoreError};
use redis::{Script, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

/// KEYS: stream, last-match hash, id hash, id order list, then per event its capture key.
/// ARGV: keep, index cap, n, then per event: ULID, JSON, last-match field (or ''), time ms,
/// capture JSON (or ''), capture ttl ms.
static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = tonumber(ARGV[3])
if n == 0 or redis.call('HEXISTS', KEYS[3], ARGV[4]) == 1 then return 0 end
for i = 0, n - 1 do
  local a = 4 + i * 6
  local sid = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[a + 1])
  redis.call('HSET', KEYS[3], ARGV[a], sid)
  redis.call('RPUSH', KEYS[4], ARGV[a])
  if ARGV[a + 2] ~= '' then
    local cur = redis.call('HGET', KEYS[2], ARGV[a + 2])
    if not cur or tonumber(cur) < tonumber(ARGV[a + 3]) then
      redis.call('HSET', KEYS[2], ARGV[a + 2], ARGV[a + 3])
    end
  end
  if ARGV[a + 4] ~= '' then
    redis.call('SET', KEYS[5 + i], ARGV[a + 4], 'PX', ARGV[a + 5])
  end
end
local extra = redis.call('LLEN', KEYS[4]) - tonumber(ARGV[2])
while extra > 0 do
  local old = redis.call('LPOP', KEYS[4], math.min(extra, 1000))
  redis.call('HDEL', KEYS[3], unpack(old))
  extra = extra - #old
end
return n
",
    )
});

/// Stream entries read per `XREVRANGE` while filling a page.
const CHUNK_MIN: usize = 100;
const CHUNK_MAX: usize = 1000;

/// How far the instances' clocks may be off Redis's: a listing with `since` reads on until
/// stream ids (Redis's time) are this much older than `since` (the events' own time).
const CLOCK_SLACK_MS: u64 = 5 * 60 * 1000;

/// How often the stream is trimmed by age (by count it is at every `XADD`).
const TRIM_EVERY_MS: u64 = 60 * 1000;

/// The event log in a Redis Stream.
pub struct RedisLog {
    redis: RedisPool,
    keep: usize,
    max_age: Duration,
    timeout: Duration,
    /// The hash tag every key starts with: `<prefix>{events}`.
    tag: String,
    /// When the stream was last trimmed by age (unix ms).
    trimmed_ms: AtomicU64,
}

fn log_err(e: StoreError) -> LogError {
    LogError(e.to_string())
}

fn millis(d: Duration) -> u64 {
    d.as_millis().clamp(1, u64::MAX as u128) as u64
}

impl RedisLog {
    /// The log on the connections of `redis` (a pool of its own: a long listing never
    /// delays a claim on the store's connection). Every call is bounded by `timeout`.
    pub fn new(redis: RedisPool, keep: usize, max_age: Duration, timeout: Duration) -> Self {
        let tag = redis.key("events");
        RedisLog { redis, keep: keep.max(1), max_age, timeout, tag, trimmed_ms: AtomicU64::new(0) }
    }

    fn index_key(&self) -> String {
        format!("{}:ids", self.tag)
    }

    fn order_key(&self) -> String {
        format!("{}:order", self.tag)
    }

    fn capture_key(&self, id: &str) -> String {
        format!("{}:capture:{id}", self.tag)
    }

    fn last_key(&self) -> String {
        format!("{}:last", self.tag)
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, LogError> {
        bounded(self.timeout, async { self.redis.conn().await?.query(cmd).await }).await.map_err(log_err)
    }

    async fn append_batch(&self, entries: &[Entry]) -> Result<(), LogError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut inv = APPEND.prepare_invoke();
        inv.key(&self.tag).key(self.last_key()).key(self.index_key()).key(self.order_key());
        inv.arg(self.keep).arg(self.keep.saturating_mul(2)).arg(entries.len());
        for Entry { event, capture } in entries {
            inv.key(self.capture_key(&event.id));
            let json = serde_json::to_vec(event).map_err(|e| LogError(e.to_string()))?;
            inv.arg(&event.id).arg(json);
            match event.secret_index {
                Some(i) => inv.arg(format!("{i}:{}", event.route)),
                None => inv.arg(""),
            };
            inv.arg(event.time_ms);
            match capture {
                Some((c, ttl)) => {
                    inv.arg(serde_json::to_vec(c).map_err(|e| LogError(e.to_string()))?).arg(millis(*ttl))
                }
                None => inv.arg("").arg(0),
            };
        }
        let _: i64 = bounded(self.timeout, async { self.redis.conn().await?.invoke(&inv).await })
            .await
            .map_err(log_err)?;
        self.trim_now_and_then().await
    }

    /// Drops the entries older than `max_age`, at most once a minute per instance (an
    /// approximate `MINID ~`: whole radix-tree nodes only, cheap).
    async fn trim_now_and_then(&self) -> Result<(), LogError> {
        let now = super::now_ms();
        let last = self.trimmed_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < TRIM_EVERY_MS
            || self.trimmed_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return Ok(());
        }
        let min = now.saturating_sub(millis(self.max_age));
        let mut cmd = redis::cmd("XTRIM");
        cmd.arg(&self.tag).arg("MINID").arg("~").arg(format!("{min}-0"));
        let _: i64 = self.query(&cmd).await?;
        Ok(())
    }

    /// The stream id of the event `id`, while it is indexed.
    async fn position(&self, id: &str) -> Result<Option<String>, LogError> {
        self.query(redis::cmd("HGET").arg(self.index_key()).arg(id)).await
    }

    async fn list_page(&self, filter: &Filter) -> Result<Vec<Event>, LogError> {
        let page = filter.page();
        // The stream position replaces the id comparison: ULIDs of several instances need
        // not ascend in the stream's order.
        let by_fields = Filter { before: None, ..filter.clone() };
        let mut end = match &filter.before {
            None => "+".to_string(),
            Some(b) => match self.position(b).await? {
                Some(sid) => format!("({sid}"),
                // No longer indexed (or never was): its ULID's time, as a stream id.
                None => match super::Ulids::time_ms(b) {
                    Some(ms) => format!("({ms}-0"),
                    None => return Ok(Vec::new()),
                },
            },
        };
        let oldest_kept = super::now_ms().saturating_sub(millis(self.max_age));
        let chunk = (page * 2).clamp(CHUNK_MIN, CHUNK_MAX);
        let mut out = Vec::with_capacity(page.min(CHUNK_MAX));
        loop {
            let mut cmd = redis::cmd("XREVRANGE");
            cmd.arg(&self.tag).arg(&end).arg("-").arg("COUNT").arg(chunk);
            let reply: Value = self.query(&cmd).await?;
            let entries = stream_entries(reply)?;
            let n = entries.len();
            for (sid, json) in entries {
                let sid_ms = sid.split('-').next().and_then(|m| m.parse::<u64>().ok()).unwrap_or(0);
                if filter.since_ms.is_some_and(|s| sid_ms.saturating_add(CLOCK_SLACK_MS) < s) {
                    return Ok(out);
                }
                end = format!("({sid}");
                let Some(json) = json else { continue };
                let event: Event = match serde_json::from_slice(&json) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::debug!(error = %e, stream_id = %sid, "event log entry is not an event");
                        continue;
                    }
                };
                if event.time_ms >= oldest_kept && by_fields.matches(&event) {
                    out.push(event);
                    if out.len() == page {
                        return Ok(out);
                    }
                }
            }
            if n < chunk {
                return Ok(out);
            }
        }
    }

    async fn get_event(&self, id: &str) -> Result<Option<Event>, LogError> {
        let Some(sid) = self.position(id).await? else { return Ok(None) };
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(&self.tag).arg(&sid).arg(&sid);
        let reply: Value = self.query(&cmd).await?;
        Ok(stream_entries(reply)?
            .into_iter()
            .filter_map(|(_, json)| serde_json::from_slice::<Event>(&json?).ok())
            .find(|e| e.id == id))
    }

    async fn get_capture(&self, id: &str) -> Result<Option<Capture>, LogError> {
        let json: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(self.capture_key(id))).await?;
        json.map(|j| serde_json::from_slice(&j).map_err(|e| LogError(format!("capture {id}: {e}"))))
            .transpose()
    }

    async fn last(&self, route: &str) -> Result<Vec<LastMatch>, LogError> {
        let all: Vec<(String, u64)> = self.query(redis::cmd("HGETALL").arg(self.last_key())).await?;
        let mut out: Vec<LastMatch> = all
            .into_iter()
            .filter_map(|(field, time_ms)| {
                let (index, r) = field.split_once(':')?;
                (r == route).then_some(LastMatch { index: index.parse().ok()?, time_ms })
            })
            .collect();
        out.sort_by_key(|m| m.index);
        Ok(out)
    }
}

/// One stream entry: its stream id and its field `e` (the event's JSON), if present.
type StreamEntry = (String, Option<Vec<u8>>);

/// The entries of an `XRANGE`/`XREVRANGE` reply.
fn stream_entries(reply: Value) -> Result<Vec<StreamEntry>, LogError> {
    let bad = || LogError("unexpected stream reply".into());
    let Value::Array(items) = reply else {
        return if matches!(reply, Value::Nil) { Ok(Vec::new()) } else { Err(bad()) };
    };
    items
        .into_iter()
        .map(|item| {
            let Value::Array(mut parts) = item else { return Err(bad()) };
            if parts.len() != 2 {
                return Err(bad());
            }
            let fields = parts.pop().ok_or_else(bad)?;
            let sid: String =
                redis::FromRedisValue::from_redis_value(parts.pop().ok_or_else(bad)?).map_err(|_| bad())?;
            let mut json = None;
            if let Value::Array(kv) = fields {
                let mut kv = kv.into_iter();
                while let (Some(k), Some(v)) = (kv.next(), kv.next()) {
                    if matches!(&k, Value::BulkString(b) if b == b"e") {
                        if let Value::BulkString(b) = v {
                            json = Some(b);
                        }
                    }
                }
            }
            Ok((sid, json))
        })
        .collect()
}

impl EventLog for RedisLog {
    fn append<'a>(&'a self, entries: &'a [Entry]) -> LogFuture<'a, ()> {
        Box::pin(self.append_batch(entries))
    }

    fn list<'a>(&'a self, filter: &'a Filter) -> LogFuture<'a, Vec<Event>> {
        Box::pin(self.list_page(filter))
    }

    fn get<'a>(&'a self, id: &'a str) -> LogFuture<'a, Option<Event>> {
        Box::pin(self.get_event(id))
    }

    fn capture<'a>(&'a self, id: &'a str) -> LogFuture<'a, Option<Capture>> {
        Box::pin(self.get_capture(id))
    }

    fn last_matches<'a>(&'a self, route: &'a str) -> LogFuture<'a, Vec<LastMatch>> {
        Box::pin(self.last(route))
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
