//! Sending one delivery to a route's destinations: each that wants it (`when:`) and has not
//! accepted it on an earlier attempt, all at once. The one code of the request path (sync
//! routes, remembering per destination in the idempotency store) and of the queue's workers
//! (remembering in the queued item).
//!
//! Per-destination memory of a sync fan-out: destination `d` of event `route:id` is claimed
//! under the sub-key `route` U+001F `d` `:` `id` ([`sub_key`]) before it is sent; a sub-key
//! already delivered means an earlier attempt reached `d` (not sent again). It is completed
//! (kept for the route's `ttl`) when `d` accepts, released when it fails. The separator keeps
//! sub-keys apart from every event key: route names hold no control character (checked at
//! load) and destination names hold no `:`, so a sub-key is no `route:id` of any route and
//! two sub-keys differ when their route, destination or id differ.

use super::{Brokers, Message, PublishError};
use crate::config::destination::{Destination, Target};
use crate::config::{OnStoreError, Route};
use crate::delivery::EventKey;
use crate::forward::{Outgoing, UpstreamClient};
use crate::idempotency::{guarded, Claim, Store};
use crate::response::Rejection;
use crate::upstream_tls::ClientOptions;
use std::fmt::Write as _;
use std::time::Duration;

/// The separator of a sub-key (see the module's docs).
pub const SUB_KEY_SEPARATOR: char = '\u{1f}';

/// What sending needs: the HTTP client of upstreams without `upstream_tls` (the worker's
/// pool), the broker connections, and the options of `upstream_tls` clients.
#[derive(Clone, Copy)]
pub struct Senders<'a> {
    pub client: &'a UpstreamClient,
    pub brokers: &'a Brokers,
    pub options: &'a ClientOptions,
}

/// What became of one destination.
#[derive(Debug)]
pub enum Fate {
    /// Its `when:` does not want this delivery: not sent.
    Filtered,
    /// Accepted on an earlier attempt (remembered): not sent again.
    Earlier,
    /// Accepted now (an HTTP destination's status with it).
    Accepted(Option<u16>),
    Failed(Rejection),
}

impl Fate {
    fn accepted(&self) -> bool {
        matches!(self, Fate::Earlier | Fate::Accepted(_))
    }
}

/// What became of each destination, in the route's order.
#[derive(Debug)]
pub struct Report<'r> {
    pub fates: Vec<(&'r Destination, Fate)>,
}

impl<'r> Report<'r> {
    /// No destination wanted the delivery.
    pub fn none_wanted(&self) -> bool {
        self.fates.iter().all(|(_, f)| matches!(f, Fate::Filtered))
    }

    /// Every destination that wanted it has accepted it (now or before).
    pub fn all_accepted(&self) -> bool {
        !self.fates.iter().any(|(_, f)| matches!(f, Fate::Failed(_)))
    }

    /// The names of the destinations that have accepted it (now or before).
    pub fn accepted(&self) -> impl Iterator<Item = &'r str> + '_ {
        self.fates.iter().filter(|(_, f)| f.accepted()).map(|(d, _)| d.name.as_str())
    }

    /// Each destination's result, for the log line and the console (no credentials: URLs are
    /// not in it, and the errors never hold one).
    pub fn detail(&self) -> String {
        let mut out = String::new();
        for (i, (d, f)) in self.fates.iter().enumerate() {
            let sep = if i == 0 { "" } else { "; " };
            let _ = match f {
                Fate::Filtered => write!(out, "{sep}{}: filtered", d.name),
                Fate::Earlier => write!(out, "{sep}{}: accepted earlier", d.name),
                Fate::Accepted(Some(s)) => write!(out, "{sep}{}: accepted ({s})", d.name),
                Fate::Accepted(None) => write!(out, "{sep}{}: accepted", d.name),
                Fate::Failed(e) => write!(out, "{sep}{}: {e}", d.name),
            };
        }
        out
    }

    /// The first failure in the route's order: it decides the answer.
    pub fn into_first_failure(self) -> Option<Rejection> {
        self.fates.into_iter().find_map(|(_, f)| match f {
            Fate::Failed(e) => Some(e),
            _ => None,
        })
    }
}

