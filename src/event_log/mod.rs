//! The delivery event log: one [`Event`] per request that reached a route, kept for the
//! operator's console (`/api/deliveries` on the admin listener).
//!
//! Recording stays off the request path: the observe layer hands a small [`Event`] to a
//! [`Recorder`], which `try_send`s it into a bounded channel (a full channel drops the event
//! and counts it); one background task ([`Recorder::spawn_appender`]) gives each event its id
//! and appends it to the [`EventLog`].
//!
//! A route with `capture:` also keeps the request itself (headers and body, [`Capture`]) for
//! a while (`capture_ttl`), beside its event, so that an operator can read the bytes, run the
//! diagnosis on them, and replay a verified delivery.
//!
//! # Layout
//! - this file: the record, the [`EventLog`] trait, its [`Filter`], the id generator and the
//!   recorder;
//! - `memory`: the bounded in-memory ring (the memory store's);
//! - `redis`: a Redis Stream the whole fleet shares (the Redis stores');
//! - `embedded`: a redb file beside the embedded store's.

pub mod embedded;
pub mod memory;
pub mod redis;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records kept by default (`event_log: {keep: N}`).
pub const DEFAULT_KEEP: usize = 10_000;

/// How long events are kept by default (`event_log: {max_age: 7d}`).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Events waiting for the appender; past it, events are dropped and counted.
const CHANNEL: usize = 4096;

/// How often the appender takes what the request path recorded: an event shows in the
/// console this long after its answer at most (plus the write).
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(25);

/// Events the appender writes in one call at most.
const BATCH: usize = 256;

/// What happened to one request that reached a route. Never a secret or a signature value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// ULID: 26 Crockford base32 characters, ms time then randomness; sorts by time of
    /// recording. Empty until the appender gives it.
    pub id: String,
    /// When the request arrived, unix milliseconds.
    pub time_ms: u64,
    pub route: String,
    pub provider: String,
    pub method: String,
    pub path: String,
    /// The client's address: the connection's peer, or behind `trusted_proxies`, the
    /// address they forwarded for.
    pub client: Option<IpAddr>,
    /// The request id: the trusted proxy's `X-Request-Id`, or one the gateway made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub outcome: Cow<'static, str>,
    /// The HTTP status answered to the sender.
    pub status: u16,
    /// The event's idempotency key, once known.
    pub event_key: Option<String>,
    /// The index of the route secret that matched.
    pub secret_index: Option<usize>,
    pub latency_ms: f64,
    /// The upstream's status and latency, when it was called.
    pub upstream_status: Option<u16>,
    pub upstream_latency_ms: Option<f64>,
    /// For a refusal, the precise reason.
    pub detail: Option<String>,
    /// Attempts made at the upstream so far (queued routes: the queue's count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// True when the request itself was captured (see [`EventLog::capture`]; it may have
    /// expired since).
    #[serde(default)]
    pub captured: bool,
    /// For a replay made from the admin API: the id of the delivery it replays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
}

/// A captured request: what the sender sent, byte for byte, so that the diagnosis can run on
/// it and a verified delivery can be sent again. Headers keep signature values (they are not
/// secrets and the diagnosis needs them); the route's secrets are never in a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capture {
    pub method: String,
    /// The path and query string, as received.
    pub target: String,
    /// Header names and values in the order received; a value that is not UTF-8 is kept
    /// lossily (the diagnosis of such a request can differ).
    pub headers: Vec<(String, String)>,
    /// The body; base64 in JSON.
    #[serde(with = "b64")]
    pub body: Bytes,
    /// True when the body was longer than `capture_max_bytes` and was cut there: such a
    /// capture can be read, not replayed or diagnosed.
    pub truncated: bool,
    /// True when the request verified (only such a capture may be replayed).
    pub verified: bool,
}

mod b64 {
    use base64::Engine;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

/// Why the event log could not be read or written (its store did not answer, or held
/// something that is not an event).
#[derive(Debug, thiserror::Error)]
#[error("event log: {0}")]
pub struct LogError(pub String);

/// What the event log's calls return.
pub type LogFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, LogError>> + Send + 'a>>;

/// Which events a listing returns; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub route: Option<String>,
    pub outcome: Option<String>,
    /// Matches an event key exactly, or one ending in `:` + this (the provider's event id).
    pub event_id: Option<String>,
    /// Events at or after this time, unix ms.
    pub since_ms: Option<u64>,
    /// Events older than the one with this id (the `next` cursor of the previous page).
    pub before: Option<String>,
    /// At most this many; 0 is taken as the default page (50).
    pub limit: usize,
}

