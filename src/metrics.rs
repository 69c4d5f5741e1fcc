//! Prometheus metrics: per-route counters and histograms kept in preallocated atomics, so the
//! request path never takes a lock or allocates to count; rendered in the text format. What
//! the request path writes is kept per connection worker, on cache lines of its own, so that
//! two cores never write the same line; rendering sums the shards. The worker's shard is
//! passed in by the request path ([`Metrics::shard`]).

use crate::outcome::Outcome;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Latency bucket bounds, in seconds.
const BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Matched secret indexes counted individually; higher ones share the last slot.
const SECRET_SLOTS: usize = 8;

/// The `code` label of `portcullis_requests_total`: the answer's status class. A class, not
/// the exact status: an upstream's answer passes through, so exact codes would be an
/// unbounded set of series.
const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The class of `status` among [`CODE_CLASSES`] (a status outside 100..=599 counts as 5xx).
fn code_class(status: u16) -> usize {
    match status / 100 {
        1..=5 => usize::from(status / 100) - 1,
        _ => 4,
    }
}

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    /// Renders the sum of `shards`.
    fn render<'a>(
        shards: impl Iterator<Item = &'a Histogram> + Clone,
        out: &mut String,
        name: &str,
        labels: &str,
    ) {
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += shards.clone().map(|h| h.buckets[i].load(Relaxed)).sum::<u64>();
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
        }
        let count: u64 = shards.clone().map(|h| h.count.load(Relaxed)).sum();
        let sum: u64 = shards.map(|h| h.sum_nanos.load(Relaxed)).sum();
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", sum as f64 / 1e9);
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Shards of the request path's metrics: the first for threads that are no connection
/// worker, the others for the workers (more workers than that share).
const SHARDS: usize = 8;

/// A value alone on its cache lines (128 bytes: adjacent-line prefetch pairs them).
#[derive(Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// What one shard of a route counts.
#[derive(Default)]
#[repr(align(128))]
struct RouteShard {
    /// By outcome, then status class: `outcome.index() * CODE_CLASSES.len() + class`.
    outcomes: Counters<{ Outcome::ALL.len() * CODE_CLASSES.len() }>,
    secret_index: [AtomicU64; SECRET_SLOTS],
    request: Histogram,
    upstream: Histogram,
}

/// `N` counters (`Default` for any `N`, which arrays of more than 32 lack).
struct Counters<const N: usize>([AtomicU64; N]);

impl<const N: usize> Default for Counters<N> {
    fn default() -> Self {
        Counters(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// The metrics of one route (or of requests that matched none).
#[derive(Default)]
pub struct RouteMetrics {
    shards: [RouteShard; SHARDS],
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteMetrics(..)")
    }
}

impl RouteMetrics {
    /// Counts one request answered with `status` in `shard` (see [`Metrics::shard`]).
    pub fn record(
        &self,
        shard: usize,
        outcome: Outcome,
        status: u16,
        latency: Duration,
        secret_index: Option<usize>,
    ) {
        let shard = &self.shards[shard % SHARDS];
        shard.outcomes.0[outcome.index() * CODE_CLASSES.len() + code_class(status)].fetch_add(1, Relaxed);
        shard.request.observe(latency);
        if let (Some(i), Outcome::Forwarded | Outcome::Duplicate | Outcome::UpstreamError) =
            (secret_index, outcome)
        {
            shard.secret_index[i.min(SECRET_SLOTS - 1)].fetch_add(1, Relaxed);
        }
    }

    /// Counts how long the upstream took.
    pub fn observe_upstream(&self, shard: usize, latency: Duration) {
        self.shards[shard % SHARDS].upstream.observe(latency);
    }

    fn outcome(&self, i: usize) -> u64 {
        self.shards.iter().map(|s| s.outcomes.0[i].load(Relaxed)).sum()
    }

    fn secret_index(&self, i: usize) -> u64 {
        self.shards.iter().map(|s| s.secret_index[i].load(Relaxed)).sum()
    }
}

/// Every metric of a gateway process; survives configuration reloads.
#[derive(Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<String, Arc<RouteMetrics>>>,
    unmatched: Arc<RouteMetrics>,
    in_flight: [Padded<AtomicI64>; SHARDS],
    pub store_errors: AtomicU64,
    /// Delivery events the event log's channel had no room for.
    pub event_log_dropped: AtomicU64,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// The queue's gauges, one set per queued route (`set_queue`).
    queues: Mutex<BTreeMap<String, QueueGauges>>,
    pub queue_attempts: [AtomicU64; 3],
    /// Queue operations of the delivery workers that failed (each failed attempt counts).
    pub queue_errors: AtomicU64,
}

/// One queue gauge: name, help, and its value in a route's gauges.
type QueueGauge = (&'static str, &'static str, fn(&QueueGauges) -> u64);

/// What the queue's maintenance last read for one queued route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueGauges {
    /// Accepted deliveries not yet delivered.
    pub depth: u64,
    /// Deliveries in the dead-letter list.
    pub dead: u64,
    /// Age of the oldest undelivered delivery, in seconds.
    pub oldest_age_secs: u64,
    /// Deliveries waiting for their next attempt after a failed one (part of `depth`).
    pub in_retry: u64,
}

