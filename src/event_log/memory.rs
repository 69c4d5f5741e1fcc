//! The in-memory event log: a ring of the last `keep` events, and when each route's secrets
//! last matched.

use super::{Event, EventLog, Filter, LastMatch};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// The last `keep` events, oldest evicted first. Appended by one task; listings copy out
/// the page under the lock.
pub struct MemoryLog {
    keep: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Oldest first, so ids ascend.
    events: VecDeque<Event>,
    /// Route → (secret index → last match, unix ms).
    last: HashMap<String, HashMap<usize, u64>>,
}

impl MemoryLog {
    pub fn new(keep: usize) -> Self {
        MemoryLog { keep: keep.max(1), inner: Mutex::new(Inner::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl EventLog for MemoryLog {
    fn append(&self, event: Event) {
        let mut inner = self.lock();
        if let Some(i) = event.secret_index {
            let t = inner.last.entry(event.route.clone()).or_default().entry(i).or_default();
            *t = (*t).max(event.time_ms);
        }
        if inner.events.len() >= self.keep {
            inner.events.pop_front();
        }
        inner.events.push_back(event);
    }

    fn list(&self, filter: &Filter) -> Vec<Event> {
        let inner = self.lock();
        inner.events.iter().rev().filter(|e| filter.matches(e)).take(filter.page()).cloned().collect()
    }

    fn get(&self, id: &str) -> Option<Event> {
        let inner = self.lock();
        // Ids ascend through the ring.
        let i = inner.events.binary_search_by(|e| e.id.as_str().cmp(id)).ok()?;
        inner.events.get(i).cloned()
    }

    fn last_matches(&self, route: &str) -> Vec<LastMatch> {
        let inner = self.lock();
        let mut all: Vec<LastMatch> = inner
            .last
            .get(route)
            .map(|m| m.iter().map(|(&index, &time_ms)| LastMatch { index, time_ms }).collect())
            .unwrap_or_default();
        all.sort_by_key(|m| m.index);
        all
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
            outcome,
            status: 200,
            event_key: None,
            secret_index: None,
            latency_ms: 1.0,
            upstream_status: None,
            upstream_latency_ms: None,
            detail: None,
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
            log.append(e);
        }
        let all: Vec<String> = log.list(&Filter::default()).into_iter().map(|e| e.id).collect();
        assert_eq!(all, vec![made[3].clone(), made[2].clone(), made[1].clone()]);
        assert!(log.get(&made[0]).is_none(), "evicted");
        assert_eq!(log.get(&made[2]).unwrap().outcome, "forwarded");
        let f = Filter { route: Some("b".into()), ..Filter::default() };
        assert_eq!(log.list(&f).len(), 2);
        let f = Filter { before: Some(made[3].clone()), limit: 1, ..Filter::default() };
        assert_eq!(log.list(&f)[0].id, made[2]);
        let f = Filter { since_ms: Some(1_002), ..Filter::default() };
        assert_eq!(log.list(&f).len(), 2);
        // Secret matches outlive the evicted event.
        assert_eq!(
            log.last_matches("a"),
            vec![LastMatch { index: 0, time_ms: 1_000 }, LastMatch { index: 2, time_ms: 1_002 }]
        );
    }
}
