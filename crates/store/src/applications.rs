//! Applications linked to accounts, and the checks other city systems ask for.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use mandate_domain::Error as Rule;
use mandate_domain::application::parse_application_id;
use mandate_domain::decision::{self, Reason};
use mandate_domain::membership::Grant;
use mandate_domain::paging::is_identifier;
use mandate_domain::permission::{Permission, PermissionSet};
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
};

use crate::cache::{
    AccountApps, AppLinks, Claimed, Entry, MOST_ACCOUNT_APPS, MOST_LINKS, MOST_MEMBERSHIPS,
    Memberships,
};
use crate::contractors::stored_permissions;
use crate::entity::{
    application_link as link, contractor, customer, legacy_application, legacy_customer,
    membership as member,
};
use crate::merged::{Merged, lock_account};
use crate::{
    AccessibleApplication, Actor, Change, ChangeKind, CheckOutcome, Error, Page, Result, Revision,
    Store, current_revision, now,
};

/// What a check is about: an account, an application, or an application through one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckTarget<'a> {
    pub contractor_id: Option<&'a str>,
    pub application_id: Option<&'a str>,
}

/// Where a page of accessible applications starts: after this application and account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationCursor {
    pub application_id: String,
    pub contractor_id: String,
}

impl Store {
    /// Links (`linked`) or unlinks an application and an account; an account merged away is
    /// its survivor (as for checks). Asking for what already holds changes nothing and answers
    /// the current revision. The account that holds the link, and the revision.
    pub async fn set_application_link(
        &self,
        actor: &Actor,
        application_id: &str,
        named: &str,
        linked: bool,
    ) -> Result<(String, Revision)> {
        let txn = self.begin_change().await?;
        let account = lock_account(&txn, named, Merged::Follow).await?;
        let contractor_id = account.contractor_id.as_str();
        let key = (application_id.to_owned(), contractor_id.to_owned());
        let exists = link::Entity::find_by_id(key.clone())
            .one(&txn)
            .await?
            .is_some();
        if exists == linked {
            let revision = current_revision(&txn).await?;
            txn.rollback().await?;
            return Ok((account.contractor_id, revision));
        }
        let kind = if linked {
            link::Entity::insert(link::ActiveModel {
                application_id: Set(key.0),
                contractor_id: Set(key.1),
                link_time: Set(now()),
            })
            .exec_without_returning(&txn)
            .await?;
            ChangeKind::ApplicationLinked
        } else {
            link::Entity::delete_by_id(key).exec(&txn).await?;
            ChangeKind::ApplicationUnlinked
        };
        let revision = self
            .commit_change(
                txn,
                actor,
                Change {
                    contractor_id: Some(contractor_id),
                    application_id: Some(application_id),
                    ..Change::of(kind)
                },
            )
            .await?;
        Ok((account.contractor_id, revision))
    }

    /// The applications `customer_id` may act on with `permission` now, through any of its
    /// accounts, ordered by application and account.
    pub async fn accessible_applications(
        &self,
        customer_id: &str,
        permission: Permission,
        size: u64,
        after: Option<&ApplicationCursor>,
    ) -> Result<Page<AccessibleApplication>> {
        if let Some(page) = self.cached_accessible(customer_id, permission, size, after) {
            return Ok(page);
        }
        self.customer(customer_id).await?;
        // Reading for the cache costs statements of its own: not when there is no cache.
        if self.changes.cache.keeps()
            && let Some(page) = self
                .read_accessible(customer_id, permission, size, after)
                .await?
        {
            return Ok(page);
        }
        // Every stored permission value that allows `permission` (Manage included).
        let allowing: Vec<i16> = (0..=PermissionSet::MANAGER.bits())
            .filter(|bits| PermissionSet::from_bits(*bits).allows(permission))
            .map(i16::from)
            .collect();
        let linked = if self.db.get_database_backend() == DbBackend::Postgres {
            linked_postgres(&self.db, customer_id, &allowing, size, after).await?
        } else {
            linked_sqlite(&self.db, customer_id, allowing, size, after).await?
        };
        let linked = linked.into_iter();
        // The customer's own applications, through its legacy record: every permission, no
        // account (an empty account id sorts before any other).
        let mut own = legacy_application::Entity::find()
            .filter(
                legacy_application::Column::LegacyCustomerId
                    .in_subquery(linked_records(customer_id)),
            )
            .order_by_asc(legacy_application::Column::ApplicationId)
            .limit(size + 1);
        if let Some(after) = after {
            own = own.filter(
                legacy_application::Column::ApplicationId.gt(after.application_id.as_str()),
            );
        }
        let own = own
            .all(&self.db)
            .await?
            .into_iter()
            .map(|o| AccessibleApplication {
                application_id: o.application_id,
                contractor_id: String::new(),
            });
        let mut rows: Vec<AccessibleApplication> = linked.chain(own).collect();
        rows.sort_by(|a, b| {
            (&a.application_id, &a.contractor_id).cmp(&(&b.application_id, &b.contractor_id))
        });
        rows.dedup();
        let more = rows.len() as u64 > size;
        rows.truncate(usize::try_from(size).unwrap_or(usize::MAX));
        let items = rows;
        let next_page_token = more
            .then(|| {
                items.last().map(|a| {
                    ApplicationCursor {
                        application_id: a.application_id.clone(),
                        contractor_id: a.contractor_id.clone(),
                    }
                    .token()
                })
            })
            .flatten();
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// Decides whether `customer_id` may use `permission` on `target`, from a state that
    /// reflects at least revision `at_least`: from the check cache when it may answer (see
    /// `tail`), else from the database.
    pub async fn check(
        &self,
        customer_id: &str,
        permission: Permission,
        target: CheckTarget<'_>,
        at_least: Revision,
    ) -> Result<CheckOutcome> {
        let only_account = match target {
            CheckTarget {
                contractor_id: Some(contractor_id),
                application_id: None,
            } => Some(contractor_id),
            _ => None,
        };
        if let Some(contractor_id) = only_account
            && let Some(outcome) =
                self.cached_check(customer_id, permission, contractor_id, at_least)
        {
            return Ok(outcome);
        }
        if let CheckTarget {
            contractor_id: None,
            application_id: Some(application_id),
        } = target
        {
            if let Some(outcome) =
                self.cached_app_check(customer_id, permission, application_id, at_least)
            {
                return Ok(outcome);
            }
            if self.changes.cache.keeps()
                && let Some(outcome) = self
                    .read_app_check(customer_id, permission, application_id)
                    .await?
            {
                return Ok(outcome);
            }
        }
        // One statement, so one snapshot: the revision and what the rule reads agree.
        let mut probe = probe(&self.db, customer_id, target.contractor_id).await?;
        if probe.customer_found {
            self.changes.cache.put_customer(customer_id);
        }
        if let Some(contractor_id) = only_account
            && probe.customer_found
            && probe.contractor_found
            && probe.merged_into.is_none()
        {
            self.changes.cache.put(
                customer_id,
                contractor_id,
                Entry {
                    revision: probe.revision,
                    grant: probe.grant,
                },
            );
        }
        // An account merged away is decided by its survivor.
        let survivor = probe.merged_into.take();
        let target = match &survivor {
            Some(survivor) => {
                probe = self::probe(&self.db, customer_id, Some(survivor)).await?;
                CheckTarget {
                    contractor_id: Some(survivor),
                    ..target
                }
            }
            None => target,
        };
        let revision = probe.revision;
        if !probe.customer_found {
            return Err(Rule::not_found("customer", customer_id).into());
        }
        if let (Some(contractor_id), false) = (target.contractor_id, probe.contractor_found) {
            return Err(Rule::not_found("contractor", contractor_id).into());
        }
        let now = now();
        let (reason, contractor_id) = match target {
            CheckTarget {
                contractor_id: Some(contractor_id),
                application_id: None,
            } => (
                decision::decide(permission, probe.grant.as_ref(), now),
                Some(contractor_id.to_owned()),
            ),
            CheckTarget {
                contractor_id,
                application_id: Some(application_id),
            } => {
                match contractor_id {
                    // Through one named account: when the application is linked to it, that
                    // account's grant decides, as for a check on the account alone.
                    Some(contractor_id) => {
                        let link = (application_id.to_owned(), contractor_id.to_owned());
                        if link::Entity::find_by_id(link)
                            .one(&self.db)
                            .await?
                            .is_some()
                        {
                            (
                                decision::decide(permission, probe.grant.as_ref(), now),
                                Some(contractor_id.to_owned()),
                            )
                        } else {
                            (Reason::ApplicationNotLinked, None)
                        }
                    }
                    None => {
                        let linked = linked_grants(&self.db, application_id, customer_id).await?;
                        let (reason, contractor) =
                            decision::decide_for_application(permission, &linked, now);
                        if !reason.allows() && owns(&self.db, customer_id, application_id).await? {
                            (Reason::OwnApplication, None)
                        } else {
                            (reason, contractor.cloned())
                        }
                    }
                }
            }
            CheckTarget {
                contractor_id: None,
                application_id: None,
            } => {
                return Err(Rule::invalid(
                    "contractor_id",
                    "a check names a contractor_id, an application_id, or both",
                )
                .into());
            }
        };
        Ok(CheckOutcome {
            reason,
            contractor_id: if reason == Reason::ApplicationNotLinked {
                None
            } else {
                contractor_id
            },
            revision,
        })
    }
}

impl Store {
    /// The answer to a check on an account alone from the check cache, when the cache may
    /// answer for `at_least` and holds the customer's grant on the account.
    fn cached_check(
        &self,
        customer_id: &str,
        permission: Permission,
        contractor_id: &str,
        at_least: Revision,
    ) -> Option<CheckOutcome> {
        if !self.changes.cache_serves(at_least) {
            // Not fresh enough to answer: read from the database, like any other miss.
            self.changes.cache.count(false);
            return None;
        }
        let hit = self.changes.cache.get(customer_id, contractor_id)?;
        Some(CheckOutcome {
            reason: decision::decide(permission, hit.grant.as_ref(), now()),
            contractor_id: Some(contractor_id.to_owned()),
            revision: hit.revision,
        })
    }

