//! Turns a panic while handling one request into a 500 for that request only; the connection
//! and the process go on.

use super::{answer, EitherFuture};
use crate::response::{Body, Rejection};
use futures_util::future::{CatchUnwind, Map};
use futures_util::FutureExt;
use http::Response;
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll};
use tower::{Layer, Service};

#[derive(Clone, Default)]
pub struct CatchPanicLayer;

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CatchPanic { inner }
    }
}

#[derive(Clone)]
pub struct CatchPanic<S> {
    inner: S,
}

fn panicked(what: Box<dyn std::any::Any + Send>) -> Response<Body> {
    let msg = what
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| what.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %msg, "a request handler panicked");
    Rejection::Panic.into_response(None, None)
}

impl<S, R> Service<R> for CatchPanic<S>
where
    S: Service<R, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    /// No box: the inner future, unwinding caught, or the answer to a panic in `call`.
    type Future = EitherFuture<Map<CatchUnwind<AssertUnwindSafe<S::Future>>, Recover>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(fut) => futures_util::future::Either::Right(
                AssertUnwindSafe(fut).catch_unwind().map(recover as Recover),
            ),
            Err(p) => answer(panicked(p)),
        }
    }
}

type Recover = fn(
    Result<Result<Response<Body>, Infallible>, Box<dyn std::any::Any + Send>>,
) -> Result<Response<Body>, Infallible>;

fn recover(
    r: Result<Result<Response<Body>, Infallible>, Box<dyn std::any::Any + Send>>,
) -> Result<Response<Body>, Infallible> {
    match r {
        Ok(res) => res,
        Err(p) => Ok(panicked(p)),
    }
}
