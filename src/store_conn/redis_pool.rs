//! The Redis connections that the idempotency store and the delivery queue both send their
//! commands on: one server or a Redis Cluster, a connection of its own per connection worker,
//! one retry after a connection-level failure, and the key encoding that keeps every key of a
//! script in one cluster slot.

use super::StoreError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::OnceCell;

/// A Redis error as a store error.
pub fn backend(e: redis::RedisError) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// True for a failure of the connection rather than of the command: the socket broke, was
/// refused, or the connection's last reconnection attempt failed and its error is cached.
/// A timeout is not one: the server is slow, and asking again would not make it faster.
fn connection_level(e: &redis::RedisError) -> bool {
    (e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()) && !e.is_timeout()
}

/// The connection a backend sends its commands on.
///
/// After Redis restarts, the first command on a connection meets the broken socket, or the
/// cached failure of a reconnection attempt made while Redis was down; the manager then
/// reconnects. So a command that fails at the connection level is sent once more, on the
/// fresh connection, within the caller's time bound. Every command sent here must therefore
/// be safe to repeat (the claim is: a claim that finds its own token is acquired; completion
/// writes the same value again; release compares the token; the queue's push appends only
/// if the event's push mark was not set yet).
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Runs a command, once more after a connection-level failure.
    pub async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        self.query_redis(cmd).await.map_err(backend)
    }

    /// [`Conn::query`] with Redis' own error, for a caller that tells the server's refusals
    /// apart.
    pub async fn query_redis<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self.query_once(cmd).await {
            Err(e) if connection_level(&e) => self.query_once(cmd).await,
            r => r,
        }
    }

    async fn query_once<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }

    /// Sends a pipeline's commands in one write and reads their replies, once more after a
    /// connection-level failure (every command in it must be safe to repeat).
    pub async fn pipe<T: redis::FromRedisValue>(&mut self, pipe: &redis::Pipeline) -> Result<T, StoreError> {
        match self.pipe_once(pipe).await {
            Err(e) if connection_level(&e) => self.pipe_once(pipe).await.map_err(backend),
            r => r.map_err(backend),
        }
    }

    async fn pipe_once<T: redis::FromRedisValue>(&mut self, pipe: &redis::Pipeline) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => pipe.query_async(c).await,
            Conn::Cluster(c) => pipe.query_async(c).await,
        }
    }

    /// Runs a Lua script, once more after a connection-level failure.
    pub async fn invoke<T: redis::FromRedisValue>(
        &mut self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        match self.invoke_once(inv).await {
            Err(e) if connection_level(&e) => self.invoke_once(inv).await.map_err(backend),
            r => r.map_err(backend),
        }
    }

    async fn invoke_once<T: redis::FromRedisValue>(
        &mut self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => inv.invoke_async(c).await,
            Conn::Cluster(c) => inv.invoke_async(c).await,
        }
    }
}

/// The connections to one Redis server or Redis Cluster, and the key prefix. Cheap to clone;
/// [`RedisPool::for_worker`] gives a connection worker the handle on its own connection.
#[derive(Clone)]
pub struct RedisPool {
    shared: Arc<Shared>,
    /// The connection worker this handle serves, if it serves one.
    worker: Option<usize>,
}

struct Shared {
    prefix: String,
    single: Option<ConnectionManager>,
    /// For one server: a connection of its own for each connection worker, made on the
    /// worker's first call and driven by its event loop, so a store call never wakes another
    /// thread; `single` serves the other callers (readiness, the queue's workers).
    per_worker: Box<[OnceLock<ConnectionManager>]>,
    factory: Option<(redis::Client, ConnectionManagerConfig)>,
    /// Cluster connections are made on first use, so the gateway starts (and answers 503)
    /// while the cluster is unreachable, and connects once it is back.
    cluster: Option<(ClusterClient, OnceCell<ClusterConnection>)>,
    kind: &'static str,
}

