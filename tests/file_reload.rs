//! Rotation without signals: a changed secret file, a Kubernetes-style symlink swap and an
//! edited configuration file are put in force by the watcher alone.

use crate::util::process::GatewayProcess;
use crate::util::*;
use http::StatusCode;

const OLD: &str = "whsec_old_0123456789abcdef";
const NEW: &str = "whsec_new_0123456789abcdef";

async fn deliver(c: &HttpClient, url: &str, secret: &str, id: &str) -> u16 {
    let body = format!(r#"{{"event":"x","event_id":"{id}"}}"#).into_bytes();
    post(c, url, &sign("paylent", secret, &body, "", 0), body).await.status.as_u16()
}

/// Sends deliveries signed with `secret` until one is accepted (each a new event).
async fn until_accepted(c: &HttpClient, url: &str, secret: &str, what: &str) {
    let deadline = Deadline::new(what, PATIENCE);
    let mut i = 0;
    loop {
        i += 1;
        let status = deliver(c, url, secret, &format!("{what}-{i}")).await;
        if status == 200 {
            return;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED.as_u16(), "{what}: only a refusal before the change");
        deadline.tick().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_file_and_an_edited_config_apply_without_a_signal() {
    let up = Upstream::start().await;
    let dir = std::env::temp_dir().join(format!(
        "portcullis-watch-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    // Kubernetes' layout: secret -> ..data/secret, ..data -> ..v1; a rotation writes ..v2
    // and swaps ..data by a rename.
    let v1 = dir.join("..v1");
    std::fs::create_dir_all(&v1).unwrap();
    std::fs::write(v1.join("secret"), OLD).unwrap();
    std::os::unix::fs::symlink("..v1", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/secret", dir.join("secret")).unwrap();
    let base = "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nroutes:\n";
    let a = format!(
        "  - path: /a\n    provider: paylent\n    secret_files: [{:?}]\n    upstream: {:?}\n",
        dir.join("secret").display().to_string(),
        up.url("/a")
    );
    let gw = GatewayProcess::start(&format!("{base}{a}"));
    let c = client();
    assert_eq!(deliver(&c, &gw.url("/a"), OLD, "start").await, 200);
    assert_eq!(deliver(&c, &gw.url("/a"), NEW, "start-new").await, 401);

    // The swap, as the kubelet does it.
    let v2 = dir.join("..v2");
    std::fs::create_dir_all(&v2).unwrap();
    std::fs::write(v2.join("secret"), NEW).unwrap();
    std::os::unix::fs::symlink("..v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    until_accepted(&c, &gw.url("/a"), NEW, "the rotated secret").await;
    assert_eq!(deliver(&c, &gw.url("/a"), OLD, "after").await, 401, "the old secret is gone");

    // An edited configuration (written to a temporary file, then renamed over it).
    let b = route("/b", "paylent", &[OLD], &up.url("/b"), "");
    let tmp = gw.config.with_extension("tmp");
    std::fs::write(&tmp, format!("{base}{a}{b}")).unwrap();
    std::fs::rename(&tmp, &gw.config).unwrap();
    until_accepted_or_404(&c, &gw.url("/b"), OLD).await;

    // A broken edit is refused and counted; the running configuration stays.
    std::fs::write(&gw.config, format!("{base}{a}{b}  - path: /c\n    provider: nosuch\n")).unwrap();
    let metrics = format!("{}/metrics", gw.admin_url());
    let deadline = Deadline::new("the broken edit to be refused", PATIENCE);
    while sample(
        &send(&c, http::Method::GET, &metrics, &[], "").await.text(),
        "portcullis_config_reloads_total{result=\"error\"}",
    ) < 1.0
    {
        deadline.tick().await;
    }
    assert_eq!(deliver(&c, &gw.url("/b"), OLD, "b-after-broken").await, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn until_accepted_or_404(c: &HttpClient, url: &str, secret: &str) {
    let deadline = Deadline::new("the new route to serve", PATIENCE);
    let mut i = 0;
    loop {
        i += 1;
        match deliver(c, url, secret, &format!("b-{i}")).await {
            200 => return,
            404 => deadline.tick().await,
            other => panic!("unexpected {other} before the route appeared"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_reloads_with_the_token_and_says_why_a_config_is_refused() {
    let up = Upstream::start().await;
    let token = "reload-token-0123456789";
    let base = format!("listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n  token: {token}\nroutes:\n");
    let a = route("/a", "paylent", &[OLD], &up.url("/a"), "");
    let gw = GatewayProcess::start(&format!("{base}{a}"));
    let c = client();
    let url = format!("{}/api/reload", gw.admin_url());
    let bearer = [("authorization".to_string(), format!("Bearer {token}"))];
    assert_eq!(send(&c, http::Method::POST, &url, &[], "").await.status, 401, "the token is needed");
    let ok = send(&c, http::Method::POST, &url, &bearer, "").await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let v: serde_json::Value = serde_json::from_str(&ok.text()).unwrap();
    assert_eq!(v["reloaded"], true);
    assert_eq!(v["routes"], 1);
    assert_eq!(send(&c, http::Method::GET, &url, &bearer, "").await.status, 405);

    std::fs::write(&gw.config, format!("{base}{a}  - path: /c\n    provider: nosuch\n")).unwrap();
    let refused = send(&c, http::Method::POST, &url, &bearer, "").await;
    assert_eq!(refused.status, 422, "{}", refused.text());
    let v: serde_json::Value = serde_json::from_str(&refused.text()).unwrap();
    assert_eq!(v["reloaded"], false);
    assert!(v["error"].as_str().unwrap().contains("routes[1]"), "{v}");
    assert_eq!(deliver(&c, &gw.url("/a"), OLD, "still").await, 200, "the running configuration stays");
}
