//! Redis and Redis Cluster backends: each step of the claim protocol is one Lua script, so a
//! delivery costs two round trips (claim, then complete or release) on a multiplexed,
//! automatically reconnecting connection.

use super::{Claim, Store, StoreError, StoreFuture, Token};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
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
/// A key that already holds our own token is ours: the claim was run before and its answer
/// lost with the connection, so [`Conn`]'s one retry of it is acquired, not in flight.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {0}
end
if v == ARGV[1] then return {0} end
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
/// be safe to repeat (the claim scripts are: a claim that finds its own token is acquired,
/// and completion and release compare the token).
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Runs a command, once more after a connection-level failure.
    pub async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        match self.query_once(cmd).await {
            Err(e) if connection_level(&e) => self.query_once(cmd).await.map_err(backend),
            r => r.map_err(backend),
        }
    }

    async fn query_once<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
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
    /// key a script touches lives in one slot. Inside the tag, `%` is written `%25` and `}`
    /// `%7D`: the tag then ends at its own `}`, and two different keys never share a Redis
    /// key (the encoding is injective; `a}1` and `a)1` stay apart).
    pub fn key(&self, key: &str) -> String {
        let escaped = key.bytes().filter(|b| matches!(b, b'%' | b'}')).count();
        let mut k = String::with_capacity(self.prefix.len() + key.len() + 2 * escaped + 2);
        k.push_str(&self.prefix);
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

    /// [`Store::claim`] with a given token. Running it again with the same token answers the
    /// same (acquired), which is what makes the claim safe to retry.
    pub async fn claim_as(&self, key: &str, token: Token, lease: Duration) -> Result<Claim, StoreError> {
        let mut inv = CLAIM.prepare_invoke();
        inv.key(self.key(key)).arg(token_hex(token)).arg(millis(lease)).arg(DELIVERED);
        let r: Vec<i64> = self.run(inv).await?;
        match r.as_slice() {
            [0] => Ok(Claim::Acquired(token)),
            [1] => Ok(Claim::Delivered),
            [2, pttl] => Ok(Claim::InFlight { retry_after: Duration::from_millis((*pttl).max(1000) as u64) }),
            other => Err(StoreError::Backend(format!("unexpected claim reply {other:?}"))),
        }
    }

    async fn run<T: redis::FromRedisValue>(&self, inv: redis::ScriptInvocation<'_>) -> Result<T, StoreError> {
        self.conn().await?.invoke(&inv).await
    }
}

impl Store for RedisStore {
    fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim> {
        Box::pin(self.claim_as(key, Token::random(), lease))
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
            // A failure cached from while Redis was down is retried on a fresh connection
            // (see `Conn`), so readiness answers for Redis as it is now.
            let _: String = self.conn().await?.query(&redis::cmd("PING")).await?;
            Ok(())
        })
    }

    fn kind(&self) -> &'static str {
        self.kind
    }
}

#[cfg(test)]
mod tests {
    use super::RedisStore;
    use std::time::Duration;

    #[tokio::test]
    async fn redis_keys_are_injective_and_keep_one_hash_tag() {
        let s = RedisStore::single("redis://127.0.0.1:1/", "p:", Duration::from_secs(1), 1).unwrap();
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
