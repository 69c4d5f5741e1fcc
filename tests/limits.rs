//! Request-path limits, client addresses and configuration findings of issue #12: slow
//! unsigned bodies, IPv4 senders on an IPv6 listener, the allowlist before variants, a ttl
//! shorter than the replay window, and passwords in what `check` prints.

use crate::util::bin;
use std::process::Command;

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
