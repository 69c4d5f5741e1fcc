//! `portcullis echo`: a demo upstream for the quick start.

use anyhow::Context;
use http::HeaderValue;
use std::process::ExitCode;

/// A demo upstream for the quick start: prints what it receives and answers 200 with JSON.
pub fn run(listen: std::net::SocketAddr) -> anyhow::Result<ExitCode> {
    use http_body_util::{BodyExt, Full};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        // The bound address, so that `--listen 127.0.0.1:0` says which port it got.
        crate::errln!("echo upstream listening on {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        let key = parts
                            .headers
                            .get("portcullis-idempotency-key")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-");
                        // Printing is for a watching terminal: one gone away stops no answer.
                        let _ = crate::outln!(
                            "upstream received {} {} key={key} body={}",
                            parts.method,
                            parts.uri,
                            String::from_utf8_lossy(&body)
                        );
                        let mut res =
                            http::Response::new(Full::new(bytes::Bytes::from_static(b"{\"received\":true}")));
                        res.headers_mut()
                            .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                        Ok::<_, std::convert::Infallible>(res)
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}
