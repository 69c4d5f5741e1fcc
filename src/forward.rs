//! The upstream side of forwarding: the pooled keep-alive client, the header hygiene of what
//! is forwarded (hop-by-hop and forged headers out, the gateway's own in), the forwarded id
//! and the re-signing for the upstream. The service that uses them is `layer::forward`.

use crate::config::Route;
use crate::delivery::{RequestId, Verified};
use crate::response::Rejection;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use http_body_util::Full;
use tokio_rustls::rustls;

use crate::upstream_tls::HttpsClient;

/// The pooled clients of upstreams: `http://` ones on our own pool of HTTP/1 connections,
/// `https://` ones (without `upstream_tls:`) on hyper-util's client with rustls.
#[derive(Clone)]
pub struct UpstreamClient {
    http: crate::upstream_pool::HttpPool,
    https: HttpsClient,
}

static PORTCULLIS_PROVIDER: HeaderName = HeaderName::from_static("portcullis-provider");
static PORTCULLIS_KEY: HeaderName = HeaderName::from_static("portcullis-idempotency-key");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Builds the pooled upstream client; idle connections are kept warm for reuse.
/// `https://` upstreams are verified against the system's roots (a route's `upstream_tls:`
/// has a client of its own, [`crate::upstream_tls::UpstreamTls::client`]).
pub fn client(limits: &crate::config::Limits) -> UpstreamClient {
    let opts = crate::upstream_tls::ClientOptions {
        connect_timeout: limits.upstream_connect_timeout,
        max_idle_per_host: limits.upstream_max_idle_per_host,
    };
    UpstreamClient {
        http: crate::upstream_pool::HttpPool::new(opts.connect_timeout, opts.max_idle_per_host),
        https: crate::upstream_tls::client(None, &opts),
    }
}

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Whether `name` is hop-by-hop (of the list, or `Upgrade`). Most names are not, and have
/// none of the list's lengths (2, 7, 10, 16–19): those are answered without a comparison.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(name.as_str().len(), 2 | 7 | 10 | 16..=19)
        && (HOP_BY_HOP.contains(name) || name == header::UPGRADE)
}

/// Removes hop-by-hop headers, including those the `Connection` header names, and `Upgrade`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them: reading the few names there are costs less than a
    // lookup for each name of the list.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for n in &named {
            headers.remove(n);
        }
    }
    for n in HOP_BY_HOP.iter() {
        headers.remove(n);
    }
    headers.remove(header::UPGRADE);
}

static WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
static WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
static WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// Adds Standard Webhooks headers signed with the route's `forward_signing` key, so every
/// backend verifies one scheme whatever the provider: `webhook-id` is the forwarded id (see
/// [`crate::delivery::forwarded_id`]; the value signed), and the signature is `v1,` + base64
/// HMAC-SHA256 of `{id}.{timestamp}.{body}`.
fn sign_forward(headers: &mut HeaderMap, key: &crate::verify::mac::MacKey, id: &[u8], body: &[u8]) {
    use base64::Engine;
    let ts = crate::clock::now().to_string();
    let digest = key.digest([id, b".", ts.as_bytes(), b".", body]);
    let sig = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(digest.as_bytes()));
    headers.insert(WEBHOOK_ID.clone(), HeaderValue::from_bytes(id).expect("a header value already"));
    headers.insert(WEBHOOK_TIMESTAMP.clone(), HeaderValue::from_str(&ts).expect("digits"));
    headers.insert(WEBHOOK_SIGNATURE.clone(), HeaderValue::from_str(&sig).expect("base64"));
}

/// A delivery as the upstream will receive it: headers cleaned and the gateway's own set,
/// but not yet addressed or re-signed (a queued delivery is addressed and signed when sent).
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub method: http::Method,
    /// The query string the request arrived with, kept for the upstream.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The idempotency id, as the `Portcullis-Idempotency-Key` value.
    pub id: HeaderValue,
}

