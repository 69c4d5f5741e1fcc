//! The real `portcullis` binary as a child process, for tests that restart or kill it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct GatewayProcess {
    pub addr: SocketAddr,
    /// The admin listener's bound address, when the config has one (read from the
    /// `admin listening on` line, so `admin.listen: 127.0.0.1:0` works).
    pub admin: Option<SocketAddr>,
    pub child: Child,
    pub config: PathBuf,
}

impl GatewayProcess {
    /// Writes `yaml` to a file and runs `portcullis serve` on it.
    pub fn start(yaml: &str) -> GatewayProcess {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-gw-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("gateway.yaml");
        std::fs::write(&config, yaml).unwrap();
        Self::start_file(config)
    }

    pub fn start_file(config: PathBuf) -> GatewayProcess {
        let mut child = Command::new(super::bin())
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut admin = None;
        let addr = loop {
            let line = lines.next().expect("gateway exited before listening").unwrap();
            if let Some(a) = line.strip_prefix("admin listening on ") {
                admin = Some(a.parse().unwrap());
            }
            if let Some(a) = line.strip_prefix("listening on ") {
                break a.parse().unwrap();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        GatewayProcess { addr, admin, child, config }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The admin listener's base URL; panics when the config has no admin listener.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin.expect("the config has an admin listener"))
    }

    pub fn signal(&self, sig: &str) {
        let status =
            Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(self) -> std::process::ExitStatus {
        self.signal("TERM");
        self.wait()
    }

    /// Waits for the process to exit on its own (after a signal sent with [`Self::signal`]).
    pub fn wait(mut self) -> std::process::ExitStatus {
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
