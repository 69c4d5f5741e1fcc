//! `GET /api/deliveries` and `GET /api/deliveries/{id}`.

mod diagnosis;

use super::replay::{refusal, route_of};
use super::{bad_request, ok, params, unavailable, ApiRequest};
use crate::event_log::{Capture, Event, Filter};
use crate::gateway::Gateway;
use crate::response::{json_response, Body};
use http::{Response, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;

/// `GET /api/deliveries`.
pub(super) async fn list(gateway: &Gateway, req: &ApiRequest<'_>) -> Response<Body> {
    let events = &*gateway.events;
    let filter = match filter(&params(req.query)) {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    let page = match events.log.list(&filter).await {
        Ok(p) => p,
        Err(e) => return unavailable(e),
    };
    let next = (page.len() == filter.page()).then(|| page.last().map(|e| e.id.clone())).flatten();
    ok(&json!({ "deliveries": page, "next": next }))
}

/// The listing's filter from its query parameters; an error names the one that is wrong.
pub(super) fn filter(params: &HashMap<String, String>) -> Result<Filter, String> {
    let text = |k: &str| params.get(k).filter(|v| !v.is_empty()).cloned();
    let since_ms = match params.get("since").filter(|v| !v.is_empty()) {
        None => None,
        Some(s) => Some(match s.parse::<u64>() {
            Ok(ms) => ms,
            Err(_) => humantime::parse_rfc3339(s)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64)
                .ok_or_else(|| format!("since: '{s}' is neither unix milliseconds nor an RFC 3339 time"))?,
        }),
    };
    let limit = match params.get("limit").filter(|v| !v.is_empty()) {
        None => 0,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=Filter::MAX_LIMIT).contains(&n) => n,
            _ => return Err(format!("limit: '{l}' is not a number from 1 to {}", Filter::MAX_LIMIT)),
        },
    };
    Ok(Filter {
        route: text("route"),
        outcome: text("outcome"),
        event_id: text("event_id"),
        since_ms,
        before: text("before"),
        limit,
    })
}

/// `GET /api/deliveries/{id}`: the event's fields, and `capture` (the request as captured,
/// `body` base64 and `body_text` when it is UTF-8; null when none is kept), `diagnosis` (the
/// verification re-run on the captured bytes with the route's current secrets, or the record
/// in plain words), `timeline` (every event with its key, oldest first: arrivals, queue
/// attempts, replays), `replayable` and `replay_refused_because`.
pub(super) async fn show(gateway: &Gateway, id: &str) -> Response<Body> {
    let log = &gateway.events.log;
    let event = match log.get(id).await {
        Ok(Some(e)) => e,
        Ok(None) => return json_response(StatusCode::NOT_FOUND, r#"{"error":"no delivery with this id"}"#),
        Err(e) => return unavailable(e),
    };
    let capture = match log.capture(id).await {
        Ok(c) => c,
        Err(e) => return unavailable(e),
    };
    let chain = match &event.event_key {
        Some(key) => {
            let filter =
                Filter { event_id: Some(key.clone()), limit: Filter::MAX_LIMIT, ..Filter::default() };
            match log.list(&filter).await {
                Ok(mut all) => {
                    // Listings are newest first; a key's own events only (not another key
                    // ending in this one).
                    all.retain(|e| e.event_key.as_deref() == Some(key.as_str()));
                    all.reverse();
                    all
                }
                Err(e) => return unavailable(e),
            }
        }
        None => vec![event.clone()],
    };
    let route = route_of(gateway, &event);
    let refused = refusal(&event, capture.as_ref(), route.as_ref());
    let diagnosis = diagnosis::run(&event, capture.as_ref(), route).await;
    let mut v = serde_json::to_value(&event).unwrap_or_default();
    v["capture"] = capture.as_ref().map_or(Value::Null, capture_json);
    v["diagnosis"] = diagnosis;
    v["timeline"] = Value::Array(chain.iter().map(|e| timeline_item(e, &event.id)).collect());
    v["replayable"] = refused.is_none().into();
    v["replay_refused_because"] = refused.map(|r| r.reason).into();
    ok(&v)
}

/// A capture as JSON: its fields (the body base64), and `body_text` when the body is UTF-8.
fn capture_json(c: &Capture) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    v["body_text"] = std::str::from_utf8(&c.body).ok().map(str::to_owned).into();
    v
}

/// One event of a delivery's timeline, with its steps in words.
fn timeline_item(e: &Event, this: &str) -> Value {
    let kind = if e.replay_of.is_some() {
        "replay"
    } else if matches!(&*e.outcome, "delivered" | "retry" | "dead") {
        "attempt"
    } else {
        "arrival"
    };
    json!({
        "id": e.id,
        "this": e.id == this,
        "kind": kind,
        "time_ms": e.time_ms,
        "outcome": e.outcome,
        "status": e.status,
        "upstream_status": e.upstream_status,
        "attempts": e.attempts,
        "request_id": e.request_id,
        "replay_of": e.replay_of,
        "steps": diagnosis::steps(e, kind),
    })
}
