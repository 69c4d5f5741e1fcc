//! The in-memory event log: a ring of the last `keep` events (younger than `max_age`, when
//! set), the captured requests of those still kept (until their ttl), and when each route's
//! secrets last matched.

use super::{Capture, Entry, Event, EventLog, Filter, LastMatch, LogFuture};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

/// How often expired captures are swept (they are never served once expired).
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The sum of captured body bytes the memory log keeps by default: past it the oldest
/// captures go (their events stay), so `keep` × `capture.max_bytes` cannot grow the process
/// without bound however large each route's settings are.
pub const CAPTURE_BUDGET: usize = 64 << 20;

/// The last `keep` events, oldest evicted first. Appended by one task; listings copy out
/// the page under the lock.
pub struct MemoryLog {
    keep: usize,
    /// The most captured body bytes kept at once; the oldest captures are evicted past it.
    capture_budget: usize,
    /// Events whose arrival is older than this (unix ms) go; none: kept however old.
    max_age_ms: Option<u64>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Oldest first, so ids ascend.
    events: VecDeque<Event>,
    /// Event id → its captured request and when that expires. Dropped with its event, at
    /// its ttl (swept as events are appended, and never served once expired), or when the
    /// bytes kept pass the budget (oldest first: ids ascend, so the map's first is oldest).
    captures: BTreeMap<String, (Capture, Instant)>,
    /// The sum of the kept captures' body lengths.
    capture_bytes: usize,
    /// When expired captures are next swept: at most once a second, not at every batch
    /// (a sweep walks every capture kept).
    next_sweep: Option<Instant>,
    /// Route → (secret index → last match, unix ms).
    last: HashMap<String, HashMap<usize, u64>>,
}

