//! Redis and Redis Cluster backends: each step of the claim protocol is one Lua script, so a
//! delivery costs two round trips (claim, then complete or release) on a multiplexed,
//! automatically reconnecting connection ([`crate::store_conn::redis_pool`]).

use super::{Claim, Store, StoreError, StoreFuture, Token};
use crate::store_conn::redis_pool::RedisPool;
use redis::Script;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// The value of a delivered key.
const DELIVERED: &str = "D";

/// Creates the key in flight unless it exists. Returns `{0}` acquired, `{1}` delivered, or
/// `{2, pttl}` in flight. A lapsed lease has expired out of Redis, so the retry acquires it.
/// A key that already holds our own token is ours: the claim was run before and its answer
/// lost with the connection, so [`crate::store_conn::redis_pool::Conn`]'s one retry of it is acquired, not in flight.
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

fn token_hex(t: Token) -> String {
    format!("{:032x}", t.0)
}

fn millis(d: Duration) -> u64 {
    d.as_millis().clamp(1, u64::MAX as u128) as u64
}

/// A store in one Redis server or a Redis Cluster.
pub struct RedisStore {
    redis: RedisPool,
}

impl RedisStore {
    /// One Redis server at `url`, with a connection for each of `workers` connection workers.
    /// Connections are made lazily and re-made after failures.
    pub fn single(url: &str, prefix: &str, timeout: Duration, workers: usize) -> Result<Self, StoreError> {
        Ok(RedisStore { redis: RedisPool::single(url, prefix, timeout, workers)? })
    }

    /// A Redis Cluster reached through any of `nodes`; MOVED and ASK redirections are
    /// followed by the client.
    pub fn cluster(nodes: &[String], prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        Ok(RedisStore { redis: RedisPool::cluster(nodes, prefix, timeout)? })
    }

    /// [`Store::claim`] with a given token. Running it again with the same token answers the
    /// same (acquired), which is what makes the claim safe to retry.
    pub async fn claim_as(&self, key: &str, token: Token, lease: Duration) -> Result<Claim, StoreError> {
        let mut inv = CLAIM.prepare_invoke();
        inv.key(self.redis.key(key)).arg(token_hex(token)).arg(millis(lease)).arg(DELIVERED);
        let r: Vec<i64> = self.run(inv).await?;
        match r.as_slice() {
            [0] => Ok(Claim::Acquired(token)),
            [1] => Ok(Claim::Delivered),
            [2, pttl] => Ok(Claim::InFlight { retry_after: Duration::from_millis((*pttl).max(1000) as u64) }),
            other => Err(StoreError::Backend(format!("unexpected claim reply {other:?}"))),
        }
    }

    async fn run<T: redis::FromRedisValue>(&self, inv: redis::ScriptInvocation<'_>) -> Result<T, StoreError> {
        self.redis.conn().await?.invoke(&inv).await
    }
}

impl Store for RedisStore {
    fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim> {
        Box::pin(self.claim_as(key, Token::random(), lease))
    }

    fn complete<'a>(&'a self, key: &'a str, token: Token, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut inv = COMPLETE.prepare_invoke();
            inv.key(self.redis.key(key)).arg(token_hex(token)).arg(DELIVERED).arg(millis(ttl));
            let _: i64 = self.run(inv).await?;
            Ok(())
        })
    }

    fn release<'a>(&'a self, key: &'a str, token: Token) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut inv = RELEASE.prepare_invoke();
            inv.key(self.redis.key(key)).arg(token_hex(token));
            let _: i64 = self.run(inv).await?;
            Ok(())
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            // A failure cached from while Redis was down is retried on a fresh connection
            // (see `Conn`), so readiness answers for Redis as it is now.
            let _: String = self.redis.conn().await?.query(&redis::cmd("PING")).await?;
            Ok(())
        })
    }

    fn kind(&self) -> &'static str {
        self.redis.kind()
    }

    fn for_worker(&self, worker: usize) -> Option<Arc<dyn Store>> {
        Some(Arc::new(RedisStore { redis: self.redis.for_worker(worker) }))
    }
}
