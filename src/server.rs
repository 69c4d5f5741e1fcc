//! The webhook listener: accepts connections under the connection limits (in all and per
//! client address), serves each with its stack and the edge limits, and drains in-flight
//! deliveries on shutdown.

use crate::config::Limits;
use crate::gateway::Gateway;
use crate::response::Body;
use crate::stack;
use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

/// The answer to a connection over a connection limit (`max_connections`, or
/// `max_connections_per_client`), written without reading the request before closing it.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 35\r\n\r\n{\"error\":\"temporarily unavailable\"}";

/// Serves webhooks on `listener` until `shutdown` resolves, then stops accepting and drains
/// ([`crate::shutdown::drain`]): in-flight deliveries finish within the drain timeout; those
/// still waiting then release their keys and answer 503.
pub async fn run(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    tls: Option<TlsHandle>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = gateway.limits.clone();
    let gw = gateway.clone();
    let make = move |peer, tls, worker| stack::webhook_service(&gw, peer, tls, worker);
    let draining = gateway.clone();
    let shutdown = async move {
        shutdown.await;
        draining.draining.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    // Trusted proxies are read from the routing in force, so a reload that adds or removes
    // one applies to the next connection.
    let routing = gateway.clone();
    let exempt = move |ip: IpAddr| routing.routing().config.trusted_proxies.iter().any(|n| n.contains(&ip));
    accept_loop(listener, &limits, tls, make, exempt, shutdown, || {
        for worker in gateway.abort.iter() {
            worker.send_replace(true);
        }
    })
    .await
}

/// The listener's TLS configuration, swapped in place when a reload reads new files.
pub type TlsHandle = Arc<ArcSwap<rustls::ServerConfig>>;

/// The accept loop, for any service built per connection by `make_service(peer, tls,
/// worker)`. Each accepted connection is handed to the connection worker with the fewest open
/// connections and served there from then on. `abort` is called when the drain timeout passes
/// with requests still in flight ([`crate::shutdown::drain`]). Fails only when the connection workers cannot be started.
/// No client address is exempt from `max_connections_per_client`.
pub async fn serve<S, M>(
    listener: TcpListener,
    limits: &Limits,
    tls: Option<TlsHandle>,
    make_service: M,
    shutdown: impl Future<Output = ()>,
    abort: impl FnOnce(),
) -> std::io::Result<()>
where
    M: Fn(SocketAddr, bool, usize) -> S + Send + Sync + 'static,
    S: tower::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    accept_loop(listener, limits, tls, make_service, |_| false, shutdown, abort).await
}

