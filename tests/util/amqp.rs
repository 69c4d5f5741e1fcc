//! RabbitMQ for the tests: the machine's broker on 127.0.0.1:5672 (guest/guest), a test's own
//! exchange and queue on it (deleted when dropped), and a TCP proxy in front of it that a test
//! cuts and restores, so "broker down" never stops the broker other tests share.

use lapin::message::Delivery;
use lapin::options::{
    BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// Where the shared broker listens.
pub const BROKER: &str = "127.0.0.1:5672";

/// The URL of a broker at `addr` with the default credentials and vhost.
pub fn url(addr: &str) -> String {
    format!("amqp://guest:guest@{addr}/%2f")
}

/// Returns false (and says so) when RabbitMQ tests must be skipped; panics when they may not
/// be (`PORTCULLIS_REQUIRE_REDIS=1`, the convention of tests/util/redis.rs: CI sets it and
/// `.ci/run` starts the broker).
pub fn rabbit_or_skip(test: &str) -> bool {
    let addr: SocketAddr = BROKER.parse().unwrap();
    if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok() {
        return true;
    }
    if super::redis::required() {
        panic!("{test}: no RabbitMQ on {BROKER} and PORTCULLIS_REQUIRE_REDIS=1");
    }
    eprintln!("SKIP {test}: no RabbitMQ on {BROKER}");
    false
}

/// A name no other test (or run) uses.
pub fn unique(test: &str) -> String {
    format!("portcullis.{test}.{:016x}", rand::random::<u64>())
}

/// A test's own direct exchange and durable queue, bound with `routing_key`; `unbound` has
/// no binding at all (everything published to it is unroutable). All deleted on drop, a
/// failed test included; the queue also expires by itself (`x-expires`) should a run be killed.
pub struct Topology {
    pub exchange: String,
    pub unbound: String,
    pub queue: String,
    pub routing_key: String,
    /// Taken by `drop` (the deletes run on it).
    conn: Option<Connection>,
    ch: Channel,
}

impl Topology {
    pub async fn declare(test: &str) -> Topology {
        let conn = Connection::connect(&url(BROKER), ConnectionProperties::default())
            .await
            .expect("connect to RabbitMQ");
        let ch = conn.create_channel().await.unwrap();
        let base = unique(test);
        let t = Topology {
            exchange: format!("{base}.x"),
            unbound: format!("{base}.unbound"),
            queue: format!("{base}.q"),
            routing_key: "events".into(),
            conn: Some(conn),
            ch,
        };
        for x in [&t.exchange, &t.unbound] {
            t.ch.exchange_declare(
                x.as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        }
        let mut args = FieldTable::default();
        args.insert("x-expires".into(), AMQPValue::LongUInt(600_000));
        t.ch.queue_declare(
            t.queue.as_str().into(),
            QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() },
            args,
        )
        .await
        .unwrap();
        t.ch.queue_bind(
            t.queue.as_str().into(),
            t.exchange.as_str().into(),
            t.routing_key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        t
    }

    /// Takes every message in the queue (acknowledged as taken).
    pub async fn take_all(&self) -> Vec<Delivery> {
        let mut out = Vec::new();
        while let Some(m) = self
            .ch
            .basic_get(self.queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic_get")
        {
            out.push(m.delivery);
        }
        out
    }

    /// How many messages the queue holds now, without taking them.
    pub async fn count(&self) -> u32 {
        self.ch
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
                FieldTable::default(),
            )
            .await
            .expect("queue_declare passive")
            .message_count()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Dropped from inside a runtime (and maybe while panicking): the deletes run on a
        // thread and runtime of their own, on this topology's connection.
        let (ch, conn) = (self.ch.clone(), self.conn.take());
        let (q, xs) = (self.queue.clone(), [self.exchange.clone(), self.unbound.clone()]);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
                for x in xs {
                    let _ = ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default()).await;
                }
                if let Some(conn) = conn {
                    let _ = conn.close(200, "OK".into()).await;
                }
            })
        })
        .join();
    }
}

/// A TCP proxy on 127.0.0.1 in front of the broker. [`Proxy::cut`] drops every connection
/// through it and stops listening (connections are refused); [`Proxy::restore`] listens again
/// on the same port. [`Proxy::stall`] keeps the connections but holds what the broker sends
/// (a broker that takes a publish and never confirms it) until [`Proxy::resume`].
pub struct Proxy {
    pub port: u16,
    target: SocketAddr,
    accept: Mutex<Option<JoinHandle<()>>>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    stalled: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Proxy {
    /// On a port below the ephemeral range (as a test redis-server's), so nothing binding
    /// port 0 takes it while the proxy is cut.
    pub async fn start() -> Proxy {
        let target: SocketAddr = BROKER.parse().unwrap();
        for _ in 0..20 {
            let port = super::redis::redis_port();
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)).await {
                let p = Proxy {
                    port,
                    target,
                    accept: Mutex::new(None),
                    conns: Arc::default(),
                    stalled: Arc::new(tokio::sync::watch::Sender::new(false)),
                };
                p.serve(listener);
                return p;
            }
        }
        panic!("no free port for the AMQP proxy");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        url(&self.addr())
    }

    fn serve(&self, listener: TcpListener) {
        let (target, conns, stalled) = (self.target, self.conns.clone(), self.stalled.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                let stalled = stalled.subscribe();
                let conn = tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else { return };
                    let (mut from_client, to_client) = client.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    // Each way to its end, as `copy_bidirectional` does: an end of one way is
                    // passed on (shutdown) while the other goes on.
                    let up = async {
                        let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
                        let _ = tokio::io::AsyncWriteExt::shutdown(&mut to_server).await;
                    };
                    tokio::join!(up, downstream(&mut from_server, to_client, stalled));
                });
                let mut c = conns.lock().unwrap();
                c.retain(|h| !h.is_finished());
                c.push(conn.abort_handle());
            }
        });
        *self.accept.lock().unwrap() = Some(task);
    }

    /// Every connection through the proxy dropped, and the port closed: the broker is "down".
    pub async fn cut(&self) {
        let accept = self.accept.lock().unwrap().take();
        if let Some(task) = accept {
            task.abort();
            let _ = task.await; // the listener is closed once the task is gone
        }
        for c in std::mem::take(&mut *self.conns.lock().unwrap()) {
            c.abort();
        }
    }

    /// Holds everything the broker sends from now on (connections stay open).
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Passes on what was held, and all that follows.
    pub fn resume(&self) {
        self.stalled.send_replace(false);
    }

    /// Listening again on the same port.
    pub async fn restore(&self) {
        let deadline =
            super::Deadline::new(format!("the AMQP proxy listening again on {}", self.port), super::PATIENCE);
        loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => return self.serve(listener),
                Err(_) => deadline.tick().await,
            }
        }
    }
}

/// Broker to client, holding each chunk while the proxy is stalled.
async fn downstream(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(t) = self.accept.lock().unwrap().take() {
            t.abort();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}
