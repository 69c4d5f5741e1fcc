//! Picks the route by exact path and checks the sender's address and the method, before any
//! body byte is read.

use super::{answer, EitherFuture};
use crate::delivery::Routed;
use crate::response::{Body, Rejection};
use crate::routing::{Routing, SharedRouting};
use http::{Request, Response};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

#[derive(Clone)]
pub struct RouteLayer {
    /// The routing in force (a reload swaps it).
    routing: Arc<SharedRouting>,
    /// The peer's address in canonical form: an IPv4 sender on a dual-stack listener is
    /// `a.b.c.d`, not `::ffff:a.b.c.d`, for the allowlist and for `X-Forwarded-For`.
    peer: IpAddr,
    /// The peer's address as a header value, made once per connection.
    peer_value: http::HeaderValue,
    tls: bool,
}

impl RouteLayer {
    /// For one connection from `peer`, over TLS or not, routed by the routing in force.
    pub fn new(routing: Arc<SharedRouting>, peer: SocketAddr, tls: bool) -> Self {
        let peer = peer.ip().to_canonical();
        let peer_value = http::HeaderValue::from_str(&peer.to_string()).expect("an IP is a header value");
        RouteLayer { routing, peer, peer_value, tls }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = Route<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Route {
            inner,
            routing: self.routing.clone(),
            peer: self.peer,
            peer_value: self.peer_value.clone(),
            tls: self.tls,
        }
    }
}

#[derive(Clone)]
pub struct Route<S> {
    inner: S,
    routing: Arc<SharedRouting>,
    peer: IpAddr,
    peer_value: http::HeaderValue,
    tls: bool,
}

impl<S, B> Service<Request<B>> for Route<S>
where
    S: Service<Routed<B>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = EitherFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let routing = self.routing.load();
        let variants = match routing.variants(req.uri().path()) {
            Ok(v) => v,
            Err(e) => return answer(Rejection::from(e).into_response(None, None)),
        };
        let client = routing.client_ip(self.peer, req.headers());
        // Defence in depth before any verification work: only the provider's networks. Checked
        // before a variant is chosen (the variants of a path share the allowlist), so that a
        // sender outside it learns nothing of the variants.
        if let Some(allowed) = &variants[0].allow_ips {
            if !allowed.iter().any(|n| n.contains(&client)) {
                let route = (variants.len() == 1).then(|| variants[0].clone());
                return answer(Rejection::Forbidden(client).into_response(route, None));
            }
        }
        let route = match Routing::select(variants, req.headers()) {
            Ok(r) => r,
            Err(e) => return answer(Rejection::from(e).into_response(None, None)),
        };
        drop(routing);
        // A GET handshake (Meta, Dropbox, Twitter, Okta) carries no signature: answered here
        // only when it has exactly the handshake's shape; any other GET is refused below.
        if let Some(res) = super::handshake::answer_get(&route, &req) {
            return answer(res);
        }
        if !route.methods.contains(req.method()) {
            return answer(Rejection::MethodNotAllowed.into_response(Some(route), None));
        }
        // A webhook is one request and one answer; a switch to another protocol would let
        // bytes past verification.
        if req.headers().contains_key(http::header::UPGRADE) {
            return answer(Rejection::Upgrade.into_response(Some(route), None));
        }
        futures_util::future::Either::Right(self.inner.call(Routed {
            route,
            req,
            peer: self.peer_value.clone(),
            tls: self.tls,
            client,
        }))
    }
}
