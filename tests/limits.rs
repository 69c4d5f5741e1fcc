//! Request-path limits, client addresses and configuration findings of issue #12: slow
//! unsigned bodies, IPv4 senders on an IPv6 listener, the allowlist before variants, a ttl
//! shorter than the replay window, and passwords in what `check` prints.

use crate::util::*;
use http::StatusCode;
use portcullis::config::Config;
use portcullis::{clock::Clock, gateway::Gateway};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const SECRET: &str = "limits-secret";

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"event":"x","event_id":"{id}"}}"#).into_bytes()
}

/// A raw paylent request with a valid signature for `id`.
fn signed_request(path: &str, id: &str) -> Vec<u8> {
    let b = body(id);
    let (name, value) = &sign("paylent", SECRET, &b, "", 0)[0];
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n{name}: {value}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        b.len()
    )
    .into_bytes();
    req.extend_from_slice(&b);
    req
}

/// Connects to `to` from the loopback address `from` (Linux routes all of 127/8 to lo).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads until the peer closes or `limit` passes: what was read, and whether it closed.
async fn read_until_close(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Polls `cond` until it holds, or fails after `limit`.
async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn serve_prints_no_password_of_an_upstream_url() {
    let dir = tempdir();
    let file = dir.join("gw.yaml");
    std::fs::write(
        &file,
        "listen: 127.0.0.1:0\nroutes:\n  - path: /p\n    provider: paylent\n    secrets: [s]\n    upstream: http://user:upstream-pw-789@127.0.0.1:3000/hook\n",
    )
    .unwrap();
    let mut child = Command::new(bin())
        .args(["serve", "--config", file.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The summary goes to stderr before "listening on" goes to stdout.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("listening on") {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "serve exited before listening");
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!err.contains("upstream-pw-789"), "password printed:\n{err}");
    assert!(err.contains("http://user:***@127.0.0.1:3000/hook"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_unsigned_bodies_from_one_address_hold_no_in_flight_slot_and_are_cut_off() {
    const SLOW: usize = 40;
    const PER_CLIENT: usize = 8;
    let up = Upstream::start().await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nlimits:\n  max_in_flight: 4\n  max_body_reads_per_client: {PER_CLIENT}\n  min_body_rate: 0\nroutes:\n{}",
        route("/p", "paylent", &[SECRET], &up.url("/p"), "")
    );
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let attacker: std::net::IpAddr = "127.0.0.1".parse().unwrap();

    // Unsigned requests announcing 100,000 bytes and sending one, from 127.0.0.1.
    let (refused_tx, mut refused_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut held = Vec::new();
    for _ in 0..SLOW {
        let mut s = connect_from("127.0.0.1", gw.addr).await;
        s.write_all(b"POST /p HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
            .await
            .unwrap();
        let tx = refused_tx.clone();
        held.push(tokio::spawn(async move {
            // The reads past the bound are answered at once and the connection closed; the
            // others stay open until the test ends.
            let (answer, closed) = read_until_close(&mut s, Duration::from_secs(20)).await;
            if closed {
                let _ = tx.send(answer);
            }
        }));
    }
    let mut refused = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while refused.len() < SLOW - PER_CLIENT {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, refused_rx.recv()).await {
            Ok(Some(answer)) => refused.push(answer),
            _ => panic!("only {} of the slow senders were cut off", refused.len()),
        }
    }
    for answer in &refused {
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    }
    let reads = gw.gateway.body_reads.clone();
    wait_for("the bounded reads to start", Duration::from_secs(10), || reads.reading(attacker) == PER_CLIENT)
        .await;

    // A genuine delivery from another address is read, verified and forwarded at once,
    // although more slow bodies are open than max_in_flight.
    let started = Instant::now();
    let mut genuine = connect_from("127.0.0.2", gw.addr).await;
    genuine.write_all(&signed_request("/p", "evt_genuine")).await.unwrap();
    let (answer, _) = read_until_close(&mut genuine, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5), "accepted promptly: {:?}", started.elapsed());
    assert_eq!(up.count(), 1);
    assert_eq!(reads.reading(attacker), PER_CLIENT, "the slow bodies are still being read");
    assert!(refused_rx.try_recv().is_err(), "no read within the bound was cut off");
    for h in held {
        h.abort();
    }
}

#[tokio::test]
async fn a_body_trickling_below_the_minimum_rate_is_cut_off_long_before_the_body_timeout() {
    let up = Upstream::start().await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nlimits:\n  body_read_timeout: 60s\n  min_body_rate: 1KiB\nroutes:\n{}",
        route("/p", "paylent", &[SECRET], &up.url("/p"), "")
    );
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let started = Instant::now();
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /p HTTP/1.1\r\nHost: gw\r\nContent-Length: 100000\r\n\r\n{").await.unwrap();
    // One byte; then nothing. The rate allows a second's grace, then 1 KiB per second.
    let (answer, closed) = read_until_close(&mut s, Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(closed, "the connection is closed");
    assert!(started.elapsed() < Duration::from_secs(20), "cut off after {:?}", started.elapsed());
    // A body sent at once is read as usual.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&signed_request("/p", "evt_fast")).await.unwrap();
    let (answer, _) = read_until_close(&mut s, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Serves `yaml` on `listener` until the returned sender is dropped.
async fn serve_on(listener: TcpListener, yaml: &str) -> tokio::sync::oneshot::Sender<()> {
    let config = Config::from_yaml("test.yaml", yaml, Path::new("."), &|_| None).unwrap();
    let store = portcullis::runtime::open_store(&config).await.unwrap();
    let gateway = Arc::new(Gateway::new(&config, store, Clock::System));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(portcullis::server::run(listener, gateway, None, async move {
        let _ = stopped.await;
    }));
    stop
}

#[tokio::test]
async fn ipv4_senders_on_a_dual_stack_listener_match_ipv4_allow_ips_and_trusted_proxies() {
    let up = Upstream::start().await;
    let listener = TcpListener::bind("[::]:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let yaml = format!(
        "listen: '[::]:0'\ntrusted_proxies: [127.0.0.2/32]\nroutes:\n{}{}",
        route("/direct", "paylent", &[SECRET], &up.url("/direct"), "    allow_ips: [127.0.0.1/32]\n"),
        route("/proxied", "paylent", &[SECRET], &up.url("/proxied"), "    allow_ips: [203.0.113.0/24]\n"),
    );
    let _stop = serve_on(listener, &yaml).await;
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // The peer 127.0.0.1 arrives as ::ffff:127.0.0.1 and matches 127.0.0.1/32.
    let mut s = connect_from("127.0.0.1", gw).await;
    s.write_all(&signed_request("/direct", "evt_v4")).await.unwrap();
    let (answer, _) = read_until_close(&mut s, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // What the gateway appends to X-Forwarded-For is the IPv4 form too.
    assert_eq!(up.seen()[0].headers["x-forwarded-for"], "127.0.0.1");

    // A trusted IPv4 proxy is recognised, and a hop written in mapped form is canonicalised.
    let mut s = connect_from("127.0.0.2", gw).await;
    let mut req = signed_request("/proxied", "evt_proxied");
    let at = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 2;
    req.splice(at..at, b"X-Forwarded-For: ::ffff:203.0.113.7\r\n".iter().copied());
    s.write_all(&req).await.unwrap();
    let (answer, _) = read_until_close(&mut s, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Not a trusted proxy: its X-Forwarded-For is not believed.
    let mut s = connect_from("127.0.0.3", gw).await;
    s.write_all(&req).await.unwrap();
    let (answer, _) = read_until_close(&mut s, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn allow_ips_is_checked_before_the_variant_header() {
    let live = Upstream::start().await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nroutes:\n  - path: /payable\n    provider: payable\n    allow_ips: [203.0.113.0/24]\n    select_by: X-Live-Mode\n    variants:\n      \"true\": {{secrets: [live-secret], upstream: {:?}}}\n      \"false\": {{secrets: [test-secret], upstream: {:?}}}\n",
        live.url("/live"),
        live.url("/test")
    );
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let c = client();
    let b = br#"{"idempotency_key":"k1","type":"t"}"#.to_vec();
    let h = sign("payable", "live-secret", &b, "", 0);
    // No variant header, a variant that does not exist, and a real one: 403 every time, so a
    // sender outside the allowlist learns nothing of the variants.
    for mode in [None, Some("maybe"), Some("true")] {
        let mut h = h.clone();
        if let Some(m) = mode {
            h.push(("X-Live-Mode".into(), m.into()));
        }
        let a = post(&c, &gw.url("/payable"), &h, b.clone()).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{mode:?}: {}", a.text());
    }
    assert_eq!(live.count(), 0);
}

/// A fresh directory for one test's files.
fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "portcullis-limits-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `portcullis check` on `yaml`: exit code, stdout, stderr.
fn check(yaml: &str) -> (i32, String, String) {
    let dir = tempdir();
    let file = dir.join("gw.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(bin()).args(["check", "--config", file.to_str().unwrap()]).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_refuses_a_ttl_shorter_than_the_signed_timestamp_window() {
    let yaml = |ttl: &str| {
        format!(
            "listen: 127.0.0.1:0\nroutes:\n  - path: /stripe\n    name: stripe-live\n    provider: stripe\n    secrets: [whsec_x]\n    upstream: http://127.0.0.1:1/\n    ttl: {ttl}\n"
        )
    };
    let (code, _, err) = check(&yaml("4m"));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("stripe-live") && err.contains("ttl (4m)") && err.contains("tolerance (5m)"),
        "the reason names the route, the ttl and the tolerance: {err}"
    );
    let (code, out, err) = check(&yaml("10m"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok:"), "{out}");
}

#[test]
fn check_prints_no_password_of_an_upstream_or_redis_url() {
    let yaml = "listen: 127.0.0.1:0\nstore:\n  kind: redis\n  url: redis://:redis-pw-123@127.0.0.1:6379/0\nroutes:\n  - path: /p\n    provider: paylent\n    secrets: [s]\n    upstream: http://user:upstream-pw-456@127.0.0.1:3000/hook\n";
    let (code, out, err) = check(yaml);
    assert_eq!(code, 0, "{err}");
    for pw in ["redis-pw-123", "upstream-pw-456"] {
        assert!(!out.contains(pw) && !err.contains(pw), "{pw} printed:\n{out}{err}");
    }
    assert!(out.contains("http://user:***@127.0.0.1:3000/hook"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_tricklers_from_one_address_take_only_their_own_connection_slots() {
    const TRICKLERS: usize = 30;
    const PER_CLIENT: usize = 8;
    let up = Upstream::start().await;
    let yaml = |trusted: &str| {
        format!(
            "listen: 127.0.0.1:0\ntrusted_proxies: [{trusted}]\nlimits:\n  max_connections: 40\n  max_connections_per_client: {PER_CLIENT}\nroutes:\n{}",
            route("/p", "paylent", &[SECRET], &up.url("/p"), "")
        )
    };
    let gw = TestGateway::start(&yaml("192.0.2.0/24"), Clock::System).await;

    // Connections from 127.0.0.1 that send a request line, then one header line every
    // half second, and never finish their headers.
    let (refused_tx, mut refused_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut held = Vec::new();
    let trickle = |mut s: TcpStream, refused: Option<tokio::sync::mpsc::UnboundedSender<String>>| {
        tokio::spawn(async move {
            if s.write_all(b"POST /p HTTP/1.1\r\n").await.is_err() {
                return;
            }
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            let mut buf = [0u8; 4096];
            let mut answer = Vec::new();
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let _ = s.write_all(b"X-Trickle: 1\r\n").await;
                    }
                    read = s.read(&mut buf) => match read {
                        Ok(n) if n > 0 => answer.extend_from_slice(&buf[..n]),
                        _ => {
                            if let Some(tx) = &refused {
                                let _ = tx.send(String::from_utf8_lossy(&answer).into_owned());
                            }
                            return;
                        }
                    },
                }
            }
        })
    };
    for _ in 0..TRICKLERS {
        held.push(trickle(connect_from("127.0.0.1", gw.addr).await, Some(refused_tx.clone())));
    }
    // The 9th and later are answered 503 at once and closed, without being read.
    let mut refused = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while refused.len() < TRICKLERS - PER_CLIENT {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, refused_rx.recv()).await {
            Ok(Some(answer)) => refused.push(answer),
            _ => panic!("only {} of {TRICKLERS} tricklers were refused", refused.len()),
        }
    }
    for answer in &refused {
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    }

    // A genuine delivery from another address gets a slot and is forwarded at once.
    let started = Instant::now();
    let mut genuine = connect_from("127.0.0.2", gw.addr).await;
    genuine.write_all(&signed_request("/p", "evt_genuine")).await.unwrap();
    let (answer, _) = read_until_close(&mut genuine, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3), "answered promptly: {:?}", started.elapsed());
    assert!(refused_rx.try_recv().is_err(), "no trickler within the bound was refused");

    // A trusted proxy is exempt, read from the routing in force: after a reload that trusts
    // 127.0.0.3, more than the bound connect from it and a delivery behind them gets through.
    let config = Config::from_yaml("test.yaml", &yaml("127.0.0.3/32"), Path::new("."), &|_| None).unwrap();
    gw.gateway.reload(&config);
    for _ in 0..PER_CLIENT + 2 {
        held.push(trickle(connect_from("127.0.0.3", gw.addr).await, None));
    }
    let mut proxied = connect_from("127.0.0.3", gw.addr).await;
    proxied.write_all(&signed_request("/p", "evt_proxied")).await.unwrap();
    let (answer, _) = read_until_close(&mut proxied, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(up.count(), 2);

    // Slots are given back when connections end: the tricklers closed, 127.0.0.1 delivers.
    for h in held {
        h.abort();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = connect_from("127.0.0.1", gw.addr).await;
        s.write_all(&signed_request("/p", "evt_after")).await.unwrap();
        let (answer, _) = read_until_close(&mut s, Duration::from_secs(10)).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "127.0.0.1 still refused after its connections ended: {answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
