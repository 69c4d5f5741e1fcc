//! The admin listener, apart from the webhook one: liveness, readiness and metrics.
//!
//! - `GET /healthz`: the process is alive.
//! - `GET /readyz`: the configuration is loaded, the store answers, and the gateway is not
//!   draining; 503 otherwise, so a load balancer stops sending while Redis is gone.
//! - `GET /metrics`: Prometheus text format.
//! - `GET /queue`: depth, oldest age, in retry and dead, per queued route.
//! - `GET /queue/dead[?route=R]`: the dead-letter list.
//! - `POST /queue/replay?id=ID` or `?all=1` (`&route=R`): dead letters back to the queue.
//! - `GET /api/...`: the admin API ([`crate::console`]): recorded deliveries and routes.
//!
//! - `GET /`, `GET /console/*`: the operator's console, a static page ([`crate::console_ui`]).
//! - `POST /api/session` (`{"token": "..."}`), `GET` and `DELETE /api/session`: the console's
//!   sign-in, its state and sign-out ([`session`]).
//!
//! With `admin.token` set, `/api` and `/queue` need `Authorization: Bearer <token>`, or the
//! console's session cookie (401 otherwise); the probes, `/metrics` and the console's static
//! files stay open. Without one (allowed on loopback only) they are open to whoever can reach
//! the listener.
//!
//! The session cookie holds `HMAC-SHA256(token, "portcullis-session")`, not the token: a
//! cookie read off a browser's disk is not a bearer token for the CLI, and the token is
//! never echoed into a response header; yet nothing is stored server-side, so every instance
//! of a fleet accepts it, and removing a token from `admin.token` ends its sessions. The
//! cookie is `HttpOnly; SameSite=Strict`, and a call it authenticates that changes something
//! must carry this listener's own `Origin` (a missing one is refused too).
//!
//! A browser page of another site can send requests here, and a DNS name rebound to this
//! address lets its scripts read the answers. So, before any endpoint ([`cross_site`]):
//! a request whose `Origin` is not this listener's own origin is refused (403); the queue
//! and API endpoints, and every method but GET and HEAD, need a `Host` that is an IP literal or
//! `localhost` (403 otherwise; the probes and `/metrics` answer under any name, for load
//! balancers and scrapers that address the instance by DNS name); and a POST may carry a body
//! only as `application/json` (415), which a page can send only with the CORS preflight this
//! listener never answers.

