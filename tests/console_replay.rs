//! Captured requests, request ids, one delivery's detail (diagnosis, timeline) and replay,
//! over real sockets: capture modes and their truncation and ttl, the request id made or
//! taken from a trusted proxy, the diagnosis of a forged capture, and replays (never of a
//! forged request; once the upstream is fixed; 409 for a delivered one unless forced).

use crate::util::*;
use http::{Method, StatusCode};
use portcullis::clock::Clock;
use portcullis::config::Config;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const SECRET: &str = "replay-route-secret";
const TOKEN: &str = "token-replay-aaaaaaaaaa";

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"event":"payment.succeeded","event_id":"{id}","amount":4200}}"#).into_bytes()
}

/// A genuine delivery of event `id` to `path` (with `extra` headers); its answer.
async fn deliver(gw: &TestGateway, path: &str, id: &str, secret: &str, extra: &[(&str, &str)]) -> Answer {
    let b = body(id);
    let mut h = sign("paylent", secret, &b, "", 0);
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    post(&client(), &gw.url(path), &h, b).await
}

fn yaml(trusted: bool, routes: &[String]) -> String {
    format!(
        "listen: 127.0.0.1:0\n{}admin:\n  listen: 127.0.0.1:0\n  token: {TOKEN:?}\nroutes:\n{}",
        if trusted { "trusted_proxies: [\"127.0.0.1\"]\n" } else { "" },
        routes.concat()
    )
}

