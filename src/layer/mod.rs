//! The tower layers of the request path, one per phase; `stack.rs` assembles them.
//!
//! | layer | decides |
//! |---|---|
//! | [`observe`] | nothing: records one log line per request |
//! | [`catch_panic`] | 500 for a request whose handler panicked |
//! | [`route`] | 404, 405, 403 (`allow_ips`, before a variant is chosen) |
//! | [`read_body`] | 413, 408; 503 + `Retry-After` past the reads per client address |
//! | [`limit`] | 503 + `Retry-After` past the in-flight bound (bodies read) |
//! | [`authenticate`] | 401, 400; 503 + `Retry-After` when a signing certificate cannot be fetched |
//! | [`handshake`] | answers endpoint checks itself (GET ones from [`route`], before the method check) |
//! | [`dedupe`] | 200 duplicate, 409 in flight, 503 store down |
//! | [`forward`] | the upstream's answer; 502, 504; 202 queued, 503 queue down |

pub mod authenticate;
pub mod catch_panic;
pub mod dedupe;
pub mod forward;
pub mod handshake;
pub mod limit;
pub mod observe;
pub mod read_body;
pub mod route;

use crate::response::Body;
use http::Response;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

/// The future of a layer that must await something of its own.
pub type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// The future of a layer that either answers at once or hands over to the next one.
pub type EitherFuture<F> =
    futures_util::future::Either<std::future::Ready<Result<Response<Body>, Infallible>>, F>;

/// Answers at once with `res`.
pub fn answer<F>(res: Response<Body>) -> EitherFuture<F> {
    futures_util::future::Either::Left(std::future::ready(Ok(res)))
}
