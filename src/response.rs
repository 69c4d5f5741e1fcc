//! How the gateway answers: the response body type, the [`Rejection`]s and their generic JSON
//! answers, and the [`Record`] each answer carries to the log line (its [`Outcome`] is in
//! [`crate::outcome`]).

use crate::cert_fetch::FetchError;
use crate::delivery::Verified;
use crate::idempotency::StoreError;
use crate::outcome::Outcome;
use crate::routing::{RouteEntry, RouteError};
use crate::verify::VerifyError;
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use std::sync::Arc;
use std::time::Duration;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body type of the whole stack.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body of fixed bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// What the log line of a request says, carried in the response's extensions from the layer
/// that decided to the layer that records.
#[derive(Debug, Clone)]
pub struct Record {
    pub outcome: Outcome,
    pub route: Option<Arc<RouteEntry>>,
    /// The event's idempotency key, once known.
    pub key: Option<Arc<str>>,
    pub secret_index: Option<usize>,
    /// The precise reason for a rejection; never a secret or signature value.
    pub detail: Option<String>,
    /// How long the upstream took, when it was called.
    pub upstream_latency: Option<Duration>,
    /// The upstream's status, when it answered.
    pub upstream_status: Option<u16>,
}

impl Record {
    pub fn new(outcome: Outcome) -> Self {
        Record {
            outcome,
            route: None,
            key: None,
            secret_index: None,
            detail: None,
            upstream_latency: None,
            upstream_status: None,
        }
    }

    /// The record of a verified delivery: its route, event key and the secret that matched.
    pub fn verified(outcome: Outcome, v: &Verified) -> Self {
        Record {
            outcome,
            route: Some(v.request.route.clone()),
            key: Some(v.event.store_key().clone()),
            secret_index: Some(v.secret_index),
            detail: None,
            upstream_latency: None,
            upstream_status: None,
        }
    }

    /// `res` carrying this record.
    pub fn on(self, mut res: Response<Body>) -> Response<Body> {
        res.extensions_mut().insert(self);
        res
    }
}

/// A capturing route's request as it arrived (headers in order, the whole body), carried in
/// the response's extensions from where the body is read to the observe layer, which keeps
/// it in the event log when the route's `capture:` wants this outcome. Made only for routes
/// that capture: the body is a reference-counted `Bytes`, the headers a copy.
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: http::Method,
    /// The path and query string, as received.
    pub target: Option<http::uri::PathAndQuery>,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// What a captured header holding a route's secret reads instead.
pub const REDACTED: &str = "[redacted: the route's secret]";

/// Headers that carry credentials whatever the route's scheme (a caller's bearer token,
/// a proxy's login, a browser's session): never kept in a capture nor shown in the dead
/// letter view. The one list both use.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// Whether the header `name` carries credentials of any scheme (ASCII case-insensitive).
pub fn is_credential_header(name: &str) -> bool {
    CREDENTIAL_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name))
}

impl Captured {
    /// The event log's capture: the body cut at `max_bytes` (marked truncated), `verified`
    /// telling whether the signature verified, and the values of the `redact` headers and
    /// of the [credential headers](is_credential_header) replaced by [`REDACTED`]: a scheme
    /// that sends the route's secret itself (a static token, Basic credentials) would
    /// otherwise put it in the log. The body is copied, never sliced: a slice would keep the
    /// whole request buffer (up to `max_body`, or a larger hyper chunk) alive as long as the
    /// capture is kept.
    pub fn to_capture(
        &self,
        max_bytes: u64,
        verified: bool,
        redact: &[http::HeaderName],
    ) -> crate::event_log::Capture {
        let max = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        let truncated = self.body.len() > max;
        crate::event_log::Capture {
            method: self.method.to_string(),
            target: self.target.as_ref().map_or("/", |t| t.as_str()).to_owned(),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| {
                    let v = if redact.contains(k) || is_credential_header(k.as_str()) {
                        REDACTED.to_owned()
                    } else {
                        String::from_utf8_lossy(v.as_bytes()).into_owned()
                    };
                    (k.as_str().to_owned(), v)
                })
                .collect(),
            body: Bytes::copy_from_slice(&self.body[..self.body.len().min(max)]),
            truncated,
            verified,
        }
    }
}