use crate::config::AdminTokens;
use crate::gateway::Gateway;
use crate::idempotency::bounded;
use crate::response::{full, json_response, Body};
use http::header::{
    HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, COOKIE as COOKIE_HEADER, HOST,
    ORIGIN, SET_COOKIE, TRANSFER_ENCODING, WWW_AUTHENTICATE,
};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Answers one admin request.
pub async fn handle(gateway: Arc<Gateway>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if req.uri().path() == SESSION_PATH {
        let (parts, body) = req.into_parts();
        let body = match read_body(body).await {
            Ok(b) => b,
            Err(res) => return Ok(res),
        };
        return Ok(session(&gateway, &parts.method, &parts.headers, &body));
    }
    if guarded(req.uri().path()) {
        if let Some(refused) = unauthorized(&gateway, &req) {
            return Ok(refused);
        }
    }
    if req.uri().path().starts_with("/queue") {
        return Ok(queue(gateway, &req).await);
    }
    if req.uri().path().starts_with("/api/") {
        let (parts, body) = req.into_parts();
        let body = match read_body(body).await {
            Ok(b) => b,
            Err(res) => return Ok(res),
        };
        let actor = actor(&gateway, &parts.headers);
        let api = crate::console::ApiRequest {
            method: &parts.method,
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            body,
            actor: &actor,
        };
        return Ok(crate::console::handle(&gateway, api).await);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(json_response(StatusCode::METHOD_NOT_ALLOWED, r#"{"error":"method not allowed"}"#));
    }
    if let Some(page) = crate::console_ui::serve(req.uri().path(), req.headers()) {
        return Ok(page);
    }
    Ok(match req.uri().path() {
        "/healthz" => json_response(StatusCode::OK, r#"{"status":"ok"}"#),
        "/readyz" => {
            if gateway.draining.load(Ordering::Relaxed) {
                json_response(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"draining"}"#)
            } else {
                match bounded(gateway.store_timeout, gateway.store.ping()).await {
                    Ok(()) => json_response(StatusCode::OK, r#"{"status":"ready"}"#),
                    Err(e) => {
                        tracing::warn!(error = %e, "not ready: the idempotency store does not answer");
                        json_response(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"store unavailable"}"#)
                    }
                }
            }
        }
        "/metrics" => {
            let mut res = Response::new(full(gateway.metrics.render()));
            res.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
            res
        }
        _ => json_response(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#),
    })
}

/// The largest body an admin API call may carry.
const MAX_API_BODY: usize = 64 * 1024;

/// How long an admin API call's whole body may take to arrive: `/api/session` reads its
/// body before any authentication, so without this a client trickling a body would hold a
/// connection (a task, a file descriptor) for as long as it liked.
const API_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The most admin connections served at once; past it a new connection is closed at once.
/// With [`API_BODY_TIMEOUT`] and the header read timeout this bounds what slow clients of
/// the (unauthenticated) sign-in endpoint can hold.
const MAX_ADMIN_CONNECTIONS: usize = 256;

/// An admin API call's body, at most [`MAX_API_BODY`] bytes (413 past it), in at most
/// [`API_BODY_TIMEOUT`] (408 past it; the connection is then closed).
async fn read_body(body: Incoming) -> Result<bytes::Bytes, Response<Body>> {
    use http_body_util::BodyExt;
    let collect = http_body_util::Limited::new(body, MAX_API_BODY).collect();
    match tokio::time::timeout(API_BODY_TIMEOUT, collect).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(_)) => {
            Err(json_response(StatusCode::PAYLOAD_TOO_LARGE, r#"{"error":"request body too large"}"#))
        }
        Err(_) => {
            let mut res = json_response(
                StatusCode::REQUEST_TIMEOUT,
                r#"{"error":"request body not received in time"}"#,
            );
            res.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            Err(res)
        }
    }
}

/// Who made an authorized admin call, for the audit log: `token#N` for the N-th configured
/// token (never the token), whether given as a bearer token or through the console's
/// session cookie, or `loopback` when no token is configured.
fn actor(gateway: &Gateway, headers: &http::HeaderMap) -> String {
    let routing = gateway.routing();
    match credential(&routing.config.admin_tokens, headers) {
        Credential::Bearer(Some(i)) | Credential::Cookie(Some(i)) => format!("token#{i}"),
        _ => "loopback".to_owned(),
    }
}

/// The paths that show or change deliveries: the token guards them, and only an IP literal
/// or `localhost` may name the listener for them.
fn guarded(path: &str) -> bool {
    path.starts_with("/queue") || path == "/api" || path.starts_with("/api/")
}

/// The console's sign-in endpoint; open (it is where a token is given), but under the same
/// Host, Origin and JSON-body rules as the rest of `/api`.
const SESSION_PATH: &str = "/api/session";

/// The session cookie's name.
const COOKIE: &str = "portcullis_session";

/// What a request offers to prove who sent it, and which configured token it matches.
enum Credential {
    /// An `Authorization: Bearer` header (it wins over a cookie, which is then not looked at).
    Bearer(Option<usize>),
    /// The console's session cookie, and no `Authorization` header.
    Cookie(Option<usize>),
    None,
}

/// The request's credential, compared in constant time against every configured token.
fn credential(tokens: &AdminTokens, headers: &http::HeaderMap) -> Credential {
    if let Some(auth) = headers.get(AUTHORIZATION) {
        // The scheme name is case-insensitive (RFC 7235).
        let given = auth
            .as_bytes()
            .split_at_checked(7)
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|(_, t)| t.trim_ascii());
        return Credential::Bearer(given.and_then(|t| tokens.index_of(t)));
    }
    match session_cookie(headers) {
        Some(value) => Credential::Cookie(session_index(tokens.iter(), value, now_secs())),
        None => Credential::None,
    }
}

/// The value of the `portcullis_session` cookie, if the request carries one.
fn session_cookie(headers: &http::HeaderMap) -> Option<&[u8]> {
    headers.get_all(COOKIE_HEADER).iter().flat_map(|v| v.as_bytes().split(|&b| b == b';')).find_map(|pair| {
        let pair = pair.trim_ascii();
        pair.strip_prefix(COOKIE.as_bytes()).and_then(|rest| rest.strip_prefix(b"="))
    })
}

/// How long a session cookie is good for, from sign-in; its expiry is inside the MAC.
const SESSION_LIFETIME_SECS: u64 = 12 * 3600;

/// The session value of a token expiring at `exp` (unix seconds):
/// `<exp>.<hex HMAC-SHA256(token, "portcullis-session|<exp>")>`. Stateless: nothing on the
/// gateway remembers it, so signing out (`DELETE /api/session`) only clears the browser's
/// copy; a copied value stays good until its expiry, or until its token is removed from
/// `admin.tokens` (which ends every session made from it).
fn session_value(token: &[u8], exp: u64) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(token).expect("HMAC takes any key length");
    mac.update(b"portcullis-session|");
    mac.update(exp.to_string().as_bytes());
    format!("{exp}.{}", hex::encode(mac.finalize().into_bytes()))
}

/// Now, in unix seconds.
fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Which token a session cookie was made from, compared in constant time against each;
/// `None` once its expiry has passed (or when it has none).
fn session_index<'a>(tokens: impl Iterator<Item = &'a str>, value: &[u8], now: u64) -> Option<usize> {
    use subtle::ConstantTimeEq;
    let dot = value.iter().position(|&b| b == b'.')?;
    let exp: u64 = std::str::from_utf8(&value[..dot]).ok()?.parse().ok()?;
    if exp <= now {
        return None;
    }
    let mut found = None;
    for (i, t) in tokens.enumerate() {
        if bool::from(session_value(t.as_bytes(), exp).as_bytes().ct_eq(value)) {
            found = Some(i);
        }
    }
    found
}

/// `/api/session`: `POST {"token": "..."}` signs in (204 and the cookie; 401 for a wrong
/// token), `DELETE` signs out (the cookie expired), `GET` says whether the caller is signed
/// in and whether a token is needed at all (`{"signed_in", "token_required", "actor"}`).
fn session(gateway: &Gateway, method: &Method, headers: &http::HeaderMap, body: &[u8]) -> Response<Body> {
    let routing = gateway.routing();
    let tokens = &routing.config.admin_tokens;
    let cookie = |value: &str, max_age: Option<u64>| {
        let mut c = format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/");
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        HeaderValue::from_str(&c).expect("a cookie of digits, '.' and hex digits is a valid header")
    };
    let no_content = |cookie: HeaderValue| {
        let mut res = Response::new(full(""));
        *res.status_mut() = StatusCode::NO_CONTENT;
        res.headers_mut().insert(SET_COOKIE, cookie);
        res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    };
    match *method {
        Method::GET | Method::HEAD => {
            let who = match credential(tokens, headers) {
                Credential::Bearer(Some(i)) | Credential::Cookie(Some(i)) => Some(format!("token#{i}")),
                _ if tokens.is_empty() => Some("loopback".to_owned()),
                _ => None,
            };
            let body = serde_json::json!({
                "signed_in": who.is_some(),
                "token_required": !tokens.is_empty(),
                "actor": who,
            });
            json_response(StatusCode::OK, body.to_string())
        }
        Method::POST => {
            #[derive(serde::Deserialize)]
            struct SignIn {
                token: String,
            }
            let Ok(given) = serde_json::from_slice::<SignIn>(body) else {
                return json_response(StatusCode::BAD_REQUEST, r#"{"error":"give {\"token\": \"...\"}"}"#);
            };
            if tokens.is_empty() {
                // Nothing to prove: the listener is open on loopback. No cookie is needed.
                return no_content(cookie("", Some(0)));
            }
            match tokens.index_of(given.token.trim().as_bytes()) {
                Some(i) => {
                    tracing::info!(actor = %format!("token#{i}"), "console sign-in");
                    let exp = now_secs() + SESSION_LIFETIME_SECS;
                    let value = session_value(given.token.trim().as_bytes(), exp);
                    no_content(cookie(&value, Some(SESSION_LIFETIME_SECS)))
                }
                None => {
                    tracing::warn!(reason = "wrong token", "console sign-in refused");
                    json_response(StatusCode::UNAUTHORIZED, r#"{"error":"wrong token"}"#)
                }
            }
        }
        Method::DELETE => no_content(cookie("", Some(0))),
        _ => json_response(StatusCode::METHOD_NOT_ALLOWED, r#"{"error":"method not allowed"}"#),
    }
}

/// 401 for a request to a guarded path without one of the configured tokens (as a bearer
/// token or a session cookie); 403 for a cookie-authenticated call that changes something
/// without this listener's `Origin` (the page of the console always sends it; a cookie
/// alone might have been attached by a browser to a request it was tricked into making).
/// `None` when the request may go on, or when no token is configured (a loopback listener).
fn unauthorized<B>(gateway: &Gateway, req: &Request<B>) -> Option<Response<Body>> {
    let routing = gateway.routing();
    let tokens = &routing.config.admin_tokens;
    if tokens.is_empty() {
        return None;
    }
    let reason = match credential(tokens, req.headers()) {
        Credential::Bearer(Some(_)) => return None,
        Credential::Cookie(Some(_)) => {
            let safe = matches!(*req.method(), Method::GET | Method::HEAD);
            // `cross_site` has already refused an Origin that is not this listener's own.
            if safe || req.headers().contains_key(ORIGIN) {
                return None;
            }
            tracing::warn!(
                method = %req.method(),
                path = req.uri().path(),
                reason = "a session cookie without Origin on a call that changes something",
                "admin request refused"
            );
            return Some(json_response(
                StatusCode::FORBIDDEN,
                r#"{"error":"forbidden: a call made with the session cookie needs this listener's Origin"}"#,
            ));
        }
        Credential::Bearer(None) => "wrong bearer token",
        Credential::Cookie(None) => "stale or wrong session cookie",
        Credential::None => "no bearer token or session cookie",
    };
    tracing::warn!(method = %req.method(), path = req.uri().path(), reason, "admin request refused");
    let mut res = json_response(StatusCode::UNAUTHORIZED, r#"{"error":"unauthorized"}"#);
    res.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Some(res)
}

/// The answer to a request that a browser may have sent for a page of another site, or
/// through a DNS name rebound to this address; `None` for one to serve.
pub fn cross_site<B>(req: &Request<B>) -> Option<Response<Body>> {
    let headers = req.headers();
    let host = headers.get(HOST).and_then(|h| h.to_str().ok()).filter(|h| local_host(h));
    let safe = matches!(*req.method(), Method::GET | Method::HEAD);
    let refuse = |status, reason: &'static str, body: &'static str| {
        tracing::warn!(method = %req.method(), path = req.uri().path(), reason, "admin request refused");
        Some(json_response(status, body))
    };
    if (!safe || guarded(req.uri().path())) && host.is_none() {
        return refuse(
            StatusCode::FORBIDDEN,
            "Host is not an IP literal or localhost",
            r#"{"error":"forbidden: Host must be an IP address or localhost"}"#,
        );
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let own = host.is_some_and(|h| {
            origin
                .to_str()
                .ok()
                .and_then(|o| o.strip_prefix("http://"))
                .is_some_and(|o| o.eq_ignore_ascii_case(h))
        });
        if !own {
            return refuse(
                StatusCode::FORBIDDEN,
                "Origin is not the admin listener's own",
                r#"{"error":"forbidden: cross-origin request"}"#,
            );
        }
    }
    if !safe {
        let json = headers.get(CONTENT_TYPE).map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.split(';').next())
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
        let body = headers.contains_key(TRANSFER_ENCODING)
            || headers.get(CONTENT_LENGTH).is_some_and(|n| n.as_bytes() != b"0");
        if json == Some(false) || (body && json.is_none()) {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "a body that is not application/json",
                r#"{"error":"a request body must be application/json"}"#,
            );
        }
    }
    None
}

/// True for a `Host` naming this listener without DNS: an IP literal (with or without a port;
/// the listener's own address is one) or `localhost`.
fn local_host(host: &str) -> bool {
    let name = match host.parse::<SocketAddr>() {
        Ok(_) => return true,
        Err(_) => {
            host.rsplit_once(':').filter(|(_, port)| port.parse::<u16>().is_ok()).map_or(host, |(n, _)| n)
        }
    };
    let bare = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<Ipv4Addr>().is_ok()
        || (bare != name && bare.parse::<Ipv6Addr>().is_ok())
}

/// The queue endpoints.
async fn queue(gateway: Arc<Gateway>, req: &Request<Incoming>) -> Response<Body> {
    let Some(q) = gateway.queue.clone() else {
        return json_response(StatusCode::NOT_FOUND, r#"{"error":"no route is delivery: queued"}"#);
    };
    let params: std::collections::HashMap<String, String> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
    let routes: Vec<String> = gateway
        .routing()
        .routes()
        .filter(|r| r.queue.is_some())
        .map(|r| r.name.clone())
        .filter(|n| params.get("route").is_none_or(|r| r == n))
        .collect();
    let error = |e: crate::idempotency::StoreError| {
        tracing::warn!(error = %e, "queue admin request failed");
        json_response(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"queue unavailable"}"#)
    };
    match (req.method().clone(), req.uri().path()) {
        (Method::GET, "/queue") => {
            let mut all = Vec::new();
            for r in &routes {
                match q.stats(r).await {
                    Ok(s) => all.push(s),
                    Err(e) => return error(e),
                }
            }
            json_response(StatusCode::OK, serde_json::to_string(&all).unwrap_or_default())
        }
        (Method::GET, "/queue/dead") => {
            let mut all = Vec::new();
            for r in &routes {
                match q.dead_letters(r).await {
                    Ok(d) => all.extend(d),
                    Err(e) => return error(e),
                }
            }
            json_response(StatusCode::OK, serde_json::to_string(&all).unwrap_or_default())
        }
        (Method::POST, "/queue/replay") => {
            let id = params.get("id").map(String::as_str);
            if id.is_none() && params.get("all").map(String::as_str) != Some("1") {
                return json_response(StatusCode::BAD_REQUEST, r#"{"error":"give id=ID or all=1"}"#);
            }
            // A letter's id is unique only within its route (Redis stream ids): one held by
            // several routes is not replayed in all of them.
            if let (Some(id), true) = (id, routes.len() > 1) {
                let mut holding = Vec::new();
                for r in &routes {
                    match q.dead_letter(r, id).await {
                        Ok(Some(_)) => holding.push(r.as_str()),
                        Ok(None) => {}
                        Err(e) => return error(e),
                    }
                }
                if holding.len() > 1 {
                    let body = serde_json::json!({
                        "error": format!(
                            "dead letters with id {id} are in several routes ({}); give route=R to say which",
                            holding.join(", ")
                        ),
                        "routes": holding,
                    });
                    return json_response(StatusCode::CONFLICT, body.to_string());
                }
            }
            let mut n = 0;
            for r in &routes {
                match q.replay(r, id).await {
                    Ok(k) => n += k,
                    Err(e) => return error(e),
                }
            }
            if n == 0 {
                // Nothing to replay is an error the operator must see, not a quiet success.
                let body = match id {
                    Some(id) => serde_json::json!({ "error": format!("no dead letter with id {id}") }),
                    None => serde_json::json!({ "error": "no dead letters to replay" }),
                };
                return json_response(StatusCode::NOT_FOUND, body.to_string());
            }
            json_response(StatusCode::OK, format!("{{\"replayed\":{n}}}"))
        }
        _ => json_response(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#),
    }
}

/// Serves the admin endpoints on `listener` until `shutdown` resolves.
pub async fn run(listener: TcpListener, gateway: Arc<Gateway>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, max = MAX_ADMIN_CONNECTIONS, "admin connection refused: too many open");
            drop(stream);
            continue;
        };
        let gw = gateway.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |req| {
                let gw = gw.clone();
                async move {
                    match cross_site(&req) {
                        Some(refused) => Ok(refused),
                        None => handle(gw, req).await,
                    }
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{local_host, session_cookie, session_index, session_value};
    use http::header::{HeaderValue, COOKIE};

    #[test]
    fn the_session_cookie_is_found_among_others_and_never_holds_the_token() {
        let mut h = http::HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; portcullis_session2=no"));
        h.append(COOKIE, HeaderValue::from_static("b=2;portcullis_session=abc; c=3"));
        assert_eq!(session_cookie(&h), Some(&b"abc"[..]));
        assert_eq!(session_cookie(&http::HeaderMap::new()), None);
        let v = session_value(b"token-aaaaaaaaaaaaaaaa", 2_000);
        assert!(v.starts_with("2000.") && v.len() == 5 + 64, "{v}");
        assert!(!v.contains("token"));
        assert_ne!(v, session_value(b"token-aaaaaaaaaaaaaaab", 2_000));
        assert_ne!(v, session_value(b"token-aaaaaaaaaaaaaaaa", 2_001));
    }

    #[test]
    fn a_session_is_good_until_its_expiry_and_its_expiry_cannot_be_moved() {
        let token = "token-aaaaaaaaaaaaaaaa";
        let tokens = || ["other-bbbbbbbbbbbbbbbbbb", token].into_iter();
        let v = session_value(token.as_bytes(), 2_000);
        assert_eq!(session_index(tokens(), v.as_bytes(), 1_999), Some(1));
        assert_eq!(session_index(tokens(), v.as_bytes(), 2_000), None, "expired");
        // Moving the expiry breaks the MAC.
        let moved = v.replacen("2000.", "9000.", 1);
        assert_eq!(session_index(tokens(), moved.as_bytes(), 1_999), None);
        for junk in ["", ".", "2000", "x.00", "2000.zz"] {
            assert_eq!(session_index(tokens(), junk.as_bytes(), 1_999), None, "{junk}");
        }
    }

    #[test]
    fn only_ip_literals_and_localhost_are_local_hosts() {
        for h in [
            "127.0.0.1",
            "127.0.0.1:9090",
            "[::1]",
            "[::1]:9090",
            "localhost",
            "LOCALHOST:9090",
            "10.1.2.3:80",
        ] {
            assert!(local_host(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:9090",
            "localhost.evil.example",
            "127.0.0.1.nip.io:9090",
            "",
            "::1",
        ] {
            assert!(!local_host(h), "{h}");
        }
    }
}
