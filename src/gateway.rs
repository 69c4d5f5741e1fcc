//! The gateway's shared state: routes, the idempotency store, the upstream client and the
//! clock, as every connection's stack sees them.

use crate::config::{Config, Limits, Route};
use crate::forward::{self, UpstreamClient};
use crate::idempotency::Store;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where "now" comes from; tests fix it.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    Fixed(u64),
}

impl Clock {
    /// Unix seconds.
    pub fn now(&self) -> u64 {
        match self {
            Clock::System => SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            Clock::Fixed(t) => *t,
        }
    }
}

pub struct Gateway {
    routes: HashMap<String, Arc<Route>>,
    /// Set when the drain timeout has passed: in-flight deliveries stop waiting for their
    /// upstream, release their keys and answer 503, so the provider retries elsewhere.
    pub abort: tokio::sync::watch::Sender<bool>,
    pub store: Arc<dyn Store>,
    pub store_timeout: Duration,
    pub client: UpstreamClient,
    pub clock: Clock,
    pub limits: Limits,
    /// Requests in flight across every connection.
    pub in_flight: Arc<tokio::sync::Semaphore>,
}

impl Gateway {
    pub fn new(config: &Config, store: Arc<dyn Store>, clock: Clock) -> Self {
        Gateway {
            routes: config.routes.iter().map(|r| (r.path.clone(), r.clone())).collect(),
            store,
            abort: tokio::sync::watch::Sender::new(false),
            store_timeout: config.store.timeout,
            client: forward::client(&config.limits),
            clock,
            in_flight: Arc::new(tokio::sync::Semaphore::new(config.limits.max_in_flight)),
            limits: config.limits.clone(),
        }
    }

    /// The route for an exact path.
    pub fn route(&self, path: &str) -> Option<Arc<Route>> {
        self.routes.get(path).cloned()
    }
}
