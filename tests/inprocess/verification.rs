//! Verification, replay nonces and batch deduplication, attacked in process.

use super::App;
use crate::util::*;
use http::StatusCode;
use portcullis::clock::Clock;

const SECRET: &str = "verification-secret";

#[tokio::test]
async fn numeric_ids_beyond_f64_precision_are_distinct_events() {
    let up = Upstream::start().await;
    let yaml = config(&[route("/p", "paylent", &[SECRET], &up.url("/p"), "")]);
    let gw = App::start(&yaml, Clock::System).await;
    for id in ["18446744073709551616", "18446744073709551617"] {
        let body = format!(r#"{{"event":"x","event_id":{id}}}"#);
        let a = gw.post("/p", &sign("paylent", SECRET, body.as_bytes(), "", 0), body).await;
        assert_eq!(a.status, StatusCode::OK, "{id}: {}", a.text());
        assert!(a.headers.get("x-upstream").is_some(), "{id} reached the upstream");
    }
    assert_eq!(up.count(), 2, "both events are forwarded");
}

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let mac = portcullis::verify::mac::MacKey::new(portcullis::verify::mac::Algorithm::HmacSha256, key);
    hex::encode(mac.digest(parts.iter().copied()).as_bytes())
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
async fn mailgun_signature_block_used_at_one_route_is_refused_at_another_with_the_same_key() {
    let up = Upstream::start().await;
    let yaml = config(&[
        route("/mg-a", "mailgun", &["shared-mg-key"], &up.url("/a"), ""),
        route("/mg-b", "mailgun", &["other-key", "shared-mg-key"], &up.url("/b"), ""),
    ]);
    let gw = App::start(&yaml, Clock::System).await;
    let genuine = mailgun_body(b"shared-mg-key", "tok_shared", "ev_genuine");
    assert_eq!(gw.post("/mg-a", &[], genuine.clone()).await.status, StatusCode::OK);
    // The captured block, with forged event data, at the second route (whose second secret
    // is the same key): a replay.
    let mut doc: serde_json::Value = serde_json::from_slice(&genuine).unwrap();
    doc["event-data"]["id"] = "ev_forged".into();
    let a = gw.post("/mg-b", &[], serde_json::to_vec(&doc).unwrap()).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
    assert_eq!(up.count(), 1, "only the genuine event reached an upstream");
    // A fresh block at the second route still passes.
    let fresh = mailgun_body(b"shared-mg-key", "tok_fresh", "ev_other");
    assert_eq!(gw.post("/mg-b", &[], fresh).await.status, StatusCode::OK);
}

/// A memory store whose event-key claims fail (the store "goes down" between the nonce claim
/// and the key claim); nonce claims work.
struct KeyClaimsFail(portcullis::idempotency::memory::MemoryStore);

impl portcullis::idempotency::Store for KeyClaimsFail {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        lease: std::time::Duration,
    ) -> portcullis::idempotency::StoreFuture<'a, portcullis::idempotency::Claim> {
        if key.starts_with("nonce:") {
            self.0.claim(key, lease)
        } else {
            Box::pin(async { Err(portcullis::idempotency::StoreError::Backend("down".into())) })
        }
    }
    fn complete<'a>(
        &'a self,
        key: &'a str,
        token: portcullis::idempotency::Token,
        ttl: std::time::Duration,
    ) -> portcullis::idempotency::StoreFuture<'a, ()> {
        self.0.complete(key, token, ttl)
    }
    fn release<'a>(
        &'a self,
        key: &'a str,
        token: portcullis::idempotency::Token,
    ) -> portcullis::idempotency::StoreFuture<'a, ()> {
        self.0.release(key, token)
    }
    fn ping(&self) -> portcullis::idempotency::StoreFuture<'_, ()> {
        self.0.ping()
    }
    fn kind(&self) -> &'static str {
        "key-claims-fail"
    }
    fn in_process(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn forwarding_on_store_error_settles_the_claimed_replay_nonce() {
    let up = Upstream::start().await;
    up.script(&[500]);
    let store = std::sync::Arc::new(KeyClaimsFail(portcullis::idempotency::memory::MemoryStore::new(1000)));
    let yaml =
        config(&[route("/mg", "mailgun", &["mg-key"], &up.url("/m"), "    on_store_error: forward\n")]);
    let gw = App::with_store(&yaml, store);
    let body = mailgun_body(b"mg-key", "tok_1", "ev_1");
    // Forwarded without deduplication; the upstream fails, so the nonce is released at once
    // (not left in flight for its lease): the provider's retry of this attempt goes through.
    assert_eq!(gw.post("/mg", &[], body.clone()).await.status, StatusCode::INTERNAL_SERVER_ERROR);
    let a = gw.post("/mg", &[], body.clone()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(up.count(), 2);
    // Delivered: the nonce is now consumed, and a replay of the block is refused at once.
    let a = gw.post("/mg", &[], body).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
    assert_eq!(up.count(), 2);
}

const ADYEN_KEY: &str = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";

/// One signed Adyen notification item.
fn adyen_item(psp: &str, event: &str) -> serde_json::Value {
    use base64::Engine;
    let mut item = serde_json::json!({
        "pspReference": psp,
        "merchantAccountCode": "TestMerchant",
        "merchantReference": "order-1",
        "amount": {"value": 1130, "currency": "EUR"},
        "eventCode": event,
        "success": "true"
    });
    let mac = portcullis::verify::mac::MacKey::new(
        portcullis::verify::mac::Algorithm::HmacSha256,
        &hex::decode(ADYEN_KEY).unwrap(),
    );
    let signing = portcullis::verify::canonical::adyen_signing_string(&item);
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.digest([signing.as_bytes()]).as_bytes());
    item["additionalData"] = serde_json::json!({"hmacSignature": sig});
    serde_json::json!({"NotificationRequestItem": item})
}

fn adyen_batch(items: &[serde_json::Value]) -> String {
    let items: Vec<String> = items.iter().map(|i| serde_json::to_string(i).unwrap()).collect();
    format!("{{\"live\":\"false\",\"notificationItems\":[{}]}}", items.join(", "))
}

#[tokio::test]
async fn every_item_of_an_adyen_batch_is_deduplicated() {
    let up = Upstream::start().await;
    let gw = App::start(&config(&[route("/adyen", "adyen", &[ADYEN_KEY], &up.url("/a"), "")]), Clock::System)
        .await;
    let (cap, refund, other) =
        (adyen_item("C1", "CAPTURE"), adyen_item("D1", "REFUND"), adyen_item("E1", "CAPTURE"));
    let a = gw.post("/adyen", &[], adyen_batch(&[cap.clone(), refund.clone()])).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(up.count(), 1);
    // The second item alone, as Adyen may send it again: delivered already.
    let a = gw.post("/adyen", &[], adyen_batch(std::slice::from_ref(&refund))).await;
    assert_eq!(a.text(), r#"{"status":"duplicate"}"#, "the refund is not processed twice");
    assert_eq!(up.count(), 1);
    // A batch of a delivered item and a new one: only the new one goes, byte for byte.
    let mixed = adyen_batch(&[refund.clone(), other.clone()]);
    let a = gw.post("/adyen", &[], mixed.clone()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert!(a.headers.get("x-upstream").is_some(), "forwarded");
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    let expected = adyen_batch(std::slice::from_ref(&other));
    assert_eq!(String::from_utf8_lossy(&seen[1].body), expected, "the delivered item is cut out");
    assert_eq!(seen[1].headers["content-length"], expected.len().to_string().as_str());
    // Every item of it was delivered now.
    for batch in [adyen_batch(&[cap, other.clone()]), adyen_batch(&[other, refund])] {
        let a = gw.post("/adyen", &[], batch).await;
        assert_eq!(a.text(), r#"{"status":"duplicate"}"#);
    }
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn a_batch_with_an_item_in_flight_is_refused_whole_and_claims_nothing() {
    let up = Upstream::start().await;
    // Long enough that the second request lands while the first is held, on a busy machine.
    up.set_delay(std::time::Duration::from_secs(3));
    let gw = App::start(&config(&[route("/adyen", "adyen", &[ADYEN_KEY], &up.url("/a"), "")]), Clock::System)
        .await;
    let (slow, new) = (adyen_item("S1", "CAPTURE"), adyen_item("N1", "CAPTURE"));
    let first = tokio::spawn({
        let (gw, body) = (gw.clone(), adyen_batch(std::slice::from_ref(&slow)));
        async move { gw.post("/adyen", &[], body).await }
    });
    // Wait until the first delivery is at the upstream (its claim held), with a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while up.count() == 0 {
        assert!(std::time::Instant::now() < deadline, "the first delivery reaches the upstream");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let a = gw.post("/adyen", &[], adyen_batch(&[new.clone(), slow.clone()])).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text());
    assert_eq!(first.await.unwrap().status, StatusCode::OK);
    up.set_delay(std::time::Duration::ZERO);
    // The new item's claim was released: the retry forwards it (alone).
    let a = gw.post("/adyen", &[], adyen_batch(&[new.clone(), slow])).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(String::from_utf8_lossy(&up.seen()[1].body), adyen_batch(&[new]));
}

/// Headers `provider` would send for `body` posted to the public `url`.
fn sign_url(provider: &str, secret: &str, url: &str, body: &[u8]) -> Vec<(String, String)> {
    let p = portcullis::verify::profile::ProfileSet::builtin().get(provider).unwrap().clone();
    let v =
        portcullis::verify::Verifier::new(p, &[portcullis::verify::Secret::from(secret.to_string())], None)
            .unwrap();
    v.sign(&http::Method::POST, url, body, "", now())
        .unwrap()
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

#[tokio::test]
async fn hubspot_body_bytes_moved_into_the_signed_query_are_refused() {
    let up = Upstream::start().await;
    let extra = "    public_url: https://hooks.example.com/hs\n";
    let gw =
        App::start(&config(&[route("/hs", "hubspot", &["hs-secret"], &up.url("/h"), extra)]), Clock::System)
            .await;
    let body = br#"[{"eventId":7,"subscriptionType":"contact.creation"}]"#;
    let headers = sign_url("hubspot", "hs-secret", "https://hooks.example.com/hs?portal=1", body);
    // The attack first: the signed string is the same with the body's first byte in the query.
    let a = gw.post("/hs?portal=1[", &headers, body[1..].to_vec()).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
    assert_eq!(up.count(), 0);
    let a = gw.post("/hs?portal=1", &headers, body.to_vec()).await;
    assert_eq!(a.status, StatusCode::OK, "the genuine request: {}", a.text());
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn twilio_json_url_signature_re_split_as_a_form_is_refused() {
    let up = Upstream::start().await;
    let extra = "    public_url: https://hooks.example.com/tw\n";
    let gw =
        App::start(&config(&[route("/tw", "twilio", &["tw-token"], &up.url("/t"), extra)]), Clock::System)
            .await;
    let json = br#"{"event":"sms.delivered","sid":"SM1"}"#;
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(json));
    let signed_url = format!("https://hooks.example.com/tw?bodySHA256={hash}");
    let mut headers = sign_url("twilio", "tw-token", &signed_url, json);
    headers.push(("Content-Type".into(), "application/json".into()));
    headers.push(("I-Twilio-Idempotency-Token".into(), "idem-1".into()));
    // The same signature, read as a form: query "bodySHA" and a form parameter "256" whose
    // value is "=<hash>" run together into the signed URL.
    let mut forged = headers.clone();
    forged.retain(|(k, _)| k != "Content-Type" && k != "I-Twilio-Idempotency-Token");
    forged.push(("Content-Type".into(), "application/x-www-form-urlencoded".into()));
    forged.push(("I-Twilio-Idempotency-Token".into(), "idem-forged".into()));
    let a = gw.post("/tw?bodySHA", &forged, format!("256=%3D{hash}")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
    // A JSON body without the bodySHA256 binding is never read as a form either.
    let plain = sign_url("twilio", "tw-token", "https://hooks.example.com/tw", json);
    let mut plain_json = plain.clone();
    plain_json.push(("Content-Type".into(), "application/json".into()));
    plain_json.retain(|(k, v)| !(k == "content-type" && v.contains("form")));
    let a = gw.post("/tw", &plain_json, json.to_vec()).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
    assert_eq!(up.count(), 0);
    let a = gw.post(&format!("/tw?bodySHA256={hash}"), &headers, json.to_vec()).await;
    assert_eq!(a.status, StatusCode::OK, "the genuine request: {}", a.text());
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn a_batch_whose_claims_fail_is_refused_or_forwarded_whole_as_the_route_says() {
    let up = Upstream::start().await;
    let yaml = config(&[
        route("/closed", "adyen", &[ADYEN_KEY], &up.url("/c"), ""),
        route("/open", "adyen", &[ADYEN_KEY], &up.url("/o"), "    on_store_error: forward\n"),
    ]);
    let store = std::sync::Arc::new(KeyClaimsFail(portcullis::idempotency::memory::MemoryStore::new(1000)));
    let gw = App::with_store(&yaml, store);
    let batch = adyen_batch(&[adyen_item("F1", "CAPTURE"), adyen_item("F2", "REFUND")]);
    let a = gw.post("/closed", &[], batch.clone()).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "fail closed: {}", a.text());
    assert!(a.headers.contains_key("retry-after"));
    assert_eq!(up.count(), 0);
    let a = gw.post("/open", &[], batch.clone()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(String::from_utf8_lossy(&up.seen()[0].body), batch, "the whole batch, untouched");
}

#[tokio::test]
async fn an_adyen_batch_naming_the_same_item_twice_claims_it_once() {
    let up = Upstream::start().await;
    let gw = App::start(&config(&[route("/adyen", "adyen", &[ADYEN_KEY], &up.url("/a"), "")]), Clock::System)
        .await;
    let (f, g) = (adyen_item("F1", "CAPTURE"), adyen_item("G1", "REFUND"));
    // `[F,F]`: the second F is not "in flight" behind the first; the batch goes, whole.
    let twice = adyen_batch(&[f.clone(), f.clone()]);
    let a = gw.post("/adyen", &[], twice.clone()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(up.count(), 1);
    assert_eq!(String::from_utf8_lossy(&up.seen()[0].body), twice);
    let a = gw.post("/adyen", &[], twice).await;
    assert_eq!(a.text(), r#"{"status":"duplicate"}"#, "F was delivered");
    // F delivered, G new and repeated: F is cut out, both copies of G go (as sent).
    let a = gw.post("/adyen", &[], adyen_batch(&[f.clone(), g.clone(), g.clone()])).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    // (The cut rejoins the kept items with `,`: compared as JSON.)
    let forwarded: serde_json::Value = serde_json::from_slice(&up.seen()[1].body).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&adyen_batch(&[g.clone(), g.clone()])).unwrap();
    assert_eq!(forwarded, expected);
    let a = gw.post("/adyen", &[], adyen_batch(&[g.clone(), f, g])).await;
    assert_eq!(a.text(), r#"{"status":"duplicate"}"#);
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn hubspot_body_json_requires_a_container_so_no_shift_across_the_query_verifies() {
    let up = Upstream::start().await;
    let extra = "    public_url: https://hooks.example.com/hs\n";
    let gw =
        App::start(&config(&[route("/hs", "hubspot", &["hs-secret"], &up.url("/h"), extra)]), Clock::System)
            .await;
    // A bare scalar shifted is still valid JSON: `/hs?a=1` + `12345` → `/hs?a=11` + `2345`.
    let headers = sign_url("hubspot", "hs-secret", "https://hooks.example.com/hs?a=1", b"12345");
    let a = gw.post("/hs?a=11", &headers, b"2345".to_vec()).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
    let a = gw.post("/hs?a=1", &headers, b"12345".to_vec()).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "a scalar body is refused as sent too: {}", a.text());
    // A container shifted either way is not a container.
    for body in [&br#"[1,[2],{"k":"[3]"}]"#[..], br#"{"a":[1],"b":{"c":2}}"#] {
        let headers = sign_url("hubspot", "hs-secret", "https://hooks.example.com/hs?a=1", body);
        for cut in 1..body.len() {
            let query = format!("/hs?a=1{}", String::from_utf8_lossy(&body[..cut]));
            if query.parse::<http::Uri>().is_err() {
                continue;
            }
            let a = gw.post(&query, &headers, body[cut..].to_vec()).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{query}: {}", a.text());
        }
        let moved = [b"1".as_slice(), body].concat();
        let a = gw.post("/hs?a=", &headers, moved).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
        let a = gw.post("/hs?a=1", &headers, body.to_vec()).await;
        assert_eq!(a.status, StatusCode::OK, "the genuine request: {}", a.text());
    }
    assert_eq!(up.count(), 2);
}
