//! `--log-format json`: stderr carries JSON lines only (the startup summary, every delivery
//! line, a fatal error), never colour codes.

use crate::util::*;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    assert!(!stderr.contains('\u{1b}'), "no ANSI escapes: {stderr}");
    stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_json_lines_only_from_start_to_exit() {
    let up = Upstream::start().await;
    let dir = std::env::temp_dir().join(format!(
        "portcullis-logs-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gateway.yaml");
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nroutes:\n{}",
        route("/p", "paylent", &["log-secret"], &up.url("/p"), "")
    );
    std::fs::write(&config, yaml).unwrap();
    let mut child = Command::new(bin())
        .args(["--log-format", "json", "serve", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("listening").unwrap();
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.to_string();
        }
    };
    let c = client();
    let body = br#"{"event":"x","event_id":"log1"}"#.to_vec();
    let ok = post(&c, &format!("http://{addr}/p"), &sign("paylent", "log-secret", &body, "", 0), body).await;
    assert_eq!(ok.status, 200);
    let forged = br#"{"event":"x","event_id":"log2"}"#.to_vec();
    let bad = post(&c, &format!("http://{addr}/p"), &sign("paylent", "wrong", &forged, "", 0), forged).await;
    assert_eq!(bad.status, 401);
    let missing = send(
        &c,
        http::Method::GET,
        &format!("http://{addr}/nowhere?x=1"),
        &[("user-agent".into(), "probe/1.0".into())],
        Vec::new(),
    )
    .await;
    assert_eq!(missing.status, 404);
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(child.wait().unwrap().success());
    let events = json_lines(&stderr);
    let message = |m: &str| events.iter().filter(|e| e["message"] == m).count();
    assert_eq!(message("configuration loaded"), 1, "{stderr}");
    assert_eq!(message("route"), 1, "{stderr}");
    assert_eq!(message("delivery"), 3, "{stderr}");
    // Each delivery line: client, method, path, user agent, request id, a rounded latency;
    // what is unknown is absent, never "-".
    let deliveries: Vec<&serde_json::Value> = events.iter().filter(|e| e["message"] == "delivery").collect();
    for d in &deliveries {
        assert_eq!(d["client"], "127.0.0.1", "{d}");
        assert!(d["request_id"].as_str().is_some_and(|r| !r.is_empty()), "{d}");
        let ms = d["latency_ms"].as_f64().expect("latency_ms is a number");
        assert_eq!((ms * 1000.0).round() / 1000.0, ms, "rounded to the microsecond: {d}");
        assert!(!d.as_object().unwrap().values().any(|v| v == "-"), "no placeholder: {d}");
    }
    let ok_line = deliveries.iter().find(|d| d["outcome"] == "forwarded").expect("the forwarded line");
    assert_eq!(ok_line["method"], "POST");
    assert_eq!(ok_line["path"], "/p");
    assert_eq!(ok_line["route"], "/p");
    assert_eq!(ok_line["provider"], "paylent");
    assert!(ok_line["key"].is_string(), "{ok_line}");
    let forged_line = deliveries.iter().find(|d| d["outcome"] == "invalid_signature").unwrap();
    assert!(forged_line.get("key").is_none(), "no key before verification: {forged_line}");
    let not_found = deliveries.iter().find(|d| d["outcome"] == "not_found").expect("the 404 line");
    assert_eq!(not_found["path"], "/nowhere", "{not_found}");
    assert_eq!(not_found["method"], "GET");
    assert_eq!(not_found["user_agent"], "probe/1.0");
    assert_eq!(not_found["status"], 404);
    for absent in ["route", "provider", "key", "secret_index", "trace_id"] {
        assert!(not_found.get(absent).is_none(), "{absent} absent: {not_found}");
    }
    assert!(!stderr.contains("log-secret"), "no secret in the logs");

    // A fatal error is a JSON line too.
    std::fs::write(&config, "listen: 127.0.0.1:0\nroutes: []\n").unwrap();
    let out = Command::new(bin())
        .args(["--log-format", "json", "serve", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let events = json_lines(&String::from_utf8(out.stderr).unwrap());
    assert!(events.iter().any(|e| e["error"].as_str().is_some_and(|m| m.contains("at least one route"))));
    let _ = std::fs::remove_dir_all(&dir);
}
