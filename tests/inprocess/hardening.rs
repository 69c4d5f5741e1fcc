//! Hostile input and overload at the request path, in process (the wire-level cases stay in
//! `tests/hardening.rs`).

use super::App;
use crate::util::*;
use http::StatusCode;
use portcullis::clock::Clock;

const SECRET: &str = "hardening-secret";

fn yaml(upstream: &Upstream, limits: &str, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nlimits:\n{limits}routes:\n{}",
        route("/p", "paylent", &[SECRET], &upstream.url("/p"), extra)
    )
}

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"event":"x","event_id":"{id}"}}"#).into_bytes()
}

#[tokio::test]
async fn duplicate_signature_headers_and_duplicate_json_ids_get_400() {
    let up = Upstream::start().await;
    let gw = App::start(&yaml(&up, "", ""), Clock::System).await;
    let b = body("evt_d");
    let mut h = sign("paylent", SECRET, &b, "", 0);
    h.push(h[0].clone());
    assert_eq!(gw.post("/p", &h, b).await.status, StatusCode::BAD_REQUEST);
    let twice = br#"{"event_id":"evt_a","x":1,"event_id":"evt_b"}"#;
    let a = gw.post("/p", &sign("paylent", SECRET, twice, "", 0), twice.to_vec()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.text(), r#"{"error":"bad request"}"#);
    assert_eq!(up.count(), 0);
}
