//! Answers the endpoint-verification requests some providers send before any event (Slack's
//! `url_verification`, Zoom's `endpoint.url_validation`), once they are verified. Nothing is
//! claimed or forwarded for them.

use super::{answer, EitherFuture};
use crate::delivery::Verified;
use crate::outcome::Outcome;
use crate::response::{json_response, Body, Record};
use crate::verify::profile::Handshake as Kind;
use http::{Response, StatusCode};
use std::convert::Infallible;
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

/// The local answer to a handshake request, or `None` when `v` is an ordinary delivery.
pub fn answer_for(kind: Kind, v: &Verified) -> Option<serde_json::Value> {
    let d = &v.request;
    // Handshake bodies are small JSON objects; anything else is an ordinary delivery.
    if d.body.first() != Some(&b'{') {
        return None;
    }
    let doc: serde_json::Value = serde_json::from_slice(&d.body).ok()?;
    match kind {
        Kind::SlackUrlVerification => {
            if doc.get("type")?.as_str()? != "url_verification" {
                return None;
            }
            let challenge = doc.get("challenge")?.as_str()?;
            Some(serde_json::json!({ "challenge": challenge }))
        }
        Kind::ZoomUrlValidation => {
            if doc.get("event")?.as_str()? != "endpoint.url_validation" {
                return None;
            }
            let plain = doc.pointer("/payload/plainToken")?.as_str()?;
            let encrypted = d.route.verifier.hmac_sha256_hex(v.secret_index, plain.as_bytes())?;
            Some(serde_json::json!({ "plainToken": plain, "encryptedToken": encrypted }))
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
        if let Some(kind) = v.request.route.verifier.profile().handshake {
            if let Some(reply) = answer_for(kind, &v) {
                // A handshake is no event: its log line names no key.
                let record = Record { key: None, ..Record::verified(Outcome::Handshake, &v) };
                return answer(record.on(json_response(StatusCode::OK, reply.to_string())));
            }
        }
        futures_util::future::Either::Right(self.inner.call(v))
    }
}
