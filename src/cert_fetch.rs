//! Fetches and caches the signing certificates of certificate-URL schemes (PayPal, Amazon
//! SNS): the gateway's only outbound call besides the upstream. HTTPS only, to a URL that
//! already passed the profile's host and path pinning (`verify::certificate::prepare`);
//! bounded by a timeout, a body limit, a number of fetches at once and a cache of bounded size
//! and age. Concurrent requests for one URL share one fetch, and a failure is remembered
//! briefly ([`NEGATIVE_TTL`]), so requests naming a failing URL cost one fetch per period.
//! Any failure is the caller's 503: a certificate that cannot be had is not a forgery.

use crate::verify::certificate::{CertUrl, ExtraHosts};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_rustls::rustls;

/// How long one fetch may take, connection and body included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a fetched certificate file is reused. Providers rotate their certificates
/// rarely and under a new URL, so an hour only bounds how long a revoked one lingers.
pub const CACHE_TTL: Duration = Duration::from_secs(3600);
/// Certificate files kept at most (each is a few KiB).
pub const CACHE_ENTRIES: usize = 64;
/// The largest certificate file accepted.
pub const MAX_CERT_BYTES: usize = 64 * 1024;
/// Fetches running at once, gateway-wide; a request that finds none free is answered 503.
pub const MAX_FETCHES: usize = 16;

/// Why a certificate could not be had. Never a verdict on the request: answered 503.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    #[error("fetching {0} timed out after {1:?}")]
    Timeout(String, Duration),
    #[error("fetching {0} failed: {1}")]
    Failed(String, String),
    #[error("too many certificate fetches at once")]
    Busy,
}

/// A route's test override: an extra trusted CA (for the HTTPS fetch and the signing
/// certificate's chain) and the hosts it may be fetched from. FOR TESTS ONLY: production
/// routes trust the public roots and the profile's pinned hosts alone.
pub struct TestTrust {
    /// `host:port` (or `host`) allowed besides the profile's hosts.
    pub hosts: Vec<String>,
    anchors: Vec<TrustAnchor<'static>>,
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for TestTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestTrust").field("hosts", &self.hosts).finish_non_exhaustive()
    }
}

impl ExtraHosts for TestTrust {
    fn allows(&self, authority: &str) -> bool {
        self.hosts.allows(authority)
    }
}

impl TestTrust {
    /// Reads the CA certificates of `ca_file` (PEM).
    pub fn from_file(ca_file: &Path, hosts: Vec<String>) -> Result<TestTrust, String> {
        let pem = std::fs::read(ca_file).map_err(|e| format!("{}: {e}", ca_file.display()))?;
        Self::from_pem(&pem, hosts).map_err(|e| format!("{}: {e}", ca_file.display()))
    }

    pub fn from_pem(pem: &[u8], hosts: Vec<String>) -> Result<TestTrust, String> {
        let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("not PEM certificates: {e}"))?;
        if cas.is_empty() {
            return Err("no certificate found".into());
        }
        let mut anchors = Vec::with_capacity(cas.len());
        for ca in &cas {
            anchors.push(
                webpki::anchor_from_trusted_cert(ca)
                    .map_err(|e| format!("not a CA certificate: {e}"))?
                    .to_owned(),
            );
        }
        let mut all = webpki_roots::TLS_SERVER_ROOTS.to_vec();
        all.extend(anchors.iter().cloned());
        Ok(TestTrust { hosts, tls: client_config(all), anchors })
    }
}

fn client_config(anchors: Vec<TrustAnchor<'static>>) -> Arc<rustls::ClientConfig> {
    let roots = rustls::RootCertStore { roots: anchors };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// The roots a signing certificate may chain to: the public ones, plus a test override's CA.
pub fn trust_anchors(test: Option<&TestTrust>) -> Vec<TrustAnchor<'static>> {
    let mut all = webpki_roots::TLS_SERVER_ROOTS.to_vec();
    if let Some(t) = test {
        all.extend(t.anchors.iter().cloned());
    }
    all
}

/// What the cache holds for one URL: the file, or the failure that ended its last fetch.
struct Entry {
    outcome: Result<Bytes, FetchError>,
    at: Instant,
}

/// The fetch under way for one URL: its outcome, once there, for every request waiting on it.
type Flight = tokio::sync::watch::Receiver<Option<Result<Bytes, FetchError>>>;

#[derive(Default)]
struct State {
    /// Fetched files, by [`CertUrl::key`].
    good: HashMap<String, Entry>,
    /// Failed fetches, by [`CertUrl::key`]: answered again for [`NEGATIVE_TTL`] without a fetch.
    bad: HashMap<String, Entry>,
    /// Fetches under way, by [`CertUrl::key`]: a second request for one waits for it.
    flights: HashMap<String, Flight>,
}

