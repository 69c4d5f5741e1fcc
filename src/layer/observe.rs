//! Records one structured log line per request: route, provider, outcome, event key, status
//! and latency. Never a secret or a signature value.

use super::BoxFuture;
use crate::error::{Body, Outcome, Record};
use http::{Request, Response};
use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Instant;
use tower::{Layer, Service};

#[derive(Clone, Default)]
pub struct ObserveLayer;

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Observe { inner }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Observe<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let start = Instant::now();
        let method = req.method().clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let Ok(mut res) = fut.await;
            let record =
                res.extensions_mut().remove::<Record>().unwrap_or_else(|| Record::new(Outcome::Panic));
            let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
            let route = record.route.as_deref();
            let status = res.status().as_u16();
            macro_rules! line {
                ($level:ident) => {
                    tracing::$level!(
                        route = route.map(|r| r.name.as_str()).unwrap_or("-"),
                        provider = route.map(|r| r.provider()).unwrap_or("-"),
                        outcome = record.outcome.as_str(),
                        key = record.key.as_deref().unwrap_or("-"),
                        secret_index = record.secret_index,
                        method = %method,
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
            Ok(res)
        })
    }
}