/// Why a request was not forwarded: each becomes a generic answer to the caller and a precise
/// reason for the log line.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("no route for this path")]
    NotFound,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("body larger than {0} bytes")]
    TooLarge(u64),
    #[error("the body was not received within {0:?}")]
    BodyTimeout(Duration),
    #[error("reading the body failed: {0}")]
    BodyRead(String),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A signature mismatch whose diagnosis runs on its own and logs its own line.
    #[error("{0}; diagnosis {1} follows in its own log line")]
    Diagnosed(VerifyError, u64),
    #[error("idempotency store: {0}")]
    Store(#[from] StoreError),
    /// Appending to the delivery queue failed: the delivery was not accepted.
    #[error("delivery queue: {0}")]
    Queue(StoreError),
    #[error("the event is being delivered by another request")]
    InFlight(Duration),
    #[error("the signed one-time value was used before: a replay")]
    Replay,
    #[error("shutting down: the delivery did not finish within the drain timeout; its key was released")]
    Draining,
    #[error("too many requests in flight")]
    Overloaded,
    #[error("the client address {0} is not allowed on this route")]
    Forbidden(std::net::IpAddr),
    #[error("the route selects by a header: {0}")]
    NoVariant(String),
    #[error("protocol upgrades are not accepted on webhook routes")]
    Upgrade,
    #[error("upstream unreachable: {0}")]
    UpstreamUnavailable(String),
    #[error("upstream did not answer within {0:?}")]
    UpstreamTimeout(Duration),
    /// An upstream of a fan-out (or a filtered route) answered other than 2xx: its answer
    /// cannot be relayed as one route's upstream's is.
    #[error("upstream answered {0}")]
    UpstreamStatus(u16),
    /// A broker destination (NATS, RabbitMQ) did not accept the delivery: the text of its
    /// `destination::PublishError` (held as text: `response` is below `destination`).
    #[error("{0}")]
    Destination(String),
    /// The signing certificate of a certificate-URL scheme could not be had: not a verdict
    /// on the request, which the provider retries.
    #[error("signing certificate: {0}")]
    Certificate(#[from] FetchError),
    #[error("internal error")]
    Panic,
}

impl From<RouteError> for Rejection {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::NotFound => Rejection::NotFound,
            RouteError::NoVariant(why) => Rejection::NoVariant(why),
        }
    }
}

impl Rejection {
    fn parts(&self) -> (StatusCode, Outcome, &'static str) {
        use Rejection::*;
        match self {
            NotFound => (StatusCode::NOT_FOUND, Outcome::NotFound, "not found"),
            MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, Outcome::MethodNotAllowed, "method not allowed")
            }
            TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, Outcome::TooLarge, "payload too large"),
            BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, Outcome::BodyTimeout, "request timeout"),
            BodyRead(_) => (StatusCode::BAD_REQUEST, Outcome::BadRequest, "bad request"),
            Verify(e) if e.is_ambiguous() => (StatusCode::BAD_REQUEST, Outcome::BadRequest, "bad request"),
            Verify(_) | Diagnosed(..) => {
                (StatusCode::UNAUTHORIZED, Outcome::InvalidSignature, "invalid signature")
            }
            Store(_) => (StatusCode::SERVICE_UNAVAILABLE, Outcome::StoreError, "temporarily unavailable"),
            Queue(_) => (StatusCode::SERVICE_UNAVAILABLE, Outcome::QueueError, "temporarily unavailable"),
            Replay => (StatusCode::UNAUTHORIZED, Outcome::Replay, "invalid signature"),
            Draining => (StatusCode::SERVICE_UNAVAILABLE, Outcome::Draining, "temporarily unavailable"),
            Overloaded => (StatusCode::SERVICE_UNAVAILABLE, Outcome::Overloaded, "temporarily unavailable"),
            Upgrade => (StatusCode::BAD_REQUEST, Outcome::BadRequest, "bad request"),
            Forbidden(_) => (StatusCode::FORBIDDEN, Outcome::Forbidden, "forbidden"),
            NoVariant(_) => (StatusCode::BAD_REQUEST, Outcome::BadRequest, "bad request"),
            InFlight(_) => (StatusCode::CONFLICT, Outcome::InFlight, "delivery in progress"),
            UpstreamUnavailable(_) => (StatusCode::BAD_GATEWAY, Outcome::UpstreamUnavailable, "bad gateway"),
            UpstreamTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, Outcome::UpstreamTimeout, "gateway timeout"),
            UpstreamStatus(_) => (StatusCode::BAD_GATEWAY, Outcome::UpstreamError, "bad gateway"),
            Destination(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, Outcome::DestinationUnavailable, "temporarily unavailable")
            }
            Certificate(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, Outcome::CertificateUnavailable, "temporarily unavailable")
            }
            Panic => (StatusCode::INTERNAL_SERVER_ERROR, Outcome::Panic, "internal error"),
        }
    }

    /// Seconds the sender should wait before retrying, where a retry can succeed.
    fn retry_after(&self) -> Option<u64> {
        match self {
            Rejection::Store(_) | Rejection::Queue(_) | Rejection::Draining | Rejection::Destination(_) => {
                Some(5)
            }
            Rejection::Overloaded => Some(1),
            Rejection::Certificate(_) => Some(30),
            Rejection::InFlight(d) => Some(d.as_secs().clamp(1, 60)),
            _ => None,
        }
    }

    /// The response to the sender: a generic JSON error, with the precise reason recorded
    /// for the log.
    pub fn into_response(self, route: Option<Arc<RouteEntry>>, key: Option<Arc<str>>) -> Response<Body> {
        let (status, outcome, message) = self.parts();
        let mut res = json_response(status, format!("{{\"error\":\"{message}\"}}"));
        if let Some(secs) = self.retry_after() {
            res.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        Record { route, key, detail: Some(self.to_string()), ..Record::new(outcome) }.on(res)
    }
}

