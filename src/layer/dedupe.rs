//! Claims the event's idempotency key before forwarding; completes it when the upstream
//! answers 2xx and releases it otherwise, so the provider's retry goes through.

use super::BoxFuture;
use crate::config::OnStoreError;
use crate::delivery::{EventKey, Verified};
use crate::idempotency::{guarded, Claim, Store, Token};
use crate::metrics::Metrics;
use crate::outcome::Outcome;
use crate::response::{duplicate_response, Body, Record, Rejection};
use crate::telemetry::{ChildSpan, Trace};
use http::Response;
use opentelemetry::trace::SpanKind;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::watch;
use tower::{Layer, Service};

#[derive(Clone)]
pub struct DedupeLayer {
    calls: Calls,
    abort: watch::Receiver<bool>,
}

/// How the layer reaches the store: under the store timeout, failures counted, each call a
/// child span of the request's trace when spans are exported.
#[derive(Clone)]
struct Calls {
    store: Arc<dyn Store>,
    timeout: Duration,
    metrics: Arc<Metrics>,
    /// The request's trace (set per request; none without one).
    trace: Option<Trace>,
}

impl Calls {
    async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, crate::idempotency::StoreError> {
        let mut span = ChildSpan::start(self.trace.as_ref(), "store.claim", SpanKind::Client);
        let r = guarded(&*self.store, self.timeout, &self.metrics, self.store.claim(key, lease)).await;
        if let Some(s) = &mut span {
            match &r {
                Ok(c) => s.set(|| opentelemetry::KeyValue::new("portcullis.claim", claim_name(c))),
                Err(e) => s.fail(e),
            }
        }
        r
    }

