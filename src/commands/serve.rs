//! `portcullis serve`: bind the configured listeners, start the gateway
//! ([`crate::runtime::start`]), reload on SIGHUP, drain and exit 0 on SIGTERM or Ctrl-C.

use crate::clock::Clock;
use crate::config::Config;
use crate::runtime::{self, Listeners};
use crate::shutdown::Shutdown;
use anyhow::Context;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::net::TcpListener;

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let webhook =
            TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
        let admin = match config.admin {
            Some(addr) => {
                Some(TcpListener::bind(addr).await.with_context(|| format!("binding admin {addr}"))?)
            }
            None => None,
        };
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(arc_swap::ArcSwap::new(
                crate::tls::server_config(files).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            ))),
            None => None,
        };
        let shutdown = Shutdown::new();
        shutdown.on_signals().context("installing the SIGTERM handler")?;
        let running =
            runtime::start(&config, Clock::System, Listeners { webhook, admin }, tls.clone(), shutdown)
                .await?;
        running.reload_on_change(path.to_path_buf(), tls.clone());
        if super::json_logs() {
            // JSON logs: stderr carries JSON lines only, so the summary is log events.
            super::check::log_summary(&config);
            if let Some(admin_addr) = running.admin {
                tracing::info!(admin = %admin_addr, "admin listener: /healthz /readyz /metrics /api");
            }
        } else {
            crate::err!("{}", super::check::summary(&config));
            if let Some(admin_addr) = running.admin {
                crate::errln!("admin http://{admin_addr} (/healthz /readyz /metrics)");
            }
        }
        if let Some(admin_addr) = running.admin {
            // On stdout too, before `listening on`, for scripts and tests that bind port 0.
            let _ = crate::outln!("admin listening on {admin_addr}");
        }
        tracing::info!(
            listen = %running.addr,
            store = running.gateway.store.kind(),
            tls = tls.is_some(),
            "portcullis is serving"
        );
        // One line on stdout for scripts and tests that bind port 0.
        // A closed stdout does not stop the gateway: the line is for whoever reads it.
        let _ = crate::outln!("listening on {}", running.addr);
        // Queued deliveries not yet acknowledged stay pending in Redis for another instance.
        running.stopped().await?;
        Ok(ExitCode::SUCCESS)
    })
}
