//! The request as it moves through the stack: routed, then read, then verified.

use crate::routing::RouteEntry;
use bytes::Bytes;
use hyper::body::Incoming;
use std::sync::Arc;

/// A request whose route is known and whose body is not read yet.
pub struct Routed {
    pub route: Arc<RouteEntry>,
    pub req: http::Request<Incoming>,
    /// The TCP peer's address, as the `X-Forwarded-For` entry the gateway appends.
    pub peer: http::HeaderValue,
    /// Whether the request came over TLS (for `X-Forwarded-Proto`).
    pub tls: bool,
    /// The client's address (canonical; through trusted proxies): body reads are bounded per
    /// client.
    pub client: std::net::IpAddr,
}

/// A request whose body has been read in full.
pub struct Delivery {
    pub route: Arc<RouteEntry>,
    pub parts: http::request::Parts,
    /// The raw body, byte for byte as received.
    pub body: Bytes,
    pub peer: http::HeaderValue,
    pub tls: bool,
    /// The idempotency key, namespaced by route; set once the signature is verified.
    pub key: Arc<str>,
    /// Index of the route secret that matched.
    pub secret_index: usize,
    /// The signed one-time value to remember, for profiles that guard against replay with
    /// one; namespaced by the signing key that verified it (shared by routes with that key).
    pub nonce: Option<Arc<str>>,
    /// For a body of several events each signed on its own (Adyen's notification items):
    /// every item's key and place in the body, so that each is deduplicated alone. Empty
    /// otherwise, and for a batch of one (whose key is `key`).
    pub batch: Vec<BatchKey>,
}

/// One item of a batched body.
#[derive(Debug, Clone)]
pub struct BatchKey {
    /// The item's idempotency key, namespaced by route like [`Delivery::key`].
    pub key: Arc<str>,
    /// Where the item's raw text lies in the body.
    pub span: std::ops::Range<usize>,
}
