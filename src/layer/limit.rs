//! Bounds the requests handled at once; past the bound a request is answered 503 with
//! `Retry-After` at once, rather than queued without end.

use super::{answer, EitherFuture};
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
    type Future = EitherFuture<Permitted<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                futures_util::future::Either::Right(Permitted { fut: self.inner.call(req), _permit: permit })
            }
            Err(_) => answer(GatewayError::Overloaded.into_response(None, None)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner future, holding its permit until it completes.
    pub struct Permitted<F> {
        #[pin]
        fut: F,
        _permit: tokio::sync::OwnedSemaphorePermit,
    }
}

impl<F: std::future::Future> std::future::Future for Permitted<F> {
    type Output = F::Output;
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().fut.poll(cx)
    }
}
