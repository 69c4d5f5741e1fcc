//! Attacks on the admin listener and the console from outside (brief attack15), over raw
//! sockets: what held is asserted; what did not is an `#[ignore]`d test naming the finding,
//! to be un-ignored with its fix.

use crate::util::*;
use portcullis::clock::Clock;
use portcullis::response::Captured;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "attack-token-aaaaaaaaaaaa";
const SECRET: &str = "attack-route-secret";

fn yaml(upstream: &str) -> String {
    let r = route("/p", "paylent", &[SECRET], upstream, "    capture: all\n");
    format!("listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n  token: [{TOKEN:?}]\nroutes:\n{r}")
}

/// One raw HTTP/1.1 request (`head` without its final blank line) and the answer's status.
async fn raw(addr: SocketAddr, head: &str, body: &str) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out);
    text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"))
}

/// The session cookie (`name=value`) for `TOKEN`.
async fn sign_in(admin: SocketAddr) -> String {
    let mut s = TcpStream::connect(admin).await.unwrap();
    let body = format!(r#"{{"token":"{TOKEN}"}}"#);
    let req = format!(
        "POST /api/session HTTP/1.1\r\nHost: {admin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    let line = text.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).expect("a cookie");
    line.split_once(':').unwrap().1.trim().split(';').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_and_rebinding_requests_are_refused() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(&up.url("/")), Clock::System).await;
    let a = gw.admin;
    let cookie = sign_in(a).await;
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let moved = {
        let (exp, mac) = cookie.split_once('=').unwrap().1.split_once('.').expect("<exp>.<mac>");
        format!("portcullis_session={}.{mac}", exp.parse::<u64>().unwrap() + 3600)
    };
    let cases: Vec<(String, &str, u16)> = vec![
        // DNS rebinding: any name but localhost, no Host, HTTP/1.0 without Host.
        (format!("GET /api/deliveries HTTP/1.1\r\nHost: evil.example\r\n{bearer}"), "", 403),
        (format!("GET /api/deliveries HTTP/1.1\r\nHost: 127.0.0.1.nip.io:{}\r\n{bearer}", a.port()), "", 403),
        (format!("GET /api/deliveries HTTP/1.1\r\nHost: evil.localhost\r\n{bearer}"), "", 403),
        (format!("GET /api/deliveries HTTP/1.0\r\n{bearer}"), "", 403),
        (format!("GET http://evil.example/api/deliveries HTTP/1.1\r\nHost: evil.example\r\n{bearer}"), "", 403),
        ("GET /api/session HTTP/1.1\r\nHost: evil.example".to_owned(), "", 403),
        // CSRF with the cookie: no Origin, null, another port of the same host (same site).
        (format!("POST /api/dead-letters/purge HTTP/1.1\r\nHost: {a}\r\nCookie: {cookie}"), "", 403),
        (format!("POST /api/dead-letters/purge HTTP/1.1\r\nHost: {a}\r\nOrigin: null\r\nCookie: {cookie}"), "", 403),
        (
            format!("POST /api/dead-letters/purge HTTP/1.1\r\nHost: {a}\r\nOrigin: http://127.0.0.1:1\r\nCookie: {cookie}"),
            "",
            403,
        ),
        (
            format!("POST /api/deliveries/x/replay HTTP/1.1\r\nHost: {a}\r\nOrigin: http://{a}\r\nContent-Type: text/plain\r\nCookie: {cookie}"),
            "{}",
            415,
        ),
        (format!("POST /api/deliveries/x/replay HTTP/1.1\r\nHost: {a}\r\nOrigin: http://{a}\r\nCookie: {cookie}"), "a=b", 415),
        // Auth: wrong, empty, a valid cookie spoiled by a wrong bearer token, Basic.
        (format!("GET /api/deliveries HTTP/1.1\r\nHost: {a}\r\nAuthorization: Bearer {TOKEN}x"), "", 401),
        (format!("GET /api/deliveries HTTP/1.1\r\nHost: {a}\r\nAuthorization: Bearer "), "", 401),
        (format!("GET /api/deliveries HTTP/1.1\r\nHost: {a}\r\nAuthorization: Bearer x\r\nCookie: {cookie}"), "", 401),
        (format!("GET /api/deliveries HTTP/1.1\r\nHost: {a}\r\nAuthorization: Basic {TOKEN}"), "", 401),
        (format!("GET /api/deliveries HTTP/1.1\r\nHost: {a}\r\nCookie: portcullis_session={TOKEN}"), "", 401),
        // What must still work.
        (format!("GET /api/deliveries HTTP/1.1\r\nHost: {a}\r\nCookie: {cookie}"), "", 200),
        (format!("GET /api/deliveries HTTP/1.1\r\nHost: localhost:{}\r\n{bearer}", a.port()), "", 200),
        // The scheme name is case-insensitive (RFC 7235).
        (format!("GET /api/deliveries HTTP/1.1\r\nHost: {a}\r\nAuthorization: bearer {TOKEN}"), "", 200),
        (format!("GET /api/deliveries HTTP/1.1\r\nHost: {a}\r\nAuthorization: BEARER {TOKEN}"), "", 200),
        // A session value with its expiry moved (the MAC no longer matches).
        (format!("GET /api/deliveries HTTP/1.1\r\nHost: {a}\r\nCookie: {moved}"), "", 401),
    ];
    for (head, body, want) in cases {
        assert_eq!(raw(a, &head, body).await, want, "{head}");
    }
    assert!(!cookie.contains(TOKEN), "the cookie holds the token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_a_forged_delivery_is_refused_even_forced() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(&up.url("/")), Clock::System).await;
    let c = client();
    let body = br#"{"event_id":"evt_<svg/onload=alert(1)>"}"#.to_vec();
    let forged = post(&c, &gw.url("/p"), &[("x-paylent-signature".into(), "sha256=00".into())], body).await;
    assert_eq!(forged.status.as_u16(), 401);
    let deadline = Deadline::new("the forged delivery in the log", Duration::from_secs(10));
    let id = loop {
        let page = send(
            &c,
            http::Method::GET,
            &format!("http://{}/api/deliveries", gw.admin),
            &[("authorization".into(), format!("Bearer {TOKEN}"))],
            "",
        )
        .await;
        let v: serde_json::Value = serde_json::from_str(&page.text()).unwrap();
        if let Some(id) = v["deliveries"][0]["id"].as_str() {
            break id.to_owned();
        }
        deadline.tick().await;
    };
    for body in ["", r#"{"force":true}"#] {
        let head = format!(
            "POST /api/deliveries/{id}/replay HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json",
            gw.admin
        );
        assert_eq!(raw(gw.admin, &head, body).await, 422, "{body}");
    }
    assert_eq!(up.count(), 0, "a forged request reached the upstream");
}

/// Finding 1: a truncated capture is a `Bytes::slice` of the whole request body, so the event
/// log keeps every byte of it (1 MiB per forged request by default), not `capture_max_bytes`.
#[test]
fn a_truncated_capture_does_not_keep_the_whole_body() {
    let body = bytes::Bytes::from(vec![b'x'; 1 << 20]);
    let c = Captured { method: http::Method::POST, target: None, headers: http::HeaderMap::new(), body };
    let capture = c.to_capture(64 * 1024, false, &[]);
    drop(c);
    assert!(capture.truncated);
    let held = match capture.body.try_into_mut() {
        Ok(m) => m.capacity(),
        Err(b) => b.len(),
    };
    assert!(held <= 64 * 1024, "the capture holds {held} bytes");
}

/// Finding 4: credentials of any scheme (not just the route's secret header) are redacted
/// in a capture, as in the dead-letter view.
#[test]
fn a_capture_redacts_credential_headers_on_any_route() {
    let mut headers = http::HeaderMap::new();
    headers.insert("authorization", "Bearer abc".parse().unwrap());
    headers.insert("cookie", "s=1".parse().unwrap());
    headers.insert("proxy-authorization", "Basic Zm9v".parse().unwrap());
    headers.insert("x-sig", "v1=abc".parse().unwrap());
    let c = Captured { method: http::Method::POST, target: None, headers, body: bytes::Bytes::new() };
    let capture = c.to_capture(64, true, &[]);
    for (k, v) in &capture.headers {
        let secret = k != "x-sig";
        assert_eq!(v == portcullis::response::REDACTED, secret, "{k}: {v}");
    }
}

/// Finding 2: the admin listener has no body-read timeout, and `/api/session` reads a body
/// before any authentication: a client trickling a body holds a connection (a task and a file
/// descriptor, shared with the webhook listener) for as long as it likes. Fixed: the whole
/// body must arrive within 10 s (408, then closed); the test waits at most 20 s for that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_sign_in_body_is_cut_off() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(&up.url("/")), Clock::System).await;
    let mut s = TcpStream::connect(gw.admin).await.unwrap();
    let head = format!(
        "POST /api/session HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{{",
        gw.admin
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        assert!(started.elapsed() < Duration::from_secs(20), "still open after 20 s of trickling");
        if s.write_all(b" ").await.is_err() {
            return;
        }
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => return, // answered (408) or closed
            Err(_) => {}
        }
    }
}
