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
use crate::event_log::{Filter, LogError, Recorder};
use crate::gateway::Gateway;
use crate::response::{json_response, Body};
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// One call to the admin API, its body read (bounded) and its caller authenticated.
pub struct ApiRequest<'a> {
    pub method: &'a Method,
    /// The path, starting `/api/`.
    pub path: &'a str,
    pub query: &'a str,
    pub body: Bytes,
    /// Who is calling, for the audit log of mutating calls: `token#N` (the index of the
    /// admin token used), or `loopback` when no token is configured.
    pub actor: &'a str,
}

/// Answers a call to the admin API.
pub async fn handle(gateway: &Arc<Gateway>, req: ApiRequest<'_>) -> Response<Body> {
    let events = &*gateway.events;
    let get = matches!(*req.method, Method::GET | Method::HEAD);
    match req.path.strip_prefix("/api/deliveries") {
        Some("" | "/") if get => return deliveries(events, req.query).await,
        Some(rest) => {
            if let Some(id) = rest.strip_prefix('/').filter(|id| !id.contains('/')) {
                if !get {
                    return method_not_allowed();
                }
                return match events.log.get(id).await {
                    Ok(Some(e)) => ok(&e),
                    Ok(None) => {
                        json_response(StatusCode::NOT_FOUND, r#"{"error":"no delivery with this id"}"#)
                    }
                    Err(e) => unavailable(e),
                };
            }
        }
        None => {}
    }
    match req.path {
        "/api/routes" | "/api/routes/" if get => routes(gateway).await,
        _ => json_response(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#),
    }
}

fn method_not_allowed() -> Response<Body> {
    json_response(StatusCode::METHOD_NOT_ALLOWED, r#"{"error":"method not allowed"}"#)
}

/// 503 for an event log that did not answer (its store is down).
fn unavailable(e: LogError) -> Response<Body> {
    tracing::warn!(error = %e, "admin API: the event log did not answer");
    let mut res = json_response(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"event log unavailable"}"#);
    res.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    res
}

fn ok(value: &impl serde::Serialize) -> Response<Body> {
    json_response(StatusCode::OK, serde_json::to_string(value).unwrap_or_default())
}

fn bad_request(message: String) -> Response<Body> {
    json_response(StatusCode::BAD_REQUEST, json!({ "error": message }).to_string())
}

/// `GET /api/deliveries`.
async fn deliveries(events: &Recorder, query: &str) -> Response<Body> {
    let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let filter = match filter(&params) {
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
async fn routes(gateway: &Gateway) -> Response<Body> {
    let mut routes: Vec<_> = gateway.routing().routes().collect();
    routes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut last_matches = Vec::with_capacity(routes.len());
    for r in &routes {
        match gateway.events.log.last_matches(&r.name).await {
            Ok(m) => last_matches.push(m),
            Err(e) => return unavailable(e),
        }
    }
    let all: Vec<_> = routes
        .iter()
        .zip(last_matches)
        .map(|(r, last)| {
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
