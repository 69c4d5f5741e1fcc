//! Where the event log lives: the memory ring, the embedded store's redb file (which keeps
//! events across a restart) and a Redis Stream (which every instance on one Redis shares),
//! each through the `EventLog` trait; then the fleet end to end, and a Redis that is down.

use crate::util::process::GatewayProcess;
use crate::util::redis::{redis_or_skip, RedisCluster, RedisServer};
use crate::util::*;
use http::{Method, StatusCode};
use portcullis::clock::Clock;
use portcullis::config::Config;
use portcullis::event_log::embedded::EmbeddedLog;
use portcullis::event_log::memory::MemoryLog;
use portcullis::event_log::redis::RedisLog;
use portcullis::event_log::{now_ms, Capture, Entry, Event, EventLog, Filter, LastMatch, Ulids};
use portcullis::store_conn::redis_pool::RedisPool;
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SECRET: &str = "event-log-route-secret";
const TOKEN: &str = "token-eventlog-aaaaaaaa";
const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

fn event(route: &str, outcome: &'static str, time_ms: u64) -> Event {
    Event {
        id: String::new(),
        time_ms,
        route: route.into(),
        provider: "paylent".into(),
        method: "POST".into(),
        path: route.into(),
        client: None,
        request_id: None,
        outcome: outcome.into(),
        status: 200,
        event_key: None,
        secret_index: None,
        latency_ms: 1.5,
        upstream_status: Some(200),
        upstream_latency_ms: Some(1.0),
        detail: None,
        attempts: None,
        captured: false,
        replay_of: None,
    }
}

fn capture(target: &str) -> Capture {
    Capture {
        method: "POST".into(),
        target: target.into(),
        headers: vec![("content-type".into(), "application/json".into()), ("x-sig".into(), "v1=ab".into())],
        body: bytes::Bytes::from_static(b"{\"a\":1}\x00\xff"),
        truncated: false,
        verified: true,
    }
}

fn ids(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.id.clone()).collect()
}

/// Appends ten events in two batches (as the appender does: ids given at append time,
/// ascending) and returns them in the order made. Routes alternate `/a`, `/b`; every third
/// is refused; `/a`'s secret 0 and 1 match; event 4 is captured for an hour, event 6 for a
/// moment.
async fn fill(log: &dyn EventLog) -> Vec<Event> {
    let mut gen = Ulids::default();
    let now = now_ms();
    let mut made = Vec::new();
    let mut batch = Vec::new();
    for i in 0..10u64 {
        let route = if i % 2 == 0 { "/a" } else { "/b" };
        let outcome = if i % 3 == 0 { "invalid_signature" } else { "forwarded" };
        let mut e = event(route, outcome, now - 10_000 + i * 1_000);
        e.id = gen.next(now_ms());
        e.event_key = Some(format!("{route}:evt_{i}"));
        if route == "/a" && outcome == "forwarded" {
            e.secret_index = Some((i % 2) as usize + (i as usize / 4) % 2);
        }
        let cap = match i {
            4 => Some((capture("/a?i=4"), Duration::from_secs(3600))),
            6 => Some((capture("/a?i=6"), Duration::from_millis(1))),
            _ => None,
        };
        e.captured = cap.is_some();
        made.push(e.clone());
        batch.push(Entry { event: e, capture: cap });
        if i == 5 {
            log.append(&batch).await.unwrap();
            batch.clear();
        }
    }
    log.append(&batch).await.unwrap();
    made
}

