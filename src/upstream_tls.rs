//! The TLS of HTTPS upstreams: `upstream_tls: {ca_file, client_cert_file, client_key_file,
//! server_name}` loaded into a rustls client configuration. STUB: the helper building it
//! replaces this file.

use std::path::Path;

/// A route's `upstream_tls:`, loaded. Its `Debug` shows no key material.
pub struct UpstreamTls {
    pub server_name: Option<String>,
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
        Ok(UpstreamTls { server_name: files.server_name.map(str::to_string) })
    }
}
