//! The delivery workers: for every queued route of the routing in force, `concurrency` workers
//! that take deliveries and send them to the upstream, and one that moves due retries back and
//! publishes the queue's gauges. A delivery the upstream accepts is acknowledged; a failed one
//! waits with backoff, and one that exhausts its attempts goes to the dead-letter list.

use super::{now_ms, Item, Queue};
use crate::config::Route;
use crate::destination::Senders;
use crate::event_log::{Entry, Event, Recorder};
use crate::forward::UpstreamClient;
use crate::metrics::{Metrics, QueueGauges};
use crate::outcome::attempt;
use crate::store_conn::StoreError;
use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The queued routes in force, read again on every turn so that reloads apply.
pub type QueuedRoutes = Box<dyn Fn() -> Vec<Arc<Route>> + Send + Sync>;

/// What the workers need, and nothing more.
pub struct QueueWorkers {
    pub queue: Arc<Queue>,
    /// The upstream client the workers deliver with (upstreams without `upstream_tls`).
    pub client: UpstreamClient,
    /// The broker connections (the gateway's).
    pub brokers: Arc<crate::destination::Brokers>,
    /// The options of `upstream_tls:` clients.
    pub options: crate::upstream_tls::ClientOptions,
    pub metrics: Arc<Metrics>,
    pub routes: QueuedRoutes,
    /// Where each attempt is recorded for the admin API (outcome `delivered`, `retry` or
    /// `dead`); `None` records nothing.
    pub events: Option<Arc<Recorder>>,
}

