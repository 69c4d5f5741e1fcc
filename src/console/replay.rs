//! `POST /api/deliveries/{id}/replay`: sends a captured delivery that verified when it
//! arrived to its route's upstream again, through the request path's own dedupe and forward
//! services (the same claim, the same headers, the same queue), and records the replay as a
//! new event (`replay_of`).
//!
//! A request that failed verification is never replayed: nothing the admin sends can turn a
//! forged request into a delivery. By default the event's key is claimed like a delivery's
//! (a failed delivery released it, so the claim succeeds; a delivered one answers 409);
//! `{"force": true}` sends without claiming.

use super::{bad_request, ApiRequest};
use crate::delivery::{EventKey, Received, RequestId, Verified};
use crate::event_log::{now_ms, Capture, Entry, Event, Filter};
use crate::gateway::Gateway;
use crate::layer::dedupe::DedupeLayer;
use crate::layer::forward::Forward;
use crate::outcome::Outcome;
use crate::response::{json_response, Body, Record, REDACTED};
use crate::routing::RouteEntry;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::{Layer, ServiceExt};

/// The replay call's body: empty, or `{"force": bool}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    #[serde(default)]
    force: bool,
}

/// How long the answer waits for the replay's event to get its id from the appender.
const ID_WAIT: Duration = Duration::from_secs(2);

/// Why a recorded delivery cannot be replayed: the answer's status and the reason in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub status: StatusCode,
    pub reason: String,
}

impl Refusal {
    fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Refusal { status, reason: reason.into() }
    }
}

/// Whether `event` (with its capture, if still kept, and its route, if still configured) may
/// be replayed; the first reason it may not. A request that did not verify is refused first,
/// whatever else is true of it.
pub(super) fn refusal(
    event: &Event,
    capture: Option<&Capture>,
    route: Option<&Arc<RouteEntry>>,
) -> Option<Refusal> {
    let unverified = || {
        Refusal::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the request failed verification when it arrived; a request that failed verification is never replayed",
        )
    };
    // An event gets its key only once its signature verified.
    if event.event_key.is_none() || capture.is_some_and(|c| !c.verified) {
        return Some(unverified());
    }
    if event.replay_of.is_some() && !event.captured {
        return Some(Refusal::new(
            StatusCode::CONFLICT,
            format!(
                "this is a replay; replay the original delivery ({})",
                event.replay_of.as_deref().unwrap_or("")
            ),
        ));
    }
    let Some(capture) = capture else {
        return Some(if event.captured {
            Refusal::new(StatusCode::CONFLICT, "the captured request has expired (the route's capture_ttl)")
        } else {
            Refusal::new(
                StatusCode::CONFLICT,
                "the request was not captured (the route's capture setting did not keep it)",
            )
        });
    };
    if capture.truncated {
        return Some(Refusal::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the captured body was cut at the route's capture_max_bytes; only the whole body can be replayed",
        ));
    }
    if route.is_none() {
        return Some(Refusal::new(
            StatusCode::CONFLICT,
            format!("the route '{}' is no longer configured", event.route),
        ));
    }
    None
}

/// The route `event` was delivered to, as configured now (found by its path and name).
pub(super) fn route_of(gateway: &Gateway, event: &Event) -> Option<Arc<RouteEntry>> {
    let routing = gateway.routing();
    let found = routing.variants(&event.path).ok()?.iter().find(|r| r.name == event.route).cloned();
    found
}

fn refused(r: Refusal) -> Response<Body> {
    json_response(r.status, json!({ "error": r.reason }).to_string())
}

