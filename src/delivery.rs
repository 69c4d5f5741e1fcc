//! The request as it moves through the stack, one type per stage: [`Routed`] (route known),
//! [`Received`] (body read), [`Verified`] (signature checked, event known).

use crate::routing::RouteEntry;
use crate::verify::body_sha256;
use bytes::Bytes;
use http::HeaderValue;
use hyper::body::Incoming;
use std::sync::Arc;

/// A request whose route is known and whose body (of type `B`) is not read yet.
pub struct Routed<B = Incoming> {
    pub route: Arc<RouteEntry>,
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
    pub route: Arc<RouteEntry>,
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
/// longer than 128 bytes). Rendered once, as the store key `route:id`.
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

    /// The id the upstream receives (see [`forwarded_id`]).
    pub fn forwarded_id(&self) -> HeaderValue {
        forwarded_id(self.route(), self.id())
    }
}

/// The id the upstream receives, in `Portcullis-Idempotency-Key` and (re-signed) `webhook-id`:
/// `<route>:<event id>`, scoped by route so that two routes' events with the same id stay
/// apart at a shared backend, and visible ASCII so that any HTTP stack and any Standard
/// Webhooks library reads it. Every byte outside `!`..`~`, and every `%`, is written `%XX`
/// (upper-case hex, UTF-8 bytes); so is every `:` of the route's name, so the first `:`
/// ends it.
pub fn forwarded_id(route: &str, event: &str) -> HeaderValue {
    fn push(out: &mut Vec<u8>, s: &str, encode_colon: bool) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let kept = |b: u8| (b'!'..=b'~').contains(&b) && b != b'%' && !(encode_colon && b == b':');
        // Most ids need no escaping: copied whole.
        if s.bytes().all(kept) {
            out.extend_from_slice(s.as_bytes());
            return;
        }
        for &b in s.as_bytes() {
            if kept(b) {
                out.push(b);
            } else {
                out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            }
        }
    }
    let mut out = Vec::with_capacity(route.len() + event.len() + 1);
    push(&mut out, route, true);
    out.push(b':');
    push(&mut out, event, false);
    HeaderValue::from_maybe_shared(Bytes::from(out)).expect("visible ASCII only")
}

/// The request id: forwarded to the upstream as `X-Request-Id`, written in the delivery's log
/// line and its event. Taken from the request only when the connection's peer is a trusted
/// proxy (which set it); any other sender's value is replaced, so that an id in the logs was
/// made by the gateway or by a proxy it trusts. The observe layer decides it and writes it
/// into the request's own headers (which the forwarder passes on), so that it travels down
/// the stack without an extension map being allocated for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestId {
    /// Made by the gateway: 16 random bytes in lower-case hex, kept inline.
    Made([u8; 32]),
    /// A trusted proxy's (a shared reference to the received value).
    Taken(HeaderValue),
}

/// A trusted proxy's `X-Request-Id` longer than this is not taken (a new one is made).
const MAX_REQUEST_ID: usize = 128;

impl RequestId {
    /// The header's name.
    pub const HEADER: http::HeaderName = http::HeaderName::from_static("x-request-id");

    /// The id of a request with `headers`: a trusted proxy's single `X-Request-Id` of visible
    /// ASCII (at most 128 bytes), or else a new one.
    pub fn of(headers: &http::HeaderMap, from_trusted_proxy: bool) -> Self {
        if from_trusted_proxy {
            let mut all = headers.get_all(&Self::HEADER).iter();
            if let (Some(v), None) = (all.next(), all.next()) {
                let b = v.as_bytes();
                if !b.is_empty() && b.len() <= MAX_REQUEST_ID && b.iter().all(|c| (b'!'..=b'~').contains(c)) {
                    return RequestId::Taken(v.clone());
                }
            }
        }
        Self::new()
    }

    /// A new id: 16 random bytes as 32 lower-case hex digits, without allocating.
    pub fn new() -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let r = rand::random::<u128>();
        let mut out = [0u8; 32];
        for (i, c) in out.iter_mut().enumerate() {
            *c = HEX[((r >> (124 - 4 * i)) & 15) as usize];
        }
        RequestId::Made(out)
    }

    /// The id as a header value (a copy of a made one: the one allocation of the id).
    pub fn value(&self) -> HeaderValue {
        match self {
            RequestId::Made(b) => HeaderValue::from_bytes(b).expect("hex digits"),
            RequestId::Taken(v) => v.clone(),
        }
    }

    /// Writes the id into `headers` as `X-Request-Id`, replacing a sender's; a trusted
    /// proxy's id is there already.
    pub fn set(&self, headers: &mut http::HeaderMap) {
        if let RequestId::Made(_) = self {
            headers.insert(Self::HEADER, self.value());
        }
    }

    pub fn as_str(&self) -> &str {
        // Visible ASCII only: made here, or checked when taken.
        match self {
            RequestId::Made(b) => std::str::from_utf8(b).unwrap_or_default(),
            RequestId::Taken(v) => v.to_str().unwrap_or_default(),
        }
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
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
    fn forwarded_ids_are_route_scoped_visible_ascii_and_injective() {
        assert_eq!(forwarded_id("/p", "evt_1"), "/p:evt_1");
        assert_eq!(forwarded_id("/p", "a:b"), "/p:a:b", "ids joined from two pointers keep their ':'");
        assert_eq!(forwarded_id("/p", "évt 1%\t"), "/p:%C3%A9vt%201%25%09");
        // Already-encoded text stays apart from what it encodes.
        assert_ne!(forwarded_id("/p", "%41"), forwarded_id("/p", "A"));
        // The first ':' ends the route's name.
        assert_eq!(forwarded_id("a:b", "c"), "a%3Ab:c");
        assert_ne!(forwarded_id("a:b", "c"), forwarded_id("a", "b:c"));
        assert_ne!(forwarded_id("/a", "e"), forwarded_id("/b", "e"));
        assert!(forwarded_id("/p", "ü\u{7f}\0").to_str().is_ok());
    }

    #[test]
    fn a_request_id_is_taken_from_a_trusted_proxy_only() {
        let mut h = http::HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("proxy-id-1"));
        assert_eq!(RequestId::of(&h, true).as_str(), "proxy-id-1");
        let made = RequestId::of(&h, false);
        assert_ne!(made.as_str(), "proxy-id-1");
        assert_eq!(made.as_str().len(), 32);
        assert!(made.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(RequestId::new(), RequestId::new());
        // Repeated, empty, too long or not visible ASCII: a new one.
        h.append("x-request-id", HeaderValue::from_static("proxy-id-2"));
        assert_eq!(RequestId::of(&h, true).as_str().len(), 32);
        for bad in ["", "a b", &"x".repeat(MAX_REQUEST_ID + 1)] {
            h.insert("x-request-id", HeaderValue::from_str(bad).unwrap());
            assert_eq!(RequestId::of(&h, true).as_str().len(), 32, "{bad:?}");
        }
    }

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
