//! `portcullis check` reads the TLS files; `check --connect` reaches the store and each
//! upstream; `completions` and `man`.

use crate::util::redis::{redis_or_skip, RedisServer};
use crate::util::{bin, config, route, Upstream};
use std::path::{Path, PathBuf};
use std::process::Command;

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "portcullis-check-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the real binary off the runtime's threads, so an in-process upstream keeps serving.
async fn run(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(bin()).args(&args).env_remove("PORTCULLIS_CONFIG").output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn write_config(dir: &Path, yaml: &str) -> String {
    let path = dir.join("portcullis.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

/// A loopback port that refuses connections for as long as the socket lives: bound but not
/// listening, so nothing else can take the port during the test.
fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

fn redis_store(port: u16) -> String {
    format!("store:\n  kind: redis\n  url: redis://127.0.0.1:{port}\n  timeout: 2s\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_reaches_redis_and_the_upstreams() {
    if !redis_or_skip("connect_reaches_redis_and_the_upstreams") {
        return;
    }
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let dir = tempdir();
    let yaml = format!(
        "{}{}",
        config(&[
            route("/a", "paylent", &["s"], &up.url("/a"), ""),
            route("/b", "paylent", &["s"], &up.url("/b"), ""),
        ]),
        redis_store(redis.port)
    );
    let path = write_config(&dir, &yaml);
    let (code, out, err) = run(vec!["check".into(), "-c".into(), path, "--connect".into()]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("store redis://127.0.0.1:{}: ok (", redis.port)), "{out}");
    let authority = up.url("").trim_end_matches('/').to_owned();
    // Two routes to one upstream: one check.
    assert_eq!(out.matches(&format!("upstream {authority}: ok (")).count(), 1, "{out}");
    assert!(out.contains("ok: 2 routes valid"), "{out}");
    // Nothing was sent to the upstream: a TCP connect only.
    assert_eq!(up.count(), 0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_names_what_it_could_not_reach_and_exits_1() {
    let up = Upstream::start().await;
    let (_closed, closed) = refusing_port();
    let (_no_redis, no_redis) = refusing_port();
    let dir = tempdir();
    let yaml = format!(
        "{}{}",
        config(&[
            route("/a", "paylent", &["s"], &up.url("/a"), ""),
            route("/b", "paylent", &["s"], &format!("http://127.0.0.1:{closed}/b"), ""),
        ]),
        redis_store(no_redis)
    );
    let path = write_config(&dir, &yaml);
    let (code, out, err) =
        run(vec!["check".into(), "--config".into(), path.clone(), "--connect".into()]).await;
    assert_eq!(code, 1, "{out}{err}");
    let store =
        out.lines().find(|l| l.starts_with(&format!("store redis://127.0.0.1:{no_redis}: "))).expect(&out);
    assert!(!store.contains(": ok"), "{out}");
    assert!(out.contains(&format!("upstream http://127.0.0.1:{closed}: refused")), "{out}");
    assert!(out.contains(&format!("{}: ok (", up.url("").trim_end_matches('/'))), "{out}");
    assert!(out.contains("failed: 2 of 3 checks"), "{out}");
    // Without --connect nothing is reached: the configuration itself is valid.
    let (code, out, err) = run(vec!["check".into(), "--config".into(), path]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("refused"), "{out}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn check_reads_the_tls_files() {
    let dir = tempdir();
    let tls_config = |dir: &Path| {
        format!(
            "tls:\n  cert_file: {:?}\n  key_file: {:?}\n{}",
            dir.join("cert.pem"),
            dir.join("key.pem"),
            config(&[route("/a", "paylent", &["s"], "http://127.0.0.1:1/", "")])
        )
    };
    let path = write_config(&dir, &tls_config(&dir));
    // Missing certificate: found by check, before serve.
    let (code, out, err) = run(vec!["check".into(), "-c".into(), path.clone()]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("tls.cert_file") && err.contains("cert.pem"), "{err}");
    // Not a certificate.
    std::fs::write(dir.join("cert.pem"), "not a certificate\n").unwrap();
    std::fs::write(dir.join("key.pem"), "not a key\n").unwrap();
    let (code, _, err) = run(vec!["check".into(), "-c".into(), path.clone()]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("tls.cert_file") && err.contains("no certificate found"), "{err}");
    // A certificate with another certificate's key.
    let a = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.join("cert.pem"), a.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), b.signing_key.serialize_pem()).unwrap();
    let (code, _, err) = run(vec!["check".into(), "-c".into(), path.clone()]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("do not go together"), "{err}");
    // The pair that goes together.
    std::fs::write(dir.join("key.pem"), a.signing_key.serialize_pem()).unwrap();
    let (code, out, err) = run(vec!["check".into(), "-c".into(), path]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("tls ") && out.contains("cert.pem") && out.contains(": ok"), "{out}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn completions_and_man_page() {
    let (code, out, err) = run(vec!["completions".into(), "bash".into()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("serve") && out.contains("verify") && out.contains("--connect"), "{out}");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let (code, out, err) = run(vec!["completions".into(), shell.into()]).await;
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains("serve"), "{shell}: {out}");
    }
    let (code, _, err) = run(vec!["completions".into(), "tcsh".into()]).await;
    assert_eq!(code, 2, "{err}");
    let (code, out, err) = run(vec!["man".into()]).await;
    assert_eq!(code, 0, "{err}");
    // clap_mangen first defines the apostrophe string (`.ie \n(.g .ds Aq …`); the title
    // macro is the first macro after it.
    let first = out.lines().find(|l| l.starts_with('.') && !l.starts_with(".ie") && !l.starts_with(".el"));
    assert!(first.is_some_and(|l| l.starts_with(".TH portcullis 1")), "{out}");
    assert!(out.contains("completions") && out.contains("check"), "{out}");
}
