//! The in-process store: sharded maps bounded by one key count across the shards, entries
//! expiring by TTL. Keys are kept as 128-bit hashes, so an entry is a few dozen bytes
//! whatever the id's length.

use super::{Claim, Store, StoreError, StoreFuture, Token};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 32;

const IN_FLIGHT: u8 = 0;
const DELIVERED: u8 = 1;

#[derive(Debug, Clone, Copy)]
struct Entry {
    token: u128,
    /// Milliseconds since the store's epoch.
    expires: u64,
    state: u8,
}

/// The map's keys are already uniform 128-bit hashes: their low bits are the hash.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

type Shard = HashMap<u128, Entry, BuildHasherDefault<PreHashed>>;

/// A bounded in-memory store. Claims are atomic across concurrent requests (one lock per
/// shard); past `max_keys` live keys a claim fails, so the gateway answers 503 rather than
/// forgetting delivered events. The bound is one count across the shards: how ids hash
/// never makes the store full early.
pub struct MemoryStore {
    shards: Vec<Mutex<Shard>>,
    /// Random per process: ids cannot be chosen to collide.
    seed: u64,
    epoch: Instant,
    max_keys: usize,
    /// Entries in the maps, across every shard (expired ones not yet swept included).
    entries: AtomicUsize,
    /// No entry expires before this (milliseconds since `epoch`): a full store sweeps the
    /// shards only once something can have expired, so a full store costs no scan per claim.
    earliest_expiry: AtomicU64,
}

