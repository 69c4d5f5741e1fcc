//! Dead letters of `delivery: queued` routes, and the queue's stats:
//!
//! - `GET /api/dead-letters[?route=R]` → `{"dead_letters":[…]}`;
//! - `GET /api/dead-letters/{id}[?route=R]` → the letter and the request it holds;
//! - `POST /api/dead-letters/{id}/replay`, `POST /api/dead-letters/replay[?route=R]` → back
//!   to the queue with their attempts reset, `{"replayed":n}` (404 when none);
//! - `DELETE /api/dead-letters/{id}`, `POST /api/dead-letters/purge[?route=R]` → deleted for
//!   good, `{"purged":n}` (404 when none);
//! - `GET /api/queue[?route=R]` → `{"queues":[…]}`, per queued route.
//!
//! A letter's id is the one the backend gave it (a stream id in Redis, a sequence number in
//! the embedded queue); without `?route=` every queued route is searched for it, and an id
//! found in more than one route is refused (409 naming them: give `?route=`). The backend
//! makes a replay and a purge of one letter exclusive (one script, one transaction), so the
//! two racing neither lose nor duplicate it. Every mutating call is logged with its actor.

use super::{ok, params, ApiRequest};
use crate::gateway::Gateway;
use crate::queue::{DeadLetter, Item, Queue};
use crate::response::{json_response, Body};
use crate::store_conn::StoreError;
use crate::verify::mac::Algorithm;
use base64::Engine;
use http::{Response, StatusCode};
use serde_json::json;
use std::sync::Arc;

/// What a header holding a secret shows instead of its value.
const REDACTED: &str = "<redacted>";

/// 503 for a queue that did not answer (its store is down).
fn unavailable(e: StoreError) -> Response<Body> {
    tracing::warn!(error = %e, "admin API: the delivery queue did not answer");
    let mut res = json_response(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"queue unavailable"}"#);
    res.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    res
}

fn not_found(message: String) -> Response<Body> {
    json_response(StatusCode::NOT_FOUND, json!({ "error": message }).to_string())
}

/// What a call is about: the queue and its queued routes (`?route=R`: that one only).
enum Scope {
    /// The queue and the routes, sorted by name.
    Routes(Arc<Queue>, Vec<String>),
    /// No route is queued: there is no queue.
    NoQueue,
    /// `?route=R` names no queued route (answered 404).
    UnknownRoute(String),
}

fn scope(gateway: &Gateway, req: &ApiRequest<'_>) -> Scope {
    let wanted = params(req.query).remove("route").filter(|r| !r.is_empty());
    let mut routes: Vec<String> =
        gateway.routing().routes().filter(|r| r.queue.is_some()).map(|r| r.name.clone()).collect();
    routes.sort();
    if let Some(w) = wanted {
        if !routes.contains(&w) {
            return Scope::UnknownRoute(w);
        }
        routes.retain(|r| *r == w);
    }
    match gateway.queue.clone() {
        Some(q) => Scope::Routes(q, routes),
        None => Scope::NoQueue,
    }
}

/// The scope's queue and routes; otherwise the answer: `empty` when there is no queue, 404
/// for an unknown route.
macro_rules! routes_or {
    ($gateway:expr, $req:expr, $empty:expr) => {
        match scope($gateway, $req) {
            Scope::Routes(q, routes) => (q, routes),
            Scope::NoQueue => return $empty,
            Scope::UnknownRoute(r) => return not_found(format!("no queued route named {r}")),
        }
    };
}

/// What looking a dead letter up by its id found.
enum Found {
    None,
    /// The route holding it, and the letter.
    One(String, DeadLetter, Box<Item>),
    /// The routes that each hold a letter of that id: a letter's id is unique only within
    /// its route (Redis stream ids are per stream), so the call must name the route.
    Several(Vec<String>),
}

