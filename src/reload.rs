//! Putting a changed configuration in force: on SIGHUP, when a file it was read from changes
//! (the configuration, `secret_files`, the TLS certificate and key: a Kubernetes secret or a
//! cert-manager rotation applies without a signal), and on `POST /api/reload`. Each trigger
//! runs the same [`Reloader::reload`]: load and validate, then swap the routing table and the
//! certificate whole; a configuration that fails validation is refused, logged and counted,
//! and the running one stays.

use crate::config::Config;
use crate::gateway::{Gateway, Reload, Reloaded};
use crate::server::TlsHandle;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};

/// The error of a reload asked of a gateway that has stopped.
pub const STOPPED: &str = "the gateway has stopped";

/// Reloads one gateway's configuration from its file. Reloads run one at a time.
pub struct Reloader {
    path: PathBuf,
    gateway: Weak<Gateway>,
    tls: Option<TlsHandle>,
    running: tokio::sync::Mutex<()>,
    /// The contents' hash of the files the last reload (or the start) read, whether or not
    /// that reload was put in force: the watcher reloads only what no trigger has read yet.
    read: std::sync::Mutex<[u8; 32]>,
}

impl Reloader {
    /// Reloads `gateway` from `path`; `tls` is the listener's certificate, when it has one.
    /// The reloader holds the gateway weakly: it never keeps a stopped gateway alive.
    pub fn new(path: PathBuf, gateway: &Arc<Gateway>, tls: Option<TlsHandle>) -> Arc<Self> {
        let reloader = Reloader {
            path,
            gateway: Arc::downgrade(gateway),
            tls,
            running: tokio::sync::Mutex::new(()),
            read: std::sync::Mutex::new([0; 32]),
        };
        reloader.note_read();
        Arc::new(reloader)
    }

    /// Notes the files' contents as read now.
    fn note_read(&self) {
        let now = fingerprint(&self.watched_files());
        *self.read.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }

    /// True when the files' contents differ from what the last reload read.
    pub fn files_changed(&self) -> bool {
        let now = fingerprint(&self.watched_files());
        *self.read.lock().unwrap_or_else(|e| e.into_inner()) != now
    }

    /// The configuration file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The configuration file and every file it was read from (`Config::files`).
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.path.clone()];
        if let Some(g) = self.gateway.upgrade() {
            files.extend(g.routing().config.files.iter().cloned());
        }
        files
    }

    /// Loads the file again and puts it in force; `trigger` says why, for the log. An error
    /// says why it was refused (the running configuration stays).
    pub async fn reload(&self, trigger: &str) -> Result<Reloaded, String> {
        let _one_at_a_time = self.running.lock().await;
        let Some(gateway) = self.gateway.upgrade() else { return Err(STOPPED.into()) };
        // Read before loading: a change made while loading is seen by the next check.
        self.note_read();
        let loaded = Config::load(&self.path).map_err(|e| e.to_string()).and_then(|config| {
            let cert = match (&self.tls, &config.tls) {
                (Some(_), Some(files)) => Some(crate::tls::server_config(files)?),
                (None, Some(_)) => return Err("tls cannot be turned on by a reload; restart".into()),
                _ => None,
            };
            Ok((config, cert))
        });
        match loaded {
            Ok((config, cert)) => {
                let restart_needed = gateway.reload(&config);
                // The new configuration may read other files.
                self.note_read();
                if let (Some(handle), Some(cert)) = (&self.tls, cert) {
                    handle.store(cert);
                }
                tracing::info!(trigger, routes = config.routes.len(), "configuration reloaded");
                if !restart_needed.is_empty() {
                    tracing::warn!(changed = ?restart_needed, "these settings changed but take effect only after a restart");
                }
                Ok(Reloaded { routes: config.routes.len(), restart_needed })
            }
            Err(e) => {
                gateway.metrics.reloads_failed.fetch_add(1, Relaxed);
                tracing::error!(trigger, error = %e, "reload refused; the running configuration stays in force");
                Err(e)
            }
        }
    }
}

impl Reload for Reloader {
    fn reload<'a>(
        &'a self,
        trigger: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reloaded, String>> + Send + 'a>> {
        Box::pin(Reloader::reload(self, trigger))
    }
}

/// On SIGHUP, reloads. The handler is installed before this returns: a SIGHUP sent once the
/// gateway has announced itself reloads instead of ending the process.
pub fn on_sighup(reloader: Arc<Reloader>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reloads by signal are off");
            return;
        };
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let _ = reloader.reload("SIGHUP").await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = reloader;
}

/// A hash of the files' contents (a missing or unreadable file hashes as such), read through
/// symlinks.
fn fingerprint(files: &[PathBuf]) -> [u8; 32] {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.as_os_str().as_encoded_bytes());
        match std::fs::read(f) {
            Ok(bytes) => {
                h.update([1]);
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
            Err(_) => h.update([0]),
        }
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_changes_with_contents_not_with_reading() {
        let dir = std::env::temp_dir().join(format!("portcullis-fp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a");
        std::fs::write(&a, "one").unwrap();
        let files = vec![a.clone(), dir.join("missing")];
        let first = fingerprint(&files);
        assert_eq!(first, fingerprint(&files));
        std::fs::write(&a, "two").unwrap();
        assert_ne!(first, fingerprint(&files));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
