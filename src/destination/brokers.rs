//! The brokers' connections of a gateway: one [`Nats`] / [`Amqp`] per distinct server URL,
//! made on first use and kept across configuration reloads (a reload that keeps a URL keeps
//! its connection; one that drops it leaves an idle handle until the process ends).

use super::amqp::Amqp;
use super::nats::Nats;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The broker connections, shared by the request path and the queue's workers.
pub struct Brokers {
    connect_timeout: Duration,
    nats: Mutex<HashMap<String, Arc<Nats>>>,
    amqp: Mutex<HashMap<String, Arc<Amqp>>>,
}

impl Brokers {
    /// No connection is made here: `Nats::new` and `Amqp::new` do no I/O.
    pub fn new(connect_timeout: Duration) -> Self {
        Brokers { connect_timeout, nats: Mutex::default(), amqp: Mutex::default() }
    }

    /// The NATS connection of `url` (a lookup under a lock held for no I/O).
    pub fn nats(&self, url: &str) -> Arc<Nats> {
        let mut map = self.nats.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get(url) {
            return n.clone();
        }
        let n = Arc::new(Nats::new(url, self.connect_timeout));
        map.insert(url.to_owned(), n.clone());
        n
    }

    /// The AMQP connection of `url`.
    pub fn amqp(&self, url: &str) -> Arc<Amqp> {
        let mut map = self.amqp.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = map.get(url) {
            return a.clone();
        }
        let a = Arc::new(Amqp::new(url, self.connect_timeout));
        map.insert(url.to_owned(), a.clone());
        a
    }
}

impl std::fmt::Debug for Brokers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.nats.lock().map(|m| m.len()).unwrap_or(0);
        let a = self.amqp.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("Brokers").field("nats", &n).field("amqp", &a).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_connection_per_url() {
        let b = Brokers::new(Duration::from_secs(1));
        assert!(Arc::ptr_eq(&b.nats("nats://a:4222"), &b.nats("nats://a:4222")));
        assert!(!Arc::ptr_eq(&b.nats("nats://a:4222"), &b.nats("nats://b:4222")));
        assert!(Arc::ptr_eq(&b.amqp("amqp://a"), &b.amqp("amqp://a")));
    }
}
