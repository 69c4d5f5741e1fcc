//! Dead letters, the queue and the outcome chart over the admin API, for the embedded queue and
//! the Redis queue: a delivery that exhausts its attempts shows with its request, is replayed
//! (delivered once) or purged (gone for good); the workers' attempts are in the event log with
//! their outcomes; `/api/stats` counts them. And the `queue` and `deliveries` commands against
//! a running gateway process.

use crate::util::process::GatewayProcess;
use crate::util::redis::{redis_or_skip, RedisServer};
use crate::util::*;
use base64::Engine;
use http::{Method, StatusCode};
use portcullis::clock::Clock;
use serde_json::Value;
use std::path::PathBuf;

const SECRET: &str = "dead-route-secret";
const TOKEN: &str = "dead-admin-token-0123456789";

/// Two attempts, 50 ms apart: a delivery to a failing upstream is dead within a second.
const QUEUED: &str = "    delivery: queued\n    timeout: 1s\n    lease: 2s\n    queue:\n      backoff: 50ms\n      max_backoff: 50ms\n      max_attempts: 2\n";

fn yaml(store: &str, up: &Upstream) -> String {
    format!(
        "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n  token: [{TOKEN:?}]\nstore:\n{store}routes:\n{}",
        route("/q", "paylent", &[SECRET], &up.url("/q"), QUEUED)
    )
}

fn embedded_store() -> (String, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "portcullis-dead-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("claims.redb").display().to_string();
    (format!("  kind: embedded\n  path: {path:?}\n"), dir)
}

fn redis_store(redis: &RedisServer) -> String {
    format!("  kind: redis\n  url: {:?}\n  timeout: 1s\n", redis.url())
}