    /// A page of `accessible_applications` from the check cache, when it holds the customer's
    /// memberships, each allowing account's applications, and the customer's claimed records
    /// (and the customer claimed none: its own applications are read from the database).
    /// Counted as one hit or one miss.
    fn cached_accessible(
        &self,
        customer_id: &str,
        permission: Permission,
        size: u64,
        after: Option<&ApplicationCursor>,
    ) -> Option<Page<AccessibleApplication>> {
        let cache = &self.changes.cache;
        let found = self
            .changes
            .cache_serves(0)
            .then(|| {
                // As for a check by application: only what holds at the revision the tail had
                // applied.
                let applied = cache.applied();
                let memberships = cache
                    .memberships(customer_id)
                    .filter(|m| m.revision <= applied)?;
                let claimed = cache
                    .claimed(customer_id)
                    .filter(|c| c.revision <= applied)?;
                if !claimed.records.is_empty() {
                    return None;
                }
                page_of_accessible(&memberships.accounts, permission, size, after, |account| {
                    let apps = cache
                        .account_apps(account)
                        .filter(|a| a.revision <= applied)?;
                    Some(apps.applications)
                })
            })
            .flatten();
        cache.count(found.is_some());
        found
    }

    /// A page of `accessible_applications` from the database, keeping what it read in the
    /// check cache (`load_customers`). `None` when it does not all fit the cache, or the
    /// customer claimed a legacy record (`accessible_applications` reads those pages as it did).
    async fn read_accessible(
        &self,
        customer_id: &str,
        permission: Permission,
        size: u64,
        after: Option<&ApplicationCursor>,
    ) -> Result<Option<Page<AccessibleApplication>>> {
        let mut loaded = self.load_customers(&HashSet::from([customer_id])).await?;
        let Some(loaded) = loaded.remove(customer_id) else {
            return Ok(None);
        };
        if !loaded.records.is_empty() {
            return Ok(None);
        }
        Ok(page_of_accessible(
            &loaded.memberships,
            permission,
            size,
            after,
            |account| loaded.apps.get(account).cloned(),
        ))
    }

    /// What the check cache keeps of each of `customers` (which must exist) for its lists and
    /// for checks on widely linked applications, read in three statements and kept: its
    /// memberships, the records it claimed, and each of its accounts' applications. A
    /// customer associated with more accounts than the cache keeps is left out.
    async fn load_customers(&self, customers: &HashSet<&str>) -> Result<HashMap<String, Loaded>> {
        let cache = &self.changes.cache;
        let mut loaded = HashMap::new();
        if customers.is_empty() {
            return Ok(loaded);
        }
        let revision = self.latest_revision().await?;
        let mut read = first_memberships(&self.db, customers, MOST_MEMBERSHIPS + 1).await?;
        let memberships: HashMap<&str, Vec<(String, Grant)>> = customers
            .iter()
            .map(|c| (*c, read.remove(*c).unwrap_or_default()))
            .filter(|(_, m)| m.len() <= MOST_MEMBERSHIPS)
            .collect();
        let mut records: HashMap<String, Vec<String>> = HashMap::new();
        for (customer, record) in legacy_customer::Entity::find()
            .filter(legacy_customer::Column::CustomerId.is_in(memberships.keys().copied()))
            .select_only()
            .column(legacy_customer::Column::CustomerId)
            .column(legacy_customer::Column::LegacyCustomerId)
            .into_tuple::<(Option<String>, String)>()
            .all(&self.db)
            .await?
        {
            if let Some(customer) = customer {
                records.entry(customer).or_default().push(record);
            }
        }
        let accounts: HashSet<&str> = memberships
            .values()
            .flatten()
            .map(|(account, _)| account.as_str())
            .collect();
        let mut apps: HashMap<String, std::sync::Arc<[String]>> = HashMap::new();
        let mut read = read_account_apps(&self.db, &accounts).await?;
        for account in &accounts {
            let mut applications = read.remove(*account).unwrap_or_default();
            applications.sort_unstable();
            let applications: std::sync::Arc<[String]> = applications.into();
            cache.put_account_apps(
                account,
                AccountApps {
                    revision,
                    applications: applications.clone(),
                },
            );
            if applications.len() <= MOST_ACCOUNT_APPS {
                apps.insert((*account).to_owned(), applications);
            }
        }
        for (customer_id, memberships) in memberships {
            let records: std::sync::Arc<[String]> =
                records.remove(customer_id).unwrap_or_default().into();
            let memberships: std::sync::Arc<[(String, Grant)]> = memberships.into();
            cache.put_customer(customer_id);
            cache.put_claimed(
                customer_id,
                Claimed {
                    revision,
                    records: records.clone(),
                },
            );
            cache.put_memberships(
                customer_id,
                Memberships {
                    revision,
                    accounts: memberships.clone(),
                },
            );
            let mine = memberships
                .iter()
                .filter_map(|(account, _)| Some((account.clone(), apps.get(account)?.clone())))
                .collect();
            loaded.insert(
                customer_id.to_owned(),
                Loaded {
                    memberships,
                    records,
                    apps: mine,
                },
            );
        }
        Ok(loaded)
    }