/// Cleans a verified delivery's headers for the upstream: hop-by-hop, client-sent
/// `Portcullis-*` and the sender's claims of the client address (`Forwarded`, `X-Real-IP`)
/// out, one framing, `X-Forwarded-*`, `X-Request-Id`, `traceparent` and `Portcullis-*` in.
pub fn prepare(v: Verified) -> Outgoing {
    let d = v.request;
    let route = &d.route;
    let mut headers = d.parts.headers;
    strip_hop_by_hop(&mut headers);
    // Headers the upstream trusts come only from the gateway, in any spelling: CGI and WSGI
    // servers read `Portcullis_Provider` as `Portcullis-Provider` (both become
    // `HTTP_PORTCULLIS_PROVIDER`), so a sender's underscore twin of a header the gateway sets
    // or verified would be merged with, or override, the real one.
    if headers.keys().any(|k| forged_spelling(k.as_str(), route)) {
        let forged: Vec<HeaderName> =
            headers.keys().filter(|k| forged_spelling(k.as_str(), route)).cloned().collect();
        for k in forged {
            headers.remove(k);
        }
    }
    // The body is sent with its exact length: one framing, set by the client.
    headers.remove(header::CONTENT_LENGTH);
    // Where the request came from is told by the gateway's X-Forwarded-* alone: a sender's
    // `Forwarded: for=…;host=…` or `X-Real-IP` would let it claim any address or host to an
    // upstream that reads them (their underscore spellings are dropped above).
    headers.remove(header::FORWARDED);
    headers.remove(&X_REAL_IP);
    // The gateway's own view of the request, never the sender's: a sender's X-Forwarded-Host
    // is dropped even when the request has no Host to put in its place.
    headers.remove(&X_FORWARDED_HOST);
    if let Some(host) = headers.remove(header::HOST) {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    let peer = d.peer;
    let xff = match headers.remove(&X_FORWARDED_FOR) {
        Some(prev) => {
            let mut v = prev.as_bytes().to_vec();
            v.extend_from_slice(b", ");
            v.extend_from_slice(peer.as_bytes());
            HeaderValue::from_bytes(&v).unwrap_or(peer)
        }
        None => peer,
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(if d.tls { "https" } else { "http" }));
    headers.insert(PORTCULLIS_PROVIDER.clone(), route.provider_value.clone());
    let id = v.event.forwarded_id();
    headers.insert(PORTCULLIS_KEY.clone(), id.clone());
    // The observe layer put the request id in the headers (a sender's own replaced unless a
    // trusted proxy set it); a request that did not pass there (a unit test's) gets one here.
    if !headers.contains_key(&RequestId::HEADER) {
        headers.insert(RequestId::HEADER, RequestId::new().value());
    }
    // The trace goes on with the gateway's span as the parent; a sender's invalid
    // `traceparent` (or a `tracestate` alone) does not reach the upstream.
    match d.parts.extensions.get::<crate::telemetry::Trace>() {
        Some(t) => t.set(&mut headers, None),
        None => crate::telemetry::Trace::clear(&mut headers),
    }
    Outgoing {
        method: d.parts.method,
        query: d.parts.uri.query().map(str::to_string),
        headers,
        body: d.body,
        id,
    }
}

/// Headers the gateway sets on what it forwards, the connection owns, or only the gateway
/// may tell (the client's address), by exact name.
const SET_BY_GATEWAY: [&str; 9] = [
    "host",
    "x-request-id",
    "content-length",
    "upgrade",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "forwarded",
    "x-real-ip",
];

/// Whether a sender's header must not reach the upstream because, read with `_` as `-`
/// (names are lower case already), it is a `Portcullis-*` header, or an underscore spelling
/// of a header the gateway sets (`X-Forwarded-*`, the Standard Webhooks headers of
/// `forward_signing`) or drops (`X-Real-IP`), of a hop-by-hop header, or of a header the route's profile verified
/// (signature, timestamp, id). A name without `_` is only compared with `portcullis-`.
fn forged_spelling(name: &str, route: &Route) -> bool {
    if dashed_prefix(name, "portcullis-") {
        return true;
    }
    if !name.contains('_') {
        return false;
    }
    if dashed_prefix(name, "x-forwarded-")
        || SET_BY_GATEWAY.iter().any(|n| dashed_eq(name, n))
        || HOP_BY_HOP.iter().any(|n| dashed_eq(name, n.as_str()))
    {
        return true;
    }
    let profile = route.verifier.profile();
    let timestamp = match profile.timestamp.as_ref().map(|t| &t.source) {
        Some(crate::verify::profile::TimestampSource::Header(h)) => Some(h),
        _ => None,
    };
    let id = match &profile.id {
        crate::verify::profile::IdSource::Header(h) => h.as_slice(),
        _ => &[],
    };
    profile.headers.iter().chain(timestamp).chain(id).any(|n| dashed_eq(name, n.as_str()))
}

/// `name == target` with every `_` of `name` read as `-`.
fn dashed_eq(name: &str, target: &str) -> bool {
    name.len() == target.len() && dashed_prefix(name, target)
}

/// `name` starts with `prefix`, with every `_` of `name` read as `-`.
fn dashed_prefix(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name.bytes().zip(prefix.bytes()).all(|(a, b)| a == b || (a == b'_' && b == b'-'))
}

/// Addresses an outgoing delivery to one of the route's upstreams, and signs it for the
/// upstream when the route asks for it.
pub fn to_request(
    route: &Route,
    up: &crate::config::Upstream,
    o: Outgoing,
) -> Result<Request<Full<Bytes>>, http::Error> {
    let pq = match &o.query {
        Some(q) => PathAndQuery::try_from(format!("{}?{q}", up.path))?,
        None => up.path_and_query.clone(),
    };
    let uri = Uri::builder()
        .scheme(up.scheme.clone())
        .authority(up.authority.clone())
        .path_and_query(pq)
        .build()?;
    let mut headers = o.headers;
    if let Some(key) = &route.forward_signing {
        sign_forward(&mut headers, key, o.id.as_bytes(), &o.body);
    }
    let mut req = Request::new(Full::new(o.body));
    *req.method_mut() = o.method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Ok(req)
}

/// Sends a request to the upstream under the route's timeout: `https://` with `tls` (a
/// route's `upstream_tls:` client) or the client's own, `http://` on the client's pool.
/// Connection failures are 502, timeouts (connect or answer) 504. The reason (for the log)
/// is the error chain; a TLS failure is marked `TLS:` and keeps rustls' own text ("invalid
/// peer certificate: UnknownIssuer", "received fatal alert: CertificateRequired"), which
/// never holds key material.
pub fn send<'a>(
    client: &'a UpstreamClient,
    tls: Option<&'a HttpsClient>,
    route: &Route,
    req: Request<Full<Bytes>>,
) -> impl std::future::Future<Output = Result<Response<hyper::body::Incoming>, Rejection>> + Send + 'a {
    use futures_util::future::Either;
    use futures_util::TryFutureExt;
    let timeout = route.upstream_timeout;
    // Made here rather than in an `async fn`, so that the request is not kept in the future
    // beside the client's own copy (a future is moved whole, every byte of it).
    let answer = if req.uri().scheme() == Some(&http::uri::Scheme::HTTPS) {
        Either::Left(tls.unwrap_or(&client.https).request(req).map_err(move |e| failure(&e, timeout)))
    } else {
        Either::Right(client.http.send(req).map_err(move |e| failure(&e, timeout)))
    };
    async move { tokio::time::timeout(timeout, answer).await.unwrap_or(Err(Rejection::UpstreamTimeout(timeout))) }
}

