//! The innermost service: delivers a verified delivery to the route's destinations. A route
//! whose one destination is an HTTP(S) upstream without a filter is forwarded as a reverse
//! proxy does (pooled keep-alive client, body byte-identical, hop-by-hop headers removed, the
//! upstream's answer relayed); any other goes to each destination that wants it at once
//! (`destination::fanout`), answered 200 once all accepted; a route with `delivery: queued`
//! appends it to the delivery queue and answers once it is held.

use super::BoxFuture;
use crate::delivery::Verified;
use crate::destination::{deliver, Brokers, Memory, Report, Senders};
use crate::forward::{prepare, send, strip_hop_by_hop, to_request, UpstreamClient};
use crate::idempotency::Store;
use crate::outcome::Outcome;
use crate::response::{
    delivered_response, filtered_response, json_response, Body, BoxError, Record, Rejection,
};
use crate::routing::RouteEntry;
use crate::telemetry::{ChildSpan, Trace};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use opentelemetry::trace::SpanKind;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::Service;

/// What every delivery of a connection worker shares beyond its HTTP client: one reference
/// count per request for all of it.
pub struct Outlets {
    /// Where routes with `delivery: queued` put their deliveries.
    pub queue: Option<Arc<crate::queue::Queue>>,
    /// Where a fan-out remembers which destinations accepted (the worker's store).
    pub store: Arc<dyn Store>,
    pub store_timeout: Duration,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The broker connections (the gateway's, kept across reloads).
    pub brokers: Arc<Brokers>,
    /// The options of `upstream_tls:` clients.
    pub options: crate::upstream_tls::ClientOptions,
    /// Whether a fan-out claims each destination's sub-key (skipping those that accepted
    /// before). False only for a forced replay, which sends to every destination again.
    pub remember: bool,
}

#[derive(Clone)]
pub struct Forward {
    /// Shared, so that handing a delivery its client is one reference count.
    client: Arc<UpstreamClient>,
    outlets: Arc<Outlets>,
}

impl Forward {
    pub fn new(client: Arc<UpstreamClient>, outlets: Arc<Outlets>) -> Self {
        Forward { client, outlets }
    }
}

impl Service<Verified> for Forward {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, v: Verified) -> Self::Future {
        let client = self.client.clone();
        let outlets = self.outlets.clone();
        if v.request.route.queue.is_none() && v.request.route.direct().is_some() {
            return Box::pin(forward_direct(client, outlets, v));
        }
        Box::pin(async move {
            let route = v.request.route.clone();
            let key = v.event.store_key().clone();
            // The outcome is set once the answer is known.
            let record = Record::verified(Outcome::Forwarded, &v);
            let event = v.event.clone();
            let outgoing = prepare(v);
            if let Some(q) = &route.queue {
                if !route.destinations.iter().any(|d| d.wants(&outgoing.body)) {
                    return Ok(Record { outcome: Outcome::Filtered, ..record }.on(filtered_response()));
                }
                let Some(queue) = &outlets.queue else {
                    let e = crate::idempotency::StoreError::Backend("no delivery queue".into());
                    return Ok(Rejection::Queue(e).into_response(Some(route), Some(key)));
                };
                // Accept-then-deliver: answered once the queue holds the delivery.
                // Once per event (a repeated push appends nothing), unless a forced replay.
                return Ok(match queue.push(&route, &outgoing, !outlets.remember).await {
                    Ok(()) => Record { outcome: Outcome::Queued, ..record }.on(json_response(
                        StatusCode::from_u16(q.accept_status).unwrap_or(StatusCode::ACCEPTED),
                        r#"{"status":"queued"}"#,
                    )),
                    Err(e) => Rejection::Queue(e).into_response(Some(route), Some(key)),
                });
            }
            let senders = Senders { client: &client, brokers: &outlets.brokers, options: &outlets.options };
            // A single destination needs no memory of its own: the route's key is its memory.
            let memory = (outlets.remember && route.destinations.len() > 1).then(|| Memory {
                store: &*outlets.store,
                timeout: outlets.store_timeout,
                metrics: &outlets.metrics,
                event: &event,
            });
            let started = std::time::Instant::now();
            let report = deliver(senders, &route, &outgoing, &[], memory.as_ref()).await;
            let record = Record { upstream_latency: Some(started.elapsed()), ..record };
            Ok(answer(report, &route, record))
        })
    }
}

