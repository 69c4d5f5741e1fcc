//! `portcullis check`: validate a configuration and print what it holds.

use crate::config::{redact_url, Config, StoreKind};
use http::Method;
use std::path::Path;
use std::process::ExitCode;

fn describe_store(kind: &StoreKind) -> String {
    match kind {
        StoreKind::Memory { max_keys } => {
            format!("memory (at most {max_keys} keys; forgotten on restart)")
        }
        StoreKind::Embedded { path } => format!("embedded ({})", path.display()),
        StoreKind::Redis { url } => format!("redis ({})", redact_url(url)),
        StoreKind::RedisCluster { nodes } => {
            format!("redis-cluster ({})", nodes.iter().map(|n| redact_url(n)).collect::<Vec<_>>().join(", "))
        }
    }
}

pub(super) fn summary(config: &Config) -> String {
    let mut out = format!(
        "listen {}{}\nstore {}\nadmin {}\nroutes:\n",
        config.listen,
        if config.tls.is_some() { " (tls)" } else { "" },
        describe_store(&config.store.kind),
        config.admin.map(|a| a.to_string()).unwrap_or_else(|| "off".into())
    );
    for r in &config.routes {
        out.push_str(&format!(
            "  {}{} [{}] -> {} (provider {}, max body {} B, timeout {}, ttl {})\n",
            r.path,
            r.selector.as_ref().map(|(h, v)| format!(" when {h}: {v}")).unwrap_or_default(),
            r.methods.iter().map(Method::as_str).collect::<Vec<_>>().join(","),
            destinations(r),
            r.provider(),
            r.max_body,
            humantime::format_duration(r.upstream_timeout),
            humantime::format_duration(r.ttl),
        ));
    }
    out
}

/// A route's destinations in one line: the upstream's URL for a plain route, else each one
/// (`name: kind url …`), separated by `; `.
fn destinations(r: &crate::config::Route) -> String {
    match r.direct() {
        Some(h) => redact_url(&h.upstream.url).into_owned(),
        None => r.destinations.iter().map(|d| d.describe()).collect::<Vec<_>>().join("; "),
    }
}

/// The summary as log events, one per route, for JSON logs.
pub(super) fn log_summary(config: &Config) {
    tracing::info!(
        listen = %config.listen,
        tls = config.tls.is_some(),
        store = describe_store(&config.store.kind),
        admin = config.admin.map(|a| a.to_string()),
        routes = config.routes.len(),
        "configuration loaded"
    );
    for r in &config.routes {
        tracing::info!(
            route = r.name,
            path = r.path,
            selector = r.selector.as_ref().map(|(h, v)| format!("{h}: {v}")),
            methods = r.methods.iter().map(Method::as_str).collect::<Vec<_>>().join(","),
            destinations = %destinations(r),
            provider = r.provider(),
            max_body = r.max_body,
            timeout_ms = r.upstream_timeout.as_millis() as u64,
            ttl_secs = r.ttl.as_secs(),
            "route"
        );
    }
}

/// Validates the configuration and reads the TLS certificate and key with the loader `serve`
/// uses, so a missing or mismatched file is found here rather than at start; with `connect`,
/// also reaches the store and the upstreams ([`super::connect`]) and exits 1 when any fails.
pub fn run(path: &Path, connect: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    if let Some(files) = &config.tls {
        crate::tls::server_config(files).map_err(anyhow::Error::msg)?;
    }
    crate::out!("{}", summary(&config))?;
    if let Some(files) = &config.tls {
        crate::outln!("tls {} + {}: ok", files.cert_file.display(), files.key_file.display())?;
    }
    if connect {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let found = runtime.block_on(super::connect::reach(&config));
        let failed = found.iter().filter(|f| f.result.is_err()).count();
        for f in &found {
            crate::outln!("{f}")?;
        }
        if failed > 0 {
            crate::outln!("failed: {failed} of {} checks", found.len())?;
            return Ok(ExitCode::FAILURE);
        }
    }
    crate::outln!("ok: {} routes valid", config.routes.len())?;
    Ok(ExitCode::SUCCESS)
}
