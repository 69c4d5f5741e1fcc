//! Records one structured log line per request: route, provider, outcome, event key, request
//! id, status and latency; and, for a request that reached a route, an [`Event`] for the
//! event log (handed over without waiting), with the request itself when the route's
//! `capture:` wants this outcome. Decides the request id (see [`RequestId`]). Never a secret
//! in the log line or the event; a capture keeps the request's own headers, signature
//! values included.

use crate::delivery::RequestId;
use crate::event_log::{now_ms, Entry, Event, Recorder};
use crate::metrics::Metrics;
use crate::outcome::Outcome;
use crate::response::{Body, Captured, Record};
use crate::routing::SharedRouting;
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
    /// Where events go, the routing (for the client address behind trusted proxies), and
    /// the connection's peer.
    events: Option<(Arc<Recorder>, Arc<SharedRouting>, IpAddr)>,
}

impl ObserveLayer {
    /// Counting into `metrics`, as connection worker `worker` (`None`: no worker).
    pub fn new(metrics: Arc<Metrics>, worker: Option<usize>) -> Self {
        ObserveLayer { metrics, worker, events: None }
    }

    /// Also recording each routed request into `events`, as sent from `peer` (or, where
    /// `routing`'s trusted proxies say so, the client they forwarded for).
    pub fn recording(mut self, events: Arc<Recorder>, routing: Arc<SharedRouting>, peer: SocketAddr) -> Self {
        self.events = Some((events, routing, peer.ip().to_canonical()));
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
            events: self.events.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
    shard: usize,
    events: Option<(Arc<Recorder>, Arc<SharedRouting>, IpAddr)>,
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
        let method = req.method().clone();
        self.metrics.add_in_flight(self.shard, 1);
        // The path is copied only when there is a log to record it in.
        let mut from_trusted_proxy = false;
        let events = self.events.as_ref().map(|(r, routing, peer)| {
            let routing = routing.load();
            from_trusted_proxy = routing.config.trusted_proxies.iter().any(|n| n.contains(peer));
            let client = routing.client_ip(*peer, req.headers());
            (r.clone(), client, req.uri().path().to_owned(), now_ms())
        });
        // The request id is decided here, outermost, so that every answer's log line has it;
        // it goes down in the request's own `X-Request-Id` (a sender's replaced), which the
        // forwarder passes on and a capture keeps.
        let request_id = RequestId::of(req.headers(), from_trusted_proxy);
        request_id.set(req.headers_mut());
        ResponseFuture {
            request_id,
            fut: self.inner.call(req),
            start,
            method,
            metrics: self.metrics.clone(),
            shard: self.shard,
            done: false,
            events,
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
        metrics: Arc<Metrics>,
        shard: usize,
        done: bool,
        request_id: RequestId,
        // The recorder, the client address, the path and the arrival time (unix ms).
        events: Option<(Arc<Recorder>, IpAddr, String, u64)>,
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
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        let route = record.route.as_deref();
        let rm = route.map_or(metrics.unmatched(), |r| &r.metrics);
        rm.record(*this.shard, record.outcome, elapsed, record.secret_index);
        if let Some(up) = record.upstream_latency {
            rm.observe_upstream(*this.shard, up);
        }
        let status = res.status().as_u16();
        let method = &*this.method;
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    route = route.map(|r| r.name.as_str()).unwrap_or("-"),
                    provider = route.map(|r| r.provider()).unwrap_or("-"),
                    outcome = record.outcome.as_str(),
                    key = record.key.as_deref().unwrap_or("-"),
                    secret_index = record.secret_index,
                    method = %method,
                    request_id = this.request_id.as_str(),
                    status,
                    latency_ms,
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
        if let (Some(r), Some((recorder, client, path, time_ms))) = (route, this.events.take()) {
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
                path,
                client: Some(client),
                request_id: Some(this.request_id.as_str().to_owned()),
                outcome: record.outcome.as_str().into(),
                status,
                event_key: record.key.as_deref().map(str::to_owned),
                secret_index: record.secret_index,
                latency_ms,
                upstream_status: record.upstream_status,
                upstream_latency_ms: record.upstream_latency.map(|d| d.as_secs_f64() * 1000.0),
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
