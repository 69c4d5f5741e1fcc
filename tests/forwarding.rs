//! What reaches the upstream (header hygiene, forwarded ids), what goes back to the provider,
//! the echo upstream, and the commands' output into a closed pipe.

use crate::util::*;
use portcullis::clock::Clock;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &str = "forwarding-secret";
const INTERNAL: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"event":"x","event_id":"{id}"}}"#).into_bytes()
}

/// A raw HTTP request (`head` without the blank line) with a valid signature over `id`'s body.
fn raw_request(head: &str, id: &str) -> Vec<u8> {
    let b = body(id);
    let (name, value) = sign("paylent", SECRET, &b, "", 0).remove(0);
    let mut req = format!("{head}\r\n{name}: {value}\r\nContent-Length: {}\r\n\r\n", b.len()).into_bytes();
    req.extend_from_slice(&b);
    req
}

/// Sends raw bytes and reads the answer until the peer closes, under a deadline.
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("the gateway answers and closes")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_senders_x_forwarded_host_is_replaced_even_without_a_host_header() {
    let up = Upstream::start().await;
    let gw =
        TestGateway::start(&config(&[route("/p", "paylent", &[SECRET], &up.url("/p"), "")]), Clock::System)
            .await;
    // HTTP/1.0 without Host: the gateway has no host to forward, so it forwards none.
    let head = "POST /p HTTP/1.0\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https";
    let answer = exchange(gw.addr, &raw_request(head, "evt_nohost")).await;
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    // With a Host, that Host, not the sender's claim.
    let head = "POST /p HTTP/1.1\r\nHost: gw.internal\r\nConnection: close\r\nX-Forwarded-Host: evil.example";
    let answer = exchange(gw.addr, &raw_request(head, "evt_host")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].headers.get("x-forwarded-host").is_none(), "{:?}", seen[0].headers);
    assert_eq!(seen[0].headers["x-forwarded-proto"], "http");
    assert_eq!(seen[1].headers.get_all("x-forwarded-host").iter().collect::<Vec<_>>(), ["gw.internal"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_deliveries_carry_the_same_forwarded_id_signed() {
    let up = Upstream::start().await;
    let dir = std::env::temp_dir().join(format!(
        "portcullis-fwdq-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let extra = format!("    delivery: queued\n    forward_signing:\n      secret: {INTERNAL:?}\n");
    let yaml = format!(
        "listen: 127.0.0.1:0\nstore:\n  kind: embedded\n  path: {:?}\nroutes:\n{}",
        dir.join("claims.redb").display().to_string(),
        route("/q", "paylent", &[SECRET], &up.url("/q"), &extra)
    );
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let b = body("ünï");
    assert_eq!(post(&client(), &gw.url("/q"), &sign("paylent", SECRET, &b, "", 0), b).await.status, 202);
    let deadline = Instant::now() + Duration::from_secs(20);
    while up.count() == 0 {
        assert!(Instant::now() < deadline, "the queued delivery never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = &up.seen()[0];
    assert_eq!(s.headers["portcullis-idempotency-key"], "/q:%C3%BCn%C3%AF");
    assert_eq!(s.headers["webhook-id"], "/q:%C3%BCn%C3%AF");
    standardwebhooks::Webhook::new(INTERNAL).unwrap().verify(&s.body, &s.headers).unwrap();
    drop(gw);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_http10_upstreams_answer_goes_back_as_the_gateways_http11() {
    // An upstream that speaks HTTP/1.0 over a raw socket.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                // The head, then as many body bytes as it announces.
                loop {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    let gw = TestGateway::start(
        &config(&[route("/p", "paylent", &[SECRET], &format!("http://{upstream}/p"), "")]),
        Clock::System,
    )
    .await;
    let head = "POST /p HTTP/1.1\r\nHost: gw\r\nConnection: close";
    let answer = exchange(gw.addr, &raw_request(head, "evt_http10")).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
}

/// `portcullis echo` on port 0, and the address it bound.
struct Echo(std::process::Child, std::net::SocketAddr);

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_echo_upstream_answers_json_with_a_json_content_type() {
    let mut child = Command::new(bin())
        .args(["echo", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("echo exited before listening").unwrap();
        if let Some(a) = line.strip_prefix("echo upstream listening on ") {
            break a.parse().unwrap();
        }
    };
    let echo = Echo(child, addr);
    let a = post(&client(), &format!("http://{}/x", echo.1), &[], "{}").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["received"], true);
}

/// Runs the binary with its stdout a pipe whose reader is already gone; returns the exit
/// status and stderr. Nothing the command writes can land in a buffer first.
fn run_into_closed_pipe(args: &[&str]) -> (std::process::ExitStatus, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn commands_printing_into_a_closed_pipe_exit_0_without_a_panic() {
    let dir = std::env::temp_dir().join(format!(
        "portcullis-pipe-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let body = dir.join("body.json");
    std::fs::write(&body, "{\"event_id\":\"e\"}").unwrap();
    let body = body.to_str().unwrap();
    let config = dir.join("gateway.yaml");
    std::fs::write(&config, self::config(&[route("/p", "paylent", &[SECRET], "http://127.0.0.1:1/", "")]))
        .unwrap();
    let (name, value) = sign("paylent", "s", b"{\"event_id\":\"e\"}", "", 0).remove(0);
    let header = format!("{name}: {value}");
    let commands: [&[&str]; 5] = [
        &["providers"],
        &["providers", "--json"],
        &["sign", "--provider", "paylent", "--secret", "s", "--body-file", body],
        &["verify", "--provider", "paylent", "--secret", "s", "--body-file", body, "--header", &header],
        &["check", "--config", config.to_str().unwrap()],
    ];
    for args in commands {
        let (status, stderr) = run_into_closed_pipe(args);
        assert!(status.success(), "{args:?}: {status}, stderr: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: nothing on stderr, got: {stderr}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn providers_json_into_a_reader_that_closes_after_one_line_exits_0_quietly() {
    let mut child = Command::new(bin())
        .args(["providers", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert_eq!(first, "[\n");
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "providers did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
}

#[test]
fn providers_json_is_structured_per_field() {
    let out = Command::new(bin()).args(["providers", "--json"]).output().unwrap();
    assert!(out.status.success());
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let by = |name: &str| list.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{name}")).clone();
    let stripe = by("stripe");
    assert_eq!(stripe["signature"]["headers"], serde_json::json!(["stripe-signature"]));
    assert_eq!(stripe["signature"]["format"], "key-value");
    assert_eq!(stripe["signature"]["algorithm"], "hmac-sha256");
    assert_eq!(stripe["signature"]["encoding"], "hex");
    assert_eq!(stripe["signature"]["payload"], "{timestamp}.{body}");
    assert_eq!(stripe["timestamp"]["source"], "signature");
    assert_eq!(stripe["timestamp"]["tolerance_secs"], 300);
    assert_eq!(stripe["timestamp"]["check"], true);
    assert_eq!(stripe["id"]["source"], "json");
    assert_eq!(stripe["id"]["json"], serde_json::json!(["/id"]));
    assert!(stripe["docs"].is_string());
    let paylent = by("paylent");
    assert_eq!(paylent["signature"]["prefix"], "sha256=");
    assert!(paylent["timestamp"].is_null());
    assert_eq!(paylent["methods"], serde_json::json!(["POST"]));
    let sw = by("standard-webhooks");
    assert_eq!(
        sw["id"],
        serde_json::json!({"source": "header", "header": "webhook-id", "header_aliases": [], "json": []})
    );
    assert_eq!(by("shopify")["id"]["header_aliases"], serde_json::json!(["x-shopify-webhook-id"]));
    // What each scheme protects, derived from the profile.
    assert_eq!(stripe["security"]["integrity"], "body");
    assert_eq!(stripe["security"]["replay_window_secs"], 300);
    assert_eq!(stripe["security"]["id_signed"], true);
    let gitlab = by("gitlab");
    assert_eq!(gitlab["signature"]["algorithm"], "token");
    assert_eq!(gitlab["security"]["integrity"], "none");
    assert!(gitlab["security"]["replay_window_secs"].is_null());
    let paypal = by("paypal");
    assert!(paypal["signature"].is_null(), "a certificate scheme's certificate fixes what is signed");
    assert_eq!(paypal["certificate"]["scheme"], "paypal");
    assert_eq!(by("docusign")["signature"]["header_set"], "numbered");
    assert_eq!(by("sumsub")["signature"]["algorithm_header"]["header"], "x-payload-digest-alg");
    assert_eq!(by("mailgun-routes")["signature"]["form"], "signature");
    assert_eq!(sw["timestamp"]["header"], "webhook-timestamp");
    assert!(list.iter().any(|p| p["nonce"].is_string()), "a profile with a replay nonce (mailgun)");
    for p in &list {
        for field in
            ["name", "title", "docs", "assumptions", "signature", "secret", "timestamp", "id", "nonce"]
        {
            assert!(p.get(field).is_some(), "{} lacks {field}", p["name"]);
        }
    }
}

#[tokio::test]
async fn a_senders_forwarded_and_x_real_ip_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let gw =
        TestGateway::start(&config(&[route("/p", "paylent", &[SECRET], &up.url("/p"), "")]), Clock::System)
            .await;
    let head = "POST /p HTTP/1.1\r\nHost: gw.internal\r\nConnection: close\r\n\
        Forwarded: for=6.6.6.6;host=evil\r\nX-Real-IP: 6.6.6.6\r\nX_Real_IP: 6.6.6.7\r\nX-Kept: yes";
    let answer = exchange(gw.addr, &raw_request(head, "evt_claims")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    for name in ["forwarded", "x-real-ip", "x_real_ip"] {
        assert!(h.get(name).is_none(), "{name} forwarded: {h:?}");
    }
    assert!(!format!("{h:?}").contains("6.6.6."), "{h:?}");
    // The gateway's own view is what the upstream gets.
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-host"], "gw.internal");
    assert_eq!(h["x-kept"], "yes");
}