    /// The answer to a check on an application alone from the check cache, when the cache may
    /// answer for `at_least` and holds all it needs: the application's links, the customer's
    /// grant on each linked account, and (when no grant allows and the application has legacy
    /// owners) the records the customer claimed. Counted as one hit or one miss.
    fn cached_app_check(
        &self,
        customer_id: &str,
        permission: Permission,
        application_id: &str,
        at_least: Revision,
    ) -> Option<CheckOutcome> {
        let cache = &self.changes.cache;
        let found = self
            .changes
            .cache_serves(at_least)
            .then(|| {
                // Read first: every entry present afterwards, and read at or before it, holds
                // at this revision; one read later (ahead of the tail) is not used.
                let applied = cache.applied();
                let links = cache
                    .app(application_id)
                    .filter(|l| l.revision <= applied)?;
                let memberships;
                let mut linked = Vec::with_capacity(links.accounts.len());
                if links.wide {
                    memberships = cache
                        .memberships(customer_id)
                        .filter(|m| m.revision <= applied)?;
                    linked = linked_by_memberships(&memberships.accounts, application_id, |a| {
                        let apps = cache.account_apps(a).filter(|a| a.revision <= applied)?;
                        Some(apps.applications)
                    })?;
                }
                for account in links.accounts.iter() {
                    let entry = cache
                        .entry(customer_id, account)
                        .filter(|e| e.revision <= applied)?;
                    if entry.grant.is_some() {
                        linked.push((account.as_str(), entry.grant));
                    }
                }
                // What was kept of the customer's grants or memberships was read once it was
                // found, and customers are never deleted: only without either is it asked.
                if !links.wide && links.accounts.is_empty() && !cache.knows_customer(customer_id) {
                    return None;
                }
                let (reason, contractor_id) =
                    decide_app(permission, &linked, &links.owners, || {
                        let claimed = cache
                            .claimed(customer_id)
                            .filter(|c| c.revision <= applied)?;
                        Some(claimed.records)
                    })?;
                Some(CheckOutcome {
                    reason,
                    contractor_id,
                    revision: applied,
                })
            })
            .flatten();
        cache.count(found.is_some());
        found
    }

    /// A check on an application alone from the database, keeping what it read in the check
    /// cache: the revision and the customer, the application's links and legacy owners, the
    /// customer's grants on the linked accounts, and (only when needed) the records the
    /// customer claimed. `None` for an application linked to more accounts than the cache
    /// keeps (`check` reads those from the customer's memberships).
    async fn read_app_check(
        &self,
        customer_id: &str,
        permission: Permission,
        application_id: &str,
    ) -> Result<Option<CheckOutcome>> {
        let cache = &self.changes.cache;
        let probe = probe(&self.db, customer_id, None).await?;
        if !probe.customer_found {
            return Err(Rule::not_found("customer", customer_id).into());
        }
        cache.put_customer(customer_id);
        let revision = probe.revision;
        let accounts: Vec<String> = link::Entity::find()
            .filter(link::Column::ApplicationId.eq(application_id))
            .select_only()
            .column(link::Column::ContractorId)
            .order_by_asc(link::Column::ContractorId)
            .limit(u64::try_from(MOST_LINKS + 1).unwrap_or(u64::MAX))
            .into_tuple()
            .all(&self.db)
            .await?;
        let owners: Vec<String> = legacy_application::Entity::find()
            .filter(legacy_application::Column::ApplicationId.eq(application_id))
            .select_only()
            .column(legacy_application::Column::LegacyCustomerId)
            .into_tuple()
            .all(&self.db)
            .await?;
        if accounts.len() > MOST_LINKS {
            return self
                .read_wide_app_check(customer_id, permission, application_id, revision, owners)
                .await;
        }
        let grants: HashMap<String, Grant> = if accounts.is_empty() {
            HashMap::new()
        } else {
            member::Entity::find()
                .filter(member::Column::CustomerId.eq(customer_id))
                .filter(member::Column::ContractorId.is_in(accounts.iter().map(String::as_str)))
                .all(&self.db)
                .await?
                .into_iter()
                .map(|m| {
                    let grant = Grant {
                        permissions: stored_permissions(m.permissions),
                        expire_time: m.expire_time,
                    };
                    (m.contractor_id, grant)
                })
                .collect()
        };
        for account in &accounts {
            cache.put(
                customer_id,
                account,
                Entry {
                    revision,
                    grant: grants.get(account).copied(),
                },
            );
        }
        let linked: Vec<(&str, Option<Grant>)> = accounts
            .iter()
            .filter_map(|account| Some((account.as_str(), Some(*grants.get(account)?))))
            .collect();
        let claimed = if owners.is_empty() || {
            let (reason, _) = decision::decide_for_application(permission, &linked, now());
            reason.allows()
        } {
            None
        } else {
            let records: Vec<String> = legacy_customer::Entity::find()
                .filter(legacy_customer::Column::CustomerId.eq(customer_id))
                .select_only()
                .column(legacy_customer::Column::LegacyCustomerId)
                .into_tuple()
                .all(&self.db)
                .await?;
            let claimed = Claimed {
                revision,
                records: records.into(),
            };
            cache.put_claimed(customer_id, claimed.clone());
            Some(claimed.records)
        };
        let owners: std::sync::Arc<[String]> = owners.into();
        cache.put_app(
            application_id,
            AppLinks {
                revision,
                accounts: accounts.clone().into(),
                wide: false,
                owners: owners.clone(),
            },
        );
        let Some((reason, contractor_id)) =
            decide_app(permission, &linked, &owners, || claimed.clone())
        else {
            return Err(Error::Internal(
                "a check by application read no claimed records where it needed them".into(),
            ));
        };
        Ok(Some(CheckOutcome {
            reason,
            contractor_id,
            revision,
        }))
    }

