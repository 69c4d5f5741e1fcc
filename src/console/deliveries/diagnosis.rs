//! The diagnosis of one recorded delivery, for `GET /api/deliveries/{id}`: the verification
//! re-run on the captured bytes (as at the time the request arrived, with the route's secrets
//! as configured now), with `verify --explain`'s near misses when the signature did not
//! match; or, without a capture, what the record says, in plain words. Never a secret or a
//! signature value (the explain lines name headers, encodings and secret indexes only).

use crate::event_log::{Capture, Event};
use crate::routing::RouteEntry;
use crate::verify::diagnose::diagnose;
use crate::verify::{Input, VerifyError};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::{json, Value};
use std::sync::Arc;

/// The diagnosis as JSON: `source` (`capture` or `record`), `verdict` (`valid`, `invalid`, or
/// null without a capture), `step` (the check that failed), `error`, `secret_index`, `lines`
/// (the explain lines) and `summary` (plain words); `not_on_capture_because` says why the
/// bytes were not re-checked.
pub(super) async fn run(event: &Event, capture: Option<&Capture>, route: Option<Arc<RouteEntry>>) -> Value {
    let why_not = match (capture, &route) {
        (None, _) if event.captured => Some("the captured request has expired"),
        (None, _) => Some("the request was not captured (see the route's capture setting)"),
        (Some(c), _) if c.truncated => {
            Some("the capture was cut at capture_max_bytes; the signature covers the whole body")
        }
        (_, None) => Some("the route is no longer configured"),
        (_, Some(r)) if r.verifier.profile().algorithm.is_shared_secret() => {
            Some("the route's scheme sends its secret in the request, which a capture never keeps")
        }
        (_, Some(r)) if r.verifier.profile().certificate.is_some() => {
            Some("certificate-URL schemes are not re-checked from the console (it would fetch a certificate)")
        }
        _ => None,
    };
    if let Some(why) = why_not {
        return json!({
            "source": "record",
            "verdict": Value::Null,
            "step": step_of_outcome(&event.outcome),
            "error": event.detail,
            "secret_index": event.secret_index,
            "lines": [],
            "summary": plain_words(event),
            "not_on_capture_because": why,
        });
    }
    let (Some(capture), Some(route)) = (capture.cloned(), route) else { unreachable!("checked above") };
    // The arrival time: a signed timestamp is judged as it was then, and so is a secret's expiry.
    let now = event.time_ms / 1000;
    let outcome = event.outcome.clone();
    // Bounded (see `verify::diagnose`), but MACs over up to a body each: off the event loop.
    let ran = tokio::task::spawn_blocking(move || on_capture(&capture, &route, now, &outcome)).await;
    ran.unwrap_or_else(|_| json!({ "source": "capture", "summary": "the diagnosis failed" }))
}

/// Verifies the captured request again and explains a failure.
fn on_capture(c: &Capture, route: &RouteEntry, now: u64, outcome: &str) -> Value {
    let mut headers = HeaderMap::with_capacity(c.headers.len());
    for (k, v) in &c.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            headers.append(k, v);
        }
    }
    let method = Method::from_bytes(c.method.as_bytes()).unwrap_or(Method::POST);
    let query = c.target.split_once('?').map(|(_, q)| q);
    let url = match (route.verifier.needs_url(), &route.public_url, query) {
        (true, Some(u), Some(q)) => format!("{u}?{q}"),
        (true, Some(u), None) => u.clone(),
        _ => String::new(),
    };
    let input = Input { method: &method, url: &url, headers: &headers, body: &c.body, now };
    match route.verifier.verify(&input) {
        Ok(v) => {
            let summary = if outcome == "invalid_signature" || outcome == "bad_request" {
                format!(
                    "The captured request verifies now with secret {}: the route's secrets changed since it was refused.",
                    v.secret_index
                )
            } else {
                format!(
                    "The captured request verifies with secret {} of the route's current secrets.",
                    v.secret_index
                )
            };
            json!({
                "source": "capture",
                "verdict": "valid",
                "step": Value::Null,
                "error": Value::Null,
                "secret_index": v.secret_index,
                "lines": [],
                "summary": summary,
            })
        }
        Err(e) => {
            let lines = if e.is_mismatch() { diagnose(&route.verifier, &input) } else { Vec::new() };
            let step = step_of(&e);
            let mut summary = format!("The {step} check fails: {e}.");
            if !lines.is_empty() {
                summary.push_str(" What was tried: ");
                summary.push_str(&lines.join("; "));
                summary.push('.');
            }
            json!({
                "source": "capture",
                "verdict": "invalid",
                "step": step,
                "error": e.to_string(),
                "secret_index": Value::Null,
                "lines": lines,
                "summary": summary,
            })
        }
    }
}

