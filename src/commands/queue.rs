//! `portcullis queue …`: the delivery queue's stats and dead letters (list, show, replay,
//! purge), asked of a running gateway's admin API (`/api/queue`, `/api/dead-letters*`).
//! Tables by default; `--json` prints the API's JSON.

use super::admin_client::{cell, print_detail, print_json, print_table, query, segment, time, AdminClient};
use super::Usage;
use crate::cli::{AdminArgs, DeadCommand, QueueCommand};
use http::Method;
use std::process::ExitCode;

/// `portcullis queue …`.
pub fn run(admin: &AdminArgs, route: Option<&str>, command: QueueCommand) -> anyhow::Result<ExitCode> {
    let client = AdminClient::new(&admin.admin, admin.token_file.as_deref())?;
    let q = query([("route", route)]);
    let (v, human): (serde_json::Value, fn(&serde_json::Value) -> anyhow::Result<()>) = match command {
        QueueCommand::Stats => (client.get(&format!("/api/queue{q}"))?, stats),
        QueueCommand::Dead { command: DeadCommand::List } => {
            (client.get(&format!("/api/dead-letters{q}"))?, dead_list)
        }
        QueueCommand::Show { id } => {
            (client.get(&format!("/api/dead-letters/{}{q}", segment(&id)))?, dead_detail)
        }
        QueueCommand::Replay { id, all } => {
            let path = match (id, all) {
                (Some(id), false) => format!("/api/dead-letters/{}/replay{q}", segment(&id)),
                (None, true) => format!("/api/dead-letters/replay{q}"),
                _ => return Err(Usage("queue replay: give an ID or --all".into()).into()),
            };
            (client.call(Method::POST, &path, None)?, done)
        }
        QueueCommand::Purge { id, all } => {
            let (method, path) = match (id, all) {
                (Some(id), false) => (Method::DELETE, format!("/api/dead-letters/{}{q}", segment(&id))),
                (None, true) => (Method::POST, format!("/api/dead-letters/purge{q}")),
                _ => return Err(Usage("queue purge: give --id ID or --all".into()).into()),
            };
            (client.call(method, &path, None)?, done)
        }
    };
    if admin.json {
        print_json(&v)?;
    } else {
        human(&v)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn stats(v: &serde_json::Value) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = v["queues"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            ["route", "depth", "in_retry", "dead", "oldest_age_secs"].iter().map(|k| cell(&s[*k])).collect()
        })
        .collect();
    print_table(&["ROUTE", "DEPTH", "IN RETRY", "DEAD", "OLDEST (s)"], &rows)
}

fn dead_list(v: &serde_json::Value) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = v["dead_letters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            ["id", "route", "event_id", "attempts", "age_secs", "last_error"]
                .iter()
                .map(|k| cell(&d[*k]))
                .collect()
        })
        .collect();
    print_table(&["ID", "ROUTE", "EVENT", "ATTEMPTS", "AGE (s)", "LAST ERROR"], &rows)
}

/// A dead letter: its fields, its headers one a line, and its body as text (or its size).
fn dead_detail(v: &serde_json::Value) -> anyhow::Result<()> {
    let mut fields = v.clone();
    let request = fields.as_object_mut().and_then(|m| m.remove("request")).unwrap_or_default();
    for k in ["dead_at_ms", "first_seen_ms"] {
        if fields[k].is_u64() {
            fields[k] = time(&fields[k]).into();
        }
    }
    print_detail(&fields)?;
    let query = request["query"].as_str().map(|q| format!(" ?{q}")).unwrap_or_default();
    crate::outln!("request: {}{query}", cell(&request["method"]))?;
    for h in request["headers"].as_array().into_iter().flatten() {
        crate::outln!("  {}: {}", cell(&h[0]), cell(&h[1]))?;
    }
    match request["body_text"].as_str() {
        Some(text) => crate::outln!("\n{text}")?,
        None => crate::outln!(
            "\n<{} bytes, not UTF-8: --json shows them in base64>",
            cell(&request["body_bytes"])
        )?,
    }
    Ok(())
}

/// `{"replayed": n}` or `{"purged": n}`.
fn done(v: &serde_json::Value) -> anyhow::Result<()> {
    for (k, n) in v.as_object().into_iter().flatten() {
        crate::outln!("{k} {n} dead letter{}", if n.as_u64() == Some(1) { "" } else { "s" })?;
    }
    Ok(())
}