impl Filter {
    pub const DEFAULT_LIMIT: usize = 50;
    pub const MAX_LIMIT: usize = 1000;

    /// True when `e` passes every set field but `limit`.
    pub fn matches(&self, e: &Event) -> bool {
        self.route.as_deref().is_none_or(|r| r == e.route)
            && self.outcome.as_deref().is_none_or(|o| o == e.outcome)
            && self.event_id.as_deref().is_none_or(|id| {
                e.event_key
                    .as_deref()
                    .is_some_and(|k| k == id || k.strip_suffix(id).is_some_and(|head| head.ends_with(':')))
            })
            && self.since_ms.is_none_or(|s| e.time_ms >= s)
            && self.before.as_deref().is_none_or(|b| e.id.as_str() < b)
    }

    /// The page size asked for, within bounds.
    pub fn page(&self) -> usize {
        match self.limit {
            0 => Self::DEFAULT_LIMIT,
            n => n.min(Self::MAX_LIMIT),
        }
    }
}

/// When a route's secret last matched: its index and the time, unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LastMatch {
    pub index: usize,
    pub time_ms: u64,
}

/// One event and, when its route captures it, the request and how long to keep it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub event: Event,
    pub capture: Option<(Capture, Duration)>,
}

/// Where events are kept: the in-memory ring, a Redis Stream, or the embedded store's file.
pub trait EventLog: Send + Sync {
    /// Adds events that have their ids (ascending), and their captures.
    fn append<'a>(&'a self, entries: &'a [Entry]) -> LogFuture<'a, ()>;
    /// The events passing `filter`, newest first, at most `filter.page()`.
    fn list<'a>(&'a self, filter: &'a Filter) -> LogFuture<'a, Vec<Event>>;
    /// The event with this id, while it is kept.
    fn get<'a>(&'a self, id: &'a str) -> LogFuture<'a, Option<Event>>;
    /// The request captured with the event `id`, until its ttl.
    fn capture<'a>(&'a self, id: &'a str) -> LogFuture<'a, Option<Capture>>;
    /// When each secret of `route` last matched, by index (kept apart from the events, so
    /// it outlives them).
    fn last_matches<'a>(&'a self, route: &'a str) -> LogFuture<'a, Vec<LastMatch>>;
    /// `"memory"`, `"redis"` or `"embedded"`.
    fn kind(&self) -> &'static str;
}

/// The request path's handle: hands events to the appender without waiting.
pub struct Recorder {
    tx: tokio::sync::mpsc::Sender<Entry>,
    rx: Mutex<Option<tokio::sync::mpsc::Receiver<Entry>>>,
    pub log: Arc<dyn EventLog>,
}

impl Recorder {
    pub fn new(log: Arc<dyn EventLog>) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL);
        Recorder { tx, rx: Mutex::new(Some(rx)), log }
    }

    /// Queues `entry` for the appender; false when it was dropped: the channel was full
    /// (the caller counts it).
    pub fn record(&self, entry: Entry) -> bool {
        self.tx.try_send(entry).is_ok()
    }

    /// Starts the task that ids and appends events, every [`DRAIN_EVERY`], up to [`BATCH`]
    /// per write; once only (later calls do nothing). It ends when the recorder is dropped.
    pub fn spawn_appender(&self) {
        let Some(mut rx) = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        let log = self.log.clone();
        tokio::spawn(async move {
            let mut ids = Ulids::default();
            let mut batch = Vec::with_capacity(BATCH);
            // Drained on a tick, not awaited per event: a connection worker's `try_send`
            // then never has a parked appender to wake on another thread (that wake-up cost
            // more than the record itself).
            let mut tick = tokio::time::interval(DRAIN_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let open = loop {
                    match rx.try_recv() {
                        Ok(entry) => {
                            batch.push(entry);
                            if batch.len() == BATCH {
                                append(&*log, &mut ids, &mut batch).await;
                            }
                        }
                        Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break true,
                        Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => break false,
                    }
                };
                append(&*log, &mut ids, &mut batch).await;
                if !open {
                    return;
                }
            }
        });
    }
}