/// The check a verification error comes from, in a word or two.
fn step_of(e: &VerifyError) -> &'static str {
    use VerifyError::*;
    match e {
        MissingSignature(_) | DuplicateHeader(_) | NotAscii | Header(_) | Undecodable(_) => {
            "signature header"
        }
        Mismatch => "signature",
        MissingTimestamp | BadTimestamp | Stale(..) | Future(..) => "timestamp",
        MissingId => "signed id",
        MissingField(_) | BodyHash | DuplicateJsonKey(_) | NotJson | Reinterpreted(_) | Form(_) => "body",
        Claim(_) | Algorithm => "token",
        CertificateHost | CertificateUrl(_) | Certificate(_) => "certificate",
    }
}

/// The step a recorded outcome failed at, when it is a refusal.
fn step_of_outcome(outcome: &str) -> Value {
    match outcome {
        "invalid_signature" => "signature".into(),
        "bad_request" => "request".into(),
        "replay" => "replay".into(),
        "forbidden" => "allowlist".into(),
        "too_large" | "body_timeout" => "body".into(),
        "upstream_error" | "upstream_unavailable" | "upstream_timeout" => "upstream".into(),
        "store_error" => "idempotency store".into(),
        "queue_error" => "queue".into(),
        _ => Value::Null,
    }
}

/// What the record says happened, in plain words.
pub(super) fn plain_words(e: &Event) -> String {
    let detail = e.detail.as_deref().unwrap_or("no reason recorded");
    let secret = e.secret_index.map(|i| format!(" with secret {i}")).unwrap_or_default();
    let upstream = match (e.upstream_status, e.upstream_latency_ms) {
        (Some(s), Some(ms)) => format!("the upstream answered {s} in {ms:.0} ms"),
        (Some(s), None) => format!("the upstream answered {s}"),
        _ => "the upstream did not answer".to_owned(),
    };
    match &*e.outcome {
        "forwarded" => format!("Verified{secret} and forwarded; {upstream}."),
        "upstream_error" => format!(
            "Verified{secret} and forwarded, but {upstream}; the event's key was released, so the provider's retry or a replay can deliver it."
        ),
        "upstream_unavailable" | "upstream_timeout" => format!(
            "Verified{secret}, but the upstream could not be reached ({detail}); the event's key was released for a retry."
        ),
        "duplicate" => "A copy of an event already delivered: answered 200 and not forwarded again.".to_owned(),
        "in_flight" => "Another copy of this event was being delivered at that moment: answered 409, so the provider retries.".to_owned(),
        "invalid_signature" => format!(
            "Refused: the signature did not verify ({detail}). With capture: refused on the route, the request's bytes are kept and diagnosed here."
        ),
        "replay" => "Refused: its signed one-time value was used before (a replayed request).".to_owned(),
        "bad_request" => format!("Refused as malformed or ambiguous: {detail}."),
        "store_error" => format!("The idempotency store did not answer ({detail}): answered 503, so the provider retries."),
        "queued" => format!("Verified{secret} and queued for delivery."),
        "queue_error" => format!("Verified{secret}, but the delivery queue did not take it ({detail}): answered 503."),
        "delivered" => format!("Delivered by the queue; {upstream}."),
        "retry" => format!("A queued delivery attempt failed ({detail}); it will be tried again."),
        "dead" => format!("The queue gave up on this delivery ({detail}); it is in the dead letters."),
        "handshake" => "An endpoint check of the provider, answered by the gateway; not an event.".to_owned(),
        other => format!("{other} ({}): {detail}.", e.status),
    }
}

/// The steps of one event of a timeline, in words.
pub(super) fn steps(e: &Event, kind: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(4);
    match kind {
        "replay" => {
            out.push(format!("replayed from the console (of {})", e.replay_of.as_deref().unwrap_or("?")))
        }
        "attempt" => out.push(match e.attempts {
            Some(n) => format!("queue attempt {n}"),
            None => "queue attempt".to_owned(),
        }),
        _ => out.push(format!(
            "arrived: {} {}{}",
            e.method,
            e.path,
            e.client.map(|c| format!(" from {c}")).unwrap_or_default()
        )),
    }
    if kind == "arrival" {
        match e.secret_index {
            Some(i) => out.push(format!("signature verified with secret {i}")),
            None if e.event_key.is_some() => out.push("signature verified".to_owned()),
            None => out.push(format!("refused ({}): {}", e.outcome, e.detail.as_deref().unwrap_or("-"))),
        }
    }
    if let Some(s) = e.upstream_status {
        out.push(match e.upstream_latency_ms {
            Some(ms) => format!("upstream answered {s} in {ms:.0} ms"),
            None => format!("upstream answered {s}"),
        });
    } else if e.event_key.is_some() {
        match &*e.outcome {
            "duplicate" => out.push("already delivered: not forwarded".to_owned()),
            "queued" => out.push("queued for delivery".to_owned()),
            "in_flight" => out.push("another copy was being delivered".to_owned()),
            _ => {
                if let Some(d) = &e.detail {
                    out.push(d.clone());
                }
            }
        }
    }
    out.push(format!("{}: {}", e.outcome, e.status));
    out
}
