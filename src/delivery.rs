//! The request as it moves through the stack, one type per stage: [`Routed`] (route known),
//! [`Received`] (body read), [`Verified`] (signature checked, event known).

use crate::config::Route;
use crate::verify::body_sha256;
use bytes::Bytes;
use http::HeaderValue;
use hyper::body::Incoming;
use std::sync::Arc;

/// A request whose route is known and whose body (of type `B`) is not read yet.
pub struct Routed<B = Incoming> {
    pub route: Arc<Route>,
    pub req: http::Request<B>,
    /// The TCP peer's address, as the `X-Forwarded-For` entry the gateway appends.
    pub peer: HeaderValue,
    /// Whether the request came over TLS (for `X-Forwarded-Proto`).
    pub tls: bool,
    /// The client's address (canonical; through trusted proxies): body reads are bounded per
    /// client.
    pub client: std::net::IpAddr,
}

/// A request whose body has been read in full, not verified yet.
pub struct Received {
    pub route: Arc<Route>,
    pub parts: http::request::Parts,
    /// The raw body, byte for byte as received.
    pub body: Bytes,
    pub peer: HeaderValue,
    pub tls: bool,
}

/// A request whose signature is verified and whose event is known.
pub struct Verified {
    pub request: Received,
    /// The event: the idempotency key it is claimed under, and the id the upstream receives.
    pub event: EventKey,
    /// Index of the route secret that matched.
    pub secret_index: usize,
    /// The signed one-time value to remember, for profiles that guard against replay with
    /// one; namespaced by the signing key that verified it (shared by routes with that key).
    pub nonce: Option<Arc<str>>,
    /// For a body of several events each signed on its own (Adyen's notification items):
    /// every item's event and place in the body, so that each is deduplicated alone. Empty
    /// otherwise, and for a batch of one (whose event is `event`).
    pub batch: Vec<BatchKey>,
}

/// Ids longer than this are stored as their SHA-256, which bounds the store's key size.
const MAX_ID_LEN: usize = 128;

/// One event of one route: `route` and the event `id` (its SHA-256, `sha256:…`, for an id
/// longer than [`MAX_ID_LEN`]). Rendered once, as the store key `route:id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKey {
    key: Arc<str>,
    /// Where the route's name ends in `key`.
    route_len: usize,
}

impl EventKey {
    /// Event `id` at route `route`.
    pub fn new(route: &str, id: &str) -> Self {
        let key = if id.len() <= MAX_ID_LEN {
            format!("{route}:{id}")
        } else {
            format!("{route}:sha256:{}", body_sha256(id.as_bytes()))
        };
        EventKey { key: Arc::from(key), route_len: route.len() }
    }

    /// The route's name.
    pub fn route(&self) -> &str {
        &self.key[..self.route_len]
    }

    /// The event's id, as stored (hashed when long).
    pub fn id(&self) -> &str {
        &self.key[self.route_len + 1..]
    }

    /// The idempotency key: `route:id`, namespaced by route.
    pub fn store_key(&self) -> &Arc<str> {
        &self.key
    }

    /// The id the upstream receives (see [`crate::forward::forwarded_id`]).
    pub fn forwarded_id(&self) -> HeaderValue {
        crate::forward::forwarded_id(self.route(), self.id())
    }
}

/// One item of a batched body.
#[derive(Debug, Clone)]
pub struct BatchKey {
    /// The item's event, at the delivery's route.
    pub event: EventKey,
    /// Where the item's raw text lies in the body.
    pub span: std::ops::Range<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_key_renders_the_store_key_and_splits_back() {
        let e = EventKey::new("/p:x", "evt:1");
        assert_eq!(&**e.store_key(), "/p:x:evt:1");
        assert_eq!((e.route(), e.id()), ("/p:x", "evt:1"));
        let long = EventKey::new("/p", &"a".repeat(MAX_ID_LEN + 1));
        assert!(long.id().starts_with("sha256:") && long.id().len() == 7 + 64, "{}", long.id());
        assert_eq!(long.route(), "/p");
    }
}
