//! The change tail: one task per replica reads each new revision from the audit trail once, in
//! order, drops what the check cache held of the accounts it changed, and hands it to every
//! `WatchChanges` feed of the replica.
//!
//! The audit trail is the truth; notifications only wake the tail early. A change committed
//! through this process wakes it at once; on PostgreSQL a trigger on the audit trail sends a
//! `NOTIFY` on commit, which wakes the tails of the other replicas. The tail also reads every
//! `poll` without being woken, so a replica that lost its notification connection (or a SQLite
//! file written by another process) is at most one poll behind; the cache is used only while
//! the tail's last complete read began within the staleness bound, and read through otherwise.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sea_orm::DbBackend;
use sea_orm::sqlx::postgres::PgListener;
use tokio::sync::{Notify, broadcast};

use crate::audit::Change;
use crate::cache::CheckCache;
use crate::records::{AuditEvent, ChangeKind, Revision};
use crate::{Result, Store, current_revision};

/// The channel the audit trail's trigger notifies on PostgreSQL.
pub(crate) const CHANNEL: &str = "mandate_changes";
/// Changes read at a time.
const BATCH: u64 = 1000;
/// Changes a slow feed may fall behind the tail before it reads from the database again.
const FANOUT: usize = 4096;
/// How long the notification listener waits before connecting again after losing its
/// connection.
const RECONNECT: Duration = Duration::from_secs(1);

/// What a commit through this process changed, as the cache must forget it.
pub(crate) struct Committed<'a> {
    pub kind: ChangeKind,
    pub contractor_id: Option<&'a str>,
    pub absorbed: &'a [String],
    pub application_id: Option<&'a str>,
    pub customer_id: Option<&'a str>,
}

impl<'a> From<&Change<'a>> for Committed<'a> {
    fn from(change: &Change<'a>) -> Self {
        Self {
            kind: change.kind,
            contractor_id: change.contractor_id,
            absorbed: change.absorbed_contractor_ids,
            application_id: change.application_id,
            customer_id: change.customer_id,
        }
    }
}

/// What the tail shares with the checks and feeds of its replica.
pub(crate) struct Changes {
    pub cache: CheckCache,
    feed: broadcast::Sender<Arc<AuditEvent>>,
    /// Woken by commits through this process and by notifications.
    wake: Notify,
    /// The bound on a cached answer's age, and half of it as the time between reads.
    staleness: Duration,
    /// Microseconds after `epoch` at which the tail's last complete read began; 0 before one.
    fresh: AtomicU64,
    epoch: Instant,
}

