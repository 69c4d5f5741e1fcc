//! The innermost service: forwards a verified delivery to the route's upstream over a pooled
//! keep-alive client, body byte-identical, hop-by-hop headers removed; or, for a route with
//! `delivery: queued`, appends it to the delivery queue and answers once it is held.

use super::BoxFuture;
use crate::delivery::Verified;
use crate::forward::{prepare, send, strip_hop_by_hop, to_request, UpstreamClient};
use crate::outcome::Outcome;
use crate::response::{json_response, Body, BoxError, Record, Rejection};
use crate::telemetry::{ChildSpan, Trace};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use opentelemetry::trace::SpanKind;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::Service;

#[derive(Clone)]
pub struct Forward {
    /// Shared, so that handing a delivery its client is one reference count.
    client: Arc<UpstreamClient>,
    /// Where routes with `delivery: queued` put their deliveries.
    queue: Option<Arc<crate::queue::Queue>>,
}

impl Forward {
    pub fn new(client: Arc<UpstreamClient>, queue: Option<Arc<crate::queue::Queue>>) -> Self {
        Forward { client, queue }
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
        let queue = self.queue.clone();
        Box::pin(async move {
            let route = v.request.route.clone();
            let key = v.event.store_key().clone();
            // The outcome is set once the answer is known.
            let record = Record::verified(Outcome::Forwarded, &v);
            let trace = v.request.parts.extensions.get::<Trace>().cloned();
            let outgoing = prepare(v);
            if let (Some(q), Some(queue)) = (&route.queue, &queue) {
                // Accept-then-deliver: answered once the queue holds the delivery.
                return Ok(match queue.push(&route, &outgoing).await {
                    Ok(()) => Record { outcome: Outcome::Queued, ..record }.on(json_response(
                        StatusCode::from_u16(q.accept_status).unwrap_or(StatusCode::ACCEPTED),
                        r#"{"status":"queued"}"#,
                    )),
                    Err(e) => Rejection::Queue(e).into_response(Some(route), Some(key)),
                });
            }
            let mut req = match to_request(&route, outgoing) {
                Ok(r) => r,
                Err(e) => {
                    return Ok(
                        Rejection::UpstreamUnavailable(e.to_string()).into_response(Some(route), Some(key))
                    )
                }
            };
            // The upstream call is a child span, and the upstream's parent in `traceparent`.
            let mut span = ChildSpan::start(trace.as_ref(), "upstream", SpanKind::Client);
            if let (Some(t), Some(s)) = (&trace, &span) {
                t.set(req.headers_mut(), Some(s));
            }
            let started = std::time::Instant::now();
            let res = match send(&client, &route, req).await {
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
                s.set(|| {
                    opentelemetry::KeyValue::new("server.address", route.upstream.authority.to_string())
                });
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
        })
    }
}
