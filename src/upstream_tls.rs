//! The HTTP(S) client of upstreams and its TLS: the system's roots for `https://`, and a
//! route's `upstream_tls: {ca_file, client_cert_file, client_key_file, server_name}` loaded
//! into a rustls client configuration of its own. A leaf: `config` and `forward` both use it.
//! STUB: the helper building it replaces this file (the names stay).

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// The pooled client every upstream is reached with (`http://` and `https://`).
pub type HttpsClient = Client<HttpConnector, Full<Bytes>>;

/// How a client's connections behave (from `limits:`).
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    pub max_idle_per_host: usize,
}

/// A client with the system's roots (`tls` `None`) or with a route's own TLS settings.
pub fn client(_tls: Option<&UpstreamTls>, opts: &ClientOptions) -> HttpsClient {
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(opts.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(opts.max_idle_per_host)
        .build(http)
}

/// A route's `upstream_tls:`, loaded. Its `Debug` shows no key material.
pub struct UpstreamTls {
    pub server_name: Option<String>,
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

impl UpstreamTls {
    /// Reads and checks the files (PEM; a certificate without its key, or a key of another
    /// certificate, is an error naming the field).
    pub fn load(files: &TlsFiles<'_>) -> Result<UpstreamTls, String> {
        Ok(UpstreamTls { server_name: files.server_name.map(str::to_string), client: OnceLock::new() })
    }

    /// The client of these settings (made on first use).
    pub fn client(&self, opts: &ClientOptions) -> &HttpsClient {
        self.client.get_or_init(|| client(Some(self), opts))
    }
}
