//! The check cache: what a replica last read of a customer's grant on an account, kept in
//! memory, bounded, and dropped as the change tail (`tail`) hears of changes to the account.
//!
//! An entry holds the grant itself, not a decision, so a time-limited grant still ends on time:
//! every check decides afresh from the grant and the clock. Only what can change through an
//! audited change is kept: the customer and the account both exist and the account was not merged
//! away (unknown ids are read from the database each time; merged accounts are rare).
//!
//! Beside the grants it keeps what checks by application read besides them: the accounts an
//! application is linked to (up to `MOST_LINKS`; of an application linked more widely, only
//! that it is, and a check on it is decided from the customer's memberships and those accounts'
//! applications) with the legacy records that own it, the legacy records each customer has
//! claimed, and which customers exist. A link, an unlink, a merge or an import drops what it
//! changed, as a change to an account drops the account's grants.
//!
//! Consistency: an entry read at revision `R` holds for every revision from `R` up to the one
//! the tail has applied, because the tail drops it before it moves past a change to its account.
//! A read that raced a change is not kept: an entry goes in only when it was read at or after
//! every revision the tail has begun to apply (`applying`), under the same lock the tail drops
//! entries with.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mandate_domain::membership::Grant;

use crate::records::Revision;

/// Shards, so that checks on different accounts rarely wait for one another.
const SHARDS: usize = 16;
/// The most accounts an application may be linked to for its links to be kept.
pub(crate) const MOST_LINKS: usize = 64;

/// What was read of an application: the accounts it is linked to, and the legacy customer
/// records that own it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppLinks {
    /// The revision it was read at.
    pub revision: Revision,
    /// The accounts, in id order; none when `wide`.
    pub accounts: Arc<[String]>,
    /// Linked to more than `MOST_LINKS` accounts: a check decides from the customer's
    /// memberships instead.
    pub wide: bool,
    /// The legacy customer records the application belongs to.
    pub owners: Arc<[String]>,
}

/// The most accounts a customer may be associated with for its memberships to be kept.
pub(crate) const MOST_MEMBERSHIPS: usize = 256;
/// The most applications an account may be linked to for its list of them to be kept.
pub(crate) const MOST_ACCOUNT_APPS: usize = 1000;

/// A customer's memberships, as read at `revision`: each account with the customer's grant, in
/// account order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Memberships {
    pub revision: Revision,
    pub accounts: Arc<[(String, Grant)]>,
}

/// The applications linked to an account, as read at `revision`, in (bytewise) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccountApps {
    pub revision: Revision,
    pub applications: Arc<[String]>,
}

/// The legacy customer records a customer has claimed, as read at `revision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claimed {
    pub revision: Revision,
    pub records: Arc<[String]>,
}

/// One shard of what is kept by application.
#[derive(Default)]
struct AppShard {
    apps: HashMap<String, AppLinks>,
}

