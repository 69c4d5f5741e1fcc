//! Verifies the signature over the raw body with the route's secrets, then derives the
//! event's idempotency key. Nothing is claimed or forwarded for a request that fails here.

use super::{answer, EitherFuture};
use crate::delivery::Delivery;
use crate::error::{Body, GatewayError};
use crate::gateway::Clock;
use crate::verify::{body_sha256, Input};
use http::Response;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Ids longer than this are stored as their SHA-256, which bounds the store's key size.
const MAX_ID_LEN: usize = 128;

#[derive(Clone)]
pub struct AuthenticateLayer {
    clock: Clock,
}

impl AuthenticateLayer {
    pub fn new(clock: Clock) -> Self {
        AuthenticateLayer { clock }
    }
}

impl<S> Layer<S> for AuthenticateLayer {
    type Service = Authenticate<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            clock: self.clock.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authenticate<S> {
    inner: S,
    clock: Clock,
}

impl<S> Service<Delivery> for Authenticate<S>
where
    S: Service<Delivery, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = EitherFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut d: Delivery) -> Self::Future {
        let route = &d.route;
        let verifier = &route.verifier;
        let input = Input {
            method: &d.parts.method,
            url: route.public_url.as_deref().unwrap_or(""),
            headers: &d.parts.headers,
            body: &d.body,
            now: self.clock.now(),
        };
        let verified = match verifier.verify(&input) {
            Ok(v) => v,
            Err(e) => return answer(GatewayError::from(e).into_response(Some(d.route), None)),
        };
        let key = match verifier.event_id(&d.parts.headers, &d.body) {
            Ok(id) if id.len() <= MAX_ID_LEN => format!("{}:{id}", route.name),
            Ok(id) => format!("{}:sha256:{}", route.name, body_sha256(id.as_bytes())),
            Err(e) => return answer(GatewayError::from(e).into_response(Some(d.route), None)),
        };
        d.key = Arc::from(key);
        d.secret_index = verified.secret_index;
        futures_util::future::Either::Right(self.inner.call(d))
    }
}