    /// Completes (`delivered`) or releases the claim, trying a few times: a completion that
    /// never lands would let a retry through after the lease.
    async fn finish(&self, key: &str, token: Token, delivered: bool, ttl: Duration) {
        let name = if delivered { "store.complete" } else { "store.release" };
        let mut span = ChildSpan::start(self.trace.as_ref(), name, SpanKind::Client);
        let mut wait = Duration::from_millis(50);
        for attempt in 1..=3 {
            let fut =
                if delivered { self.store.complete(key, token, ttl) } else { self.store.release(key, token) };
            match guarded(&*self.store, self.timeout, &self.metrics, fut).await {
                Ok(()) => return,
                Err(e) if attempt == 3 => {
                    if let Some(s) = &mut span {
                        s.fail(&e);
                    }
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

    /// Consumes (`used`) or releases a claimed nonce.
    async fn settle(&self, nonce: Option<(Arc<str>, Token)>, used: bool, ttl: Duration) {
        if let Some((n, t)) = nonce {
            self.finish(&n, t, used, ttl).await;
        }
    }
}

impl DedupeLayer {
    /// `abort` turns true when draining has run out of time: deliveries still waiting for
    /// their upstream then release their keys and answer 503.
    pub fn new(
        store: Arc<dyn Store>,
        timeout: Duration,
        abort: watch::Receiver<bool>,
        metrics: Arc<Metrics>,
    ) -> Self {
        DedupeLayer { calls: Calls { store, timeout, metrics, trace: None }, abort }
    }
}

impl<S> Layer<S> for DedupeLayer {
    type Service = Dedupe<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Dedupe { inner, calls: self.calls.clone(), abort: self.abort.clone() }
    }
}

#[derive(Clone)]
pub struct Dedupe<S> {
    inner: S,
    calls: Calls,
    abort: watch::Receiver<bool>,
}

impl<S> Service<Verified> for Dedupe<S>
where
    S: Service<Verified, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, d: Verified) -> Self::Future {
        let mut inner = self.inner.clone();
        let mut calls = self.calls.clone();
        let mut abort = self.abort.clone();
        Box::pin(async move {
            calls.trace = d.request.parts.extensions.get::<Trace>().cloned();
            let route = d.request.route.clone();
            let key = d.event.store_key().clone();
            // A signed one-time value (Mailgun's token) is claimed first: seen before is a
            // replay. It is consumed with the delivery, and released when the delivery fails.
            let nonce = match d.nonce.clone() {
                None => None,
                Some(n) => match calls.claim(&n, route.lease).await {
                    Ok(Claim::Acquired(t)) => Some((n, t)),
                    Ok(Claim::Delivered) => {
                        return Ok(Rejection::Replay.into_response(Some(route), Some(key)))
                    }
                    Ok(Claim::InFlight { retry_after }) => {
                        return Ok(Rejection::InFlight(retry_after).into_response(Some(route), Some(key)))
                    }
                    Err(e) => return Ok(Rejection::Store(e).into_response(Some(route), Some(key))),
                },
            };
            if !d.batch.is_empty() {
                // Boxed: the batch's future is large, and most deliveries are not batches.
                return Ok(Box::pin(deliver_batch(inner, calls, abort, d, nonce)).await);
            }
            let token = match calls.claim(&key, route.lease).await {
                Ok(Claim::Acquired(token)) => token,
                Ok(Claim::Delivered) => {
                    calls.settle(nonce, true, route.ttl).await;
                    return Ok(Record::verified(Outcome::Duplicate, &d).on(duplicate_response()));
                }
                Ok(Claim::InFlight { retry_after }) => {
                    calls.settle(nonce, false, route.ttl).await;
                    return Ok(Rejection::InFlight(retry_after).into_response(Some(route), Some(key)));
                }
                Err(e) if route.on_store_error == OnStoreError::Forward => {
                    tracing::warn!(route = %route.name, key = %key, error = %e,
                        "store unavailable; forwarding without deduplication (on_store_error: forward)");
                    // The nonce was claimed: settle it with the delivery's outcome, as below,
                    // rather than leave it in flight until its lease ends.
                    let task = DetachOnDrop::new(async move {
                        let res = inner.call(d).await.unwrap_or_else(|e| match e {});
                        calls.settle(nonce, res.status().is_success(), route.ttl).await;
                        res
                    });
                    return Ok(task.await);
                }
                Err(e) => {
                    calls.settle(nonce, false, route.ttl).await;
                    return Ok(Rejection::Store(e).into_response(Some(route), Some(key)));
                }
            };

            // The claim is ours. Forwarding and recording its outcome must run to the end even
            // if the sender hangs up (hyper then drops this future): the work is detached into
            // a task of its own at that moment, not spawned up front on every request.
            let task = DetachOnDrop::new(async move {
                let (r, k) = (route.clone(), key.clone());
                let res = tokio::select! {
                    Ok(res) = inner.call(d) => res,
                    _ = abort.wait_for(|a| *a) => Rejection::Draining.into_response(Some(r), Some(k)),
                };
                let delivered = res.status().is_success();
                calls.finish(&key, token, delivered, route.ttl).await;
                calls.settle(nonce, delivered, route.ttl).await;
                res
            });
            Ok(task.await)
        })
    }
}

/// The claim's answer, as the store span records it.
fn claim_name(c: &Claim) -> &'static str {
    match c {
        Claim::Acquired(_) => "acquired",
        Claim::Delivered => "delivered",
        Claim::InFlight { .. } => "in_flight",
    }
}

