//! The in-process store: sharded maps bounded by a key count, entries expiring by TTL.

use super::{Claim, Store, StoreError, StoreFuture, Token};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 32;

#[derive(Debug)]
enum State {
    InFlight(Token),
    Delivered,
}

#[derive(Debug)]
struct Entry {
    state: State,
    expires: Instant,
}

/// A bounded in-memory store. Claims are atomic across concurrent requests (one lock per
/// shard); past `max_keys` live keys a claim fails, so the gateway answers 503 rather than
/// forgetting delivered events.
pub struct MemoryStore {
    shards: Vec<Mutex<HashMap<Box<str>, Entry>>>,
    hasher: RandomState,
    per_shard: usize,
    max_keys: usize,
}

impl MemoryStore {
    pub fn new(max_keys: usize) -> Self {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            max_keys,
        }
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Entry>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        // A poisoned shard only means another thread panicked mid-update of a plain map.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Live keys (expired ones not yet swept may be counted).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn claim_now(&self, key: &str, lease: Duration, now: Instant) -> Result<Claim, StoreError> {
        let mut shard = self.shard(key);
        if let Some(e) = shard.get_mut(key) {
            if e.expires > now {
                return Ok(match e.state {
                    State::Delivered => Claim::Delivered,
                    State::InFlight(_) => Claim::InFlight { retry_after: e.expires - now },
                });
            }
            // Expired: a lapsed lease is taken over, a lapsed delivery is forgotten.
            let token = Token::random();
            *e = Entry { state: State::InFlight(token), expires: now + lease };
            return Ok(Claim::Acquired(token));
        }
        if shard.len() >= self.per_shard {
            shard.retain(|_, e| e.expires > now);
            if shard.len() >= self.per_shard {
                return Err(StoreError::Full(self.max_keys));
            }
        }
        let token = Token::random();
        shard.insert(key.into(), Entry { state: State::InFlight(token), expires: now + lease });
        Ok(Claim::Acquired(token))
    }

    fn finish(&self, key: &str, token: Token, ttl: Option<Duration>) {
        let mut shard = self.shard(key);
        let ours = matches!(shard.get(key), Some(Entry { state: State::InFlight(t), .. }) if *t == token);
        if !ours {
            return;
        }
        match ttl {
            Some(ttl) => {
                shard.insert(key.into(), Entry { state: State::Delivered, expires: Instant::now() + ttl });
            }
            None => {
                shard.remove(key);
            }
        }
    }
}

impl Store for MemoryStore {
    fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim> {
        let r = self.claim_now(key, lease, Instant::now());
        Box::pin(std::future::ready(r))
    }

    fn complete<'a>(&'a self, key: &'a str, token: Token, ttl: Duration) -> StoreFuture<'a, ()> {
        self.finish(key, token, Some(ttl));
        Box::pin(std::future::ready(Ok(())))
    }

    fn release<'a>(&'a self, key: &'a str, token: Token) -> StoreFuture<'a, ()> {
        self.finish(key, token, None);
        Box::pin(std::future::ready(Ok(())))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn claim_complete_then_duplicate() {
        let s = MemoryStore::new(100);
        let Claim::Acquired(t) = s.claim("k", LEASE).await.unwrap() else { panic!() };
        assert!(matches!(s.claim("k", LEASE).await.unwrap(), Claim::InFlight { .. }));
        s.complete("k", t, Duration::from_secs(60)).await.unwrap();
        assert_eq!(s.claim("k", LEASE).await.unwrap(), Claim::Delivered);
    }

    #[tokio::test]
    async fn release_only_with_our_token() {
        let s = MemoryStore::new(100);
        let Claim::Acquired(t) = s.claim("k", LEASE).await.unwrap() else { panic!() };
        s.release("k", Token(t.0 ^ 1)).await.unwrap();
        assert!(matches!(s.claim("k", LEASE).await.unwrap(), Claim::InFlight { .. }));
        s.release("k", t).await.unwrap();
        assert!(matches!(s.claim("k", LEASE).await.unwrap(), Claim::Acquired(_)));
    }

    #[test]
    fn expired_lease_is_taken_over_and_old_holder_cannot_finish() {
        let s = MemoryStore::new(100);
        let now = Instant::now();
        let Ok(Claim::Acquired(old)) = s.claim_now("k", LEASE, now) else { panic!() };
        let later = now + LEASE + Duration::from_millis(1);
        let Ok(Claim::Acquired(new)) = s.claim_now("k", LEASE, later) else { panic!() };
        assert_ne!(old, new);
        s.finish("k", old, None);
        assert!(matches!(s.claim_now("k", LEASE, later), Ok(Claim::InFlight { .. })));
    }

    #[test]
    fn bounded_by_max_keys_and_sweeps_expired() {
        let s = MemoryStore::new(SHARDS); // one key per shard
        let now = Instant::now();
        let mut full = false;
        for i in 0..SHARDS * 4 {
            if let Err(StoreError::Full(_)) = s.claim_now(&format!("k{i}"), LEASE, now) {
                full = true;
            }
        }
        assert!(full);
        assert!(s.len() <= SHARDS);
        // Once the leases lapse, the space is reused.
        let later = now + LEASE * 2;
        for i in 0..SHARDS * 4 {
            let _ = s.claim_now(&format!("n{i}"), LEASE, later);
        }
        assert!(s.len() <= SHARDS);
        assert!(matches!(s.claim_now("k0", LEASE, later), Ok(Claim::Acquired(_)) | Err(StoreError::Full(_))));
    }

    #[tokio::test]
    async fn concurrent_claims_acquire_once() {
        let s = std::sync::Arc::new(MemoryStore::new(1000));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move { s.claim("same", LEASE).await.unwrap() }));
        }
        let mut acquired = 0;
        for t in tasks {
            if let Claim::Acquired(_) = t.await.unwrap() {
                acquired += 1;
            }
        }
        assert_eq!(acquired, 1);
    }
}