/// Labels of `portcullis_queue_attempts_total`.
pub const QUEUE_ATTEMPT_OUTCOMES: [&str; 3] = ["delivered", "retry", "dead"];

impl Metrics {
    /// The shard connection worker `worker` writes: the first for no worker, the others for
    /// the workers (more workers than that share).
    pub fn shard(worker: Option<usize>) -> usize {
        worker.map_or(0, |w| 1 + w % (SHARDS - 1))
    }

    /// One more request being handled (`1`), or one fewer (`-1`), in `shard`.
    pub fn add_in_flight(&self, shard: usize, n: i64) {
        self.in_flight[shard % SHARDS].0.fetch_add(n, Relaxed);
    }

    /// Requests being handled.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.iter().map(|s| s.0.load(Relaxed)).sum()
    }

    /// The metrics of a route, created on first use and kept across reloads.
    pub fn route(&self, name: &str) -> Arc<RouteMetrics> {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes.entry(name.to_string()).or_default().clone()
    }

    /// Publishes a queued route's gauges (the route's own series; other routes keep theirs).
    pub fn set_queue(&self, route: &str, g: QueueGauges) {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        match queues.get_mut(route) {
            Some(v) => *v = g,
            None => {
                queues.insert(route.to_string(), g);
            }
        }
    }

    /// Requests that matched no route.
    pub fn unmatched(&self) -> &Arc<RouteMetrics> {
        &self.unmatched
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let routes: Vec<(String, Arc<RouteMetrics>)> = {
            let r = self.routes.lock().unwrap_or_else(|e| e.into_inner());
            r.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let all = routes.iter().map(|(k, v)| (k.as_str(), v)).chain(std::iter::once(("-", &self.unmatched)));
        let all: Vec<(&str, &Arc<RouteMetrics>)> = all.collect();
        let mut out = String::with_capacity(16 * 1024);
        out.push_str("# HELP portcullis_requests_total Requests by route, outcome and status class.\n");
        out.push_str("# TYPE portcullis_requests_total counter\n");
        for (name, m) in &all {
            // A series appears once it has been counted: most outcomes can never happen on
            // a given route (`not_found` on any route, `queued` on a sync one…).
            for o in Outcome::ALL {
                for (c, code) in CODE_CLASSES.iter().enumerate() {
                    let n = m.outcome(o.index() * CODE_CLASSES.len() + c);
                    if n > 0 {
                        let _ = writeln!(
                            out,
                            "portcullis_requests_total{{route=\"{}\",outcome=\"{}\",code=\"{code}\"}} {n}",
                            escape(name),
                            o.as_str()
                        );
                    }
                }
            }
        }
        out.push_str("# HELP portcullis_request_duration_seconds Time from request to answer.\n");
        out.push_str("# TYPE portcullis_request_duration_seconds histogram\n");
        for (name, m) in &all {
            Histogram::render(
                m.shards.iter().map(|s| &s.request),
                &mut out,
                "portcullis_request_duration_seconds",
                &format!("route=\"{}\"", escape(name)),
            );
        }
        out.push_str("# HELP portcullis_upstream_duration_seconds Time the upstream took to answer.\n");
        out.push_str("# TYPE portcullis_upstream_duration_seconds histogram\n");
        for (name, m) in routes.iter() {
            Histogram::render(
                m.shards.iter().map(|s| &s.upstream),
                &mut out,
                "portcullis_upstream_duration_seconds",
                &format!("route=\"{}\"", escape(name)),
            );
        }
        out.push_str("# HELP portcullis_secret_matches_total Verified requests by the index of the secret that matched.\n");
        out.push_str("# TYPE portcullis_secret_matches_total counter\n");
        for (name, m) in routes.iter() {
            for i in 0..SECRET_SLOTS {
                let n = m.secret_index(i);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "portcullis_secret_matches_total{{route=\"{}\",index=\"{i}\"}} {n}",
                        escape(name)
                    );
                }
            }
        }
        let gauges = [
            ("portcullis_requests_in_flight", "gauge", "Requests being handled.", self.in_flight()),
            (
                "portcullis_store_errors_total",
                "counter",
                "Idempotency store calls that failed or timed out.",
                self.store_errors.load(Relaxed) as i64,
            ),
            (
                "portcullis_event_log_dropped_total",
                "counter",
                "Delivery events not recorded in the event log: its channel was full.",
                self.event_log_dropped.load(Relaxed) as i64,
            ),
            (
                "portcullis_queue_errors_total",
                "counter",
                "Queue operations of the delivery workers that failed or timed out.",
                self.queue_errors.load(Relaxed) as i64,
            ),
        ];
        for (name, kind, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        let queues: Vec<(String, QueueGauges)> = {
            let q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            q.iter().map(|(k, v)| (k.clone(), *v)).collect()
        };
        let queue_gauges: [QueueGauge; 4] = [
            ("portcullis_queue_depth", "Accepted deliveries not yet delivered.", |g| g.depth),
            ("portcullis_queue_in_retry", "Deliveries waiting to be retried after a failed attempt.", |g| {
                g.in_retry
            }),
            ("portcullis_queue_oldest_age_seconds", "Age of the oldest undelivered delivery.", |g| {
                g.oldest_age_secs
            }),
            ("portcullis_queue_dead", "Deliveries in the dead-letter list.", |g| g.dead),
        ];
        for (name, help, value) in queue_gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (route, g) in &queues {
                let _ = writeln!(out, "{name}{{route=\"{}\"}} {}", escape(route), value(g));
            }
        }
        out.push_str("# HELP portcullis_config_reloads_total Configuration reloads by result.\n");
        out.push_str("# TYPE portcullis_config_reloads_total counter\n");
        let _ = writeln!(
            out,
            "portcullis_config_reloads_total{{result=\"ok\"}} {}",
            self.reloads_ok.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "portcullis_config_reloads_total{{result=\"error\"}} {}",
            self.reloads_failed.load(Relaxed)
        );
        out.push_str("# HELP portcullis_queue_attempts_total Queued delivery attempts by outcome.\n");
        out.push_str("# TYPE portcullis_queue_attempts_total counter\n");
        for (label, n) in QUEUE_ATTEMPT_OUTCOMES.iter().zip(&self.queue_attempts) {
            let _ =
                writeln!(out, "portcullis_queue_attempts_total{{outcome=\"{label}\"}} {}", n.load(Relaxed));
        }
        crate::process_metrics::render(&mut out);
        out
    }
}

