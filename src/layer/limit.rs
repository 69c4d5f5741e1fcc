//! Bounds the requests handled at once; past the bound a request is answered 503 with
//! `Retry-After` at once, rather than queued without end.

use super::BoxFuture;
use crate::error::{Body, GatewayError};
use http::Response;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::Semaphore;
use tower::{Layer, Service};

#[derive(Clone)]
pub struct InFlightLimitLayer {
    permits: Arc<Semaphore>,
}

impl InFlightLimitLayer {
    /// One semaphore shared by every connection of the listener.
    pub fn new(permits: Arc<Semaphore>) -> Self {
        InFlightLimitLayer { permits }
    }
}

impl<S> Layer<S> for InFlightLimitLayer {
    type Service = InFlightLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        InFlightLimit { inner, permits: self.permits.clone() }
    }
}

#[derive(Clone)]
pub struct InFlightLimit<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S, R> Service<R> for InFlightLimit<S>
where
    S: Service<R, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let fut = self.inner.call(req);
                Box::pin(async move {
                    let res = fut.await;
                    drop(permit);
                    res
                })
            }
            Err(_) => Box::pin(std::future::ready(Ok(GatewayError::Overloaded.into_response(None, None)))),
        }
    }
}
