//! Shared idempotency in Redis and Redis Cluster, and the embedded store across restarts.

use crate::util::process::GatewayProcess;
use crate::util::redis::{redis_or_skip, RedisCluster, RedisServer};
use crate::util::*;
use http::StatusCode;
use rand::seq::SliceRandom;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

const SECRET: &str = "whsec_paylent_test";

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"event":"payment.succeeded","event_id":"{id}","data":{{"amount":1250}}}}"#).into_bytes()
}

fn store_yaml(store: &str, upstream: &Upstream, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nstore:\n{store}routes:\n{}",
        route("/p", "paylent", &[SECRET], &upstream.url("/p"), extra)
    )
}

fn redis_store(url: &str) -> String {
    format!("  kind: redis\n  url: {url:?}\n  timeout: 1s\n")
}

fn cluster_store(urls: &[String]) -> String {
    let nodes: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    format!("  kind: redis-cluster\n  nodes: [{}]\n  timeout: 2s\n", nodes.join(", "))
}

/// Sends `copies` of one delivery at once, spread over `urls`; returns the statuses.
async fn concurrent_copies(urls: &[String], id: &str, copies: usize) -> Vec<u16> {
    let b = body(id);
    let h = sign("paylent", SECRET, &b, "", 0);
    let mut tasks = Vec::new();
    for i in 0..copies {
        let (url, h, b) = (urls[i % urls.len()].clone(), h.clone(), b.clone());
        tasks.push(tokio::spawn(async move { post(&client(), &url, &h, b).await.status.as_u16() }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Each of `n` unique deliveries sent three times, shuffled, over `urls`, 32 at a time, each
/// retried like a provider until it gets a 2xx.
async fn shuffled_triplicates(urls: &[String], n: usize) {
    let mut sends: Vec<(usize, usize)> = (0..n).flat_map(|i| [(i, 0), (i, 1), (i, 2)]).collect();
    sends.shuffle(&mut rand::thread_rng());
    let sem = Arc::new(Semaphore::new(32));
    let c = client();
    let mut tasks = Vec::with_capacity(sends.len());
    for (k, (i, _)) in sends.into_iter().enumerate() {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let url = urls[k % urls.len()].clone();
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let b = body(&format!("evt_{i}"));
            let h = sign("paylent", SECRET, &b, "", 0);
            let deadline = Deadline::new(format!("a 2xx for evt_{i}"), PATIENCE);
            loop {
                let a = post(&c, &url, &h, b.clone()).await;
                match a.status.as_u16() {
                    200 => break,
                    409 => deadline.tick().await,
                    s => panic!("unexpected {s}: {}", a.text()),
                }
            }
            drop(permit);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateway_processes_share_one_redis() {
    if !redis_or_skip("two_gateway_processes_share_one_redis") {
        return;
    }
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    up.set_delay(Duration::from_millis(200));
    let yaml = store_yaml(&redis_store(&redis.url()), &up, "");
    let a = GatewayProcess::start(&yaml);
    let b = GatewayProcess::start(&yaml);
    let urls = [a.url("/p"), b.url("/p")];
    let statuses = concurrent_copies(&urls, "evt_shared_once", 20).await;
    assert_eq!(up.count(), 1, "statuses {statuses:?}");
    assert!(statuses.iter().all(|s| *s < 500), "no 5xx: {statuses:?}");
    // A later copy on either instance is a duplicate.
    let st = concurrent_copies(&urls, "evt_shared_once", 2).await;
    assert_eq!(st, [200, 200]);
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_deliveries_three_times_each_over_two_instances() {
    if !redis_or_skip("five_thousand_deliveries_three_times_each_over_two_instances") {
        return;
    }
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let yaml = store_yaml(&redis_store(&redis.url()), &up, "");
    let a = GatewayProcess::start(&yaml);
    let b = GatewayProcess::start(&yaml);
    let started = Instant::now();
    shuffled_triplicates(&[a.url("/p"), b.url("/p")], 5000).await;
    eprintln!("15000 sends over two instances in {:?}", started.elapsed());
    assert_eq!(up.count(), 5000);
    let mut ids: Vec<_> = up.seen().iter().map(|s| s.headers["portcullis-idempotency-key"].clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5000, "every event exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_passes_the_duplicate_tests() {
    if !redis_or_skip("redis_cluster_passes_the_duplicate_tests") {
        return;
    }
    let cluster = RedisCluster::start();
    let up = Upstream::start().await;
    up.set_delay(Duration::from_millis(100));
    let yaml = store_yaml(&cluster_store(&cluster.urls()), &up, "");
    let a = TestGateway::start(&yaml, portcullis::clock::Clock::System).await;
    let b = TestGateway::start(&yaml, portcullis::clock::Clock::System).await;
    let urls = [a.url("/p"), b.url("/p")];
    let statuses = concurrent_copies(&urls, "evt_cluster_once", 20).await;
    assert_eq!(up.count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s < 500), "{statuses:?}");
    up.set_delay(Duration::ZERO);
    shuffled_triplicates(&urls, 300).await;
    assert_eq!(up.count(), 301);
    // The keys really are spread over the masters.
    let per_node: Vec<usize> =
        cluster.nodes.iter().map(|n| n.cli(&["dbsize"]).trim().parse().unwrap()).collect();
    assert!(per_node.iter().filter(|n| **n > 0).count() >= 2, "keys per node {per_node:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_answers_503_then_recovers_by_itself() {
    if !redis_or_skip("redis_down_answers_503_then_recovers_by_itself") {
        return;
    }
    let mut redis = RedisServer::start();
    let up = Upstream::start().await;
    let gw = TestGateway::start(
        &store_yaml(&redis_store(&redis.url()), &up, ""),
        portcullis::clock::Clock::System,
    )
    .await;
    let c = client();
    let first = body("evt_before");
    assert_eq!(post(&c, &gw.url("/p"), &sign("paylent", SECRET, &first, "", 0), first).await.status, 200);

    redis.kill();
    let b = body("evt_during_outage");
    let h = sign("paylent", SECRET, &b, "", 0);
    let started = Instant::now();
    let a = post(&c, &gw.url("/p"), &h, b.clone()).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    assert!(a.headers.contains_key("retry-after"));
    assert!(started.elapsed() < Duration::from_secs(5), "a store call never hangs a request");
    assert_eq!(up.count(), 1, "nothing forwarded while the store is down");

    redis.restart();
    // The provider retries with backoff; the gateway reconnects without a restart.
    let deadline = Deadline::new("a 2xx once Redis is back", PATIENCE);
    while post(&c, &gw.url("/p"), &h, b.clone()).await.status != 200 {
        deadline.tick().await;
    }
    assert_eq!(up.count(), 2, "the retry is forwarded once");
    assert_eq!(post(&c, &gw.url("/p"), &h, b).await.text(), r#"{"status":"duplicate"}"#);
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn unreachable_store_with_on_store_error_forward_chooses_availability() {
    // Nothing listens on port 1, and no test can take it.
    let up = Upstream::start().await;
    let yaml = store_yaml(&redis_store("redis://127.0.0.1:1/"), &up, "    on_store_error: forward\n");
    let gw = TestGateway::start(&yaml, portcullis::clock::Clock::System).await;
    let b = body("evt_avail");
    let a = post(&client(), &gw.url("/p"), &sign("paylent", SECRET, &b, "", 0), b).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failure_releases_the_key_in_redis() {
    if !redis_or_skip("upstream_failure_releases_the_key_in_redis") {
        return;
    }
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    up.script(&[503]);
    let gw = TestGateway::start(
        &store_yaml(&redis_store(&redis.url()), &up, ""),
        portcullis::clock::Clock::System,
    )
    .await;
    let c = client();
    let b = body("evt_fail_once");
    let h = sign("paylent", SECRET, &b, "", 0);
    assert_eq!(post(&c, &gw.url("/p"), &h, b.clone()).await.status, 503);
    assert_eq!(redis.cli(&["exists", "portcullis:{/p:evt_fail_once}"]).trim(), "0", "the claim was released");
    assert_eq!(post(&c, &gw.url("/p"), &h, b.clone()).await.status, 200);
    assert_eq!(up.count(), 2);
    let keys = redis.cli(&["keys", "*"]);
    assert!(keys.contains("portcullis:{/p:evt_fail_once}"), "{keys}");
    let ttl: i64 = redis.cli(&["ttl", "portcullis:{/p:evt_fail_once}"]).trim().parse().unwrap();
    assert!(ttl > 71 * 3600, "delivered keys are kept for the dedupe window: {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_of_a_killed_instance_is_taken_over_by_the_retry() {
    if !redis_or_skip("expired_lease_of_a_killed_instance_is_taken_over_by_the_retry") {
        return;
    }
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    // A's copy is held at the upstream until A is dead.
    up.hold();
    let yaml = store_yaml(&redis_store(&redis.url()), &up, "    timeout: 1s\n    lease: 4s\n");
    let a = GatewayProcess::start(&yaml);
    let b_gw = GatewayProcess::start(&yaml);
    let b = body("evt_orphan");
    let h = sign("paylent", SECRET, &b, "", 0);
    // Instance A claims, then dies before it can complete or release.
    let (url, h2, b2) = (a.url("/p"), h.clone(), b.clone());
    let inflight = tokio::spawn(async move {
        let _ = client()
            .request(
                http::Request::post(url)
                    .header(&h2[0].0, &h2[0].1)
                    .body(http_body_util::Full::new(bytes::Bytes::from(b2)))
                    .unwrap(),
            )
            .await;
    });
    wait_until("A's copy to reach the upstream", PATIENCE, || up.count() == 1).await;
    drop(a); // SIGKILL
    let _ = inflight.await;
    up.release();
    let c = client();
    let a2 = post(&c, &b_gw.url("/p"), &h, b.clone()).await;
    assert_eq!(a2.status, StatusCode::CONFLICT, "the lease still holds");
    assert!(a2.headers.contains_key("retry-after"));
    // The provider retries: 409 while the lease holds, then B takes the key over.
    let deadline = Deadline::new("the lease to lapse", PATIENCE);
    loop {
        let a3 = post(&c, &b_gw.url("/p"), &h, b.clone()).await;
        if a3.status != StatusCode::CONFLICT {
            assert_eq!(a3.status, 200, "taken over after the lease: {}", a3.text());
            break;
        }
        deadline.tick().await;
    }
    assert_eq!(up.count(), 2, "A's copy reached the upstream, then B's after the lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_remembers_deliveries_across_restarts() {
    let up = Upstream::start().await;
    let dir = std::env::temp_dir().join(format!("portcullis-emb-{}", rand::random::<u32>()));
    let path = dir.join("claims.redb");
    let yaml = store_yaml(&format!("  kind: embedded\n  path: {:?}\n", path.display().to_string()), &up, "");
    let b = body("evt_persisted");
    let h = sign("paylent", SECRET, &b, "", 0);
    let c = client();
    let gw = GatewayProcess::start(&yaml);
    assert_eq!(post(&c, &gw.url("/p"), &h, b.clone()).await.status, 200);
    assert!(gw.terminate().success(), "SIGTERM exits 0");

    let gw = GatewayProcess::start(&yaml);
    let a = post(&c, &gw.url("/p"), &h, b).await;
    assert_eq!(a.text(), r#"{"status":"duplicate"}"#);
    assert_eq!(up.count(), 1, "not forwarded after the restart");
    drop(gw);
    let _ = std::fs::remove_dir_all(dir);
}
