//! Redis and Redis Cluster backends: each step of the claim protocol is one Lua script, so a
//! delivery costs two round trips (claim, then complete or release) on a multiplexed,
//! automatically reconnecting connection.

use super::{Claim, Store, StoreError, StoreFuture, Token};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::Script;
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;
use tokio::sync::OnceCell;

/// The value of a delivered key.
const DELIVERED: &str = "D";

/// Creates the key in flight unless it exists. Returns `{0}` acquired, `{1}` delivered, or
/// `{2, pttl}` in flight. A lapsed lease has expired out of Redis, so the retry acquires it.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {0}
end
if v == ARGV[3] then return {1} end
return {2, redis.call('PTTL', KEYS[1])}
",
    )
});

/// Marks the key delivered for the TTL, only if it still holds our token.
static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
",
    )
});

/// Deletes the key only if it still holds our token (compare-and-delete).
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

fn backend(e: redis::RedisError) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn token_hex(t: Token) -> String {
    format!("{:032x}", t.0)
}

fn millis(d: Duration) -> u64 {
    d.as_millis().clamp(1, u64::MAX as u128) as u64
}

/// The connection a backend sends its commands on.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Runs a command.
    pub async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await.map_err(backend),
            Conn::Cluster(c) => cmd.query_async(c).await.map_err(backend),
        }
    }

    /// Runs a Lua script.
    pub async fn invoke<T: redis::FromRedisValue>(
        &mut self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        match self {
            Conn::Single(c) => inv.invoke_async(c).await.map_err(backend),
            Conn::Cluster(c) => inv.invoke_async(c).await.map_err(backend),
        }
    }
}

/// A store in one Redis server or a Redis Cluster.
pub struct RedisStore {
    prefix: String,
    single: Option<ConnectionManager>,
    /// For one server: a connection of its own for each connection worker, made on the
    /// worker's first call and driven by its event loop, so a store call never wakes another
    /// thread; `single` serves the other threads (readiness, the queue's workers).
    per_worker: Box<[OnceLock<ConnectionManager>]>,
    factory: Option<(redis::Client, ConnectionManagerConfig)>,
    /// Cluster connections are made on first use, so the gateway starts (and answers 503)
    /// while the cluster is unreachable, and connects once it is back.
    cluster: Option<(ClusterClient, OnceCell<ClusterConnection>)>,
    kind: &'static str,
}

impl RedisStore {
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
        Ok(RedisStore {
            prefix: prefix.to_string(),
            single: Some(manager),
            per_worker: (0..workers).map(|_| OnceLock::new()).collect(),
            factory: Some((client, config)),
            cluster: None,
            kind: "redis",
        })
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
        Ok(RedisStore {
            prefix: prefix.to_string(),
            single: None,
            per_worker: Box::default(),
            factory: None,
            cluster: Some((client, OnceCell::new())),
            kind: "redis-cluster",
        })
    }

    /// The Redis key: prefix, then the whole key as a hash tag, so that in a cluster every
    /// key a script touches lives in one slot.
    pub fn key(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + key.len() + 2);
        k.push_str(&self.prefix);
        k.push('{');
        // A `}` inside the key would end the hash tag early; it is still one key per script,
        // but keep the tag whole for clarity.
        k.extend(key.chars().map(|c| if c == '}' { ')' } else { c }));
        k.push('}');
        k
    }

    /// A handle on the connection (made on first use for a cluster).
    pub async fn conn(&self) -> Result<Conn, StoreError> {
        if let Some(shared) = &self.single {
            let own = crate::server::current_worker().and_then(|i| self.per_worker.get(i)).map(|cell| {
                cell.get_or_init(|| {
                    let (client, config) = self.factory.clone().expect("set with `single`");
                    // Made from the settings that made `shared`, so it cannot fail where that
                    // did not; if it did, the shared connection serves.
                    ConnectionManager::new_lazy_with_config(client, config).unwrap_or_else(|_| shared.clone())
                })
            });
            return Ok(Conn::Single(own.unwrap_or(shared).clone()));
        }
        let (client, cell) = self.cluster.as_ref().expect("single or cluster");
        let c =
            cell.get_or_try_init(|| async { client.get_async_connection().await.map_err(backend) }).await?;
        Ok(Conn::Cluster(c.clone()))
    }

    async fn run<T: redis::FromRedisValue>(&self, inv: redis::ScriptInvocation<'_>) -> Result<T, StoreError> {
        async fn go<T: redis::FromRedisValue, C: ConnectionLike>(
            inv: &redis::ScriptInvocation<'_>,
            c: &mut C,
        ) -> Result<T, StoreError> {
            inv.invoke_async(c).await.map_err(backend)
        }
        match self.conn().await? {
            Conn::Single(mut c) => go(&inv, &mut c).await,
            Conn::Cluster(mut c) => go(&inv, &mut c).await,
        }
    }
}

impl Store for RedisStore {
    fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim> {
        Box::pin(async move {
            let token = Token::random();
            let mut inv = CLAIM.prepare_invoke();
            inv.key(self.key(key)).arg(token_hex(token)).arg(millis(lease)).arg(DELIVERED);
            let r: Vec<i64> = self.run(inv).await?;
            match r.as_slice() {
                [0] => Ok(Claim::Acquired(token)),
                [1] => Ok(Claim::Delivered),
                [2, pttl] => {
                    Ok(Claim::InFlight { retry_after: Duration::from_millis((*pttl).max(1000) as u64) })
                }
                other => Err(StoreError::Backend(format!("unexpected claim reply {other:?}"))),
            }
        })
    }

    fn complete<'a>(&'a self, key: &'a str, token: Token, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut inv = COMPLETE.prepare_invoke();
            inv.key(self.key(key)).arg(token_hex(token)).arg(DELIVERED).arg(millis(ttl));
            let _: i64 = self.run(inv).await?;
            Ok(())
        })
    }

    fn release<'a>(&'a self, key: &'a str, token: Token) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut inv = RELEASE.prepare_invoke();
            inv.key(self.key(key)).arg(token_hex(token));
            let _: i64 = self.run(inv).await?;
            Ok(())
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let cmd = redis::cmd("PING");
            let _: String = match self.conn().await? {
                Conn::Single(mut c) => cmd.query_async(&mut c).await.map_err(backend)?,
                Conn::Cluster(mut c) => cmd.query_async(&mut c).await.map_err(backend)?,
            };
            Ok(())
        })
    }

    fn kind(&self) -> &'static str {
        self.kind
    }
}
