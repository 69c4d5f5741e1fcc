//! The delivery queue under faults and through its operator's eyes: per-route gauges, its own
//! error outcome, one dead-letter id everywhere, consistent stats, acknowledgements that
//! outlive a Redis outage.

use crate::util::redis::{redis_or_skip, RedisServer};
use crate::util::*;
use http::{Method, StatusCode};
use portcullis::clock::Clock;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "queue-faults-secret";

fn queued_route(path: &str, up: &Upstream, queue: &str) -> String {
    route(
        path,
        "paylent",
        &[SECRET],
        &up.url(path),
        &format!("    delivery: queued\n    timeout: 1s\n    lease: 2s\n    queue:\n{queue}"),
    )
}

fn redis_yaml(redis: &RedisServer, routes: &[String]) -> String {
    format!(
        "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nstore:\n  kind: redis\n  url: {:?}\n  timeout: 1s\nroutes:\n{}",
        redis.url(),
        routes.concat()
    )
}

async fn deliver(c: &HttpClient, url: &str, id: &str) -> Answer {
    let b = format!(r#"{{"event":"x","event_id":"{id}"}}"#).into_bytes();
    post(c, url, &sign("paylent", SECRET, &b, "", 0), b).await
}

/// Polls `done` until it holds, failing after `limit`.
async fn wait_until<F, Fut>(what: &str, limit: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_gauges_are_one_series_per_queued_route() {
    if !redis_or_skip("queue_gauges_are_one_series_per_queued_route") {
        return;
    }
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    up.set_down(true);
    let queue = "      backoff: 10s\n      max_attempts: 100\n";
    let yaml = redis_yaml(&redis, &[queued_route("/a", &up, queue), queued_route("/b", &up, queue)]);
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let c = client();
    assert_eq!(deliver(&c, &gw.url("/a"), "evt_a0").await.status, StatusCode::ACCEPTED);
    for i in 0..3 {
        assert_eq!(deliver(&c, &gw.url("/b"), &format!("evt_b{i}")).await.status, StatusCode::ACCEPTED);
    }
    wait_until("both routes' gauges", Duration::from_secs(15), || async {
        let m = gw.metrics().await;
        sample(&m, "portcullis_queue_depth{route=\"/a\"}") == 1.0
            && sample(&m, "portcullis_queue_depth{route=\"/b\"}") == 3.0
    })
    .await;
    let m = gw.metrics().await;
    assert_eq!(m.lines().filter(|l| l.starts_with("portcullis_queue_dead{")).count(), 2, "{m}");
    assert!(!m.lines().any(|l| l.starts_with("portcullis_queue_depth ")), "no unlabelled series: {m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_queue_push_is_a_queue_error_not_a_store_error() {
    if !redis_or_skip("a_failed_queue_push_is_a_queue_error_not_a_store_error") {
        return;
    }
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let yaml = redis_yaml(&redis, &[queued_route("/q", &up, "      backoff: 100ms\n")]);
    let gw = TestGateway::start(&yaml, Clock::System).await;
    // The idempotency store answers; only appending to the stream is refused.
    assert_eq!(redis.cli(&["ACL", "SETUSER", "default", "-xadd"]).trim(), "OK");
    let c = client();
    let a = deliver(&c, &gw.url("/q"), "evt_push").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    assert_eq!(a.headers["retry-after"], "5");
    let m = gw.metrics().await;
    assert_eq!(sample(&m, "portcullis_requests_total{route=\"/q\",outcome=\"queue_error\"}"), 1.0, "{m}");
    assert_eq!(sample(&m, "portcullis_requests_total{route=\"/q\",outcome=\"store_error\"}"), 0.0, "{m}");
    assert_eq!(sample(&m, "portcullis_store_errors_total"), 0.0, "{m}");
    // The claim was released: once the queue takes appends again, the provider's retry is queued.
    assert_eq!(redis.cli(&["ACL", "SETUSER", "default", "+xadd"]).trim(), "OK");
    assert_eq!(deliver(&c, &gw.url("/q"), "evt_push").await.status, StatusCode::ACCEPTED);
}

/// `portcullis serve` with JSON logs collected, and the admin address it printed.
struct LoggedGateway {
    child: Child,
    addr: String,
    admin: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl LoggedGateway {
    fn start(yaml: &str) -> LoggedGateway {
        let dir = std::env::temp_dir().join(format!("portcullis-qf-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("gateway.yaml");
        std::fs::write(&config, yaml).unwrap();
        let mut child = Command::new(bin())
            .args(["--log-format", "json", "serve", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut admin = None;
        let addr = loop {
            let line = stdout.next().expect("gateway exited before listening").unwrap();
            if let Some(a) = line.strip_prefix("admin listening on ") {
                admin = Some(format!("http://{a}"));
            }
            if let Some(a) = line.strip_prefix("listening on ") {
                break format!("http://{a}");
            }
        };
        std::thread::spawn(move || for _ in stdout {});
        let admin = admin.expect("the admin address, printed before `listening on`");
        LoggedGateway { child, addr, admin, logs }
    }

    /// The JSON log lines whose message contains `text`.
    fn events(&self, text: &str) -> Vec<serde_json::Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"].as_str().is_some_and(|m| m.contains(text)))
            .collect()
    }

    /// `portcullis queue ARGS --admin …`: exit code, stdout, stderr.
    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(bin()).args(args).args(["--admin", &self.admin]).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for LoggedGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_log_line_names_the_id_dead_list_shows_and_replay_takes() {
    if !redis_or_skip("the_dead_letter_log_line_names_the_id_dead_list_shows_and_replay_takes") {
        return;
    }
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    up.set_down(true);
    // Two attempts: the second is read from a new stream entry (a retry), so the entry id of
    // the last attempt differs from the delivery's first one.
    let queue = "      backoff: 50ms\n      max_backoff: 50ms\n      max_attempts: 2\n";
    let gw = LoggedGateway::start(&redis_yaml(&redis, &[queued_route("/q", &up, queue)]));
    let c = client();
    assert_eq!(deliver(&c, &format!("{}/q", gw.addr), "evt_dl").await.status, StatusCode::ACCEPTED);
    wait_until("the dead-letter log line", Duration::from_secs(15), || {
        let n = gw.events("dead-letter").len();
        async move { n == 1 }
    })
    .await;
    let logged = gw.events("dead-letter")[0]["id"].as_str().unwrap().to_string();
    let (code, list, err) = gw.cli(&["queue", "dead", "list", "--json"]);
    assert_eq!(code, 0, "{list}{err}");
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    let dead = v["dead_letters"].as_array().unwrap();
    assert_eq!(dead.len(), 1, "{list}");
    assert_eq!(dead[0]["id"], logged, "the log line and the list name one id");

    // An id no dead letter has: exit 1 and a reason, from the CLI; 404 from the admin API.
    let (code, out, err) = gw.cli(&["queue", "replay", "0-1"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("no dead letter with id 0-1"), "{err}");
    let a = send(&c, Method::POST, &format!("{}/queue/replay?id=0-1", gw.admin), &[], "").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text());

    // The logged id replays it.
    up.set_down(false);
    let (code, out, err) = gw.cli(&["queue", "replay", &logged, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"replayed\": 1"), "{out}");
    wait_until("the replayed delivery", Duration::from_secs(15), || {
        let n = up.delivered().len();
        async move { n == 1 }
    })
    .await;
    // Nothing left to replay is an error too.
    let (code, _, err) = gw.cli(&["queue", "replay", "--all"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no dead letters to replay"), "{err}");
}

/// The commands clients send to `redis`, as `MONITOR` shows them (not those a script runs).
struct Monitor {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Monitor {
    fn start(redis: &RedisServer) -> Monitor {
        let mut child = Command::new("redis-cli")
            .args(["-p", &redis.port.to_string(), "monitor"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-cli monitor");
        let (tx, lines) = std::sync::mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Monitor { child, lines }
    }

    /// Sends `ECHO marker` (again, until MONITOR shows it: it may attach late) and returns the
    /// clients' commands seen before it.
    fn until_marker(&self, redis: &RedisServer, marker: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            assert!(Instant::now() < deadline, "MONITOR never showed {marker}");
            redis.cli(&["ECHO", marker]);
            while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
                if line.contains(marker) {
                    return seen;
                }
                if line.contains("portcullis-marker-") {
                    continue; // a marker sent again while MONITOR attached
                }
                // "1700000000.000000 [0 127.0.0.1:5555] \"XLEN\" …"; script calls say "[0 lua]".
                if !line.contains(" lua]") && line.contains('"') {
                    seen.push(line);
                }
            }
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_stats_are_one_snapshot_never_counting_a_delivery_twice() {
    if !redis_or_skip("queue_stats_are_one_snapshot_never_counting_a_delivery_twice") {
        return;
    }
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let yaml = redis_yaml(&redis, &[queued_route("/q", &up, "      backoff: 100ms\n")]);
    let config =
        portcullis::config::Config::from_yaml("t.yaml", &yaml, std::path::Path::new("."), &|_| None).unwrap();
    // The queue alone: no workers send anything while we watch.
    let queue = portcullis::runtime::open_queue(&config).unwrap().unwrap();
    queue.ensure_group("/q").await.unwrap();
    let s = queue.stats("/q").await.unwrap();
    assert_eq!((s.depth, s.dead), (0, 0));
    // Each move between the stream, the retry set and the dead letters is one script; a
    // snapshot that is one command too can never fall between a move's halves.
    let monitor = Monitor::start(&redis);
    monitor.until_marker(&redis, "portcullis-marker-start");
    queue.stats("/q").await.unwrap();
    let sent = monitor.until_marker(&redis, "portcullis-marker-end");
    assert_eq!(sent.len(), 1, "queue stats sent {sent:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_acknowledged_while_redis_is_down_is_not_delivered_again() {
    if !redis_or_skip("a_delivery_acknowledged_while_redis_is_down_is_not_delivered_again") {
        return;
    }
    // Redis keeps the stream and its pending entries across the restart.
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let up = Upstream::start().await;
    // The upstream answers 2xx a second after it received the delivery: Redis is down by then.
    up.set_delay(Duration::from_secs(1));
    let route = route(
        "/q",
        "paylent",
        &[SECRET],
        &up.url("/q"),
        // A 5 s timeout: the acknowledgement is retried for 10 s, ample for Redis to restart.
        "    delivery: queued\n    timeout: 5s\n    lease: 10s\n    queue:\n      backoff: 100ms\n",
    );
    let gw = TestGateway::start(&redis_yaml(&redis, &[route]), Clock::System).await;
    let c = client();
    assert_eq!(deliver(&c, &gw.url("/q"), "evt_ack").await.status, StatusCode::ACCEPTED);
    wait_until("the upstream to receive the delivery", Duration::from_secs(15), || {
        let n = up.count();
        async move { n == 1 }
    })
    .await;
    redis.kill();
    // The upstream answered 200 and the acknowledgement failed at least once.
    wait_until("a failed acknowledgement", Duration::from_secs(15), || async {
        sample(&gw.metrics().await, "portcullis_queue_errors_total") >= 1.0
    })
    .await;
    redis.restart();
    // Acknowledged once Redis is back: the stream is empty only after an XACK+XDEL, which
    // (without the retry) would take the stale time and a second delivery.
    let stats = format!("http://{}/queue", gw.admin);
    wait_until("the acknowledgement", Duration::from_secs(30), || async {
        let a = send(&c, Method::GET, &stats, &[], "").await;
        let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap_or_default();
        a.status == StatusCode::OK && v[0]["depth"] == 0
    })
    .await;
    assert_eq!(up.count(), 1, "the upstream saw the delivery exactly once: {:?}", up.delivered());
    let delivered = up.delivered();
    assert!(delivered.len() == 1 && delivered.values().all(|n| *n == 1), "{delivered:?}");
}