/// `POST /api/deliveries/{id}/replay`.
pub(super) async fn replay(gateway: &Gateway, id: &str, req: &ApiRequest<'_>) -> Response<Body> {
    let body: ReplayBody = if req.body.iter().all(u8::is_ascii_whitespace) {
        ReplayBody::default()
    } else {
        match serde_json::from_slice(&req.body) {
            Ok(b) => b,
            Err(e) => return bad_request(format!("body: {e} (expected {{\"force\": true|false}})")),
        }
    };
    let force = body.force;
    tracing::info!(actor = req.actor, id, force, "replay");
    let log = &gateway.events.log;
    let event = match log.get(id).await {
        Ok(Some(e)) => e,
        Ok(None) => return json_response(StatusCode::NOT_FOUND, r#"{"error":"no delivery with this id"}"#),
        Err(e) => return super::unavailable(e),
    };
    let capture = match log.capture(id).await {
        Ok(c) => c,
        Err(e) => return super::unavailable(e),
    };
    let route = route_of(gateway, &event);
    if let Some(r) = refusal(&event, capture.as_ref(), route.as_ref()) {
        tracing::info!(actor = req.actor, id, reason = %r.reason, "replay refused");
        return refused(r);
    }
    let (Some(capture), Some(route), Some(key)) = (capture, route, event.event_key.as_deref()) else {
        unreachable!("refusal() checked the capture, the route and the key")
    };
    let Some(event_id) = key.strip_prefix(event.route.as_str()).and_then(|k| k.strip_prefix(':')) else {
        return refused(Refusal::new(StatusCode::CONFLICT, "the event's key does not belong to its route"));
    };
    let request_id = RequestId::new();
    let verified = match rebuild(&capture, &event, &route, request_id.clone()) {
        Ok(received) => Verified {
            request: received,
            event: EventKey::new(&route.name, event_id),
            secret_index: event.secret_index.unwrap_or(0),
            nonce: None,
            batch: Vec::new(),
        },
        Err(e) => {
            return refused(Refusal::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the capture cannot be sent: {e}"),
            ))
        }
    };

    // The request path's own services: the claim (unless forced) and the forward or queue.
    let started = Instant::now();
    let mut outlets = gateway.outlets(gateway.store.clone());
    if force {
        // Forced: every destination again, as the route's own key is not claimed either.
        Arc::get_mut(&mut outlets).expect("just made").remember = false;
    }
    let forward = Forward::new(Arc::new(gateway.client.clone()), outlets);
    let res = if force {
        forward.oneshot(verified).await
    } else {
        DedupeLayer::new(
            gateway.store.clone(),
            gateway.store_timeout,
            gateway.abort[0].subscribe(),
            gateway.metrics.clone(),
        )
        .layer(forward)
        .oneshot(verified)
        .await
    };
    let Ok(res) = res;
    let latency = started.elapsed();
    let status = res.status();
    let record = res.extensions().get::<Record>().cloned().unwrap_or_else(|| Record::new(Outcome::Panic));
    // The upstream's body is not read: dropping it closes that one connection at worst.
    drop(res);

    let replay = Event {
        id: String::new(),
        time_ms: now_ms(),
        route: route.name.clone(),
        provider: route.provider().to_owned(),
        method: capture.method.clone(),
        path: event.path.clone(),
        client: None,
        request_id: Some(request_id.as_str().to_owned()),
        outcome: record.outcome.as_str().into(),
        status: status.as_u16(),
        event_key: Some(key.to_owned()),
        secret_index: event.secret_index,
        latency_ms: latency.as_secs_f64() * 1000.0,
        upstream_status: record.upstream_status,
        upstream_latency_ms: record.upstream_latency.map(|d| d.as_secs_f64() * 1000.0),
        detail: record.detail.clone(),
        attempts: None,
        captured: false,
        replay_of: Some(id.to_owned()),
    };
    if !gateway.events.record(Entry { event: replay, capture: None }) {
        gateway.metrics.event_log_dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    tracing::info!(
        actor = req.actor,
        id,
        force,
        outcome = record.outcome.as_str(),
        status = status.as_u16(),
        upstream_status = record.upstream_status,
        request_id = request_id.as_str(),
        "replay sent"
    );
    let replay_id = replay_id(gateway, key, id, request_id.as_str()).await;

    let answer = |code: StatusCode, error: Option<&str>| {
        let mut v = json!({
            "replay_id": replay_id,
            "request_id": request_id.as_str(),
            "outcome": record.outcome.as_str(),
            "status": status.as_u16(),
            "upstream_status": record.upstream_status,
        });
        if let Some(e) = error {
            v["error"] = e.into();
        }
        json_response(code, v.to_string())
    };
    match record.outcome {
        Outcome::Forwarded => answer(StatusCode::OK, None),
        // No destination of the route wants it (their `when:` filters): nothing was sent.
        Outcome::Filtered => answer(StatusCode::OK, None),
        Outcome::Queued => answer(StatusCode::ACCEPTED, None),
        // A queued route holds the key from acceptance on, whether the queue delivered the
        // event, still retries it or gave up on it: "already delivered" would mislead.
        Outcome::Duplicate if route.queue.is_some() => {
            answer(StatusCode::CONFLICT, Some(&queued_held(&route.name)))
        }
        Outcome::Duplicate => {
            answer(StatusCode::CONFLICT, Some("already delivered; force: true sends it again"))
        }
        Outcome::InFlight => {
            answer(StatusCode::CONFLICT, Some("the event is being delivered now; try again later"))
        }
        Outcome::StoreError | Outcome::QueueError | Outcome::Draining | Outcome::DestinationUnavailable => {
            let mut res = answer(StatusCode::SERVICE_UNAVAILABLE, Some("temporarily unavailable; try again"));
            res.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
            res
        }
        Outcome::UpstreamTimeout => {
            answer(StatusCode::GATEWAY_TIMEOUT, Some("the upstream did not answer in time"))
        }
        _ => answer(StatusCode::BAD_GATEWAY, Some("the upstream did not accept the delivery")),
    }
}

/// Why a queued route's event held by its key is not replayed: the queue owns it.
fn queued_held(route: &str) -> String {
    format!(
        "queued deliveries are retried by the queue; if it went dead, replay the dead letter (GET /api/dead-letters?route={})",
        form_urlencoded::byte_serialize(route.as_bytes()).collect::<String>()
    )
}

/// The captured request as the request path had it once its body was read: method, target,
/// headers in order (but a redacted secret) and the body; a new request id; sent from the
/// client it came from.
fn rebuild(
    capture: &Capture,
    event: &Event,
    route: &Arc<RouteEntry>,
    id: RequestId,
) -> Result<Received, String> {
    let mut headers = HeaderMap::with_capacity(capture.headers.len());
    for (name, value) in &capture.headers {
        // A header that held the route's secret was not kept: it is not sent either.
        if value == REDACTED {
            continue;
        }
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("header name '{name}'"))?;
        let value = HeaderValue::from_str(value).map_err(|_| format!("the value of {name}"))?;
        headers.append(name, value);
    }
    let (mut parts, ()) = http::Request::builder()
        .method(capture.method.as_str())
        .uri(capture.target.as_str())
        .body(())
        .map_err(|e| format!("method or target: {e}"))?
        .into_parts();
    // The capture holds the original's id: the replay has its own.
    headers.insert(RequestId::HEADER, id.value());
    parts.headers = headers;
    let client = event.client.map_or_else(|| "unknown".to_owned(), |c| c.to_string());
    let peer = HeaderValue::from_str(&client).map_err(|_| "the client address".to_owned())?;
    Ok(Received { route: route.clone(), parts, body: capture.body.clone(), peer, tls: false })
}

