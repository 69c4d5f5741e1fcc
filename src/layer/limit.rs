//! Bounds the requests handled at once; past the bound a request is answered 503 with
//! `Retry-After` at once, rather than queued without end.

use super::{answer, EitherFuture};
use crate::response::{Body, Rejection};
use http::Response;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// The requests in flight across every connection, and the most allowed. A counter rather
/// than a semaphore: nothing ever waits for a slot, and releasing one takes no lock.
pub struct InFlight {
    count: AtomicUsize,
    max: usize,
}

impl InFlight {
    pub fn new(max: usize) -> Self {
        InFlight { count: AtomicUsize::new(0), max }
    }

    /// Takes a slot, or `None` when all `max` are taken.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        if self.count.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(self.clone()))
    }
}

/// A taken slot, given back when dropped.
pub struct Slot(Arc<InFlight>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Clone)]
pub struct InFlightLimitLayer {
    slots: Arc<InFlight>,
}

impl InFlightLimitLayer {
    /// One bound shared by every connection of the listener.
    pub fn new(slots: Arc<InFlight>) -> Self {
        InFlightLimitLayer { slots }
    }
}

impl<S> Layer<S> for InFlightLimitLayer {
    type Service = InFlightLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        InFlightLimit { inner, slots: self.slots.clone() }
    }
}

#[derive(Clone)]
pub struct InFlightLimit<S> {
    inner: S,
    slots: Arc<InFlight>,
}

impl<S, R> Service<R> for InFlightLimit<S>
where
    S: Service<R, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = EitherFuture<ResponseFuture<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        match self.slots.try_acquire() {
            Some(slot) => {
                futures_util::future::Either::Right(ResponseFuture { fut: self.inner.call(req), _slot: slot })
            }
            None => answer(Rejection::Overloaded.into_response(None, None)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner future, holding its slot until it completes.
    pub struct ResponseFuture<F> {
        #[pin]
        fut: F,
        _slot: Slot,
    }
}

impl<F: std::future::Future> std::future::Future for ResponseFuture<F> {
    type Output = F::Output;
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().fut.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_given_back() {
        let slots = Arc::new(InFlight::new(2));
        let a = slots.try_acquire().unwrap();
        let _b = slots.try_acquire().unwrap();
        assert!(slots.try_acquire().is_none());
        drop(a);
        assert!(slots.try_acquire().is_some());
    }
}
