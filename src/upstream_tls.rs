//! The HTTPS client of upstreams and its TLS: the system's roots for `https://`, and a
//! route's `upstream_tls: {ca_file, client_cert_file, client_key_file, server_name}` loaded
//! into a rustls client configuration of its own. A leaf: `config` and `forward` both use it.
//!
//! hyper-util's legacy client with hyper-rustls (ring provider, TLS 1.2 and 1.3, ALPN
//! `http/1.1`). It would take `http://` too (straight to the TCP connector), but `forward`
//! sends those on its own pool (`upstream_pool`), which costs less per request.

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{DefaultServerNameResolver, FixedServerNameResolver, HttpsConnector, ResolveServerName};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// The pooled client every upstream is reached with (`http://` and `https://`).
pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How a client's connections behave (from `limits:`).
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    pub max_idle_per_host: usize,
}

/// A client with the system's roots (`tls` `None`) or with a route's own TLS settings.
pub fn client(tls: Option<&UpstreamTls>, opts: &ClientOptions) -> HttpsClient {
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    let mut http = HttpConnector::new();
    // The TLS layer above takes `https://` URIs; this connector only makes the TCP stream.
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(opts.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let (config, resolver): (Arc<ClientConfig>, Arc<dyn ResolveServerName + Send + Sync>) = match tls {
        Some(t) => (t.config.clone(), t.resolver()),
        None => (system_config(), Arc::new(DefaultServerNameResolver::default())),
    };
    // `HttpsConnector::new` rather than the builder: the builder sends no ALPN for HTTP/1
    // alone, and a server that reads ALPN should be told `http/1.1` (set in the config).
    let https = HttpsConnector::new(http, config, false, resolver);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(opts.max_idle_per_host)
        .build(https)
}

/// The one crypto provider (ring, as the listener's TLS): no aws-lc, no native-tls.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

/// The roots an `https://` upstream is verified against without a `ca_file`: the system's
/// (read by rustls-native-certs from the platform's store, `SSL_CERT_FILE`/`SSL_CERT_DIR`
/// included), or the Mozilla roots compiled in (webpki-roots) when the system has none (a
/// scratch or distroless image without a CA bundle). Read once per process: the system's
/// store changes with a package update, which comes with a restart.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!(
                    errors = found.errors.len(),
                    "upstream TLS: no system root certificates found; using the compiled-in Mozilla roots"
                );
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            Arc::new(roots)
        })
        .clone()
}

/// The client configuration of `https://` upstreams without `upstream_tls:` (made once).
fn system_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let config = builder()
                .expect("the ring provider supports the default protocol versions")
                .with_root_certificates(system_roots())
                .with_no_client_auth();
            Arc::new(with_alpn(config))
        })
        .clone()
}

fn builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, rustls::Error> {
    ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()
}

/// HTTP/1.1 is the only protocol the client speaks.
fn with_alpn(mut config: ClientConfig) -> ClientConfig {
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// A route's `upstream_tls:`, loaded. Its `Debug` shows no key material.
pub struct UpstreamTls {
    pub server_name: Option<String>,
    /// `server_name` checked, as verified and sent (SNI) instead of the URL's host.
    sni: Option<ServerName<'static>>,
    /// The roots (`ca_file`'s or the system's) and the client certificate, with ALPN set;
    /// shared by every client of these settings (and its session cache with them).
    config: Arc<ClientConfig>,
    /// The client of the upstream(s) with these settings, made on first use (with the
    /// gateway's options) and dropped with the configuration that holds it.
    client: OnceLock<HttpsClient>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

/// The files of `upstream_tls:` (already resolved against the config's directory).
pub struct TlsFiles<'a> {
    pub ca_file: Option<&'a Path>,
    pub client_cert_file: Option<&'a Path>,
    pub client_key_file: Option<&'a Path>,
    pub server_name: Option<&'a str>,
}

/// Reads the certificates of a PEM file; the error names the field and the file.
fn certificates(field: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("{field} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{field} {}: no PEM certificate found", path.display()));
    }
    Ok(certs)
}

impl UpstreamTls {
    /// Reads and checks the files (PEM; a certificate without its key, or a key of another
    /// certificate, is an error naming the field). An error starts with the field's name
    /// (`ca_file /etc/x.pem: …`), for the caller to put under `upstream_tls.` and the route.
    pub fn load(files: &TlsFiles<'_>) -> Result<UpstreamTls, String> {
        let sni = files
            .server_name
            .map(|name| {
                // An IPv6 address may be written as in a URL.
                let bare = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
                ServerName::try_from(bare.to_string())
                    .map_err(|_| format!("server_name {name:?}: not a DNS name or an IP address"))
            })
            .transpose()?;
        // A private CA is trusted instead of the system's roots, not beside them: an upstream
        // inside the network is not meant to be reachable with a public certificate.
        let roots = match files.ca_file {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates("ca_file", path)? {
                    roots.add(cert).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                }
                Arc::new(roots)
            }
            None => system_roots(),
        };
        let builder = builder().map_err(|e| e.to_string())?.with_root_certificates(roots);
        let config = match (files.client_cert_file, files.client_key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => {
                return Err("client_key_file: required with client_cert_file (mTLS needs both)".into())
            }
            (None, Some(_)) => {
                return Err("client_cert_file: required with client_key_file (mTLS needs both)".into())
            }
            (Some(cert_path), Some(key_path)) => {
                let chain = certificates("client_cert_file", cert_path)?;
                // The key's own error text: never its content.
                let key = PrivateKeyDer::from_pem_file(key_path)
                    .map_err(|e| format!("client_key_file {}: {e}", key_path.display()))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    format!(
                        "client_key_file {}: not the key of client_cert_file {}: {e}",
                        key_path.display(),
                        cert_path.display()
                    )
                })?
            }
        };
        Ok(UpstreamTls {
            server_name: files.server_name.map(str::to_string),
            sni,
            config: Arc::new(with_alpn(config)),
            client: OnceLock::new(),
        })
    }

    /// The client of these settings (made on first use).
    pub fn client(&self, opts: &ClientOptions) -> &HttpsClient {
        self.client.get_or_init(|| client(Some(self), opts))
    }

    /// The name verified and sent: `server_name`, or the URL's host.
    fn resolver(&self) -> Arc<dyn ResolveServerName + Send + Sync> {
        match &self.sni {
            Some(name) => Arc::new(FixedServerNameResolver::new(name.clone())),
            None => Arc::new(DefaultServerNameResolver::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_roots_are_never_empty() {
        assert!(!system_roots().is_empty());
    }

    #[test]
    fn server_name_is_checked_at_load() {
        let files = |name| TlsFiles {
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            server_name: Some(name),
        };
        let e = UpstreamTls::load(&files("bad name!")).unwrap_err();
        assert!(e.starts_with("server_name"), "{e}");
        for ok in ["backend.internal", "127.0.0.1", "[::1]"] {
            let tls = UpstreamTls::load(&files(ok)).unwrap();
            assert!(tls.sni.is_some());
            assert_eq!(tls.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        }
    }

    #[test]
    fn one_of_cert_and_key_is_refused() {
        let p = Path::new("/nonexistent.pem");
        let only_cert =
            TlsFiles { ca_file: None, client_cert_file: Some(p), client_key_file: None, server_name: None };
        assert!(UpstreamTls::load(&only_cert).unwrap_err().contains("client_key_file"));
        let only_key =
            TlsFiles { ca_file: None, client_cert_file: None, client_key_file: Some(p), server_name: None };
        assert!(UpstreamTls::load(&only_key).unwrap_err().contains("client_cert_file"));
    }
}
