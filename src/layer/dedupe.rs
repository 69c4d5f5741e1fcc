//! Claims the event's idempotency key before forwarding; completes it when the upstream
//! answers 2xx and releases it otherwise, so the provider's retry goes through.

use super::BoxFuture;
use crate::config::OnStoreError;
use crate::delivery::Delivery;
use crate::error::{duplicate_response, Body, GatewayError, Outcome, Record};
use crate::idempotency::{bounded, Claim, Store, Token};
use http::Response;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::watch;
use tower::{Layer, Service};

#[derive(Clone)]
pub struct DedupeLayer {
    store: Arc<dyn Store>,
    timeout: Duration,
    abort: watch::Receiver<bool>,
}

impl DedupeLayer {
    /// `abort` turns true when draining has run out of time: deliveries still waiting for
    /// their upstream then release their keys and answer 503.
    pub fn new(store: Arc<dyn Store>, timeout: Duration, abort: watch::Receiver<bool>) -> Self {
        DedupeLayer { store, timeout, abort }
    }
}

impl<S> Layer<S> for DedupeLayer {
    type Service = Dedupe<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Dedupe { inner, store: self.store.clone(), timeout: self.timeout, abort: self.abort.clone() }
    }
}

#[derive(Clone)]
pub struct Dedupe<S> {
    inner: S,
    store: Arc<dyn Store>,
    timeout: Duration,
    abort: watch::Receiver<bool>,
}

impl<S> Service<Delivery> for Dedupe<S>
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

    fn call(&mut self, d: Delivery) -> Self::Future {
        let mut inner = self.inner.clone();
        let store = self.store.clone();
        let timeout = self.timeout;
        let mut abort = self.abort.clone();
        Box::pin(async move {
            let route = d.route.clone();
            let key = d.key.clone();
            // A signed one-time value (Mailgun's token) is claimed first: seen before is a
            // replay. It is consumed with the delivery, and released when the delivery fails.
            let nonce = match d.nonce.clone() {
                None => None,
                Some(n) => match bounded(timeout, store.claim(&n, route.lease)).await {
                    Ok(Claim::Acquired(t)) => Some((n, t)),
                    Ok(Claim::Delivered) => {
                        return Ok(GatewayError::Replay.into_response(Some(route), Some(key)))
                    }
                    Ok(Claim::InFlight { retry_after }) => {
                        return Ok(GatewayError::InFlight(retry_after).into_response(Some(route), Some(key)))
                    }
                    Err(e) => return Ok(GatewayError::Store(e).into_response(Some(route), Some(key))),
                },
            };
            let token = match bounded(timeout, store.claim(&key, route.lease)).await {
                Ok(Claim::Acquired(token)) => token,
                Ok(Claim::Delivered) => {
                    settle(&*store, nonce, true, route.ttl, timeout).await;
                    let mut res = duplicate_response();
                    res.extensions_mut().insert(Record {
                        outcome: Outcome::Duplicate,
                        route: Some(route),
                        key: Some(key),
                        secret_index: Some(d.secret_index),
                        detail: None,
                        upstream_latency: None,
                    });
                    return Ok(res);
                }
                Ok(Claim::InFlight { retry_after }) => {
                    settle(&*store, nonce, false, route.ttl, timeout).await;
                    return Ok(GatewayError::InFlight(retry_after).into_response(Some(route), Some(key)));
                }
                Err(e) if route.on_store_error == OnStoreError::Forward => {
                    tracing::warn!(route = %route.name, key = %key, error = %e,
                        "store unavailable; forwarding without deduplication (on_store_error: forward)");
                    return inner.call(d).await;
                }
                Err(e) => {
                    settle(&*store, nonce, false, route.ttl, timeout).await;
                    return Ok(GatewayError::Store(e).into_response(Some(route), Some(key)));
                }
            };

            // The claim is ours. Forwarding and recording its outcome run in their own task,
            // so a sender that hangs up cannot leave the claim half-done.
            let task = tokio::spawn(async move {
                let (r, k) = (route.clone(), key.clone());
                let res = tokio::select! {
                    Ok(res) = inner.call(d) => res,
                    _ = abort.wait_for(|a| *a) => GatewayError::Draining.into_response(Some(r), Some(k)),
                };
                let delivered = res.status().is_success();
                finish(&*store, &key, token, delivered, route.ttl, timeout).await;
                settle(&*store, nonce, delivered, route.ttl, timeout).await;
                res
            });
            Ok(task.await.unwrap_or_else(|_| GatewayError::Panic.into_response(None, None)))
        })
    }
}

/// Consumes (`used`) or releases a claimed nonce.
async fn settle(
    store: &dyn Store,
    nonce: Option<(Arc<str>, Token)>,
    used: bool,
    ttl: Duration,
    timeout: Duration,
) {
    if let Some((n, t)) = nonce {
        finish(store, &n, t, used, ttl, timeout).await;
    }
}

/// Completes (2xx) or releases the claim, trying a few times: a completion that never lands
/// would let a retry through after the lease.
async fn finish(
    store: &dyn Store,
    key: &str,
    token: Token,
    delivered: bool,
    ttl: Duration,
    timeout: Duration,
) {
    let mut wait = Duration::from_millis(50);
    for attempt in 1..=3 {
        let r = if delivered {
            bounded(timeout, store.complete(key, token, ttl)).await
        } else {
            bounded(timeout, store.release(key, token)).await
        };
        match r {
            Ok(()) => return,
            Err(e) if attempt == 3 => {
                tracing::error!(key = %key, error = %e, delivered,
                    "could not record the delivery's outcome; the claim lapses when its lease ends");
            }
            Err(_) => {
                tokio::time::sleep(wait).await;
                wait *= 4;
            }
        }
    }
}
