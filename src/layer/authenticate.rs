//! Verifies the signature over the raw body with the route's secrets, then derives the
//! event's idempotency key. Nothing is claimed or forwarded for a request that fails here.
//! The HMAC schemes are checked synchronously, without allocating a future; certificate-URL
//! schemes (PayPal, SNS) await their signing certificate in a boxed future.

use super::{answer, BoxFuture, EitherFuture};
use crate::cert_fetch::{self, Fetcher};
use crate::clock::Clock;
use crate::delivery::{BatchKey, EventKey, Received, Verified};
use crate::response::{Body, Rejection};
use crate::routing::RouteEntry;
use crate::verify::certificate::{self, ExtraHosts, PinnedOnly, SigningCert};
use crate::verify::diagnose::diagnose;
use crate::verify::Input;
use bytes::Bytes;
use futures_util::future::Either;
use http::Response;
use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Diagnoses (a bounded number of MACs each, see `verify::diagnose`) started per second at
/// most, so that a flood of forged requests cannot multiply the gateway's work.
const DIAGNOSES_PER_SECOND: u64 = 10;

/// Diagnoses running at once, at most: each runs on the blocking pool, off the connection's
/// event loop; a refused request that finds none free is not diagnosed.
const MAX_RUNNING: usize = 1;

static RUNNING: AtomicUsize = AtomicUsize::new(0);
/// Numbers diagnoses, so that a request's log line names the line its diagnosis writes.
static NEXT_DIAGNOSIS: AtomicU64 = AtomicU64::new(1);
/// Diagnoses finished (for tests).
static DIAGNOSED: AtomicU64 = AtomicU64::new(0);
/// Held by tests to keep diagnoses from finishing.
#[cfg(test)]
static GATE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One of the [`MAX_RUNNING`] places, given back when dropped.
struct Running;

impl Running {
    fn take() -> Option<Running> {
        RUNNING
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < MAX_RUNNING).then_some(n + 1))
            .ok()?;
        Some(Running)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Starts diagnosing a refused request on the blocking pool, when a place is free and the
/// per-second budget allows; the diagnosis logs its own line, carrying the number returned
/// here. The caller answers at once and never waits for it.
fn spawn_diagnosis(route: &Arc<RouteEntry>, input: &Input<'_>, body: &Bytes) -> Option<u64> {
    let running = Running::take()?;
    if !diagnosis_allowed() {
        return None;
    }
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let id = NEXT_DIAGNOSIS.fetch_add(1, Ordering::Relaxed);
    let route = route.clone();
    let (method, url, headers) = (input.method.clone(), input.url.to_string(), input.headers.clone());
    let (body, now) = (body.clone(), input.now);
    handle.spawn_blocking(move || {
        let _running = running;
        #[cfg(test)]
        let _gate = GATE.lock().unwrap_or_else(|e| e.into_inner());
        let input = Input { method: &method, url: &url, headers: &headers, body: &body, now };
        let lines = diagnose(&route.verifier, &input);
        tracing::info!(diagnosis = id, route = %route.name, provider = %route.provider(),
            detail = %lines.join("; "), "signature diagnosis");
        DIAGNOSED.fetch_add(1, Ordering::Relaxed);
    });
    Some(id)
}

/// The second of the current window (high 32 bits) and the diagnoses counted in it.
static DIAGNOSIS_WINDOW: AtomicU64 = AtomicU64::new(0);

fn diagnosis_allowed() -> bool {
    let now = crate::clock::now() & 0xffff_ffff;
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

impl<S> Service<Received> for Authenticate<S>
where
    S: Service<Verified, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    /// Answered at once, or the next layer's future; certificate-URL schemes (which fetch
    /// their certificate) are the only boxed, asynchronous path.
    type Future = EitherFuture<Either<S::Future, BoxFuture>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, d: Received) -> Self::Future {
        let route = &d.route;
        let verifier = &route.verifier;
        if verifier.profile().certificate.is_some() {
            // The service made ready by `poll_ready` goes into the future; a clone stays.
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            let now = self.clock.now();
            return Either::Right(Either::Right(Box::pin(async move {
                match verify_by_certificate(&d, now).await {
                    Ok(verified) => match proceed(&mut inner, d, verified) {
                        Either::Left(answer) => answer.await,
                        Either::Right(next) => next.await,
                    },
                    Err(rejection) => Ok(rejection.into_response(Some(d.route.clone()), None)),
                }
            })));
        }
        // Schemes that sign the URL sign the public one the provider was given, plus the
        // query string the request arrived with.
        let url = signed_url(&d);
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
                let rejection =
                    match e.is_mismatch().then(|| spawn_diagnosis(route, &input, &d.body)).flatten() {
                        Some(id) => Rejection::Diagnosed(e, id),
                        None => Rejection::Verify(e),
                    };
                return answer(rejection.into_response(Some(d.route.clone()), None));
            }
        };
        drop(url);
        match proceed(&mut self.inner, d, verified) {
            Either::Left(answer) => Either::Left(answer),
            Either::Right(next) => Either::Right(Either::Left(next)),
        }
    }
}

