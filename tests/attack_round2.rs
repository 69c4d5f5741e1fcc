//! Second attack round on the integrated tree: group commit under SIGKILL and concurrent
//! claims, the native Redis claim under concurrency and a Redis restart, and a queued fan-out
//! whose broker is cut and restored.

use crate::util::amqp::{rabbit_or_skip, Proxy, Topology};
use crate::util::process::GatewayProcess;
use crate::util::redis::{redis_or_skip, RedisServer};
use crate::util::*;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use portcullis::clock::Clock;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "whsec_attack_round2";

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"event":"payment.succeeded","event_id":{id:?},"data":{{"amount":1250}}}}"#).into_bytes()
}

/// One kept-alive HTTP/1 connection (one connection worker serves it); a request fails
/// rather than panics, so a gateway killed mid-request ends the connection's loop.
struct Conn(SendRequest<Full<Bytes>>);

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        Conn(send)
    }

    async fn deliver(&mut self, path: &str, id: &str) -> Option<(StatusCode, String)> {
        self.0.ready().await.ok()?;
        let b = body(id);
        let mut req = Request::builder().method("POST").uri(path).header("host", "127.0.0.1");
        for (k, v) in sign("paylent", SECRET, &b, "", 0) {
            req = req.header(k, v);
        }
        let res = self.0.send_request(req.body(Full::new(Bytes::from(b))).unwrap()).await.ok()?;
        let status = res.status();
        let text = res.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&text).into_owned()))
    }
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "portcullis-{tag}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// 32 connections push queued (`/q`) and sync (`/s`) deliveries into the embedded store
/// while the real binary is SIGKILLed: every 202 is delivered once after the restart, and
/// every sync delivery answered 200 is a duplicate after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_32_connections_keeps_every_202_and_every_delivered_mark() {
    let (uq, us) = (Upstream::start().await, Upstream::start().await);
    uq.set_down(true);
    let dir = temp_dir("gc-kill");
    let queued = "    delivery: queued\n    timeout: 1s\n    lease: 2s\n    queue: {backoff: 50ms, max_backoff: 200ms, max_attempts: 1000}\n";
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nlimits:\n  workers: 4\nstore:\n  kind: embedded\n  path: {:?}\nroutes:\n{}{}",
        dir.join("claims.redb").display().to_string(),
        route("/q", "paylent", &[SECRET], &uq.url("/q"), queued),
        route("/s", "paylent", &[SECRET], &us.url("/s"), "")
    );
    let gw = GatewayProcess::start(&yaml);
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let delivered = Arc::new(Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..32 {
        let mut conn = Conn::open(gw.addr).await;
        let (accepted, delivered, count) = (accepted.clone(), delivered.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let (path, id) = if (c + i) % 2 == 0 {
                    ("/q", format!("evt_q_{c}_{i}"))
                } else {
                    ("/s", format!("evt_s_{c}_{i}"))
                };
                let Some((status, text)) = conn.deliver(path, &id).await else { return };
                match (path, status) {
                    ("/q", StatusCode::ACCEPTED) => accepted.lock().unwrap().push(id),
                    ("/s", StatusCode::OK) => delivered.lock().unwrap().push(id),
                    other => panic!("{id}: {other:?} {text}"),
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let d = Deadline::new("600 answers under load", PATIENCE);
    while count.load(Ordering::Relaxed) < 600 {
        d.tick().await;
    }
    gw.signal("KILL");
    let config = gw.config.clone();
    let _ = gw.wait();
    for t in tasks {
        t.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    let delivered = delivered.lock().unwrap().clone();
    assert!(accepted.len() > 100 && delivered.len() > 100, "{} {}", accepted.len(), delivered.len());
    assert!(uq.delivered().is_empty(), "nothing queued was delivered before the kill");

    uq.set_down(false);
    let gw = GatewayProcess::start_file(config);
    let want: HashSet<String> = accepted.iter().map(|id| format!("/q:{id}")).collect();
    wait_until("every 202 delivered after the restart", Duration::from_secs(60), || {
        let got = uq.delivered();
        want.iter().all(|k| got.contains_key(k))
    })
    .await;
    let d = Deadline::new("the queue to drain", Duration::from_secs(60));
    while !queue_drained(&queue_stats(gw.admin.unwrap()).await) {
        d.tick().await;
    }
    let twice: Vec<_> = uq.delivered().into_iter().filter(|(_, n)| *n != 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");

    // Every sync delivery answered 200 before the kill is a duplicate now.
    let before = us.count();
    let mut conn = Conn::open(gw.addr).await;
    for id in &delivered {
        let (status, text) = conn.deliver("/s", id).await.unwrap();
        assert_eq!((status, text.as_str()), (StatusCode::OK, r#"{"status":"duplicate"}"#), "{id}");
    }
    assert_eq!(us.count(), before, "nothing answered 200 was forwarded again");
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same event on 32 connections at once (spread over the connection workers): one
/// claim acquires, the others are in flight; then 32 more race the completion: none is
/// forwarded again.
async fn one_key_many_connections(yaml_store: &str, tag: &str) {
    let up = Upstream::start().await;
    up.hold();
    let yaml = format!(
        "listen: 127.0.0.1:0\nlimits:\n  workers: 4\nstore:\n{yaml_store}routes:\n{}",
        route("/s", "paylent", &[SECRET], &up.url("/s"), "    timeout: 20s\n")
    );
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let id = format!("evt_same_{tag}");
    let mut conns = Vec::new();
    for _ in 0..32 {
        conns.push(Conn::open(gw.addr).await);
    }
    let statuses = Arc::new(Mutex::new(HashMap::<u16, usize>::new()));
    let mut tasks = Vec::new();
    for mut c in conns.drain(..) {
        let (id, statuses) = (id.clone(), statuses.clone());
        tasks.push(tokio::spawn(async move {
            let (s, t) = c.deliver("/s", &id).await.expect("an answer");
            assert!(s == StatusCode::OK || s == StatusCode::CONFLICT, "{s} {t}");
            *statuses.lock().unwrap().entry(s.as_u16()).or_default() += 1;
        }));
    }
    wait_until("31 in-flight answers", PATIENCE, || statuses.lock().unwrap().get(&409) == Some(&31)).await;
    assert_eq!(up.count(), 1, "one claim acquired");
    // Release the held delivery while 32 more, on connections of their own, race its
    // completion.
    let racing = Arc::new(AtomicBool::new(false));
    let mut second = Vec::new();
    for _ in 0..32 {
        let mut c = Conn::open(gw.addr).await;
        let (id, racing) = (id.clone(), racing.clone());
        second.push(tokio::spawn(async move {
            while !racing.load(Ordering::Relaxed) {
                tokio::task::yield_now().await;
            }
            let (s, t) = c.deliver("/s", &id).await.expect("an answer");
            assert!(s == StatusCode::OK && t.contains("duplicate") || s == StatusCode::CONFLICT, "{s} {t}");
        }));
    }
    racing.store(true, Ordering::Relaxed);
    up.release();
    for t in second.into_iter().chain(tasks) {
        t.await.unwrap();
    }
    wait_until("the held delivery answered 200", PATIENCE, || statuses.lock().unwrap().get(&200) == Some(&1))
        .await;
    let mut c = Conn::open(gw.addr).await;
    let (s, t) = c.deliver("/s", &id).await.unwrap();
    assert_eq!((s, t.as_str()), (StatusCode::OK, r#"{"status":"duplicate"}"#));
    assert_eq!(up.count(), 1, "forwarded once in all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_on_32_connections_embedded_one_acquires_and_completion_races_claims() {
    let dir = temp_dir("gc-same");
    let store = format!("  kind: embedded\n  path: {:?}\n", dir.join("claims.redb").display().to_string());
    one_key_many_connections(&store, "embedded").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_on_32_connections_redis_one_acquires_and_completion_races_claims() {
    if !redis_or_skip("one_key_on_32_connections_redis_one_acquires_and_completion_races_claims") {
        return;
    }
    let redis = RedisServer::start();
    let store = format!("  kind: redis\n  url: {:?}\n  timeout: 2s\n", redis.url());
    one_key_many_connections(&store, "redis").await;
}

/// Redis (persisting every write) is SIGKILLed and restarted while 16 connections deliver:
/// every delivery answered 503 meanwhile is forwarded exactly once when retried, and none
/// was forwarded twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_load_forwards_each_event_once() {
    if !redis_or_skip("redis_restarted_mid_load_forwards_each_event_once") {
        return;
    }
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let up = Upstream::start().await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nlimits:\n  workers: 4\nstore:\n  kind: redis\n  url: {:?}\n  timeout: 1s\nroutes:\n{}",
        redis.url(),
        route("/s", "paylent", &[SECRET], &up.url("/s"), "    timeout: 1s\n    lease: 2s\n")
    );
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..16 {
        let mut conn = Conn::open(gw.addr).await;
        let (stop, failed, count) = (stop.clone(), failed.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("evt_r_{c}_{i}");
                let (s, t) = conn.deliver("/s", &id).await.expect("an answer");
                match s {
                    StatusCode::OK => assert!(!t.contains("duplicate"), "{id}: {t}"),
                    StatusCode::SERVICE_UNAVAILABLE => failed.lock().unwrap().push(id),
                    other => panic!("{id}: {other} {t}"),
                }
                count.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            conn
        }));
    }
    let d = Deadline::new("load before the kill", PATIENCE);
    while count.load(Ordering::Relaxed) < 300 {
        d.tick().await;
    }
    redis.kill();
    let d = Deadline::new("503s while Redis is down", PATIENCE);
    while failed.lock().unwrap().len() < 16 {
        d.tick().await;
    }
    redis.restart();
    let mark = count.load(Ordering::Relaxed);
    let d = Deadline::new("load after the restart", PATIENCE);
    while count.load(Ordering::Relaxed) < mark + 300 {
        d.tick().await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut conns = Vec::new();
    for t in tasks {
        conns.push(t.await.unwrap());
    }
    let failed = failed.lock().unwrap().clone();
    // The provider's retries of what was answered 503: in flight at most until the lease.
    let conn = &mut conns[0];
    for id in &failed {
        let d = Deadline::new(format!("{id} retried"), PATIENCE);
        loop {
            let (s, t) = conn.deliver("/s", id).await.unwrap();
            if s == StatusCode::OK {
                break;
            }
            assert_eq!(s, StatusCode::CONFLICT, "{id}: {t}");
            d.tick().await;
        }
    }
    let twice: Vec<_> = up.delivered().into_iter().filter(|(_, n)| *n != 1).collect();
    assert!(twice.is_empty(), "forwarded more than once: {twice:?}");
    for id in &failed {
        assert_eq!(up.delivered().get(&format!("/s:{id}")), Some(&1), "{id}");
    }
}

/// A queued fan-out (HTTP + RabbitMQ through a proxy) whose broker is cut while deliveries
/// are accepted, then restored: each destination receives each event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_fan_out_with_the_broker_cut_then_restored_reaches_each_destination_once() {
    if !rabbit_or_skip("queued_fan_out_with_the_broker_cut_then_restored_reaches_each_destination_once") {
        return;
    }
    let t = Topology::declare("round2").await;
    let proxy = Proxy::start().await;
    let web = Upstream::start().await;
    let dir = temp_dir("fan-cut");
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nstore: {{kind: embedded, path: {:?}}}\nroutes:\n  - path: /f\n    provider: paylent\n    secrets: [{SECRET:?}]\n    delivery: queued\n    timeout: 1s\n    lease: 2s\n    queue: {{backoff: 50ms, max_backoff: 200ms, max_attempts: 1000}}\n    destinations:\n      - name: web\n        upstream: {:?}\n      - name: mq\n        amqp: {{url: {:?}, exchange: {:?}, routing_key: {:?}}}\n",
        dir.join("claims.redb").display().to_string(),
        web.url("/w"),
        proxy.url(),
        t.exchange,
        t.routing_key
    );
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let mut conn = Conn::open(gw.addr).await;
    for i in 0..5 {
        let (s, b) = conn.deliver("/f", &format!("evt_fc_{i}")).await.unwrap();
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    }
    wait_until("five through both", PATIENCE, || web.count() == 5).await;
    proxy.cut().await;
    for i in 5..15 {
        let (s, b) = conn.deliver("/f", &format!("evt_fc_{i}")).await.unwrap();
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    }
    wait_until("the web destination has all 15", PATIENCE, || web.delivered().len() == 15).await;
    proxy.restore().await;
    let d = Deadline::new("the queue to drain", Duration::from_secs(40));
    while !queue_drained(&gw.queue_stats().await) {
        d.tick().await;
    }
    let twice: Vec<_> = web.delivered().into_iter().filter(|(_, n)| *n != 1).collect();
    assert!(twice.is_empty(), "web twice: {twice:?}");
    let got = t.take_all().await;
    let mut ids: HashMap<String, usize> = HashMap::new();
    for m in &got {
        let v: serde_json::Value = serde_json::from_slice(&m.data).unwrap();
        *ids.entry(v["event_id"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(ids.len(), 15, "{ids:?}");
    assert!(ids.values().all(|n| *n == 1), "the broker got one twice: {ids:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

const TOKEN: &str = "round2-admin-token";

/// A delivered fan-out (two HTTP upstreams and a RabbitMQ queue) is not replayed unless
/// forced; forced, every destination receives it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_replay_of_a_delivered_fan_out_sends_to_every_destination_again() {
    if !rabbit_or_skip("a_forced_replay_of_a_delivered_fan_out_sends_to_every_destination_again") {
        return;
    }
    let t = Topology::declare("round2replay").await;
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n  token: {TOKEN:?}\nroutes:\n  - path: /f\n    provider: paylent\n    secrets: [{SECRET:?}]\n    timeout: 3s\n    capture: all\n    destinations:\n      - name: a\n        upstream: {:?}\n      - name: b\n        upstream: {:?}\n      - name: mq\n        amqp: {{url: {:?}, exchange: {:?}, routing_key: {:?}}}\n",
        a.url("/a"),
        b.url("/b"),
        crate::util::amqp::url(crate::util::amqp::BROKER),
        t.exchange,
        t.routing_key
    );
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let mut conn = Conn::open(gw.addr).await;
    let (s, text) = conn.deliver("/f", "evt_replay_fan").await.unwrap();
    assert_eq!(s, StatusCode::OK, "{text}");
    assert_eq!((a.count(), b.count(), t.count().await), (1, 1, 1));
    let api = |method: http::Method, path: String, body: &'static str| {
        let admin = gw.admin;
        async move {
            let mut headers = vec![("authorization".to_string(), format!("Bearer {TOKEN}"))];
            if !body.is_empty() {
                headers.push(("content-type".into(), "application/json".into()));
            }
            let r = send(&client(), method, &format!("http://{admin}{path}"), &headers, body).await;
            (r.status, r.text())
        }
    };
    let d = Deadline::new("the delivery recorded", PATIENCE);
    let id = loop {
        let (_, l) = api(http::Method::GET, "/api/deliveries?route=/f".into(), "").await;
        let v: serde_json::Value = serde_json::from_str(&l).unwrap_or_default();
        if let Some(id) = v["deliveries"][0]["id"].as_str() {
            break id.to_owned();
        }
        d.tick().await;
    };
    let (s, v) = api(http::Method::POST, format!("/api/deliveries/{id}/replay"), "").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!((a.count(), b.count(), t.count().await), (1, 1, 1), "not forced: sent nowhere");
    let (s, v) = api(http::Method::POST, format!("/api/deliveries/{id}/replay"), r#"{"force":true}"#).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!((a.count(), b.count(), t.count().await), (2, 2, 2), "forced: sent to every destination");
    let (s, text) = conn.deliver("/f", "evt_replay_fan").await.unwrap();
    assert_eq!((s, text.as_str()), (StatusCode::OK, r#"{"status":"duplicate"}"#));
    assert_eq!((a.count(), b.count(), t.count().await), (2, 2, 2));
}

/// The Redis queue (persisting every write) SIGKILLed and restarted while 16 connections
/// push: every 202 is delivered, and the provider's retries of what was answered 503 are
/// delivered too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_queue_restarted_mid_load_delivers_every_202() {
    if !redis_or_skip("redis_queue_restarted_mid_load_delivers_every_202") {
        return;
    }
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let up = Upstream::start().await;
    let queued = "    delivery: queued\n    timeout: 1s\n    lease: 2s\n    queue: {backoff: 50ms, max_backoff: 200ms, max_attempts: 1000}\n";
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nlimits:\n  workers: 4\nstore:\n  kind: redis\n  url: {:?}\n  timeout: 1s\nroutes:\n{}",
        redis.url(),
        route("/q", "paylent", &[SECRET], &up.url("/q"), queued)
    );
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..16 {
        let mut conn = Conn::open(gw.addr).await;
        let (stop, accepted, failed, count) = (stop.clone(), accepted.clone(), failed.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("evt_rq_{c}_{i}");
                let (s, t) = conn.deliver("/q", &id).await.expect("an answer");
                match s {
                    StatusCode::ACCEPTED => accepted.lock().unwrap().push(id),
                    StatusCode::SERVICE_UNAVAILABLE => failed.lock().unwrap().push(id),
                    other => panic!("{id}: {other} {t}"),
                }
                count.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            conn
        }));
    }
    let d = Deadline::new("load before the kill", PATIENCE);
    while count.load(Ordering::Relaxed) < 300 {
        d.tick().await;
    }
    redis.kill();
    let d = Deadline::new("503s while Redis is down", PATIENCE);
    while failed.lock().unwrap().len() < 16 {
        d.tick().await;
    }
    redis.restart();
    let mark = count.load(Ordering::Relaxed);
    let d = Deadline::new("load after the restart", PATIENCE);
    while count.load(Ordering::Relaxed) < mark + 300 {
        d.tick().await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut conns = Vec::new();
    for t in tasks {
        conns.push(t.await.unwrap());
    }
    let failed = failed.lock().unwrap().clone();
    let mut accepted = accepted.lock().unwrap().clone();
    let conn = &mut conns[0];
    for id in &failed {
        let (s, t) = conn.deliver("/q", id).await.unwrap();
        assert!(s == StatusCode::ACCEPTED || t.contains("duplicate"), "{id}: {s} {t}");
        accepted.push(id.clone());
    }
    let want: HashSet<String> = accepted.iter().map(|id| format!("/q:{id}")).collect();
    wait_until("every 202 delivered", Duration::from_secs(60), || {
        let got = up.delivered();
        want.iter().all(|k| got.contains_key(k))
    })
    .await;
    let d = Deadline::new("the queue to drain", Duration::from_secs(60));
    while !queue_drained(&gw.queue_stats().await) {
        d.tick().await;
    }
    let twice: Vec<_> = up.delivered().into_iter().filter(|(_, n)| *n != 1).collect();
    eprintln!(
        "redis queue restart: {} accepted, {} answered 503, delivered more than once: {twice:?}",
        accepted.len(),
        failed.len()
    );
    assert!(twice.iter().all(|(_, n)| *n <= 2), "{twice:?}");
}

/// A TCP proxy in front of a Redis server that, once armed with a command name, lets the
/// next request holding it reach Redis and then drops that connection instead of passing
/// the reply on: a command whose answer is lost with the connection.
struct ReplyDropper {
    addr: SocketAddr,
    /// Set: the reply is held this long and then passed on (a late reply), not dropped.
    delay: Arc<Mutex<Option<Duration>>>,
    armed: Arc<Mutex<Option<&'static [u8]>>>,
    dropped: Arc<AtomicUsize>,
}

impl ReplyDropper {
    async fn start(target: String) -> ReplyDropper {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let armed: Arc<Mutex<Option<&'static [u8]>>> = Arc::default();
        let dropped = Arc::new(AtomicUsize::new(0));
        let delay: Arc<Mutex<Option<Duration>>> = Arc::default();
        let (a, d, l) = (armed.clone(), dropped.clone(), delay.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (armed, dropped, target, delay) = (a.clone(), d.clone(), target.clone(), l.clone());
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(server) = tokio::net::TcpStream::connect(&target).await else { return };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let cut = Arc::new(AtomicBool::new(false));
                    let c2 = cut.clone();
                    let up = async move {
                        let mut buf = vec![0u8; 65536];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            {
                                let mut a = armed.lock().unwrap();
                                if let Some(word) = *a {
                                    if buf[..n].windows(word.len()).any(|w| w.eq_ignore_ascii_case(word)) {
                                        *a = None;
                                        c2.store(true, Ordering::SeqCst);
                                    }
                                }
                            }
                            if sw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let down = async move {
                        let mut buf = vec![0u8; 65536];
                        loop {
                            let n = match sr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if cut.load(Ordering::SeqCst) {
                                dropped.fetch_add(1, Ordering::SeqCst);
                                let late = *delay.lock().unwrap();
                                match late {
                                    Some(d) => {
                                        cut.store(false, Ordering::SeqCst);
                                        tokio::time::sleep(d).await;
                                    }
                                    None => return, // the reply is lost, and the connection with it
                                }
                            }
                            if cw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    tokio::select! { _ = up => {}, _ = down => {} }
                });
            }
        });
        ReplyDropper { addr, delay, armed, dropped }
    }

    fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    fn arm(&self, word: &'static [u8]) {
        *self.armed.lock().unwrap() = Some(word);
    }
}

/// A claim whose reply is lost with the connection is sent again and finds its own token:
/// acquired, not in flight for itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_reply_is_lost_is_acquired_on_its_retry() {
    if !redis_or_skip("a_claim_whose_reply_is_lost_is_acquired_on_its_retry") {
        return;
    }
    use portcullis::idempotency::{redis::RedisStore, Claim, Token};
    let redis = RedisServer::start();
    let proxy = ReplyDropper::start(redis.addr()).await;
    let store = RedisStore::single(&proxy.url(), "t:", Duration::from_secs(2), 1).unwrap();
    let lease = Duration::from_secs(30);
    assert_eq!(store.claim_as("warm", Token(1), lease).await.unwrap(), Claim::Acquired(Token(1)));
    proxy.arm(b"SET");
    assert_eq!(store.claim_as("k", Token(2), lease).await.unwrap(), Claim::Acquired(Token(2)));
    assert_eq!(proxy.dropped.load(Ordering::SeqCst), 1, "the first reply was dropped");
}

/// The embedded queue's worker, asleep until a retry due in 10 s, wakes for a new push at
/// once: a fresh delivery is not held behind the sleeping retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_wakes_the_embedded_queue_worker_sleeping_until_a_later_retry() {
    let up = Upstream::start().await;
    up.script(&[503]);
    let dir = temp_dir("gc-wake");
    let queued = "    delivery: queued\n    timeout: 1s\n    lease: 2s\n    queue: {backoff: 10s, max_backoff: 10s, max_attempts: 5, concurrency: 1}\n";
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nstore:\n  kind: embedded\n  path: {:?}\nroutes:\n{}",
        dir.join("claims.redb").display().to_string(),
        route("/q", "paylent", &[SECRET], &up.url("/q"), queued)
    );
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let mut conn = Conn::open(gw.addr).await;
    assert_eq!(conn.deliver("/q", "evt_wake_1").await.unwrap().0, StatusCode::ACCEPTED);
    wait_until("the first attempt failed", PATIENCE, || up.count() == 1).await;
    let sent = std::time::Instant::now();
    assert_eq!(conn.deliver("/q", "evt_wake_2").await.unwrap().0, StatusCode::ACCEPTED);
    wait_until("the second delivered", PATIENCE, || up.delivered().contains_key("/q:evt_wake_2")).await;
    assert!(sent.elapsed() < Duration::from_secs(5), "held behind the retry: {:?}", sent.elapsed());
    assert!(!up.delivered().contains_key("/q:evt_wake_1"), "the retry is not due yet");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A queued fan-out whose broker is cut: the HTTP destination accepts, the gateway is
/// SIGKILLed while it retries the broker, the broker comes back and the gateway restarts.
/// The HTTP destination is not sent the events again: which destinations accepted was
/// recorded with the retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_fan_out_killed_while_retrying_the_broker_does_not_resend_to_the_others() {
    if !rabbit_or_skip("queued_fan_out_killed_while_retrying_the_broker_does_not_resend_to_the_others") {
        return;
    }
    let t = Topology::declare("round2kill").await;
    let proxy = Proxy::start().await;
    proxy.cut().await;
    let web = Upstream::start().await;
    let dir = temp_dir("fan-kill");
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nstore: {{kind: embedded, path: {:?}}}\nroutes:\n  - path: /f\n    provider: paylent\n    secrets: [{SECRET:?}]\n    delivery: queued\n    timeout: 1s\n    lease: 2s\n    queue: {{backoff: 50ms, max_backoff: 200ms, max_attempts: 1000}}\n    destinations:\n      - name: web\n        upstream: {:?}\n      - name: mq\n        amqp: {{url: {:?}, exchange: {:?}, routing_key: {:?}}}\n",
        dir.join("claims.redb").display().to_string(),
        web.url("/w"),
        proxy.url(),
        t.exchange,
        t.routing_key
    );
    let gw = GatewayProcess::start(&yaml);
    let mut conn = Conn::open(gw.addr).await;
    for i in 0..5 {
        let (s, b) = conn.deliver("/f", &format!("evt_fk_{i}")).await.unwrap();
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    }
    wait_until("the web destination has all 5", PATIENCE, || web.delivered().len() == 5).await;
    // Each has failed at the broker and waits for its retry, recorded with what accepted.
    let d = Deadline::new("all five waiting to retry", PATIENCE);
    while queue_stats(gw.admin.unwrap()).await[0]["in_retry"] != 5 {
        d.tick().await;
    }
    gw.signal("KILL");
    let config = gw.config.clone();
    let _ = gw.wait();
    proxy.restore().await;
    let gw = GatewayProcess::start_file(config);
    let d = Deadline::new("the broker has all 5", Duration::from_secs(40));
    while t.count().await < 5 {
        d.tick().await;
    }
    let d = Deadline::new("the queue to drain", Duration::from_secs(40));
    while !queue_drained(&queue_stats(gw.admin.unwrap()).await) {
        d.tick().await;
    }
    assert_eq!(t.count().await, 5);
    assert!(web.delivered().values().all(|n| *n == 1), "{:?}", web.delivered());
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Regression (second attack round): a queued push whose reply is lost (the connection's one
/// retry sends it again) or comes after `store.timeout` (answered 503, the provider retries)
/// was appended twice, and the upstream got the event twice. The push is once per event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_push_whose_reply_is_lost_or_late_is_delivered_once() {
    if !redis_or_skip("a_queued_push_whose_reply_is_lost_or_late_is_delivered_once") {
        return;
    }
    for (late, id) in [(None, "evt_push_lost"), (Some(Duration::from_millis(1500)), "evt_push_late")] {
        let redis = RedisServer::start();
        let proxy = ReplyDropper::start(redis.addr()).await;
        *proxy.delay.lock().unwrap() = late;
        let up = Upstream::start().await;
        let queued = "    delivery: queued\n    timeout: 1s\n    lease: 2s\n    queue: {backoff: 50ms, max_backoff: 200ms, max_attempts: 1000}\n";
        let yaml = format!(
            "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nstore:\n  kind: redis\n  url: {:?}\n  timeout: 1s\nroutes:\n{}",
            proxy.url(),
            route("/q", "paylent", &[SECRET], &up.url("/q"), queued)
        );
        let gw = TestGateway::start(&yaml, Clock::System).await;
        let mut conn = Conn::open(gw.addr).await;
        assert_eq!(conn.deliver("/q", "evt_warm").await.unwrap().0, StatusCode::ACCEPTED);
        wait_until("the warm-up delivered", PATIENCE, || up.delivered().len() == 1).await;
        // The push carries the body, where the id is quoted; the claim's key does not.
        proxy.arm(if late.is_some() { b"\"evt_push_late\"" } else { b"\"evt_push_lost\"" });
        let first = conn.deliver("/q", id).await;
        assert_eq!(
            proxy.dropped.load(Ordering::SeqCst),
            1,
            "{id}: the push's reply was held back: {first:?}"
        );
        // The provider retries until it is told the event is held (202) or a duplicate.
        let d = Deadline::new("the provider's retry accepted", PATIENCE);
        loop {
            let mut c = Conn::open(gw.addr).await;
            let (s, _) = c.deliver("/q", id).await.unwrap();
            if s.is_success() {
                break;
            }
            d.tick().await;
        }
        let key = format!("/q:{id}");
        wait_until("delivered", PATIENCE, || up.delivered().contains_key(&key)).await;
        let d = Deadline::new("the queue to drain", PATIENCE);
        while !queue_drained(&gw.queue_stats().await) {
            d.tick().await;
        }
        assert_eq!(up.delivered()[&key], 1, "{id}: {:?}", up.delivered());
    }
}
