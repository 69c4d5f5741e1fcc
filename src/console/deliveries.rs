//! `GET /api/deliveries` and `GET /api/deliveries/{id}`.

use super::{bad_request, ok, params, unavailable, ApiRequest};
use crate::event_log::Filter;
use crate::gateway::Gateway;
use crate::response::{json_response, Body};
use http::{Response, StatusCode};
use serde_json::json;
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

/// `GET /api/deliveries/{id}`.
pub(super) async fn show(gateway: &Gateway, id: &str) -> Response<Body> {
    match gateway.events.log.get(id).await {
        Ok(Some(e)) => ok(&e),
        Ok(None) => json_response(StatusCode::NOT_FOUND, r#"{"error":"no delivery with this id"}"#),
        Err(e) => unavailable(e),
    }
}