impl QueueWorkers {
    /// The route named `name`, if the routing in force still has it queued.
    fn route(&self, name: &str) -> Option<Arc<Route>> {
        (self.routes)().into_iter().find(|r| r.name == name)
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
pub async fn supervise(workers: Arc<QueueWorkers>, mut stop: watch::Receiver<bool>) {
    let queue = &workers.queue;
    let mut started: HashSet<String> = HashSet::new();
    loop {
        for r in (workers.routes)() {
            if started.insert(r.name.clone()) {
                if let Err(e) = queue.ensure_group(&r.name).await {
                    tracing::warn!(route = %r.name, error = %e, "cannot create the queue's consumer group yet");
                    started.remove(&r.name);
                    continue;
                }
                let concurrency = r.queue.as_ref().map(|q| q.concurrency).unwrap_or(1);
                for _ in 0..concurrency {
                    tokio::spawn(worker(workers.clone(), r.name.clone(), stop.clone()));
                }
                tokio::spawn(maintain(workers.clone(), r.name.clone(), stop.clone()));
            }
        }
        if rest(Duration::from_millis(500), &mut stop).await {
            return;
        }
    }
}

/// Waits `d`, or until `stop` turns true; true when stopping.
async fn rest(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    }
}

/// Moves due retries back to the stream and publishes the queue's gauges.
async fn maintain(workers: Arc<QueueWorkers>, route: String, mut stop: watch::Receiver<bool>) {
    let queue = &workers.queue;
    loop {
        if let Err(e) = queue.promote(&route).await {
            tracing::debug!(route = %route, error = %e, "queue maintenance failed");
        }
        if let Ok(s) = queue.stats(&route).await {
            workers.metrics.set_queue(
                &route,
                QueueGauges {
                    depth: s.depth,
                    dead: s.dead,
                    oldest_age_secs: s.oldest_age_secs,
                    in_retry: s.in_retry,
                },
            );
        }
        if rest(Duration::from_millis(100), &mut stop).await {
            return;
        }
    }
}

/// Takes deliveries of one route and delivers them, one at a time.
async fn worker(workers: Arc<QueueWorkers>, route_name: String, mut stop: watch::Receiver<bool>) {
    let queue = &workers.queue;
    loop {
        if *stop.borrow() {
            return;
        }
        let Some(route) = workers.route(&route_name) else {
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
            deliver(&workers, &route, &id, item).await;
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
    workers: &QueueWorkers,
    route: &Route,
    id: &str,
    item: &Item,
    deadline: tokio::time::Instant,
) -> Result<(), StoreError> {
    let mut wait = Duration::from_millis(50);
    loop {
        match workers.queue.ack(&route.name, id, item).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                let next = tokio::time::Instant::now() + wait;
                if next >= deadline {
                    return Err(e); // counted by the caller
                }
                workers.metrics.queue_errors.fetch_add(1, Relaxed);
                tracing::debug!(route = %route.name, id = %item.origin, error = %e,
                    "acknowledging a delivered queued delivery failed; retrying");
                tokio::time::sleep_until(next).await;
                wait = (wait * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// One attempt at one queued delivery, and what follows from its answer.
async fn deliver(workers: &QueueWorkers, route: &Route, id: &str, mut item: Item) {
    let settings = route.queue.as_ref().expect("a queued route");
    let (queue, m) = (&*workers.queue, &workers.metrics);
    let taken = tokio::time::Instant::now();
    // An ordered delivery waits for the earlier ones of its ordering value.
    match queue.is_head(&route.name, &item).await {
        Ok(true) => {}
        Ok(false) | Err(_) => {
            let _ = queue.retry(&route.name, id, &item, now_ms() + 100).await;
            return;
        }
    }
    let (started_ms, sent) = (now_ms(), tokio::time::Instant::now());
    let senders = Senders { client: &workers.client, brokers: &workers.brokers, options: &workers.options };
    // Every destination that wants it and has not accepted it on an earlier attempt.
    let (result, upstream_status) = match item.to_outgoing() {
        Some(o) => {
            let report = crate::destination::deliver(senders, route, &o, &item.done, None).await;
            let status = upstream_status(&report);
            item.done = report.accepted().map(str::to_owned).collect();
            if report.all_accepted() {
                (Ok(()), status)
            } else if route.destinations.len() == 1 {
                (Err(report.into_first_failure().map(|e| e.to_string()).unwrap_or_default()), status)
            } else {
                (Err(report.detail()), status)
            }
        }
        None => (Err("the queued delivery cannot be decoded".to_string()), None),
    };
    let attempt_latency = sent.elapsed();
    item.attempts += 1;
    let outcome = match result {
        Ok(()) => {
            m.queue_attempts[0].fetch_add(1, Relaxed);
            record(workers, route, &item, started_ms, attempt::DELIVERED, upstream_status, attempt_latency);
            acknowledge(workers, route, id, &item, taken + ack_window(route)).await
        }
        Err(e) => {
            item.last_error = e;
            let age = Duration::from_millis(now_ms().saturating_sub(item.first_seen_ms));
            if item.attempts >= settings.max_attempts || age >= settings.max_age {
                m.queue_attempts[2].fetch_add(1, Relaxed);
                item.dead_at_ms = Some(now_ms());
                record(workers, route, &item, started_ms, attempt::DEAD, upstream_status, attempt_latency);
                // `id` is the dead letter's id, as `queue dead list` shows and `queue replay` takes.
                tracing::warn!(route = %route.name, id = %item.origin, attempts = item.attempts,
                    error = %item.last_error,
                    "queued delivery exhausted its attempts; moved to the dead-letter list");
                queue.bury(&route.name, id, &item).await
            } else {
                m.queue_attempts[1].fetch_add(1, Relaxed);
                record(workers, route, &item, started_ms, attempt::RETRY, upstream_status, attempt_latency);
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

/// The status of the route's first HTTP destination that answered this attempt, if any.
fn upstream_status(report: &crate::destination::Report<'_>) -> Option<u16> {
    use crate::destination::Fate;
    report.fates.iter().find_map(|(_, f)| match f {
        Fate::Accepted(Some(s)) | Fate::Failed(crate::response::Rejection::UpstreamStatus(s)) => Some(*s),
        _ => None,
    })
}

/// Records one attempt in the event log, without waiting (a full log drops it and counts it,
/// as for requests): the delivery's route, provider and event key, its request id if it
/// arrived with one, the attempt's number and the upstream's answer. A failed attempt's
/// detail is its error; a buried one's also names its dead-letter id.
fn record(
    workers: &QueueWorkers,
    route: &Route,
    item: &Item,
    time_ms: u64,
    outcome: &'static str,
    upstream_status: Option<u16>,
    latency: Duration,
) {
    let Some(recorder) = &workers.events else { return };
    let latency_ms = latency.as_secs_f64() * 1000.0;
    let detail = match outcome {
        attempt::DELIVERED => None,
        attempt::DEAD => Some(format!("{}; dead letter {}", item.last_error, item.origin)),
        _ => Some(item.last_error.clone()),
    };
    let event = Event {
        id: String::new(),
        time_ms,
        route: route.name.clone(),
        provider: route.provider().to_owned(),
        method: item.method.clone(),
        path: route.path.clone(),
        client: None,
        request_id: item.request_id(),
        outcome: outcome.into(),
        // No sender is answered by an attempt: the upstream's status, 0 when it did not answer.
        status: upstream_status.unwrap_or(0),
        event_key: Some(String::from_utf8_lossy(&item.id).into_owned()),
        secret_index: None,
        latency_ms,
        upstream_status,
        upstream_latency_ms: upstream_status.map(|_| latency_ms),
        detail,
        attempts: Some(item.attempts),
        captured: false,
        replay_of: None,
    };
    if !recorder.record(Entry { event, capture: None }) {
        workers.metrics.event_log_dropped.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = |n| backoff(Duration::from_secs(1), Duration::from_secs(60), n);
        assert!(b(0) >= Duration::from_millis(750) && b(0) <= Duration::from_millis(1250));
        assert!(b(3) >= Duration::from_secs(6));
        assert!(b(30) <= Duration::from_secs(75));
    }
}