/// Escapes a label value.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        let r = m.route("/p");
        r.record(0, Outcome::Forwarded, 200, Duration::from_millis(3), Some(1));
        r.record(3, Outcome::InvalidSignature, 401, Duration::from_micros(100), None);
        r.record(2, Outcome::UpstreamError, 502, Duration::from_micros(100), None);
        r.record(5, Outcome::UpstreamError, 404, Duration::from_micros(100), None);
        r.observe_upstream(0, Duration::from_millis(2));
        let text = m.render();
        assert!(
            text.contains("portcullis_requests_total{route=\"/p\",outcome=\"forwarded\",code=\"2xx\"} 1\n"),
            "{text}"
        );
        assert!(text.contains(
            "portcullis_requests_total{route=\"/p\",outcome=\"invalid_signature\",code=\"4xx\"} 1\n"
        ));
        // One outcome, two classes: an upstream's 404 and a 502.
        assert!(text
            .contains("portcullis_requests_total{route=\"/p\",outcome=\"upstream_error\",code=\"5xx\"} 1\n"));
        assert!(text
            .contains("portcullis_requests_total{route=\"/p\",outcome=\"upstream_error\",code=\"4xx\"} 1\n"));
        assert!(!text.contains("code=\"1xx\""), "{text}");
        assert!(text.contains("portcullis_request_duration_seconds_bucket{route=\"/p\",le=\"0.005\"} 4"));
        assert!(text.contains("portcullis_request_duration_seconds_count{route=\"/p\"} 4"));
        assert!(text.contains("portcullis_upstream_duration_seconds_count{route=\"/p\"} 1"));
        assert!(text.contains("portcullis_secret_matches_total{route=\"/p\",index=\"1\"} 1"));
        assert!(Arc::ptr_eq(&m.route("/p"), &r), "kept across lookups (and reloads)");
        // Outcomes never counted are not exported.
        assert!(!text.contains("outcome=\"not_found\""), "{text}");
        assert!(!text.contains("outcome=\"queued\""), "{text}");
    }

    #[test]
    fn queue_gauges_are_one_series_per_route() {
        let m = Metrics::default();
        m.set_queue("/a", QueueGauges { depth: 3, dead: 1, oldest_age_secs: 9, in_retry: 1 });
        m.set_queue("/b", QueueGauges { depth: 7, dead: 0, oldest_age_secs: 2, in_retry: 0 });
        m.set_queue("/a", QueueGauges { depth: 4, dead: 1, oldest_age_secs: 10, in_retry: 2 });
        let text = m.render();
        assert!(text.contains("portcullis_queue_depth{route=\"/a\"} 4\n"), "{text}");
        assert!(text.contains("portcullis_queue_depth{route=\"/b\"} 7\n"), "{text}");
        assert!(text.contains("portcullis_queue_dead{route=\"/a\"} 1\n"), "{text}");
        assert!(text.contains("portcullis_queue_oldest_age_seconds{route=\"/b\"} 2\n"), "{text}");
        assert!(text.contains("portcullis_queue_in_retry{route=\"/a\"} 2\n"), "{text}");
    }
}