/// The dead letter `id` among `routes`: every route is searched, so that an id two routes
/// share is never taken for the first one's.
async fn find(queue: &Queue, routes: &[String], id: &str) -> Result<Found, StoreError> {
    let mut found = Found::None;
    for r in routes {
        if let Some((letter, item)) = queue.dead_letter(r, id).await? {
            found = match found {
                Found::None => Found::One(r.clone(), letter, Box::new(item)),
                Found::One(first, ..) => Found::Several(vec![first, r.clone()]),
                Found::Several(mut all) => {
                    all.push(r.clone());
                    Found::Several(all)
                }
            };
        }
    }
    Ok(found)
}

/// 409 for an id held by a dead letter in each of `routes`: `?route=` must say which.
fn ambiguous(id: &str, routes: &[String]) -> Response<Body> {
    json_response(
        StatusCode::CONFLICT,
        json!({
            "error": format!(
                "dead letters with id {id} are in several routes ({}); give ?route= to say which",
                routes.join(", ")
            ),
            "routes": routes,
        })
        .to_string(),
    )
}

/// `GET /api/dead-letters`.
pub(super) async fn list(gateway: &Gateway, req: &ApiRequest<'_>) -> Response<Body> {
    let (queue, routes) = routes_or!(gateway, req, ok(&json!({ "dead_letters": [] })));
    let mut all = Vec::new();
    for r in &routes {
        match queue.dead_letters(r).await {
            Ok(d) => all.extend(d),
            Err(e) => return unavailable(e),
        }
    }
    ok(&json!({ "dead_letters": all }))
}

/// `GET /api/dead-letters/{id}`: the letter and its request as queued (headers, body).
pub(super) async fn show(gateway: &Gateway, id: &str, req: &ApiRequest<'_>) -> Response<Body> {
    let (queue, routes) = routes_or!(gateway, req, not_found(format!("no dead letter with id {id}")));
    match find(&queue, &routes, id).await {
        Ok(Found::One(route, letter, item)) => ok(&detail(gateway, &route, letter, &item)),
        Ok(Found::Several(routes)) => ambiguous(id, &routes),
        Ok(Found::None) => not_found(format!("no dead letter with id {id}")),
        Err(e) => unavailable(e),
    }
}

/// A dead letter as `show` answers it. Header values that carry the route's shared secret (a
/// token or Basic scheme's header) or credentials of any kind are redacted: this is read in a
/// browser, and replaying uses the stored delivery, not this.
fn detail(gateway: &Gateway, route: &str, letter: DeadLetter, item: &Item) -> serde_json::Value {
    let secret_headers: Vec<http::HeaderName> = gateway
        .routing()
        .routes()
        .find(|r| r.name == route)
        .map(|r| r.verifier.profile().clone())
        .filter(|p| matches!(p.algorithm, Algorithm::Token | Algorithm::Basic))
        .map(|p| p.headers.clone())
        .unwrap_or_default();
    let headers: Vec<(&str, String)> = item
        .headers
        .iter()
        .map(|(k, v)| {
            let secret = crate::response::is_credential_header(k)
                || secret_headers.iter().any(|h| h.as_str().eq_ignore_ascii_case(k));
            let value = if secret { REDACTED.to_string() } else { String::from_utf8_lossy(v).into_owned() };
            (k.as_str(), value)
        })
        .collect();
    let mut out = serde_json::to_value(&letter).unwrap_or_default();
    out["first_seen_ms"] = json!(item.first_seen_ms);
    out["request_id"] = json!(item.request_id());
    out["request"] = json!({
        "method": item.method,
        "query": item.query,
        "headers": headers,
        "body": base64::engine::general_purpose::STANDARD.encode(&item.body),
        "body_text": std::str::from_utf8(&item.body).ok(),
        "body_bytes": item.body.len(),
    });
    out
}