/// Inserts `key` into a map bounded to `max` entries: drops the entries older than `ttl`,
/// then the oldest, to make room.
fn bounded_insert(map: &mut HashMap<String, Entry>, key: &str, entry: Entry, max: usize, ttl: Duration) {
    if map.len() >= max && !map.contains_key(key) {
        map.retain(|_, e| e.at.elapsed() < ttl);
        if map.len() >= max {
            if let Some(oldest) = map.iter().min_by_key(|(_, e)| e.at).map(|(k, _)| k.clone()) {
                map.remove(&oldest);
            }
        }
    }
    map.insert(key.to_string(), entry);
}

/// How long a failed fetch is answered from the cache (the same 503) before it is tried
/// again: a URL that fails costs one fetch per period, however many requests name it.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// Failed URLs remembered at most.
pub const NEGATIVE_ENTRIES: usize = 1024;

/// The gateway's certificate cache and fetcher; one per process ([`Fetcher::global`]).
/// Concurrent requests for one URL share one fetch; its failure is remembered
/// [`NEGATIVE_TTL`]; fetches of distinct URLs are bounded by [`MAX_FETCHES`].
pub struct Fetcher {
    state: Mutex<State>,
    running: Semaphore,
    public: Arc<rustls::ClientConfig>,
    timeout: Duration,
    ttl: Duration,
    negative_ttl: Duration,
    /// Fetches that brought a file (for tests and metrics).
    fetched: std::sync::atomic::AtomicU64,
    /// Fetches attempted, whatever their outcome.
    attempted: std::sync::atomic::AtomicU64,
}

/// Removes a flight that ended without publishing its outcome (its request was dropped), so
/// the requests waiting on it, and later ones, start their own.
struct FlightGuard<'a> {
    fetcher: &'a Fetcher,
    key: &'a str,
    armed: bool,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.fetcher.lock().flights.remove(self.key);
        }
    }
}

impl Fetcher {
    pub fn new(timeout: Duration, ttl: Duration) -> Fetcher {
        Fetcher::with_negative_ttl(timeout, ttl, NEGATIVE_TTL)
    }