/// [`serve`], with the client addresses `exempt` tells exempt from
/// `max_connections_per_client` (trusted proxies: every sender's traffic comes from them).
async fn accept_loop<S, M>(
    listener: TcpListener,
    limits: &Limits,
    tls: Option<TlsHandle>,
    make_service: M,
    exempt: impl Fn(IpAddr) -> bool,
    shutdown: impl Future<Output = ()>,
    abort: impl FnOnce(),
) -> std::io::Result<()>
where
    M: Fn(SocketAddr, bool, usize) -> S + Send + Sync + 'static,
    S: tower::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let workers = Workers::start(limits.workers)?;
    let make_service = Arc::new(make_service);
    let graceful = GracefulShutdown::new();
    let conns = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let per_client = Arc::new(ClientConnections::new(limits.max_connections_per_client));
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
        // One address cannot take every connection slot: over its bound, a connection is
        // refused like one over `max_connections`, and the global slot is given back.
        let client = peer.ip().to_canonical();
        let client_slot = if per_client.max == 0 || exempt(client) {
            None
        } else {
            match per_client.try_open(client) {
                Some(slot) => Some(slot),
                None => {
                    tracing::debug!(%peer, "over max_connections_per_client; refused");
                    drop(permit);
                    tokio::spawn(refuse(stream));
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        // The connection moves to the worker's event loop: registered there, it never wakes
        // this thread again.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, %peer, "connection lost before it was served");
                continue;
            }
        };
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            // Fires for slow headers and for idle keep-alive connections alike.
            .header_read_timeout(limits.header_read_timeout)
            .max_headers(limits.max_headers)
            .max_buf_size(limits.max_header_bytes)
            .keep_alive(true);
        let watcher = graceful.watcher();
        let make_service = make_service.clone();
        let tls = tls.as_ref().map(|t| tokio_rustls::TlsAcceptor::from(t.load_full()));
        let handshake_timeout = limits.header_read_timeout;
        workers.spawn(move |worker| async move {
            let _permit = permit;
            let _client_slot = client_slot;
            let stream = match TcpStream::from_std(stream) {
                Ok(s) => s,
                Err(e) => return tracing::warn!(error = %e, %peer, "cannot register a connection"),
            };
            let svc = TowerToHyperService::new(make_service(peer, tls.is_some(), worker));
            let ended = match tls {
                None => watcher.watch(http.serve_connection(TokioIo::new(stream), svc)).await,
                // The handshake is bounded like the headers that follow it.
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            watcher.watch(http.serve_connection(TokioIo::new(stream), svc)).await
                        }
                        Ok(Err(e)) => return tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("stopped accepting; draining in-flight requests");
    crate::shutdown::drain(graceful, limits.drain_timeout, abort).await;
    Ok(())
}

/// The connection workers: one thread per core, each running its own single-threaded event
/// loop. A connection, its deliveries and their upstream connections stay on one worker, so
/// a delivery is served start to finish without waking another thread. The threads stop
/// when this is dropped.
struct Workers {
    workers: Vec<Worker>,
}

thread_local! {
    /// The index of the connection worker running on this thread.
    static WORKER: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// The index of the connection worker the calling thread runs, if it is one: per-worker
/// resources (the Redis store's connections) are picked with it.
pub fn current_worker() -> Option<usize> {
    WORKER.with(|w| w.get())
}

struct Worker {
    handle: tokio::runtime::Handle,
    /// Connections being served by this worker.
    open: Arc<std::sync::atomic::AtomicUsize>,
    /// Dropped to stop the worker's thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Workers {
    fn start(n: usize) -> std::io::Result<Workers> {
        let workers = (0..n.max(1))
            .map(|i| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                let handle = runtime.handle().clone();
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                std::thread::Builder::new().name(format!("portcullis-worker-{i}")).spawn(move || {
                    WORKER.with(|w| w.set(Some(i)));
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                    // Connections still open when the listener is done are closed here.
                    runtime.shutdown_background();
                })?;
                Ok(Worker { handle, open: Default::default(), _stop: stop })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Workers { workers })
    }

    /// Runs the connection future made by `serve(worker index)` on the least busy worker.
    fn spawn<F, Fut>(&self, serve: F)
    where
        F: FnOnce(usize) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        use std::sync::atomic::Ordering::Relaxed;
        let (i, w) =
            self.workers.iter().enumerate().min_by_key(|(_, w)| w.open.load(Relaxed)).expect("a worker");
        w.open.fetch_add(1, Relaxed);
        let open = w.open.clone();
        let conn = serve(i);
        w.handle.spawn(async move {
            conn.await;
            open.fetch_sub(1, Relaxed);
        });
    }
}

/// Open connections per client address, for `max_connections_per_client`. Touched once when
/// a connection is accepted and once when it ends; entries exist only while an address has
/// connections open.
struct ClientConnections {
    /// Connections one address may have open at most; 0 for no bound.
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl ClientConnections {
    fn new(max: usize) -> Self {
        ClientConnections { max, open: Mutex::new(HashMap::new()) }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Poisoned only if a thread panicked mid-update of a plain map of counts.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a connection from `client`, or `None` when it has `max` open already.
    fn try_open(self: &Arc<Self>, client: IpAddr) -> Option<ClientSlot> {
        let mut counts = self.counts();
        let n = counts.entry(client).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientSlot { table: self.clone(), client })
    }
}

/// One open connection of a client address, uncounted when dropped (the connection ended).
struct ClientSlot {
    table: Arc<ClientConnections>,
    client: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self.table.counts();
        if let Some(n) = counts.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

/// Answers a connection over a limit with 503 and closes it.
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
    fn connections_go_to_the_least_busy_worker_and_run_on_its_thread() {
        let workers = super::Workers::start(2).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..4 {
            let tx = tx.clone();
            workers.spawn(move |i| async move {
                tx.send((i, std::thread::current().name().map(str::to_string))).unwrap();
                std::future::pending::<()>().await
            });
        }
        let mut per_worker = [0; 2];
        for _ in 0..4 {
            let (i, thread) = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
            assert_eq!(thread.as_deref(), Some(format!("portcullis-worker-{i}").as_str()));
            per_worker[i] += 1;
        }
        assert_eq!(per_worker, [2, 2]);
    }

    #[test]
    fn client_connections_are_bounded_per_address_and_forgotten_at_zero() {
        use std::net::IpAddr;
        use std::sync::Arc;
        let table = Arc::new(super::ClientConnections::new(2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = table.try_open(a).unwrap();
        let second = table.try_open(a).unwrap();
        assert!(table.try_open(a).is_none(), "a third from one address");
        let other = table.try_open(b).expect("another address is counted apart");
        drop(first);
        let again = table.try_open(a).expect("a slot given back is free again");
        drop((second, again, other));
        assert!(table.counts().is_empty(), "no entry left at zero");
    }

    #[test]
    fn over_capacity_answer_is_well_formed() {
        let text = std::str::from_utf8(super::OVER_CAPACITY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
