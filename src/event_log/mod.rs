//! The delivery event log: one [`Event`] per request that reached a route, kept for the
//! operator's console (`/api/deliveries` on the admin listener).
//!
//! Recording stays off the request path: the observe layer hands a small [`Event`] to a
//! [`Recorder`], which `try_send`s it into a bounded channel (a full channel drops the event
//! and counts it); one background task ([`Recorder::spawn_appender`]) gives each event its id
//! and appends it to the [`EventLog`].
//!
//! # Layout
//! - this file: the record, the [`EventLog`] trait, its [`Filter`], the id generator and the
//!   recorder;
//! - `memory`: the bounded in-memory ring.

pub mod memory;

use serde::Serialize;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Records kept by default (`event_log: {keep: N}`).
pub const DEFAULT_KEEP: usize = 10_000;

/// Events waiting for the appender; past it, events are dropped and counted.
const CHANNEL: usize = 4096;

/// What happened to one request that reached a route. Never a secret or a signature value.
#[derive(Debug, Clone, Serialize)]
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
    pub outcome: &'static str,
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
}

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

/// Where events are kept.
pub trait EventLog: Send + Sync {
    /// Adds an event that has its id.
    fn append(&self, event: Event);
    /// The events passing `filter`, newest first, at most `filter.page()`.
    fn list(&self, filter: &Filter) -> Vec<Event>;
    /// The event with this id, while it is kept.
    fn get(&self, id: &str) -> Option<Event>;
    /// When each secret of `route` last matched, by index (kept apart from the events, so
    /// it outlives them).
    fn last_matches(&self, route: &str) -> Vec<LastMatch>;
}

/// The request path's handle: hands events to the appender without waiting.
pub struct Recorder {
    tx: tokio::sync::mpsc::Sender<Event>,
    rx: Mutex<Option<tokio::sync::mpsc::Receiver<Event>>>,
    pub log: Arc<dyn EventLog>,
}

impl Recorder {
    pub fn new(log: Arc<dyn EventLog>) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL);
        Recorder { tx, rx: Mutex::new(Some(rx)), log }
    }

    /// Queues `event` for the appender; false when it was dropped: the channel was full
    /// (the caller counts it).
    pub fn record(&self, event: Event) -> bool {
        self.tx.try_send(event).is_ok()
    }

    /// Starts the task that ids and appends events; once only (later calls do nothing).
    /// It ends when the recorder is dropped.
    pub fn spawn_appender(&self) {
        let Some(mut rx) = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        let log = self.log.clone();
        tokio::spawn(async move {
            let mut ids = Ulids::default();
            while let Some(mut e) = rx.recv().await {
                e.id = ids.next(now_ms());
                log.append(e);
            }
        });
    }
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
        (0..26).rev().map(|i| CROCKFORD[((value >> (i * 5)) & 31) as usize] as char).collect()
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
    }

    #[test]
    fn a_full_channel_drops_instead_of_waiting() {
        let recorder = Recorder::new(Arc::new(memory::MemoryLog::new(10)));
        // No appender: the channel fills and the next event is refused at once.
        for _ in 0..CHANNEL {
            assert!(recorder.record(memory::tests::event("r", "forwarded")));
        }
        assert!(!recorder.record(memory::tests::event("r", "forwarded")));
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
