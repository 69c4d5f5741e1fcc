//! Fetches and caches the signing certificates of certificate-URL schemes (PayPal, Amazon
//! SNS): the gateway's only outbound call besides the upstream. HTTPS only, to a URL that
//! already passed the profile's host pinning (`verify::certificate::prepare`); bounded by a
//! timeout, a body limit, a number of fetches at once and a cache of bounded size and age.
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

struct Entry {
    pem: Bytes,
    fetched: Instant,
}

/// The gateway's certificate cache and fetcher; one per process ([`Fetcher::global`]).
pub struct Fetcher {
    cache: Mutex<HashMap<String, Entry>>,
    running: Semaphore,
    public: Arc<rustls::ClientConfig>,
    timeout: Duration,
    ttl: Duration,
    /// Fetches made (for tests and metrics).
    fetched: std::sync::atomic::AtomicU64,
}

impl Fetcher {
    pub fn new(timeout: Duration, ttl: Duration) -> Fetcher {
        Fetcher {
            cache: Mutex::new(HashMap::new()),
            running: Semaphore::new(MAX_FETCHES),
            public: client_config(webpki_roots::TLS_SERVER_ROOTS.to_vec()),
            timeout,
            ttl,
            fetched: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The process-wide fetcher: the certificates are the providers', whichever route asks.
    pub fn global() -> &'static Fetcher {
        static GLOBAL: OnceLock<Fetcher> = OnceLock::new();
        GLOBAL.get_or_init(|| Fetcher::new(FETCH_TIMEOUT, CACHE_TTL))
    }

    /// Fetches made so far.
    pub fn fetches(&self) -> u64 {
        self.fetched.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The cached file for `url`, if fresh.
    fn cached(&self, url: &str) -> Option<Bytes> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(url).filter(|e| e.fetched.elapsed() < self.ttl).map(|e| e.pem.clone())
    }

    fn store(&self, url: &str, pem: Bytes) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_ENTRIES && !cache.contains_key(url) {
            let ttl = self.ttl;
            cache.retain(|_, e| e.fetched.elapsed() < ttl);
            if cache.len() >= CACHE_ENTRIES {
                if let Some(oldest) = cache.iter().min_by_key(|(_, e)| e.fetched).map(|(k, _)| k.clone()) {
                    cache.remove(&oldest);
                }
            }
        }
        cache.insert(url.to_string(), Entry { pem, fetched: Instant::now() });
    }

    /// The certificate file at `url` (already pinned by the caller): from the cache, or
    /// fetched over HTTPS with the public roots (and a test override's CA, when the route has one).
    pub async fn get(&self, url: &CertUrl, test: Option<&TestTrust>) -> Result<Bytes, FetchError> {
        if let Some(pem) = self.cached(&url.url) {
            return Ok(pem);
        }
        let _permit = self.running.try_acquire().map_err(|_| FetchError::Busy)?;
        // Another request may have fetched it while this one waited for nothing: look again.
        if let Some(pem) = self.cached(&url.url) {
            return Ok(pem);
        }
        let tls = test.map(|t| t.tls.clone()).unwrap_or_else(|| self.public.clone());
        let pem = tokio::time::timeout(self.timeout, fetch(url, tls))
            .await
            .map_err(|_| FetchError::Timeout(url.url.clone(), self.timeout))?
            .map_err(|e| FetchError::Failed(url.url.clone(), e))?;
        self.fetched.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.store(&url.url, pem.clone());
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
        assert_eq!(f.cache.lock().unwrap().len(), CACHE_ENTRIES);
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

    #[test]
    fn a_test_override_needs_a_ca() {
        assert!(TestTrust::from_pem(b"nothing", vec![]).is_err());
    }
}