/// What every event log must do, through the trait.
async fn conformance(log: &dyn EventLog) {
    let made = fill(log).await;
    let newest_first: Vec<String> = made.iter().rev().map(|e| e.id.clone()).collect();

    let all = log.list(&Filter::default()).await.unwrap();
    assert_eq!(ids(&all), newest_first, "{} lists newest first", log.kind());
    assert_eq!(all[3], made[6], "round trip of the whole record");

    // Filters.
    let f = |g: fn(&mut Filter)| {
        let mut f = Filter::default();
        g(&mut f);
        f
    };
    let by_route = log.list(&f(|f| f.route = Some("/b".into()))).await.unwrap();
    assert_eq!(by_route.len(), 5);
    assert!(by_route.iter().all(|e| e.route == "/b"));
    let refused = log.list(&f(|f| f.outcome = Some("invalid_signature".into()))).await.unwrap();
    assert_eq!(ids(&refused), [9, 6, 3, 0].map(|i| made[i].id.clone()));
    let one = log.list(&f(|f| f.event_id = Some("evt_7".into()))).await.unwrap();
    assert_eq!(ids(&one), [made[7].id.clone()]);
    let recent = log.list(&Filter { since_ms: Some(made[7].time_ms), ..Filter::default() }).await.unwrap();
    assert_eq!(ids(&recent), newest_first[..3]);
    let none = log.list(&f(|f| f.route = Some("/nowhere".into()))).await.unwrap();
    assert!(none.is_empty());

    // Pages by the `before` cursor: every event once, in order.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = log.list(&Filter { limit: 3, before: before.clone(), ..Filter::default() }).await.unwrap();
        assert!(page.len() <= 3);
        seen.extend(ids(&page));
        if page.len() < 3 {
            break;
        }
        before = page.last().map(|e| e.id.clone());
    }
    assert_eq!(seen, newest_first);
    let routed =
        Filter { limit: 2, before: Some(made[8].id.clone()), route: Some("/a".into()), ..Filter::default() };
    let routed = log.list(&routed);
    assert_eq!(ids(&routed.await.unwrap()), [made[6].id.clone(), made[4].id.clone()]);

    // One event by id.
    assert_eq!(log.get(&made[2].id).await.unwrap().as_ref(), Some(&made[2]));
    assert_eq!(log.get("01ARZ3NDEKTSV4RRFFQ69G5FAV").await.unwrap(), None);

    // Captures: kept until their ttl, never served after.
    assert_eq!(log.capture(&made[4].id).await.unwrap(), Some(capture("/a?i=4")));
    assert_eq!(log.capture(&made[5].id).await.unwrap(), None, "not captured");
    let deadline =
        Deadline::new(format!("{}: the 1 ms capture expires", log.kind()), Duration::from_secs(10));
    while log.capture(&made[6].id).await.unwrap().is_some() {
        deadline.tick().await;
    }
    assert!(log.get(&made[6].id).await.unwrap().is_some(), "the event outlives its capture");

    // Last matches: per secret index, the newest time wins whatever the order appended.
    let expected: Vec<LastMatch> = {
        let mut by_index = std::collections::BTreeMap::new();
        for e in made.iter().filter(|e| e.route == "/a") {
            if let Some(i) = e.secret_index {
                let t = by_index.entry(i).or_insert(0);
                *t = e.time_ms.max(*t);
            }
        }
        by_index.into_iter().map(|(index, time_ms)| LastMatch { index, time_ms }).collect()
    };
    assert_eq!(expected.len(), 2, "the fixture matches two secrets: {expected:?}");
    assert_eq!(log.last_matches("/a").await.unwrap(), expected);
    let mut gen = Ulids::default();
    let mut older = event("/a", "forwarded", expected[0].time_ms - 5_000);
    older.id = gen.next(now_ms() + 1);
    older.secret_index = Some(expected[0].index);
    log.append(&[Entry { event: older, capture: None }]).await.unwrap();
    assert_eq!(log.last_matches("/a").await.unwrap(), expected, "an older match does not win");
    assert!(log.last_matches("/b").await.unwrap().is_empty());
}

