//! The idempotency store's settings: which backend, its key prefix and call timeout.

use super::env::expand_env;
use super::raw::RawStore;
use super::redact_url;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;
const DEFAULT_KEY_PREFIX: &str = "portcullis:";

/// Which idempotency store to use. Its `Debug` hides the passwords of Redis URLs.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreKind {
    Memory { max_keys: usize },
    Embedded { path: PathBuf },
    Redis { url: String },
    RedisCluster { nodes: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// Prefix of every Redis key (the Redis kinds; the others keep no shared namespace).
    pub key_prefix: String,
    /// Bound on every store call; past it the request is answered 503.
    pub timeout: Duration,
}

impl std::fmt::Debug for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreKind::Memory { max_keys } => f.debug_struct("Memory").field("max_keys", max_keys).finish(),
            StoreKind::Embedded { path } => f.debug_struct("Embedded").field("path", path).finish(),
            StoreKind::Redis { url } => f.debug_struct("Redis").field("url", &redact_url(url)).finish(),
            StoreKind::RedisCluster { nodes } => f
                .debug_struct("RedisCluster")
                .field("nodes", &nodes.iter().map(|n| redact_url(n)).collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// The embedded queue's file, beside the embedded store's: `claims.redb` → `claims.queue.redb`.
pub fn queue_path(store: &Path) -> PathBuf {
    store.with_extension("queue.redb")
}

impl RawStore {
    /// Each kind's own keys are already checked by serde; here values are expanded and
    /// checked.
    pub(super) fn validate(
        self,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<StoreConfig, String> {
        let (kind, key_prefix, timeout) = match self {
            RawStore::Memory { max_keys, timeout } => {
                let max_keys = max_keys.unwrap_or(DEFAULT_MAX_KEYS);
                if max_keys == 0 {
                    return Err("store.max_keys must be at least 1".into());
                }
                (StoreKind::Memory { max_keys }, None, timeout)
            }
            RawStore::Embedded { path, timeout } => {
                let p = expand_env(&path, env).map_err(|e| format!("store.path: {e}"))?;
                (StoreKind::Embedded { path: base.join(p) }, None, timeout)
            }
            RawStore::Redis { url, key_prefix, timeout } => {
                let url = expand_env(&url, env).map_err(|e| format!("store.url: {e}"))?;
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err("store.url must start with redis:// or rediss://".into());
                }
                (StoreKind::Redis { url }, key_prefix, timeout)
            }
            RawStore::RedisCluster { nodes, key_prefix, timeout } => {
                if nodes.is_empty() {
                    return Err("store.nodes: at least one node is needed".into());
                }
                let nodes = nodes
                    .iter()
                    .map(|n| expand_env(n, env).map_err(|e| format!("store.nodes: {e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                (StoreKind::RedisCluster { nodes }, key_prefix, timeout)
            }
        };
        let timeout = timeout.unwrap_or(DEFAULT_STORE_TIMEOUT);
        if timeout.is_zero() {
            return Err("store.timeout must be more than zero".into());
        }
        Ok(StoreConfig { kind, key_prefix: key_prefix.unwrap_or_else(|| DEFAULT_KEY_PREFIX.into()), timeout })
    }
}