    /// `read_app_check` for an application linked more widely than the cache keeps: that it
    /// is, and the customer's memberships and their accounts' applications (`load_customers`),
    /// which decide. `None` when those do not fit the cache.
    async fn read_wide_app_check(
        &self,
        customer_id: &str,
        permission: Permission,
        application_id: &str,
        revision: Revision,
        owners: Vec<String>,
    ) -> Result<Option<CheckOutcome>> {
        let owners: std::sync::Arc<[String]> = owners.into();
        self.changes.cache.put_app(
            application_id,
            AppLinks {
                revision,
                accounts: std::sync::Arc::from(Vec::new()),
                wide: true,
                owners: owners.clone(),
            },
        );
        let mut loaded = self.load_customers(&HashSet::from([customer_id])).await?;
        let Some(loaded) = loaded.remove(customer_id) else {
            return Ok(None);
        };
        let Some(linked) = linked_by_memberships(&loaded.memberships, application_id, |a| {
            loaded.apps.get(a).cloned()
        }) else {
            return Ok(None);
        };
        let (reason, contractor_id) = decide_app(permission, &linked, &owners, || {
            Some(loaded.records.clone())
        })
        .ok_or_else(|| {
            Error::Internal("a check on a widely linked application went undecided".into())
        })?;
        Ok(Some(CheckOutcome {
            reason,
            contractor_id,
            // The revision read first: the owners were read at it, and what `load_customers`
            // read holds at it too (it was read later).
            revision,
        }))
    }

    /// Decides many checks that each name an application (and no account): those the check
    /// cache can answer from it, the others with a few statements for all of them, whatever
    /// their number: the revision, the customers, the applications' links and legacy owners,
    /// the customers' grants on the linked accounts, and (when an application has legacy owners)
    /// the records the customers claimed; for applications linked more widely than the cache
    /// keeps, the customers' grants on them from their memberships. Each check's outcome in the
    /// order given, or why it cannot be decided (an unknown customer).
    pub async fn check_applications(
        &self,
        checks: &[ApplicationCheck<'_>],
    ) -> Result<Vec<Result<CheckOutcome>>> {
        let mut outcomes: Vec<Option<Result<CheckOutcome>>> = checks
            .iter()
            .map(|c| {
                self.cached_app_check(c.customer_id, c.permission, c.application_id, c.at_least)
                    .map(Ok)
            })
            .collect();
        let missed: Vec<usize> = (0..checks.len())
            .filter(|&i| outcomes[i].is_none())
            .collect();
        let answered = |outcomes: Vec<Option<Result<CheckOutcome>>>| {
            outcomes
                .into_iter()
                .map(|outcome| {
                    outcome.unwrap_or_else(|| {
                        Err(Error::Internal(
                            "a batch check by application went unanswered".into(),
                        ))
                    })
                })
                .collect()
        };
        if missed.is_empty() {
            return Ok(answered(outcomes));
        }
        let cache = &self.changes.cache;
        let revision = self.latest_revision().await?;
        let customers: HashSet<&str> = missed.iter().map(|&i| checks[i].customer_id).collect();
        let known: HashSet<String> = customer::Entity::find()
            .filter(customer::Column::CustomerId.is_in(customers.iter().copied()))
            .select_only()
            .column(customer::Column::CustomerId)
            .into_tuple::<String>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        let applications: HashSet<&str> =
            missed.iter().map(|&i| checks[i].application_id).collect();
        let read = read_apps(&self.db, &applications).await?;
        let accounts: HashSet<&str> = read
            .links
            .values()
            .filter(|links| links.len() <= MOST_LINKS)
            .flatten()
            .map(String::as_str)
            .collect();
        let grants: HashMap<(String, String), Grant> = if accounts.is_empty() || known.is_empty() {
            HashMap::new()
        } else {
            member::Entity::find()
                .filter(member::Column::CustomerId.is_in(known.iter().map(String::as_str)))
                .filter(member::Column::ContractorId.is_in(accounts.iter().copied()))
                .all(&self.db)
                .await?
                .into_iter()
                .map(|m| {
                    let grant = Grant {
                        permissions: stored_permissions(m.permissions),
                        expire_time: m.expire_time,
                    };
                    ((m.customer_id, m.contractor_id), grant)
                })
                .collect()
        };
        let owned = read.owners.values().any(|owners| !owners.is_empty());
        let mut claimed: HashMap<String, Vec<String>> = HashMap::new();
        if owned && !known.is_empty() {
            let rows: Vec<(Option<String>, String)> = legacy_customer::Entity::find()
                .filter(legacy_customer::Column::CustomerId.is_in(known.iter().map(String::as_str)))
                .select_only()
                .column(legacy_customer::Column::CustomerId)
                .column(legacy_customer::Column::LegacyCustomerId)
                .into_tuple()
                .all(&self.db)
                .await?;
            for (customer, record) in rows {
                if let Some(customer) = customer {
                    claimed.entry(customer).or_default().push(record);
                }
            }
        }
        // Keep what was read: the customers, each application's links and owners, every
        // customer's grant on every linked account, and the records claimed.
        for customer_id in &known {
            cache.put_customer(customer_id);
            if owned {
                let records = claimed.get(customer_id).cloned().unwrap_or_default();
                cache.put_claimed(
                    customer_id,
                    Claimed {
                        revision,
                        records: records.into(),
                    },
                );
            }
        }
        // Applications linked more widely than the cache keeps: decided from the customers'
        // memberships and their accounts' applications, which the cache keeps for the next
        // batch; for a customer whose do not fit it, from its grants on their accounts, in one
        // statement.
        let empty = Vec::new();
        let mut wide: Vec<&str> = Vec::new();
        for application_id in &applications {
            let links = read.links.get(*application_id).unwrap_or(&empty);
            let widely = links.len() > MOST_LINKS;
            if widely {
                wide.push(application_id);
            }
            cache.put_app(
                application_id,
                AppLinks {
                    revision,
                    accounts: if widely { &[][..] } else { links }.into(),
                    wide: widely,
                    owners: read
                        .owners
                        .get(*application_id)
                        .cloned()
                        .unwrap_or_default()
                        .into(),
                },
            );
        }
        let widely_checked = || {
            missed
                .iter()
                .map(|&i| checks[i])
                .filter(|c| known.contains(c.customer_id) && wide.contains(&c.application_id))
        };
        // Reading for the cache costs statements of its own: not when there is no cache.
        let loaded = if cache.keeps() {
            self.load_customers(&widely_checked().map(|c| c.customer_id).collect())
                .await?
        } else {
            HashMap::new()
        };
        let from_memberships = |check: &ApplicationCheck<'_>| {
            let loaded = loaded.get(check.customer_id)?;
            linked_by_memberships(&loaded.memberships, check.application_id, |a| {
                loaded.apps.get(a).cloned()
            })
        };
        let unfit: HashSet<String> = widely_checked()
            .filter(|c| from_memberships(c).is_none())
            .map(|c| c.customer_id.to_owned())
            .collect();
        let widely = wide_grants(&self.db, &unfit, &wide).await?;
        let none = Vec::new();
        for i in missed {
            let check = checks[i];
            if !known.contains(check.customer_id) {
                outcomes[i] = Some(Err(Rule::not_found("customer", check.customer_id).into()));
                continue;
            }
            let links = read.links.get(check.application_id).unwrap_or(&empty);
            let mut linked: Vec<(&str, Option<Grant>)> = Vec::new();
            if links.len() > MOST_LINKS {
                if let Some(found) = from_memberships(&check) {
                    linked = found;
                } else {
                    let key = (
                        check.customer_id.to_owned(),
                        check.application_id.to_owned(),
                    );
                    for (account, grant) in widely.get(&key).unwrap_or(&none) {
                        linked.push((account.as_str(), Some(*grant)));
                    }
                }
            }
            for account in links.iter().filter(|_| links.len() <= MOST_LINKS) {
                let grant = grants
                    .get(&(check.customer_id.to_owned(), account.clone()))
                    .copied();
                cache.put(check.customer_id, account, Entry { revision, grant });
                if grant.is_some() {
                    linked.push((account.as_str(), grant));
                }
            }
            let owners = read.owners.get(check.application_id).unwrap_or(&empty);
            let records = claimed.get(check.customer_id).cloned().unwrap_or_default();
            let decided = decide_app(check.permission, &linked, owners, || Some(records.into()));
            outcomes[i] = Some(
                decided
                    .map(|(reason, contractor_id)| CheckOutcome {
                        reason,
                        contractor_id,
                        revision,
                    })
                    .ok_or_else(|| {
                        Error::Internal("a batch check by application went undecided".into())
                    }),
            );
        }
        Ok(answered(outcomes))
    }

