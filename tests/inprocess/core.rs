//! The core contract in process: verify, deduplicate, forward (issue: portcullis core).

use super::App;
use crate::util::*;
use http::{Method, StatusCode};
use portcullis::clock::Clock;
use std::time::Duration;

const SECRET: &str = "whsec_paylent_test";

async fn paylent_app(upstream: &Upstream, extra: &str) -> App {
    let yaml = config(&[route("/webhooks/paylent", "paylent", &[SECRET], &upstream.url("/paylent"), extra)]);
    App::start(&yaml, Clock::System).await
}

fn paylent_body(id: &str) -> Vec<u8> {
    format!(r#"{{"event":"user.created","event_id":"{id}","timestamp":"2026-11-30T07:59:30Z","data":{{"id":"usr_42"}}}}"#)
        .into_bytes()
}

#[tokio::test]
async fn forged_tampered_wrong_secret_empty_and_stale_get_401() {
    let up = Upstream::start().await;
    let yaml = config(&[
        route("/paylent", "paylent", &[SECRET], &up.url("/p"), ""),
        route("/stripe", "stripe", &["whsec_stripe"], &up.url("/s"), ""),
    ]);
    let gw = App::start(&yaml, Clock::System).await;
    let body = paylent_body("evt_forged");
    let good = sign("paylent", SECRET, &body, "", 0);

    type Case = (&'static str, Vec<(String, String)>, Vec<u8>, &'static str);
    let mut cases: Vec<Case> = vec![
        ("no signature", vec![], body.clone(), "/paylent"),
        ("tampered body", good.clone(), paylent_body("evt_forgeD"), "/paylent"),
        ("wrong secret", sign("paylent", "other", &body, "", 0), body.clone(), "/paylent"),
        ("empty digest", vec![("X-Paylent-Signature".into(), "sha256=".into())], body.clone(), "/paylent"),
        ("empty header", vec![("X-Paylent-Signature".into(), "".into())], body.clone(), "/paylent"),
        ("garbage", vec![("X-Paylent-Signature".into(), "sha256=zz".into())], body.clone(), "/paylent"),
    ];
    let stale = now() - 3600;
    cases.push(("stale", sign("stripe", "whsec_stripe", b"{}", "", stale), b"{}".to_vec(), "/stripe"));
    let future = now() + 3600;
    cases.push(("future", sign("stripe", "whsec_stripe", b"{}", "", future), b"{}".to_vec(), "/stripe"));
    for (what, headers, body, path) in cases {
        let a = gw.post(path, &headers, body).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(a.text(), r#"{"error":"invalid signature"}"#, "{what}: the reason stays generic");
    }
    assert_eq!(up.count(), 0, "nothing reaches the upstream");

    // A fresh Stripe delivery passes.
    let a = gw.post("/stripe", &sign("stripe", "whsec_stripe", b"{}", "", now()), "{}").await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn forged_request_does_not_poison_the_genuine_key() {
    let up = Upstream::start().await;
    let gw = paylent_app(&up, "").await;
    let body = paylent_body("evt_target");
    let forged = sign("paylent", "attacker", &body, "", 0);
    assert_eq!(gw.post("/webhooks/paylent", &forged, body.clone()).await.status, 401);
    let genuine = sign("paylent", SECRET, &body, "", 0);
    assert_eq!(gw.post("/webhooks/paylent", &genuine, body.clone()).await.status, 200);
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn sequential_duplicate_is_acknowledged_not_forwarded() {
    let up = Upstream::start().await;
    let gw = paylent_app(&up, "").await;
    let body = paylent_body("evt_dup");
    let h = sign("paylent", SECRET, &body, "", 0);
    assert_eq!(gw.post("/webhooks/paylent", &h, body.clone()).await.status, 200);
    let a = gw.post("/webhooks/paylent", &h, body.clone()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.text(), r#"{"status":"duplicate"}"#);
    assert_eq!(up.count(), 1);
    assert_eq!(up.seen()[0].headers["portcullis-idempotency-key"], "/webhooks/paylent:evt_dup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_copies_are_forwarded_exactly_once() {
    let up = Upstream::start().await;
    up.set_delay(Duration::from_millis(200));
    let gw = paylent_app(&up, "").await;
    let body = paylent_body("evt_concurrent");
    let h = sign("paylent", SECRET, &body, "", 0);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (gw, h, body) = (gw.clone(), h.clone(), body.clone());
        tasks.push(tokio::spawn(async move { gw.post("/webhooks/paylent", &h, body).await }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let a = t.await.unwrap();
        assert!(!a.status.is_server_error(), "no 5xx: {}", a.status);
        if a.status == StatusCode::CONFLICT {
            assert!(a.headers.contains_key("retry-after"));
        }
        statuses.push(a.status.as_u16());
    }
    assert_eq!(up.count(), 1, "statuses: {statuses:?}");
    assert!(statuses.contains(&200));
}

#[tokio::test]
async fn upstream_failure_is_passed_back_and_the_retry_is_forwarded() {
    let up = Upstream::start().await;
    up.script(&[500]);
    let gw = paylent_app(&up, "").await;
    let body = paylent_body("evt_retry");
    let h = sign("paylent", SECRET, &body, "", 0);
    let a = gw.post("/webhooks/paylent", &h, body.clone()).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(a.text(), r#"{"upstream":500}"#);
    let a = gw.post("/webhooks/paylent", &h, body.clone()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(up.count(), 2);
    // And now it is a duplicate.
    assert_eq!(gw.post("/webhooks/paylent", &h, body).await.text(), r#"{"status":"duplicate"}"#);
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn unreachable_upstream_is_502_and_slow_upstream_504_both_retryable() {
    // A port with nothing listening (port 1: no test can bind it, unlike a dropped port 0).
    let dead_url = "http://127.0.0.1:1/x";
    let slow = Upstream::start().await;
    // Never answers within the route's timeout: held until released.
    slow.hold();
    let yaml = config(&[
        route("/dead", "paylent", &[SECRET], dead_url, ""),
        route("/slow", "paylent", &[SECRET], &slow.url("/s"), "    timeout: 1s\n    lease: 5s\n"),
    ]);
    let gw = App::start(&yaml, Clock::System).await;
    let body = paylent_body("evt_x");
    let h = sign("paylent", SECRET, &body, "", 0);
    assert_eq!(gw.post("/dead", &h, body.clone()).await.status, StatusCode::BAD_GATEWAY);
    assert_eq!(gw.post("/dead", &h, body.clone()).await.status, StatusCode::BAD_GATEWAY, "released");
    assert_eq!(gw.post("/slow", &h, body.clone()).await.status, StatusCode::GATEWAY_TIMEOUT);
    slow.release();
    assert_eq!(gw.post("/slow", &h, body.clone()).await.status, StatusCode::OK, "released after 504");
}

#[tokio::test]
async fn delivery_without_event_id_is_deduplicated_by_body() {
    let up = Upstream::start().await;
    let yaml = config(&[route("/paysafe", "paysafe", &["paysafe-key"], &up.url("/ps"), "")]);
    let gw = App::start(&yaml, Clock::System).await;
    let body = br#"{"scheduledPayment": {"id": "84bdf715", "amount": 10}}"#.to_vec();
    let h = sign("paysafe", "paysafe-key", &body, "", 0);
    for _ in 0..3 {
        assert_eq!(gw.post("/paysafe", &h, body.clone()).await.status, 200);
    }
    assert_eq!(up.count(), 1);
    let other = br#"{"scheduledPayment": {"id": "84bdf716", "amount": 10}}"#.to_vec();
    let h2 = sign("paysafe", "paysafe-key", &other, "", 0);
    assert_eq!(gw.post("/paysafe", &h2, other).await.status, 200);
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn unknown_route_404_wrong_method_405_large_body_413() {
    let up = Upstream::start().await;
    let gw = paylent_app(&up, "").await;
    assert_eq!(gw.post("/nope", &[], "x").await.status, StatusCode::NOT_FOUND);
    let a = gw.send(Method::GET, "/webhooks/paylent", &[], "").await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    let big = vec![b'a'; 3 * 1024 * 1024];
    let h = sign("paylent", SECRET, &big, "", 0);
    assert_eq!(gw.post("/webhooks/paylent", &h, big).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn same_event_id_on_two_routes_does_not_collide() {
    let up = Upstream::start().await;
    let yaml = config(&[
        route("/a", "paylent", &[SECRET], &up.url("/a"), ""),
        route("/b", "paylent", &[SECRET], &up.url("/b"), ""),
    ]);
    let gw = App::start(&yaml, Clock::System).await;
    let body = paylent_body("evt_shared");
    let h = sign("paylent", SECRET, &body, "", 0);
    assert_eq!(gw.post("/a", &h, body.clone()).await.status, 200);
    assert_eq!(gw.post("/b", &h, body.clone()).await.status, 200);
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn rotated_secrets_both_verify() {
    let up = Upstream::start().await;
    let yaml = config(&[route("/p", "paylent", &["new-secret", "old-secret"], &up.url("/p"), "")]);
    let gw = App::start(&yaml, Clock::System).await;
    for (i, secret) in ["new-secret", "old-secret"].iter().enumerate() {
        let body = paylent_body(&format!("evt_rot{i}"));
        let h = sign("paylent", secret, &body, "", 0);
        assert_eq!(gw.post("/p", &h, body).await.status, 200);
    }
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn standard_webhooks_and_fixed_clock() {
    let up = Upstream::start().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let yaml = config(&[route("/sw", "standard-webhooks", &[secret], &up.url("/sw"), "")]);
    let t = 1_700_000_000;
    let gw = App::start(&yaml, Clock::Fixed(t + 10)).await;
    let h = sign("standard-webhooks", secret, b"{\"a\":1}", "msg_abc", t);
    assert_eq!(gw.post("/sw", &h, "{\"a\":1}").await.status, 200);
    assert_eq!(up.seen()[0].headers["portcullis-idempotency-key"], "/sw:msg_abc");
    // The same body under a new id is a different signed message: the signature fails.
    let mut forged = h.clone();
    for (k, v) in forged.iter_mut() {
        if k == "webhook-id" {
            *v = "msg_other".into();
        }
    }
    assert_eq!(gw.post("/sw", &forged, "{\"a\":1}").await.status, 401);
}