impl MemoryStore {
    pub fn new(max_keys: usize) -> Self {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            seed: rand::random(),
            epoch: Instant::now(),
            max_keys,
            entries: AtomicUsize::new(0),
            earliest_expiry: AtomicU64::new(u64::MAX),
        }
    }

    /// Counts one more entry, unless `max_keys` are already counted.
    fn reserve(&self) -> bool {
        if self.entries.fetch_add(1, Ordering::AcqRel) < self.max_keys {
            return true;
        }
        self.entries.fetch_sub(1, Ordering::AcqRel);
        false
    }

    /// Notes an entry's expiry, so that a full store knows when a sweep can free space.
    fn expires_at(&self, ms: u64) {
        self.earliest_expiry.fetch_min(ms, Ordering::AcqRel);
    }

    /// Drops the expired entries of every shard, one shard locked at a time.
    fn sweep(&self, now_ms: u64) {
        // Entries added from here on lower it again with `expires_at`; those already in a
        // shard are seen when that shard is swept below.
        self.earliest_expiry.store(u64::MAX, Ordering::Release);
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let before = shard.len();
            let mut earliest = u64::MAX;
            shard.retain(|_, e| {
                let live = e.expires > now_ms;
                if live {
                    earliest = earliest.min(e.expires);
                }
                live
            });
            self.entries.fetch_sub(before - shard.len(), Ordering::AcqRel);
            drop(shard);
            self.expires_at(earliest);
        }
    }

    fn hash(&self, key: &str) -> u128 {
        xxhash_rust::xxh3::xxh3_128_with_seed(key.as_bytes(), self.seed)
    }

    fn shard(&self, h: u128) -> std::sync::MutexGuard<'_, Shard> {
        // The high bits pick the shard; the low bits serve the map inside it.
        let i = ((h >> 64) as usize) % SHARDS;
        // A poisoned shard only means another thread panicked mid-update of a plain map.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn millis(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Live keys (expired ones not yet swept may be counted).
    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn claim_at(&self, key: &str, lease: Duration, now: Instant) -> Result<Claim, StoreError> {
        let h = self.hash(key);
        let now_ms = self.millis(now);
        let lease_ms = lease.as_millis() as u64;
        let mut swept = false;
        loop {
            let mut shard = self.shard(h);
            if let Some(e) = shard.get_mut(&h) {
                if e.expires > now_ms {
                    return Ok(match e.state {
                        DELIVERED => Claim::Delivered,
                        _ => Claim::InFlight { retry_after: Duration::from_millis(e.expires - now_ms) },
                    });
                }
                // Expired: a lapsed lease is taken over, a lapsed delivery is forgotten.
                let token = Token::random();
                *e = Entry { token: token.0, expires: now_ms + lease_ms, state: IN_FLIGHT };
                drop(shard);
                self.expires_at(now_ms + lease_ms);
                return Ok(Claim::Acquired(token));
            }
            if self.reserve() {
                let token = Token::random();
                shard.insert(h, Entry { token: token.0, expires: now_ms + lease_ms, state: IN_FLIGHT });
                drop(shard);
                self.expires_at(now_ms + lease_ms);
                return Ok(Claim::Acquired(token));
            }
            // Full. The sweep locks every shard in turn, so this one is let go first, and the
            // key is looked up again after it.
            drop(shard);
            if swept || now_ms < self.earliest_expiry.load(Ordering::Acquire) {
                return Err(StoreError::Full(self.max_keys));
            }
            self.sweep(now_ms);
            swept = true;
        }
    }

    fn finish(&self, key: &str, token: Token, ttl: Option<Duration>) {
        let h = self.hash(key);
        let mut shard = self.shard(h);
        let ours = shard.get(&h).is_some_and(|e| e.state == IN_FLIGHT && e.token == token.0);
        if !ours {
            return;
        }
        match ttl {
            Some(ttl) => {
                let expires = self.millis(Instant::now()) + ttl.as_millis() as u64;
                shard.insert(h, Entry { token: token.0, expires, state: DELIVERED });
                drop(shard);
                self.expires_at(expires);
            }
            None => {
                shard.remove(&h);
                self.entries.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Bytes the maps hold per key at their current capacity (for the memory target).
    pub fn bytes_per_key(&self) -> f64 {
        let (mut cap, mut len) = (0usize, 0usize);
        for s in &self.shards {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            cap += s.capacity();
            len += s.len();
        }
        let slot = std::mem::size_of::<(u128, Entry)>() + 1;
        (cap * slot) as f64 / len.max(1) as f64
    }
}

impl Store for MemoryStore {
    fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim> {
        Box::pin(std::future::ready(self.claim_at(key, lease, Instant::now())))
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

    fn in_process(&self) -> bool {
        true
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
        let Ok(Claim::Acquired(old)) = s.claim_at("k", LEASE, now) else { panic!() };
        let later = now + LEASE + Duration::from_millis(1);
        let Ok(Claim::Acquired(new)) = s.claim_at("k", LEASE, later) else { panic!() };
        assert_ne!(old, new);
        s.finish("k", old, None);
        assert!(matches!(s.claim_at("k", LEASE, later), Ok(Claim::InFlight { .. })));
    }

    #[test]
    fn max_keys_counts_across_shards_so_exactly_max_keys_distinct_events_fit() {
        let s = MemoryStore::new(64);
        let now = Instant::now();
        for i in 0..64 {
            let claim = s.claim_at(&format!("/p:evt_{i}"), LEASE, now);
            assert!(matches!(claim, Ok(Claim::Acquired(_))), "event {i}: {claim:?}");
        }
        assert!(matches!(s.claim_at("/p:evt_64", LEASE, now), Err(StoreError::Full(64))));
        assert_eq!(s.len(), 64);
        // Once the leases lapse, a full store reclaims the expired entries.
        let later = now + LEASE + Duration::from_millis(1);
        for i in 0..64 {
            assert!(matches!(s.claim_at(&format!("/p:new_{i}"), LEASE, later), Ok(Claim::Acquired(_))));
        }
        assert!(matches!(s.claim_at("/p:new_64", LEASE, later), Err(StoreError::Full(64))));
        assert_eq!(s.len(), 64);
    }

    #[test]
    fn a_released_claim_gives_its_place_back() {
        let s = MemoryStore::new(1);
        let now = Instant::now();
        let Ok(Claim::Acquired(t)) = s.claim_at("a", LEASE, now) else { panic!() };
        assert!(matches!(s.claim_at("b", LEASE, now), Err(StoreError::Full(1))));
        s.finish("a", t, None);
        assert!(matches!(s.claim_at("b", LEASE, now), Ok(Claim::Acquired(_))));
    }

    #[test]
    fn bounded_by_max_keys_and_sweeps_expired() {
        let s = MemoryStore::new(SHARDS); // one key per shard
        let now = Instant::now();
        let mut full = false;
        for i in 0..SHARDS * 4 {
            if let Err(StoreError::Full(_)) = s.claim_at(&format!("k{i}"), LEASE, now) {
                full = true;
            }
        }
        assert!(full);
        assert!(s.len() <= SHARDS);
        // Once the leases lapse, the space is reused.
        let later = now + LEASE * 2;
        let mut reused = 0;
        for i in 0..SHARDS * 4 {
            reused += matches!(s.claim_at(&format!("n{i}"), LEASE, later), Ok(Claim::Acquired(_))) as usize;
        }
        assert!(reused > 0);
        assert!(s.len() <= SHARDS);
    }

    #[test]
    fn a_remembered_key_costs_well_under_200_bytes() {
        let s = MemoryStore::new(1_000_000);
        let now = Instant::now();
        for i in 0..200_000 {
            let key = format!("/webhooks/paylent:evt_{i:024}");
            let Ok(Claim::Acquired(t)) = s.claim_at(&key, LEASE, now) else { panic!() };
            s.finish(&key, t, Some(Duration::from_secs(3600)));
        }
        let per_key = s.bytes_per_key();
        assert!(per_key < 200.0, "{per_key} bytes per key");
    }

    #[tokio::test]
    async fn concurrent_claims_acquire_once() {
        super::super::assert_claims_once(std::sync::Arc::new(MemoryStore::new(1000))).await;
    }
}