async fn deliver(c: &HttpClient, url: &str, id: &str) -> Answer {
    let b = format!(r#"{{"event":"x","event_id":"{id}"}}"#).into_bytes();
    post(c, url, &sign("paylent", SECRET, &b, "", 0), b).await
}

/// A call to the admin API with the token; the status and the JSON.
async fn api(admin: std::net::SocketAddr, method: Method, path: &str) -> (StatusCode, Value) {
    let headers = vec![("authorization".to_string(), format!("Bearer {TOKEN}"))];
    let a = send(&client(), method, &format!("http://{admin}{path}"), &headers, "").await;
    let text = a.text();
    assert!(!text.contains(SECRET) && !text.contains(TOKEN), "a secret in {path}: {text}");
    if a.status == StatusCode::SERVICE_UNAVAILABLE {
        assert!(a.headers.contains_key("retry-after"), "503 without Retry-After: {text}");
    }
    (a.status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn get(admin: std::net::SocketAddr, path: &str) -> Value {
    let (status, v) = api(admin, Method::GET, path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {v}");
    v
}

/// Waits until the queue holds `dead` dead letters and nothing else.
async fn wait_dead(admin: std::net::SocketAddr, dead: u64) {
    let deadline = Deadline::new(format!("{dead} dead letters and an empty queue"), PATIENCE);
    loop {
        let v = get(admin, "/api/queue").await;
        let q = &v["queues"][0];
        if q["dead"] == dead && q["depth"] == 0 {
            assert_eq!(q["route"], "/q");
            return;
        }
        deadline.tick().await;
    }
}

/// The recorded deliveries with `outcome`, once there are at least `n`.
async fn recorded(admin: std::net::SocketAddr, outcome: &str, n: usize) -> Vec<Value> {
    let deadline = Deadline::new(format!("{n} recorded '{outcome}'"), PATIENCE);
    loop {
        let v = get(admin, &format!("/api/deliveries?outcome={outcome}")).await;
        let list = v["deliveries"].as_array().unwrap().clone();
        if list.len() >= n {
            return list;
        }
        deadline.tick().await;
    }
}

/// The whole life of two dead letters on one gateway: listed with their request, 404s, one
/// replayed and delivered once, one purged; every attempt in the event log; the chart's counts.
async fn dead_letters_scenario(gw: &TestGateway, up: &Upstream) {
    let admin = gw.admin;
    let c = client();
    up.set_down(true);
    for id in ["evt_da", "evt_db"] {
        assert_eq!(deliver(&c, &gw.url("/q"), id).await.status, StatusCode::ACCEPTED);
    }
    wait_dead(admin, 2).await;

    // Listed, newest or oldest first: by event id here.
    let v = get(admin, "/api/dead-letters").await;
    let list = v["dead_letters"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{v}");
    let id_of = |event: &str| {
        let d = list.iter().find(|d| d["event_id"] == format!("/q:{event}")).unwrap_or_else(|| panic!("{v}"));
        assert_eq!(d["route"], "/q");
        assert_eq!(d["attempts"], 2);
        assert!(d["last_error"].as_str().unwrap().contains("503"), "{d}");
        assert!(d["dead_at_ms"].as_u64().unwrap() > 0, "{d}");
        d["id"].as_str().unwrap().to_string()
    };
    let (a, b) = (id_of("evt_da"), id_of("evt_db"));
    assert_eq!(get(admin, "/api/dead-letters?route=/q").await["dead_letters"].as_array().unwrap().len(), 2);

    // One letter and its request.
    let d = get(admin, &format!("/api/dead-letters/{a}")).await;
    assert_eq!(d["id"], a.as_str());
    let body = d["request"]["body_text"].as_str().unwrap();
    assert!(body.contains("evt_da"), "{d}");
    let raw =
        base64::engine::general_purpose::STANDARD.decode(d["request"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(raw, body.as_bytes());
    assert_eq!(d["request"]["method"], "POST");
    let headers = d["request"]["headers"].as_array().unwrap();
    assert!(headers.iter().any(|h| h[0] == "portcullis-idempotency-key" && h[1] == "/q:evt_da"), "{d}");

    // What is not there.
    for (method, path) in [
        (Method::GET, "/api/dead-letters/999999".to_string()),
        (Method::POST, "/api/dead-letters/999999/replay".into()),
        (Method::DELETE, "/api/dead-letters/999999".into()),
        (Method::GET, "/api/dead-letters?route=/nope".into()),
    ] {
        let (status, v) = api(admin, method, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {v}");
        assert!(v["error"].is_string(), "{v}");
    }

    // Replayed once the upstream is back: delivered once.
    up.set_down(false);
    let (status, v) = api(admin, Method::POST, &format!("/api/dead-letters/{a}/replay")).await;
    assert_eq!((status, &v), (StatusCode::OK, &serde_json::json!({ "replayed": 1 })));
    wait_until("the replayed delivery", PATIENCE, || up.delivered().len() == 1).await;
    assert_eq!(up.delivered().get("/q:evt_da"), Some(&1));
    let (status, _) = api(admin, Method::POST, &format!("/api/dead-letters/{a}/replay")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "replayed already");

    // Purged: gone for good, never delivered.
    let (status, v) = api(admin, Method::DELETE, &format!("/api/dead-letters/{b}")).await;
    assert_eq!((status, &v), (StatusCode::OK, &serde_json::json!({ "purged": 1 })));
    let (status, _) = api(admin, Method::DELETE, &format!("/api/dead-letters/{b}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, v) = api(admin, Method::POST, "/api/dead-letters/purge").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["error"], "no dead letters to purge");
    let (status, _) = api(admin, Method::POST, "/api/dead-letters/replay?route=/q").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    wait_dead(admin, 0).await;
    assert!(get(admin, "/api/dead-letters").await["dead_letters"].as_array().unwrap().is_empty());
    assert!(!up.delivered().contains_key("/q:evt_db"));

    // Every attempt in the event log: two failed per delivery (a retry, then dead), and the
    // replay's delivered one, with the delivery's route, provider and event key.
    let retries = recorded(admin, "retry", 2).await;
    assert!(retries.iter().all(|e| e["attempts"] == 1 && e["upstream_status"] == 503), "{retries:?}");
    let dead = recorded(admin, "dead", 2).await;
    assert!(dead.iter().all(|e| e["attempts"] == 2 && e["route"] == "/q" && e["provider"] == "paylent"));
    let delivered = recorded(admin, "delivered", 1).await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0]["event_key"], "/q:evt_da");
    assert_eq!(delivered[0]["attempts"], 1, "attempts start again on a replay");
    assert_eq!(delivered[0]["upstream_status"], 200);
    let one = get(admin, &format!("/api/deliveries/{}", delivered[0]["id"].as_str().unwrap())).await;
    assert_eq!(one["outcome"], "delivered");

    // The chart: per route and outcome, one count per minute.
    let stats = get(admin, "/api/stats?minutes=5").await;
    assert_eq!(stats["bucket_ms"], 60_000);
    assert_eq!(stats["truncated"], false);
    assert_eq!(stats["to_ms"].as_u64().unwrap() - stats["from_ms"].as_u64().unwrap(), 5 * 60_000);
    let total = |outcome: &str| -> u64 {
        stats["series"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["route"] == "/q" && s["outcome"] == outcome)
            .map(|s| {
                let counts = s["counts"].as_array().unwrap();
                assert_eq!(counts.len(), 5);
                counts.iter().map(|n| n.as_u64().unwrap()).sum::<u64>()
            })
            .sum()
    };
    assert_eq!((total("queued"), total("retry"), total("dead"), total("delivered")), (2, 2, 2, 1), "{stats}");
    for bad in ["0", "1441", "x"] {
        let (status, v) = api(admin, Method::GET, &format!("/api/stats?minutes={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_over_the_api_with_the_embedded_queue() {
    let up = Upstream::start().await;
    let (store, dir) = embedded_store();
    let gw = TestGateway::start(&yaml(&store, &up), Clock::System).await;
    dead_letters_scenario(&gw, &up).await;
    drop(gw);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_over_the_api_with_the_redis_queue() {
    if !redis_or_skip("dead_letters_over_the_api_with_the_redis_queue") {
        return;
    }
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(&redis_store(&redis), &up), Clock::System).await;
    dead_letters_scenario(&gw, &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_that_does_not_answer_is_a_503_with_retry_after() {
    if !redis_or_skip("a_queue_that_does_not_answer_is_a_503_with_retry_after") {
        return;
    }
    let mut redis = RedisServer::start();
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(&redis_store(&redis), &up), Clock::System).await;
    redis.kill();
    for path in ["/api/queue", "/api/dead-letters", "/api/dead-letters/1-0"] {
        let (status, v) = api(gw.admin, Method::GET, path).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {v}");
    }
    let (status, _) = api(gw.admin, Method::POST, "/api/dead-letters/purge").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

/// Runs the CLI against `admin` with the token in the environment; exit code, stdout, stderr.
fn cli(admin: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(bin())
        .args(args)
        .args(["--admin", admin])
        .env("PORTCULLIS_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_and_deliveries_commands_use_the_admin_api() {
    let up = Upstream::start().await;
    up.set_down(true);
    let (store, dir) = embedded_store();
    let gw = GatewayProcess::start(&yaml(&store, &up));
    let admin = gw.admin_url();
    let c = client();
    for id in ["evt_ca", "evt_cb", "evt_cc"] {
        assert_eq!(deliver(&c, &gw.url("/q"), id).await.status, StatusCode::ACCEPTED);
    }
    wait_dead(gw.admin.unwrap(), 3).await;
    let run = |args: &[&str]| cli(&admin, args);

    // Tables by default.
    let (code, out, err) = run(&["queue", "stats"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("ROUTE") && lines[0].contains("DEAD"), "{out}");
    assert!(lines[1].starts_with("/q ") && lines[1].split_whitespace().nth(3) == Some("3"), "{out}");
    let (code, out, _) = run(&["queue", "dead", "list"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("ID") && out.lines().count() == 4 && out.contains("/q:evt_cb"), "{out}");

    // --json: the API's JSON.
    let (_, out, _) = run(&["queue", "dead", "list", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let id = |event: &str| {
        v["dead_letters"].as_array().unwrap().iter().find(|d| d["event_id"] == format!("/q:{event}")).unwrap()
            ["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (a, b) = (id("evt_ca"), id("evt_cb"));

    let (code, out, err) = run(&["queue", "show", &a]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("evt_ca") && out.contains("request: POST") && out.contains("last_error"), "{out}");

    up.set_down(false);
    let (code, out, err) = run(&["queue", "replay", &a]);
    assert_eq!((code, out.trim()), (0, "replayed 1 dead letter"), "{err}");
    wait_until("the replayed delivery", PATIENCE, || up.delivered().len() == 1).await;
    let (code, out, err) = run(&["queue", "purge", "--id", &b]);
    assert_eq!((code, out.trim()), (0, "purged 1 dead letter"), "{err}");
    let (code, out, _) = run(&["queue", "purge", "--all", "--route", "/q"]);
    assert_eq!((code, out.trim()), (0, "purged 1 dead letter"));
    let (code, _, err) = run(&["queue", "purge", "--all"]);
    assert_eq!(code, 1);
    assert!(err.contains("no dead letters to purge (404"), "{err}");
    let (code, _, err) = run(&["queue", "show", &b]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("no dead letter with id {b}")), "{err}");
    assert_eq!(up.delivered().len(), 1, "purged letters are never delivered");

    // The deliveries: the workers' attempts among them.
    let (code, out, err) = run(&["deliveries", "list", "--outcome", "dead", "--route", "/q"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("TIME") && out.lines().count() == 4, "{out}");
    assert!(out.lines().skip(1).all(|l| l.contains(" dead ")), "{out}");
    let (_, out, _) = run(&["deliveries", "list", "--outcome", "delivered", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let delivered = &v["deliveries"][0];
    assert_eq!(delivered["event_key"], "/q:evt_ca");
    let (code, out, err) = run(&["deliveries", "show", delivered["id"].as_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.starts_with("outcome") && l.ends_with("delivered")), "{out}");
    let (_, out, _) = run(&["deliveries", "show", delivered["id"].as_str().unwrap(), "--json"]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["attempts"], 1);

    // The token from a file; a wrong one, and none, are refused with a clear reason.
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let out = std::process::Command::new(bin())
        .args(["queue", "stats", "--admin", &admin, "--token-file", token_file.to_str().unwrap()])
        .env_remove("PORTCULLIS_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = std::process::Command::new(bin())
        .args(["deliveries", "list", "--admin", &admin])
        .env("PORTCULLIS_ADMIN_TOKEN", "wrong-token")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401") && err.contains("PORTCULLIS_ADMIN_TOKEN"), "{err}");
    assert!(!err.contains("wrong-token"), "the token is never printed: {err}");
    drop(gw);
    let (code, _, err) = cli(&admin, &["queue", "stats"]);
    assert_eq!(code, 1);
    assert!(err.contains("connection refused"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_racing_a_replay_in_redis_neither_loses_nor_duplicates() {
    if !redis_or_skip("a_purge_racing_a_replay_in_redis_neither_loses_nor_duplicates") {
        return;
    }
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    up.set_down(true);
    let gw = TestGateway::start(&yaml(&redis_store(&redis), &up), Clock::System).await;
    let c = client();
    let n = 8;
    for i in 0..n {
        assert_eq!(deliver(&c, &gw.url("/q"), &format!("evt_race{i}")).await.status, StatusCode::ACCEPTED);
    }
    wait_dead(gw.admin, n).await;
    up.set_down(false);
    let v = get(gw.admin, "/api/dead-letters").await;
    let ids: Vec<String> =
        v["dead_letters"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_string()).collect();
    // For each letter, a replay and a purge at once: exactly one of them has it.
    let mut replayed = 0;
    for id in &ids {
        let (replay, purge) = (format!("/api/dead-letters/{id}/replay"), format!("/api/dead-letters/{id}"));
        let (r, p) =
            tokio::join!(api(gw.admin, Method::POST, &replay), api(gw.admin, Method::DELETE, &purge));
        let ok = [r.0, p.0].iter().filter(|s| **s == StatusCode::OK).count();
        assert_eq!(ok, 1, "{id}: replay {r:?}, purge {p:?}");
        assert!([r.0, p.0].iter().all(|s| [StatusCode::OK, StatusCode::NOT_FOUND].contains(s)));
        if r.0 == StatusCode::OK {
            replayed += 1;
        }
    }
    wait_dead(gw.admin, 0).await;
    wait_until("the replayed deliveries", PATIENCE, || up.delivered().len() == replayed).await;
    assert!(up.delivered().values().all(|n| *n == 1), "{:?}", up.delivered());
}
