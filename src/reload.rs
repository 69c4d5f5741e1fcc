//! SIGHUP: load the configuration file again and put it in force, or refuse it and keep the
//! running one.

use crate::config::Config;
use crate::gateway::Gateway;
use crate::server::TlsHandle;
use std::path::PathBuf;
use std::sync::Arc;

/// On SIGHUP, loads the configuration again and puts it in force; a configuration that
/// fails validation is refused, logged and counted, and the running one stays. The handler
/// is installed before this returns: a SIGHUP sent once the gateway has announced itself
/// reloads instead of ending the process.
pub fn on_sighup(path: PathBuf, gateway: Arc<Gateway>, tls: Option<TlsHandle>) {
    #[cfg(unix)]
    {
        let Ok(hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reloads are off");
            return;
        };
        tokio::spawn(reload_loop(hup, path, gateway, tls));
    }
    #[cfg(not(unix))]
    let _ = (path, gateway, tls);
}

#[cfg(unix)]
async fn reload_loop(
    mut hup: tokio::signal::unix::Signal,
    path: PathBuf,
    gateway: Arc<Gateway>,
    tls: Option<TlsHandle>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    while hup.recv().await.is_some() {
        let loaded = Config::load(&path).map_err(|e| e.to_string()).and_then(|config| {
            let cert = match (&tls, &config.tls) {
                (Some(_), Some(files)) => Some(crate::tls::server_config(files)?),
                (None, Some(_)) => return Err("tls cannot be turned on by a reload; restart".into()),
                _ => None,
            };
            Ok((config, cert))
        });
        match loaded {
            Ok((config, cert)) => {
                let ignored = gateway.reload(&config);
                if let (Some(handle), Some(cert)) = (&tls, cert) {
                    handle.store(cert);
                }
                tracing::info!(routes = config.routes.len(), "configuration reloaded");
                if !ignored.is_empty() {
                    tracing::warn!(changed = ?ignored, "these settings changed but take effect only after a restart");
                }
            }
            Err(e) => {
                gateway.metrics.reloads_failed.fetch_add(1, Relaxed);
                tracing::error!(error = %e, "reload refused; the running configuration stays in force");
            }
        }
    }
}
