//! The admin API over real sockets: recorded deliveries (genuine, forged, failing) with their
//! outcome, status and reason, newest first, filtered and paged; the bearer token; and no
//! secret in any answer.

use crate::util::*;
use http::{Method, StatusCode};
use portcullis::clock::Clock;
use portcullis::config::Config;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const SECRET: &str = "console-route-secret";
const OLD_SECRET: &str = "console-old-secret";
const TOKEN_A: &str = "token-aaaaaaaaaaaaaaaa";
const TOKEN_B: &str = "token-bbbbbbbbbbbbbbbb";

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"event":"x","event_id":"{id}"}}"#).into_bytes()
}

async fn deliver(c: &HttpClient, url: &str, secret: &str, id: &str) -> Answer {
    let b = body(id);
    post(c, url, &sign("paylent", secret, &b, "", 0), b).await
}

fn yaml(routes: &[String]) -> String {
    format!(
        "listen: 127.0.0.1:0\ntrusted_proxies: [\"127.0.0.1\"]\nadmin:\n  listen: 127.0.0.1:0\n  token: [{TOKEN_A:?}, {TOKEN_B:?}]\nroutes:\n{}",
        routes.concat()
    )
}

/// `GET` of the admin listener with `token` (if any); the answer and its JSON.
async fn api(gw: &TestGateway, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let headers: Vec<(String, String)> =
        token.map(|t| vec![("authorization".into(), format!("Bearer {t}"))]).unwrap_or_default();
    let a = send(&client(), Method::GET, &format!("http://{}{path}", gw.admin), &headers, "").await;
    let text = a.text();
    for secret in [SECRET, OLD_SECRET, TOKEN_A, TOKEN_B, "upstream-pw"] {
        assert!(!text.contains(secret), "{secret} in {path}: {text}");
    }
    (a.status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The listing at `query`, once it holds `n` deliveries (the log is appended off the
/// request path).
async fn listing(gw: &TestGateway, query: &str, n: usize) -> Value {
    let deadline = Deadline::new(format!("{n} deliveries at {query}"), Duration::from_secs(10));
    loop {
        let (status, v) = api(gw, &format!("/api/deliveries{query}"), Some(TOKEN_A)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        if v["deliveries"].as_array().unwrap().len() >= n {
            return v;
        }
        deadline.tick().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_recorded_with_outcome_status_and_reason() {
    let up = Upstream::start().await;
    let failing = Upstream::start().await;
    failing.set_down(true);
    let upstream_with_pw = up.url("/p").replacen("http://", "http://user:upstream-pw@", 1);
    let gw = TestGateway::start(
        &yaml(&[
            route("/p", "paylent", &[SECRET, OLD_SECRET], &upstream_with_pw, ""),
            route("/f", "paylent", &[SECRET], &failing.url("/f"), ""),
        ]),
        Clock::System,
    )
    .await;
    let c = client();
    assert_eq!(deliver(&c, &gw.url("/p"), SECRET, "evt_genuine").await.status, 200);
    assert_eq!(deliver(&c, &gw.url("/p"), "forged-secret", "evt_forged").await.status, 401);
    assert_eq!(deliver(&c, &gw.url("/f"), SECRET, "evt_failing").await.status, 503);
    let b = body("evt_old");
    let mut h = sign("paylent", OLD_SECRET, &b, "", 0);
    h.push(("x-forwarded-for".into(), "192.0.2.7".into()));
    assert_eq!(post(&c, &gw.url("/p"), &h, b).await.status, 200);
    // Unrouted: not recorded.
    assert_eq!(deliver(&c, &gw.url("/nowhere"), SECRET, "evt_404").await.status, 404);

    let v = listing(&gw, "", 4).await;
    let all = v["deliveries"].as_array().unwrap();
    assert_eq!(all.len(), 4, "{v}");
    assert!(v["next"].is_null(), "one page: {v}");
    // Newest first.
    let outcomes: Vec<&str> = all.iter().map(|d| d["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["forwarded", "upstream_error", "invalid_signature", "forwarded"], "{v}");
    let ids: Vec<&str> = all.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert!(ids.iter().all(|id| id.len() == 26), "{ids:?}");
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "ids descend: {ids:?}");

    let old = &all[0];
    assert_eq!(old["route"], "/p");
    assert_eq!(old["provider"], "paylent");
    assert_eq!(old["method"], "POST");
    assert_eq!(old["path"], "/p");
    // The peer is a trusted proxy: the client is the address it forwarded for.
    assert_eq!(old["client"], "192.0.2.7");
    assert_eq!(all[1]["client"], "127.0.0.1");
    assert_eq!(old["status"], 200);
    assert_eq!(old["secret_index"], 1);
    assert_eq!(old["upstream_status"], 200);
    assert!(old["upstream_latency_ms"].as_f64().is_some(), "{old}");
    assert!(old["event_key"].as_str().unwrap().ends_with("evt_old"), "{old}");

    let failed = &all[1];
    assert_eq!((failed["route"].as_str(), failed["status"].as_u64()), (Some("/f"), Some(503)));
    assert_eq!(failed["upstream_status"], 503);

    let forged = &all[2];
    assert_eq!(forged["status"], 401);
    assert!(forged["secret_index"].is_null());
    assert!(forged["upstream_status"].is_null());
    assert!(!forged["detail"].as_str().unwrap().is_empty(), "a precise reason: {forged}");

    // One delivery by id; an unknown id is 404.
    let (status, one) = api(&gw, &format!("/api/deliveries/{}", ids[2]), Some(TOKEN_A)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["outcome"], "invalid_signature");
    let (status, _) = api(&gw, "/api/deliveries/01ARZ3NDEKTSV4RRFFQ69G5FAV", Some(TOKEN_A)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Filters.
    let v = listing(&gw, "?route=/f", 1).await;
    assert_eq!(v["deliveries"].as_array().unwrap().len(), 1, "{v}");
    let v = listing(&gw, "?outcome=forwarded", 2).await;
    assert_eq!(v["deliveries"].as_array().unwrap().len(), 2, "{v}");
    let v = listing(&gw, "?event_id=evt_genuine", 1).await;
    assert_eq!(v["deliveries"][0]["secret_index"], 0, "{v}");
    assert_eq!(v["deliveries"].as_array().unwrap().len(), 1, "{v}");
    let (_, v) = api(&gw, "/api/deliveries?since=4102444800000", Some(TOKEN_A)).await;
    assert_eq!(v["deliveries"].as_array().unwrap().len(), 0, "nothing after 2100: {v}");
    let (status, _) = api(&gw, "/api/deliveries?limit=zero", Some(TOKEN_A)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Pages of 3 then 1, by the `next` cursor.
    let v = listing(&gw, "?limit=3", 3).await;
    let page: Vec<&str> =
        v["deliveries"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(page, ids[..3]);
    let next = v["next"].as_str().unwrap();
    assert_eq!(next, ids[2]);
    let v = listing(&gw, &format!("?limit=3&before={next}"), 1).await;
    let rest: Vec<&str> =
        v["deliveries"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(rest, ids[3..]);
    assert!(v["next"].is_null());

    // Routes: redacted upstream, secret count, expiries and last matches; never a secret.
    let (status, v) = api(&gw, "/api/routes", Some(TOKEN_B)).await;
    assert_eq!(status, StatusCode::OK);
    let routes = v["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 2, "{v}");
    let p = routes.iter().find(|r| r["name"] == "/p").unwrap();
    assert_eq!(p["provider"], "paylent");
    assert_eq!(p["delivery"], "sync");
    assert!(p["upstream"].as_str().unwrap().contains(":***@"), "{p}");
    assert_eq!(p["secrets_count"], 2);
    assert!(p["secrets"][0]["last_matched_ms"].as_u64().is_some(), "{p}");
    assert!(p["secrets"][1]["last_matched_ms"].as_u64().is_some(), "{p}");
    assert!(p["secrets"][0]["expires_at"].is_null(), "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_needs_one_of_the_bearer_tokens() {
    let up = Upstream::start().await;
    let gw =
        TestGateway::start(&yaml(&[route("/p", "paylent", &[SECRET], &up.url("/p"), "")]), Clock::System)
            .await;
    for path in ["/api/deliveries", "/api/routes", "/queue"] {
        let (status, v) = api(&gw, path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(v["error"], "unauthorized");
        let (status, _) = api(&gw, path, Some("token-wrongwrongwrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    for token in [TOKEN_A, TOKEN_B] {
        let (status, _) = api(&gw, "/api/deliveries", Some(token)).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = api(&gw, "/api/routes", Some(token)).await;
        assert_eq!(status, StatusCode::OK);
    }
    // The probes and metrics stay open.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let a = send(&client(), Method::GET, &format!("http://{}{path}", gw.admin), &[], "").await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
    }
}

#[test]
fn a_non_loopback_admin_listener_without_a_token_is_refused_at_load() {
    let load = |admin: &str| {
        let yaml = format!(
            "listen: 127.0.0.1:0\nadmin:\n{admin}routes:\n{}",
            route("/p", "paylent", &[SECRET], "http://127.0.0.1:9/p", "")
        );
        Config::from_yaml("gw.yaml", &yaml, Path::new("."), &|k| (k == "ADMIN_TOKEN").then(|| TOKEN_A.into()))
    };
    let e = load("  listen: 0.0.0.0:9090\n").unwrap_err().to_string();
    assert!(e.contains("admin.token is needed"), "{e}");
    assert!(load("  listen: 127.0.0.1:9090\n").is_ok());
    let c = load("  listen: 0.0.0.0:9090\n  token: ${ADMIN_TOKEN}\n").unwrap();
    assert!(!format!("{c:?}").contains(TOKEN_A), "the token is redacted in Debug");
    let e = load("  listen: 0.0.0.0:9090\n  token: short\n").unwrap_err().to_string();
    assert!(e.contains("too short"), "{e}");
}
