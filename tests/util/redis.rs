//! Real Redis servers for the tests, each on its own free loopback port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether a missing Redis must fail the run (CI sets it) rather than skip.
pub fn required() -> bool {
    std::env::var("PORTCULLIS_REQUIRE_REDIS").is_ok_and(|v| v == "1")
}

fn available() -> bool {
    Command::new("redis-server").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Returns false (and says so) when Redis tests must be skipped; panics when they may not be.
pub fn redis_or_skip(test: &str) -> bool {
    if available() {
        return true;
    }
    if required() {
        panic!("{test}: redis-server is not installed and PORTCULLIS_REQUIRE_REDIS=1");
    }
    eprintln!("SKIP {test}: redis-server not found (install it: apt-get install redis-server)");
    false
}

/// A port free at the moment of asking: bind-then-drop, so anything may take it before the
/// caller binds it. Prefer binding port 0 and reading the address back; for a redis-server,
/// see [`redis_port`].
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A random port for a redis-server, chosen below the kernel's ephemeral range (and with its
/// cluster bus port, +10000, below it too): no port-0 bind and no outgoing connection on the
/// machine can take it between our choice and redis-server's bind, nor while a test restarts
/// the server on it. Another test's choice of the same port is caught by [`RedisServer`]
/// (the server answering must be our child) and retried on a new port.
pub fn redis_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()))
        .unwrap_or(32768);
    let (from, to) = (10_000u32, low.saturating_sub(10_000));
    if to < from + 1000 {
        return free_port();
    }
    (from + rand::random::<u32>() % (to - from)) as u16
}

/// The process id of the redis-server answering on `port`, from `INFO server`.
fn answering_pid(port: u16) -> Option<u32> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(b"INFO server\r\n").ok()?;
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        text.extend_from_slice(&buf[..n]);
        let t = String::from_utf8_lossy(&text);
        if let Some(rest) = t.split("process_id:").nth(1) {
            if let Some((pid, _)) = rest.split_once("\r\n") {
                return pid.trim().parse().ok();
            }
        }
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A `redis-server` child process, killed when dropped.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> RedisServer {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-redis-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let mut last = None;
        for _ in 0..5 {
            // (Again each time: a failed attempt, dropped, removes it.)
            std::fs::create_dir_all(&dir).unwrap();
            let mut r = RedisServer {
                port: redis_port(),
                dir: dir.clone(),
                extra: extra.iter().map(|s| s.to_string()).collect(),
                child: None,
            };
            if r.spawn() {
                return r;
            }
            last = Some(r.port);
        }
        panic!("redis-server did not start (last port {last:?})");
    }

    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--dir", self.dir.to_str().unwrap()])
        .args(&self.extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = cmd.spawn().expect("spawning redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.port) {
                // Ours, not another test's server that won the race for this port.
                let ours = self.child.as_ref().map(|c| c.id());
                if answering_pid(self.port) == ours {
                    return true;
                }
                self.kill();
                return false;
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL: the server vanishes mid-conversation.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port (empty: it keeps nothing on disk).
    pub fn restart(&mut self) {
        self.kill();
        // The port is below the ephemeral range, so nothing else should hold it; still, try
        // again for a while rather than fail on a moment's collision.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(Instant::now() < deadline, "redis-server restarted on {}", self.port);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A three-master Redis Cluster on loopback ports.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| RedisServer::start_with(&["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]))
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| n.addr()).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if nodes.iter().all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok")) {
                break;
            }
            assert!(Instant::now() < deadline, "cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        RedisCluster { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }
}