/// Where a sync fan-out remembers which destinations accepted: the idempotency store.
pub struct Memory<'a> {
    pub store: &'a dyn Store,
    pub timeout: Duration,
    pub metrics: &'a crate::metrics::Metrics,
    pub event: &'a EventKey,
}

/// The sub-key of destination `destination` of `event` (see the module's docs).
pub fn sub_key(event: &EventKey, destination: &str) -> String {
    format!("{}{SUB_KEY_SEPARATOR}{destination}:{}", event.route(), event.id())
}

/// Sends `o` to every destination of `route` that wants it and is not in `done`, all at
/// once; with `memory`, each claimed under its sub-key first.
pub async fn deliver<'r>(
    s: Senders<'_>,
    route: &'r Route,
    o: &Outgoing,
    done: &[String],
    memory: Option<&Memory<'_>>,
) -> Report<'r> {
    let mut fates: Vec<(&Destination, Fate)> = Vec::with_capacity(route.destinations.len());
    let mut sends = Vec::new();
    for (i, d) in route.destinations.iter().enumerate() {
        if !d.wants(&o.body) {
            fates.push((d, Fate::Filtered));
        } else if done.contains(&d.name) {
            fates.push((d, Fate::Earlier));
        } else {
            fates.push((d, Fate::Filtered)); // replaced below
            sends.push(async move { (i, remembered(s, route, d, o, memory).await) });
        }
    }
    for (i, fate) in futures_util::future::join_all(sends).await {
        fates[i].1 = fate;
    }
    Report { fates }
}

/// One destination, claimed under its sub-key first when there is a memory.
async fn remembered(
    s: Senders<'_>,
    route: &Route,
    d: &Destination,
    o: &Outgoing,
    memory: Option<&Memory<'_>>,
) -> Fate {
    let Some(m) = memory else { return fate(send(s, route, d, o).await) };
    let key = sub_key(m.event, &d.name);
    let token = match guarded(m.store, m.timeout, m.metrics, m.store.claim(&key, route.lease)).await {
        Ok(Claim::Acquired(t)) => t,
        Ok(Claim::Delivered) => return Fate::Earlier,
        Ok(Claim::InFlight { retry_after }) => return Fate::Failed(Rejection::InFlight(retry_after)),
        Err(e) if route.on_store_error == OnStoreError::Forward => {
            tracing::warn!(route = %route.name, key = %key.escape_debug(), error = %e,
                "store unavailable; sending to the destination without remembering it (on_store_error: forward)");
            return fate(send(s, route, d, o).await);
        }
        Err(e) => return Fate::Failed(Rejection::Store(e)),
    };
    let result = send(s, route, d, o).await;
    let fut = match &result {
        Ok(_) => m.store.complete(&key, token, route.ttl),
        Err(_) => m.store.release(&key, token),
    };
    if let Err(e) = guarded(m.store, m.timeout, m.metrics, fut).await {
        // A completion lost: a retry may send to this destination again once the lease ends
        // (at-least-once); a release lost: the destination waits for the lease.
        tracing::warn!(route = %route.name, key = %key.escape_debug(), error = %e,
            "could not record a destination's outcome");
    }
    fate(result)
}

fn fate(r: Result<Option<u16>, Rejection>) -> Fate {
    match r {
        Ok(status) => Fate::Accepted(status),
        Err(e) => Fate::Failed(e),
    }
}