/// `keep` bounds the events: the oldest go.
async fn keeps_at_most(log: &dyn EventLog, keep: usize) {
    let mut gen = Ulids::default();
    let mut made = Vec::new();
    for i in 0..(keep + 4) {
        let mut e = event("/k", "forwarded", now_ms());
        e.id = gen.next(now_ms());
        made.push(e.id.clone());
        log.append(&[Entry { event: e, capture: None }]).await.unwrap();
        let _ = i;
    }
    let all = log.list(&Filter { route: Some("/k".into()), limit: 1000, ..Filter::default() }).await.unwrap();
    assert!(all.len() >= keep, "{}: {} kept", log.kind(), all.len());
    assert_eq!(ids(&all)[..keep], made.iter().rev().take(keep).cloned().collect::<Vec<_>>()[..]);
    assert!(all.len() < made.len(), "{}: the oldest went", log.kind());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_log_passes_the_conformance() {
    conformance(&MemoryLog::new(100).with_max_age(WEEK)).await;
    keeps_at_most(&MemoryLog::new(3), 3).await;
}

fn temp_path(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "portcullis-evlog-{what}-{}-{}.redb",
        std::process::id(),
        rand::random::<u64>()
    ))
}

/// Opens the log at `path`, waiting while the previous holder of the file closes it.
async fn open_embedded(path: &Path, keep: usize) -> EmbeddedLog {
    let deadline = Deadline::new("the event log file is free again", Duration::from_secs(10));
    loop {
        match EmbeddedLog::open(path, keep, WEEK) {
            Ok(log) => return log,
            Err(e) if e.to_string().contains("already open") => deadline.tick().await,
            Err(e) => panic!("opening {}: {e}", path.display()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_log_passes_the_conformance_and_keeps_events_across_a_restart() {
    let path = temp_path("conformance");
    let log = open_embedded(&path, 100).await;
    conformance(&log).await;
    let before = log.list(&Filter::default()).await.unwrap();
    let last = log.last_matches("/a").await.unwrap();
    let captured = before.iter().find(|e| e.captured && e.route == "/a").map(|e| e.id.clone());
    drop(log);

    // Reopened (the lazy commits were made durable as the file closed).
    let log = open_embedded(&path, 100).await;
    assert_eq!(log.list(&Filter::default()).await.unwrap(), before, "events survive the restart");
    assert_eq!(log.last_matches("/a").await.unwrap(), last);
    let kept: Vec<_> = before.iter().filter(|e| e.captured).collect();
    assert!(!kept.is_empty() && captured.is_some());
    let mut served = 0;
    for e in kept {
        served += usize::from(log.capture(&e.id).await.unwrap().is_some());
    }
    assert_eq!(served, 1, "the hour-long capture survives, the expired one is not served");
    // A flush and a sweep on demand (the background task does them periodically).
    log.flush().await.unwrap();
    log.sweep().await.unwrap();
    assert_eq!(log.list(&Filter::default()).await.unwrap(), before, "nothing young is swept");
    drop(log);
    let _ = std::fs::remove_file(&path);

    let path = temp_path("keep");
    keeps_at_most(&open_embedded(&path, 3).await, 3).await;
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_log_sweeps_expired_captures_and_events_past_max_age() {
    let path = temp_path("sweep");
    let clock = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(now_ms()));
    let read = clock.clone();
    let log = EmbeddedLog::open_with_clock(
        &path,
        100,
        Duration::from_secs(3600),
        std::sync::Arc::new(move || read.load(std::sync::atomic::Ordering::SeqCst)),
    )
    .unwrap();
    let mut gen = Ulids::default();
    let t0 = clock.load(std::sync::atomic::Ordering::SeqCst);
    let mut e = event("/s", "forwarded", t0);
    e.id = gen.next(t0);
    let id = e.id.clone();
    log.append(&[Entry { event: e, capture: Some((capture("/s"), Duration::from_secs(60))) }]).await.unwrap();
    assert!(log.capture(&id).await.unwrap().is_some());
    clock.fetch_add(60_000, std::sync::atomic::Ordering::SeqCst);
    assert!(log.capture(&id).await.unwrap().is_none(), "expired: never served");
    log.sweep().await.unwrap();
    assert!(log.get(&id).await.unwrap().is_some(), "the event is younger than max_age");
    clock.fetch_add(3_600_000, std::sync::atomic::Ordering::SeqCst);
    assert!(log.get(&id).await.unwrap().is_none(), "past max_age: not served");
    log.sweep().await.unwrap();
    assert!(log.list(&Filter::default()).await.unwrap().is_empty());
    drop(log);
    let _ = std::fs::remove_file(&path);
}

fn redis_log(url: &str, prefix: &str, keep: usize, timeout: Duration) -> RedisLog {
    RedisLog::new(RedisPool::single(url, prefix, timeout, 0).unwrap(), keep, WEEK, timeout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_log_passes_the_conformance_and_is_shared_by_instances() {
    if !redis_or_skip("redis_log_passes_the_conformance_and_is_shared_by_instances") {
        return;
    }
    let redis = RedisServer::start();
    let log = redis_log(&redis.url(), "t1:", 100, Duration::from_secs(2));
    conformance(&log).await;
    // The cap is approximate (`MAXLEN ~` trims whole stream nodes of 100 entries) but
    // holds: a thousand appends keep about `keep`.
    let capped = redis_log(&redis.url(), "t3:", 50, Duration::from_secs(2));
    let mut gen = Ulids::default();
    for _ in 0..10 {
        let batch: Vec<Entry> = (0..100)
            .map(|_| {
                let mut e = event("/c", "forwarded", now_ms());
                e.id = gen.next(now_ms());
                Entry { event: e, capture: None }
            })
            .collect();
        capped.append(&batch).await.unwrap();
    }
    let len: usize = redis.cli(&["XLEN", "t3:{events}"]).trim().parse().unwrap();
    assert!((50..=250).contains(&len), "stream length {len}");
    let indexed: usize = redis.cli(&["HLEN", "t3:{events}:ids"]).trim().parse().unwrap();
    let order: usize = redis.cli(&["LLEN", "t3:{events}:order"]).trim().parse().unwrap();
    assert_eq!((indexed, order), (100, 100), "the id index is capped at twice keep");

    // A batch sent again (the connection's one retry after its answer was lost) is
    // appended once.
    let again = redis_log(&redis.url(), "t4:", 100, Duration::from_secs(2));
    let batch: Vec<Entry> = (0..3)
        .map(|_| {
            let mut e = event("/r", "forwarded", now_ms());
            e.id = gen.next(now_ms());
            Entry { event: e, capture: None }
        })
        .collect();
    again.append(&batch).await.unwrap();
    again.append(&batch).await.unwrap();
    assert_eq!(again.list(&Filter::default()).await.unwrap().len(), 3);

    // Two instances, one stream: each lists the other's events, and pages by stream position
    // even when their ids interleave out of order (a clock behind the other's).
    let a = redis_log(&redis.url(), "fleet:", 100, Duration::from_secs(2));
    let b = redis_log(&redis.url(), "fleet:", 100, Duration::from_secs(2));
    let (mut ga, mut gb) = (Ulids::default(), Ulids::default());
    let mut appended = Vec::new();
    for i in 0..6u64 {
        let (log, gen, skew) = if i % 2 == 0 { (&a, &mut ga, 0) } else { (&b, &mut gb, 60_000) };
        let mut e = event("/f", "forwarded", now_ms());
        e.id = gen.next(now_ms() - skew);
        appended.push(e.id.clone());
        log.append(&[Entry { event: e, capture: None }]).await.unwrap();
    }
    let newest_first: Vec<String> = appended.iter().rev().cloned().collect();
    for log in [&a, &b] {
        assert_eq!(ids(&log.list(&Filter::default()).await.unwrap()), newest_first);
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page =
                log.list(&Filter { limit: 4, before: before.clone(), ..Filter::default() }).await.unwrap();
            seen.extend(ids(&page));
            if page.len() < 4 {
                break;
            }
            before = page.last().map(|e| e.id.clone());
        }
        assert_eq!(seen, newest_first, "pages by stream position");
        for id in &appended {
            assert_eq!(log.get(id).await.unwrap().map(|e| e.id), Some(id.clone()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_log_keeps_the_stream_on_one_slot() {
    if !redis_or_skip("redis_cluster_log_keeps_the_stream_on_one_slot") {
        return;
    }
    let cluster = RedisCluster::start();
    let timeout = Duration::from_secs(2);
    let log = RedisLog::new(RedisPool::cluster(&cluster.urls(), "c:", timeout).unwrap(), 100, WEEK, timeout);
    conformance(&log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_log_that_is_down_fails_within_its_timeout() {
    if !redis_or_skip("a_redis_log_that_is_down_fails_within_its_timeout") {
        return;
    }
    let mut redis = RedisServer::start();
    let log = redis_log(&redis.url(), "down:", 100, Duration::from_millis(500));
    fill(&log).await;
    redis.kill();
    let started = Instant::now();
    assert!(log.list(&Filter::default()).await.is_err());
    assert!(log.get("01ARZ3NDEKTSV4RRFFQ69G5FAV").await.is_err());
    assert!(log.append(&[Entry { event: event("/a", "forwarded", 1), capture: None }]).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(5), "bounded: {:?}", started.elapsed());
    // Back (empty): it answers again on its own.
    redis.restart();
    let deadline = Deadline::new("the log answers after Redis is back", Duration::from_secs(10));
    while log.list(&Filter::default()).await.is_err() {
        deadline.tick().await;
    }
}

fn gateway_yaml(store: &str, upstream: &Upstream, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n  token: {TOKEN:?}\nstore:\n{store}{extra}routes:\n{}",
        route("/p", "paylent", &[SECRET], &upstream.url("/p"), "")
    )
}

async fn api(admin: std::net::SocketAddr, path: &str) -> (StatusCode, Value, Option<String>) {
    let h = vec![("authorization".to_string(), format!("Bearer {TOKEN}"))];
    let a = send(&client(), Method::GET, &format!("http://{admin}{path}"), &h, "").await;
    let retry = a.headers.get("retry-after").and_then(|v| v.to_str().ok()).map(String::from);
    (a.status, serde_json::from_str(&a.text()).unwrap_or(Value::Null), retry)
}

async fn deliver(url: &str, id: &str) {
    let b = format!(r#"{{"event":"x","event_id":"{id}"}}"#).into_bytes();
    let a = post(&client(), url, &sign("paylent", SECRET, &b, "", 0), b).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
}

/// The event keys listed by `gw`, once there are at least `n`.
async fn listed_keys(admin: std::net::SocketAddr, n: usize) -> HashSet<String> {
    let deadline = Deadline::new(format!("{n} deliveries listed"), Duration::from_secs(10));
    loop {
        let (status, v, _) = api(admin, "/api/deliveries").await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let keys: HashSet<String> = v["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["event_key"].as_str().map(String::from))
            .collect();
        if keys.len() >= n {
            return keys;
        }
        deadline.tick().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_redis_list_each_others_deliveries_and_503_when_it_is_down() {
    if !redis_or_skip("two_gateways_on_one_redis_list_each_others_deliveries_and_503_when_it_is_down") {
        return;
    }
    let mut redis = RedisServer::start();
    let up = Upstream::start().await;
    let store = format!("  kind: redis\n  url: {:?}\n  timeout: 500ms\n", redis.url());
    let yaml = gateway_yaml(&store, &up, "");
    let one = TestGateway::start(&yaml, Clock::System).await;
    let two = TestGateway::start(&yaml, Clock::System).await;
    assert_eq!(one.gateway.events.log.kind(), "redis");
    deliver(&one.url("/p"), "evt_via_one").await;
    deliver(&two.url("/p"), "evt_via_two").await;
    for gw in [&one, &two] {
        let keys = listed_keys(gw.admin, 2).await;
        assert!(keys.iter().any(|k| k.ends_with("evt_via_one")), "{keys:?}");
        assert!(keys.iter().any(|k| k.ends_with("evt_via_two")), "{keys:?}");
    }
    // One delivery by id, through the other gateway.
    let (_, v, _) = api(one.admin, "/api/deliveries?event_id=evt_via_two").await;
    let id = v["deliveries"][0]["id"].as_str().unwrap().to_string();
    let (status, v, _) = api(two.admin, &format!("/api/deliveries/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["id"], id.as_str());

    // Redis down: 503 with Retry-After, within the store timeout, not a hang.
    redis.kill();
    let started = Instant::now();
    let (status, v, retry) = api(one.admin, "/api/deliveries").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(retry.is_some(), "Retry-After");
    let (status, _, _) = api(two.admin, &format!("/api/deliveries/{id}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(5), "bounded: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_gateway_keeps_its_deliveries_across_a_restart() {
    let dir = std::env::temp_dir().join(format!(
        "portcullis-evlog-gw-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let up = Upstream::start().await;
    let store = format!("  kind: embedded\n  path: {:?}\n", dir.join("claims.redb"));
    let yaml = gateway_yaml(&store, &up, "event_log: {keep: 100, max_age: 1d}\n");
    let gw = GatewayProcess::start(&yaml);
    deliver(&gw.url("/p"), "evt_before_restart").await;
    listed_keys(gw.admin.unwrap(), 1).await;
    assert!(dir.join("claims.events.redb").exists(), "a file of its own beside the store's");
    let config = gw.config.clone();
    assert!(gw.terminate().success());

    let gw = GatewayProcess::start_file(config);
    let keys = listed_keys(gw.admin.unwrap(), 1).await;
    assert!(keys.iter().any(|k| k.ends_with("evt_before_restart")), "{keys:?}");
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_event_log_block_is_validated() {
    let load = |block: &str| {
        let yaml = format!(
            "listen: 127.0.0.1:0\n{block}routes:\n{}",
            route("/p", "paylent", &[SECRET], "http://127.0.0.1:9/p", "")
        );
        Config::from_yaml("t.yaml", &yaml, Path::new("."), &|_| None)
    };
    let c = load("").unwrap();
    assert_eq!((c.event_log.keep, c.event_log.max_age, c.event_log.enabled), (10_000, WEEK, true));
    let c = load("event_log: {keep: 5, max_age: 2h}\n").unwrap();
    assert_eq!((c.event_log.keep, c.event_log.max_age), (5, Duration::from_secs(7200)));
    let c = load("event_log: {enabled: false}\n").unwrap();
    assert!(!c.event_log.enabled);
    for (bad, says) in [
        ("event_log: {keep: 0}\n", "event_log.keep"),
        ("event_log: {max_age: 0s}\n", "event_log.max_age"),
        ("event_log: {max_age: soon}\n", "max_age"),
        ("event_log: {kept: 5}\n", "kept"),
    ] {
        let e = load(bad).unwrap_err().to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
    // A change of the block needs a restart.
    let a = load("event_log: {keep: 5}\n").unwrap();
    let b = load("event_log: {keep: 6}\n").unwrap();
    assert_eq!(a.restart_only_changes(&b), ["event_log"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_event_log_gives_the_observe_layer_no_recorder() {
    let up = Upstream::start().await;
    let yaml = gateway_yaml("  kind: memory\n", &up, "event_log: {enabled: false}\n");
    let gw = TestGateway::start(&yaml, Clock::System).await;
    assert!(!gw.gateway.recording);
    // Deliveries still flow, and none is listed.
    deliver(&gw.url("/p"), "evt_unrecorded").await;
    let (status, v, _) = api(gw.admin, "/api/deliveries").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["deliveries"].as_array().unwrap().len(), 0, "{v}");
}