    /// Decides many checks that each name an account (and no application): those the check
    /// cache can answer from it, the others with a few statements for all of them instead of
    /// one round trip each: the revision first, then the customers, the accounts (following
    /// merges) and the memberships, so every decision reflects at least that revision. Each
    /// check's outcome, or why it cannot be decided (an unknown customer or account), in the
    /// order given.
    pub async fn check_accounts(
        &self,
        checks: &[AccountCheck<'_>],
    ) -> Result<Vec<Result<CheckOutcome>>> {
        let mut outcomes: Vec<Option<Result<CheckOutcome>>> = checks
            .iter()
            .map(|c| {
                self.cached_check(c.customer_id, c.permission, c.contractor_id, c.at_least)
                    .map(Ok)
            })
            .collect();
        let missed: Vec<&AccountCheck<'_>> = checks
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| outcome.is_none())
            .map(|(check, _)| check)
            .collect();
        let mut read = self.read_account_checks(&missed).await?.into_iter();
        Ok(outcomes
            .iter_mut()
            .map(|outcome| {
                outcome
                    .take()
                    .or_else(|| read.next())
                    .unwrap_or_else(|| Err(Error::Internal("a batch check went unanswered".into())))
            })
            .collect())
    }

    /// `check_accounts` from the database, keeping what it read in the check cache.
    async fn read_account_checks(
        &self,
        checks: &[&AccountCheck<'_>],
    ) -> Result<Vec<Result<CheckOutcome>>> {
        if checks.is_empty() {
            return Ok(Vec::new());
        }
        let revision = self.latest_revision().await?;
        let customers: Vec<&str> = checks.iter().map(|c| c.customer_id).collect();
        let known_customers: HashSet<String> = customer::Entity::find()
            .filter(customer::Column::CustomerId.is_in(customers.iter().copied()))
            .select_only()
            .column(customer::Column::CustomerId)
            .into_tuple::<String>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        // Each account named, and the account that decides for it (its survivor when merged).
        let deciding: HashMap<String, String> = contractor::Entity::find()
            .filter(contractor::Column::ContractorId.is_in(checks.iter().map(|c| c.contractor_id)))
            .select_only()
            .column(contractor::Column::ContractorId)
            .column(contractor::Column::MergedInto)
            .into_tuple::<(String, Option<String>)>()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|(id, merged)| {
                let decider = merged.unwrap_or_else(|| id.clone());
                (id, decider)
            })
            .collect();
        let grants: HashMap<(String, String), Grant> = member::Entity::find()
            .filter(member::Column::ContractorId.is_in(deciding.values().map(String::as_str)))
            .filter(member::Column::CustomerId.is_in(customers.iter().copied()))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| {
                let grant = Grant {
                    permissions: stored_permissions(m.permissions),
                    expire_time: m.expire_time,
                };
                ((m.contractor_id, m.customer_id), grant)
            })
            .collect();
        let now = now();
        Ok(checks
            .iter()
            .map(|check| {
                let AccountCheck {
                    customer_id,
                    permission,
                    contractor_id,
                    ..
                } = **check;
                if !known_customers.contains(customer_id) {
                    return Err(Rule::not_found("customer", customer_id).into());
                }
                let decider = deciding
                    .get(contractor_id)
                    .ok_or_else(|| Error::from(Rule::not_found("contractor", contractor_id)))?;
                let grant = grants.get(&(decider.clone(), customer_id.to_owned()));
                if decider == contractor_id {
                    self.changes.cache.put(
                        customer_id,
                        contractor_id,
                        Entry {
                            revision,
                            grant: grant.copied(),
                        },
                    );
                }
                Ok(CheckOutcome {
                    reason: decision::decide(permission, grant, now),
                    contractor_id: Some(decider.clone()),
                    revision,
                })
            })
            .collect())
    }
}

/// Decides a check on an application from what was read of it: the customer's grants on its
/// linked accounts (where associated, in account order) and, when none allows, whether the
/// application is the customer's own through a legacy record it claimed (`claimed` is asked
/// only then, and only when the application has legacy `owners`; `None` when it cannot tell).
fn decide_app(
    permission: Permission,
    linked: &[(&str, Option<Grant>)],
    owners: &[String],
    claimed: impl FnOnce() -> Option<std::sync::Arc<[String]>>,
) -> Option<(Reason, Option<String>)> {
    let (reason, contractor) = decision::decide_for_application(permission, linked, now());
    if !reason.allows() && !owners.is_empty() {
        let claimed = claimed()?;
        if owners.iter().any(|owner| claimed.contains(owner)) {
            return Some((Reason::OwnApplication, None));
        }
    }
    let contractor_id = if reason == Reason::ApplicationNotLinked {
        None
    } else {
        contractor.map(|c| (*c).to_owned())
    };
    Some((reason, contractor_id))
}

/// What `load_customers` read of one customer.
struct Loaded {
    /// Each account with the customer's grant, in account order.
    memberships: std::sync::Arc<[(String, Grant)]>,
    /// The legacy records it claimed.
    records: std::sync::Arc<[String]>,
    /// The applications of each of its accounts that has no more than the cache keeps, in
    /// bytewise order.
    apps: HashMap<String, std::sync::Arc<[String]>>,
}

/// The accounts of `memberships` that `application_id` is linked to, with their grants, in
/// account order; `applications` gives each account's applications in bytewise order, `None`
/// when it cannot (then so is the answer).
fn linked_by_memberships<'a>(
    memberships: &'a [(String, Grant)],
    application_id: &str,
    applications: impl Fn(&str) -> Option<std::sync::Arc<[String]>>,
) -> Option<Vec<(&'a str, Option<Grant>)>> {
    let mut linked = Vec::new();
    for (account, grant) in memberships {
        let list = applications(account)?;
        if list
            .binary_search_by(|a| a.as_str().cmp(application_id))
            .is_ok()
        {
            linked.push((account.as_str(), Some(*grant)));
        }
    }
    Some(linked)
}

