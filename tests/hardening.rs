//! Hostile input, slow clients and faults, attacked for real over sockets.

use crate::util::process::GatewayProcess;
use crate::util::*;
use http::StatusCode;
use portcullis::clock::Clock;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "hardening-secret";

fn yaml(upstream: &Upstream, limits: &str, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nlimits:\n{limits}routes:\n{}",
        route("/p", "paylent", &[SECRET], &upstream.url("/p"), extra)
    )
}

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"event":"x","event_id":"{id}"}}"#).into_bytes()
}

/// A raw request with a valid signature.
fn raw_request(id: &str, extra_headers: &str) -> Vec<u8> {
    let b = body(id);
    let sig = &sign("paylent", SECRET, &b, "", 0)[0];
    let mut req = format!(
        "POST /p HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n{}: {}\r\nContent-Length: {}\r\n{extra_headers}\r\n",
        sig.0,
        sig.1,
        b.len()
    )
    .into_bytes();
    req.extend_from_slice(&b);
    req
}

/// Reads until the peer closes or `limit` passes; returns what was read and whether it closed.
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

#[tokio::test]
async fn a_client_dribbling_headers_is_cut_off() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(&up, "  header_read_timeout: 1s\n", ""), Clock::System).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let started = Instant::now();
    let head = b"POST /p HTTP/1.1\r\nHost: gw\r\nX-Slow: ";
    let mut closed = false;
    for b in head.iter().chain(b"aaaaaaaaaaaaaaaaaaaaaaaaaa".iter()) {
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        if started.elapsed() > Duration::from_secs(6) {
            break;
        }
    }
    if !closed {
        closed = read_until_close(&mut s, Duration::from_secs(3)).await.1;
    }
    assert!(closed, "the connection is closed");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "within the header read timeout: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(&up, "  header_read_timeout: 1s\n", ""), Clock::System).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&raw_request("evt_idle", "")).await.unwrap();
    let started = Instant::now();
    let (text, closed) = read_until_close(&mut s, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(closed, "idle connection closed");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn a_slow_body_gets_408() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(&up, "  body_read_timeout: 1s\n", ""), Clock::System).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /p HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n{").await.unwrap();
    let writer = tokio::spawn(async move {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if s.write_all(b" ").await.is_err() {
                break;
            }
        }
        s
    });
    let mut s = writer.await.unwrap();
    let (text, _) = read_until_close(&mut s, Duration::from_secs(3)).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn too_many_or_too_large_headers_get_431() {
    let up = Upstream::start().await;
    let gw =
        TestGateway::start(&yaml(&up, "  max_headers: 20\n  max_header_bytes: 8192\n", ""), Clock::System)
            .await;
    let many: String = (0..40).map(|i| format!("X-H{i}: v\r\n")).collect();
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&raw_request("evt_h", &many)).await.unwrap();
    let (text, _) = read_until_close(&mut s, Duration::from_secs(3)).await;
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");

    let big = format!("X-Big: {}\r\n", "a".repeat(20_000));
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let _ = s.write_all(&raw_request("evt_h2", &big)).await;
    let (text, _) = read_until_close(&mut s, Duration::from_secs(3)).await;
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    assert_eq!(up.count(), 0);
}

/// Reads until the end of a response's head: the connection was accepted and served.
async fn read_head(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(PATIENCE, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            other => panic!("no response head: {other:?} after {:?}", String::from_utf8_lossy(&out)),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn past_the_connection_limit_connections_get_503() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(&up, "  max_connections: 2\n", ""), Clock::System).await;
    // Two keep-alive connections, each answered once: both are accepted and held open.
    let mut a = TcpStream::connect(gw.addr).await.unwrap();
    a.write_all(&raw_request("evt_conn_a", "")).await.unwrap();
    assert!(read_head(&mut a).await.starts_with("HTTP/1.1 200"));
    let mut b = TcpStream::connect(gw.addr).await.unwrap();
    b.write_all(&raw_request("evt_conn_b", "")).await.unwrap();
    assert!(read_head(&mut b).await.starts_with("HTTP/1.1 200"));
    let mut c = TcpStream::connect(gw.addr).await.unwrap();
    let (text, closed) = read_until_close(&mut c, Duration::from_secs(3)).await;
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("retry-after: 1"));
    assert!(closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_in_flight_limit_requests_get_503_with_retry_after() {
    let up = Upstream::start().await;
    // Two deliveries held at the upstream fill both slots; the other three are shed.
    up.hold();
    let gw = TestGateway::start(&yaml(&up, "  max_in_flight: 2\n", ""), Clock::System).await;
    let mut tasks = Vec::new();
    for i in 0..5 {
        let url = gw.url("/p");
        tasks.push(tokio::spawn(async move {
            let b = body(&format!("evt_if{i}"));
            post(&client(), &url, &sign("paylent", SECRET, &b, "", 0), b).await
        }));
    }
    wait_until("three answers while two are held", PATIENCE, || {
        tasks.iter().filter(|t| t.is_finished()).count() == 3
    })
    .await;
    assert_eq!(up.count(), 2);
    up.release();
    let mut shed = 0;
    for t in tasks {
        let a = t.await.unwrap();
        if a.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(a.headers["retry-after"], "1");
            shed += 1;
        } else {
            assert_eq!(a.status, StatusCode::OK);
        }
    }
    assert_eq!(shed, 3, "the requests past the limit were shed");
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn content_length_and_chunked_together_reach_the_upstream_with_one_framing() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(&up, "", ""), Clock::System).await;
    let b = body("evt_te");
    let sig = &sign("paylent", SECRET, &b, "", 0)[0];
    let req = format!(
        "POST /p HTTP/1.1\r\nHost: gw\r\n{}: {}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        sig.0,
        sig.1,
        b.len(),
        String::from_utf8_lossy(&b)
    );
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let (text, closed) = read_until_close(&mut s, Duration::from_secs(3)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(closed, "an ambiguous framing closes the connection after the answer");
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body.as_ref(), b.as_slice());
    assert_eq!(seen[0].headers.get_all("content-length").iter().count(), 1);
    assert_eq!(seen[0].headers["content-length"], b.len().to_string().as_str());
    assert!(seen[0].headers.get("transfer-encoding").is_none());
}

