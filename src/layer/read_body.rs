//! Reads the body under the route's size limit and the body read timeout, into one buffer.
//! An over-long `Content-Length` is refused before a byte is read.

use super::BoxFuture;
use crate::delivery::{Delivery, Routed};
use crate::error::{Body, GatewayError};
use http::header::CONTENT_LENGTH;
use http::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service};

#[derive(Clone)]
pub struct ReadBodyLayer {
    timeout: Duration,
}

impl ReadBodyLayer {
    pub fn new(timeout: Duration) -> Self {
        ReadBodyLayer { timeout }
    }
}

impl<S> Layer<S> for ReadBodyLayer {
    type Service = ReadBody<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ReadBody { inner, timeout: self.timeout }
    }
}

#[derive(Clone)]
pub struct ReadBody<S> {
    inner: S,
    timeout: Duration,
}

/// How much of a refused body is read and dropped, at most, and for how long.
const LINGER_BYTES: usize = 8 << 20;
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Reads and drops a refused body, up to `LINGER_BYTES` and `LINGER_TIME`.
async fn linger(body: hyper::body::Incoming) {
    let _ = tokio::time::timeout(LINGER_TIME, async {
        let mut body = Limited::new(body, LINGER_BYTES);
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
}

impl<S> Service<Routed> for ReadBody<S>
where
    S: Service<Delivery, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, r: Routed) -> Self::Future {
        let mut inner = self.inner.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let limit = r.route.max_body;
            let declared = r
                .req
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit) {
                // Answered before the body is read; what the sender is still writing is read
                // and dropped for a while, so that closing on unread bytes does not reset the
                // connection before the sender has read the 413.
                tokio::spawn(linger(r.req.into_body()));
                return Ok(GatewayError::TooLarge(limit).into_response(Some(r.route), None));
            }
            let (parts, body) = r.req.into_parts();
            let read = Limited::new(body, limit as usize).collect();
            let body = match tokio::time::timeout(timeout, read).await {
                Err(_) => return Ok(GatewayError::BodyTimeout(timeout).into_response(Some(r.route), None)),
                Ok(Err(e)) if e.is::<LengthLimitError>() => {
                    return Ok(GatewayError::TooLarge(limit).into_response(Some(r.route), None))
                }
                Ok(Err(e)) => {
                    return Ok(GatewayError::BodyRead(e.to_string()).into_response(Some(r.route), None))
                }
                Ok(Ok(collected)) => collected.to_bytes(),
            };
            inner
                .call(Delivery {
                    route: r.route,
                    parts,
                    body,
                    peer: r.peer,
                    tls: r.tls,
                    key: Arc::from(""),
                    secret_index: 0,
                    nonce: None,
                    batch: Vec::new(),
                })
                .await
        })
    }
}
