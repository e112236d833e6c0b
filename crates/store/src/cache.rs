//! The check cache: what a replica last read of a customer's grant on an account, kept in
//! memory, bounded, and dropped as the change tail (`tail`) hears of changes to the account.
//!
//! An entry holds the grant itself, not a decision, so a time-limited grant still ends on time:
//! every check decides afresh from the grant and the clock. Only what can change through an
//! audited change is kept: the customer and the account both exist and the account was not merged
//! away (unknown ids are read from the database each time; merged accounts are rare).
//!
//! Consistency: an entry read at revision `R` holds for every revision from `R` up to the one
//! the tail has applied, because the tail drops it before it moves past a change to its account.
//! A read that raced a change is not kept: an entry goes in only when it was read at or after
//! every revision the tail has begun to apply (`applying`), under the same lock the tail drops
//! entries with.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use mandate_domain::membership::Grant;

use crate::records::Revision;

/// Shards, so that checks on different accounts rarely wait for one another.
const SHARDS: usize = 16;

/// What was read of one customer on one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The revision it was read at.
    pub revision: Revision,
    /// The customer's grant on the account; `None` when not associated.
    pub grant: Option<Grant>,
}

/// A cached grant, and the revision the answer reflects at least.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    pub grant: Option<Grant>,
    pub revision: Revision,
}

/// One shard: entries by account, then by customer, so that a change to an account drops all of
/// the account's entries at once.
#[derive(Default)]
struct Shard {
    accounts: HashMap<u128, HashMap<u128, Entry>>,
    len: usize,
}

/// The cache of one replica.
pub(crate) struct CheckCache {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    /// Most entries per shard.
    shard_capacity: usize,
    /// The latest revision whose change the tail has begun to apply.
    applying: AtomicI64,
    /// The latest revision whose change the tail has applied.
    applied: AtomicI64,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// A cache key's part from an id: Mandate's ids are UUIDs; anything else is not cached.
fn key(id: &str) -> Option<u128> {
    uuid::Uuid::try_parse(id).ok().map(|u| u.as_u128())
}

impl CheckCache {
    /// A cache of at most about `capacity` entries (0 keeps nothing), that has applied every
    /// change up to `revision`.
    pub fn new(capacity: usize, revision: Revision) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            shard_capacity: capacity.div_ceil(SHARDS),
            applying: AtomicI64::new(revision),
            applied: AtomicI64::new(revision),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn shard(&self, account: u128) -> &Mutex<Shard> {
        let index = usize::try_from(self.hasher.hash_one(account) % SHARDS as u64).unwrap_or(0);
        &self.shards[index]
    }

    fn lock(&self, account: u128) -> std::sync::MutexGuard<'_, Shard> {
        // A panic while holding a shard cannot leave it inconsistent: every change to a shard is
        // a single map operation and its length.
        self.shard(account)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The latest revision the tail has applied.
    pub fn applied(&self) -> Revision {
        self.applied.load(Ordering::Acquire)
    }

