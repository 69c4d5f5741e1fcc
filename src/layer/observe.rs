//! Records one structured log line per request: route, provider, outcome, event key, the
//! client (after `trusted_proxies`), method, path, user agent, request id, trace id, status
//! and latency, each absent from the line when unknown; and, for a request that reached a
//! route, an [`Event`] for the event log (handed over without waiting), with the request
//! itself when the route's `capture:` wants this outcome. Decides the request id (see
//! [`RequestId`]) and opens the gateway's span of the request's trace ([`RequestSpan`]).
//! Never a secret in the log line or the event; a capture keeps the request's own headers,
//! signature values included.

use crate::delivery::RequestId;
use crate::event_log::{now_ms, Entry, Event, Recorder};
use crate::metrics::Metrics;
use crate::outcome::Outcome;
use crate::response::{Body, Captured, Record};
use crate::routing::SharedRouting;
use crate::telemetry::RequestSpan;
use http::header::{HeaderValue, USER_AGENT};
use http::{Request, Response};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tower::{Layer, Service};

#[derive(Clone, Default)]
pub struct ObserveLayer {
    metrics: Arc<Metrics>,
    /// The connection worker serving the requests: it writes its own metric shard.
    worker: Option<usize>,
    /// The routing (for the client address behind trusted proxies) and the connection's peer.
    peer: Option<(Arc<SharedRouting>, IpAddr)>,
    /// Where events go; none: `event_log: {enabled: false}`.
    events: Option<Arc<Recorder>>,
}

impl ObserveLayer {
    /// Counting into `metrics`, as connection worker `worker` (`None`: no worker).
    pub fn new(metrics: Arc<Metrics>, worker: Option<usize>) -> Self {
        ObserveLayer { metrics, worker, peer: None, events: None }
    }

    /// Requests come from `peer` (or, where `routing`'s trusted proxies say so, from the
    /// client they forwarded for): the log line and the event name that client.
    pub fn from_peer(mut self, routing: Arc<SharedRouting>, peer: SocketAddr) -> Self {
        self.peer = Some((routing, peer.ip().to_canonical()));
        self
    }

    /// Also recording each routed request into `events`.
    pub fn recording(mut self, events: Arc<Recorder>) -> Self {
        self.events = Some(events);
        self
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            metrics: self.metrics.clone(),
            shard: Metrics::shard(self.worker),
            peer: self.peer.clone(),
            events: self.events.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
    shard: usize,
    peer: Option<(Arc<SharedRouting>, IpAddr)>,
    events: Option<Arc<Recorder>>,
}

impl<S, B> Service<Request<B>> for Observe<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let start = Instant::now();
        self.metrics.add_in_flight(self.shard, 1);
        let mut from_trusted_proxy = false;
        let client = self.peer.as_ref().map(|(routing, peer)| {
            let routing = routing.load();
            from_trusted_proxy = routing.config.trusted_proxies.iter().any(|n| n.contains(peer));
            routing.client_ip(*peer, req.headers())
        });
        // The request id is decided here, outermost, so that every answer's log line has it;
        // it goes down in the request's own `X-Request-Id` (a sender's replaced), which the
        // forwarder passes on and a capture keeps.
        let request_id = RequestId::of(req.headers(), from_trusted_proxy);
        request_id.set(req.headers_mut());
        // The trace goes down in the extensions: the store and upstream calls are its child
        // spans, and the forwarder passes it to the upstream.
        let span = RequestSpan::start(req.headers());
        if let Some(s) = &span {
            req.extensions_mut().insert(s.trace.clone());
        }
        // What the log line needs from the request, by reference count: the URI and the
        // header value share the bytes hyper read (no copy of the path or the user agent).
        let uri = req.uri().clone();
        let user_agent = req.headers().get(USER_AGENT).cloned();
        ResponseFuture {
            request_id,
            method: req.method().clone(),
            fut: self.inner.call(req),
            start,
            uri,
            user_agent,
            client,
            span,
            metrics: self.metrics.clone(),
            shard: self.shard,
            done: false,
            events: self.events.as_ref().map(|r| (r.clone(), now_ms())),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner future; once it answers, the request is counted and logged.
    pub struct ResponseFuture<F> {
        #[pin]
        fut: F,
        start: Instant,
        method: http::Method,
        uri: http::Uri,
        user_agent: Option<HeaderValue>,
        client: Option<IpAddr>,
        span: Option<RequestSpan>,
        metrics: Arc<Metrics>,
        shard: usize,
        done: bool,
        request_id: RequestId,
        // The recorder and the arrival time (unix ms).
        events: Option<(Arc<Recorder>, u64)>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // A request dropped before it answered (the sender hung up) is no longer in flight.
            let this = this.project();
            if !*this.done {
                this.metrics.add_in_flight(*this.shard, -1);
            }
        }
    }
}