/// One check of a batch that names an application and no account.
#[derive(Debug, Clone, Copy)]
pub struct ApplicationCheck<'a> {
    pub customer_id: &'a str,
    pub permission: Permission,
    pub application_id: &'a str,
    /// The revision the answer must reflect at least.
    pub at_least: Revision,
}

/// What a batch read of applications found, by application: its first `MOST_LINKS + 1` links
/// (in account order) and its legacy owners.
#[derive(Default)]
struct AppsRead {
    links: HashMap<String, Vec<String>>,
    owners: HashMap<String, Vec<String>>,
}

/// One check of a batch that names an account and no application.
#[derive(Debug, Clone, Copy)]
pub struct AccountCheck<'a> {
    pub customer_id: &'a str,
    pub permission: Permission,
    pub contractor_id: &'a str,
    /// The revision the answer must reflect at least.
    pub at_least: Revision,
}

/// A page of the applications linked to the accounts of `memberships` whose grant allows
/// `permission` now, after `after`, in (application, account) order; `applications` gives each
/// account's applications in order, `None` when it cannot (then the page is `None`).
fn page_of_accessible(
    memberships: &[(String, Grant)],
    permission: Permission,
    size: u64,
    after: Option<&ApplicationCursor>,
    applications: impl Fn(&str) -> Option<std::sync::Arc<[String]>>,
) -> Option<Page<AccessibleApplication>> {
    let now = now();
    let take = usize::try_from(size)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let mut rows: Vec<AccessibleApplication> = Vec::new();
    for (account, grant) in memberships {
        if !decision::decide(permission, Some(grant), now).allows() {
            continue;
        }
        let list = applications(account)?;
        // The first application of this account's that comes after the cursor.
        let start = match after {
            None => 0,
            Some(after) => list.partition_point(|application| {
                (application.as_str(), account.as_str())
                    <= (after.application_id.as_str(), after.contractor_id.as_str())
            }),
        };
        rows.extend(
            list[start..]
                .iter()
                .take(take)
                .map(|application| AccessibleApplication {
                    application_id: application.clone(),
                    contractor_id: account.clone(),
                }),
        );
    }
    rows.sort_by(|a, b| {
        (&a.application_id, &a.contractor_id).cmp(&(&b.application_id, &b.contractor_id))
    });
    let more = rows.len() > take - 1;
    rows.truncate(take - 1);
    let next_page_token = more
        .then(|| {
            rows.last().map(|a| {
                ApplicationCursor {
                    application_id: a.application_id.clone(),
                    contractor_id: a.contractor_id.clone(),
                }
                .token()
            })
        })
        .flatten();
    Some(Page {
        items: rows,
        next_page_token,
    })
}

/// The first `MOST_ACCOUNT_APPS + 1` applications of each of `accounts`, in order (enough to
/// tell an account the cache keeps the list of from one linked more widely), in one statement.
async fn read_account_apps(
    db: &impl ConnectionTrait,
    accounts: &HashSet<&str>,
) -> Result<HashMap<String, Vec<String>>> {
    first_links(
        db,
        "contractor_id",
        "application_id",
        accounts,
        MOST_ACCOUNT_APPS + 1,
    )
    .await
}