impl RedisPool {
    /// One Redis server at `url`, with a connection for each of `workers` connection workers.
    /// Connections are made lazily and re-made after failures.
    pub fn single(url: &str, prefix: &str, timeout: Duration, workers: usize) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(backend)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager =
            ConnectionManager::new_lazy_with_config(client.clone(), config.clone()).map_err(backend)?;
        Ok(Self::new(Shared {
            prefix: prefix.to_string(),
            single: Some(manager),
            per_worker: (0..workers).map(|_| OnceLock::new()).collect(),
            factory: Some((client, config)),
            cluster: None,
            kind: "redis",
        }))
    }

    /// A Redis Cluster reached through any of `nodes`; MOVED and ASK redirections are
    /// followed by the client.
    pub fn cluster(nodes: &[String], prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = ClusterClient::builder(nodes.to_vec())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(3)
            .build()
            .map_err(backend)?;
        Ok(Self::new(Shared {
            prefix: prefix.to_string(),
            single: None,
            per_worker: Box::default(),
            factory: None,
            cluster: Some((client, OnceCell::new())),
            kind: "redis-cluster",
        }))
    }

    fn new(shared: Shared) -> Self {
        RedisPool { shared: Arc::new(shared), worker: None }
    }

    /// The handle connection worker `worker` uses: its commands go on a connection of the
    /// worker's own (for one server; a cluster connection is shared). Call it only from that
    /// worker's event loop, which then drives the connection.
    pub fn for_worker(&self, worker: usize) -> RedisPool {
        RedisPool { shared: self.shared.clone(), worker: Some(worker) }
    }

    /// "redis" or "redis-cluster".
    pub fn kind(&self) -> &'static str {
        self.shared.kind
    }

    /// The Redis key: prefix, then the whole key as a hash tag, so that in a cluster every
    /// key a script touches lives in one slot. Inside the tag, `%` is written `%25` and `}`
    /// `%7D`: the tag then ends at its own `}`, and two different keys never share a Redis
    /// key (the encoding is injective; `a}1` and `a)1` stay apart).
    pub fn key(&self, key: &str) -> String {
        let prefix = &self.shared.prefix;
        let escaped = key.bytes().filter(|b| matches!(b, b'%' | b'}')).count();
        let mut k = String::with_capacity(prefix.len() + key.len() + 2 * escaped + 2);
        k.push_str(prefix);
        k.push('{');
        for c in key.chars() {
            match c {
                '%' => k.push_str("%25"),
                '}' => k.push_str("%7D"),
                c => k.push(c),
            }
        }
        k.push('}');
        k
    }

    /// A handle on the connection (made on first use for a cluster).
    pub async fn conn(&self) -> Result<Conn, StoreError> {
        let s = &*self.shared;
        if let Some(shared) = &s.single {
            let own = self.worker.and_then(|i| s.per_worker.get(i)).map(|cell| {
                cell.get_or_init(|| {
                    let (client, config) = s.factory.clone().expect("set with `single`");
                    // Made from the settings that made `shared`, so it cannot fail where that
                    // did not; if it did, the shared connection serves.
                    ConnectionManager::new_lazy_with_config(client, config).unwrap_or_else(|_| shared.clone())
                })
            });
            return Ok(Conn::Single(own.unwrap_or(shared).clone()));
        }
        let (client, cell) = s.cluster.as_ref().expect("single or cluster");
        let c =
            cell.get_or_try_init(|| async { client.get_async_connection().await.map_err(backend) }).await?;
        Ok(Conn::Cluster(c.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::RedisPool;
    use std::time::Duration;

    #[tokio::test]
    async fn redis_keys_are_injective_and_keep_one_hash_tag() {
        let s = RedisPool::single("redis://127.0.0.1:1/", "p:", Duration::from_secs(1), 1).unwrap();
        assert_eq!(s.key("r:evt_a}1"), "p:{r:evt_a%7D1}");
        assert_eq!(s.key("r:evt_a)1"), "p:{r:evt_a)1}");
        assert_eq!(s.key("r:evt_%7D"), "p:{r:evt_%257D}");
        let keys = ["r:a}1", "r:a)1", "r:a%7D1", "r:a%257D1", "r:a%1", "r:a}", "r:a}}", "r:a%"];
        let mut seen = std::collections::HashSet::new();
        for k in keys {
            let rk = s.key(k);
            assert!(seen.insert(rk.clone()), "{k} collides as {rk}");
            // The hash tag is the whole encoded key: the first `}` after the `{` closes it.
            assert_eq!(rk.find('}'), Some(rk.len() - 1), "{rk}");
        }
    }
}