impl MemoryLog {
    pub fn new(keep: usize) -> Self {
        MemoryLog {
            keep: keep.max(1),
            capture_budget: CAPTURE_BUDGET,
            max_age_ms: None,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Keeps at most `bytes` of captured bodies at once (default [`CAPTURE_BUDGET`]).
    pub fn with_capture_budget(mut self, bytes: usize) -> Self {
        self.capture_budget = bytes;
        self
    }

    /// Also drops events older than `max_age` (by their arrival time).
    pub fn with_max_age(mut self, max_age: std::time::Duration) -> Self {
        self.max_age_ms = Some(max_age.as_millis().min(u64::MAX as u128) as u64);
        self
    }

    /// The arrival time (unix ms) before which events are no longer kept.
    fn oldest_kept_ms(&self) -> u64 {
        self.max_age_ms.map_or(0, |age| super::now_ms().saturating_sub(age))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn append_now(&self, entries: &[Entry]) {
        let now = Instant::now();
        let mut inner = self.lock();
        for Entry { event, capture } in entries {
            if let Some(i) = event.secret_index {
                // The route's name is cloned only the first time it is seen.
                let by_secret = match inner.last.get_mut(&event.route) {
                    Some(m) => m,
                    None => inner.last.entry(event.route.clone()).or_default(),
                };
                let t = by_secret.entry(i).or_default();
                *t = (*t).max(event.time_ms);
            }
            if inner.events.len() >= self.keep {
                if let Some(old) = inner.events.pop_front() {
                    inner.remove_capture(&old.id);
                }
            }
            if let Some((c, ttl)) = capture {
                // A single capture larger than the whole budget is not kept at all.
                if c.body.len() <= self.capture_budget {
                    inner.capture_bytes += c.body.len();
                    let old = inner.captures.insert(event.id.clone(), (c.clone(), now + *ttl));
                    if let Some((old, _)) = old {
                        inner.capture_bytes -= old.body.len();
                    }
                }
            }
            inner.events.push_back(event.clone());
        }
        let oldest = self.oldest_kept_ms();
        while let Some(old) = inner.events.front().filter(|e| e.time_ms < oldest) {
            let id = old.id.clone();
            inner.events.pop_front();
            inner.remove_capture(&id);
        }
        if inner.next_sweep.is_none_or(|t| now >= t) {
            inner.next_sweep = Some(now + SWEEP_EVERY);
            let mut freed = 0;
            inner.captures.retain(|_, (c, until)| {
                let keep = *until > now;
                if !keep {
                    freed += c.body.len();
                }
                keep
            });
            inner.capture_bytes -= freed;
        }
        while inner.capture_bytes > self.capture_budget {
            match inner.captures.pop_first() {
                Some((_, (c, _))) => inner.capture_bytes -= c.body.len(),
                None => break,
            }
        }
    }
}

impl Inner {
    fn remove_capture(&mut self, id: &str) {
        if let Some((c, _)) = self.captures.remove(id) {
            self.capture_bytes -= c.body.len();
        }
    }
}

impl EventLog for MemoryLog {
    fn append<'a>(&'a self, entries: &'a [Entry]) -> LogFuture<'a, ()> {
        self.append_now(entries);
        Box::pin(std::future::ready(Ok(())))
    }

    fn list<'a>(&'a self, filter: &'a Filter) -> LogFuture<'a, Vec<Event>> {
        let oldest = self.oldest_kept_ms();
        let inner = self.lock();
        let page = inner
            .events
            .iter()
            .rev()
            .filter(|e| e.time_ms >= oldest && filter.matches(e))
            .take(filter.page())
            .cloned()
            .collect();
        Box::pin(std::future::ready(Ok(page)))
    }

    fn get<'a>(&'a self, id: &'a str) -> LogFuture<'a, Option<Event>> {
        let inner = self.lock();
        // Ids ascend through the ring.
        let found = inner
            .events
            .binary_search_by(|e| e.id.as_str().cmp(id))
            .ok()
            .and_then(|i| inner.events.get(i).cloned());
        Box::pin(std::future::ready(Ok(found)))
    }

    fn capture<'a>(&'a self, id: &'a str) -> LogFuture<'a, Option<Capture>> {
        let inner = self.lock();
        let now = Instant::now();
        let found = inner.captures.get(id).filter(|(_, until)| *until > now).map(|(c, _)| c.clone());
        Box::pin(std::future::ready(Ok(found)))
    }

    fn last_matches<'a>(&'a self, route: &'a str) -> LogFuture<'a, Vec<LastMatch>> {
        let inner = self.lock();
        let mut all: Vec<LastMatch> = inner
            .last
            .get(route)
            .map(|m| m.iter().map(|(&index, &time_ms)| LastMatch { index, time_ms }).collect())
            .unwrap_or_default();
        all.sort_by_key(|m| m.index);
        Box::pin(std::future::ready(Ok(all)))
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event_log::Ulids;

    pub(crate) fn event(route: &str, outcome: &'static str) -> Event {
        Event {
            id: String::new(),
            time_ms: 1_000,
            route: route.into(),
            provider: "paylent".into(),
            method: "POST".into(),
            path: "/p".into(),
            client: None,
            request_id: None,
            outcome: outcome.into(),
            status: 200,
            event_key: None,
            secret_index: None,
            latency_ms: 1.0,
            upstream_status: None,
            upstream_latency_ms: None,
            detail: None,
            attempts: None,
            captured: false,
            replay_of: None,
        }
    }

    fn run<T>(f: LogFuture<'_, T>) -> T {
        futures_lite_block_on(f).unwrap()
    }

    /// The memory log's futures are ready at once.
    fn futures_lite_block_on<T>(f: LogFuture<'_, T>) -> Result<T, super::super::LogError> {
        let mut f = f;
        let waker = std::task::Waker::noop();
        match f.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the memory log never waits"),
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_and_lists_them_newest_first() {
        let log = MemoryLog::new(3);
        let mut ids = Ulids::default();
        let mut made = Vec::new();
        for (i, o) in
            ["forwarded", "invalid_signature", "forwarded", "upstream_error"].into_iter().enumerate()
        {
            let mut e = event(if i % 2 == 0 { "a" } else { "b" }, o);
            e.id = ids.next(1_000 + i as u64);
            e.time_ms = 1_000 + i as u64;
            e.secret_index = (o == "forwarded").then_some(i);
            made.push(e.id.clone());
            run(log.append(&[Entry { event: e, capture: None }]));
        }
        let all: Vec<String> = run(log.list(&Filter::default())).into_iter().map(|e| e.id).collect();
        assert_eq!(all, vec![made[3].clone(), made[2].clone(), made[1].clone()]);
        assert!(run(log.get(&made[0])).is_none(), "evicted");
        assert_eq!(run(log.get(&made[2])).unwrap().outcome, "forwarded");
        let f = Filter { route: Some("b".into()), ..Filter::default() };
        assert_eq!(run(log.list(&f)).len(), 2);
        let f = Filter { before: Some(made[3].clone()), limit: 1, ..Filter::default() };
        assert_eq!(run(log.list(&f))[0].id, made[2]);
        let f = Filter { since_ms: Some(1_002), ..Filter::default() };
        assert_eq!(run(log.list(&f)).len(), 2);
        // Secret matches outlive the evicted event.
        assert_eq!(
            run(log.last_matches("a")),
            vec![LastMatch { index: 0, time_ms: 1_000 }, LastMatch { index: 2, time_ms: 1_002 }]
        );
    }

    fn capture_of(target: &str) -> Capture {
        Capture {
            method: "POST".into(),
            target: target.into(),
            headers: vec![("x-sig".into(), "v1=abc".into())],
            body: bytes::Bytes::from_static(b"{}"),
            truncated: false,
            verified: true,
        }
    }

    #[test]
    fn an_expired_capture_is_not_served_and_is_swept() {
        let log = MemoryLog::new(10);
        let mut ids = Ulids::default();
        let hour = std::time::Duration::from_secs(3600);
        let mut e = event("a", "forwarded");
        e.id = ids.next(1_000);
        e.captured = true;
        let old = e.id.clone();
        run(log.append(&[Entry { event: e, capture: Some((capture_of("/old"), hour)) }]));
        assert_eq!(run(log.capture(&old)).unwrap().target, "/old");
        // Its ttl runs out (moved by hand: no sleeping).
        log.lock().captures.get_mut(&old).unwrap().1 = Instant::now();
        assert!(run(log.capture(&old)).is_none(), "an expired capture is never served");
        assert!(log.lock().captures.contains_key(&old), "not yet swept");
        // The next sweep is due (moved by hand too).
        log.lock().next_sweep = Some(Instant::now());
        let mut e = event("a", "forwarded");
        e.id = ids.next(1_001);
        let new = e.id.clone();
        run(log.append(&[Entry { event: e, capture: Some((capture_of("/new"), hour)) }]));
        assert_eq!(run(log.capture(&new)).unwrap().target, "/new");
        // Swept as events are appended, while its event stays listed.
        let inner = log.lock();
        assert!(!inner.captures.contains_key(&old));
        assert_eq!(inner.captures.len(), 1);
        assert_eq!(inner.events.len(), 2);
    }

    #[test]
    fn the_oldest_captures_go_past_the_byte_budget() {
        let log = MemoryLog::new(100).with_capture_budget(10);
        let mut ids = Ulids::default();
        let hour = std::time::Duration::from_secs(3600);
        let mut made = Vec::new();
        for i in 0..4u64 {
            let mut e = event("a", "forwarded");
            e.id = ids.next(1_000 + i);
            e.captured = true;
            made.push(e.id.clone());
            let mut c = capture_of("/c");
            c.body = bytes::Bytes::from(vec![b'x'; 4]);
            run(log.append(&[Entry { event: e, capture: Some((c, hour)) }]));
        }
        // 4 × 4 bytes against a budget of 10: the two oldest captures went, their events stay.
        assert!(run(log.capture(&made[0])).is_none());
        assert!(run(log.capture(&made[1])).is_none());
        assert!(run(log.capture(&made[2])).is_some());
        assert!(run(log.capture(&made[3])).is_some());
        assert_eq!(log.lock().capture_bytes, 8);
        assert_eq!(log.lock().events.len(), 4);
        // One larger than the whole budget is not kept.
        let mut e = event("a", "forwarded");
        e.id = ids.next(2_000);
        let big = e.id.clone();
        let mut c = capture_of("/big");
        c.body = bytes::Bytes::from(vec![b'x'; 11]);
        run(log.append(&[Entry { event: e, capture: Some((c, hour)) }]));
        assert!(run(log.capture(&big)).is_none());
        assert_eq!(log.lock().capture_bytes, 8);
    }

    #[test]
    fn events_older_than_max_age_go() {
        let log = MemoryLog::new(10).with_max_age(std::time::Duration::from_secs(60));
        let mut ids = Ulids::default();
        let now = crate::event_log::now_ms();
        for t in [now - 120_000, now - 1_000] {
            let mut e = event("a", "forwarded");
            e.id = ids.next(t);
            e.time_ms = t;
            run(log.append(&[Entry { event: e, capture: None }]));
        }
        let all = run(log.list(&Filter::default()));
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].time_ms, now - 1_000);
    }
}