impl Changes {
    pub fn new(cache_capacity: usize, staleness: Duration) -> Self {
        Self {
            cache: CheckCache::new(cache_capacity, 0),
            feed: broadcast::channel(FANOUT).0,
            wake: Notify::new(),
            staleness,
            fresh: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// After this process committed changes up to `revision`, the last to `contractor_id` (and
    /// the accounts it absorbed): the cache forgets the account at once, so that this replica
    /// reads its own writes, and keeps no read from before `revision`; the tail is woken to
    /// apply the changes (it forgets precisely what each changed).
    pub fn committed(&self, revision: Revision, change: &Committed<'_>) {
        self.cache.begin(revision);
        // Whatever its kind, a change naming an account may come with others to that account
        // in the same transaction (a removal with a new PIN).
        if change.contractor_id.is_some() || !change.kind.leaves_grants() {
            self.forget(change.contractor_id, change.absorbed);
        }
        self.forget_applications(
            change.kind,
            change.contractor_id,
            change.application_id,
            change.customer_id,
        );
        self.wake.notify_one();
    }

    /// Drops what the cache holds of the applications, accounts' applications, memberships and
    /// claimed records a change of `kind` changed: a link or an unlink its application and its
    /// account's list; a change to a grant, or a registration, its customer's memberships (every
    /// customer's when it names none); a merge, an import or a seed all of them (links and
    /// memberships moved or were added); a customer claiming a legacy record that customer's
    /// claimed records.
    fn forget_applications(
        &self,
        kind: ChangeKind,
        contractor_id: Option<&str>,
        application_id: Option<&str>,
        customer_id: Option<&str>,
    ) {
        // A customer's memberships change with every change that may change a grant, and
        // with the registration of an account (its registrant becomes its Manager).
        if !kind.leaves_grants() || kind == ChangeKind::ContractorRegistered {
            self.cache.drop_memberships(customer_id);
        }
        match kind {
            ChangeKind::ApplicationLinked | ChangeKind::ApplicationUnlinked => {
                match application_id {
                    Some(application_id) => self.cache.drop_app(application_id),
                    None => self.cache.clear_apps(),
                }
                self.cache.drop_account_apps(contractor_id);
            }
            ChangeKind::ContractorsMerged | ChangeKind::LegacyImported | ChangeKind::Seeded => {
                self.cache.clear_apps();
            }
            ChangeKind::LegacyCustomerLinked => self.cache.drop_claimed(customer_id),
            _ => {}
        }
    }

    /// Drops what the cache holds of `contractor_id` and `absorbed`; everything without an
    /// account.
    fn forget(&self, contractor_id: Option<&str>, absorbed: &[String]) {
        match contractor_id {
            Some(contractor_id) => {
                self.cache.drop_account(contractor_id);
                for absorbed in absorbed {
                    self.cache.drop_account(absorbed);
                }
            }
            None => self.cache.clear(),
        }
    }

    /// Whether the cache may answer a check that asks for at least `at_least`: the tail has
    /// applied that revision and read the audit trail to its end within the staleness bound.
    pub fn cache_serves(&self, at_least: Revision) -> bool {
        let fresh = self.fresh.load(Ordering::Acquire);
        fresh != 0
            && at_least <= self.cache.applied()
            && self
                .epoch
                .elapsed()
                .saturating_sub(Duration::from_micros(fresh))
                <= self.staleness
    }

    fn mark_fresh(&self, read_began: Instant) {
        let micros = u64::try_from(read_began.duration_since(self.epoch).as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.fresh.fetch_max(micros, Ordering::AcqRel);
    }

    /// Applies one change: the cache forgets what it changed, then the feeds hear of it.
    fn apply(&self, event: AuditEvent) {
        self.cache.begin(event.revision);
        if !event.kind.leaves_grants() {
            self.forget(
                event.contractor_id.as_deref(),
                &event.absorbed_contractor_ids,
            );
        }
        self.forget_applications(
            event.kind,
            event.contractor_id.as_deref(),
            event.application_id.as_deref(),
            event.customer_id.as_deref(),
        );
        self.cache.applied_through(event.revision);
        if event.kind != ChangeKind::PinRead {
            // No feed listening is not an error.
            let _ = self.feed.send(Arc::new(event));
        }
    }
}

impl ChangeKind {
    /// Whether a change of this kind leaves every customer's grant on every existing,
    /// unmerged account as it was (the cache keeps nothing else).
    fn leaves_grants(self) -> bool {
        matches!(
            self,
            ChangeKind::CustomerRegistered
                | ChangeKind::ContractorRegistered
                | ChangeKind::ContractorUpdated
                | ChangeKind::ApplicationLinked
                | ChangeKind::ApplicationUnlinked
                | ChangeKind::PinRead
                | ChangeKind::PinRotated
                | ChangeKind::PinLockoutCleared
                | ChangeKind::LegacyCustomerLinked
        )
    }
}

/// A feed's view of the tail: the changes it hands out from now on.
pub struct Subscription {
    pub receiver: broadcast::Receiver<Arc<AuditEvent>>,
    /// The latest revision the tail had applied when the subscription began.
    pub applied: Revision,
}

impl Store {
    /// Follows the audit trail from where `start_changes` began until `stop` completes: see the
    /// module's documentation. Run once per replica.
    pub async fn follow_changes(&self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let listening = self.listen_for_changes();
        tokio::pin!(listening);
        let following = async {
            let mut last = self.changes.cache.applied();
            let mut failing = false;
            loop {
                let began = Instant::now();
                match self.within(self.events_after(last, BATCH, true)).await {
                    Ok(events) => {
                        if failing {
                            tracing::info!(revision = last, "the change tail reads again");
                            failing = false;
                        }
                        let complete = (events.len() as u64) < BATCH;
                        for event in events {
                            last = event.revision;
                            self.changes.apply(event);
                        }
                        if !complete {
                            continue;
                        }
                        self.changes.mark_fresh(began);
                    }
                    Err(err) if !failing => {
                        tracing::warn!(error = %err, revision = last, "the change tail cannot read the audit trail; checks read through until it can");
                        failing = true;
                    }
                    Err(_) => {}
                }
                tokio::select! {
                    () = self.changes.wake.notified() => {}
                    () = tokio::time::sleep(self.changes.staleness / 2) => {}
                }
            }
        };
        tokio::select! {
            () = &mut stop => {}
            () = following => {}
            () = &mut listening => {}
        }
    }

    /// On PostgreSQL, wakes the tail on every notification of a commit, connecting again after
    /// losing the connection (and waking the tail then, for what it may have missed). Never
    /// ends; on SQLite it does nothing.
    async fn listen_for_changes(&self) {
        if self.db.get_database_backend() != DbBackend::Postgres {
            return std::future::pending().await;
        }
        let pool = self.db.get_postgres_connection_pool();
        loop {
            let listened = async {
                let mut listener = PgListener::connect_with(pool).await?;
                listener.listen(CHANNEL).await?;
                tracing::debug!("listening for changes committed through other replicas");
                self.changes.wake.notify_one();
                loop {
                    // A notification, or `None` when the connection was lost and made again
                    // (notifications may have been missed): either way the tail reads.
                    listener.try_recv().await?;
                    self.changes.wake.notify_one();
                }
            };
            let result: std::result::Result<(), sea_orm::sqlx::Error> = listened.await;
            if let Err(err) = result {
                tracing::warn!(error = %err, "lost the change notifications; the tail polls meanwhile");
            }
            tokio::time::sleep(RECONNECT).await;
        }
    }

    /// Starts the change tail at the latest revision: the cache holds nothing older, and feeds
    /// read what came before from the database. Call once, before serving; then
    /// `follow_changes`.
    pub async fn start_changes(&self) -> Result<()> {
        let revision = self.within(self.latest_revision()).await?;
        // Reads from before `revision` are not kept from now on; what was kept before goes.
        self.changes.cache.begin(revision);
        self.changes.cache.clear();
        self.changes.cache.applied_through(revision);
        Ok(())
    }

    /// The latest revision the change tail has applied: what the check cache reflects.
    pub fn applied_revision(&self) -> Revision {
        self.changes.cache.applied()
    }

    /// The changes from now on, for a feed; read the earlier ones with `changes_after`.
    pub fn subscribe_changes(&self) -> Subscription {
        let receiver = self.changes.feed.subscribe();
        Subscription {
            receiver,
            applied: self.changes.cache.applied(),
        }
    }

    /// The revision of the latest change committed, read from the database.
    pub async fn latest_revision(&self) -> Result<Revision> {
        current_revision(&self.db).await
    }
}
