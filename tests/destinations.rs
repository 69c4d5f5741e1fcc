//! Destinations (issue 17) through the real gateway with real HTTP upstreams: fan-out, `when:`
//! filters, partial failure remembered per destination (sync and queued), and configuration
//! errors that name the field.

use crate::util::*;
use http::StatusCode;
use portcullis::clock::Clock;
use portcullis::config::Config;

const SECRET: &str = "dest-secret";

/// A sync route with `destinations:` (the YAML list, indented under the route).
fn fanout(path: &str, destinations: &str, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nroutes:\n  - path: {path}\n    provider: paylent\n    secrets: [{SECRET:?}]\n    destinations:\n{destinations}{extra}"
    )
}

fn http_dest(name: &str, up: &Upstream, path: &str, when: &str) -> String {
    format!("      - name: {name}\n        upstream: {:?}\n{when}", up.url(path))
}

async fn deliver(c: &HttpClient, url: &str, body: &str) -> Answer {
    let b = body.as_bytes().to_vec();
    post(c, url, &sign("paylent", SECRET, &b, "", 0), b).await
}

fn body(id: &str, kind: &str) -> String {
    format!(r#"{{"event_id":"{id}","type":"{kind}","amount":12}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_delivers_to_each_upstream_once_with_identical_bodies() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let dests = http_dest("a", &a, "/a", "") + &http_dest("b", &b, "/b", "");
    let gw = TestGateway::start(&fanout("/f", &dests, ""), Clock::System).await;
    let c = client();
    let sent = body("evt_fan_1", "payment.succeeded");
    let r = deliver(&c, &gw.url("/f"), &sent).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let answer: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(answer["status"], "delivered");
    assert_eq!(answer["destinations"], serde_json::json!(["a", "b"]));
    assert_eq!((a.count(), b.count()), (1, 1));
    let (sa, sb) = (&a.seen()[0], &b.seen()[0]);
    assert_eq!(sa.body, sent.as_bytes());
    assert_eq!(sa.body, sb.body, "both destinations receive the same bytes");
    assert_eq!(sa.headers["portcullis-idempotency-key"], "/f:evt_fan_1");
    assert_eq!(sa.headers["portcullis-idempotency-key"], sb.headers["portcullis-idempotency-key"]);
    // A retry of a delivered event is a duplicate: neither receives it again.
    let r = deliver(&c, &gw.url("/f"), &sent).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("duplicate"), "{}", r.text());
    assert_eq!((a.count(), b.count()), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_filters_route_events_by_type_and_nothing_wanted_is_filtered() {
    let (pay, refund) = (Upstream::start().await, Upstream::start().await);
    let dests =
        http_dest(
            "payments",
            &pay,
            "/p",
            "        when: {pointer: /type, in: [payment.succeeded, payment.failed]}\n",
        ) + &http_dest("refunds", &refund, "/r", "        when: {pointer: /type, in: [refund.created]}\n");
    let gw = TestGateway::start(&fanout("/w", &dests, ""), Clock::System).await;
    let c = client();
    let r = deliver(&c, &gw.url("/w"), &body("evt_w1", "payment.succeeded")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = deliver(&c, &gw.url("/w"), &body("evt_w2", "refund.created")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().contains(r#""destinations":["refunds"]"#), "{}", r.text());
    assert_eq!((pay.count(), refund.count()), (1, 1));
    assert!(pay.seen()[0].body.starts_with(br#"{"event_id":"evt_w1""#));
    assert!(refund.seen()[0].body.starts_with(br#"{"event_id":"evt_w2""#));
    // Wanted by nobody: 200 filtered, and its key completed (a retry is a duplicate).
    let other = body("evt_w3", "customer.created");
    let r = deliver(&c, &gw.url("/w"), &other).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), r#"{"status":"filtered"}"#);
    let r = deliver(&c, &gw.url("/w"), &other).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("duplicate"), "{}", r.text());
    assert_eq!((pay.count(), refund.count()), (1, 1));
    let m = gw.metrics().await;
    assert!(m.contains(r#"outcome="filtered""#), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_failure_is_retried_to_the_failed_destination_only() {
    let (good, bad) = (Upstream::start().await, Upstream::start().await);
    bad.script(&[500]);
    let dests = http_dest("good", &good, "/g", "") + &http_dest("bad", &bad, "/b", "");
    let gw = TestGateway::start(&fanout("/pf", &dests, ""), Clock::System).await;
    let c = client();
    let sent = body("evt_pf_1", "payment.succeeded");
    let r = deliver(&c, &gw.url("/pf"), &sent).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    assert_eq!((good.count(), bad.count()), (1, 1));
    // The provider retries; `bad` now accepts: it gets the event, `good` does not again.
    let r = deliver(&c, &gw.url("/pf"), &sent).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().contains(r#""destinations":["good","bad"]"#), "{}", r.text());
    assert_eq!((good.count(), bad.count()), (1, 2));
    assert_eq!(bad.seen()[1].body, sent.as_bytes());
    // And once all accepted, a retry is a duplicate.
    let r = deliver(&c, &gw.url("/pf"), &sent).await;
    assert!(r.text().contains("duplicate"), "{}", r.text());
    assert_eq!((good.count(), bad.count()), (1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_is_down_gets_the_retry_once_it_is_back() {
    let good = Upstream::start().await;
    // A port nothing listens on, then an upstream started on it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dests = http_dest("good", &good, "/g", "")
        + &format!("      - name: later\n        upstream: \"http://127.0.0.1:{port}/l\"\n");
    let gw = TestGateway::start(&fanout("/dn", &dests, ""), Clock::System).await;
    let c = client();
    let sent = body("evt_dn_1", "payment.succeeded");
    let r = deliver(&c, &gw.url("/dn"), &sent).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    assert_eq!(good.count(), 1);
    let later = serve_on(port).await;
    let r = deliver(&c, &gw.url("/dn"), &sent).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(good.count(), 1, "the destination that accepted first is not sent to again");
    assert_eq!(*later.lock().unwrap(), vec![bytes::Bytes::from(sent)]);
}

/// An upstream started late on a port chosen before: answers 200 and keeps the bodies.
async fn serve_on(port: u16) -> std::sync::Arc<std::sync::Mutex<Vec<bytes::Bytes>>> {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let s = s.clone();
                    async move {
                        let b = req.into_body().collect().await?.to_bytes();
                        s.lock().unwrap().push(b);
                        Ok::<_, hyper::Error>(http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::new(),
                        )))
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
            });
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_fan_out_delivers_each_destination_exactly_once() {
    let dir = std::env::temp_dir().join(format!(
        "portcullis-dest-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("claims.redb").display().to_string();
    let (good, flaky) = (Upstream::start().await, Upstream::start().await);
    flaky.script(&[503, 500]);
    let dests = http_dest("good", &good, "/g", "") + &http_dest("flaky", &flaky, "/f", "");
    let yaml = fanout(
        "/qf",
        &dests,
        "    delivery: queued\n    timeout: 1s\n    lease: 2s\n    queue: {backoff: 50ms, max_backoff: 100ms, max_attempts: 10}\n",
    )
    .replace("listen: 127.0.0.1:0\n", &format!("listen: 127.0.0.1:0\nstore: {{kind: embedded, path: {path:?}}}\n"));
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let c = client();
    let sent = body("evt_qf_1", "payment.succeeded");
    let r = deliver(&c, &gw.url("/qf"), &sent).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    // Two failed attempts, then accepted; the good one only on the first attempt.
    wait_until("the flaky destination accepts", PATIENCE, || flaky.count() >= 3).await;
    // Only once the queue holds nothing more can "nothing was sent twice" be asserted.
    let deadline = Deadline::new("the queue to drain", PATIENCE);
    while !queue_drained(&gw.queue_stats().await) {
        deadline.tick().await;
    }
    assert_eq!((good.count(), flaky.count()), (1, 3));
    assert_eq!(flaky.seen()[2].body, sent.as_bytes());
    assert_eq!(good.seen()[0].body, sent.as_bytes());
    let _ = std::fs::remove_dir_all(&dir);
}

fn config_error(destinations: &str) -> String {
    let yaml = format!(
        "listen: 127.0.0.1:0\nroutes:\n  - path: /p\n    provider: paylent\n    secrets: [a]\n{destinations}"
    );
    Config::from_yaml("gw.yaml", &yaml, std::path::Path::new("."), &|_| None)
        .expect_err("refused")
        .to_string()
}

#[test]
fn destination_errors_name_the_field() {
    let cases = [
        (
            "    destination: {upstream: 'http://h/', nats: {url: 'nats://h', subject: s}}\n",
            "destination.upstream, nats, amqp: a destination has exactly one of them",
        ),
        (
            "    destinations:\n      - {name: a, upstream: 'http://h/'}\n      - {name: a, upstream: 'http://i/'}\n",
            "destinations[1].name: 'a' is used by another destination",
        ),
        (
            "    destinations:\n      - {upstream: 'http://h/'}\n      - {name: b, upstream: 'http://i/'}\n",
            "destinations[0].name: is needed",
        ),
        (
            "    upstream: 'http://h/'\n    destinations:\n      - {name: b, upstream: 'http://i/'}\n",
            "upstream, destination and destinations: give exactly one of them",
        ),
        (
            "    destination: {upstream: 'http://h/', when: {pointer: type, in: [a]}}\n",
            "destination.when.pointer: JSON pointer 'type' must start with '/'",
        ),
        (
            "    destination: {upstream: 'http://h/', when: {pointer: /type, in: []}}\n",
            "destination.when.in: list at least one value",
        ),
        (
            "    upstream: 'http://h/'\n    upstream_tls: {server_name: h}\n",
            "upstream_tls: 'http://h/' is an http:// upstream",
        ),
        (
            "    destinations:\n      - {name: a, upstream: 'http://h/'}\n      - {name: b, nats: {url: 'nats://h:4222', subject: 'a.*'}}\n",
            "destinations[1].nats.subject: 'a.*' holds a wildcard",
        ),
        (
            "    destination: {nats: {url: 'nats://h:4222', subject: 'a b'}}\n",
            "destination.nats.subject: 'a b' holds whitespace",
        ),
        (
            "    destination: {nats: {url: 'http://h:4222', subject: a}}\n",
            "destination.nats.url: 'http://h:4222': the scheme must be nats:// or tls://",
        ),
        (
            "    destination: {amqp: {url: 'amqp://u:hunter2@h/%2f', routing_key: k, exchnage: x}}\n",
            "unknown field `exchnage`",
        ),
        ("    upstream: 'ftp://h/'\n", "only http:// and https:// upstreams are supported"),
    ];
    // The error is placed at its line (the second destination's, line 8).
    let e = config_error(cases[7].0);
    assert!(e.contains("gw.yaml: line 8: routes[0] (route): destinations[1].nats.subject"), "{e}");
    for (yaml, want) in cases {
        let e = config_error(yaml);
        assert!(e.contains(want), "{yaml}\n→ {e}\n(wanted: {want})");
        assert!(!e.contains("hunter2"), "{e}");
    }
}

#[test]
fn destinations_parse_with_defaults() {
    let yaml = "listen: 127.0.0.1:0\nroutes:\n  - path: /p\n    provider: paylent\n    secrets: [a]\n    destinations:\n      - {name: web, upstream: 'https://h/x'}\n      - {name: bus, nats: {url: 'nats://127.0.0.1:4222', subject: hooks.paylent}}\n      - {name: mq, amqp: {url: 'amqp://g:pw@127.0.0.1:5672/%2f', routing_key: k}, when: {pointer: /type, in: [a, 1, true]}}\n  - path: /one\n    provider: paylent\n    secrets: [a]\n    destination: {nats: {url: 'nats://h', subject: s}}\n";
    let c = Config::from_yaml("gw.yaml", yaml, std::path::Path::new("."), &|_| None).unwrap();
    let r = c.routes.iter().find(|r| r.path == "/p").unwrap();
    let names: Vec<_> = r.destinations.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["web", "bus", "mq"]);
    assert!(r.direct().is_none());
    let described: Vec<_> = r.destinations.iter().map(|d| d.describe()).collect();
    assert!(described[2].contains("amqp://g:***@127.0.0.1:5672/%2f"), "{described:?}");
    assert!(!described.concat().contains("pw@"), "{described:?}");
    let one = c.routes.iter().find(|r| r.path == "/one").unwrap();
    assert_eq!(one.destinations[0].name, "nats");
    let mq = &r.destinations[2];
    assert!(mq.wants(br#"{"type":"a"}"#) && mq.wants(br#"{"type":1}"#) && mq.wants(br#"{"type":true}"#));
    assert!(!mq.wants(br#"{"type":"b"}"#) && !mq.wants(b"not json") && !mq.wants(b"{}"));
}

/// A TCP port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_cannot_be_reached_is_503_and_the_http_destination_is_not_sent_twice() {
    let web = Upstream::start().await;
    let dests = http_dest("web", &web, "/w", "")
        + &format!(
            "      - name: bus\n        nats: {{url: \"nats://127.0.0.1:{}\", subject: dest.down}}\n",
            closed_port()
        );
    let gw = TestGateway::start(&fanout("/bd", &dests, "    timeout: 2s\n"), Clock::System).await;
    let c = client();
    let sent = body("evt_bd_1", "payment.succeeded");
    for _ in 0..2 {
        let r = deliver(&c, &gw.url("/bd"), &sent).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
        assert!(r.headers.contains_key("retry-after"));
    }
    assert_eq!(web.count(), 1, "the upstream that accepted is remembered across the provider's retries");
    let m = gw.metrics().await;
    assert!(m.contains(r#"outcome="destination_unavailable""#), "{m}");
    // One broker destination alone: 503, its key released (a retry is not a duplicate).
    let yaml = format!(
        "listen: 127.0.0.1:0\nroutes:\n  - path: /a\n    provider: paylent\n    secrets: [{SECRET:?}]\n    timeout: 2s\n    destination: {{amqp: {{url: \"amqp://guest:guest@127.0.0.1:{}/%2f\", routing_key: k}}}}\n",
        closed_port()
    );
    let gw = TestGateway::start(&yaml, Clock::System).await;
    for _ in 0..2 {
        let r = deliver(&c, &gw.url("/a"), &sent).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
        assert!(!r.text().contains("guest"), "{}", r.text());
    }
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "portcullis-destcheck-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `check` lists each destination (passwords hidden); `check --connect` checks each distinct
/// one: a TCP connect for an upstream, a ping for a broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_lists_and_reaches_each_destination() {
    let up = Upstream::start().await;
    let (nats_port, amqp_port) = (closed_port(), closed_port());
    let dir = tempdir();
    let yaml = fanout(
        "/c",
        &(http_dest("web", &up, "/w", "        when: {pointer: /type, in: [a]}\n")
            + &format!("      - name: bus\n        nats: {{url: \"nats://u:natspw@127.0.0.1:{nats_port}\", subject: s.one}}\n")
            + &format!("      - name: mq\n        amqp: {{url: \"amqp://g:amqppw@127.0.0.1:{amqp_port}/%2f\", exchange: x, routing_key: k}}\n")),
        "",
    );
    let path = dir.join("gw.yaml");
    std::fs::write(&path, yaml).unwrap();
    let path = path.display().to_string();
    let run = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(bin())
                .args(&args)
                .env_remove("PORTCULLIS_CONFIG")
                .output()
                .unwrap();
            let text =
                String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            (out.status.code().unwrap_or(-1), text)
        })
        .await
        .unwrap()
    };
    let (code, out) = run(vec!["check".into(), "--config".into(), path.clone()]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("web: http ") && out.contains("when /type in [\"a\"]"), "{out}");
    assert!(out.contains("bus: nats nats://u:***@127.0.0.1") && out.contains("subject s.one"), "{out}");
    assert!(out.contains("mq: amqp amqp://g:***@127.0.0.1") && out.contains("routing_key 'k'"), "{out}");
    let (code, out) = run(vec!["check".into(), "--config".into(), path, "--connect".into()]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("{}: ok (", up.url("").trim_end_matches('/'))), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with(&format!("nats nats://u:***@127.0.0.1:{nats_port}: "))),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with(&format!("amqp amqp://g:***@127.0.0.1:{amqp_port}/%2f: "))),
        "{out}"
    );
    assert!(!out.contains("natspw") && !out.contains("amqppw"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `/api/routes` lists each route's destinations, URLs without their passwords.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_lists_each_destination() {
    let up = Upstream::start().await;
    let dests = http_dest("web", &up, "/w", "        when: {pointer: /type, in: [a, 2]}\n")
        + "      - name: bus\n        nats: {url: \"nats://u:natspw@127.0.0.1:1\", subject: s.two, headers: false}\n";
    let gw = TestGateway::start(&fanout("/r", &dests, ""), Clock::System).await;
    let text =
        send(&client(), http::Method::GET, &format!("http://{}/api/routes", gw.admin), &[], "").await.text();
    assert!(!text.contains("natspw"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect(&text);
    let r = v["routes"].as_array().unwrap().iter().find(|r| r["path"] == "/r").expect(&text);
    assert_eq!(r["upstream"], serde_json::Value::Null);
    let d = &r["destinations"];
    assert_eq!(d[0]["name"], "web");
    assert_eq!(d[0]["kind"], "http");
    assert_eq!(d[0]["when"], serde_json::json!({"pointer": "/type", "in": ["a", 2]}));
    assert_eq!(d[1]["kind"], "nats");
    assert_eq!(d[1]["url"], "nats://u:***@127.0.0.1:1");
    assert_eq!(d[1]["subject"], "s.two");
    assert_eq!(d[1]["headers"], false);
}

/// `upstream_tls` files are watched like the other files the configuration reads (real PEM
/// files: the loader reads and checks them).
#[test]
fn upstream_tls_files_are_watched() {
    let dir = tempdir();
    let ck = rcgen::generate_simple_self_signed(vec!["h".into()]).unwrap();
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    std::fs::write(dir.join("certs/ca.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("other-ca.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("c.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("k.pem"), ck.signing_key.serialize_pem()).unwrap();
    let yaml = "listen: 127.0.0.1:0\nroutes:\n  - path: /p\n    provider: paylent\n    secrets: [a]\n    destinations:\n      - name: a\n        upstream: https://h/\n        upstream_tls: {ca_file: certs/ca.pem, client_cert_file: c.pem, client_key_file: k.pem}\n      - {name: b, upstream: 'http://i/'}\n  - path: /q\n    provider: paylent\n    secrets: [a]\n    upstream: https://j/\n    upstream_tls: {ca_file: other-ca.pem}\n";
    let c = Config::from_yaml("gw.yaml", yaml, &dir, &|_| None).unwrap();
    for f in ["certs/ca.pem", "c.pem", "k.pem", "other-ca.pem"] {
        assert!(c.files.contains(&dir.join(f)), "{f}: {:?}", c.files);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
