//! Configuration errors an operator can act on: "did you mean", the line of a semantic error,
//! sizes with units, durations without one, upstreams without a scheme, and expired secrets.

use portcullis::clock::Clock;
use portcullis::config::{Config, ConfigError};
use std::path::Path;

/// 2026-12-01T00:00:00Z.
const NOW: u64 = 1_796_083_200;

fn load_at(yaml: &str, now: u64) -> Result<Config, ConfigError> {
    Config::from_yaml_at("gw.yaml", yaml, Path::new("."), &|_| None, &Clock::Fixed(now))
}

fn error(yaml: &str) -> String {
    load_at(yaml, NOW).expect_err("the configuration is refused").to_string()
}

fn route(extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nroutes:\n  - path: /a\n    provider: paylent\n    secrets: [a]\n    upstream: http://h/\n  - path: /p\n    provider: paylent\n    secrets: [a]\n{extra}"
    )
}

#[test]
fn unknown_keys_and_providers_suggest_the_closest_name() {
    let e = error(&route("    upstream: http://h/\n    secret: x\n"));
    assert!(e.contains("unknown field `secret`") && e.contains("did you mean `secrets`?"), "{e}");
    let e = error("listen: 127.0.0.1:0\nrouts: []\n");
    assert!(e.contains("did you mean `routes`?") && e.contains("line 2"), "{e}");
    let e = error(
        &route("    upstream: http://h/\n")
            .replace("path: /p\n    provider: paylent", "path: /p\n    provider: stripee"),
    );
    assert!(e.contains("unknown provider 'stripee': did you mean 'stripe'?"), "{e}");
    assert!(e.contains("gw.yaml: line 8: routes[1] (route): provider:"), "{e}");
    let e = error(
        &route("    upstream: http://h/\n")
            .replace("listen: 127.0.0.1:0\n", "listen: 127.0.0.1:0\nstore: {kind: reddis}\n"),
    );
    assert!(e.contains("did you mean `redis`?"), "{e}");
    let e = error(&route("    upstream: http://h/\n    zzzz: 1\n"));
    assert!(!e.contains("did you mean"), "nothing close: no guess: {e}");
}

#[test]
fn semantic_errors_name_their_line() {
    // routes[1] starts on line 7; its missing upstream is reported there.
    let e = error(&route(""));
    assert_eq!(
        e,
        "gw.yaml: line 7: routes[1] (route): upstream: is needed (or destination: / destinations:)"
    );
    let e = error(&route("    upstream: http://h/\n    max_body: 0\n"));
    assert!(e.starts_with("gw.yaml: line 11: routes[1] (route): max_body"), "{e}");
    let e = error(&route("    upstream: 'not a url'\n"));
    assert!(e.starts_with("gw.yaml: line 10: routes[1] (route): upstream:"), "{e}");
    let e = error("listen: nowhere\nroutes: []\n");
    assert!(e.starts_with("gw.yaml: line 1: listen:"), "{e}");
}

#[test]
fn sizes_take_binary_and_decimal_units() {
    for (size, bytes) in
        [("1.5MiB", 1_572_864), ("1GiB", 1 << 30), ("2MB", 2_000_000), ("512", 512), ("64 KiB", 65_536)]
    {
        let c = load_at(&route(&format!("    upstream: http://h/\n    max_body: {size}\n")), NOW).unwrap();
        assert_eq!(c.routes[1].max_body, bytes, "{size}");
    }
    let e = error(&route("    upstream: http://h/\n    max_body: 1 parsec\n"));
    assert!(e.contains("'1 parsec' is not a size") && e.contains("1.5MiB") && e.contains("line 11"), "{e}");
}

#[test]
fn a_duration_without_its_unit_says_how_to_write_it() {
    let e = error(&route("    upstream: http://h/\n    timeout: 10\n"));
    assert!(e.contains("write 10s"), "{e}");
    assert!(e.contains("line 11"), "{e}");
}

#[test]
fn an_upstream_without_a_scheme_suggests_http() {
    for (up, want) in
        [("127.0.0.1:3000/x", "write http://127.0.0.1:3000/x"), ("backend:3000", "write http://backend:3000")]
    {
        let e = error(&route(&format!("    upstream: {up}\n")));
        assert!(e.contains(want) && e.contains("line 10"), "{e}");
    }
}

fn expiring(expires: &[&str]) -> String {
    let mut secrets = String::new();
    for (i, at) in expires.iter().enumerate() {
        secrets.push_str(&format!("      - {{value: s{i}, expires_at: '{at}'}}\n"));
    }
    format!(
        "listen: 127.0.0.1:0\nroutes:\n  - path: /p\n    name: pay\n    provider: paylent\n    upstream: http://h/\n    secrets:\n{secrets}"
    )
}

#[test]
fn a_route_whose_secrets_all_expired_is_refused_with_the_reason() {
    let e = error(&expiring(&["2026-11-01T00:00:00Z", "2026-11-30T00:00:00Z"]));
    assert!(e.contains("routes[0] (route): secrets: every secret of the route has expired"), "{e}");
    assert!(e.contains("2026-11-30T00:00:00Z") && e.contains("line 7"), "{e}");
    assert!(!e.contains("s0") && !e.contains("s1"), "no secret value in {e}");
    // One still valid: loaded (the expired one is warned about); the clock decides.
    assert!(load_at(&expiring(&["2026-11-01T00:00:00Z", "2026-12-05T00:00:00Z"]), NOW).is_ok());
    assert!(load_at(&expiring(&["2026-11-01T00:00:00Z"]), 1_790_000_000).is_ok(), "not yet expired then");
    // A secret without an expiry never expires.
    let yaml =
        expiring(&["2026-11-01T00:00:00Z"]).replace("    secrets:\n", "    secrets:\n      - current\n");
    assert!(load_at(&yaml, NOW).is_ok());
}

#[test]
fn expiry_states_are_relative_to_the_clock() {
    use portcullis::config::{expiry, Expiry};
    assert_eq!(expiry(None, NOW), Expiry::Valid);
    assert_eq!(expiry(Some(NOW), NOW), Expiry::Expired);
    assert_eq!(expiry(Some(NOW + 7 * 86_400), NOW), Expiry::Soon);
    assert_eq!(expiry(Some(NOW + 7 * 86_400 + 1), NOW), Expiry::Valid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_routes_shows_which_secrets_expire_soon_or_expired() {
    use crate::util::{client, send, TestGateway};
    let now = portcullis::clock::now();
    let at =
        |t: u64| humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t));
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin: {{listen: 127.0.0.1:0}}\nroutes:\n  - path: /p\n    provider: paylent\n    upstream: http://127.0.0.1:1/\n    secrets:\n      - {{value: a, expires_at: '{}'}}\n      - {{value: b, expires_at: '{}'}}\n      - {{value: c, expires_at: '{}'}}\n      - d\n",
        at(now - 86_400),
        at(now + 3 * 86_400),
        at(now + 30 * 86_400),
    );
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let r = send(&client(), http::Method::GET, &format!("http://{}/api/routes", gw.admin), &[], "").await;
    let v: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    let secrets = &v["routes"][0]["secrets"];
    let flags: Vec<_> =
        (0..4).map(|i| (secrets[i]["expired"].clone(), secrets[i]["expires_soon"].clone())).collect();
    use serde_json::Value::Bool;
    assert_eq!(
        flags,
        [
            (Bool(true), Bool(false)),
            (Bool(false), Bool(true)),
            (Bool(false), Bool(false)),
            (Bool(false), Bool(false))
        ],
        "{v}"
    );
}
