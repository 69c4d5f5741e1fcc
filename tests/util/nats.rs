//! Real NATS JetStream for the tests: the machine's server (127.0.0.1:4222), private
//! `nats-server`s to stop and restart, and throw-away streams to publish into and read back.

use async_nats::jetstream::{self, consumer, stream};
use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The machine's NATS server with JetStream (`.ci/run` starts it when missing).
pub const SHARED: &str = "nats://127.0.0.1:4222";

const BINARY: &str = "/usr/sbin/nats-server";

/// The first line a NATS server sends (`INFO {…}`), or None when nothing answers.
fn info(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    let mut text = Vec::new();
    let mut buf = [0u8; 2048];
    while !text.ends_with(b"\r\n") {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        text.extend_from_slice(&buf[..n]);
    }
    Some(String::from_utf8_lossy(&text).into_owned())
}

fn binary_present() -> bool {
    Command::new(BINARY).arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Returns false (and says so) when NATS tests must be skipped; panics when they may not be
/// (`PORTCULLIS_REQUIRE_REDIS=1`, the convention of every real-service test). Needs both the
/// machine's server with JetStream and the binary for private ones.
pub fn nats_or_skip(test: &str) -> bool {
    let shared = info(4222).is_some_and(|i| i.contains("\"jetstream\":true"));
    let binary = binary_present();
    if shared && binary {
        return true;
    }
    let why = match (shared, binary) {
        (false, _) => "no NATS server with JetStream answers on 127.0.0.1:4222",
        _ => "/usr/sbin/nats-server is not installed",
    };
    if super::redis::required() {
        panic!("{test}: {why} and PORTCULLIS_REQUIRE_REDIS=1");
    }
    eprintln!("SKIP {test}: {why} (apt-get install nats-server; nats-server -js)");
    false
}

/// A unique name part: tests run in parallel against one server.
pub fn unique(tag: &str) -> String {
    format!("{tag}_{}_{:08x}", std::process::id(), rand::random::<u32>())
}

/// A private `nats-server -js` child on its own port with its own store, killed when dropped.
pub struct NatsServer {
    pub port: u16,
    name: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        let name = unique("srv");
        let dir = std::env::temp_dir().join(format!("portcullis-nats-{name}"));
        let mut last = None;
        for _ in 0..5 {
            std::fs::create_dir_all(&dir).unwrap();
            // Below the ephemeral range, as for Redis: nothing else takes it while we restart.
            let mut n = NatsServer {
                port: super::redis::redis_port(),
                name: name.clone(),
                dir: dir.clone(),
                child: None,
            };
            if n.spawn() {
                return n;
            }
            last = Some(n.port);
            n.child.take().map(|mut c| (c.kill(), c.wait()));
        }
        panic!("nats-server did not start (last port {last:?})");
    }

    /// Starts the child and waits until it answers with our name and JetStream on; false when
    /// it exited or another server holds the port.
    fn spawn(&mut self) -> bool {
        let child = Command::new(BINARY)
            .args(["-js", "-sd", self.dir.to_str().unwrap(), "-a", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-n", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(i) = info(self.port) {
                // Ours (not another test's on the same port), with JetStream ready.
                if !i.contains(&format!("\"server_name\":\"{}\"", self.name)) {
                    return false;
                }
                if i.contains("\"jetstream\":true") {
                    return true;
                }
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: the server vanishes mid-conversation; its store stays for [`Self::restart`].
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port with the same store (its streams and messages kept).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.spawn() {
            self.child.take().map(|mut c| (c.kill(), c.wait()));
            assert!(Instant::now() < deadline, "nats-server restarted on {}", self.port);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A stream made for one test (unique name, subject `<name>.events`), deleted when dropped.
pub struct TestStream {
    pub name: String,
    pub subject: String,
    url: String,
    js: jetstream::Context,
}

impl TestStream {
    /// A file-backed stream (it outlives a restart of a private server).
    pub async fn create(url: &str, tag: &str) -> TestStream {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
        let js = jetstream::new(client);
        let name = unique(tag);
        let subject = format!("{name}.events");
        js.create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("creating stream {name}: {e}"));
        TestStream { name, subject, url: url.to_string(), js }
    }

    /// How many messages the stream holds.
    pub async fn count(&self) -> u64 {
        let mut s = self.js.get_stream(&self.name).await.expect("the test stream");
        s.info().await.expect("stream info").state.messages
    }

    /// Every message in the stream, read with an ephemeral pull consumer from the start.
    pub async fn read_all(&self) -> Vec<jetstream::Message> {
        let s = self.js.get_stream(&self.name).await.expect("the test stream");
        let c: consumer::PullConsumer = s
            .create_consumer(consumer::pull::Config {
                deliver_policy: consumer::DeliverPolicy::All,
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .expect("a pull consumer");
        let expected = self.count().await as usize;
        let mut out = Vec::new();
        let deadline = super::Deadline::new(format!("{expected} messages of {}", self.name), super::PATIENCE);
        while out.len() < expected {
            let mut batch = c
                .fetch()
                .max_messages(expected - out.len())
                .expires(Duration::from_millis(500))
                .messages()
                .await
                .expect("fetch");
            use futures_util::StreamExt;
            while let Some(m) = batch.next().await {
                out.push(m.expect("a message"));
            }
            if out.len() < expected {
                deadline.tick().await;
            }
        }
        out
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        // Deleting is asynchronous and a drop is not: on a thread of its own, with its own
        // connection (the test's runtime may be gone), bounded (a private server may be too).
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let _ = tokio::time::timeout(Duration::from_secs(3), async {
                    let client = async_nats::connect(url.as_str()).await.ok()?;
                    jetstream::new(client).delete_stream(&name).await.ok()
                })
                .await;
            });
        })
        .join();
    }
}