    /// The grant of `customer_id` on `contractor_id`, when it is cached.
    pub fn get(&self, customer_id: &str, contractor_id: &str) -> Option<Hit> {
        let found = (|| {
            let (account, customer) = (key(contractor_id)?, key(customer_id)?);
            // Read before the entry: an entry present now was not dropped by any change up to
            // `applied`.
            let applied = self.applied();
            let entry = *self.lock(account).accounts.get(&account)?.get(&customer)?;
            Some(Hit {
                grant: entry.grant,
                revision: entry.revision.max(applied),
            })
        })();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Counts a check the cache was not asked, being behind what the check needs.
    pub fn count_miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps what was read at `entry.revision`, unless the tail has begun to apply a later change
    /// (the read may predate it).
    pub fn put(&self, customer_id: &str, contractor_id: &str, entry: Entry) {
        let (Some(account), Some(customer)) = (key(contractor_id), key(customer_id)) else {
            return;
        };
        if self.shard_capacity == 0 {
            return;
        }
        let mut shard = self.lock(account);
        if entry.revision < self.applying.load(Ordering::Acquire) {
            return;
        }
        if shard.len >= self.shard_capacity {
            shard.evict(self.shard_capacity - self.shard_capacity / 10);
        }
        if shard
            .accounts
            .entry(account)
            .or_default()
            .insert(customer, entry)
            .is_none()
        {
            shard.len += 1;
        }
    }

    /// Before applying the change of `revision`: reads from before it are no longer kept.
    pub fn begin(&self, revision: Revision) {
        self.applying.fetch_max(revision, Ordering::AcqRel);
    }

    /// Drops every entry of `contractor_id`.
    pub fn drop_account(&self, contractor_id: &str) {
        match key(contractor_id) {
            Some(account) => {
                let mut shard = self.lock(account);
                if let Some(gone) = shard.accounts.remove(&account) {
                    shard.len -= gone.len();
                }
            }
            None => self.clear(),
        }
    }

    /// Drops every entry.
    pub fn clear(&self) {
        for shard in &self.shards {
            let mut shard = shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            shard.accounts.clear();
            shard.len = 0;
        }
    }

    /// After applying the change of `revision`.
    pub fn applied_through(&self, revision: Revision) {
        self.applying.fetch_max(revision, Ordering::AcqRel);
        self.applied.fetch_max(revision, Ordering::AcqRel);
    }

    /// Entries held, hits and misses so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self
                .shards
                .iter()
                .map(|s| {
                    s.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .len
                })
                .sum(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

impl Shard {
    /// Drops whole accounts, in the map's (effectively random) order, until at most `keep`
    /// entries remain.
    fn evict(&mut self, keep: usize) {
        let mut dropped = Vec::new();
        let mut len = self.len;
        for (account, entries) in &self.accounts {
            if len <= keep {
                break;
            }
            len -= entries.len();
            dropped.push(*account);
        }
        for account in dropped {
            self.accounts.remove(&account);
        }
        self.len = len;
    }
}

/// What the cache holds and how it has done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub hits: u64,
    pub misses: u64,
}

#[cfg(test)]
mod tests {
    use mandate_domain::permission::PermissionSet;

    use super::*;

    const CUSTOMER: &str = "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b";
    const ACCOUNT: &str = "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6c";

    fn entry(revision: Revision) -> Entry {
        Entry {
            revision,
            grant: Some(Grant::lasting(PermissionSet::MANAGER)),
        }
    }

    #[test]
    fn a_kept_read_answers_at_the_revision_the_tail_has_applied() {
        let cache = CheckCache::new(100, 5);
        cache.put(CUSTOMER, ACCOUNT, entry(7));
        assert_eq!(cache.get(CUSTOMER, ACCOUNT).map(|h| h.revision), Some(7));
        cache.applied_through(9);
        assert_eq!(cache.get(CUSTOMER, ACCOUNT).map(|h| h.revision), Some(9));
        assert_eq!(cache.stats().hits, 2);
    }

    #[test]
    fn a_read_older_than_a_change_being_applied_is_not_kept() {
        let cache = CheckCache::new(100, 5);
        cache.begin(6);
        cache.put(CUSTOMER, ACCOUNT, entry(5));
        assert_eq!(cache.get(CUSTOMER, ACCOUNT), None);
        cache.put(CUSTOMER, ACCOUNT, entry(6));
        assert!(cache.get(CUSTOMER, ACCOUNT).is_some());
    }

    #[test]
    fn a_change_to_an_account_drops_all_its_entries_and_no_other() {
        let cache = CheckCache::new(100, 1);
        let other = "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6d";
        cache.put(CUSTOMER, ACCOUNT, entry(1));
        cache.put(other, ACCOUNT, entry(1));
        cache.put(CUSTOMER, other, entry(1));
        cache.drop_account(ACCOUNT);
        assert_eq!(cache.get(CUSTOMER, ACCOUNT), None);
        assert_eq!(cache.get(other, ACCOUNT), None);
        assert!(cache.get(CUSTOMER, other).is_some());
        assert_eq!(cache.stats().entries, 1);
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let cache = CheckCache::new(160, 1);
        for _ in 0..5_000 {
            let account = uuid::Uuid::now_v7().to_string();
            cache.put(CUSTOMER, &account, entry(1));
        }
        assert!(cache.stats().entries <= 160, "{:?}", cache.stats());
    }

    #[test]
    fn ids_that_are_not_uuids_and_a_zero_capacity_keep_nothing() {
        let cache = CheckCache::new(100, 1);
        cache.put("legacy-7", ACCOUNT, entry(1));
        assert_eq!(cache.stats().entries, 0);
        let off = CheckCache::new(0, 1);
        off.put(CUSTOMER, ACCOUNT, entry(1));
        assert_eq!(off.get(CUSTOMER, ACCOUNT), None);
    }
}
