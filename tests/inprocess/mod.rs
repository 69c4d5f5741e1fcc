//! Request-path tests without a gateway socket: the stack built as `serve` builds it
//! (`stack::webhook_service`) and called with `tower::ServiceExt::oneshot`, the way axum apps
//! are tested. The upstream is still a real server. End-to-end tests over real sockets and
//! the real binary stay in the other files.

mod catalog;
mod core;
mod forms;
mod forwarding;
mod hardening;
mod verification;

use crate::util::Answer;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use portcullis::clock::Clock;
use portcullis::config::Config;
use portcullis::gateway::Gateway;
use portcullis::idempotency::Store;
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;

/// A gateway with no listener: each request goes through a fresh webhook service, as one
/// connection's would, from a fixed peer address.
#[derive(Clone)]
pub struct App {
    pub gateway: Arc<Gateway>,
}

impl App {
    /// A gateway from YAML text, with the memory store unless the YAML says otherwise.
    pub async fn start(yaml: &str, clock: Clock) -> App {
        let config = Config::from_yaml("test.yaml", yaml, Path::new("."), &|k| std::env::var(k).ok())
            .unwrap_or_else(|e| panic!("{e}"));
        let store = portcullis::runtime::open_store(&config).await.unwrap();
        let queue = portcullis::runtime::open_queue(&config).unwrap();
        App { gateway: Arc::new(Gateway::new(&config, store, clock).with_queue(queue)) }
    }

    /// A gateway from YAML text with `store` instead of the one the YAML names.
    pub fn with_store(yaml: &str, store: Arc<dyn Store>) -> App {
        let config =
            Config::from_yaml("test.yaml", yaml, Path::new("."), &|_| None).unwrap_or_else(|e| panic!("{e}"));
        App { gateway: Arc::new(Gateway::new(&config, store, Clock::System)) }
    }

    /// Sends one request to `path` through the stack, in process.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(String, String)],
        body: impl Into<Bytes>,
    ) -> Answer {
        let peer = "127.0.0.1:40000".parse().unwrap();
        let svc = portcullis::stack::webhook_service(&self.gateway, peer, false, 0);
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let res = svc.oneshot(req.body(Full::new(body.into())).unwrap()).await.unwrap();
        let (parts, body) = res.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    pub async fn post(&self, path: &str, headers: &[(String, String)], body: impl Into<Bytes>) -> Answer {
        self.send(Method::POST, path, headers, body).await
    }
}
