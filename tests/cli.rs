//! The command line: verify, sign, check, providers, health, and the shared test vectors.

use crate::util::bin;
use base64::Engine;
use std::io::Write;
use std::process::{Command, Stdio};

fn run(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    run_env(args, &[], stdin)
}

fn run_env(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(bin())
        .args(args)
        .env_remove("PORTCULLIS_CONFIG")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that exits without reading its input closes the pipe first: not a failure.
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every vector of a file, driven through `portcullis verify` as `run_vectors.py` does.
fn run_vector_file(path: &str) -> (usize, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap();
    let vectors: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let dir = tempdir();
    let mut failures = Vec::new();
    for (i, v) in vectors.iter().enumerate() {
        let body = base64::engine::general_purpose::STANDARD.decode(v["body_b64"].as_str().unwrap()).unwrap();
        let body_path = dir.join(format!("body{i}"));
        std::fs::write(&body_path, body).unwrap();
        let now = v["now"].as_u64().unwrap().to_string();
        let mut args: Vec<String> = vec![
            "verify".into(),
            "--provider".into(),
            v["provider"].as_str().unwrap().into(),
            "--method".into(),
            v["method"].as_str().unwrap().into(),
            "--url".into(),
            v["url"].as_str().unwrap().into(),
            "--now".into(),
            now,
            "--body-file".into(),
            body_path.display().to_string(),
        ];
        for s in v["secrets"].as_array().unwrap() {
            args.extend(["--secret".into(), s.as_str().unwrap().into()]);
        }
        for h in v["headers"].as_array().unwrap() {
            args.extend([
                "--header".into(),
                format!("{}: {}", h[0].as_str().unwrap(), h[1].as_str().unwrap()),
            ]);
        }
        // Certificate-URL schemes: the certificate each URL serves, and the test CA.
        for (j, (url, pem)) in v["certificates"].as_object().into_iter().flatten().enumerate() {
            let path = dir.join(format!("cert{i}-{j}.pem"));
            std::fs::write(&path, pem.as_str().unwrap()).unwrap();
            args.extend(["--certificate".into(), format!("{url}={}", path.display())]);
        }
        if let Some(ca) = v["test_ca"].as_str() {
            let path = dir.join(format!("ca{i}.pem"));
            std::fs::write(&path, ca).unwrap();
            args.extend(["--test-ca".into(), path.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, err) = run(&args, b"");
        let want = if v["expect"] == "valid" { 0 } else { 1 };
        if code != want {
            failures.push(format!("{}: expected {want}, got {code}: {err}", v["name"]));
        }
    }
    (vectors.len(), failures)
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "portcullis-test-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn shared_provider_vectors_pass() {
    let (n, failures) =
        run_vector_file(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/shared-providers.json"));
    assert!(n >= 37);
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The catalog's vector files: `tests/vectors/catalog*.json`, one per generator.
fn catalog_files() -> Vec<std::path::PathBuf> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("catalog") && name.ends_with(".json")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_builtin_profile_has_passing_vectors() {
    let mut n = 0;
    let mut failures = Vec::new();
    let mut vectors: Vec<serde_json::Value> = Vec::new();
    for path in catalog_files() {
        let path = path.display().to_string();
        let (count, mut failed) = run_vector_file(&path);
        n += count;
        failures.append(&mut failed);
        vectors.extend(
            serde_json::from_str::<Vec<serde_json::Value>>(&std::fs::read_to_string(&path).unwrap()).unwrap(),
        );
    }
    assert!(failures.is_empty(), "{failures:#?}");
    let (_, listing, _) = run(&["providers", "--json"], b"");
    let profiles: Vec<serde_json::Value> = serde_json::from_str(&listing).unwrap();
    assert!(profiles.len() >= 90, "at least 90 built-in profiles, found {}", profiles.len());
    let names: Vec<&str> = profiles.iter().map(|p| p["name"].as_str().unwrap()).collect();
    // The names the catalog promises, exactly as `--provider` takes them.
    for required in [
        "sendgrid",
        "discord",
        "telnyx",
        "twitch",
        "meta",
        "twitter",
        "gitlab",
        "telegram",
        "netlify",
        "recurly",
        "revolut",
        "paystack",
        "mollie",
        "xendit",
        "postmark",
        "chargebee",
        "okta",
        "cloudflare",
        "bitbucket",
        "sentry",
        "mux",
        "clerk",
        "resend",
        "workos",
        "webflow",
        "cashfree",
        "onfido",
        "intuit",
        "xero",
        "zendesk",
        "box",
        "docusign",
        "dropbox",
        "trello",
        "clickup",
        "airtable",
        "heroku",
        "circleci",
        "openai",
        "replicate",
        "paymongo",
        "vonage",
        "frameio",
        "sanity",
        "persona",
        "customerio",
        "helpscout",
        "alchemy",
        "mandrill",
        "wise",
        "paypal",
        "amazon-sns",
    ] {
        assert!(names.contains(&required), "the built-in profile {required} is missing");
    }
    let shared: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/shared-providers.json"))
            .unwrap(),
    )
    .unwrap();
    let all: Vec<&serde_json::Value> = vectors.iter().chain(shared.iter()).collect();
    for p in &profiles {
        let name = p["name"].as_str().unwrap();
        let of = |expect: &str| all.iter().filter(|v| v["provider"] == name && v["expect"] == expect).count();
        assert!(
            of("valid") >= 2 && of("invalid") >= 3,
            "profile {name} lacks vectors: {} valid, {} invalid",
            of("valid"),
            of("invalid")
        );
    }
    assert!(n > 200);
}

#[test]
fn explain_says_what_would_have_matched() {
    // Signed with a previous secret, and the body re-serialised on the way.
    let compact = br#"{"a":1,"event_id":"e1"}"#;
    let (_, out, _) = run(&["sign", "--provider", "paylent", "--secret", "old"], compact);
    let header = out.lines().next().unwrap().to_string();
    let (code, _, err) = run(
        &[
            "verify",
            "--provider",
            "paylent",
            "--secret",
            "new",
            "--secret",
            "old",
            "--explain",
            "--header",
            &header,
        ],
        b"{\n  \"a\": 1,\n  \"event_id\": \"e1\"\n}",
    );
    assert_eq!(code, 1);
    assert!(err.contains("read header x-paylent-signature"), "{err}");
    assert!(err.contains("tried secret(s) [0, 1]"), "{err}");
    assert!(err.contains("secret 1 matches the body re-serialised"), "{err}");
}

#[test]
fn verify_exit_codes() {
    let body = b"{\"event_id\":\"e1\"}";
    let (code, out, _) = run(&["sign", "--provider", "paylent", "--secret", "s"], body);
    assert_eq!(code, 0);
    let header = out.lines().next().unwrap().to_string();
    assert!(header.starts_with("x-paylent-signature: sha256="), "{header}");

    let (code, out, _) =
        run(&["verify", "--provider", "paylent", "--secret", "s", "--header", &header], body);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("event id e1"));
    let (code, _, err) =
        run(&["verify", "--provider", "paylent", "--secret", "t", "--header", &header], body);
    assert_eq!(code, 1);
    assert!(err.contains("no configured secret"), "{err}");
    assert!(!err.contains(&header[28..]), "the signature value is never printed");
    let (code, _, _) = run(&["verify", "--provider", "nope", "--secret", "s"], body);
    assert_eq!(code, 2);
    let (code, _, _) = run(&["verify", "--provider", "paylent"], body);
    assert_eq!(code, 2, "missing --secret is a usage error");
    let (code, _, _) =
        run(&["verify", "--provider", "paylent", "--secret", "s", "--header", "no colon"], body);
    assert_eq!(code, 2);
}

#[test]
fn sign_then_verify_with_timestamps() {
    let (code, out, _) =
        run(&["sign", "--provider", "stripe", "--secret", "whsec_x", "--timestamp", "1000"], b"{}");
    assert_eq!(code, 0);
    let header = out.lines().next().unwrap();
    let ok = run(
        &["verify", "--provider", "stripe", "--secret", "whsec_x", "--now", "1100", "--header", header],
        b"{}",
    );
    assert_eq!(ok.0, 0, "{}", ok.2);
    let stale = run(
        &["verify", "--provider", "stripe", "--secret", "whsec_x", "--now", "2000", "--header", header],
        b"{}",
    );
    assert_eq!(stale.0, 1);
    assert!(stale.2.contains("old"), "{}", stale.2);
}

#[test]
fn check_reports_file_and_key() {
    let dir = tempdir();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "listen: 127.0.0.1:0\nroutes:\n  - path: /p\n    provider: nosuch\n    secrets: [a]\n    upstream: http://127.0.0.1:1/\n",
    )
    .unwrap();
    let (code, _, err) = run(&["check", "--config", bad.to_str().unwrap()], b"");
    assert_eq!(code, 1);
    assert!(err.contains("bad.yaml") && err.contains("routes[0]") && err.contains("nosuch"), "{err}");

    let (code, out, err) =
        run(&["check", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml")], b"");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok:"), "{out}");
}

#[test]
fn providers_lists_the_builtins() {
    let (code, out, _) = run(&["providers"], b"");
    assert_eq!(code, 0);
    for p in ["paylent", "paymento", "payable", "paysafe", "paynetworx", "stripe", "github", "svix"] {
        assert!(out.contains(p), "{p} missing from\n{out}");
    }
    let (code, out, _) = run(&["providers", "--json"], b"");
    assert_eq!(code, 0);
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert!(list.len() >= 11);
}

#[test]
fn providers_readme_documents_every_profile() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/providers/README.md")).unwrap();
    for p in portcullis::verify::profile::ProfileSet::builtin().iter() {
        assert!(
            readme.contains(&format!("\n### {}\n", p.name)),
            "providers/README.md lacks a section for {}",
            p.name
        );
        assert!(p.docs.is_some(), "{} names no source", p.name);
    }
}

/// `bin args` with stderr the write end of a pipe whose read end is already closed.
fn run_with_closed_stderr(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(writer)
        .output()
        .unwrap()
}

#[test]
fn a_failing_command_with_a_closed_stderr_exits_1_without_a_panic() {
    let dir = tempdir();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "listen: 127.0.0.1:0\nroutes: [\n").unwrap();
    let out = run_with_closed_stderr(&["check", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // `verify` reports an invalid signature on stderr: exit 1 too, not 101.
    let out = run_with_closed_stderr(&[
        "verify",
        "--provider",
        "paylent",
        "--secret",
        "s",
        "--header",
        "x-paylent-signature: sha256=00",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // A usage error: 2.
    let out = run_with_closed_stderr(&["verify", "--provider", "nosuch", "--secret", "s"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

fn check_upstream(upstream: &str) -> (i32, String, String) {
    let dir = tempdir();
    let cfg = dir.join("gw.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:0\nroutes:\n  - path: /p\n    provider: paylent\n    secrets: [a]\n    upstream: {upstream}\n"
        ),
    )
    .unwrap();
    run(&["check", "--config", cfg.to_str().unwrap()], b"")
}

#[test]
fn config_errors_about_an_upstream_never_print_its_password() {
    for url in [
        "ws://user:hunter2secret@127.0.0.1:1/",
        "http://user:hunter2secret@127.0.0.1:1/?a=b",
        "ftp://user:hunter2secret@127.0.0.1/",
        "http://user:hunter2secret@127.0.0.1:99999/",
        "http://user:hunter2secret@127.0.0.1:1/a b",
    ] {
        let (code, out, err) = check_upstream(url);
        assert_eq!(code, 1, "{url}: {out}{err}");
        assert!(err.contains("upstream"), "{url}: {err}");
        assert!(!out.contains("hunter2secret") && !err.contains("hunter2secret"), "{url}: {out}{err}");
    }
}

#[test]
fn check_refuses_an_upstream_port_that_does_not_fit_in_u16() {
    for port in ["99999", "65536", "1x"] {
        let (code, out, err) = check_upstream(&format!("http://127.0.0.1:{port}/"));
        assert_eq!(code, 1, "{port}: {out}{err}");
        assert!(err.contains("port"), "{port}: {err}");
    }
    let (code, _, err) = check_upstream("http://127.0.0.1:65535/");
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = check_upstream("http://[::1]/");
    assert_eq!(code, 0, "{err}");
}

#[test]
fn portcullis_config_supplies_the_config_flag() {
    let dir = tempdir();
    let cfg = dir.join("gw.yaml");
    std::fs::write(
        &cfg,
        "listen: 127.0.0.1:0\nroutes:\n  - path: /p\n    provider: paylent\n    secrets: [a]\n    upstream: http://127.0.0.1:1/\n",
    )
    .unwrap();
    let (code, out, err) = run_env(&["check"], &[("PORTCULLIS_CONFIG", cfg.to_str().unwrap())], b"");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok:"), "{out}");
    let (code, _, err) = run(&["check"], b"");
    assert_eq!(code, 2, "no config at all is a usage error");
    assert!(err.contains("--config"), "{err}");
}

#[test]
fn verify_takes_secrets_from_a_route_of_the_config_or_from_files() {
    let body = b"{\"event_id\":\"e1\"}";
    let (_, out, _) = run(&["sign", "--provider", "paylent", "--secret", "current"], body);
    let header = out.lines().next().unwrap().to_string();
    let dir = tempdir();
    std::fs::write(dir.join("current"), "current\n").unwrap();
    let cfg = dir.join("gw.yaml");
    std::fs::write(
        &cfg,
        "listen: 127.0.0.1:0\nroutes:\n  - path: /pay\n    name: payments\n    provider: paylent\n    secrets: [old]\n    secret_files: [current]\n    upstream: http://127.0.0.1:1/\n",
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    for route in ["/pay", "payments"] {
        let (code, out, err) = run(&["verify", "--config", c, "--route", route, "--header", &header], body);
        assert_eq!(code, 0, "{route}: {err}");
        assert!(out.contains("secret 1 matched"), "{out}");
    }
    let (code, _, _) =
        run_env(&["verify", "--route", "/pay", "--header", &header], &[("PORTCULLIS_CONFIG", c)], body);
    assert_eq!(code, 0, "the config from PORTCULLIS_CONFIG");
    let (code, _, err) = run(&["verify", "--config", c, "--route", "/nope", "--header", &header], body);
    assert_eq!(code, 2);
    assert!(err.contains("no route '/nope'") && err.contains("payments"), "{err}");
    let (code, _, err) =
        run(&["verify", "--config", c, "--route", "/pay", "--provider", "stripe", "--header", &header], body);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) =
        run(&["verify", "--config", c, "--route", "/pay", "--secret", "x", "--header", &header], body);
    assert_eq!(code, 2, "secrets come from one place: {err}");

    let file = dir.join("current");
    let (code, out, err) = run(
        &["verify", "--provider", "paylent", "--secret-file", file.to_str().unwrap(), "--header", &header],
        body,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("secret 0 matched"), "the trailing newline is not part of it: {out}");
    let missing = dir.join("missing");
    let (code, _, err) = run(
        &["verify", "--provider", "paylent", "--secret-file", missing.to_str().unwrap(), "--header", &header],
        body,
    );
    assert_eq!(code, 2);
    assert!(err.contains("--secret-file") && err.contains("missing"), "{err}");
}

#[test]
fn health_exits_0_on_a_healthy_admin_listener_and_1_with_a_reason_otherwise() {
    let gw = crate::util::process::GatewayProcess::start(
        "listen: 127.0.0.1:0\nadmin: {listen: 127.0.0.1:0}\nroutes:\n  - path: /p\n    provider: paylent\n    secrets: [a]\n    upstream: http://127.0.0.1:1/\n",
    );
    let (code, out, err) = run(&["health", "--admin", &gw.admin_url()], b"");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("healthy:"), "{out}");
    gw.terminate();

    // Nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (code, _, err) = run(&["health", "--admin", &url], b"");
    assert_eq!(code, 1);
    assert!(err.starts_with("unhealthy:") && err.trim().lines().count() == 1, "{err}");

    // A listener that never answers: the timeout decides.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let (code, _, err) = run(&["health", "--admin", &url, "--timeout", "300ms"], b"");
    assert_eq!(code, 1);
    assert!(err.contains("did not answer within 300ms"), "{err}");
    let (code, _, _) = run(&["health", "--admin", "nonsense"], b"");
    assert_eq!(code, 2);
}
