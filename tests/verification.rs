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
