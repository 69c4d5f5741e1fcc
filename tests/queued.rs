//! Accept-then-deliver: `delivery: queued` routes answer once Redis holds a delivery, and
//! workers deliver it with retries, a dead-letter list, and takeover across instances.

use crate::util::process::GatewayProcess;
use crate::util::redis::{free_port, redis_or_skip, RedisServer};
use crate::util::*;
use http::{Method, StatusCode};
use portcullis::gateway::Clock;
use std::time::{Duration, Instant};

const SECRET: &str = "queued-secret";

fn yaml(redis: &RedisServer, up: &Upstream, queue: &str, admin: Option<u16>) -> String {
    let admin = admin.map(|p| format!("admin:\n  listen: 127.0.0.1:{p}\n")).unwrap_or_default();
    format!(
        "listen: 127.0.0.1:0\n{admin}store:\n  kind: redis\n  url: {:?}\n  timeout: 1s\nroutes:\n{}",
        redis.url(),
        route(
            "/q",
            "paylent",
            &[SECRET],
            &up.url("/q"),
            &format!("    delivery: queued\n    timeout: 1s\n    lease: 2s\n    queue:\n{queue}")
        )
    )
}

async fn deliver(c: &HttpClient, url: &str, id: &str) -> Answer {
    let b = format!(r#"{{"event":"x","event_id":"{id}"}}"#).into_bytes();
    post(c, url, &sign("paylent", SECRET, &b, "", 0), b).await
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_down_for_a_while_loses_nothing_and_doubles_nothing() {
    if !redis_or_skip("the_upstream_down_for_a_while_loses_nothing_and_doubles_nothing") {
        return;
    }
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    up.set_down(true);
    let queue =
        "      backoff: 100ms\n      max_backoff: 400ms\n      max_attempts: 100\n      concurrency: 4\n";
    let gw = TestGateway::start(&yaml(&redis, &up, queue, None), Clock::System).await;
    let c = client();
    for i in 0..30 {
        let started = Instant::now();
        let a = deliver(&c, &gw.url("/q"), &format!("evt_q{i}")).await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
        assert!(started.elapsed() < Duration::from_millis(500), "answered at once");
    }
    // A provider retry of an accepted delivery is a duplicate, not a second queued copy.
    assert_eq!(deliver(&c, &gw.url("/q"), "evt_q0").await.text(), r#"{"status":"duplicate"}"#);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(up.count() > 0, "the workers tried while the upstream was down");
    assert!(up.delivered().is_empty());
    let m = gw.metrics().await;
    assert!(sample(&m, "portcullis_queue_depth") > 0.0, "{m}");
    assert!(sample(&m, "portcullis_queue_attempts_total{outcome=\"retry\"}") > 0.0);

    up.set_down(false);
    wait_for("every delivery", Duration::from_secs(20), || up.delivered().len() == 30).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered = up.delivered();
    assert_eq!(delivered.len(), 30);
    assert!(delivered.values().all(|n| *n == 1), "each exactly once: {delivered:?}");
    assert_eq!(
        sample(&gw.metrics().await, "portcullis_requests_total{route=\"/q\",outcome=\"queued\"}"),
        30.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_deliveries_go_to_the_dead_letter_list_and_replay_delivers_them() {
    if !redis_or_skip("exhausted_deliveries_go_to_the_dead_letter_list_and_replay_delivers_them") {
        return;
    }
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    up.set_down(true);
    let admin = free_port();
    let queue = "      backoff: 50ms\n      max_attempts: 2\n";
    let gw = GatewayProcess::start(&yaml(&redis, &up, queue, Some(admin)));
    let c = client();
    for i in 0..3 {
        assert_eq!(deliver(&c, &gw.url("/q"), &format!("evt_dead{i}")).await.status, StatusCode::ACCEPTED);
    }
    let admin_url = format!("http://127.0.0.1:{admin}");
    let cli = |args: &[&str]| {
        let out =
            std::process::Command::new(bin()).args(args).args(["--admin", &admin_url]).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let started = Instant::now();
    loop {
        let (_, stats) = cli(&["queue", "stats"]);
        let v: serde_json::Value = serde_json::from_str(&stats).unwrap_or_default();
        if v[0]["dead"] == 3 {
            assert_eq!(v[0]["depth"], 0, "{stats}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "dead letters: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, list) = cli(&["queue", "dead", "list"]);
    assert_eq!(code, 0);
    let dead: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(dead.len(), 3);
    assert_eq!(dead[0]["attempts"], 2);
    assert!(dead[0]["last_error"].as_str().unwrap().contains("503"), "{list}");

    // One by id, then the rest.
    up.set_down(false);
    let first = dead[0]["id"].as_str().unwrap().to_string();
    let (code, out) = cli(&["queue", "replay", &first]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"replayed\": 1"), "{out}");
    wait_for("the replayed delivery", Duration::from_secs(10), || up.delivered().len() == 1).await;
    let (_, out) = cli(&["queue", "replay", "--all"]);
    assert!(out.contains("\"replayed\": 2"), "{out}");
    wait_for("every replayed delivery", Duration::from_secs(10), || up.delivered().len() == 3).await;
    assert!(up.delivered().values().all(|n| *n == 1));
    let m = send(&c, Method::GET, &format!("{admin_url}/metrics"), &[], "").await.text();
    assert_eq!(sample(&m, "portcullis_queue_attempts_total{outcome=\"dead\"}"), 3.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_s_deliveries_are_delivered_by_another() {
    if !redis_or_skip("a_killed_instance_s_deliveries_are_delivered_by_another") {
        return;
    }
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    // A's attempts will not succeed, and A dies before they even fail.
    up.set_delay(Duration::from_millis(700));
    up.set_down(true);
    let queue = "      backoff: 100ms\n      concurrency: 8\n";
    let cfg = yaml(&redis, &up, queue, None);
    let a = GatewayProcess::start(&cfg);
    let c = client();
    for i in 0..6 {
        assert_eq!(deliver(&c, &a.url("/q"), &format!("evt_kill{i}")).await.status, StatusCode::ACCEPTED);
    }
    // A's workers have taken the deliveries and wait on the upstream: kill A (SIGKILL).
    tokio::time::sleep(Duration::from_millis(250)).await;
    drop(a);
    let killed = Instant::now();
    assert_eq!(up.count(), 6, "A had taken all six and was waiting on the upstream");
    assert!(up.delivered().is_empty());
    up.set_delay(Duration::ZERO);
    up.set_down(false);
    let b = GatewayProcess::start(&cfg);
    wait_for("B to deliver A's deliveries", Duration::from_secs(20), || up.delivered().len() == 6).await;
    // B took them over once they had been pending longer than a delivery can take (3 s here).
    assert!(killed.elapsed() > Duration::from_secs(2), "{:?}", killed.elapsed());
    tokio::time::sleep(Duration::from_millis(500)).await;
    // None lost. A copy may arrive twice only where A's request reached the upstream and its
    // answer never came back; both copies carry the same idempotency key.
    let delivered = up.delivered();
    assert_eq!(delivered.len(), 6, "{delivered:?}");
    assert!(delivered.values().all(|n| *n <= 2), "{delivered:?}");
    for s in up.seen() {
        assert!(s.headers["portcullis-idempotency-key"].to_str().unwrap().starts_with("/q:evt_kill"));
    }
    drop(b);
}

#[test]
fn queued_delivery_needs_a_durable_store() {
    let yaml = config(&[route("/q", "paylent", &[SECRET], "http://127.0.0.1:1/", "    delivery: queued\n")]);
    let e = portcullis::config::Config::from_yaml("gw.yaml", &yaml, std::path::Path::new("."), &|_| None)
        .unwrap_err();
    assert!(e.to_string().contains("durable"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_queue_keeps_accepted_deliveries_across_a_restart() {
    let up = Upstream::start().await;
    up.set_down(true);
    let dir = std::env::temp_dir().join(format!("portcullis-eq-{}", rand::random::<u32>()));
    let extra = "    delivery: queued\n    timeout: 1s\n    lease: 2s\n    queue:\n      backoff: 100ms\n      max_backoff: 200ms\n      max_attempts: 1000\n";
    let cfg = format!(
        "listen: 127.0.0.1:0\nstore:\n  kind: embedded\n  path: {:?}\nroutes:\n{}",
        dir.join("claims.redb").display().to_string(),
        route("/q", "paylent", &[SECRET], &up.url("/q"), extra)
    );
    let gw = GatewayProcess::start(&cfg);
    let c = client();
    for i in 0..5 {
        assert_eq!(deliver(&c, &gw.url("/q"), &format!("evt_e{i}")).await.status, StatusCode::ACCEPTED);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(gw.terminate().success());
    assert!(up.delivered().is_empty());
    // Restarted, with the upstream back: every accepted delivery arrives, once.
    up.set_down(false);
    let gw = GatewayProcess::start(&cfg);
    wait_for("the accepted deliveries", Duration::from_secs(15), || up.delivered().len() == 5).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(up.delivered().values().all(|n| *n == 1), "{:?}", up.delivered());
    // And a retry from the provider is still a duplicate.
    assert_eq!(deliver(&c, &gw.url("/q"), "evt_e0").await.text(), r#"{"status":"duplicate"}"#);
    drop(gw);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_of_one_object_keep_their_order_through_retries() {
    if !redis_or_skip("deliveries_of_one_object_keep_their_order_through_retries") {
        return;
    }
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    // The first attempt fails: the later deliveries of the same object must wait for it.
    up.script(&[500]);
    let queue = "      backoff: 300ms\n      concurrency: 4\n      order_by: /object\n";
    let gw = TestGateway::start(&yaml(&redis, &up, queue, None), Clock::System).await;
    let c = client();
    for (id, object) in [("e1", "A"), ("e2", "A"), ("e3", "A"), ("x1", "B")] {
        let b = format!(r#"{{"event_id":"{id}","object":"{object}"}}"#).into_bytes();
        assert_eq!(post(&c, &gw.url("/q"), &sign("paylent", SECRET, &b, "", 0), b).await.status, 202);
    }
    wait_for("all four", Duration::from_secs(15), || up.delivered().len() == 4).await;
    let order: Vec<String> = up
        .seen()
        .iter()
        .filter(|s| s.status == 200)
        .map(|s| s.headers["portcullis-idempotency-key"].to_str().unwrap().to_string())
        .filter(|k| k.starts_with("/q:e"))
        .collect();
    assert_eq!(order, ["/q:e1", "/q:e2", "/q:e3"], "object A's deliveries in the order accepted");
}
