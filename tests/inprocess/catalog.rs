//! The provider catalog at the gateway: handshakes, replay guards, URL-signing schemes,
//! secret expiry and the diagnosis in the log.

use super::App;
use crate::util::*;
use base64::Engine;
use http::StatusCode;
use portcullis::clock::Clock;

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let mac = portcullis::verify::mac::MacKey::new(portcullis::verify::mac::Algorithm::HmacSha256, key);
    hex::encode(mac.digest(parts.iter().copied()).as_bytes())
}

#[tokio::test]
async fn slack_url_verification_is_answered_after_verification() {
    let up = Upstream::start().await;
    let gw =
        App::start(&config(&[route("/slack", "slack", &["slack-secret"], &up.url("/s"), "")]), Clock::System)
            .await;
    let body = br#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let h = sign("slack", "slack-secret", body, "", now());
    let a = gw.post("/slack", &h, body.to_vec()).await;
    assert_eq!(a.status, StatusCode::OK);
    let reply: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(reply["challenge"], "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");
    // Unsigned, it is refused like any forged request.
    let forged = sign("slack", "other", body, "", now());
    assert_eq!(gw.post("/slack", &forged, body.to_vec()).await.status, 401);
    assert_eq!(up.count(), 0, "handshakes are not forwarded");
    // Events still go through.
    let ev = br#"{"type":"event_callback","event_id":"Ev1"}"#;
    assert_eq!(
        gw.post("/slack", &sign("slack", "slack-secret", ev, "", now()), ev.to_vec()).await.status,
        200
    );
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn zoom_url_validation_is_answered_with_the_hmac_of_the_plain_token() {
    let up = Upstream::start().await;
    let gw =
        App::start(&config(&[route("/zoom", "zoom", &["zoom-token"], &up.url("/z"), "")]), Clock::System)
            .await;
    let body = br#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
    let a = gw.post("/zoom", &sign("zoom", "zoom-token", body, "", now()), body.to_vec()).await;
    assert_eq!(a.status, StatusCode::OK);
    let reply: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(reply["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
    assert_eq!(reply["encryptedToken"], hmac_hex(b"zoom-token", &[b"qgg8vlvZRS6UYooatFL8Aw"]));
    assert_eq!(up.count(), 0);
}

fn mailgun_body(key: &[u8], token: &str, event_id: &str) -> Vec<u8> {
    let ts = now().to_string();
    let sig = hmac_hex(key, &[ts.as_bytes(), token.as_bytes()]);
    serde_json::to_vec(&serde_json::json!({
        "signature": {"timestamp": ts, "token": token, "signature": sig},
        "event-data": {"id": event_id, "event": "delivered"}
    }))
    .unwrap()
}

#[tokio::test]
async fn mailgun_tokens_are_remembered_so_a_captured_signature_cannot_be_replayed() {
    let up = Upstream::start().await;
    up.script(&[500]);
    let gw =
        App::start(&config(&[route("/mg", "mailgun", &["mg-key"], &up.url("/m"), "")]), Clock::System).await;
    let first = mailgun_body(b"mg-key", "tok_1", "ev_1");
    // The upstream fails: the token is released with the event, so the same attempt may retry.
    assert_eq!(gw.post("/mg", &[], first.clone()).await.status, 500);
    assert_eq!(gw.post("/mg", &[], first.clone()).await.status, 200);
    assert_eq!(up.count(), 2);
    // The same signature block with other event data: a replay, refused.
    let mut doc: serde_json::Value = serde_json::from_slice(&first).unwrap();
    doc["event-data"]["id"] = "ev_forged".into();
    let a = gw.post("/mg", &[], serde_json::to_vec(&doc).unwrap()).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(up.count(), 2);
    // A new attempt of the same event (new token) is a duplicate, not a second delivery.
    let retry = mailgun_body(b"mg-key", "tok_2", "ev_1");
    assert_eq!(gw.post("/mg", &[], retry).await.text(), r#"{"status":"duplicate"}"#);
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn twilio_signs_the_public_url_with_the_request_query() {
    let up = Upstream::start().await;
    let extra = "    public_url: https://hooks.example.com/twilio\n";
    let gw = App::start(
        &config(&[route("/twilio", "twilio", &["auth-token"], &up.url("/t"), extra)]),
        Clock::System,
    )
    .await;
    let body = b"Body=Hello&From=%2B15551230000&MessageSid=SM1";
    let signed = "https://hooks.example.com/twilio?tenant=7BodyHelloFrom+15551230000MessageSidSM1";
    let mac =
        portcullis::verify::mac::MacKey::new(portcullis::verify::mac::Algorithm::HmacSha1, b"auth-token");
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.digest([signed.as_bytes()]).as_bytes());
    let h = vec![
        ("X-Twilio-Signature".to_string(), sig),
        ("Content-Type".to_string(), "application/x-www-form-urlencoded".to_string()),
        ("I-Twilio-Idempotency-Token".to_string(), "tok-1".to_string()),
    ];
    assert_eq!(gw.post("/twilio?tenant=7", &h, body.to_vec()).await.status, 200);
    assert_eq!(gw.post("/twilio?tenant=8", &h, body.to_vec()).await.status, 401, "another URL");
    assert_eq!(up.count(), 1);
    assert_eq!(up.seen()[0].uri.query(), Some("tenant=7"));
}

#[test]
fn a_url_signing_profile_needs_public_url() {
    let yaml = config(&[route("/sq", "square", &["k"], "http://127.0.0.1:1/", "")]);
    let e = portcullis::config::Config::from_yaml("gw.yaml", &yaml, std::path::Path::new("."), &|_| None)
        .unwrap_err();
    assert!(e.to_string().contains("public_url"), "{e}");
}

#[tokio::test]
async fn an_expired_secret_stops_verifying() {
    let up = Upstream::start().await;
    let extra = "";
    let yaml = format!(
        "listen: 127.0.0.1:0\nroutes:\n  - path: /p\n    provider: paylent\n    secrets:\n      - current\n      - {{value: previous, expires_at: \"2020-01-01T00:00:00Z\"}}\n      - {{value: recent, expires_at: \"2999-01-01T00:00:00Z\"}}\n    upstream: {:?}\n{extra}",
        up.url("/p")
    );
    let gw = App::start(&yaml, Clock::System).await;
    let b1 = br#"{"event_id":"a"}"#;
    assert_eq!(gw.post("/p", &sign("paylent", "recent", b1, "", 0), b1.to_vec()).await.status, 200);
    let b2 = br#"{"event_id":"b"}"#;
    assert_eq!(gw.post("/p", &sign("paylent", "previous", b2, "", 0), b2.to_vec()).await.status, 401);
    assert_eq!(up.count(), 1);
}
