//! `portcullis deliveries list|show|replay`: the deliveries a running gateway recorded in its
//! event log, through its admin API (`/api/deliveries*`). Tables and readable detail by
//! default; `--json` prints the API's JSON.

use super::admin_client::{cell, print_detail, print_json, print_table, query, segment, time, AdminClient};
use crate::cli::{AdminArgs, DeliveriesCommand};
use http::Method;
use serde_json::json;
use std::process::ExitCode;

/// `portcullis deliveries …`.
pub fn run(admin: &AdminArgs, command: DeliveriesCommand) -> anyhow::Result<ExitCode> {
    let client = AdminClient::new(&admin.admin, admin.token_file.as_deref())?;
    let v = match &command {
        DeliveriesCommand::List { route, outcome, event_id, since, before, limit } => {
            let limit = limit.map(|n| n.to_string());
            let q = query([
                ("route", route.as_deref()),
                ("outcome", outcome.as_deref()),
                ("event_id", event_id.as_deref()),
                ("since", since.as_deref()),
                ("before", before.as_deref()),
                ("limit", limit.as_deref()),
            ]);
            client.get(&format!("/api/deliveries{q}"))?
        }
        DeliveriesCommand::Show { id } => client.get(&format!("/api/deliveries/{}", segment(id)))?,
        DeliveriesCommand::Replay { id, force } => client.call(
            Method::POST,
            &format!("/api/deliveries/{}/replay", segment(id)),
            Some(&json!({ "force": force })),
        )?,
    };
    if admin.json {
        print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    match command {
        DeliveriesCommand::List { .. } => list(&v)?,
        DeliveriesCommand::Show { .. } => print_detail(&v)?,
        DeliveriesCommand::Replay { id, .. } => {
            crate::outln!(
                "replayed {id}: {} (status {}, upstream {})",
                cell(&v["outcome"]),
                cell(&v["status"]),
                cell(&v["upstream_status"])
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The listing as a table, and how to get the next page.
fn list(v: &serde_json::Value) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = v["deliveries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            vec![
                time(&d["time_ms"]),
                cell(&d["id"]),
                cell(&d["route"]),
                cell(&d["outcome"]),
                cell(&d["status"]),
                cell(&d["upstream_status"]),
                cell(&d["attempts"]),
                cell(&d["event_key"]),
            ]
        })
        .collect();
    print_table(&["TIME", "ID", "ROUTE", "OUTCOME", "STATUS", "UPSTREAM", "ATTEMPTS", "EVENT KEY"], &rows)?;
    if let Some(next) = v["next"].as_str() {
        crate::outln!("(more: --before {next})")?;
    }
    Ok(())
}
