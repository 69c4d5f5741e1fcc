//! The admin API (`/api/*` on the admin listener), JSON for the operator's console:
//!
//! - `GET /api/deliveries?route=&outcome=&event_id=&since=&before=&limit=`: recorded
//!   deliveries, newest first; `next` is the cursor (`before=`) of the next page;
//! - `GET /api/deliveries/{id}`: one delivery (404 once it has left the log);
//! - `GET /api/routes`: each route's path, provider, upstream (password hidden), delivery
//!   mode, and its secrets' expiries and last matches. Never a secret.
//!
//! The bearer token is checked by [`crate::admin`] before anything here runs.

use crate::config::redact_url;
use crate::event_log::{Filter, Recorder};
use crate::gateway::Gateway;
use crate::response::{json_response, Body};
use http::{Response, StatusCode};
use serde_json::json;
use std::collections::HashMap;

/// Answers a GET of `path` (under `/api`), with the query string `query`.
pub fn handle(gateway: &Gateway, path: &str, query: &str) -> Response<Body> {
    let events = &*gateway.events;
    match path.strip_prefix("/api/deliveries") {
        Some("" | "/") => return deliveries(events, query),
        Some(rest) => {
            if let Some(id) = rest.strip_prefix('/').filter(|id| !id.contains('/')) {
                return match events.log.get(id) {
                    Some(e) => ok(&e),
                    None => json_response(StatusCode::NOT_FOUND, r#"{"error":"no delivery with this id"}"#),
                };
            }
        }
        None => {}
    }
    match path {
        "/api/routes" | "/api/routes/" => routes(gateway),
        _ => json_response(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#),
    }
}

fn ok(value: &impl serde::Serialize) -> Response<Body> {
    json_response(StatusCode::OK, serde_json::to_string(value).unwrap_or_default())
}

fn bad_request(message: String) -> Response<Body> {
    json_response(StatusCode::BAD_REQUEST, json!({ "error": message }).to_string())
}

/// `GET /api/deliveries`.
fn deliveries(events: &Recorder, query: &str) -> Response<Body> {
    let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let filter = match filter(&params) {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    let page = events.log.list(&filter);
    let next = (page.len() == filter.page()).then(|| page.last().map(|e| e.id.clone())).flatten();
    ok(&json!({ "deliveries": page, "next": next }))
}

/// The listing's filter from its query parameters; an error names the one that is wrong.
fn filter(params: &HashMap<String, String>) -> Result<Filter, String> {
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

/// `GET /api/routes`: what each route is, never its secrets.
fn routes(gateway: &Gateway) -> Response<Body> {
    let mut routes: Vec<_> = gateway.routing().routes().collect();
    routes.sort_by(|a, b| a.name.cmp(&b.name));
    let all: Vec<_> = routes
        .iter()
        .map(|r| {
            let last = gateway.events.log.last_matches(&r.name);
            let expiries = r.verifier.secret_expiries();
            let secrets: Vec<_> = expiries
                .iter()
                .enumerate()
                .map(|(index, exp)| {
                    let expires_at = exp.map(|s| {
                        humantime::format_rfc3339_seconds(
                            std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
                        )
                        .to_string()
                    });
                    let last_matched_ms = last.iter().find(|m| m.index == index).map(|m| m.time_ms);
                    json!({ "index": index, "expires_at": expires_at, "last_matched_ms": last_matched_ms })
                })
                .collect();
            json!({
                "name": r.name,
                "path": r.path,
                "provider": r.provider(),
                "upstream": redact_url(&r.upstream.url),
                "delivery": match r.queue { Some(_) => "queued", None => "sync" },
                "selector": r.selector.as_ref().map(|(h, v)| json!({ "header": h.as_str(), "value": v })),
                "methods": r.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
                "secrets_count": expiries.len(),
                "secrets": secrets,
            })
        })
        .collect();
    ok(&json!({ "routes": all }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_query_parameters_are_named() {
        let p = |k: &str, v: &str| HashMap::from([(k.to_string(), v.to_string())]);
        assert!(filter(&p("limit", "0")).unwrap_err().starts_with("limit:"));
        assert!(filter(&p("limit", "x")).unwrap_err().starts_with("limit:"));
        assert!(filter(&p("since", "yesterday")).unwrap_err().starts_with("since:"));
        assert_eq!(filter(&p("since", "1970-01-01T00:00:01Z")).unwrap().since_ms, Some(1000));
        assert_eq!(filter(&p("since", "1500")).unwrap().since_ms, Some(1500));
        assert_eq!(filter(&p("limit", "5")).unwrap().page(), 5);
    }
}