/// A duration in milliseconds to the microsecond (`1.234`), as the log line and the event
/// show it.
fn millis(d: std::time::Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut res) = std::task::ready!(this.fut.poll(cx));
        let metrics = &**this.metrics;
        metrics.add_in_flight(*this.shard, -1);
        *this.done = true;
        let record = res.extensions_mut().remove::<Record>().unwrap_or_else(|| Record::new(Outcome::Panic));
        let captured = res.extensions_mut().remove::<Captured>();
        let elapsed = this.start.elapsed();
        let latency_ms = millis(elapsed);
        let route = record.route.as_deref();
        let rm = route.map_or(metrics.unmatched(), |r| &r.metrics);
        let status = res.status().as_u16();
        rm.record(*this.shard, record.outcome, status, elapsed, record.secret_index);
        if let Some(up) = record.upstream_latency {
            rm.observe_upstream(*this.shard, up);
        }
        let method = &*this.method;
        let trace = this.span.as_ref().map(|s| &s.trace);
        // Fields that are unknown (no route matched, no key derived…) are left out of the
        // line rather than written as a placeholder.
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    route = route.map(|r| r.name.as_str()),
                    provider = route.map(|r| r.provider()),
                    outcome = record.outcome.as_str(),
                    key = record.key.as_deref(),
                    secret_index = record.secret_index,
                    client = this.client.map(tracing::field::display),
                    method = method.as_str(),
                    path = this.uri.path(),
                    user_agent = this.user_agent.as_ref().and_then(|v| v.to_str().ok()),
                    request_id = this.request_id.as_str(),
                    trace_id = trace.map(|t| tracing::field::display(t.trace_id())),
                    status,
                    latency_ms,
                    upstream_status = record.upstream_status,
                    upstream_latency_ms = record.upstream_latency.map(millis),
                    detail = record.detail.as_deref(),
                    "delivery"
                )
            };
        }
        if status >= 500 {
            line!(warn);
        } else {
            line!(info);
        }
        if let Some(span) = this.span.take() {
            let request_id = this.request_id.as_str();
            span.end(
                || {
                    use opentelemetry::KeyValue;
                    let mut kv = Vec::with_capacity(8);
                    if let Some(r) = route {
                        kv.push(KeyValue::new("portcullis.route", r.name.clone()));
                        kv.push(KeyValue::new("portcullis.provider", r.provider().to_owned()));
                    }
                    kv.push(KeyValue::new("portcullis.outcome", record.outcome.as_str()));
                    if let Some(k) = &record.key {
                        kv.push(KeyValue::new("portcullis.event_key", k.to_string()));
                    }
                    kv.push(KeyValue::new("http.request.method", method.as_str().to_owned()));
                    kv.push(KeyValue::new("url.path", this.uri.path().to_owned()));
                    kv.push(KeyValue::new("http.response.status_code", i64::from(status)));
                    kv.push(KeyValue::new("portcullis.request_id", request_id.to_owned()));
                    kv
                },
                status,
            );
        }
        if let (Some(r), Some((recorder, time_ms))) = (route, this.events.take()) {
            // Kept when the route captures this outcome. The signature verified when the
            // request got its key or matched a secret (both come only after verification).
            let capture = match (&r.capture, captured) {
                (Some(settings), Some(c)) if settings.wants(status, record.outcome) => {
                    let verified = record.secret_index.is_some() || record.key.is_some();
                    // Shared-value schemes send the secret itself as the "signature".
                    let profile = r.verifier.profile();
                    let redact =
                        if profile.algorithm.is_shared_secret() { &profile.headers[..] } else { &[] };
                    Some((c.to_capture(settings.max_bytes, verified, redact), settings.ttl))
                }
                _ => None,
            };
            let event = Event {
                id: String::new(),
                time_ms,
                route: r.name.clone(),
                provider: r.provider().to_owned(),
                method: method.to_string(),
                path: this.uri.path().to_owned(),
                client: *this.client,
                request_id: Some(this.request_id.as_str().to_owned()),
                outcome: record.outcome.as_str().into(),
                status,
                event_key: record.key.as_deref().map(str::to_owned),
                secret_index: record.secret_index,
                latency_ms,
                upstream_status: record.upstream_status,
                upstream_latency_ms: record.upstream_latency.map(millis),
                detail: record.detail.clone(),
                attempts: None,
                captured: capture.is_some(),
                replay_of: None,
            };
            if !recorder.record(Entry { event, capture }) {
                metrics.event_log_dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Poll::Ready(Ok(res))
    }
}
