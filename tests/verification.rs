//! Verification, replay nonces and batch deduplication, attacked over real sockets.

use crate::util::*;
use http::StatusCode;
use portcullis::gateway::Clock;

const SECRET: &str = "verification-secret";

#[tokio::test]
async fn numeric_ids_beyond_f64_precision_are_distinct_events() {
    let up = Upstream::start().await;
    let yaml = config(&[route("/p", "paylent", &[SECRET], &up.url("/p"), "")]);
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let c = client();
    for id in ["18446744073709551616", "18446744073709551617"] {
        let body = format!(r#"{{"event":"x","event_id":{id}}}"#);
        let a = post(&c, &gw.url("/p"), &sign("paylent", SECRET, body.as_bytes(), "", 0), body).await;
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
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let c = client();
    let genuine = mailgun_body(b"shared-mg-key", "tok_shared", "ev_genuine");
    assert_eq!(post(&c, &gw.url("/mg-a"), &[], genuine.clone()).await.status, StatusCode::OK);
    // The captured block, with forged event data, at the second route (whose second secret
    // is the same key): a replay.
    let mut doc: serde_json::Value = serde_json::from_slice(&genuine).unwrap();
    doc["event-data"]["id"] = "ev_forged".into();
    let a = post(&c, &gw.url("/mg-b"), &[], serde_json::to_vec(&doc).unwrap()).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
    assert_eq!(up.count(), 1, "only the genuine event reached an upstream");
    // A fresh block at the second route still passes.
    let fresh = mailgun_body(b"shared-mg-key", "tok_fresh", "ev_other");
    assert_eq!(post(&c, &gw.url("/mg-b"), &[], fresh).await.status, StatusCode::OK);
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

/// Serves `yaml` with `store` instead of the one the config names.
async fn serve_with_store(
    yaml: &str,
    store: std::sync::Arc<dyn portcullis::idempotency::Store>,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let config =
        portcullis::config::Config::from_yaml("test.yaml", yaml, std::path::Path::new("."), &|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
    let gateway = std::sync::Arc::new(portcullis::gateway::Gateway::new(&config, store, Clock::System));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(portcullis::server::run(listener, gateway, None, async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

#[tokio::test]
async fn forwarding_on_store_error_settles_the_claimed_replay_nonce() {
    let up = Upstream::start().await;
    up.script(&[500]);
    let store = std::sync::Arc::new(KeyClaimsFail(portcullis::idempotency::memory::MemoryStore::new(1000)));
    let yaml =
        config(&[route("/mg", "mailgun", &["mg-key"], &up.url("/m"), "    on_store_error: forward\n")]);
    let (addr, _stop) = serve_with_store(&yaml, store).await;
    let c = client();
    let url = format!("http://{addr}/mg");
    let body = mailgun_body(b"mg-key", "tok_1", "ev_1");
    // Forwarded without deduplication; the upstream fails, so the nonce is released at once
    // (not left in flight for its lease): the provider's retry of this attempt goes through.
    assert_eq!(post(&c, &url, &[], body.clone()).await.status, StatusCode::INTERNAL_SERVER_ERROR);
    let a = post(&c, &url, &[], body.clone()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(up.count(), 2);
    // Delivered: the nonce is now consumed, and a replay of the block is refused at once.
    let a = post(&c, &url, &[], body).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
    assert_eq!(up.count(), 2);
}
