//! The one place the request path is assembled, outermost layer first.

use crate::gateway::Gateway;
use crate::layer::authenticate::AuthenticateLayer;
use crate::layer::catch_panic::CatchPanicLayer;
use crate::layer::dedupe::DedupeLayer;
use crate::layer::forward::Forward;
use crate::layer::handshake::HandshakeLayer;
use crate::layer::limit::InFlightLimitLayer;
use crate::layer::observe::ObserveLayer;
use crate::layer::read_body::ReadBodyLayer;
use crate::layer::route::RouteLayer;
use crate::response::{Body, BoxError};
use bytes::Bytes;
use http::{Request, Response};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tower::{Service, ServiceBuilder};

/// The webhook service for one connection from `peer` (over TLS or not), served by
/// connection worker `worker`. Generic over the request body: the server gives it hyper's,
/// a test any body (`Full<Bytes>`, `String`) through `tower::ServiceExt::oneshot`.
pub fn webhook_service<B>(
    gateway: &Arc<Gateway>,
    peer: SocketAddr,
    tls: bool,
    worker: usize,
) -> impl Service<Request<B>, Response = Response<Body>, Error = Infallible, Future: Send + 'static>
       + Clone
       + Send
       + 'static
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    ServiceBuilder::new()
        // Outermost, so that even a panic below gets its log line with the outcome; counted
        // in the connection worker's own metric shard, and recorded in the event log (a
        // bounded channel's try_send: the request never waits for the log).
        .layer({
            let observe = ObserveLayer::new(gateway.metrics.clone(), Some(worker))
                .from_peer(gateway.routing_handle(), peer);
            // `event_log: {enabled: false}`: no recorder at all (the log's cost measured).
            match gateway.recording {
                true => observe.recording(gateway.events.clone()),
                false => observe,
            }
        })
        // A panic while handling one request answers 500 for that request only; the
        // connection and the process go on.
        .layer(CatchPanicLayer)
        // Route by path and check the sender's address and the method before reading a byte
        // of the body: unknown paths and unlisted senders cost nothing.
        .layer(RouteLayer::new(gateway.routing_handle(), peer, tls))
        // Read the whole body under the route's limit; the signature covers raw bytes, so
        // verification needs all of them. Bounded per client address, so one sender's slow
        // bodies cannot hold the reads everyone needs, and at a minimum rate, so a trickling
        // body gives its connection back within about a second.
        .layer(ReadBodyLayer::new(
            gateway.limits.body_read_timeout,
            gateway.limits.min_body_rate,
            gateway.body_reads.clone(),
        ))
        // Bound the requests handled at once: past it, 503 at once instead of a queue. Only
        // once the body is in: a body still trickling in holds no slot, so slow unsigned
        // senders cannot lock genuine deliveries out.
        .layer(InFlightLimitLayer::new(gateway.in_flight.clone()))
        // Verify the signature and derive the idempotency key; forged requests stop here,
        // before they could claim (and so poison) a genuine event's key.
        .layer(AuthenticateLayer::new(gateway.clock.clone()))
        // Answer verified endpoint checks (Slack, Zoom) here; they are not events.
        .layer(HandshakeLayer)
        // Claim the key: duplicates and concurrent copies stop here; the claim is completed
        // or released from the upstream's answer.
        .layer(DedupeLayer::new(
            crate::idempotency::for_worker(&gateway.store, worker),
            gateway.store_timeout,
            gateway.abort[worker % gateway.abort.len()].subscribe(),
            gateway.metrics.clone(),
        ))
        // Forward over the pooled upstream client, or queue for delivery (`delivery: queued`).
        .service(Forward::new(
            gateway.worker_clients[worker % gateway.worker_clients.len()].clone(),
            gateway.outlets(crate::idempotency::for_worker(&gateway.store, worker)),
        ))
}