#[tokio::test]
async fn conflicting_content_lengths_and_bad_chunks_are_refused() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(&up, "", ""), Clock::System).await;
    let cases: [&[u8]; 3] = [
        b"POST /p HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST /p HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        b"POST /p HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip\r\n\r\n",
    ];
    for req in cases {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(req).await.unwrap();
        let (text, _) = read_until_close(&mut s, Duration::from_secs(3)).await;
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 400"), "{text}");
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn bytes_after_a_request_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(&up, "", ""), Clock::System).await;
    let mut req = raw_request("evt_smuggle", "");
    // A second, smuggled request rides behind the first one's body.
    req.extend_from_slice(b"POST /admin HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n\r\nevil");
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&req).await.unwrap();
    let (text, _) = read_until_close(&mut s, Duration::from_secs(2)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("HTTP/1.1 404"), "the trailing bytes are a request of their own: {text}");
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body.as_ref(), body("evt_smuggle").as_slice());
}

#[tokio::test]
async fn upgrade_and_connect_are_refused() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&yaml(&up, "", ""), Clock::System).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&raw_request("evt_up", "Connection: Upgrade\r\nUpgrade: websocket\r\n")).await.unwrap();
    let (text, _) = read_until_close(&mut s, Duration::from_secs(2)).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"CONNECT upstream:443 HTTP/1.1\r\nHost: upstream:443\r\n\r\n").await.unwrap();
    let (text, _) = read_until_close(&mut s, Duration::from_secs(2)).await;
    assert!(text.starts_with("HTTP/1.1 4"), "{text}");
    assert!(!text.starts_with("HTTP/1.1 200"));
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn a_panic_answers_500_for_that_request_only() {
    use portcullis::layer::catch_panic::CatchPanicLayer;
    use portcullis::layer::observe::ObserveLayer;
    use portcullis::response::full;
    // The real accept loop and the real panic layer, around a handler that panics on /boom.
    let handler = tower::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
        if req.uri().path() == "/boom" {
            panic!("boom");
        }
        Ok::<_, std::convert::Infallible>(http::Response::new(full("fine")))
    });
    let svc =
        tower::ServiceBuilder::new().layer(ObserveLayer::default()).layer(CatchPanicLayer).service(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = portcullis::config::Limits::default();
    tokio::spawn(async move {
        portcullis::server::serve(
            listener,
            &limits,
            None,
            move |_, _, _| svc.clone(),
            std::future::pending(),
            || {},
        )
        .await
    });
    let c = client();
    // One keep-alive connection: the panic does not take it down.
    let a = send(&c, http::Method::GET, &format!("http://{addr}/boom"), &[], "").await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(a.text(), r#"{"error":"internal error"}"#);
    let a = send(&c, http::Method::GET, &format!("http://{addr}/ok"), &[], "").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.text(), "fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_hold_secrets_or_signature_values() {
    let up = Upstream::start().await;
    let secret = "s3cr3t-NEVER-LOGGED";
    let yaml =
        format!("listen: 127.0.0.1:0\nroutes:\n{}", route("/p", "paylent", &[secret], &up.url("/p"), ""));
    let dir = std::env::temp_dir().join(format!("portcullis-logs-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("gw.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let log = dir.join("stderr.log");
    let mut child = std::process::Command::new(bin())
        .args(["serve", "--config", cfg.to_str().unwrap(), "--log-format", "json"])
        .env("RUST_LOG", "trace")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").unwrap().to_string();
    let c = client();
    let b = body("evt_log");
    let good = sign("paylent", secret, &b, "", 0);
    let forged = sign("paylent", "wrong", &b, "", 0);
    let url = format!("http://{addr}/p");
    assert_eq!(post(&c, &url, &forged, b.clone()).await.status, 401);
    assert_eq!(post(&c, &url, &good, b.clone()).await.status, 200);
    let _ = child.kill();
    let _ = child.wait();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("invalid_signature") && logs.contains("forwarded"), "{logs}");
    assert!(!logs.contains(secret), "a secret reached the log");
    for (_, v) in good.iter().chain(forged.iter()) {
        let sig = v.trim_start_matches("sha256=");
        assert!(!logs.contains(sig), "a signature value reached the log");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_deliveries_finish_then_exits_0() {
    let up = Upstream::start().await;
    up.hold();
    let gw = GatewayProcess::start(&yaml(&up, "  drain_timeout: 10s\n", ""));
    let (url, addr) = (gw.url("/p"), gw.addr);
    let inflight = tokio::spawn(async move {
        let b = body("evt_drain_ok");
        post(&client(), &url, &sign("paylent", SECRET, &b, "", 0), b).await
    });
    wait_until("the delivery to reach the upstream", PATIENCE, || up.count() == 1).await;
    gw.signal("TERM");
    let started = Instant::now();
    // Draining has begun once the listener is closed; only then does the upstream answer.
    let deadline = Deadline::new("the listener to close", PATIENCE);
    while TcpStream::connect(addr).await.is_ok() {
        deadline.tick().await;
    }
    up.release();
    let status = tokio::task::spawn_blocking(move || gw.wait()).await.unwrap();
    assert!(status.success(), "exit 0: {status:?}");
    assert_eq!(inflight.await.unwrap().status, StatusCode::OK, "the in-flight delivery finished");
    assert!(started.elapsed() < Duration::from_secs(10), "exited once it finished, before the drain timeout");
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_slow_upstream_releases_the_key_and_exits_0() {
    let up = Upstream::start().await;
    // The upstream does not answer before the drain timeout (it is held until released).
    up.hold();
    let dir = std::env::temp_dir().join(format!("portcullis-term-{}", rand::random::<u32>()));
    let store =
        format!("store:\n  kind: embedded\n  path: {:?}\n", dir.join("claims.redb").display().to_string());
    let cfg = format!(
        "listen: 127.0.0.1:0\n{store}limits:\n  drain_timeout: 1s\nroutes:\n{}",
        route("/p", "paylent", &[SECRET], &up.url("/p"), "    timeout: 8s\n")
    );
    let gw = GatewayProcess::start(&cfg);
    let url = gw.url("/p");
    let b = body("evt_drain_slow");
    let h = sign("paylent", SECRET, &b, "", 0);
    let (h2, b2) = (h.clone(), b.clone());
    let inflight = tokio::spawn(async move { post(&client(), &url, &h2, b2).await });
    wait_until("the delivery to reach the upstream", PATIENCE, || up.count() == 1).await;
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || gw.terminate()).await.unwrap();
    assert!(status.success(), "exit 0: {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "bounded by the drain timeout: {:?}",
        started.elapsed()
    );
    let a = inflight.await.unwrap();
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    assert!(a.headers.contains_key("retry-after"));
    // The key was released: the provider's retry, at the restarted gateway, is forwarded.
    up.release();
    let gw = GatewayProcess::start(&cfg);
    let retry = post(&client(), &gw.url("/p"), &h, b).await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.text());
    drop(gw);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_hangs_up_does_not_leave_the_claim_half_done() {
    let up = Upstream::start().await;
    up.hold();
    // A lease far longer than the test may wait: a claim left in flight would answer 409.
    let gw = TestGateway::start(&yaml(&up, "", "    timeout: 60s\n    lease: 120s\n"), Clock::System).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&raw_request("evt_hangup", "")).await.unwrap();
    wait_until("the delivery to reach the upstream", PATIENCE, || up.count() == 1).await;
    drop(s); // the sender gives up while the upstream is still answering
    wait_until("the gateway to drop the abandoned request", PATIENCE, || gw.gateway.metrics.in_flight() == 0)
        .await;
    up.release();
    // Its outcome is recorded: the provider's retry is a duplicate once the upstream's
    // answer is in, and a 409 only until then, never for the lease.
    let b = body("evt_hangup");
    let h = sign("paylent", SECRET, &b, "", 0);
    let deadline = Deadline::new("the abandoned delivery's outcome", PATIENCE);
    let a = loop {
        let a = post(&client(), &gw.url("/p"), &h, b.clone()).await;
        if a.status != StatusCode::CONFLICT {
            break a;
        }
        deadline.tick().await;
    };
    assert_eq!(a.text(), r#"{"status":"duplicate"}"#);
    assert_eq!(up.count(), 1);
}