/// Ids and appends `batch` (if any), then empties it. A write that fails is logged and its
/// events are lost (the log is for the operator's eyes, never the delivery's state).
async fn append(log: &dyn EventLog, ids: &mut Ulids, batch: &mut Vec<Entry>) {
    if batch.is_empty() {
        return;
    }
    let ms = now_ms();
    for entry in batch.iter_mut() {
        entry.event.id = ids.next(ms);
    }
    if let Err(e) = log.append(batch).await {
        tracing::warn!(error = %e, lost = batch.len(), "event log write failed");
    }
    batch.clear();
}

/// The wall clock in unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Monotonic ULIDs: within one millisecond, the random part of the previous id plus one,
/// so ids sort in the order they were made.
#[derive(Default)]
pub struct Ulids {
    last_ms: u64,
    last_rand: u128,
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const RAND_BITS: u32 = 80;

impl Ulids {
    /// The next id at time `ms` (a clock going back keeps the last time).
    pub fn next(&mut self, ms: u64) -> String {
        let rand_mask = (1u128 << RAND_BITS) - 1;
        if ms > self.last_ms {
            self.last_ms = ms;
            self.last_rand = rand::random::<u128>() & rand_mask;
        } else if self.last_rand < rand_mask {
            self.last_rand += 1;
        } else {
            self.last_ms += 1;
            self.last_rand = 0;
        }
        let value = (u128::from(self.last_ms & ((1 << 48) - 1)) << RAND_BITS) | self.last_rand;
        let mut id = [0u8; 26];
        for (i, c) in id.iter_mut().rev().enumerate() {
            *c = CROCKFORD[((value >> (i * 5)) & 31) as usize];
        }
        String::from_utf8(id.to_vec()).expect("Crockford base32 is ASCII")
    }

    /// The time of the ULID `id` (its first 10 characters), unix ms; none when `id` is not
    /// 26 characters or its time part is not Crockford base32.
    pub fn time_ms(id: &str) -> Option<u64> {
        if id.len() != 26 {
            return None;
        }
        id.bytes().take(10).try_fold(0u64, |acc, c| {
            let v = CROCKFORD.iter().position(|&x| x == c.to_ascii_uppercase())?;
            Some((acc << 5) | v as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulids_are_26_crockford_characters_and_sort_in_order() {
        let mut g = Ulids::default();
        let a = g.next(1_700_000_000_000);
        let b = g.next(1_700_000_000_000);
        let c = g.next(1_699_999_999_999);
        let d = g.next(1_700_000_000_001);
        assert_eq!(a.len(), 26);
        assert!(a.bytes().all(|ch| CROCKFORD.contains(&ch)), "{a}");
        assert!(a < b && b < c && c < d, "{a} {b} {c} {d}");
        // The first 10 characters are the time.
        assert_eq!(&a[..10], &b[..10]);
        assert_ne!(&a[..10], &d[..10]);
        assert_eq!(Ulids::time_ms(&a), Some(1_700_000_000_000));
        assert_eq!(Ulids::time_ms(&d.to_lowercase()), Some(1_700_000_000_001));
        assert_eq!(Ulids::time_ms("short"), None);
        assert_eq!(Ulids::time_ms("!1ARZ3NDEKTSV4RRFFQ69G5FAV"), None);
    }

    #[test]
    fn a_full_channel_drops_instead_of_waiting() {
        let recorder = Recorder::new(Arc::new(memory::MemoryLog::new(10)));
        let entry = || Entry { event: memory::tests::event("r", "forwarded"), capture: None };
        // No appender: the channel fills and the next event is refused at once.
        for _ in 0..CHANNEL {
            assert!(recorder.record(entry()));
        }
        assert!(!recorder.record(entry()));
    }

    #[test]
    fn event_id_matches_the_whole_key_or_its_last_part() {
        let mut e = memory::tests::event("r", "forwarded");
        e.event_key = Some("r:evt_1".into());
        let f = |id: &str| Filter { event_id: Some(id.into()), ..Filter::default() };
        assert!(f("r:evt_1").matches(&e));
        assert!(f("evt_1").matches(&e));
        assert!(!f("vt_1").matches(&e));
        assert!(!f("evt_2").matches(&e));
    }
}