/// The answer to a delivery sent to its destinations: 200 `filtered` when none wanted it,
/// 200 `delivered` with their names when all that wanted it accepted it, else the first
/// failure's answer (502 / 504 for an upstream, 503 + Retry-After for a broker). The record's
/// detail names each destination's result.
pub fn answer(report: Report<'_>, route: &Arc<RouteEntry>, record: Record) -> Response<Body> {
    let detail = Some(report.detail());
    if report.none_wanted() {
        return Record { outcome: Outcome::Filtered, detail, ..record }.on(filtered_response());
    }
    if report.all_accepted() {
        return Record { outcome: Outcome::Forwarded, detail, ..record }
            .on(delivered_response(report.accepted()));
    }
    let failure = report.into_first_failure().unwrap_or(Rejection::Panic);
    let mut res = failure.into_response(Some(route.clone()), record.key.clone());
    if let Some(r) = res.extensions_mut().get_mut::<Record>() {
        r.detail = detail;
        r.secret_index = record.secret_index;
        r.upstream_latency = record.upstream_latency;
    }
    res
}

/// A route whose only destination is one HTTP(S) upstream without a filter: forwarded, and
/// the upstream's answer relayed. The request is prepared before the future is made: the
/// future holds only what outlives the wait (a future is moved whole, every byte of it, and
/// the delivery it was prepared from would stay in it to the end).
fn forward_direct(
    client: Arc<UpstreamClient>,
    outlets: Arc<Outlets>,
    v: Verified,
) -> impl std::future::Future<Output = Result<Response<Body>, Infallible>> + Send {
    let route = v.request.route.clone();
    let key = v.event.store_key().clone();
    // The outcome is set once the answer is known.
    let record = Record::verified(Outcome::Forwarded, &v);
    let trace = v.request.parts.extensions.get::<Trace>().cloned();
    let req = {
        let http = route.direct().expect("checked by the caller");
        to_request(&route, &http.upstream, prepare(v))
    };
    async move {
        let http = route.direct().expect("checked by the caller");
        let mut req = match req {
            Ok(r) => r,
            Err(e) => {
                return Ok(Rejection::UpstreamUnavailable(e.to_string()).into_response(Some(route), Some(key)))
            }
        };
        // The upstream call is a child span, and the upstream's parent in `traceparent`.
        let mut span = ChildSpan::start(trace.as_ref(), "upstream", SpanKind::Client);
        if let (Some(t), Some(s)) = (&trace, &span) {
            t.set(req.headers_mut(), Some(s));
        }
        let tls = http.tls.as_ref().map(|tls| tls.client(&outlets.options));
        let started = std::time::Instant::now();
        let res = match send(&client, tls, &route, req).await {
            Ok(res) => res,
            Err(e) => {
                if let Some(s) = &mut span {
                    s.fail(&e);
                }
                return Ok(e.into_response(Some(route), Some(key)));
            }
        };
        if let Some(s) = &mut span {
            let status = i64::from(res.status().as_u16());
            s.set(|| opentelemetry::KeyValue::new("http.response.status_code", status));
            s.set(|| opentelemetry::KeyValue::new("server.address", http.upstream.authority.to_string()));
        }
        drop(span);
        let (mut parts, body) = res.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        // The answer to the provider is the gateway's own HTTP/1.1 response, whatever HTTP
        // version the upstream spoke (hyper still answers an HTTP/1.0 sender in HTTP/1.0).
        parts.version = http::Version::HTTP_11;
        let outcome = if parts.status.is_success() { Outcome::Forwarded } else { Outcome::UpstreamError };
        parts.extensions.insert(Record {
            outcome,
            upstream_latency: Some(started.elapsed()),
            upstream_status: Some(parts.status.as_u16()),
            ..record
        });
        let body = body.map_err(|e| Box::new(e) as BoxError).boxed_unsync();
        Ok(Response::from_parts(parts, body))
    }
}