    pub fn with_negative_ttl(timeout: Duration, ttl: Duration, negative_ttl: Duration) -> Fetcher {
        Fetcher {
            state: Mutex::new(State::default()),
            running: Semaphore::new(MAX_FETCHES),
            public: client_config(webpki_roots::TLS_SERVER_ROOTS.to_vec()),
            timeout,
            ttl,
            negative_ttl,
            fetched: std::sync::atomic::AtomicU64::new(0),
            attempted: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The process-wide fetcher: the certificates are the providers', whichever route asks.
    pub fn global() -> &'static Fetcher {
        static GLOBAL: OnceLock<Fetcher> = OnceLock::new();
        GLOBAL.get_or_init(|| Fetcher::new(FETCH_TIMEOUT, CACHE_TTL))
    }

    /// Fetches that brought a file so far.
    pub fn fetches(&self) -> u64 {
        self.fetched.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Fetches attempted so far, failed ones included.
    pub fn attempts(&self) -> u64 {
        self.attempted.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached outcome for `key`: a fresh file, or a recent failure.
    fn cached_in(&self, state: &State, key: &str) -> Option<Result<Bytes, FetchError>> {
        if let Some(e) = state.good.get(key).filter(|e| e.at.elapsed() < self.ttl) {
            return Some(e.outcome.clone());
        }
        state.bad.get(key).filter(|e| e.at.elapsed() < self.negative_ttl).map(|e| e.outcome.clone())
    }

    #[cfg(test)]
    fn cached(&self, key: &str) -> Option<Bytes> {
        self.cached_in(&self.lock(), key).and_then(Result::ok)
    }

    /// Records a fetch's outcome; a file replaces a remembered failure and the reverse.
    fn record(
        state: &mut State,
        key: &str,
        outcome: &Result<Bytes, FetchError>,
        ttl: Duration,
        neg: Duration,
    ) {
        let entry = Entry { outcome: outcome.clone(), at: Instant::now() };
        if outcome.is_ok() {
            state.bad.remove(key);
            bounded_insert(&mut state.good, key, entry, CACHE_ENTRIES, ttl);
        } else {
            state.good.remove(key);
            bounded_insert(&mut state.bad, key, entry, NEGATIVE_ENTRIES, neg);
        }
    }

    #[cfg(test)]
    fn store(&self, key: &str, pem: Bytes) {
        Self::record(&mut self.lock(), key, &Ok(pem), self.ttl, self.negative_ttl);
    }

    /// The certificate file at `url` (already pinned by the caller): from the cache, from the
    /// fetch another request has under way for it, or fetched over HTTPS with the public roots
    /// (and a test override's CA, when the route has one). A failure is remembered
    /// [`NEGATIVE_TTL`] and answered again without a fetch.
    pub async fn get(&self, url: &CertUrl, test: Option<&TestTrust>) -> Result<Bytes, FetchError> {
        let key = url.key();
        loop {
            let (tx, flight) = {
                let mut state = self.lock();
                if let Some(outcome) = self.cached_in(&state, &key) {
                    return outcome;
                }
                match state.flights.get(&key) {
                    Some(flight) => (None, flight.clone()),
                    None => {
                        let (tx, rx) = tokio::sync::watch::channel(None);
                        state.flights.insert(key.clone(), rx.clone());
                        (Some(tx), rx)
                    }
                }
            };
            let Some(tx) = tx else {
                // Another request is fetching this URL: share its outcome. If it was dropped
                // before it had one, look again (and fetch, if nobody else does).
                let mut flight = flight;
                if let Ok(outcome) = flight.wait_for(Option::is_some).await {
                    return outcome.clone().expect("waited for an outcome");
                }
                continue;
            };
            let mut guard = FlightGuard { fetcher: self, key: &key, armed: true };
            let outcome = self.fetch_now(url, test).await;
            {
                let mut state = self.lock();
                state.flights.remove(&key);
                if outcome != Err(FetchError::Busy) {
                    Self::record(&mut state, &key, &outcome, self.ttl, self.negative_ttl);
                }
            }
            guard.armed = false;
            let _ = tx.send(Some(outcome.clone()));
            return outcome;
        }
    }

    /// One fetch, within the gateway-wide bound on fetches at once.
    async fn fetch_now(&self, url: &CertUrl, test: Option<&TestTrust>) -> Result<Bytes, FetchError> {
        let _permit = self.running.try_acquire().map_err(|_| FetchError::Busy)?;
        self.attempted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tls = test.map(|t| t.tls.clone()).unwrap_or_else(|| self.public.clone());
        let pem = tokio::time::timeout(self.timeout, fetch(url, tls))
            .await
            .map_err(|_| FetchError::Timeout(url.url.clone(), self.timeout))?
            .map_err(|e| FetchError::Failed(url.url.clone(), e))?;
        self.fetched.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(pem)
    }
}

/// One GET over HTTPS/1.1; only a 200 with a body of at most [`MAX_CERT_BYTES`] is taken.
async fn fetch(url: &CertUrl, tls: Arc<rustls::ClientConfig>) -> Result<Bytes, String> {
    let tcp =
        tokio::net::TcpStream::connect((url.host.as_str(), url.port)).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(url.host.clone()).map_err(|e| e.to_string())?;
    let stream =
        tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::get(url.path.as_str())
        .header(http::header::HOST, url.authority())
        .header(http::header::USER_AGENT, "portcullis")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if res.status() != http::StatusCode::OK {
        conn.abort();
        return Err(format!("answered {}", res.status()));
    }
    let body = Limited::new(res.into_body(), MAX_CERT_BYTES).collect().await.map_err(|e| e.to_string());
    conn.abort();
    Ok(body?.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(u: &str) -> CertUrl {
        CertUrl::parse(u).unwrap()
    }

    #[test]
    fn the_cache_is_bounded_and_keeps_the_newest() {
        let f = Fetcher::new(FETCH_TIMEOUT, CACHE_TTL);
        for i in 0..CACHE_ENTRIES + 5 {
            f.store(&format!("https://a.b.c/{i}"), Bytes::from_static(b"x"));
        }
        assert_eq!(f.lock().good.len(), CACHE_ENTRIES);
        assert!(f.cached(&format!("https://a.b.c/{}", CACHE_ENTRIES + 4)).is_some());
        assert!(f.cached("https://a.b.c/0").is_none());
    }

    #[test]
    fn expired_entries_are_not_served() {
        let f = Fetcher::new(FETCH_TIMEOUT, Duration::ZERO);
        f.store("https://a.b.c/x", Bytes::from_static(b"x"));
        assert!(f.cached("https://a.b.c/x").is_none());
    }

    #[tokio::test]
    async fn an_unreachable_host_fails_within_the_timeout() {
        // A listener that accepts and never answers.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let _hold = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((c, _)) = l.accept().await {
                conns.push(c);
            }
        });
        let f = Fetcher::new(Duration::from_millis(200), CACHE_TTL);
        let e = f.get(&url(&format!("https://localhost:{port}/c.pem")), None).await.unwrap_err();
        assert!(matches!(e, FetchError::Timeout(..)), "{e}");
        let e = f.get(&url("https://localhost:1/c.pem"), None).await.unwrap_err();
        assert!(matches!(e, FetchError::Failed(..)), "{e}");
        assert_eq!(f.fetches(), 0);
    }

    /// A listener that counts connections, holds each `hold`, then closes it (a failed TLS
    /// handshake for the fetcher).
    async fn counting_listener(hold: Duration) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = n.clone();
        tokio::spawn(async move {
            while let Ok((c, _)) = l.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    tokio::time::sleep(hold).await;
                    drop(c);
                });
            }
        });
        (port, n)
    }

    #[tokio::test]
    async fn a_failing_url_is_fetched_once_within_the_negative_ttl() {
        let (port, conns) = counting_listener(Duration::ZERO).await;
        let f = Fetcher::new(Duration::from_secs(2), CACHE_TTL);
        let u = url(&format!("https://localhost:{port}/c.pem"));
        let first = f.get(&u, None).await.unwrap_err();
        assert!(matches!(first, FetchError::Failed(..)), "{first}");
        for _ in 0..5 {
            assert_eq!(f.get(&u, None).await.unwrap_err(), first, "the same failure, from the cache");
        }
        // Spelled otherwise, it is the same file.
        let upper = url(&format!("https://LOCALHOST:{port}/c.pem"));
        assert_eq!(f.get(&upper, None).await.unwrap_err(), first);
        assert_eq!((conns.load(std::sync::atomic::Ordering::SeqCst), f.attempts()), (1, 1));

        // Once the period is over, it is tried again.
        let f = Fetcher::with_negative_ttl(Duration::from_secs(2), CACHE_TTL, Duration::ZERO);
        let before = conns.load(std::sync::atomic::Ordering::SeqCst);
        f.get(&u, None).await.unwrap_err();
        f.get(&u, None).await.unwrap_err();
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst) - before, 2);
    }

    #[tokio::test]
    async fn concurrent_misses_for_one_url_share_one_fetch() {
        let (port, conns) = counting_listener(Duration::from_millis(300)).await;
        // No negative cache: only the shared flight keeps the count at one.
        let f = Arc::new(Fetcher::with_negative_ttl(Duration::from_secs(5), CACHE_TTL, Duration::ZERO));
        let u = url(&format!("https://localhost:{port}/c.pem"));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (f, u) = (f.clone(), u.clone());
                tokio::spawn(async move { f.get(&u, None).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.unwrap().unwrap_err());
        }
        assert!(
            outcomes.iter().all(|e| *e == outcomes[0] && matches!(e, FetchError::Failed(..))),
            "{outcomes:?}"
        );
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 1, "one fetch for eight requests");
        assert_eq!(f.attempts(), 1);
        assert!(f.lock().flights.is_empty());
    }

    #[tokio::test]
    async fn a_dropped_fetch_hands_over_to_its_waiters() {
        let (port, conns) = counting_listener(Duration::from_millis(300)).await;
        let f = Arc::new(Fetcher::with_negative_ttl(Duration::from_secs(5), CACHE_TTL, Duration::ZERO));
        let u = url(&format!("https://localhost:{port}/c.pem"));
        let leader = {
            let (f, u) = (f.clone(), u.clone());
            tokio::spawn(async move { f.get(&u, None).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let waiter = {
            let (f, u) = (f.clone(), u.clone());
            tokio::spawn(async move { f.get(&u, None).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        leader.abort();
        let e = waiter.await.unwrap().unwrap_err();
        assert!(matches!(e, FetchError::Failed(..)), "{e}");
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 2, "the waiter fetched on its own");
        assert!(f.lock().flights.is_empty());
    }

    #[test]
    fn the_negative_cache_is_bounded() {
        let f = Fetcher::new(FETCH_TIMEOUT, CACHE_TTL);
        let mut state = f.lock();
        for i in 0..NEGATIVE_ENTRIES + 5 {
            let e = Err(FetchError::Failed(i.to_string(), "x".into()));
            Fetcher::record(&mut state, &format!("https://a.b.c/{i}"), &e, CACHE_TTL, NEGATIVE_TTL);
        }
        assert_eq!(state.bad.len(), NEGATIVE_ENTRIES);
        assert!(f.cached_in(&state, "https://a.b.c/0").is_none());
        assert!(f.cached_in(&state, &format!("https://a.b.c/{}", NEGATIVE_ENTRIES + 4)).is_some());
    }

    #[test]
    fn a_test_override_needs_a_ca() {
        assert!(TestTrust::from_pem(b"nothing", vec![]).is_err());
    }
}