/// The id the appender gave the replay's event (found by its request id), or `None` when it
/// is not in the log within [`ID_WAIT`].
async fn replay_id(gateway: &Gateway, key: &str, of: &str, request_id: &str) -> Option<String> {
    let filter = Filter { event_id: Some(key.to_owned()), limit: 20, ..Filter::default() };
    let until = Instant::now() + ID_WAIT;
    loop {
        if let Ok(page) = gateway.events.log.list(&filter).await {
            let found = page
                .into_iter()
                .find(|e| e.replay_of.as_deref() == Some(of) && e.request_id.as_deref() == Some(request_id));
            if let Some(e) = found {
                return Some(e.id);
            }
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: Option<&str>, captured: bool) -> Event {
        Event {
            id: "01J".into(),
            time_ms: 1,
            route: "/p".into(),
            provider: "paylent".into(),
            method: "POST".into(),
            path: "/p".into(),
            client: None,
            request_id: None,
            outcome: "upstream_error".into(),
            status: 500,
            event_key: key.map(str::to_owned),
            secret_index: key.map(|_| 0),
            latency_ms: 1.0,
            upstream_status: None,
            upstream_latency_ms: None,
            detail: None,
            attempts: None,
            captured,
            replay_of: None,
        }
    }

    fn capture(verified: bool, truncated: bool) -> Capture {
        Capture {
            method: "POST".into(),
            target: "/p".into(),
            headers: vec![],
            body: bytes::Bytes::from_static(b"{}"),
            truncated,
            verified,
        }
    }

    #[test]
    fn a_request_that_did_not_verify_is_never_replayable() {
        let status = |r: Option<Refusal>| r.map(|r| r.status);
        // Forged: refused whatever else holds (captured or not, route or not).
        assert_eq!(
            status(refusal(&event(None, true), Some(&capture(false, false)), None)),
            Some(StatusCode::UNPROCESSABLE_ENTITY)
        );
        assert_eq!(status(refusal(&event(None, false), None, None)), Some(StatusCode::UNPROCESSABLE_ENTITY));
        let e = event(Some("/p:evt"), true);
        assert_eq!(
            status(refusal(&e, Some(&capture(false, false)), None)),
            Some(StatusCode::UNPROCESSABLE_ENTITY)
        );
        // Not captured, expired, truncated, route gone.
        assert_eq!(status(refusal(&event(Some("/p:evt"), false), None, None)), Some(StatusCode::CONFLICT));
        let r = refusal(&e, None, None).unwrap();
        assert!(r.reason.contains("expired"), "{r:?}");
        let r = refusal(&e, Some(&capture(true, true)), None).unwrap();
        assert!(r.reason.contains("capture_max_bytes"), "{r:?}");
        let r = refusal(&e, Some(&capture(true, false)), None).unwrap();
        assert!(r.reason.contains("no longer configured"), "{r:?}");
    }
}