/// A batch of events each signed on its own (see [`Verified::batch`]): every distinct item key
/// is claimed, once. All delivered before: 200 duplicate. Some delivered: the batch is forwarded
/// without them (their bytes cut out, the rest untouched), so no item goes twice and no new
/// item is lost. An item in flight: 409 for the whole batch, after releasing what was claimed.
async fn deliver_batch<S>(
    mut inner: S,
    calls: Calls,
    mut abort: watch::Receiver<bool>,
    mut d: Verified,
    nonce: Option<(Arc<str>, Token)>,
) -> Response<Body>
where
    S: Service<Verified, Response = Response<Body>, Error = Infallible> + Send + 'static,
    S::Future: Send,
{
    let route = d.request.route.clone();
    // The same item twice in a batch (`[F,F]`) is claimed once: a second claim would see the
    // first as in flight and refuse the batch forever. `first[i]`: the first item with `i`'s key.
    let first: Vec<usize> = {
        let mut seen = std::collections::HashMap::with_capacity(d.batch.len());
        d.batch.iter().enumerate().map(|(i, item)| *seen.entry(item.event.store_key()).or_insert(i)).collect()
    };
    let mut held: Vec<(usize, Token)> = Vec::with_capacity(d.batch.len());
    let mut refused = None;
    for (i, item) in d.batch.iter().enumerate().filter(|(i, _)| first[*i] == *i) {
        match calls.claim(item.event.store_key(), route.lease).await {
            Ok(Claim::Acquired(t)) => held.push((i, t)),
            Ok(Claim::Delivered) => {}
            Ok(Claim::InFlight { retry_after }) => {
                refused = Some(Rejection::InFlight(retry_after));
                break;
            }
            Err(e) => {
                refused = Some(Rejection::Store(e));
                break;
            }
        }
    }
    if let Some(e) = refused {
        for (i, t) in held {
            calls.finish(d.batch[i].event.store_key(), t, false, route.ttl).await;
        }
        if matches!(e, Rejection::Store(_)) && route.on_store_error == OnStoreError::Forward {
            tracing::warn!(route = %route.name, key = %d.event.store_key(), error = %e,
                "store unavailable; forwarding without deduplication (on_store_error: forward)");
            return DetachOnDrop::new(async move {
                let res = inner.call(d).await.unwrap_or_else(|e| match e {});
                calls.settle(nonce, res.status().is_success(), route.ttl).await;
                res
            })
            .await;
        }
        calls.settle(nonce, false, route.ttl).await;
        let key = d.event.store_key().clone();
        return e.into_response(Some(route), Some(key));
    }
    if held.is_empty() {
        calls.settle(nonce, true, route.ttl).await;
        return Record::verified(Outcome::Duplicate, &d).on(duplicate_response());
    }
    // The items to forward: each whose key this request claimed (a repeat goes with its first).
    let new: Vec<usize> = (0..d.batch.len()).filter(|i| held.iter().any(|(h, _)| *h == first[*i])).collect();
    if new.len() < d.batch.len() {
        // Cut the delivered items out: keep the bytes before the first item and after the
        // last, and each new item's own bytes, comma-separated.
        let first = d.batch[0].span.start;
        let last = d.batch[d.batch.len() - 1].span.end;
        let whole = &d.request.body;
        let mut body = Vec::with_capacity(whole.len());
        body.extend_from_slice(&whole[..first]);
        for (n, i) in new.iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&whole[d.batch[*i].span.clone()]);
        }
        body.extend_from_slice(&whole[last..]);
        let ids: Vec<&str> = held.iter().map(|(i, _)| d.batch[*i].event.id()).collect();
        let event = EventKey::new(&route.name, &ids.join(","));
        tracing::info!(route = %route.name, key = %event.store_key(), delivered_before = d.batch.len() - new.len(),
            "batch: items delivered before are cut out; forwarding the new ones");
        d.request.body = body.into();
        d.event = event;
    }
    let claims: Vec<(Arc<str>, Token)> =
        held.into_iter().map(|(i, t)| (d.batch[i].event.store_key().clone(), t)).collect();
    let task = DetachOnDrop::new(async move {
        let (r, k) = (route.clone(), d.event.store_key().clone());
        let res = tokio::select! {
            Ok(res) = inner.call(d) => res,
            _ = abort.wait_for(|a| *a) => Rejection::Draining.into_response(Some(r), Some(k)),
        };
        let delivered = res.status().is_success();
        for (key, token) in claims {
            calls.finish(&key, token, delivered, route.ttl).await;
        }
        calls.settle(nonce, delivered, route.ttl).await;
        res
    });
    task.await
}

/// A future that, when dropped before it finished, spawns itself to finish on its own.
struct DetachOnDrop<T: Send + 'static> {
    fut: Option<std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>>,
}

impl<T: Send + 'static> DetachOnDrop<T> {
    fn new(fut: impl std::future::Future<Output = T> + Send + 'static) -> Self {
        DetachOnDrop { fut: Some(Box::pin(fut)) }
    }
}

impl<T: Send + 'static> std::future::Future for DetachOnDrop<T> {
    type Output = T;
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let fut = self.fut.as_mut().expect("polled after completion");
        let out = std::task::ready!(fut.as_mut().poll(cx));
        self.fut = None;
        Poll::Ready(out)
    }
}

impl<T: Send + 'static> Drop for DetachOnDrop<T> {
    fn drop(&mut self) {
        if let Some(fut) = self.fut.take() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(fut);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_abandoned_delivery_still_finishes() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let fut = DetachOnDrop::new(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = tx.send("finished");
        });
        // Poll once, then drop it, as hyper does when the sender hangs up.
        let _ = tokio::time::timeout(Duration::from_millis(1), fut).await;
        assert_eq!(rx.await.unwrap(), "finished");
    }
}