/// Sends `o` to one destination: `Ok` once it accepted (an upstream's 2xx status; a broker's
/// acknowledgement). An upstream's other status is [`Rejection::UpstreamStatus`].
pub async fn send(
    s: Senders<'_>,
    route: &Route,
    d: &Destination,
    o: &Outgoing,
) -> Result<Option<u16>, Rejection> {
    if let Target::Http(h) = &d.target {
        let req = crate::forward::to_request(route, &h.upstream, o.clone())
            .map_err(|e| Rejection::UpstreamUnavailable(e.to_string()))?;
        let tls = h.tls.as_ref().map(|tls| tls.client(s.options));
        let res = crate::forward::send(s.client, tls, route, req).await?;
        let status = res.status();
        drain(res).await;
        return if status.is_success() {
            Ok(Some(status.as_u16()))
        } else {
            Err(Rejection::UpstreamStatus(status.as_u16()))
        };
    }
    let timeout = route.upstream_timeout;
    let event_id = event_id(&o.id);
    let m = Message {
        provider: route.provider(),
        event_id: &event_id,
        key: &o.id,
        headers: &o.headers,
        body: &o.body,
        timeout,
        destination: (route.destinations.len() > 1).then_some(d.name.as_str()),
    };
    // The publishers keep to `timeout` (connecting included); this bound is the gateway's own
    // guarantee that a broker never holds a delivery (and its claim, whose lease is longer
    // than the timeout) past it.
    let bound = timeout;
    let published = match &d.target {
        Target::Nats(n) => {
            let nats = s.brokers.nats(&n.url);
            tokio::time::timeout(bound, nats.publish(n, &m)).await
        }
        Target::Amqp(a) => {
            let amqp = s.brokers.amqp(&a.url);
            tokio::time::timeout(bound, amqp.publish(a, &m)).await
        }
        Target::Http(_) => unreachable!("answered above"),
    };
    match published {
        Ok(Ok(())) => Ok(None),
        Ok(Err(e)) => Err(Rejection::Destination(e.to_string())),
        Err(_) => Err(Rejection::Destination(PublishError::Timeout(timeout).to_string())),
    }
}

/// Reads a short answer (a known length up to 64 KiB) to its end, briefly, so that its
/// connection goes back to the pool; a longer or slower one is dropped (closing only that
/// connection).
async fn drain(res: http::Response<hyper::body::Incoming>) {
    use http_body_util::BodyExt;
    const SHORT: u64 = 64 * 1024;
    let len =
        res.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if len.is_some_and(|n| n <= SHORT) {
        let body = http_body_util::Limited::new(res.into_body(), SHORT as usize);
        let _ = tokio::time::timeout(Duration::from_millis(500), body.collect()).await;
    }
}

/// The event's id as the provider named it, from the forwarded id `<route>:<event id>`
/// (`%XX`-encoded: see `delivery::forwarded_id`).
fn event_id(forwarded: &http::HeaderValue) -> String {
    let b = forwarded.as_bytes();
    let rest = b.iter().position(|&c| c == b':').map_or(b, |i| &b[i + 1..]);
    percent_encoding::percent_decode(rest).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_come_back_from_forwarded_ids() {
        for (route, id) in [("/p", "evt_1"), ("a:b", "c:d"), ("/p", "évt 1%\t")] {
            assert_eq!(event_id(&crate::delivery::forwarded_id(route, id)), id);
        }
    }

    fn nats(name: &str) -> Destination {
        let s = crate::config::destination::NatsSettings {
            url: "nats://h".into(),
            subject: "s".into(),
            headers: true,
        };
        Destination { name: name.into(), target: Target::Nats(s), when: None }
    }

    #[test]
    fn the_first_failure_in_the_routes_order_decides_and_the_detail_names_each() {
        let (a, b, c, d) = (nats("a"), nats("b"), nats("c"), nats("d"));
        let report = Report {
            fates: vec![
                (&a, Fate::Filtered),
                (&b, Fate::Earlier),
                (&c, Fate::Failed(Rejection::UpstreamStatus(500))),
                (&d, Fate::Failed(Rejection::Destination("no stream".into()))),
            ],
        };
        assert!(!report.none_wanted() && !report.all_accepted());
        assert_eq!(report.accepted().collect::<Vec<_>>(), ["b"]);
        assert_eq!(
            report.detail(),
            "a: filtered; b: accepted earlier; c: upstream answered 500; d: no stream"
        );
        assert!(matches!(report.into_first_failure(), Some(Rejection::UpstreamStatus(500))));
        let none = Report { fates: vec![(&a, Fate::Filtered)] };
        assert!(none.none_wanted() && none.all_accepted());
    }

    #[test]
    fn sub_keys_stay_apart_from_event_keys() {
        let e = EventKey::new("/p", "evt_1");
        let k = sub_key(&e, "billing");
        assert_eq!(k, "/p\u{1f}billing:evt_1");
        assert_ne!(k.as_str(), &**EventKey::new("/p", "evt_1\u{1f}billing").store_key());
        assert_ne!(sub_key(&e, "a"), sub_key(&EventKey::new("/p", "evt_2"), "a"));
    }
}