/// The answer to a delivery no destination of its route wanted (their `when:` filters): 200,
/// so the provider stops; the key is completed, so a retry is a duplicate.
pub fn filtered_response() -> Response<Body> {
    json_response(StatusCode::OK, r#"{"status":"filtered"}"#)
}

/// The answer to a delivery every destination that wanted it accepted: 200 and their names.
pub fn delivered_response<'a>(names: impl Iterator<Item = &'a str>) -> Response<Body> {
    let names: Vec<&str> = names.collect();
    let body = serde_json::json!({"status": "delivered", "destinations": names});
    json_response(StatusCode::OK, body.to_string())
}

/// A JSON response with a fixed body.
pub fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// The answer to a duplicate of a delivered event: 200, so the provider stops retrying.
pub fn duplicate_response() -> Response<Body> {
    json_response(StatusCode::OK, r#"{"status":"duplicate"}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_errors_answer_404_and_400() {
        let r = Rejection::from(RouteError::NotFound).into_response(None, None);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.extensions().get::<Record>().unwrap().outcome, Outcome::NotFound);
        let r = Rejection::from(RouteError::NoVariant("no x-mode header".into())).into_response(None, None);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let rec = r.extensions().get::<Record>().unwrap();
        assert_eq!(rec.outcome, Outcome::BadRequest);
        assert_eq!(rec.detail.as_deref(), Some("the route selects by a header: no x-mode header"));
    }

    #[test]
    fn store_errors_ask_for_a_retry() {
        let r = Rejection::Store(StoreError::Timeout(Duration::from_secs(1))).into_response(None, None);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[RETRY_AFTER], "5");
    }

    #[test]
    fn queue_errors_are_their_own_outcome_and_ask_for_a_retry() {
        let r = Rejection::Queue(StoreError::Timeout(Duration::from_secs(1))).into_response(None, None);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[RETRY_AFTER], "5");
        let rec = r.extensions().get::<Record>().unwrap();
        assert_eq!(rec.outcome, Outcome::QueueError);
        assert!(rec.detail.as_deref().unwrap().starts_with("delivery queue:"), "{:?}", rec.detail);
    }

    #[test]
    fn broker_failures_ask_for_a_retry_and_upstream_statuses_are_bad_gateway() {
        let r = Rejection::Destination("no stream for subject x".into()).into_response(None, None);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[RETRY_AFTER], "5");
        assert_eq!(r.extensions().get::<Record>().unwrap().outcome, Outcome::DestinationUnavailable);
        let r = Rejection::UpstreamStatus(500).into_response(None, None);
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(r.extensions().get::<Record>().unwrap().outcome, Outcome::UpstreamError);
    }

    #[test]
    fn signature_reasons_stay_generic_for_the_caller() {
        let r = Rejection::Verify(VerifyError::Stale(999, 300)).into_response(None, None);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let rec = r.extensions().get::<Record>().unwrap();
        assert!(rec.detail.as_deref().unwrap().contains("999s old"));
    }
}
