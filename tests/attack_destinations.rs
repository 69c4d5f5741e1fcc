//! Attacks on issue 17's destinations from outside: exactly-once per destination under
//! concurrent retries, forged broker headers, silent brokers (bounded, nothing leaked),
//! credentials never shown, `when:` edge cases and configuration refusals.

use crate::util::amqp::{rabbit_or_skip, Topology};
use crate::util::nats::{nats_or_skip, TestStream, SHARED};
use crate::util::*;
use http::{Method, StatusCode};
use portcullis::clock::Clock;
use portcullis::config::Config;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

const SECRET: &str = "attack-dest-secret";
const TOKEN: &str = "token-attack-dest-aaaaaaaa";

/// A gateway with the admin API and one route `/a` (`timeout`) sending to `dests` (YAML list
/// items at the route's `destinations:` indentation).
async fn gateway(timeout: &str, dests: &str, extra: &str) -> TestGateway {
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n  token: {TOKEN:?}\nroutes:\n  - path: /a\n    provider: paylent\n    secrets: [{SECRET:?}]\n    timeout: {timeout}\n    capture: all\n    destinations:\n{dests}{extra}"
    );
    TestGateway::start(&yaml, Clock::System).await
}

fn body(id: &str, kind: &str) -> Vec<u8> {
    format!(r#"{{"event_id":"{id}","type":"{kind}","amount":12}}"#).into_bytes()
}

async fn deliver_raw(c: &HttpClient, gw: &TestGateway, b: Vec<u8>, extra: &[(&str, &str)]) -> Answer {
    let mut h = sign("paylent", SECRET, &b, "", 0);
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    post(c, &gw.url("/a"), &h, b).await
}

async fn deliver(c: &HttpClient, gw: &TestGateway, id: &str, extra: &[(&str, &str)]) -> Answer {
    deliver_raw(c, gw, body(id, "payment.succeeded"), extra).await
}

async fn api(gw: &TestGateway, method: Method, path: &str, body: &str) -> (StatusCode, String) {
    let mut headers = vec![("authorization".to_string(), format!("Bearer {TOKEN}"))];
    if !body.is_empty() {
        headers.push(("content-type".into(), "application/json".into()));
    }
    let a = send(&client(), method, &format!("http://{}{path}", gw.admin), &headers, body.to_string()).await;
    (a.status, a.text())
}

fn http_dest(name: &str, up: &Upstream, path: &str) -> String {
    format!("      - name: {name}\n        upstream: {:?}\n", up.url(path))
}

// ---------------------------------------------------------------------------------------
// Exactly once per destination

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_failure_then_concurrent_retries_deliver_once_per_destination() {
    let (good, flaky) = (Upstream::start().await, Upstream::start().await);
    let gw = gateway("3s", &(http_dest("good", &good, "/g") + &http_dest("flaky", &flaky, "/f")), "").await;
    let c = client();
    flaky.script(&[500]);
    let first = deliver(&c, &gw, "evt_partial", &[]).await;
    assert_eq!(first.status, StatusCode::BAD_GATEWAY, "{}", first.text());
    assert_eq!((good.count(), flaky.count()), (1, 1));
    // The provider retries several times at once: one wins the claim, the others are told
    // to wait (409) or see a duplicate; `good` is never sent it again.
    let retries = (0..8).map(|_| deliver(&c, &gw, "evt_partial", &[]));
    let answers = futures_util::future::join_all(retries).await;
    let ok = answers.iter().filter(|a| a.status == StatusCode::OK).count();
    assert!(ok >= 1, "{:?}", answers.iter().map(|a| a.status).collect::<Vec<_>>());
    for a in &answers {
        assert!(matches!(a.status, StatusCode::OK | StatusCode::CONFLICT), "{} {}", a.status, a.text());
    }
    assert_eq!(good.count(), 1, "the destination that accepted first is never sent it again");
    assert_eq!(flaky.count(), 2, "the failed destination: its failure, then once more");
    // And afterwards a duplicate.
    let again = deliver(&c, &gw, "evt_partial", &[]).await;
    assert!(again.text().contains("duplicate"), "{}", again.text());
    assert_eq!(good.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_on_two_connections_at_once_reaches_each_destination_once() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    a.set_delay(Duration::from_millis(300));
    let gw = gateway("3s", &(http_dest("a", &a, "/a") + &http_dest("b", &b, "/b")), "").await;
    // Two clients: two connections.
    let (c1, c2) = (client(), client());
    let (r1, r2) = tokio::join!(deliver(&c1, &gw, "evt_twice", &[]), deliver(&c2, &gw, "evt_twice", &[]));
    let statuses = [r1.status, r2.status];
    assert!(statuses.contains(&StatusCode::OK), "{statuses:?}");
    assert_eq!((a.count(), b.count()), (1, 1), "{statuses:?}");
}

// ---------------------------------------------------------------------------------------
// Forged headers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_nats_msg_id_neither_poisons_dedupe_nor_reaches_jetstream() {
    if !nats_or_skip("a_forged_nats_msg_id_neither_poisons_dedupe_nor_reaches_jetstream") {
        return;
    }
    let stream = TestStream::create(SHARED, "atk_forged").await;
    let dest = format!(
        "      - name: bus\n        nats: {{url: {SHARED:?}, subject: {:?}, headers: true}}\n",
        stream.subject
    );
    let gw = gateway("3s", &dest, "").await;
    let c = client();
    let forged = [
        ("Nats-Msg-Id", "poison"),
        ("Nats_Msg_Id", "poison2"),
        ("Nats-Rollup", "all"),
        ("Nats-Expected-Stream", "elsewhere"),
        ("Portcullis-Provider", "forged"),
        ("Portcullis-Idempotency-Key", "forged"),
        ("Portcullis_Event_Id", "forged"),
        ("X-Custom", "kept"),
    ];
    for id in ["evt_f1", "evt_f2", "evt_f3"] {
        let r = deliver(&c, &gw, id, &forged).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    // Three events with one forged Nats-Msg-Id: three messages (no dedupe poisoning, no
    // rollup purging the stream).
    assert_eq!(stream.count().await, 3);
    for (m, id) in stream.read_all().await.iter().zip(["evt_f1", "evt_f2", "evt_f3"]) {
        let h = m.headers.as_ref().expect("headers");
        let one = |n: &str| h.get_all(n).map(|v| v.as_str().to_owned()).collect::<Vec<_>>();
        assert_eq!(one("Nats-Msg-Id"), [format!("/a:{id}")]);
        assert_eq!(one("Portcullis-Provider"), ["paylent"]);
        assert_eq!(one("Portcullis-Idempotency-Key"), [format!("/a:{id}")]);
        assert_eq!(one("Portcullis-Event-Id"), [id.to_string()]);
        for n in ["Nats-Rollup", "nats-rollup", "Nats-Expected-Stream", "nats-expected-stream", "nats_msg_id"]
        {
            assert!(h.get(n).is_none(), "{n} reached JetStream");
        }
        assert_eq!(one("x-custom"), ["kept"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_gateway_headers_never_reach_amqp() {
    if !rabbit_or_skip("forged_gateway_headers_never_reach_amqp") {
        return;
    }
    let t = Topology::declare("atk_forged").await;
    let dest = format!(
        "      - name: rabbit\n        amqp: {{url: {:?}, exchange: {:?}, routing_key: {:?}}}\n",
        crate::util::amqp::url(crate::util::amqp::BROKER),
        t.exchange,
        t.routing_key
    );
    let gw = gateway("3s", &dest, "").await;
    let c = client();
    let forged =
        [("Portcullis-Provider", "forged"), ("portcullis_idempotency_key", "forged"), ("X-Custom", "kept")];
    let r = deliver(&c, &gw, "evt_af1", &forged).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let all = t.take_all().await;
    assert_eq!(all.len(), 1);
    let p = &all[0].properties;
    assert_eq!(p.message_id().as_ref().map(|s| s.as_str()), Some("/a:evt_af1"));
    let h = p.headers().as_ref().expect("headers").inner();
    let text = |k: &str| match h.get(k) {
        Some(lapin::types::AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(text("portcullis-provider"), "paylent");
    assert_eq!(text("portcullis-idempotency-key"), "/a:evt_af1");
    assert_eq!(text("x-custom"), "kept");
    assert!(!h.contains_key("portcullis_idempotency_key"));
    assert_eq!(all[0].data, body("evt_af1", "payment.succeeded"));
}

// ---------------------------------------------------------------------------------------
// Silent brokers: bounded answers, nothing leaked

/// A TCP server that accepts, reads and never writes; counts the connections still open
/// (a connection the gateway leaks stays open here).
async fn silent() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let open = Arc::new(AtomicUsize::new(0));
    let o = open.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let o = o.clone();
            o.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, open, task)
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

/// 200 deliveries (20 at a time) to a route whose only destination is a silent broker: each
/// answered 503 + Retry-After within the route's timeout (1 s) and the gateway's bound; with
/// `no_leak`, afterwards the silent broker holds no connection (the fds and threads of the
/// process are printed: other tests share them, so they are not asserted).
async fn hammer_silent(kind: &str, dest: String, open: &AtomicUsize, no_leak: bool) {
    let gw = gateway("1s", &dest, "").await;
    // The first delivery makes the gateway's lazily made parts; its client is then dropped.
    let _ = deliver(&client(), &gw, "evt_warm", &[]).await;
    wait_until("the warm-up connection gone", PATIENCE, || open.load(Ordering::SeqCst) == 0 || !no_leak)
        .await;
    let (before, tasks) = (fds(), threads());
    let c = client();
    let mut n = 0;
    for round in 0..10 {
        let batch = (0..20).map(|i| {
            let c = c.clone();
            let gw = &gw;
            async move {
                let started = Instant::now();
                let r = deliver(&c, gw, &format!("evt_silent_{round}_{i}"), &[]).await;
                (r, started.elapsed())
            }
        });
        for (r, took) in futures_util::future::join_all(batch).await {
            n += 1;
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{kind}: {}", r.text());
            assert!(r.headers.contains_key("retry-after"), "{kind}: no Retry-After");
            // The route's timeout (1 s) and the gateway's own 1 s bound, with room for a
            // busy machine: never the connect timeout per waiter in turn.
            assert!(took < Duration::from_secs(4), "{kind}: an answer took {took:?}");
        }
    }
    assert_eq!(n, 200);
    // The client's keep-alive connections to the gateway (and the gateway's ends) go too.
    drop(c);
    eprintln!(
        "{kind}: after 200 attempts: {} connections open at the silent broker; fds {before} -> {}; threads {tasks} -> {}",
        open.load(Ordering::SeqCst),
        fds(),
        threads()
    );
    if no_leak {
        wait_until(&format!("{kind}: no connection left at the silent broker"), PATIENCE, || {
            open.load(Ordering::SeqCst) == 0
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_nats_server_is_503_within_the_timeout_and_leaks_nothing() {
    let (addr, open, task) = silent().await;
    let dest = format!("      - name: bus\n        nats: {{url: \"nats://{addr}\", subject: s.x}}\n");
    hammer_silent("nats", dest, &open, true).await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_amqp_broker_is_503_within_the_timeout() {
    let (addr, open, task) = silent().await;
    let dest = format!(
        "      - name: rabbit\n        amqp: {{url: \"amqp://guest:guest@{addr}/%2f\", exchange: x, routing_key: k}}\n"
    );
    hammer_silent("amqp", dest, &open, false).await;
    task.abort();
}

// ---------------------------------------------------------------------------------------
// Credentials never shown

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_passwords_stay_out_of_the_console_and_answers() {
    // Nothing listens on these ports: every delivery fails, and says why.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dests = format!(
        "      - name: bus\n        nats: {{url: \"nats://alice:natspw-hunter2@127.0.0.1:{closed}\", subject: s.x}}\n      - name: rabbit\n        amqp: {{url: \"amqp://bob:amqppw-hunter3@127.0.0.1:{closed}/%2f\", exchange: x, routing_key: k}}\n"
    );
    let gw = gateway("1s", &dests, "").await;
    let c = client();
    let r = deliver(&c, &gw, "evt_pw", &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    let mut seen = vec![r.text()];
    let (_, routes) = api(&gw, Method::GET, "/api/routes", "").await;
    assert!(routes.contains("alice") || routes.contains("127.0.0.1"), "{routes}");
    seen.push(routes);
    let deadline = Deadline::new("the delivery recorded", PATIENCE);
    let list = loop {
        let (_, l) = api(&gw, Method::GET, "/api/deliveries?route=/a", "").await;
        if l.contains("destination") || l.contains("\"id\"") {
            break l;
        }
        deadline.tick().await;
    };
    let v: Value = serde_json::from_str(&list).unwrap();
    let id = v["deliveries"][0]["id"].as_str().expect("an id").to_owned();
    let (_, detail) = api(&gw, Method::GET, &format!("/api/deliveries/{id}"), "").await;
    assert!(detail.contains("not connected") || detail.contains("connect"), "{detail}");
    seen.push(detail);
    seen.push(gw.metrics().await);
    for text in &seen {
        for pw in ["natspw-hunter2", "amqppw-hunter3"] {
            assert!(!text.contains(pw), "{pw} shown: {text}");
        }
    }
}

#[test]
fn check_never_prints_broker_passwords() {
    let dir = std::env::temp_dir().join(format!("portcullis-attack-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gw.yaml");
    let yaml = format!(
        "listen: 127.0.0.1:0\nroutes:\n  - path: /a\n    provider: paylent\n    secrets: [{SECRET:?}]\n    timeout: 1s\n    destinations:\n      - name: bus\n        nats: {{url: \"nats://alice:natspw-hunter2@127.0.0.1:1\", subject: s.x}}\n      - name: rabbit\n        amqp: {{url: \"amqp://bob:amqppw-hunter3@127.0.0.1:1/%2f\", exchange: x, routing_key: k}}\n"
    );
    std::fs::write(&path, yaml).unwrap();
    for args in [vec!["check", "-c"], vec!["check", "--connect", "-c"]] {
        let out = std::process::Command::new(bin()).args(&args).arg(&path).output().unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("bus") && text.contains("rabbit"), "{args:?}: {text}");
        for pw in ["natspw-hunter2", "amqppw-hunter3"] {
            assert!(!text.contains(pw), "{args:?}: {pw} shown: {text}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// Filters

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_filters_fail_closed_on_odd_bodies() {
    let (pay, all) = (Upstream::start().await, Upstream::start().await);
    let dests = format!(
        "{}        when: {{pointer: /type, in: [payment.succeeded, 12]}}\n{}",
        http_dest("pay", &pay, "/p"),
        http_dest("all", &all, "/all")
    );
    let gw = gateway("3s", &dests, "").await;
    let c = client();
    let cases: [(&str, Vec<u8>, bool); 7] = [
        ("plain", body("evt_q1", "payment.succeeded"), true),
        ("escaped", br#"{"event_id":"evt_q2","type":"\u0070ayment.succeeded"}"#.to_vec(), true),
        ("missing pointer", br#"{"event_id":"evt_q3"}"#.to_vec(), false),
        ("object at pointer", br#"{"event_id":"evt_q4","type":{"a":"payment.succeeded"}}"#.to_vec(), false),
        // Two `type`s: which one a consumer reads is the parser's choice, so neither.
        (
            "duplicate key",
            br#"{"event_id":"evt_q5","type":"refund.created","type":"payment.succeeded"}"#.to_vec(),
            false,
        ),
        ("number", br#"{"event_id":"evt_q6","type":12}"#.to_vec(), true),
        (
            "unicode",
            "{\"event_id\":\"evt_q7\",\"type\":\"payment.succeeded\u{200b}\"}".as_bytes().to_vec(),
            false,
        ),
    ];
    for (what, b, wanted) in cases {
        let before = pay.count();
        let r = deliver_raw(&c, &gw, b, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{what}: {}", r.text());
        assert_eq!(pay.count() - before, usize::from(wanted), "{what}: {}", r.text());
    }
    assert_eq!(all.count(), 7, "the unfiltered destination takes every one");
    // A big body whose pointer is at its end.
    let pad = "x".repeat(600_000);
    let big = format!(r#"{{"event_id":"evt_q8","pad":"{pad}","type":"payment.succeeded"}}"#).into_bytes();
    let r = deliver_raw(&c, &gw, big.clone(), &[]).await;
    if r.status == StatusCode::OK {
        assert_eq!(pay.seen().last().unwrap().body, big, "byte-identical");
    } else {
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_no_destination_wants_is_filtered_and_its_retry_is_a_duplicate() {
    let pay = Upstream::start().await;
    let dests = format!(
        "{}        when: {{pointer: /type, in: [payment.succeeded]}}\n",
        http_dest("pay", &pay, "/p")
    );
    let gw = gateway("3s", &dests, "").await;
    let c = client();
    let b = br#"{"event_id":"evt_nj","type":"other"}"#.to_vec();
    let r = deliver_raw(&c, &gw, b.clone(), &[]).await;
    assert_eq!((r.status, r.text().contains("filtered")), (StatusCode::OK, true), "{}", r.text());
    let r = deliver_raw(&c, &gw, b, &[]).await;
    assert!(r.text().contains("duplicate"), "{}", r.text());
    assert_eq!(pay.count(), 0);
}

// ---------------------------------------------------------------------------------------
// Configuration

fn refused(dests: &str) -> String {
    let yaml = format!(
        "listen: 127.0.0.1:0\nroutes:\n  - path: /p\n    provider: paylent\n    secrets: [a]\n    destinations:\n{dests}"
    );
    Config::from_yaml("gw.yaml", &yaml, std::path::Path::new("."), &|_| None).expect_err(dests).to_string()
}

#[test]
fn unknown_keys_and_duplicates_are_refused_in_every_new_block() {
    let cases = [
        ("      - {name: a, upstream: 'http://h/', colour: red}\n", "colour"),
        ("      - {name: a, nats: {url: 'nats://h', subject: s, stream: x}}\n", "stream"),
        (
            "      - {name: a, amqp: {url: 'amqp://h', exchange: x, routing_key: k, durable: true}}\n",
            "durable",
        ),
        ("      - {name: a, upstream: 'http://h/', when: {pointer: /t, in: [x], not_in: [y]}}\n", "not_in"),
        ("      - {name: a, upstream: 'https://h/', upstream_tls: {ca: x.pem}}\n", "ca"),
        ("      - {name: a, upstream: 'http://h/'}\n      - {name: a, upstream: 'http://i/'}\n", "'a'"),
        ("      - {name: a, upstream: 'http://h/', upstream_tls: {server_name: h}}\n", "upstream_tls"),
        ("      - {name: 'a:b', upstream: 'http://h/'}\n", "name"),
        ("      - {name: a, nats: {url: 'nats://h', subject: 'a.>'}}\n", "wildcard"),
        ("      - {name: a, nats: {url: 'http://h', subject: s}}\n", "nats.url"),
        ("      - {name: a, amqp: {url: 'nats://h', exchange: x, routing_key: k}}\n", "amqp.url"),
    ];
    for (dests, says) in cases {
        let e = refused(dests);
        assert!(e.contains(says), "{dests}: {e}");
    }
    // The password of a refused URL is not in the error either.
    let e = refused("      - {name: a, nats: {url: 'http://u:pw-hunter9@h', subject: s}}\n");
    assert!(!e.contains("pw-hunter9"), "{e}");
}

// ---------------------------------------------------------------------------------------
// Replay of a fan-out delivery

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_a_partially_failed_fan_out_sends_only_to_the_one_that_failed() {
    let (good, flaky) = (Upstream::start().await, Upstream::start().await);
    let gw = gateway("3s", &(http_dest("good", &good, "/g") + &http_dest("flaky", &flaky, "/f")), "").await;
    let c = client();
    flaky.script(&[500]);
    assert_eq!(deliver(&c, &gw, "evt_rp", &[]).await.status, StatusCode::BAD_GATEWAY);
    let deadline = Deadline::new("the delivery recorded", PATIENCE);
    let id = loop {
        let (_, l) = api(&gw, Method::GET, "/api/deliveries?route=/a", "").await;
        let v: Value = serde_json::from_str(&l).unwrap_or_default();
        if let Some(id) = v["deliveries"][0]["id"].as_str() {
            break id.to_owned();
        }
        deadline.tick().await;
    };
    let (status, v) = api(&gw, Method::POST, &format!("/api/deliveries/{id}/replay"), "").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!((good.count(), flaky.count()), (1, 2), "the replay reached only the failed one");
}

/// RabbitMQ routes copies by `CC`/`BCC` headers (sender-selected distribution): a sender's
/// `CC` header reaches the broker as a string, which it neither follows nor refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_cc_header_neither_reroutes_nor_breaks_amqp() {
    if !rabbit_or_skip("a_sender_cc_header_neither_reroutes_nor_breaks_amqp") {
        return;
    }
    let t = Topology::declare("atk_cc").await;
    let dest = format!(
        "      - name: rabbit\n        amqp: {{url: {:?}, exchange: {:?}, routing_key: {:?}}}\n",
        crate::util::amqp::url(crate::util::amqp::BROKER),
        t.exchange,
        t.routing_key
    );
    let gw = gateway("3s", &dest, "").await;
    let r = deliver(&client(), &gw, "evt_cc", &[("CC", "elsewhere")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(t.take_all().await.len(), 1);
}

/// `portcullis serve` logging at `trace` (every crate): deliveries to brokers that refuse the
/// credentials, to one that takes them and to nothing at all; no password in its output.

#[test]
fn broker_passwords_stay_out_of_the_logs_even_at_trace() {
    assert!(nats_or_skip("broker_passwords_stay_out_of_the_logs_even_at_trace"));
    assert!(rabbit_or_skip("broker_passwords_stay_out_of_the_logs_even_at_trace"));
    use std::io::{BufRead, BufReader};
    let dir = std::env::temp_dir().join(format!(
        "portcullis-attack-logs-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gw.yaml");
    let yaml = format!(
        "listen: 127.0.0.1:0\nroutes:\n  - path: /a\n    provider: paylent\n    secrets: [{SECRET:?}]\n    timeout: 2s\n    destinations:\n      - name: natsok\n        nats: {{url: \"nats://alice:natspw-hunter6@127.0.0.1:4222\", subject: attack.nostream.x}}\n      - name: natsdown\n        nats: {{url: \"nats://alice:natspw-hunter7@127.0.0.1:1\", subject: s.x}}\n      - name: rabbitbad\n        amqp: {{url: \"amqp://guest:amqppw-hunter8@127.0.0.1:5672/%2f\", exchange: x, routing_key: k}}\n      - name: rabbitdown\n        amqp: {{url: \"amqp://guest:amqppw-hunter9@127.0.0.1:1/%2f\", exchange: x, routing_key: k}}\n"
    );
    std::fs::write(&config, yaml).unwrap();
    let log = dir.join("stderr.log");
    let mut child = std::process::Command::new(bin())
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "trace")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = String::new();
    let addr = loop {
        let line = lines.next().expect("gateway exited before listening").unwrap();
        out.push_str(&line);
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.to_string();
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let statuses: Vec<StatusCode> = rt.block_on(async {
        let c = client();
        let mut s = Vec::new();
        for id in ["evt_log1", "evt_log2"] {
            let b = body(id, "payment.succeeded");
            let h = sign("paylent", SECRET, &b, "", 0);
            s.push(post(&c, &format!("http://{addr}/a"), &h, b).await.status);
        }
        s
    });
    let _ = child.kill();
    let _ = child.wait();
    for l in lines.map_while(Result::ok) {
        out.push_str(&l);
    }
    let text = std::fs::read_to_string(&log).unwrap() + &out;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(statuses.iter().all(|s| *s == StatusCode::SERVICE_UNAVAILABLE), "{statuses:?}");
    assert!(text.contains("natsdown") || text.contains("rabbitbad"), "the failures are logged: {text:.2000}");
    for pw in ["natspw-hunter6", "natspw-hunter7", "amqppw-hunter8", "amqppw-hunter9"] {
        if let Some(at) = text.find(pw) {
            panic!("{pw} in the logs: {}", &text[at.saturating_sub(400)..(at + 100).min(text.len())]);
        }
    }
}

/// 150 publishes to an exchange that does not exist (each closes its channel, 503) on the
/// connection a healthy route shares: no channel permit is lost, the healthy route delivers
/// at once afterwards and its queue holds each event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_exchange_churn_leaves_the_shared_connection_healthy() {
    if !rabbit_or_skip("missing_exchange_churn_leaves_the_shared_connection_healthy") {
        return;
    }
    let t = Topology::declare("atk_churn").await;
    let url = crate::util::amqp::url(crate::util::amqp::BROKER);
    let missing = format!("{}.missing", t.exchange);
    let route = |path: &str, exchange: &str| {
        format!(
            "  - path: {path}\n    provider: paylent\n    secrets: [{SECRET:?}]\n    timeout: 3s\n    destination:\n      amqp: {{url: {url:?}, exchange: {exchange:?}, routing_key: {:?}}}\n",
            t.routing_key
        )
    };
    let yaml =
        format!("listen: 127.0.0.1:0\nroutes:\n{}{}", route("/bad", &missing), route("/good", &t.exchange));
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let c = client();
    let to = |path: &'static str, id: String| {
        let c = c.clone();
        let url = gw.url(path);
        async move {
            let b = body(&id, "payment.succeeded");
            let h = sign("paylent", SECRET, &b, "", 0);
            post(&c, &url, &h, b).await
        }
    };
    for round in 0..15 {
        let batch = (0..10).map(|i| to("/bad", format!("evt_bad_{round}_{i}")));
        for a in futures_util::future::join_all(batch).await {
            assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
            assert!(a.headers.contains_key("retry-after"));
        }
    }
    let started = Instant::now();
    let batch = (0..20).map(|i| to("/good", format!("evt_good_{i}")));
    for a in futures_util::future::join_all(batch).await {
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    }
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    let all = t.take_all().await;
    let mut ids: Vec<String> =
        all.iter().map(|d| d.properties.message_id().as_ref().unwrap().as_str().to_owned()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((all.len(), ids.len()), (20, 20));
}

// ---------------------------------------------------------------------------------------
// HTTPS: an expired certificate and a name mismatch are refused before any byte is sent

/// A private CA and one leaf for `names` signed by it, valid until `not_after` (PEMs).
fn ca_and_leaf(names: &[&str], expired: bool) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "attack CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    if expired {
        leaf.not_before = rcgen::date_time_ymd(2019, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(2020, 1, 1);
    }
    (ca_pem, leaf.signed_by(&key, &issuer).unwrap().pem(), key.serialize_pem())
}

/// An HTTPS server with `cert` that answers every request it reads 200; counts the requests
/// it answered (a refused handshake answers none).
async fn https_server(cert: &str, key: &str) -> (u16, Arc<AtomicUsize>) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::AsyncWriteExt;
    use tokio_rustls::rustls;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let s = served.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (acceptor, s) = (acceptor.clone(), s.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                s.fetch_add(1, Ordering::SeqCst);
                let _ =
                    tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_mismatched_upstream_certificates_are_refused_and_server_name_fixes_a_mismatch() {
    let dir = std::env::temp_dir().join(format!(
        "portcullis-attack-tls-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    // (leaf names, expired, server_name, answer expected)
    let cases: [(&[&str], bool, Option<&str>, StatusCode); 4] = [
        (&["127.0.0.1"], false, None, StatusCode::OK),
        (&["127.0.0.1"], true, None, StatusCode::BAD_GATEWAY),
        (&["backend.internal"], false, None, StatusCode::BAD_GATEWAY),
        (&["backend.internal"], false, Some("backend.internal"), StatusCode::OK),
    ];
    for (i, (names, expired, server_name, expected)) in cases.into_iter().enumerate() {
        let (ca, cert, key) = ca_and_leaf(names, expired);
        let ca_file = dir.join(format!("ca{i}.pem"));
        std::fs::write(&ca_file, ca).unwrap();
        let (port, served) = https_server(&cert, &key).await;
        let sn = server_name.map(|s| format!(", server_name: {s}")).unwrap_or_default();
        let dests = format!(
            "      - name: tls\n        upstream: \"https://127.0.0.1:{port}/hook\"\n        upstream_tls: {{ca_file: {ca_file:?}{sn}}}\n"
        );
        let gw = gateway("3s", &dests, "").await;
        let r = deliver(&client(), &gw, &format!("evt_tls_{i}"), &[]).await;
        let what = format!("{names:?} expired={expired} server_name={server_name:?}");
        assert_eq!(r.status, expected, "{what}: {}", r.text());
        let want = usize::from(expected == StatusCode::OK);
        assert_eq!(served.load(Ordering::SeqCst), want, "{what}: requests the server answered");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// A late PubAck

/// A TCP proxy to `target` that, while `hold` is set, keeps what the server sends (a
/// JetStream that took a publish but whose PubAck is late) and passes it on once cleared.
async fn holding_proxy(target: &'static str) -> (String, Arc<tokio::sync::watch::Sender<bool>>) {
    use tokio::io::AsyncWriteExt;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let hold = Arc::new(tokio::sync::watch::Sender::new(false));
    let h = hold.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = l.accept().await {
            let mut held = h.subscribe();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(target).await else { return };
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                let up = async {
                    let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
                    let _ = to_server.shutdown().await;
                };
                let down = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match from_server.read(&mut buf).await {
                            Ok(n) if n > 0 => n,
                            _ => break,
                        };
                        // Held (not dropped) while the flag is set.
                        let _ = held.wait_for(|on| !*on).await;
                        if to_client.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = to_client.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    (addr, hold)
}

/// JetStream stores the publish but its PubAck comes after the route's timeout: 503, the key
/// released; the provider's retries (one while the ack is still held, one after) end in one
/// message in the stream (the same `Nats-Msg-Id`: JetStream's duplicate window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_puback_is_503_and_the_retry_does_not_store_a_second_copy() {
    if !nats_or_skip("a_late_puback_is_503_and_the_retry_does_not_store_a_second_copy") {
        return;
    }
    let stream = TestStream::create(SHARED, "atk_late").await;
    let (addr, hold) = holding_proxy("127.0.0.1:4222").await;
    let dest = format!(
        "      - name: bus\n        nats: {{url: \"nats://{addr}\", subject: {:?}}}\n",
        stream.subject
    );
    let gw = gateway("1s", &dest, "").await;
    let c = client();
    // Connected first (the connection is made on first use).
    assert_eq!(deliver(&c, &gw, "evt_late_warm", &[]).await.status, StatusCode::OK);
    hold.send_replace(true);
    let r = deliver(&c, &gw, "evt_late", &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert!(r.headers.contains_key("retry-after"));
    // The publish reached JetStream though its ack did not reach the gateway.
    let stored = Deadline::new("the held publish stored", PATIENCE);
    while stream.count().await < 2 {
        stored.tick().await;
    }
    let again = deliver(&c, &gw, "evt_late", &[]).await;
    assert_eq!(again.status, StatusCode::SERVICE_UNAVAILABLE, "still held: {}", again.text());
    hold.send_replace(false);
    let deadline = Deadline::new("the retry accepted once the acks flow", PATIENCE);
    loop {
        let r = deliver(&c, &gw, "evt_late", &[]).await;
        if r.status == StatusCode::OK {
            break;
        }
        deadline.tick().await;
    }
    assert_eq!(stream.count().await, 2, "evt_late_warm and evt_late, each once");
    let ids: Vec<String> = stream
        .read_all()
        .await
        .iter()
        .map(|m| m.headers.as_ref().unwrap().get("Nats-Msg-Id").unwrap().as_str().to_owned())
        .collect();
    assert_eq!(ids, ["/a:evt_late_warm", "/a:evt_late"]);
}
