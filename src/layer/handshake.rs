//! Answers the endpoint-verification requests of a route's profile (its `handshake:` block,
//! see [`crate::verify::handshake`]). Nothing is claimed or forwarded for them.
//!
//! - A GET handshake (Meta, Dropbox, Twitter's CRC, Okta) carries no signature: the route
//!   layer calls [`answer_get`] before the method check and before any body byte is read, and
//!   answers it only when the request has exactly the handshake's shape (a wrong or missing
//!   verify token is refused with 403, as is a challenge whose HMAC would be returned but that
//!   is not a token); any other GET is refused as before.
//! - A POST handshake (Slack, Zoom, Twitch, Discord) is answered by [`HandshakeLayer`], after
//!   the request's signature verified and before its idempotency key is claimed; one whose
//!   challenge is refused (not a token, for an HMAC reply) is answered 400, never forwarded.

use super::{answer, EitherFuture};
use crate::delivery::Verified;
use crate::outcome::Outcome;
use crate::response::{json_response, Body, Record};
use crate::routing::RouteEntry;
use crate::verify::handshake::{Answer, HandshakeMethod, Request as HandshakeRequest};
use http::header::{HeaderValue, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use http::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

#[derive(Clone, Default)]
pub struct HandshakeLayer;

impl<S> Layer<S> for HandshakeLayer {
    type Service = Handshake<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Handshake { inner }
    }
}

#[derive(Clone)]
pub struct Handshake<S> {
    inner: S,
}

/// The 200 answer to a handshake: its body as text (never sniffed as anything else) or JSON.
fn reply(content_type: &'static str, body: String) -> Response<Body> {
    let mut res = json_response(StatusCode::OK, body);
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    res.headers_mut().insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    res
}

/// The answer to a GET on `route` that is its profile's GET handshake, or `None` for any
/// other request (then handled as before: a GET is refused by the method check).
pub fn answer_get<B>(route: &Arc<RouteEntry>, req: &Request<B>) -> Option<Response<Body>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return None;
    }
    let verifier = &route.verifier;
    let h = verifier.profile().handshake.as_ref().filter(|h| h.method.unsigned())?;
    let input = HandshakeRequest {
        method: req.method(),
        query: req.uri().query(),
        headers: req.headers(),
        body: b"",
    };
    // The first configured secret is the current one (a rotated-out secret comes after it).
    match h.answer(&input, route.verify_token.as_ref(), verifier.handshake_key(0)) {
        Answer::NotHandshake => None,
        Answer::Refused(why) => {
            let res = json_response(StatusCode::FORBIDDEN, r#"{"error":"forbidden"}"#);
            let record = Record {
                route: Some(route.clone()),
                detail: Some(format!("handshake refused: {why}")),
                ..Record::new(Outcome::Forbidden)
            };
            Some(record.on(res))
        }
        Answer::Reply { content_type, body } => {
            let record = Record { route: Some(route.clone()), ..Record::new(Outcome::Handshake) };
            Some(record.on(reply(content_type, body)))
        }
    }
}

impl<S> Service<Verified> for Handshake<S>
where
    S: Service<Verified, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = EitherFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, v: Verified) -> Self::Future {
        let d = &v.request;
        let verifier = &d.route.verifier;
        if let Some(h) = verifier.profile().handshake.as_ref().filter(|h| h.method == HandshakeMethod::Post) {
            let input = HandshakeRequest {
                method: &d.parts.method,
                query: d.parts.uri.query(),
                headers: &d.parts.headers,
                body: &d.body,
            };
            // The challenge's HMAC (Zoom) is made with the secret that verified the request.
            match h.answer(&input, None, verifier.handshake_key(v.secret_index)) {
                Answer::Reply { content_type, body } => {
                    // A handshake is no event: its log line names no key.
                    let record = Record { key: None, ..Record::verified(Outcome::Handshake, &v) };
                    return answer(record.on(reply(content_type, body)));
                }
                // A handshake's shape with a challenge that is not answered: not forwarded either.
                Answer::Refused(why) => {
                    let res = json_response(StatusCode::BAD_REQUEST, r#"{"error":"bad handshake"}"#);
                    let record = Record {
                        key: None,
                        detail: Some(format!("handshake refused: {why}")),
                        ..Record::verified(Outcome::BadRequest, &v)
                    };
                    return answer(record.on(res));
                }
                Answer::NotHandshake => {}
            }
        }
        futures_util::future::Either::Right(self.inner.call(v))
    }
}