/// The rejection of a request that got no response: 504 when a timeout is in the error's
/// chain, else 502 with the chain as the reason.
fn failure(e: &(dyn std::error::Error + 'static), timeout: std::time::Duration) -> Rejection {
    let mut msg = e.to_string();
    let mut timed_out = false;
    let mut src = e.source();
    while let Some(s) = src {
        msg = if is_tls(s) { format!("{msg}: TLS: {s}") } else { format!("{msg}: {s}") };
        timed_out |=
            s.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        src = s.source();
    }
    if timed_out {
        Rejection::UpstreamTimeout(timeout)
    } else {
        Rejection::UpstreamUnavailable(msg)
    }
}

/// Whether an error is rustls' own, which tokio-rustls and hyper-rustls hand on inside one
/// `io::Error` or two (whose `source()` skips it: its text is theirs).
fn is_tls(mut e: &(dyn std::error::Error + 'static)) -> bool {
    loop {
        if e.is::<rustls::Error>() {
            return true;
        }
        match e.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
            Some(inner) => e = inner,
            None => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, X-Secret-Hop".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
        // Nothing hop-by-hop: left as it is.
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
        // `Upgrade` alone is found too.
        h.insert(header::UPGRADE, "h2c".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn the_length_filter_lets_every_hop_by_hop_name_through() {
        for n in HOP_BY_HOP.iter().chain([&header::UPGRADE]) {
            assert!(is_hop_by_hop(n), "{n}");
        }
        for n in ["host", "content-type", "user-agent", "x-paylent-signature", "tes", "trailers"] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(n)), "{n}");
        }
    }

    #[test]
    fn underscores_read_as_dashes() {
        assert!(dashed_eq("webhook_id", "webhook-id"));
        assert!(dashed_eq("webhook-id", "webhook-id"));
        assert!(!dashed_eq("webhook_ids", "webhook-id"));
        assert!(!dashed_eq("webhook-id", "webhook_id"), "only the sender's '_' is read as '-'");
        assert!(dashed_prefix("portcullis_provider", "portcullis-"));
        assert!(dashed_prefix("x_forwarded_port", "x-forwarded-"));
        assert!(!dashed_prefix("x_forward", "x-forwarded-"));
    }

    #[test]
    fn the_client_address_headers_are_set_by_the_gateway_only() {
        assert!(SET_BY_GATEWAY.iter().any(|n| dashed_eq("x_real_ip", n)));
        assert!(SET_BY_GATEWAY.contains(&header::FORWARDED.as_str()));
        assert!(SET_BY_GATEWAY.contains(&X_REAL_IP.as_str()));
    }
}
