//! Redis and Redis Cluster backends: a delivery costs two commands (claim, then complete or
//! release) on a multiplexed, automatically reconnecting connection
//! ([`crate::store_conn::redis_pool`]). On Redis 7.0 and later both common steps are native
//! commands, which cost the server a fraction of a Lua script: the claim is
//! `SET key token NX PX lease GET`, the completion `SET key D PX ttl`. Release, the failure
//! path, stays a compare-and-delete script; so does the claim on an older server.

use super::{Claim, Store, StoreError, StoreFuture, Token};
use crate::store_conn::redis_pool::RedisPool;
use redis::Script;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
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

/// Why the native claim did not answer.
enum NativeError {
    /// The server refused the command itself (Redis before 7.0).
    Refused(StoreError),
    Store(StoreError),
}

/// In flight, for as long as the key's lease has left (at least a second).
fn in_flight(pttl: i64) -> Claim {
    Claim::InFlight { retry_after: Duration::from_millis(pttl.max(1000) as u64) }
}

fn token_hex(t: Token) -> String {
    format!("{:032x}", t.0)
}

fn millis(d: Duration) -> u64 {
    d.as_millis().clamp(1, u64::MAX as u128) as u64
}

/// A store in one Redis server or a Redis Cluster.
pub struct RedisStore {
    redis: RedisPool,
    /// Whether the server takes `SET … NX … GET` (Redis 7.0 and later). Learnt from the
    /// first claim's answer and kept: an older server refuses the combination with an error,
    /// and from then on every claim is the script (shared by every worker's handle).
    native: Arc<AtomicU8>,
}

/// [`RedisStore::native`]: not known yet, known to work, refused.
const NATIVE_UNKNOWN: u8 = 0;
const NATIVE_YES: u8 = 1;
const NATIVE_NO: u8 = 2;

impl RedisStore {
    /// One Redis server at `url`, with a connection for each of `workers` connection workers.
    /// Connections are made lazily and re-made after failures.
    pub fn single(url: &str, prefix: &str, timeout: Duration, workers: usize) -> Result<Self, StoreError> {
        Ok(Self::new(RedisPool::single(url, prefix, timeout, workers)?))
    }

    /// A Redis Cluster reached through any of `nodes`; MOVED and ASK redirections are
    /// followed by the client.
    pub fn cluster(nodes: &[String], prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        Ok(Self::new(RedisPool::cluster(nodes, prefix, timeout)?))
    }

    fn new(redis: RedisPool) -> Self {
        RedisStore { redis, native: Arc::new(AtomicU8::new(NATIVE_UNKNOWN)) }
    }

    /// Claims with the script only, as on a server older than 7.0 (for tests of that path).
    pub fn scripted(mut self) -> Self {
        self.native = Arc::new(AtomicU8::new(NATIVE_NO));
        self
    }

    /// [`Store::claim`] with a given token. Running it again with the same token answers the
    /// same (acquired), which is what makes the claim safe to retry.
    pub async fn claim_as(&self, key: &str, token: Token, lease: Duration) -> Result<Claim, StoreError> {
        let rkey = self.redis.key(key);
        let hex = token_hex(token);
        if self.native.load(Relaxed) != NATIVE_NO {
            match self.claim_native(&rkey, &hex, token, lease).await {
                Err(NativeError::Refused(e)) if self.native.load(Relaxed) == NATIVE_UNKNOWN => {
                    tracing::info!(error = %e, "Redis refused SET NX GET (a server older than 7.0): claims use a script");
                    self.native.store(NATIVE_NO, Relaxed);
                }
                Err(NativeError::Refused(e)) | Err(NativeError::Store(e)) => return Err(e),
                Ok(c) => {
                    self.native.store(NATIVE_YES, Relaxed);
                    return Ok(c);
                }
            }
        }
        let mut inv = CLAIM.prepare_invoke();
        inv.key(rkey).arg(hex).arg(millis(lease)).arg(DELIVERED);
        let r: Vec<i64> = self.run(inv).await?;
        match r.as_slice() {
            [0] => Ok(Claim::Acquired(token)),
            [1] => Ok(Claim::Delivered),
            [2, pttl] => Ok(in_flight(*pttl)),
            other => Err(StoreError::Backend(format!("unexpected claim reply {other:?}"))),
        }
    }

    /// The claim as one native command: `SET key token NX PX lease GET` answers the value the
    /// key held, and sets it only if there was none. Nothing → acquired; `D` → delivered; our
    /// own token → acquired (the command was sent before and its answer lost with the
    /// connection); another token → in flight, and only then a second command for how long.
    async fn claim_native(
        &self,
        rkey: &str,
        hex: &str,
        token: Token,
        lease: Duration,
    ) -> Result<Claim, NativeError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(rkey).arg(hex).arg("NX").arg("PX").arg(millis(lease)).arg("GET");
        let mut conn = self.redis.conn().await.map_err(NativeError::Store)?;
        let old: Option<Vec<u8>> = match conn.query_redis(&cmd).await {
            Ok(v) => v,
            // An error the server answered (not a broken connection): the syntax of an older
            // Redis. Anything else is the store's failure.
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) => {
                return Err(NativeError::Refused(crate::store_conn::redis_pool::backend(e)))
            }
            Err(e) => return Err(NativeError::Store(crate::store_conn::redis_pool::backend(e))),
        };
        Ok(match old.as_deref() {
            None => Claim::Acquired(token),
            Some(v) if v == DELIVERED.as_bytes() => Claim::Delivered,
            Some(v) if v == hex.as_bytes() => Claim::Acquired(token),
            Some(_) => {
                let pttl: i64 = conn.query(redis::cmd("PTTL").arg(rkey)).await.map_err(NativeError::Store)?;
                in_flight(pttl)
            }
        })
    }

    async fn run<T: redis::FromRedisValue>(&self, inv: redis::ScriptInvocation<'_>) -> Result<T, StoreError> {
        self.redis.conn().await?.invoke(&inv).await
    }
}

impl Store for RedisStore {
    fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim> {
        Box::pin(self.claim_as(key, Token::random(), lease))
    }

    /// `SET key D PX ttl`, whoever holds the key now: the upstream accepted the event, so it
    /// was delivered. If our lease lapsed and another instance claimed the key meanwhile, its
    /// claim is overwritten: its forward is already on its way (the lapse let it through),
    /// and marking the event delivered now turns the provider's next retry into a duplicate,
    /// where leaving that claim could let its failure release the key and a retry deliver a
    /// third time. (ARCHITECTURE.md, "Claims in Redis".)
    fn complete<'a>(&'a self, key: &'a str, _token: Token, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.redis.key(key)).arg(DELIVERED).arg("PX").arg(millis(ttl));
            let _: () = self.redis.conn().await?.query(&cmd).await?;
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
        Some(Arc::new(RedisStore { redis: self.redis.for_worker(worker), native: self.native.clone() }))
    }
}