/// One shard of what is kept by customer: the records each has claimed, and that it exists
/// (customers are never deleted).
#[derive(Default)]
struct CustomerShard {
    claimed: HashMap<u128, Claimed>,
    known: HashSet<u128>,
    memberships: HashMap<u128, Memberships>,
}

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
    /// Each account's applications, for the lists of accessible applications.
    applications: HashMap<u128, AccountApps>,
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
    apps: Vec<Mutex<AppShard>>,
    customers: Vec<Mutex<CustomerShard>>,
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
            apps: (0..SHARDS).map(|_| Mutex::default()).collect(),
            customers: (0..SHARDS).map(|_| Mutex::default()).collect(),
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

    /// Whether the cache keeps anything (a capacity of 0 turns it off).
    pub fn keeps(&self) -> bool {
        self.shard_capacity > 0
    }

    /// The latest revision the tail has applied.
    pub fn applied(&self) -> Revision {
        self.applied.load(Ordering::Acquire)
    }

    /// The grant of `customer_id` on `contractor_id`, when it is cached; counted as a hit or
    /// a miss.
    pub fn get(&self, customer_id: &str, contractor_id: &str) -> Option<Hit> {
        let found = self.peek(customer_id, contractor_id);
        self.count(found.is_some());
        found
    }

    /// `get`, uncounted.
    fn peek(&self, customer_id: &str, contractor_id: &str) -> Option<Hit> {
        // Read before the entry: an entry present now was not dropped by any change up to
        // `applied`.
        let applied = self.applied();
        let entry = self.entry(customer_id, contractor_id)?;
        Some(Hit {
            grant: entry.grant,
            revision: entry.revision.max(applied),
        })
    }

    /// The entry of `customer_id` on `contractor_id` as it was read: one of the several reads
    /// of a check by application, which uses only entries read at or before the revision the
    /// tail had applied when it began, so that all of them hold at that one revision.
    pub fn entry(&self, customer_id: &str, contractor_id: &str) -> Option<Entry> {
        let (account, customer) = (key(contractor_id)?, key(customer_id)?);
        self.lock(account)
            .accounts
            .get(&account)?
            .get(&customer)
            .copied()
    }

    /// Counts a check the cache answered (`true`) or could not.
    pub fn count(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn app_shard(&self, application_id: &str) -> std::sync::MutexGuard<'_, AppShard> {
        let index =
            usize::try_from(self.hasher.hash_one(application_id) % SHARDS as u64).unwrap_or(0);
        self.apps[index]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn customer_shard(&self, customer: u128) -> std::sync::MutexGuard<'_, CustomerShard> {
        let index = usize::try_from(self.hasher.hash_one(customer) % SHARDS as u64).unwrap_or(0);
        self.customers[index]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What is kept of `application_id`'s links.
    pub fn app(&self, application_id: &str) -> Option<AppLinks> {
        self.app_shard(application_id)
            .apps
            .get(application_id)
            .cloned()
    }

    /// Keeps `links` of `application_id`, unless they are too many or the tail has begun to
    /// apply a later change.
    pub fn put_app(&self, application_id: &str, links: AppLinks) {
        if self.shard_capacity == 0 || links.accounts.len() > MOST_LINKS {
            return;
        }
        let mut shard = self.app_shard(application_id);
        if links.revision < self.applying.load(Ordering::Acquire) {
            return;
        }
        if shard.apps.len() >= self.shard_capacity {
            let keep = self.shard_capacity - self.shard_capacity / 10;
            let dropped: Vec<String> = shard.apps.keys().skip(keep).cloned().collect();
            for app in dropped {
                shard.apps.remove(&app);
            }
        }
        shard.apps.insert(application_id.to_owned(), links);
    }

    /// Drops what is kept of `application_id`.
    pub fn drop_app(&self, application_id: &str) {
        self.app_shard(application_id).apps.remove(application_id);
    }

    /// Drops what is kept of every application, every account's applications, and every
    /// customer's claimed records and memberships.
    pub fn clear_apps(&self) {
        self.drop_account_apps(None);
        self.drop_memberships(None);
        self.drop_claimed(None);
        for shard in &self.apps {
            shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .apps
                .clear();
        }
    }

    /// Keeps `value` for `customer_id` in the map of its customer shard that `map` picks,
    /// unless the cache keeps nothing or the tail has begun to apply a change after `revision`
    /// (a full map is emptied first).
    fn keep_for_customer<V>(
        &self,
        customer_id: &str,
        revision: Revision,
        value: V,
        map: fn(&mut CustomerShard) -> &mut HashMap<u128, V>,
    ) {
        let Some(customer) = key(customer_id) else {
            return;
        };
        if self.shard_capacity == 0 {
            return;
        }
        let mut shard = self.customer_shard(customer);
        if revision < self.applying.load(Ordering::Acquire) {
            return;
        }
        let map = map(&mut shard);
        if map.len() >= self.shard_capacity {
            map.clear();
        }
        map.insert(customer, value);
    }

    /// Drops what the map `map` picks holds for `customer_id` (for every customer when it is
    /// no id).
    fn forget_for_customer<V>(
        &self,
        customer_id: Option<&str>,
        map: fn(&mut CustomerShard) -> &mut HashMap<u128, V>,
    ) {
        match customer_id.and_then(key) {
            Some(customer) => {
                map(&mut self.customer_shard(customer)).remove(&customer);
            }
            None => {
                for shard in &self.customers {
                    map(&mut shard
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner))
                    .clear();
                }
            }
        }
    }

    /// The legacy records `customer_id` has claimed, when they are kept.
    pub fn claimed(&self, customer_id: &str) -> Option<Claimed> {
        let customer = key(customer_id)?;
        self.customer_shard(customer)
            .claimed
            .get(&customer)
            .cloned()
    }

    /// Keeps the records `customer_id` has claimed, unless the tail has begun to apply a later
    /// change.
    pub fn put_claimed(&self, customer_id: &str, claimed: Claimed) {
        self.keep_for_customer(customer_id, claimed.revision, claimed, |s| &mut s.claimed);
    }

    /// Drops the records kept for `customer_id` (all of them when it is no id).
    pub fn drop_claimed(&self, customer_id: Option<&str>) {
        self.forget_for_customer(customer_id, |s| &mut s.claimed);
    }

    /// The memberships of `customer_id`, when they are kept.
    pub fn memberships(&self, customer_id: &str) -> Option<Memberships> {
        let customer = key(customer_id)?;
        self.customer_shard(customer)
            .memberships
            .get(&customer)
            .cloned()
    }

    /// Keeps the memberships of `customer_id`, unless they are too many or the tail has begun
    /// to apply a later change.
    pub fn put_memberships(&self, customer_id: &str, memberships: Memberships) {
        if memberships.accounts.len() > MOST_MEMBERSHIPS {
            return;
        }
        let revision = memberships.revision;
        self.keep_for_customer(customer_id, revision, memberships, |s| &mut s.memberships);
    }

    /// Drops the memberships kept for `customer_id` (all of them when it is no id).
    pub fn drop_memberships(&self, customer_id: Option<&str>) {
        self.forget_for_customer(customer_id, |s| &mut s.memberships);
    }

    /// The applications of `contractor_id`, when they are kept.
    pub fn account_apps(&self, contractor_id: &str) -> Option<AccountApps> {
        let account = key(contractor_id)?;
        self.lock(account).applications.get(&account).cloned()
    }

    /// Keeps the applications of `contractor_id`, unless they are too many or the tail has
    /// begun to apply a later change. They are kept in bytewise order, whatever order the
    /// database sorted them in, so that they can be searched.
    pub fn put_account_apps(&self, contractor_id: &str, mut apps: AccountApps) {
        let Some(account) = key(contractor_id) else {
            return;
        };
        if self.shard_capacity == 0 || apps.applications.len() > MOST_ACCOUNT_APPS {
            return;
        }
        if !apps.applications.is_sorted() {
            let mut sorted = apps.applications.to_vec();
            sorted.sort_unstable();
            apps.applications = sorted.into();
        }
        let mut shard = self.lock(account);
        if apps.revision < self.applying.load(Ordering::Acquire) {
            return;
        }
        if shard.applications.len() >= self.shard_capacity {
            shard.applications.clear();
        }
        shard.applications.insert(account, apps);
    }

    /// Drops the applications kept for `contractor_id` (all of them when it is no id).
    pub fn drop_account_apps(&self, contractor_id: Option<&str>) {
        match contractor_id.and_then(key) {
            Some(account) => {
                self.lock(account).applications.remove(&account);
            }
            None => {
                for shard in &self.shards {
                    shard
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .applications
                        .clear();
                }
            }
        }
    }

    /// Whether `customer_id` is known to exist.
    pub fn knows_customer(&self, customer_id: &str) -> bool {
        key(customer_id)
            .is_some_and(|customer| self.customer_shard(customer).known.contains(&customer))
    }

    /// Notes that `customer_id` exists.
    pub fn put_customer(&self, customer_id: &str) {
        let Some(customer) = key(customer_id) else {
            return;
        };
        if self.shard_capacity == 0 {
            return;
        }
        let mut shard = self.customer_shard(customer);
        if shard.known.len() >= self.shard_capacity {
            shard.known.clear();
        }
        shard.known.insert(customer);
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

    /// Drops every entry, of grants and of applications.
    pub fn clear(&self) {
        self.clear_apps();
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
            applications: self
                .apps
                .iter()
                .map(|s| {
                    s.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .apps
                        .len()
                })
                .sum(),
            memberships: self
                .customers
                .iter()
                .map(|s| {
                    s.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .memberships
                        .len()
                })
                .sum(),
            account_apps: self
                .shards
                .iter()
                .map(|s| {
                    s.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .applications
                        .len()
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
    /// Applications whose links are held.
    pub applications: usize,
    /// Customers whose memberships are held.
    pub memberships: usize,
    /// Accounts whose applications are held.
    pub account_apps: usize,
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

    fn links(revision: Revision, accounts: &[&str]) -> AppLinks {
        AppLinks {
            revision,
            accounts: accounts.iter().map(|a| (*a).to_owned()).collect(),
            wide: false,
            owners: Arc::from(Vec::new()),
        }
    }

    #[test]
    fn an_applications_links_are_kept_until_a_change_drops_them() {
        let cache = CheckCache::new(100, 1);
        cache.put_app("24-000001 BLD", links(1, &[ACCOUNT]));
        assert_eq!(cache.app("24-000001 BLD"), Some(links(1, &[ACCOUNT])));
        assert_eq!(cache.stats().applications, 1);
        cache.drop_app("24-000001 BLD");
        assert_eq!(cache.app("24-000001 BLD"), None);
        cache.put_app("24-000002 BLD", links(1, &[ACCOUNT]));
        cache.put_claimed(
            CUSTOMER,
            Claimed {
                revision: 1,
                records: Arc::from(vec!["L-1".to_owned()]),
            },
        );
        cache.clear_apps();
        assert_eq!(cache.app("24-000002 BLD"), None);
        assert_eq!(cache.claimed(CUSTOMER), None);
    }

    #[test]
    fn links_read_before_a_change_being_applied_or_too_many_are_not_kept() {
        let cache = CheckCache::new(100, 5);
        cache.begin(6);
        cache.put_app("24-000001 BLD", links(5, &[ACCOUNT]));
        assert_eq!(cache.app("24-000001 BLD"), None);
        let many: Vec<String> = (0..=MOST_LINKS)
            .map(|_| uuid::Uuid::now_v7().to_string())
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        cache.put_app("24-000002 BLD", links(6, &many));
        assert_eq!(cache.app("24-000002 BLD"), None);
        cache.put_app("24-000002 BLD", links(6, &many[..MOST_LINKS]));
        assert!(cache.app("24-000002 BLD").is_some());
    }

    #[test]
    fn an_accounts_applications_are_kept_in_bytewise_order_whatever_order_they_came_in() {
        let cache = CheckCache::new(100, 1);
        let read = [
            "24-000002 BLD",
            "24-000001 bld",
            "24-000001 BLD",
            "24 000003 BLD",
        ];
        cache.put_account_apps(
            ACCOUNT,
            AccountApps {
                revision: 1,
                applications: read.iter().map(|a| (*a).to_owned()).collect(),
            },
        );
        let kept = cache.account_apps(ACCOUNT).unwrap();
        assert_eq!(
            kept.applications.as_ref(),
            [
                "24 000003 BLD",
                "24-000001 BLD",
                "24-000001 bld",
                "24-000002 BLD"
            ]
        );
    }

    #[test]
    fn claimed_records_are_dropped_for_their_customer_alone() {
        let cache = CheckCache::new(100, 1);
        let other = "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6d";
        let claimed = Claimed {
            revision: 1,
            records: Arc::from(vec!["L-1".to_owned()]),
        };
        cache.put_claimed(CUSTOMER, claimed.clone());
        cache.put_claimed(other, claimed.clone());
        cache.drop_claimed(Some(CUSTOMER));
        assert_eq!(cache.claimed(CUSTOMER), None);
        assert_eq!(cache.claimed(other), Some(claimed));
        cache.drop_claimed(None);
        assert_eq!(cache.claimed(other), None);
    }

    #[test]
    fn what_is_kept_by_application_and_customer_stays_within_the_capacity() {
        let cache = CheckCache::new(160, 1);
        for n in 0..5_000 {
            cache.put_app(&format!("24-{n:06} BLD"), links(1, &[ACCOUNT]));
            let customer = uuid::Uuid::now_v7().to_string();
            cache.put_customer(&customer);
            cache.put_claimed(
                &customer,
                Claimed {
                    revision: 1,
                    records: Arc::from(Vec::new()),
                },
            );
            cache.put_memberships(
                &customer,
                Memberships {
                    revision: 1,
                    accounts: Arc::from(Vec::new()),
                },
            );
            cache.put_account_apps(
                &uuid::Uuid::now_v7().to_string(),
                AccountApps {
                    revision: 1,
                    applications: Arc::from(vec![format!("24-{n:06} BLD")]),
                },
            );
        }
        let stats = cache.stats();
        assert!(stats.applications <= 160, "{stats:?}");
        assert!(
            stats.memberships > 0 && stats.memberships <= 160,
            "{stats:?}"
        );
        assert!(
            stats.account_apps > 0 && stats.account_apps <= 160,
            "{stats:?}"
        );
        let customers: usize = cache
            .customers
            .iter()
            .map(|s| {
                let s = s.lock().unwrap();
                s.known.len().max(s.claimed.len())
            })
            .sum();
        assert!(customers <= 160, "{customers}");
    }
}
