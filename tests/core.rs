//! The core contract: verify, deduplicate, forward (issue: portcullis core).

use crate::util::*;
use http::{Method, StatusCode};
use portcullis::clock::Clock;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "whsec_paylent_test";

async fn paylent_gateway(upstream: &Upstream, extra: &str) -> TestGateway {
    let yaml = config(&[route("/webhooks/paylent", "paylent", &[SECRET], &upstream.url("/paylent"), extra)]);
    TestGateway::start(&yaml, Clock::System).await
}

fn paylent_body(id: &str) -> Vec<u8> {
    format!(r#"{{"event":"user.created","event_id":"{id}","timestamp":"2026-11-30T07:59:30Z","data":{{"id":"usr_42"}}}}"#)
        .into_bytes()
}

#[tokio::test]
async fn valid_delivery_is_forwarded_once_byte_identical() {
    let up = Upstream::start().await;
    let gw = paylent_gateway(&up, "").await;
    let c = client();
    // Non-UTF-8 bytes inside the body must arrive untouched.
    let mut body = paylent_body("evt_bytes");
    body.splice(10..10, [0xff, 0xfe, 0x00, 0xc3]);
    let mut headers = sign("paylent", SECRET, &body, "", 0);
    headers.push(("X-Forwarded-For".into(), "203.0.113.9".into()));
    headers.push(("Portcullis-Provider".into(), "forged-by-client".into()));
    headers.push(("Connection".into(), "keep-alive, X-Hop".into()));
    headers.push(("X-Hop".into(), "secret-hop".into()));
    headers.push(("X-Paylent-Event".into(), "user.created".into()));
    let a = post(&c, &gw.url("/webhooks/paylent?attempt=1"), &headers, body.clone()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.headers["x-upstream"], "yes", "the upstream's answer is passed back");

    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.body.as_ref(), body.as_slice());
    assert_eq!(s.method, Method::POST);
    assert_eq!(s.uri.path(), "/paylent");
    assert_eq!(s.uri.query(), Some("attempt=1"), "the query string is kept");
    assert_eq!(s.headers["x-paylent-event"], "user.created");
    assert_eq!(s.headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1", "appended, not replaced");
    assert_eq!(s.headers["x-forwarded-proto"], "http");
    assert_eq!(s.headers["x-forwarded-host"], gw.addr.to_string());
    assert_eq!(s.headers["portcullis-provider"], "paylent");
    assert_eq!(s.headers.get_all("portcullis-provider").iter().count(), 1);
    let key = s.headers["portcullis-idempotency-key"].to_str().unwrap();
    assert!(key.strip_prefix("/webhooks/paylent:").is_some_and(|h| h.len() == 64), "body hash key: {key}");
    assert!(s.headers.get("x-hop").is_none(), "headers named by Connection are hop-by-hop");
    assert_eq!(s.headers["content-length"], body.len().to_string().as_str());
    assert!(s.headers.get("transfer-encoding").is_none());
}

#[tokio::test]
async fn over_long_content_length_is_refused_before_the_body_is_read() {
    let up = Upstream::start().await;
    let gw = paylent_gateway(&up, "").await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    // Announce 3 MiB and send nothing: the answer must come without waiting for the body.
    s.write_all(b"POST /webhooks/paylent HTTP/1.1\r\nHost: x\r\nContent-Length: 3145728\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("answered at once")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
}

#[tokio::test]
async fn per_route_body_limit_applies_to_chunked_bodies_too() {
    let up = Upstream::start().await;
    let gw = paylent_gateway(&up, "    max_body: 1KiB\n").await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let chunk = "a".repeat(800);
    let req = format!(
        "POST /webhooks/paylent HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"));
    assert_eq!(up.count(), 0);
}
