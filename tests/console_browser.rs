//! The operator's console: its sign-in (the session cookie authenticates like a bearer token,
//! and a call it authenticates that changes something needs this listener's own `Origin`),
//! its static files (types, a strict CSP), and the whole console driven in a real browser
//! (Debian's chromium through playwright-core, `tests/browser/console.mjs`).

use crate::util::process::GatewayProcess;
use crate::util::*;
use http::{Method, StatusCode};
use portcullis::clock::Clock;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SECRET: &str = "browser-route-secret";
const TOKEN: &str = "token-console-0123456789";
const OTHER_TOKEN: &str = "token-console-rotated-99";

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

async fn gateway_with_tokens() -> (TestGateway, Upstream) {
    let up = Upstream::start().await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n  token: [{OTHER_TOKEN:?}, {TOKEN:?}]\nroutes:\n{}",
        route("/p", "paylent", &[SECRET], &up.url("/p"), "")
    );
    (TestGateway::start(&yaml, Clock::System).await, up)
}

/// The `portcullis_session=...` pair of a `Set-Cookie` answer, and the whole header.
fn set_cookie(a: &Answer) -> (String, String) {
    let header = a.headers.get("set-cookie").expect("a Set-Cookie header").to_str().unwrap().to_string();
    let pair = header.split(';').next().unwrap().trim().to_string();
    (pair, header)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_authenticates_like_the_bearer_token() {
    let (gw, _up) = gateway_with_tokens().await;
    let c = client();
    let admin = gw.admin.to_string();
    let url = |p: &str| format!("http://{admin}{p}");
    let json = [("content-type", "application/json")];

    // Not signed in: the state says a token is needed; the API refuses.
    let a = send(&c, Method::GET, &url("/api/session"), &[], "").await;
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!((v["signed_in"].as_bool(), v["token_required"].as_bool()), (Some(false), Some(true)), "{v}");

    // A wrong token: 401, no cookie.
    let a = post(&c, &url("/api/session"), &h(&json), r#"{"token":"token-wrong-wrong-wrong"}"#).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
    assert!(a.headers.get("set-cookie").is_none());
    // Not JSON: refused before anything (the listener's JSON-only rule).
    let a = post(&c, &url("/api/session"), &h(&[("content-type", "text/plain")]), TOKEN).await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // The right one (the second configured): 204 and an HttpOnly, SameSite=Strict cookie that
    // does not hold the token.
    let a = post(&c, &url("/api/session"), &h(&json), format!(r#"{{"token":"{TOKEN}"}}"#)).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
    let (cookie, header) = set_cookie(&a);
    assert!(cookie.starts_with("portcullis_session=") && cookie.len() > 40, "{header}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(header.contains(attr), "{attr} in {header}");
    }
    assert!(!header.contains("Secure"), "the listener is plain HTTP: {header}");
    assert!(!header.contains(TOKEN), "{header}");

    // The cookie reads the API and says who is signed in.
    let with_cookie = h(&[("cookie", &format!("theme=dark; {cookie}"))]);
    let a = send(&c, Method::GET, &url("/api/session"), &with_cookie, "").await;
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!((v["signed_in"].as_bool(), v["actor"].as_str()), (Some(true), Some("token#1")), "{v}");
    for path in ["/api/deliveries", "/api/routes", "/queue"] {
        let a = send(&c, Method::GET, &url(path), &with_cookie, "").await;
        assert!(
            a.status != StatusCode::UNAUTHORIZED && a.status != StatusCode::FORBIDDEN,
            "{path}: {}",
            a.text()
        );
    }
    // A forged or stale cookie is refused.
    let forged = h(&[(
        "cookie",
        "portcullis_session=00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff",
    )]);
    assert_eq!(
        send(&c, Method::GET, &url("/api/deliveries"), &forged, "").await.status,
        StatusCode::UNAUTHORIZED
    );
    // The cookie is not a bearer token.
    let value = cookie.trim_start_matches("portcullis_session=");
    let bearer = h(&[("authorization", &format!("Bearer {value}"))]);
    assert_eq!(
        send(&c, Method::GET, &url("/api/deliveries"), &bearer, "").await.status,
        StatusCode::UNAUTHORIZED
    );

    // A call that changes something, authenticated by the cookie alone: only with this
    // listener's own Origin.
    let mutate = |origin: Option<&str>| {
        let mut headers = with_cookie.clone();
        headers.extend(h(&json));
        if let Some(o) = origin {
            headers.extend(h(&[("origin", o)]));
        }
        headers
    };
    let a = post(&c, &url("/api/dead-letters/replay"), &mutate(None), "{}").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "no Origin: {}", a.text());
    let a = post(&c, &url("/api/dead-letters/replay"), &mutate(Some("http://evil.example")), "{}").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "a foreign Origin: {}", a.text());
    let own = format!("http://{admin}");
    let a = post(&c, &url("/api/dead-letters/replay"), &mutate(Some(&own)), "{}").await;
    assert!(
        a.status != StatusCode::UNAUTHORIZED && a.status != StatusCode::FORBIDDEN,
        "own Origin: {}",
        a.text()
    );
    // With a bearer token, no Origin is needed (no browser attaches one by itself).
    let mut headers = h(&[("authorization", &format!("Bearer {TOKEN}"))]);
    headers.extend(h(&json));
    let a = post(&c, &url("/api/dead-letters/replay"), &headers, "{}").await;
    assert!(
        a.status != StatusCode::UNAUTHORIZED && a.status != StatusCode::FORBIDDEN,
        "bearer: {}",
        a.text()
    );

    // Sign-out expires the cookie.
    let a = send(&c, Method::DELETE, &url("/api/session"), &with_cookie, "").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let (pair, header) = set_cookie(&a);
    assert_eq!(pair, "portcullis_session=");
    assert!(header.contains("Max-Age=0"), "{header}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_with_a_strict_policy_and_no_token() {
    let (gw, _up) = gateway_with_tokens().await;
    let c = client();
    for (path, ty) in [
        ("/", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/app.css", "text/css; charset=utf-8"),
    ] {
        let a = send(&c, Method::GET, &format!("http://{}{path}", gw.admin), &[], "").await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert_eq!(a.headers["content-type"], ty);
        assert!(a.headers["content-security-policy"].to_str().unwrap().starts_with("default-src 'self'"));
        assert_eq!(a.headers["cache-control"], "no-cache");
        assert_eq!(a.headers["x-frame-options"], "DENY");
    }
    let a = send(&c, Method::GET, &format!("http://{}/console/nothing.js", gw.admin), &[], "").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_console_needs_no_sign_in() {
    let up = Upstream::start().await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nroutes:\n{}",
        route("/p", "paylent", &[SECRET], &up.url("/p"), "")
    );
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let a = send(&client(), Method::GET, &format!("http://{}/api/session", gw.admin), &[], "").await;
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["signed_in"], true, "{v}");
    assert_eq!(v["token_required"], false, "{v}");
    assert_eq!(v["actor"], "loopback", "{v}");
}

/// Why the browser test cannot run here, or `None` when node, chromium and playwright-core
/// are all present.
fn browser_missing(dir: &Path) -> Option<String> {
    let chromium = std::env::var("PORTCULLIS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!("no chromium at {chromium} (apt-get install chromium)"));
    }
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("no node on PATH".into());
    }
    if !dir.join("node_modules/playwright-core").exists() {
        return Some(format!(
            "no {}/node_modules/playwright-core (npm ci --prefix tests/browser)",
            dir.display()
        ));
    }
    None
}

/// Headers and body of one delivery for the browser script to send through the gateway.
fn delivery(name: &str, url: String, secret: &str, event_id: &str) -> Value {
    let body = format!(r#"{{"event":"invoice.paid","event_id":"{event_id}","amount":4200}}"#);
    let headers = sign("paylent", secret, body.as_bytes(), "", 0);
    serde_json::json!({ "name": name, "url": url, "headers": headers, "body": body })
}

/// The whole console in chromium: see tests/browser/console.mjs for the steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if let Some(why) = browser_missing(&dir) {
        if std::env::var("PORTCULLIS_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
            panic!("the browser test cannot run: {why}");
        }
        eprintln!("skipping the_console_in_a_real_browser: {why}");
        return;
    }
    let good = Upstream::start().await;
    let failing = Upstream::start().await;
    failing.set_down(true);
    let dead = Upstream::start().await;
    dead.set_down(true);
    let store = std::env::temp_dir().join(format!("portcullis-console-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&store).unwrap();
    let capture = "    capture: all\n";
    let queued = "    delivery: queued\n    timeout: 1s\n    lease: 2s\n    queue:\n      backoff: 50ms\n      max_backoff: 50ms\n      max_attempts: 2\n";
    let yaml = format!(
        "listen: 127.0.0.1:0\nstore:\n  kind: embedded\n  path: {:?}\nadmin:\n  listen: 127.0.0.1:0\n  token: [{TOKEN:?}]\nroutes:\n{}{}{}",
        store.join("claims.redb").display().to_string(),
        route("/payments", "paylent", &[SECRET], &good.url("/payments"), capture),
        route("/invoices", "paylent", &[SECRET], &failing.url("/invoices"), capture),
        route("/ledger", "paylent", &[SECRET], &dead.url("/ledger"), &format!("{capture}{queued}")),
    );
    let gw = GatewayProcess::start(&yaml);
    let admin = gw.admin_url();

    // A dead letter for the dead-letters page: a queued delivery whose upstream never answers.
    let c = client();
    let d = delivery("queued", gw.url("/ledger"), SECRET, "evt_ledger_1");
    let headers: Vec<(String, String)> = serde_json::from_value(d["headers"].clone()).unwrap();
    let a = post(&c, &gw.url("/ledger"), &headers, d["body"].as_str().unwrap().to_string()).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    let deadline = Deadline::new("a dead letter", Duration::from_secs(20));
    loop {
        let bearer = h(&[("authorization", &format!("Bearer {TOKEN}"))]);
        let a = send(&c, Method::GET, &format!("{admin}/queue/dead"), &bearer, "").await;
        let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
        if v.as_array().is_some_and(|l| !l.is_empty()) {
            break;
        }
        deadline.tick().await;
    }

    let deliveries = serde_json::json!([
        delivery("forged", gw.url("/payments"), "forged-secret-000", "evt_forged_1"),
        delivery("genuine", gw.url("/payments"), SECRET, "evt_genuine_1"),
        delivery("failing", gw.url("/invoices"), SECRET, "evt_failing_1"),
    ]);
    // The README's screenshots are refreshed on request; otherwise they go to target/.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let docs = match std::env::var_os("PORTCULLIS_UPDATE_SCREENSHOTS") {
        Some(_) => root.join("docs"),
        None => root.join("target").join("console-screenshots"),
    };
    std::fs::create_dir_all(&docs).unwrap();
    let mut child = tokio::process::Command::new("node")
        .arg(dir.join("console.mjs"))
        .env("CONSOLE_ADMIN_URL", &admin)
        .env("CONSOLE_TOKEN", TOKEN)
        .env("CONSOLE_DELIVERIES", deliveries.to_string())
        .env("CONSOLE_SCREENSHOTS", &docs)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    // The script asks, on its standard output, for the failing upstream to be fixed; the
    // answer goes back on its standard input.
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut transcript = String::new();
    let run = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            eprintln!("console.mjs: {line}");
            transcript.push_str(&line);
            transcript.push('\n');
            if line.trim() == "FIX_UPSTREAM" {
                failing.set_down(false);
                stdin.write_all(b"fixed\n").await.unwrap();
                stdin.flush().await.unwrap();
            }
        }
        child.wait().await.unwrap()
    };
    let status = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser test ends in 3 minutes");
    assert!(status.success(), "console.mjs failed:\n{transcript}");
    // The replay reached the fixed upstream with the bytes that first arrived.
    let replayed: Vec<_> = failing.seen().into_iter().filter(|s| s.status == 200).collect();
    assert_eq!(replayed.len(), 1, "one delivery after the fix");
    assert!(String::from_utf8_lossy(&replayed[0].body).contains("evt_failing_1"));
    let _ = gw.terminate();
    let _ = std::fs::remove_dir_all(store);
}
