//! What reaches the upstream (header hygiene, forwarded ids), in process; the raw-socket and
//! queued cases stay in `tests/forwarding.rs`.

use super::App;
use crate::util::*;
use portcullis::clock::Clock;

const SECRET: &str = "forwarding-secret";
const INTERNAL: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"event":"x","event_id":"{id}"}}"#).into_bytes()
}

#[tokio::test]
async fn underscore_spellings_of_headers_the_gateway_sets_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let extra = format!("    forward_signing:\n      secret: {INTERNAL:?}\n");
    let gw =
        App::start(&config(&[route("/p", "paylent", &[SECRET], &up.url("/p"), &extra)]), Clock::System).await;
    let b = body("evt_underscore");
    let mut h = sign("paylent", SECRET, &b, "", 0);
    let forged = [
        "Portcullis_Idempotency_Key",
        "Portcullis_Provider",
        "portcullis_anything",
        "Webhook_Signature",
        "Webhook_Id",
        "Webhook_Timestamp",
        "X_Forwarded_For",
        "X_Forwarded_Host",
        "X_Forwarded_Proto",
        "X_Forwarded_Port",
        "Transfer_Encoding",
        "Content_Length",
        // The underscore twin of the profile's own signature header.
        "X_Paylent_Signature",
    ];
    for name in forged {
        h.push((name.into(), "forged".into()));
    }
    h.push(("X_Kept_Header".into(), "kept".into()));
    h.push(("Portcullis-Provider".into(), "forged".into()));
    let a = gw.post("/p", &h, b.clone()).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    for (name, value) in &s.headers {
        assert!(value != "forged", "{name}: a sender's spelling of a gateway header reached the upstream");
    }
    assert_eq!(s.headers["x_kept_header"], "kept", "other underscore names are the sender's business");
    assert_eq!(s.headers["portcullis-provider"], "paylent");
    assert_eq!(s.headers["portcullis-idempotency-key"], "/p:evt_underscore");
    assert_eq!(s.headers["webhook-id"], "/p:evt_underscore");
    assert!(s.headers.contains_key("x-paylent-signature"), "the verified signature header itself is kept");
    standardwebhooks::Webhook::new(INTERNAL).unwrap().verify(&s.body, &s.headers).unwrap();
}

#[tokio::test]
async fn forwarded_ids_are_route_scoped_ascii_and_verify_with_standardwebhooks() {
    let up = Upstream::start().await;
    let extra = format!("    forward_signing:\n      secret: {INTERNAL:?}\n");
    let yaml = config(&[
        route("/a", "paylent", &[SECRET], &up.url("/shared"), &extra),
        route("/b", "paylent", &[SECRET], &up.url("/shared"), &extra),
    ]);
    let gw = App::start(&yaml, Clock::System).await;
    // The same non-ASCII id (with a space and a '%') at two routes.
    let id = "évt 1%ü";
    for path in ["/a", "/b"] {
        let b = body(id);
        let a = gw.post(path, &sign("paylent", SECRET, &b, "", 0), b).await;
        assert_eq!(a.status, 200, "{}", a.text());
    }
    let wh = standardwebhooks::Webhook::new(INTERNAL).unwrap();
    let keys: Vec<_> = up
        .seen()
        .iter()
        .map(|s| {
            wh.verify(&s.body, &s.headers).expect("the upstream's Standard Webhooks check passes");
            assert_eq!(s.headers["webhook-id"], s.headers["portcullis-idempotency-key"], "the id signed");
            s.headers["portcullis-idempotency-key"].to_str().expect("visible ASCII").to_string()
        })
        .collect();
    assert_eq!(keys, ["/a:%C3%A9vt%201%25%C3%BC", "/b:%C3%A9vt%201%25%C3%BC"]);
}
