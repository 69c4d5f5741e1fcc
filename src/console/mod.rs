//! The admin API (`/api/*` on the admin listener), JSON for the operator's console and the
//! `deliveries` and `queue` commands:
//!
//! - `GET /api/deliveries?route=&outcome=&event_id=&since=&before=&limit=`: recorded
//!   deliveries, newest first; `next` is the cursor (`before=`) of the next page;
//! - `GET /api/deliveries/{id}`: one delivery, its captured request, diagnosis and timeline
//!   (404 once it has left the log);
//! - `POST /api/deliveries/{id}/replay`: sends a captured, verified delivery again;
//! - `GET /api/dead-letters[?route=]`, `GET /api/dead-letters/{id}`,
//!   `POST /api/dead-letters/{id}/replay`, `DELETE /api/dead-letters/{id}`,
//!   `POST /api/dead-letters/replay[?route=]`, `POST /api/dead-letters/purge[?route=]`;
//! - `GET /api/queue`: depth, oldest age, in retry and dead, per queued route;
//! - `GET /api/stats?minutes=60`: outcomes per minute per route;
//! - `GET /api/routes`: each route's path, provider, upstream (password hidden), delivery
//!   mode, and its secrets' expiries and last matches. Never a secret;
//! - `POST /api/reload`: the configuration file put in force again, as on SIGHUP.
//!
//! # Layout
//! - this file: the dispatch and the answers every endpoint shares;
//! - `deliveries`: the listing and one delivery; `replay`: sending one again;
//! - `dead`: dead letters and the queue's stats; `stats`: the outcome chart's counts;
//! - `routes`: the routes and their secrets' rotation state.
//!
//! The caller is authenticated by [`crate::admin`] before anything here runs; each mutating
//! call is logged with its actor.

mod dead;
mod deliveries;
mod replay;
mod routes;
mod stats;

use crate::event_log::LogError;
use crate::gateway::Gateway;
use crate::response::{json_response, Body};
use bytes::Bytes;
use http::{Method, Response, StatusCode};
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
    let get = matches!(*req.method, Method::GET | Method::HEAD);
    let post = *req.method == Method::POST;
    let delete = *req.method == Method::DELETE;
    let path = req.path.trim_end_matches('/');
    let segments: Vec<&str> = path.trim_start_matches("/api/").split('/').collect();
    match segments.as_slice() {
        ["deliveries"] if get => deliveries::list(gateway, &req).await,
        ["deliveries", id] if get => deliveries::show(gateway, id).await,
        ["deliveries", id, "replay"] if post => replay::replay(gateway, id, &req).await,
        ["dead-letters"] if get => dead::list(gateway, &req).await,
        ["dead-letters", "replay"] if post => dead::replay_all(gateway, &req).await,
        ["dead-letters", "purge"] if post => dead::purge_all(gateway, &req).await,
        ["dead-letters", id] if get => dead::show(gateway, id, &req).await,
        ["dead-letters", id] if delete => dead::purge(gateway, id, &req).await,
        ["dead-letters", id, "replay"] if post => dead::replay(gateway, id, &req).await,
        ["queue"] if get => dead::stats(gateway, &req).await,
        ["stats"] if get => stats::outcomes(gateway, &req).await,
        ["routes"] if get => routes::list(gateway).await,
        ["reload"] if post => reload(gateway, &req).await,
        ["deliveries" | "dead-letters" | "queue" | "stats" | "routes" | "reload"]
        | ["deliveries" | "dead-letters", _]
        | ["deliveries" | "dead-letters", _, "replay"] => method_not_allowed(),
        _ => json_response(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#),
    }
}

/// `POST /api/reload`: loads the configuration file again, as SIGHUP does. 200 with what
/// changed; 422 with the reason when it is refused (the running configuration stays).
async fn reload(gateway: &Gateway, req: &ApiRequest<'_>) -> Response<Body> {
    let Some(reloader) = gateway.reloader.get() else {
        return json_response(
            StatusCode::NOT_FOUND,
            r#"{"error":"this gateway was not started from a configuration file"}"#,
        );
    };
    tracing::info!(actor = req.actor, action = "reload", "admin action");
    match reloader.reload("the admin API").await {
        Ok(r) => json_response(
            StatusCode::OK,
            serde_json::json!({ "reloaded": true, "routes": r.routes, "restart_needed": r.restart_needed })
                .to_string(),
        ),
        Err(e) => json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            serde_json::json!({ "reloaded": false, "error": e }).to_string(),
        ),
    }
}

/// The query string's parameters (the last of a repeated one wins).
fn params(query: &str) -> HashMap<String, String> {
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
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
    json_response(StatusCode::BAD_REQUEST, serde_json::json!({ "error": message }).to_string())
}

#[cfg(test)]
mod tests {
    use super::deliveries::filter;
    use std::collections::HashMap;

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
