//! Accept-then-deliver: `delivery: queued` routes answer once Redis holds a delivery, and
//! workers deliver it with retries, a dead-letter list, and takeover across instances.

use crate::util::process::GatewayProcess;
use crate::util::redis::{redis_or_skip, RedisServer};
use crate::util::*;
use http::{Method, StatusCode};
use portcullis::clock::Clock;
use std::time::{Duration, Instant};

const SECRET: &str = "queued-secret";

/// The config of one queued route; the admin listener is on a port of its own choosing.
fn yaml(redis: &RedisServer, up: &Upstream, queue: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nstore:\n  kind: redis\n  url: {:?}\n  timeout: 1s\nroutes:\n{}",
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

async fn wait_for(what: &str, limit: Duration, done: impl FnMut() -> bool) {
    wait_until(what, limit, done).await
}

/// Waits until the queue behind the admin listener at `admin` holds nothing more to deliver:
/// only then can "nothing was delivered twice" be asserted.
async fn wait_drained(admin: std::net::SocketAddr) {
    let deadline = Deadline::new("the queue to drain", PATIENCE);
    while !queue_drained(&queue_stats(admin).await) {
        deadline.tick().await;
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
    let gw = TestGateway::start(&yaml(&redis, &up, queue), Clock::System).await;
    let c = client();
    for i in 0..30 {
        let started = Instant::now();
        let a = deliver(&c, &gw.url("/q"), &format!("evt_q{i}")).await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
        assert!(started.elapsed() < Duration::from_secs(2), "answered at once");
    }
    // A provider retry of an accepted delivery is a duplicate, not a second queued copy.
    assert_eq!(deliver(&c, &gw.url("/q"), "evt_q0").await.text(), r#"{"status":"duplicate"}"#);
    // The workers try while the upstream is down, and the gauges show the backlog.
    let deadline = Deadline::new("retries and a queue depth in the metrics", PATIENCE);
    loop {
        let m = gw.metrics().await;
        if up.count() > 0
            && sample_sum(&m, "portcullis_queue_depth") > 0.0
            && sample(&m, "portcullis_queue_attempts_total{outcome=\"retry\"}") > 0.0
        {
            break;
        }
        deadline.tick().await;
    }
    assert!(up.delivered().is_empty());
    let m = gw.metrics().await;
    assert!(sample(&m, "portcullis_queue_depth{route=\"/q\"}") > 0.0, "{m}");
    assert!(sample(&m, "portcullis_queue_attempts_total{outcome=\"retry\"}") > 0.0);

    up.set_down(false);
    wait_for("every delivery", PATIENCE, || up.delivered().len() == 30).await;
    wait_drained(gw.admin).await;
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
    let queue = "      backoff: 50ms\n      max_attempts: 2\n";
    let gw = GatewayProcess::start(&yaml(&redis, &up, queue));
    let c = client();
    for i in 0..3 {
        assert_eq!(deliver(&c, &gw.url("/q"), &format!("evt_dead{i}")).await.status, StatusCode::ACCEPTED);
    }
    let admin_url = gw.admin_url();
    let cli = |args: &[&str]| {
        let out =
            std::process::Command::new(bin()).args(args).args(["--admin", &admin_url]).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // The whole condition at once: all three dead and none still waiting (a snapshot taken
    // while the last one moves may show it in neither or both).
    let deadline = Deadline::new("three dead letters and an empty queue", PATIENCE);
    loop {
        let (_, stats) = cli(&["queue", "stats", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&stats).unwrap_or_default();
        let v = &v["queues"];
        if v[0]["dead"] == 3 && v[0]["depth"] == 0 {
            break;
        }
        deadline.tick().await;
    }
    let (code, list) = cli(&["queue", "dead", "list", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    let dead = v["dead_letters"].as_array().unwrap();
    assert_eq!(dead.len(), 3);
    assert_eq!(dead[0]["attempts"], 2);
    assert!(dead[0]["last_error"].as_str().unwrap().contains("503"), "{list}");

    // One by id, then the rest.
    up.set_down(false);
    let first = dead[0]["id"].as_str().unwrap().to_string();
    let (code, out) = cli(&["queue", "replay", &first, "--json"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"replayed\": 1"), "{out}");
    wait_for("the replayed delivery", PATIENCE, || up.delivered().len() == 1).await;
    let (_, out) = cli(&["queue", "replay", "--all", "--json"]);
    assert!(out.contains("\"replayed\": 2"), "{out}");
    wait_for("every replayed delivery", PATIENCE, || up.delivered().len() == 3).await;
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
    // A's attempts will not succeed, and A dies before they even fail: the upstream holds
    // every request it receives until released.
    up.hold();
    up.set_down(true);
    let queue = "      backoff: 100ms\n      concurrency: 8\n";
    let cfg = yaml(&redis, &up, queue);
    let a = GatewayProcess::start(&cfg);
    let c = client();
    for i in 0..6 {
        assert_eq!(deliver(&c, &a.url("/q"), &format!("evt_kill{i}")).await.status, StatusCode::ACCEPTED);
    }
    // Once A's workers have taken all six and wait on the upstream, kill A (SIGKILL).
    wait_for("A to take all six", PATIENCE, || up.distinct_keys() == 6).await;
    drop(a);
    let killed = Instant::now();
    assert!(up.delivered().is_empty());
    up.set_down(false);
    up.release();
    let b = GatewayProcess::start(&cfg);
    wait_for("B to deliver A's deliveries", PATIENCE, || up.delivered().len() == 6).await;
    // B took them over once they had been pending longer than a delivery can take (3 s here).
    assert!(killed.elapsed() > Duration::from_secs(2), "{:?}", killed.elapsed());
    wait_drained(b.admin.unwrap()).await;
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
        "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nstore:\n  kind: embedded\n  path: {:?}\nroutes:\n{}",
        dir.join("claims.redb").display().to_string(),
        route("/q", "paylent", &[SECRET], &up.url("/q"), extra)
    );
    let gw = GatewayProcess::start(&cfg);
    let c = client();
    for i in 0..5 {
        assert_eq!(deliver(&c, &gw.url("/q"), &format!("evt_e{i}")).await.status, StatusCode::ACCEPTED);
    }
    // Every one was tried (and failed) before the restart.
    wait_for("an attempt at each delivery", PATIENCE, || up.distinct_keys() == 5).await;
    assert!(gw.terminate().success());
    assert!(up.delivered().is_empty());
    // Restarted, with the upstream back: every accepted delivery arrives, once.
    up.set_down(false);
    let gw = GatewayProcess::start(&cfg);
    wait_for("the accepted deliveries", PATIENCE, || up.delivered().len() == 5).await;
    wait_drained(gw.admin.unwrap()).await;
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
    let gw = TestGateway::start(&yaml(&redis, &up, queue), Clock::System).await;
    let c = client();
    for (id, object) in [("e1", "A"), ("e2", "A"), ("e3", "A"), ("x1", "B")] {
        let b = format!(r#"{{"event_id":"{id}","object":"{object}"}}"#).into_bytes();
        assert_eq!(post(&c, &gw.url("/q"), &sign("paylent", SECRET, &b, "", 0), b).await.status, 202);
    }
    wait_for("all four", PATIENCE, || up.delivered().len() == 4).await;
    let order: Vec<String> = up
        .seen()
        .iter()
        .filter(|s| s.status == 200)
        .map(|s| s.headers["portcullis-idempotency-key"].to_str().unwrap().to_string())
        .filter(|k| k.starts_with("/q:e"))
        .collect();
    assert_eq!(order, ["/q:e1", "/q:e2", "/q:e3"], "object A's deliveries in the order accepted");
}
