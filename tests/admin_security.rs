//! The admin listener refuses what a browser page of another site can send: a foreign
//! `Origin`, a POST body that is not JSON, and a `Host` that is a DNS name (rebinding).

use crate::recovery::Connection;
use crate::util::*;
use http::{Method, StatusCode};
use portcullis::clock::Clock;

/// A gateway with a queued route in an embedded store, so the queue endpoints are live.
async fn gateway() -> (TestGateway, std::path::PathBuf) {
    let up = Upstream::start().await;
    let dir = std::env::temp_dir().join(format!("portcullis-admin-{}", rand::random::<u32>()));
    let extra = "    delivery: queued\n    timeout: 1s\n    lease: 2s\n";
    let cfg = format!(
        "listen: 127.0.0.1:0\nstore:\n  kind: embedded\n  path: {:?}\nroutes:\n{}",
        dir.join("claims.redb").display().to_string(),
        route("/q", "paylent", &["admin-secret"], &up.url("/q"), extra)
    );
    (TestGateway::start(&cfg, Clock::System).await, dir)
}

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn refused(a: &Answer, status: StatusCode) {
    assert_eq!(a.status, status, "{}", a.text());
    assert_eq!(a.headers["content-type"], "application/json");
    assert!(serde_json::from_slice::<serde_json::Value>(&a.body).unwrap()["error"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_refuses_a_cross_site_origin() {
    let (gw, dir) = gateway().await;
    let own = gw.admin.to_string();
    let mut c = Connection::open(gw.admin).await;
    for origin in ["http://evil.example", "null", "https://127.0.0.1", &format!("http://{own}.evil.example")]
    {
        let headers = h(&[("host", &own), ("origin", origin)]);
        refused(
            &c.request(Method::POST, "/queue/replay?all=1", &headers, vec![]).await,
            StatusCode::FORBIDDEN,
        );
        refused(&c.request(Method::GET, "/queue/dead", &headers, vec![]).await, StatusCode::FORBIDDEN);
    }
    // The listener's own origin is served.
    let headers = h(&[("host", &own), ("origin", &format!("http://{own}"))]);
    assert_eq!(c.request(Method::GET, "/queue", &headers, vec![]).await.status, StatusCode::OK);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_post_refuses_a_body_that_is_not_json() {
    let (gw, dir) = gateway().await;
    let own = gw.admin.to_string();
    let mut c = Connection::open(gw.admin).await;
    for ct in
        ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data"]
    {
        let a = c
            .request(Method::POST, "/queue/replay?all=1", &h(&[("content-type", ct)]), b"x=1".to_vec())
            .await;
        refused(&a, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    // A body without any content type is refused too; JSON, or no body at all (the CLI), is
    // served.
    let a = c.request(Method::POST, "/queue/replay?all=1", &[], b"{}".to_vec()).await;
    refused(&a, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let json = h(&[("content-type", "application/json; charset=utf-8")]);
    let a = c.request(Method::POST, "/queue/replay?all=1", &json, b"{}".to_vec()).await;
    assert!(![403, 415].contains(&a.status.as_u16()), "{} {}", a.status, a.text());
    let a = c.request(Method::POST, "/queue/replay?all=1", &[], vec![]).await;
    assert!(![403, 415].contains(&a.status.as_u16()), "{} {}", a.status, a.text());

    // `portcullis queue replay` is still served.
    let admin = format!("http://{own}");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin())
            .args(["queue", "replay", "--all", "--admin", &admin])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("forbidden") && !text.contains("application/json"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_refuses_a_dns_rebound_host() {
    let (gw, dir) = gateway().await;
    let port = gw.admin.port();
    let mut c = Connection::open(gw.admin).await;
    for host in
        [format!("evil.example:{port}"), "evil.example".into(), format!("localhost.evil.example:{port}")]
    {
        let headers = h(&[("host", &host)]);
        refused(
            &c.request(Method::POST, "/queue/replay?all=1", &headers, vec![]).await,
            StatusCode::FORBIDDEN,
        );
        refused(&c.request(Method::GET, "/queue", &headers, vec![]).await, StatusCode::FORBIDDEN);
        refused(&c.request(Method::GET, "/queue/dead", &headers, vec![]).await, StatusCode::FORBIDDEN);
        // The admin API shows deliveries: as guarded as the queue.
        refused(&c.request(Method::GET, "/api/deliveries", &headers, vec![]).await, StatusCode::FORBIDDEN);
        refused(&c.request(Method::GET, "/api/routes", &headers, vec![]).await, StatusCode::FORBIDDEN);
        // Probes and scrapers that address the instance by name are still answered.
        assert_eq!(c.request(Method::GET, "/healthz", &headers, vec![]).await.status, StatusCode::OK);
    }
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}"), "[::1]".into()] {
        let a = c.request(Method::GET, "/queue", &h(&[("host", &host)]), vec![]).await;
        assert_eq!(a.status, StatusCode::OK, "{host}: {}", a.text());
        let a = c.request(Method::GET, "/api/routes", &h(&[("host", &host)]), vec![]).await;
        assert_eq!(a.status, StatusCode::OK, "{host}: {}", a.text());
    }
    let _ = std::fs::remove_dir_all(dir);
}
