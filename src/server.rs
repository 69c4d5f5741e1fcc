//! The webhook listener: accepts connections under the connection limit, serves each with
//! its stack and the edge limits, and drains in-flight deliveries on shutdown.

use crate::config::Limits;
use crate::error::Body;
use crate::gateway::Gateway;
use crate::stack;
use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

/// After the drain timeout, how long the released deliveries get to send their 503s.
const ABORT_GRACE: Duration = Duration::from_secs(5);

/// The answer to a connection over the connection limit, written before closing it.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 35\r\n\r\n{\"error\":\"temporarily unavailable\"}";

/// Serves webhooks on `listener` until `shutdown` resolves, then stops accepting and lets
/// in-flight deliveries finish for the drain timeout; those still waiting then release their
/// keys and answer 503.
pub async fn run(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    tls: Option<TlsHandle>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = gateway.limits.clone();
    let gw = gateway.clone();
    let make = move |peer, tls| stack::webhook_service(&gw, peer, tls);
    let draining = gateway.clone();
    let shutdown = async move {
        shutdown.await;
        draining.draining.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    serve(listener, &limits, tls, make, shutdown, || {
        gateway.abort.send_replace(true);
    })
    .await
}

/// The listener's TLS configuration, swapped in place when a reload reads new files.
pub type TlsHandle = Arc<ArcSwap<rustls::ServerConfig>>;

/// The accept loop, for any service built per connection by `make_service`. `abort` is
/// called when the drain timeout passes with requests still in flight.
pub async fn serve<S, M>(
    listener: TcpListener,
    limits: &Limits,
    tls: Option<TlsHandle>,
    make_service: M,
    shutdown: impl Future<Output = ()>,
    abort: impl FnOnce(),
) where
    M: Fn(SocketAddr, bool) -> S,
    S: tower::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let conns = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            // Fires for slow headers and for idle keep-alive connections alike.
            .header_read_timeout(limits.header_read_timeout)
            .max_headers(limits.max_headers)
            .max_buf_size(limits.max_header_bytes)
            .keep_alive(true);
        match &tls {
            None => {
                let svc = TowerToHyperService::new(make_service(peer, false));
                let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), svc));
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                    drop(permit);
                });
            }
            Some(tls) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.load_full());
                let svc = TowerToHyperService::new(make_service(peer, true));
                let watcher = graceful.watcher();
                let handshake_timeout = limits.header_read_timeout;
                tokio::spawn(async move {
                    // The handshake is bounded like the headers that follow it.
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let conn = watcher.watch(http.serve_connection(TokioIo::new(stream), svc));
                            if let Err(e) = conn.await {
                                tracing::debug!(error = %e, %peer, "connection ended with an error");
                            }
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    tracing::info!("stopped accepting; draining in-flight requests");
    let drain = graceful.shutdown();
    tokio::pin!(drain);
    tokio::select! {
        _ = &mut drain => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!("drain timeout reached; releasing the keys of unfinished deliveries");
            abort();
            if tokio::time::timeout(ABORT_GRACE, &mut drain).await.is_err() {
                tracing::warn!("connections still open after the drain; closing");
            }
        }
    }
}

/// Answers a connection over the limit with 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(OVER_CAPACITY).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn over_capacity_answer_is_well_formed() {
        let text = std::str::from_utf8(super::OVER_CAPACITY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