/// A call to the admin API with the token; the status and the JSON answer. Never a secret.
async fn api(gw: &TestGateway, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
    let mut headers = vec![("authorization".to_string(), format!("Bearer {TOKEN}"))];
    if !body.is_empty() {
        headers.push(("content-type".into(), "application/json".into()));
    }
    let a = send(&client(), method, &format!("http://{}{path}", gw.admin), &headers, body.to_string()).await;
    let text = a.text();
    assert!(!text.contains(SECRET), "the route's secret in {path}: {text}");
    (a.status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The deliveries of `route`, newest first, once there are `n`.
async fn recorded(gw: &TestGateway, route: &str, n: usize) -> Vec<Value> {
    let deadline = Deadline::new(format!("{n} deliveries of {route}"), PATIENCE);
    loop {
        let (status, v) = api(gw, Method::GET, &format!("/api/deliveries?route={route}"), "").await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let all = v["deliveries"].as_array().unwrap().clone();
        if all.len() >= n {
            return all;
        }
        deadline.tick().await;
    }
}

async fn detail(gw: &TestGateway, id: &str) -> Value {
    let (status, v) = api(gw, Method::GET, &format!("/api/deliveries/{id}"), "").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

async fn replay(gw: &TestGateway, id: &str, body: &str) -> (StatusCode, Value) {
    api(gw, Method::POST, &format!("/api/deliveries/{id}/replay"), body).await
}

/// The value of captured header `name` in a detail's `capture`.
fn captured_header<'a>(d: &'a Value, name: &str) -> Option<&'a str> {
    d["capture"]["headers"].as_array()?.iter().find(|h| h[0] == name).and_then(|h| h[1].as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_modes_keep_what_they_say_and_cut_long_bodies() {
    let up = Upstream::start().await;
    let failing = Upstream::start().await;
    let gw = TestGateway::start(
        &yaml(
            false,
            &[
                route("/none", "paylent", &[SECRET], &up.url("/none"), ""),
                route("/refused", "paylent", &[SECRET], &up.url("/refused"), "    capture: refused\n"),
                route("/failed", "paylent", &[SECRET], &failing.url("/failed"), "    capture: failed\n"),
                route(
                    "/all",
                    "paylent",
                    &[SECRET],
                    &up.url("/all"),
                    "    capture: all\n    capture_max_bytes: 16\n    capture_ttl: 1h\n",
                ),
            ],
        ),
        Clock::System,
    )
    .await;

    // capture: none (the default) keeps nothing, not even a refusal.
    assert_eq!(deliver(&gw, "/none", "evt_n", "forged", &[]).await.status, 401);
    let none = &recorded(&gw, "/none", 1).await[0];
    assert_eq!(none["captured"], false);
    let d = detail(&gw, none["id"].as_str().unwrap()).await;
    assert!(d["capture"].is_null(), "{d}");
    assert_eq!(d["replayable"], false);

    // capture: refused keeps a forged request whole (body, signature header), not a genuine one.
    assert_eq!(deliver(&gw, "/refused", "evt_r1", SECRET, &[]).await.status, 200);
    let forged = deliver(&gw, "/refused", "evt_r2", "forged-secret", &[("x-extra", "kept")]).await;
    assert_eq!(forged.status, 401);
    let all = recorded(&gw, "/refused", 2).await;
    assert_eq!(all[1]["outcome"], "forwarded");
    assert_eq!(all[1]["captured"], false, "{}", all[1]);
    assert_eq!(all[0]["outcome"], "invalid_signature");
    assert_eq!(all[0]["captured"], true, "{}", all[0]);
    let d = detail(&gw, all[0]["id"].as_str().unwrap()).await;
    assert_eq!(d["capture"]["body_text"].as_str().unwrap().as_bytes(), body("evt_r2"), "{d}");
    let sent = sign("paylent", "forged-secret", &body("evt_r2"), "", 0);
    assert_eq!(captured_header(&d, "x-paylent-signature"), Some(sent[0].1.as_str()), "{d}");
    assert_eq!(captured_header(&d, "x-extra"), Some("kept"));
    assert_eq!(d["capture"]["verified"], false);
    assert_eq!(d["capture"]["truncated"], false);
    assert_eq!(d["capture"]["method"], "POST");
    assert_eq!(d["capture"]["target"], "/refused");
    let d = detail(&gw, all[1]["id"].as_str().unwrap()).await;
    assert!(d["capture"].is_null(), "a genuine delivery is not refused: {d}");

    // capture: failed keeps a delivery the upstream answered 500, not one it took.
    failing.script(&[500]);
    assert_eq!(deliver(&gw, "/failed", "evt_f1", SECRET, &[]).await.status, 500);
    assert_eq!(deliver(&gw, "/failed", "evt_f2", SECRET, &[]).await.status, 200);
    let all = recorded(&gw, "/failed", 2).await;
    assert_eq!(
        (all[1]["outcome"].as_str(), all[1]["captured"].as_bool()),
        (Some("upstream_error"), Some(true))
    );
    assert_eq!((all[0]["outcome"].as_str(), all[0]["captured"].as_bool()), (Some("forwarded"), Some(false)));
    let d = detail(&gw, all[1]["id"].as_str().unwrap()).await;
    assert_eq!(d["capture"]["verified"], true, "{d}");
    assert_eq!(d["replayable"], true, "{d}");
    assert!(d["replay_refused_because"].is_null(), "{d}");

    // capture: all keeps a genuine one; past capture_max_bytes the body is cut and marked.
    assert_eq!(deliver(&gw, "/all", "evt_a1", SECRET, &[]).await.status, 200);
    let a = &recorded(&gw, "/all", 1).await[0];
    assert_eq!(a["captured"], true);
    let d = detail(&gw, a["id"].as_str().unwrap()).await;
    assert_eq!(d["capture"]["truncated"], true, "{d}");
    assert_eq!(d["capture"]["body_text"].as_str().unwrap().as_bytes(), &body("evt_a1")[..16]);
    assert_eq!(d["replayable"], false);
    assert!(d["replay_refused_because"].as_str().unwrap().contains("capture_max_bytes"), "{d}");
    assert_eq!(d["diagnosis"]["source"], "record", "a cut body is not re-verified: {d}");
    let (status, v) = replay(&gw, a["id"].as_str().unwrap(), "").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(up.seen().iter().filter(|s| s.uri.path() == "/all").count(), 1, "nothing replayed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_is_deleted_at_its_ttl() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(
        &yaml(
            false,
            &[route("/p", "paylent", &[SECRET], &up.url("/p"), "    capture: all\n    capture_ttl: 300ms\n")],
        ),
        Clock::System,
    )
    .await;
    assert_eq!(deliver(&gw, "/p", "evt_ttl", SECRET, &[]).await.status, 200);
    let e = &recorded(&gw, "/p", 1).await[0];
    assert_eq!(e["captured"], true);
    let id = e["id"].as_str().unwrap();
    let deadline = Deadline::new("the capture to expire", PATIENCE);
    let d = loop {
        let d = detail(&gw, id).await;
        if d["capture"].is_null() {
            break d;
        }
        deadline.tick().await;
    };
    // The event stays; its capture is gone, and so is the replay.
    assert_eq!(d["outcome"], "forwarded");
    assert!(d["replay_refused_because"].as_str().unwrap().contains("expired"), "{d}");
    let (status, v) = replay(&gw, id, "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().contains("expired"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_is_made_by_the_gateway_or_taken_from_a_trusted_proxy() {
    let up = Upstream::start().await;
    let routes = [route("/p", "paylent", &[SECRET], &up.url("/p"), "")];
    // Not a trusted proxy: the sender's id is replaced by one the gateway makes.
    let gw = TestGateway::start(&yaml(false, &routes), Clock::System).await;
    assert_eq!(deliver(&gw, "/p", "evt_1", SECRET, &[("x-request-id", "sender-chosen")]).await.status, 200);
    assert_eq!(deliver(&gw, "/p", "evt_2", SECRET, &[]).await.status, 200);
    let seen = up.seen();
    let ids: Vec<&str> = seen.iter().map(|s| s.headers["x-request-id"].to_str().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
    assert_ne!(ids[0], ids[1]);
    assert_eq!(seen[0].headers.get_all("x-request-id").iter().count(), 1);
    let all = recorded(&gw, "/p", 2).await;
    assert_eq!(all[1]["request_id"], ids[0], "the event names the id forwarded");
    assert_eq!(all[0]["request_id"], ids[1]);
    drop(gw);

    // From a trusted proxy (the test's own address): its id is kept and forwarded.
    let gw = TestGateway::start(&yaml(true, &routes), Clock::System).await;
    assert_eq!(deliver(&gw, "/p", "evt_3", SECRET, &[("x-request-id", "proxy-req-0001")]).await.status, 200);
    assert_eq!(up.seen()[2].headers["x-request-id"], "proxy-req-0001");
    assert_eq!(recorded(&gw, "/p", 1).await[0]["request_id"], "proxy-req-0001");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_capture_is_diagnosed_and_never_replayed() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(
        &yaml(false, &[route("/p", "paylent", &[SECRET], &up.url("/p"), "    capture: refused\n")]),
        Clock::System,
    )
    .await;
    assert_eq!(deliver(&gw, "/p", "evt_forged", "not-the-secret", &[]).await.status, 401);
    let e = &recorded(&gw, "/p", 1).await[0];
    let id = e["id"].as_str().unwrap();
    let d = detail(&gw, id).await;
    // The record's own fields are there, flattened.
    assert_eq!(d["outcome"], "invalid_signature");
    assert_eq!(d["id"], id);
    let diag = &d["diagnosis"];
    assert_eq!(diag["source"], "capture", "{d}");
    assert_eq!(diag["verdict"], "invalid");
    assert_eq!(diag["step"], "signature", "the failing step is named: {diag}");
    let lines: Vec<&str> = diag["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert!(lines.iter().any(|l| l.contains("x-paylent-signature")), "{lines:?}");
    assert!(diag["summary"].as_str().unwrap().contains("signature"), "{diag}");
    assert_eq!(d["timeline"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d["replayable"], false);
    assert!(d["replay_refused_because"].as_str().unwrap().contains("failed verification"), "{d}");
    for body in ["", r#"{"force":true}"#] {
        let (status, v) = replay(&gw, id, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert!(v["error"].as_str().unwrap().contains("never replayed"), "{v}");
    }
    assert_eq!(up.count(), 0, "nothing reached the upstream");
    // Unknown ids and bad bodies.
    let (status, _) = replay(&gw, "01ARZ3NDEKTSV4RRFFQ69G5FAV", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, v) = replay(&gw, id, r#"{"forse":true}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_is_replayed_once_the_upstream_is_fixed() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(
        &yaml(false, &[route("/p", "paylent", &[SECRET], &up.url("/p"), "    capture: failed\n")]),
        Clock::System,
    )
    .await;
    up.script(&[500]);
    assert_eq!(deliver(&gw, "/p", "evt_pay", SECRET, &[]).await.status, 500);
    let e = &recorded(&gw, "/p", 1).await[0];
    let id = e["id"].as_str().unwrap().to_owned();
    let d = detail(&gw, &id).await;
    assert_eq!(d["diagnosis"]["verdict"], "valid", "{d}");
    assert_eq!(d["replayable"], true, "{d}");

    // The upstream is fixed: the replay claims the released key and delivers the same bytes.
    let (status, v) = replay(&gw, &id, "").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["outcome"], "forwarded");
    assert_eq!(v["upstream_status"], 200);
    let replay_id = v["replay_id"].as_str().expect("the replay's event id").to_owned();
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body, seen[0].body, "identical body bytes");
    assert_eq!(&seen[1].body[..], &body("evt_pay")[..]);
    assert_eq!(seen[1].headers["x-paylent-signature"], seen[0].headers["x-paylent-signature"]);
    assert_eq!(seen[1].headers["portcullis-idempotency-key"], seen[0].headers["portcullis-idempotency-key"]);
    assert_ne!(seen[1].headers["x-request-id"], seen[0].headers["x-request-id"], "a new request id");
    assert_eq!(seen[1].headers["x-request-id"], v["request_id"].as_str().unwrap());
    assert_eq!(up.delivered().len(), 1, "delivered once");

    // The replay is an event of its own, and in the original's timeline.
    let r = detail(&gw, &replay_id).await;
    assert_eq!(r["replay_of"], id.as_str());
    assert_eq!(r["outcome"], "forwarded");
    let d = detail(&gw, &id).await;
    let kinds: Vec<&str> =
        d["timeline"].as_array().unwrap().iter().map(|t| t["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["arrival", "replay"], "{d}");

    // Delivered now: a second replay is refused, unless forced.
    let (status, v) = replay(&gw, &id, "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().contains("already delivered"), "{v}");
    assert_eq!(up.count(), 2);
    let (status, v) = replay(&gw, &id, r#"{"force": true}"#).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(up.count(), 3);
    assert_eq!(up.seen()[2].body, up.seen()[0].body);
    // A replay is not replayed itself.
    let (status, _) = replay(&gw, &replay_id, "").await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_capture_replays_only_when_forced() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(
        &yaml(false, &[route("/p", "paylent", &[SECRET], &up.url("/p"), "    capture: all\n")]),
        Clock::System,
    )
    .await;
    assert_eq!(deliver(&gw, "/p", "evt_done", SECRET, &[]).await.status, 200);
    let id = recorded(&gw, "/p", 1).await[0]["id"].as_str().unwrap().to_owned();
    let (status, v) = replay(&gw, &id, "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["outcome"], "duplicate");
    assert_eq!(up.count(), 1);
    let (status, v) = replay(&gw, &id, r#"{"force":true}"#).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(up.count(), 2);
    assert_eq!(up.seen()[1].body, up.seen()[0].body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_route_replays_into_its_queue() {
    let up = Upstream::start().await;
    let dir = std::env::temp_dir().join(format!("portcullis-replay-{}", rand::random::<u32>()));
    let extra = "    delivery: queued\n    capture: all\n    timeout: 1s\n    lease: 2s\n    queue:\n      backoff: 100ms\n";
    let cfg = format!(
        "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n  token: {TOKEN:?}\nstore:\n  kind: embedded\n  path: {:?}\nroutes:\n{}",
        dir.join("claims.redb").display().to_string(),
        route("/q", "paylent", &[SECRET], &up.url("/q"), extra)
    );
    let gw = TestGateway::start(&cfg, Clock::System).await;
    assert_eq!(deliver(&gw, "/q", "evt_q", SECRET, &[]).await.status, StatusCode::ACCEPTED);
    wait_until("the queued delivery", PATIENCE, || up.count() == 1).await;
    // The worker's attempt may be recorded before the request's own answer: wait for both.
    let deadline = Deadline::new("the queued delivery's record", PATIENCE);
    let e = loop {
        if let Some(e) = recorded(&gw, "/q", 1).await.into_iter().find(|e| e["outcome"] == "queued") {
            break e;
        }
        deadline.tick().await;
    };
    let id = e["id"].as_str().unwrap();
    // Accepted into the queue is delivered, for the key: only a forced replay goes again.
    let (status, v) = replay(&gw, id, "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let (status, v) = replay(&gw, id, r#"{"force":true}"#).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["outcome"], "queued");
    wait_until("the replayed delivery", PATIENCE, || up.count() == 2).await;
    assert_eq!(up.seen()[1].body, up.seen()[0].body);
    drop(gw);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn capture_settings_are_validated() {
    let load = |extra: &str| {
        let yaml = format!(
            "listen: 127.0.0.1:0\nroutes:\n{}",
            route("/p", "paylent", &[SECRET], "http://127.0.0.1:9/p", extra)
        );
        Config::from_yaml("gw.yaml", &yaml, Path::new("."), &|_| None).map_err(|e| format!("{e:#}"))
    };
    assert!(load("").unwrap().routes[0].capture.is_none(), "capture: none by default");
    let c = load("    capture: failed\n").unwrap().routes[0].capture.unwrap();
    assert_eq!((c.max_bytes, c.ttl), (64 * 1024, Duration::from_secs(24 * 3600)));
    let c = load("    capture: all\n    capture_max_bytes: 1KiB\n    capture_ttl: 10m\n").unwrap().routes[0]
        .capture
        .unwrap();
    assert_eq!((c.max_bytes, c.ttl), (1024, Duration::from_secs(600)));
    let e = load("    capture: sometimes\n").unwrap_err();
    assert!(e.contains("capture"), "{e}");
    let e = load("    capture: all\n    capture_max_bytes: 0\n").unwrap_err();
    assert!(e.contains("capture_max_bytes"), "{e}");
    let e = load("    capture: all\n    capture_ttl: 0s\n").unwrap_err();
    assert!(e.contains("capture_ttl"), "{e}");
    let e = load("    capture_body: all\n").unwrap_err();
    assert!(e.contains("capture_body"), "unknown keys are refused: {e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheme_that_sends_its_secret_is_captured_without_it() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(
        &yaml(false, &[route("/g", "gitlab", &[SECRET], &up.url("/g"), "    capture: all\n")]),
        Clock::System,
    )
    .await;
    let b = body("evt_g");
    let h = sign("gitlab", SECRET, &b, "evt_g", now());
    assert_eq!(post(&client(), &gw.url("/g"), &h, b).await.status, 200);
    let e = &recorded(&gw, "/g", 1).await[0];
    assert_eq!(e["captured"], true);
    // `api` fails on the secret anywhere in an answer.
    let d = detail(&gw, e["id"].as_str().unwrap()).await;
    assert_eq!(captured_header(&d, "x-gitlab-token"), Some("[redacted: the route's secret]"), "{d}");
    assert_eq!(d["diagnosis"]["source"], "record", "{d}");
}