/// A certificate-URL scheme: the request is read and pinned first (nothing is fetched for a
/// certificate URL off the provider's hosts), then the certificate is had from the cache or
/// fetched (503 + `Retry-After` when it cannot be), validated, and the signature checked.
async fn verify_by_certificate(d: &Received, now: u64) -> Result<crate::verify::Verified, Rejection> {
    let route = &d.route;
    let test = route.certificate_test.as_deref();
    let extra: &dyn ExtraHosts = match test {
        Some(t) => t,
        None => &PinnedOnly,
    };
    let input = Input { method: &d.parts.method, url: "", headers: &d.parts.headers, body: &d.body, now };
    let pending = certificate::prepare(&route.verifier, &input, extra)?;
    let pem = Fetcher::global().get(&pending.url, test).await?;
    let rule = route.verifier.profile().certificate.as_ref().expect("a certificate profile");
    let cert = SigningCert::from_pem(&pem, rule, &cert_fetch::trust_anchors(test), now)?;
    Ok(pending.finish(&cert)?)
}

/// The URL a scheme that signs the URL signs: the public one the provider was given, plus the
/// query string the request arrived with; empty for other schemes.
fn signed_url(d: &Received) -> Cow<'_, str> {
    match (d.route.verifier.needs_url(), &d.route.public_url, d.parts.uri.query()) {
        (true, Some(u), Some(q)) => Cow::Owned(format!("{u}?{q}")),
        (true, Some(u), None) => Cow::Borrowed(u.as_str()),
        _ => Cow::Borrowed(""),
    }
}

/// After the signature verified: the replay nonce, the event's key (and a batch's items'),
/// then the next layer.
fn proceed<S>(inner: &mut S, d: Received, verified: crate::verify::Verified) -> EitherFuture<S::Future>
where
    S: Service<Verified, Response = Response<Body>, Error = Infallible>,
{
    let route = &d.route;
    let verifier = &route.verifier;
    let nonce = match verifier.replay_nonce(&d.parts.headers, &d.body) {
        Ok(n) => n.map(|n| Arc::from(verifier.nonce_key(verified.secret_index, &n))),
        Err(e) => return answer(Rejection::from(e).into_response(Some(d.route), None)),
    };
    // A batch's key joins its items' ids; each item keeps its own key too (read once).
    let (event, batch) = match verifier.batch_items(&d.body) {
        Ok(Some(items)) if items.len() > 1 => {
            let ids: Vec<&str> = items.iter().map(|i| &*i.id).collect();
            let event = EventKey::new(&route.name, &ids.join(","));
            let batch = items
                .iter()
                .map(|i| BatchKey { event: EventKey::new(&route.name, &i.id), span: i.span.clone() })
                .collect();
            (event, batch)
        }
        Ok(_) => match verifier.event_id(&signed_url(&d), &d.parts.headers, &d.body) {
            Ok(id) => (EventKey::new(&route.name, &id), Vec::new()),
            Err(e) => return answer(Rejection::from(e).into_response(Some(d.route), None)),
        },
        Err(e) => return answer(Rejection::from(e).into_response(Some(d.route), None)),
    };
    let secret_index = verified.secret_index;
    Either::Right(inner.call(Verified { request: d, event, secret_index, nonce, batch }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::Record;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn a_refused_request_is_answered_without_waiting_for_its_diagnosis() {
        let yaml = "listen: 127.0.0.1:0\nroutes:\n  - path: /p\n    provider: paylent\n    secrets: [s]\n    upstream: http://127.0.0.1:1/\n";
        let config =
            crate::config::Config::from_yaml("t.yaml", yaml, std::path::Path::new("."), &|_| None).unwrap();
        let sig = format!("sha256={}", "ab".repeat(32));
        let forged = || {
            let (parts, ()) =
                http::Request::post("/p").header("x-paylent-signature", &sig).body(()).unwrap().into_parts();
            Received {
                route: Arc::new(RouteEntry::new(config.routes[0].clone(), Arc::default())),
                parts,
                body: Bytes::from_static(br#"{"event_id":"e1"}"#),
                peer: http::HeaderValue::from_static("127.0.0.1"),
                tls: false,
            }
        };
        let inner = tower::service_fn(|_: Verified| async {
            Ok::<_, Infallible>(crate::response::json_response(http::StatusCode::OK, "forwarded"))
        });
        let mut svc = AuthenticateLayer::new(Clock::System).layer(inner);
        let done = DIAGNOSED.load(Ordering::Relaxed);
        // Diagnoses cannot finish while the gate is held.
        let gate = GATE.lock().unwrap_or_else(|e| e.into_inner());
        let res =
            futures_util::FutureExt::now_or_never(svc.call(forged())).expect("answered at once").unwrap();
        assert_eq!(res.status(), http::StatusCode::UNAUTHORIZED);
        let detail = res.extensions().get::<Record>().and_then(|r| r.detail.clone()).unwrap();
        assert!(detail.contains("diagnosis") && detail.contains("own log line"), "{detail}");
        // While it runs, the next refusal is answered at once and not diagnosed.
        let res =
            futures_util::FutureExt::now_or_never(svc.call(forged())).expect("answered at once").unwrap();
        assert_eq!(res.status(), http::StatusCode::UNAUTHORIZED);
        let detail = res.extensions().get::<Record>().and_then(|r| r.detail.clone()).unwrap();
        assert!(!detail.contains("diagnosis"), "{detail}");
        assert_eq!(DIAGNOSED.load(Ordering::Relaxed), done, "the diagnosis is still held");
        drop(gate);
        let deadline = Instant::now() + Duration::from_secs(20);
        while DIAGNOSED.load(Ordering::Relaxed) == done {
            assert!(Instant::now() < deadline, "the diagnosis finishes once released");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