/// `$1, $2, …` (`?1, ?2, …` on SQLite): `count` placeholders for a statement's values.
fn placeholders(backend: DbBackend, count: usize) -> String {
    (1..=count)
        .map(|n| match backend {
            DbBackend::Postgres => format!("${n}"),
            _ => format!("?{n}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first `most` memberships of each of `customers`, in account order, with their grants,
/// in one statement.
async fn first_memberships(
    db: &impl ConnectionTrait,
    customers: &HashSet<&str>,
    most: usize,
) -> Result<HashMap<String, Vec<(String, Grant)>>> {
    let ranked = Ranked {
        table: "memberships",
        by: "customer_id",
        then: "contractor_id",
        also: &["permissions", "expire_time"],
    };
    ranked
        .first(db, customers, most, |row| {
            let contractor_id: String = row.try_get_by_index(1)?;
            let permissions: i16 = row.try_get_by_index(2)?;
            let expire_time: Option<DateTime<Utc>> = row.try_get_by_index(3)?;
            let grant = Grant {
                permissions: stored_permissions(permissions),
                expire_time,
            };
            Ok((contractor_id, grant))
        })
        .await
}

/// The first `most` links of each of `keys`, the values of the column `by`, in the order of
/// the column `then`: each key's values of `then`, in one statement.
async fn first_links(
    db: &impl ConnectionTrait,
    by: &'static str,
    then: &'static str,
    keys: &HashSet<&str>,
    most: usize,
) -> Result<HashMap<String, Vec<String>>> {
    let ranked = Ranked {
        table: "application_links",
        by,
        then,
        also: &[],
    };
    ranked
        .first(db, keys, most, |row| Ok(row.try_get_by_index(1)?))
        .await
}

/// The rows of `table` by the column `by`, in the order of the column `then`, with the
/// columns `also` after those two.
struct Ranked {
    table: &'static str,
    by: &'static str,
    then: &'static str,
    also: &'static [&'static str],
}

impl Ranked {
    /// The first `most` rows of each of `keys`, each made by `row` (from the columns `by`,
    /// `then` and `also`, in that order), in one statement.
    async fn first<T>(
        &self,
        db: &impl ConnectionTrait,
        keys: &HashSet<&str>,
        most: usize,
        row: impl Fn(&sea_orm::QueryResult) -> Result<T>,
    ) -> Result<HashMap<String, Vec<T>>> {
        let mut found: HashMap<String, Vec<T>> = HashMap::new();
        if keys.is_empty() {
            return Ok(found);
        }
        let Self {
            table, by, then, ..
        } = self;
        let columns = [*by, *then]
            .iter()
            .chain(self.also)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        let backend = db.get_database_backend();
        let sql = format!(
            "SELECT {columns} FROM (SELECT {columns}, \
             ROW_NUMBER() OVER (PARTITION BY {by} ORDER BY {then}) AS n \
             FROM {table} WHERE {by} IN ({})) ranked WHERE n <= {most} \
             ORDER BY {by}, {then}",
            placeholders(backend, keys.len())
        );
        let values: Vec<sea_orm::Value> = keys.iter().map(|k| (*k).into()).collect();
        for read in db
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?
        {
            let key: String = read.try_get_by_index(0)?;
            found.entry(key).or_default().push(row(&read)?);
        }
        Ok(found)
    }
}

/// The grants of `customers` on the accounts each of `applications` is linked to, by customer
/// and application, in account order: one statement, from the customers' memberships to their
/// links (not from the applications' links, any number, to memberships).
async fn wide_grants(
    db: &impl ConnectionTrait,
    customers: &HashSet<String>,
    applications: &[&str],
) -> Result<HashMap<(String, String), Vec<(String, Grant)>>> {
    let mut found: HashMap<(String, String), Vec<(String, Grant)>> = HashMap::new();
    if customers.is_empty() || applications.is_empty() {
        return Ok(found);
    }
    let query = Query::select()
        .column((member::Entity, member::Column::CustomerId))
        .column((member::Entity, member::Column::ContractorId))
        .column((member::Entity, member::Column::Permissions))
        .column((member::Entity, member::Column::ExpireTime))
        .column((link::Entity, link::Column::ApplicationId))
        .from(member::Entity)
        .inner_join(
            link::Entity,
            Expr::col((link::Entity, link::Column::ContractorId))
                .equals((member::Entity, member::Column::ContractorId)),
        )
        .and_where(
            Expr::col((member::Entity, member::Column::CustomerId))
                .is_in(customers.iter().map(String::as_str)),
        )
        .and_where(
            Expr::col((link::Entity, link::Column::ApplicationId))
                .is_in(applications.iter().copied()),
        )
        .order_by((member::Entity, member::Column::ContractorId), Order::Asc)
        .to_owned();
    for row in db
        .query_all_raw(db.get_database_backend().build(&query))
        .await?
    {
        let customer_id: String = row.try_get_by_index(0)?;
        let contractor_id: String = row.try_get_by_index(1)?;
        let permissions: i16 = row.try_get_by_index(2)?;
        let expire_time: Option<DateTime<Utc>> = row.try_get_by_index(3)?;
        let application_id: String = row.try_get_by_index(4)?;
        let grant = Grant {
            permissions: stored_permissions(permissions),
            expire_time,
        };
        found
            .entry((customer_id, application_id))
            .or_default()
            .push((contractor_id, grant));
    }
    Ok(found)
}

/// The first `MOST_LINKS + 1` links of each of `applications` (in account order: enough to tell
/// an application the cache keeps from one linked more widely), and their legacy owners, in two
/// statements.
async fn read_apps(db: &impl ConnectionTrait, applications: &HashSet<&str>) -> Result<AppsRead> {
    let mut read = AppsRead::default();
    if applications.is_empty() {
        return Ok(read);
    }
    read.links = first_links(
        db,
        "application_id",
        "contractor_id",
        applications,
        MOST_LINKS + 1,
    )
    .await?;
    let owners: Vec<(String, String)> = legacy_application::Entity::find()
        .filter(legacy_application::Column::ApplicationId.is_in(applications.iter().copied()))
        .select_only()
        .column(legacy_application::Column::ApplicationId)
        .column(legacy_application::Column::LegacyCustomerId)
        .into_tuple()
        .all(db)
        .await?;
    for (application_id, record) in owners {
        read.owners.entry(application_id).or_default().push(record);
    }
    Ok(read)
}

/// The applications linked to the accounts where `customer_id` holds one of the `allowing`
/// permission values, after `after`, first `size + 1` in (application, account) order. On
/// PostgreSQL each account's links are read from its own index, in order, and merged: a plan
/// that walks every link in application order looking for the customer's accounts (which the
/// planner may prefer) takes seconds with millions of links.
async fn linked_postgres(
    db: &DatabaseConnection,
    customer_id: &str,
    allowing: &[i16],
    size: u64,
    after: Option<&ApplicationCursor>,
) -> Result<Vec<AccessibleApplication>> {
    let allowing = allowing
        .iter()
        .map(i16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT l.application_id, l.contractor_id FROM memberships m \
         CROSS JOIN LATERAL (SELECT a.application_id, a.contractor_id FROM application_links a \
         WHERE a.contractor_id = m.contractor_id AND (a.application_id, a.contractor_id) > ($2, $3) \
         ORDER BY a.application_id LIMIT $4) l \
         WHERE m.customer_id = $1 AND m.permissions IN ({allowing}) \
         AND (m.expire_time IS NULL OR m.expire_time > $5) \
         ORDER BY l.application_id, l.contractor_id LIMIT $4"
    );
    let (application, account) = after.map_or(("", ""), |a| {
        (a.application_id.as_str(), a.contractor_id.as_str())
    });
    let limit = i64::try_from(size + 1).unwrap_or(i64::MAX);
    db.query_all_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        [
            customer_id.into(),
            application.into(),
            account.into(),
            limit.into(),
            now().into(),
        ],
    ))
    .await?
    .into_iter()
    .map(|row| {
        Ok(AccessibleApplication {
            application_id: row.try_get_by_index(0)?,
            contractor_id: row.try_get_by_index(1)?,
        })
    })
    .collect()
}

/// `linked_postgres` on SQLite, whose planner reads the customer's accounts' links by index.
async fn linked_sqlite(
    db: &DatabaseConnection,
    customer_id: &str,
    allowing: Vec<i16>,
    size: u64,
    after: Option<&ApplicationCursor>,
) -> Result<Vec<AccessibleApplication>> {
    let now = now();
    let contractors = Query::select()
        .column(member::Column::ContractorId)
        .from(member::Entity)
        .and_where(member::Column::CustomerId.eq(customer_id))
        .and_where(member::Column::Permissions.is_in(allowing))
        .cond_where(
            Condition::any()
                .add(member::Column::ExpireTime.is_null())
                .add(member::Column::ExpireTime.gt(now)),
        )
        .to_owned();
    let mut query = link::Entity::find()
        .filter(link::Column::ContractorId.in_subquery(contractors))
        .order_by_asc(link::Column::ApplicationId)
        .order_by_asc(link::Column::ContractorId)
        .limit(size + 1);
    if let Some(after) = after {
        query = query.filter(
            Condition::any()
                .add(link::Column::ApplicationId.gt(after.application_id.as_str()))
                .add(
                    Condition::all()
                        .add(link::Column::ApplicationId.eq(after.application_id.as_str()))
                        .add(link::Column::ContractorId.gt(after.contractor_id.as_str())),
                ),
        );
    }
    Ok(query
        .all(db)
        .await?
        .into_iter()
        .map(|l| AccessibleApplication {
            application_id: l.application_id,
            contractor_id: l.contractor_id,
        })
        .collect())
}

/// The legacy records linked to `customer_id` (at most one), as a subquery.
fn linked_records(customer_id: &str) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(legacy_customer::Column::LegacyCustomerId)
        .from(legacy_customer::Entity)
        .and_where(legacy_customer::Column::CustomerId.eq(customer_id))
        .to_owned()
}

/// Whether `application_id` is `customer_id`'s own, through its linked legacy record.
async fn owns(db: &impl ConnectionTrait, customer_id: &str, application_id: &str) -> Result<bool> {
    Ok(legacy_application::Entity::find()
        .filter(legacy_application::Column::ApplicationId.eq(application_id))
        .filter(
            legacy_application::Column::LegacyCustomerId.in_subquery(linked_records(customer_id)),
        )
        .one(db)
        .await?
        .is_some())
}

/// What a check reads first: the revision, whether the customer and the account exist, and
/// the customer's grant on the account.
struct Probe {
    revision: Revision,
    customer_found: bool,
    contractor_found: bool,
    grant: Option<Grant>,
    /// The survivor the account was merged into, if it was.
    merged_into: Option<String>,
}

