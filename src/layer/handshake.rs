//! Answers the endpoint-verification requests some providers send before any event (Slack's
//! `url_verification`, Zoom's `endpoint.url_validation`), once they are verified. Nothing is
//! claimed or forwarded for them.

use super::{answer, EitherFuture};
use crate::delivery::Delivery;
use crate::error::{json_response, Body, Outcome, Record};
use crate::profile::Handshake;
use http::{Response, StatusCode};
use std::convert::Infallible;
use std::task::{Context, Poll};
use tower::{Layer, Service};

#[derive(Clone, Default)]
pub struct HandshakeLayer;

impl<S> Layer<S> for HandshakeLayer {
    type Service = Handshakes<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Handshakes { inner }
    }
}

#[derive(Clone)]
pub struct Handshakes<S> {
    inner: S,
}

/// The local answer to a handshake request, or `None` when `d` is an ordinary delivery.
pub fn answer_for(kind: Handshake, d: &Delivery) -> Option<serde_json::Value> {
    // Handshake bodies are small JSON objects; anything else is an ordinary delivery.
    if d.body.first() != Some(&b'{') {
        return None;
    }
    let doc: serde_json::Value = serde_json::from_slice(&d.body).ok()?;
    match kind {
        Handshake::SlackUrlVerification => {
            if doc.get("type")?.as_str()? != "url_verification" {
                return None;
            }
            let challenge = doc.get("challenge")?.as_str()?;
            Some(serde_json::json!({ "challenge": challenge }))
        }
        Handshake::ZoomUrlValidation => {
            if doc.get("event")?.as_str()? != "endpoint.url_validation" {
                return None;
            }
            let plain = doc.pointer("/payload/plainToken")?.as_str()?;
            let encrypted = d.route.verifier.hmac_sha256_hex(d.secret_index, plain.as_bytes())?;
            Some(serde_json::json!({ "plainToken": plain, "encryptedToken": encrypted }))
        }
    }
}

impl<S> Service<Delivery> for Handshakes<S>
where
    S: Service<Delivery, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = EitherFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, d: Delivery) -> Self::Future {
        if let Some(kind) = d.route.verifier.profile().handshake {
            if let Some(reply) = answer_for(kind, &d) {
                let mut res = json_response(StatusCode::OK, reply.to_string());
                res.extensions_mut().insert(Record {
                    outcome: Outcome::Handshake,
                    route: Some(d.route.clone()),
                    key: None,
                    secret_index: Some(d.secret_index),
                    detail: None,
                    upstream_latency: None,
                });
                return answer(res);
            }
        }
        futures_util::future::Either::Right(self.inner.call(d))
    }
}
