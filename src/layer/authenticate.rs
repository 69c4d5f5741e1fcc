//! Verifies the signature over the raw body with the route's secrets, then derives the
//! event's idempotency key. Nothing is claimed or forwarded for a request that fails here.

use super::{answer, EitherFuture};
use crate::delivery::{BatchKey, Delivery};
use crate::error::{Body, GatewayError, Record};
use crate::gateway::Clock;
use crate::verify::diagnose::diagnose;
use crate::verify::{body_sha256, Input};
use http::Response;
use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Ids longer than this are stored as their SHA-256, which bounds the store's key size.
const MAX_ID_LEN: usize = 128;

/// Diagnoses (a few extra MACs each) logged per second at most, so that a flood of forged
/// requests cannot multiply the gateway's work.
const DIAGNOSES_PER_SECOND: u64 = 10;

/// The second of the current window (high 32 bits) and the diagnoses counted in it.
static DIAGNOSIS_WINDOW: AtomicU64 = AtomicU64::new(0);

fn diagnosis_allowed() -> bool {
    let now = crate::gateway::Clock::System.now() & 0xffff_ffff;
    let mut cur = DIAGNOSIS_WINDOW.load(Ordering::Relaxed);
    loop {
        let (sec, n) = (cur >> 32, cur & 0xffff_ffff);
        let next = if sec == now { (now << 32) | (n + 1) } else { (now << 32) | 1 };
        if sec == now && n >= DIAGNOSES_PER_SECOND {
            return false;
        }
        match DIAGNOSIS_WINDOW.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(actual) => cur = actual,
        }
    }
}

/// The idempotency key of event `id` at route `route`: `route:id`, or `route:sha256:…` for
/// an id longer than [`MAX_ID_LEN`].
pub fn event_key(route: &str, id: &str) -> Arc<str> {
    if id.len() <= MAX_ID_LEN {
        Arc::from(format!("{route}:{id}"))
    } else {
        Arc::from(format!("{route}:sha256:{}", body_sha256(id.as_bytes())))
    }
}

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
        Authenticate { inner, clock: self.clock.clone() }
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
        // Schemes that sign the URL sign the public one the provider was given, plus the
        // query string the request arrived with.
        let url: Cow<'_, str> = match (verifier.needs_url(), &route.public_url, d.parts.uri.query()) {
            (true, Some(u), Some(q)) => Cow::Owned(format!("{u}?{q}")),
            (true, Some(u), None) => Cow::Borrowed(u.as_str()),
            _ => Cow::Borrowed(""),
        };
        let input = Input {
            method: &d.parts.method,
            url: &url,
            headers: &d.parts.headers,
            body: &d.body,
            now: self.clock.now(),
        };
        let verified = match verifier.verify(&input) {
            Ok(v) => v,
            Err(e) => {
                let detail = if e.is_mismatch() && diagnosis_allowed() {
                    format!("{e}; {}", diagnose(verifier, &input).join("; "))
                } else {
                    e.to_string()
                };
                let mut res = GatewayError::from(e).into_response(Some(d.route.clone()), None);
                if let Some(r) = res.extensions_mut().get_mut::<Record>() {
                    r.detail = Some(detail);
                }
                return answer(res);
            }
        };
        let nonce = match verifier.replay_nonce(&d.body) {
            Ok(n) => n.map(|n| Arc::from(verifier.nonce_key(verified.secret_index, &n))),
            Err(e) => return answer(GatewayError::from(e).into_response(Some(d.route), None)),
        };
        drop(url);
        let batch = match verifier.batch_items(&d.body) {
            Ok(Some(items)) if items.len() > 1 => items
                .into_iter()
                .map(|i| BatchKey { key: event_key(&route.name, &i.id), span: i.span })
                .collect(),
            Ok(_) => Vec::new(),
            Err(e) => return answer(GatewayError::from(e).into_response(Some(d.route), None)),
        };
        let key = match verifier.event_id(&d.parts.headers, &d.body) {
            Ok(id) => event_key(&route.name, &id),
            Err(e) => return answer(GatewayError::from(e).into_response(Some(d.route), None)),
        };
        d.key = key;
        d.batch = batch;
        d.secret_index = verified.secret_index;
        d.nonce = nonce;
        futures_util::future::Either::Right(self.inner.call(d))
    }
}