/// The accounts `application_id` is linked to where `customer_id` is associated, with its grant
/// there, in account order: what `decide_for_application` weighs (an account where the customer
/// is not associated can only deny). One statement, however many accounts the application is
/// linked to: no list of them is sent back to the database.
async fn linked_grants(
    db: &impl ConnectionTrait,
    application_id: &str,
    customer_id: &str,
) -> Result<Vec<(String, Option<Grant>)>> {
    // From the customer's memberships (a handful) to their links, not from the application's
    // links (any number) to memberships.
    let query = Query::select()
        .column((member::Entity, member::Column::ContractorId))
        .column((member::Entity, member::Column::Permissions))
        .column((member::Entity, member::Column::ExpireTime))
        .from(member::Entity)
        .inner_join(
            link::Entity,
            Expr::col((link::Entity, link::Column::ContractorId))
                .equals((member::Entity, member::Column::ContractorId))
                .and(Expr::col((link::Entity, link::Column::ApplicationId)).eq(application_id)),
        )
        .and_where(Expr::col((member::Entity, member::Column::CustomerId)).eq(customer_id))
        .order_by((member::Entity, member::Column::ContractorId), Order::Asc)
        .to_owned();
    let rows = db
        .query_all_raw(db.get_database_backend().build(&query))
        .await?;
    rows.into_iter()
        .map(|row| {
            let contractor_id: String = row.try_get_by_index(0)?;
            let permissions: i16 = row.try_get_by_index(1)?;
            let expire_time: Option<DateTime<Utc>> = row.try_get_by_index(2)?;
            let grant = Grant {
                permissions: stored_permissions(permissions),
                expire_time,
            };
            Ok((contractor_id, Some(grant)))
        })
        .collect()
}

/// Reads a check's `Probe` in one statement. `{1}` stands for the customer and `{2}` for the
/// account, as `$1`/`$2` on PostgreSQL and `?1`/`?2` on SQLite.
async fn probe(
    db: &impl ConnectionTrait,
    customer_id: &str,
    contractor_id: Option<&str>,
) -> Result<Probe> {
    const SQL: &str = "SELECT \
        (SELECT value FROM revision_counter WHERE id = 1), \
        (SELECT COUNT(*) FROM customers WHERE customer_id = {1}), \
        (SELECT COUNT(*) FROM contractors WHERE contractor_id = {2}), \
        (SELECT permissions FROM memberships WHERE contractor_id = {2} AND customer_id = {1}), \
        (SELECT expire_time FROM memberships WHERE contractor_id = {2} AND customer_id = {1}), \
        (SELECT merged_into FROM contractors WHERE contractor_id = {2})";
    let backend = db.get_database_backend();
    let marker = if backend == DbBackend::Postgres {
        "$"
    } else {
        "?"
    };
    let sql = SQL
        .replace("{1}", &format!("{marker}1"))
        .replace("{2}", &format!("{marker}2"));
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [customer_id.into(), contractor_id.unwrap_or_default().into()],
        ))
        .await?
        .ok_or_else(|| Error::Corrupt("the check probe returned no row".into()))?;
    let revision: Option<i64> = row.try_get_by_index(0)?;
    let permissions: Option<i16> = row.try_get_by_index(3)?;
    let expire_time: Option<DateTime<Utc>> = row.try_get_by_index(4)?;
    let merged_into: Option<String> = row.try_get_by_index(5)?;
    Ok(Probe {
        revision: revision
            .ok_or_else(|| Error::Corrupt("the revision counter row is missing".into()))?,
        customer_found: row.try_get_by_index::<i64>(1)? > 0,
        contractor_found: row.try_get_by_index::<i64>(2)? > 0,
        grant: permissions.map(|bits| Grant {
            permissions: stored_permissions(bits),
            expire_time,
        }),
        merged_into,
    })
}

impl ApplicationCursor {
    /// The `next_page_token` that resumes after this cursor.
    pub fn token(&self) -> String {
        format!(
            "{}.{}",
            self.contractor_id,
            hex::encode(&self.application_id)
        )
    }

    /// Reads a `next_page_token` of `accessible_applications`; `None` when it is not one.
    pub fn parse(token: &str) -> Option<Self> {
        let (contractor_id, application) = token.split_once('.')?;
        let application_id = String::from_utf8(hex::decode(application).ok()?).ok()?;
        let valid = (contractor_id.is_empty() || is_identifier(contractor_id))
            && parse_application_id("page_token", &application_id)
                .is_ok_and(|parsed| parsed == application_id);
        valid.then(|| Self {
            application_id,
            contractor_id: contractor_id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const A: &str = "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6a";
    const B: &str = "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b";
    const C: &str = "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6c";

    fn lists(account: &str) -> Option<Arc<[String]>> {
        let apps: &[&str] = match account {
            A => &["24-1 BLD", "24-3 BLD", "24-5 BLD"],
            B => &["24-2 BLD", "24-3 BLD"],
            C => &["24-0 BLD"],
            _ => return None,
        };
        Some(apps.iter().map(|a| (*a).to_owned()).collect())
    }

    fn listed(page: &Page<AccessibleApplication>) -> Vec<(&str, &str)> {
        page.items
            .iter()
            .map(|a| (a.application_id.as_str(), a.contractor_id.as_str()))
            .collect()
    }

    #[test]
    fn a_widely_linked_application_is_found_through_the_customers_accounts_in_order() {
        let pay = Grant::lasting(PermissionSet::of([Permission::Pay]));
        let apply = Grant::lasting(PermissionSet::of([Permission::Apply]));
        let memberships = vec![
            (A.to_owned(), pay),
            (B.to_owned(), apply),
            (C.to_owned(), pay),
        ];
        let linked = linked_by_memberships(&memberships, "24-3 BLD", lists).unwrap();
        assert_eq!(linked, [(A, Some(pay)), (B, Some(apply))]);
        let linked = linked_by_memberships(&memberships, "24-4 BLD", lists).unwrap();
        assert!(linked.is_empty());
        // An account whose applications are not known: no answer, not a denial.
        let unknown = vec![(A.to_owned(), pay), ("elsewhere".to_owned(), pay)];
        assert_eq!(linked_by_memberships(&unknown, "24-3 BLD", lists), None);
    }

    #[test]
    fn a_page_of_accessible_applications_merges_the_allowing_accounts_in_order() {
        let pay = Grant::lasting(PermissionSet::of([Permission::Pay]));
        let apply = Grant::lasting(PermissionSet::of([Permission::Apply]));
        let lapsed = Grant {
            permissions: PermissionSet::of([Permission::Pay]),
            expire_time: Some(now() - chrono::Duration::seconds(1)),
        };
        let memberships = vec![
            (A.to_owned(), pay),
            (B.to_owned(), pay),
            (C.to_owned(), apply),
            ("0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6d".to_owned(), lapsed),
        ];
        let first = page_of_accessible(&memberships, Permission::Pay, 3, None, lists)
            .expect("every list is there");
        assert_eq!(
            listed(&first),
            [("24-1 BLD", A), ("24-2 BLD", B), ("24-3 BLD", A)]
        );
        let cursor = ApplicationCursor::parse(first.next_page_token.as_deref().expect("more"))
            .expect("a cursor");
        let rest = page_of_accessible(&memberships, Permission::Pay, 3, Some(&cursor), lists)
            .expect("every list is there");
        assert_eq!(listed(&rest), [("24-3 BLD", B), ("24-5 BLD", A)]);
        assert_eq!(rest.next_page_token, None);
        let without = vec![("0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6e".to_owned(), pay)];
        assert!(
            page_of_accessible(&without, Permission::Pay, 3, None, lists).is_none(),
            "an account whose list is not there makes no page"
        );
    }
}
