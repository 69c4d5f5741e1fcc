//! `portcullis queue …`: the delivery queue's stats, dead letters and replays, asked of a
//! running gateway's admin listener. With `PORTCULLIS_ADMIN_TOKEN` set, it is sent as the
//! bearer token (the environment, not a flag: a flag shows in the process list).

use super::Usage;
use crate::cli::{DeadCommand, QueueCommand};
use anyhow::Context;
use http::Method;
use std::process::ExitCode;

/// `portcullis queue …`: asks a running gateway's admin listener.
pub fn run(admin: &str, route: Option<&str>, command: QueueCommand) -> anyhow::Result<ExitCode> {
    let mut query: Vec<(String, String)> =
        route.map(|r| vec![("route".into(), r.to_string())]).unwrap_or_default();
    let (method, path) = match command {
        QueueCommand::Stats => (Method::GET, "/queue"),
        QueueCommand::Dead { command: DeadCommand::List } => (Method::GET, "/queue/dead"),
        QueueCommand::Replay { id, all } => {
            match (id, all) {
                (Some(id), false) => query.push(("id".into(), id)),
                (None, true) => query.push(("all".into(), "1".into())),
                _ => return Err(Usage("queue replay: give an ID or --all".into()).into()),
            }
            (Method::POST, "/queue/replay")
        }
    };
    let qs = form_urlencoded::Serializer::new(String::new()).extend_pairs(query).finish();
    let url = format!("{}{path}{}{qs}", admin.trim_end_matches('/'), if qs.is_empty() { "" } else { "?" });
    let uri: http::Uri = url.parse().map_err(|_| Usage(format!("--admin: '{admin}' is not a URL")))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (status, body) = runtime.block_on(async move {
        use http_body_util::{BodyExt, Full};
        let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let mut req = http::Request::builder().method(method).uri(uri);
        if let Some(token) = std::env::var("PORTCULLIS_ADMIN_TOKEN").ok().filter(|t| !t.is_empty()) {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req.body(Full::default())?;
        let res =
            client.request(req).await.with_context(|| format!("reaching the admin listener at {admin}"))?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    })?;
    let text = String::from_utf8_lossy(&body);
    let json = serde_json::from_slice::<serde_json::Value>(&body).ok();
    if !status.is_success() {
        // The admin listener's reason (e.g. "no dead letter with id …"), on stderr; exit 1.
        let reason = json.as_ref().and_then(|v| v["error"].as_str()).map(str::to_string);
        anyhow::bail!("{} ({status})", reason.unwrap_or_else(|| text.trim().to_string()));
    }
    match json {
        Some(v) => crate::outln!("{}", serde_json::to_string_pretty(&v)?)?,
        None => crate::outln!("{text}")?,
    }
    Ok(ExitCode::SUCCESS)
}