/// `POST /api/dead-letters/{id}/replay`.
pub(super) async fn replay(gateway: &Gateway, id: &str, req: &ApiRequest<'_>) -> Response<Body> {
    one(gateway, id, req, Action::Replay).await
}

/// `DELETE /api/dead-letters/{id}`.
pub(super) async fn purge(gateway: &Gateway, id: &str, req: &ApiRequest<'_>) -> Response<Body> {
    one(gateway, id, req, Action::Purge).await
}

/// `POST /api/dead-letters/replay[?route=R]`.
pub(super) async fn replay_all(gateway: &Gateway, req: &ApiRequest<'_>) -> Response<Body> {
    all(gateway, req, Action::Replay).await
}

/// `POST /api/dead-letters/purge[?route=R]`.
pub(super) async fn purge_all(gateway: &Gateway, req: &ApiRequest<'_>) -> Response<Body> {
    all(gateway, req, Action::Purge).await
}

#[derive(Clone, Copy)]
enum Action {
    Replay,
    Purge,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Replay => "replay",
            Action::Purge => "purge",
        }
    }

    /// The answer's field: `replayed` or `purged`.
    fn done(self) -> &'static str {
        match self {
            Action::Replay => "replayed",
            Action::Purge => "purged",
        }
    }

    async fn run(self, queue: &Queue, route: &str, id: Option<&str>) -> Result<u64, StoreError> {
        match self {
            Action::Replay => queue.replay(route, id).await,
            Action::Purge => queue.purge(route, id).await,
        }
    }

    /// The audit line of a mutating call.
    fn audit(self, req: &ApiRequest<'_>, route: &str, id: Option<&str>, count: u64) {
        tracing::info!(
            actor = req.actor,
            action = self.name(),
            route,
            id = id.unwrap_or("*"),
            count,
            "admin action"
        );
    }
}

/// Replays or purges the dead letter `id`.
async fn one(gateway: &Gateway, id: &str, req: &ApiRequest<'_>, action: Action) -> Response<Body> {
    let (queue, routes) = routes_or!(gateway, req, not_found(format!("no dead letter with id {id}")));
    let route = match find(&queue, &routes, id).await {
        Ok(Found::One(route, ..)) => route,
        Ok(Found::Several(routes)) => return ambiguous(id, &routes),
        Ok(Found::None) => return not_found(format!("no dead letter with id {id}")),
        Err(e) => return unavailable(e),
    };
    match action.run(&queue, &route, Some(id)).await {
        // Replayed or purged by another call between the lookup and now.
        Ok(0) => not_found(format!("no dead letter with id {id}")),
        Ok(n) => {
            action.audit(req, &route, Some(id), n);
            ok(&json!({ action.done(): n }))
        }
        Err(e) => unavailable(e),
    }
}

/// Replays or purges every dead letter (of `?route=R`).
async fn all(gateway: &Gateway, req: &ApiRequest<'_>, action: Action) -> Response<Body> {
    let none = || not_found(format!("no dead letters to {}", action.name()));
    let (queue, routes) = routes_or!(gateway, req, none());
    let mut total = 0;
    for r in &routes {
        match action.run(&queue, r, None).await {
            Ok(n) => {
                if n > 0 {
                    action.audit(req, r, None, n);
                }
                total += n;
            }
            Err(e) => return unavailable(e),
        }
    }
    if total == 0 {
        return none();
    }
    ok(&json!({ action.done(): total }))
}

/// `GET /api/queue`: depth, oldest age, in retry and dead, per queued route.
pub(super) async fn stats(gateway: &Gateway, req: &ApiRequest<'_>) -> Response<Body> {
    let (queue, routes) = routes_or!(gateway, req, ok(&json!({ "queues": [] })));
    let mut all = Vec::with_capacity(routes.len());
    for r in &routes {
        match queue.stats(r).await {
            Ok(s) => all.push(s),
            Err(e) => return unavailable(e),
        }
    }
    ok(&json!({ "queues": all }))
}
