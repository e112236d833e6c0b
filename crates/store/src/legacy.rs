//! The previous permit system's records: importing them in bulk, and linking a customer to its
//! legacy record with the one-time customer PIN.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use mandate_domain::Error as Rule;
use mandate_domain::contractor::ContractorDetails;
use mandate_domain::legacy::LegacyCustomer;
use sea_orm::sea_query::{LockType, OnConflict};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QuerySelect,
};

use crate::contractors::new_account;
use crate::entity::{application_link as link, contractor, legacy_application, legacy_customer};
use crate::{
    Actor, Change, ChangeKind, Committed, Customer, Error, Result, Revision, SealedPin, Store,
    new_id, now, record_change,
};

/// Rows written per statement: well under both databases' limits on bound values.
const BATCH: usize = 500;

/// An account to import: one contact of the previous system.
pub struct LegacyAccount {
    pub legacy_contractor_id: String,
    pub details: ContractorDetails,
}

/// An application to import, with the legacy records it belongs to (at least one).
pub struct LegacyApplication {
    /// The application number, canonical.
    pub application_id: String,
    pub legacy_contractor_id: Option<String>,
    pub legacy_customer_id: Option<String>,
}

/// What an import run is given.
pub struct LegacyImport {
    pub accounts: Vec<LegacyAccount>,
    pub customers: Vec<LegacyCustomer>,
    pub applications: Vec<LegacyApplication>,
    /// When the one-time customer PINs of this run stop working.
    pub customer_pin_expire_time: DateTime<Utc>,
}

/// What an import run did. `P` is a PIN, for the mail-out.
pub struct ImportOutcome<P> {
    /// Accounts created, with their new contractor id and PIN.
    pub accounts: Vec<(LegacyAccount, String, P)>,
    /// Legacy customer records created, with their one-time customer PIN.
    pub customers: Vec<(LegacyCustomer, P)>,
    /// Accounts and records already imported by an earlier run: left as they are.
    pub accounts_existing: usize,
    pub customers_existing: usize,
    /// Links written, and links that existed already.
    pub links_added: u64,
    pub links_existing: u64,
    /// Applications that name a legacy record that is neither imported nor in this run, by
    /// their position in `LegacyImport::applications`, with the reason.
    pub rejected: Vec<(usize, String)>,
    /// The revision of the run; `None` when it changed nothing.
    pub revision: Option<Revision>,
}

/// A legacy customer record, as a customer linked to it sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedRecord {
    pub legacy_customer_id: String,
    pub display_name: String,
    pub link_time: DateTime<Utc>,
}

impl Store {
    /// Imports `batch` in one transaction, adding only what earlier runs did not: existing
    /// accounts and records (by legacy id) keep their PINs. `account_pin` makes an account's PIN
    /// for its contractor id, `customer_pin` a one-time customer PIN and its hash. Before the
    /// commit, `before_commit` sees the outcome (to write the mail-out); an error from it
    /// leaves everything as it was. `progress` hears after each batch what part of which file
    /// is done (`"accounts"`, `"customers"`, `"applications"`, rows done, rows in all).
    pub async fn import_legacy<P>(
        &self,
        actor: &Actor,
        batch: LegacyImport,
        mut account_pin: impl FnMut(&str) -> Result<(P, SealedPin)>,
        mut customer_pin: impl FnMut() -> Result<(P, String)>,
        before_commit: impl FnOnce(&ImportOutcome<P>) -> Result<()>,
        progress: &mut dyn FnMut(&'static str, usize, usize),
    ) -> Result<ImportOutcome<P>> {
        let txn = self.begin_write().await?;
        let now = now();
        let LegacyImport {
            accounts,
            customers,
            applications,
            customer_pin_expire_time,
        } = batch;

        // Accounts: one per legacy contact, with a PIN and no associates.
        let mut outcome = ImportOutcome {
            accounts: Vec::new(),
            customers: Vec::new(),
            accounts_existing: 0,
            customers_existing: 0,
            links_added: 0,
            links_existing: 0,
            rejected: Vec::new(),
            revision: None,
        };
        // What earlier runs imported, and the PINs in use, read once and kept up to date as this
        // run adds rows: per-batch lookups in a table that grows within the transaction would be
        // planned on stale statistics. Each imported contact maps to the account that stands for
        // it: its own, or the one it was merged into.
        let mut accounts_by_legacy: HashMap<String, String> = contractor::Entity::find()
            .filter(contractor::Column::LegacyContractorId.is_not_null())
            .select_only()
            .column(contractor::Column::LegacyContractorId)
            .column(contractor::Column::ContractorId)
            .column(contractor::Column::MergedInto)
            .into_tuple::<(Option<String>, String, Option<String>)>()
            .all(&txn)
            .await?
            .into_iter()
            .filter_map(|(legacy, id, merged)| legacy.map(|legacy| (legacy, merged.unwrap_or(id))))
            .collect();
        let mut pins_in_use: HashSet<String> = contractor::Entity::find()
            .select_only()
            .column(contractor::Column::PinHash)
            .into_tuple::<String>()
            .all(&txn)
            .await?
            .into_iter()
            .collect();
        let (accounts_total, mut accounts_done) = (accounts.len(), 0);
        let mut accounts = accounts.into_iter().peekable();
        while accounts.peek().is_some() {
            let chunk: Vec<LegacyAccount> = accounts.by_ref().take(BATCH).collect();
            accounts_done += chunk.len();
            let mut rows = Vec::new();
            for account in chunk {
                if accounts_by_legacy.contains_key(&account.legacy_contractor_id) {
                    outcome.accounts_existing += 1;
                    continue;
                }
                let contractor_id = new_id();
                let (pin, sealed) = account_pin(&contractor_id)?;
                require_unused(&mut pins_in_use, &sealed.hash)?;
                rows.push(contractor::ActiveModel::from(new_account(
                    contractor_id.clone(),
                    account.details.clone(),
                    sealed,
                    Some(account.legacy_contractor_id.clone()),
                    now,
                )));
                accounts_by_legacy
                    .insert(account.legacy_contractor_id.clone(), contractor_id.clone());
                outcome.accounts.push((account, contractor_id, pin));
            }
            if !rows.is_empty() {
                contractor::Entity::insert_many(rows)
                    .exec_without_returning(&txn)
                    .await?;
            }
            progress("accounts", accounts_done, accounts_total);
        }

        // Legacy customer records, each with a one-time customer PIN.
        let mut records: HashSet<String> = legacy_customer::Entity::find()
            .select_only()
            .column(legacy_customer::Column::LegacyCustomerId)
            .into_tuple::<String>()
            .all(&txn)
            .await?
            .into_iter()
            .collect();
        let mut customer_pins_in_use: HashSet<String> = legacy_customer::Entity::find()
            .select_only()
            .column(legacy_customer::Column::PinHash)
            .into_tuple::<String>()
            .all(&txn)
            .await?
            .into_iter()
            .collect();
        let (customers_total, mut customers_done) = (customers.len(), 0);
        let mut customers = customers.into_iter().peekable();
        while customers.peek().is_some() {
            let chunk: Vec<LegacyCustomer> = customers.by_ref().take(BATCH).collect();
            customers_done += chunk.len();
            let mut rows = Vec::new();
            for record in chunk {
                if records.contains(&record.legacy_customer_id) {
                    outcome.customers_existing += 1;
                    continue;
                }
                let (pin, hash) = customer_pin()?;
                require_unused(&mut customer_pins_in_use, &hash)?;
                rows.push(legacy_customer::ActiveModel::from(legacy_customer::Model {
                    legacy_customer_id: record.legacy_customer_id.clone(),
                    display_name: record.display_name.clone(),
                    email: record.email.clone(),
                    pin_hash: hash,
                    pin_expire_time: customer_pin_expire_time,
                    customer_id: None,
                    link_time: None,
                    import_time: now,
                }));
                records.insert(record.legacy_customer_id.clone());
                outcome.customers.push((record, pin));
            }
            if !rows.is_empty() {
                legacy_customer::Entity::insert_many(rows)
                    .exec_without_returning(&txn)
                    .await?;
            }
            progress("customers", customers_done, customers_total);
        }

        // Applications, linked to the account of their legacy contact (or the account it was
        // merged into) and to their legacy customer record.
        for (offset, chunk) in applications.chunks(BATCH).enumerate() {
            let mut links = Vec::new();
            let mut owned = Vec::new();
            for (i, application) in chunk.iter().enumerate() {
                let account = match &application.legacy_contractor_id {
                    Some(legacy) => match accounts_by_legacy.get(legacy) {
                        Some(account) => Some(account.clone()),
                        None => {
                            outcome.rejected.push((
                                offset * BATCH + i,
                                format!("legacy contractor {legacy} is not imported"),
                            ));
                            continue;
                        }
                    },
                    None => None,
                };
                if let Some(legacy) = &application.legacy_customer_id
                    && !records.contains(legacy)
                {
                    outcome.rejected.push((
                        offset * BATCH + i,
                        format!("legacy customer {legacy} is not imported"),
                    ));
                    continue;
                }
                if let Some(account) = account {
                    links.push(link::ActiveModel {
                        application_id: Set(application.application_id.clone()),
                        contractor_id: Set(account),
                        link_time: Set(now),
                    });
                }
                if let Some(legacy) = &application.legacy_customer_id {
                    owned.push(legacy_application::ActiveModel {
                        application_id: Set(application.application_id.clone()),
                        legacy_customer_id: Set(legacy.clone()),
                    });
                }
            }
            let offered = (links.len() + owned.len()) as u64;
            let mut added = 0;
            if !links.is_empty() {
                added += link::Entity::insert_many(links)
                    .on_conflict(
                        OnConflict::columns([
                            link::Column::ApplicationId,
                            link::Column::ContractorId,
                        ])
                        .do_nothing()
                        .to_owned(),
                    )
                    .exec_without_returning(&txn)
                    .await?;
            }
            if !owned.is_empty() {
                added += legacy_application::Entity::insert_many(owned)
                    .on_conflict(
                        OnConflict::columns([
                            legacy_application::Column::ApplicationId,
                            legacy_application::Column::LegacyCustomerId,
                        ])
                        .do_nothing()
                        .to_owned(),
                    )
                    .exec_without_returning(&txn)
                    .await?;
            }
            outcome.links_added += added;
            outcome.links_existing += offered - added;
            progress(
                "applications",
                (offset * BATCH + chunk.len()).min(applications.len()),
                applications.len(),
            );
        }

        let changed = !outcome.accounts.is_empty()
            || !outcome.customers.is_empty()
            || outcome.links_added > 0;
        if !changed {
            txn.rollback().await?;
            before_commit(&outcome)?;
            return Ok(outcome);
        }
        let detail = format!(
            "imported {} accounts, {} legacy customer records, {} application links; {} accounts \
             and {} records were there already; {} applications rejected",
            outcome.accounts.len(),
            outcome.customers.len(),
            outcome.links_added,
            outcome.accounts_existing,
            outcome.customers_existing,
            outcome.rejected.len()
        );
        let change = Change {
            detail: Some(detail),
            ..Change::of(ChangeKind::LegacyImported)
        };
        let revision = record_change(&txn, actor, change).await?;
        outcome.revision = Some(revision);
        before_commit(&outcome)?;
        self.commit_recorded(
            txn,
            revision,
            &Committed {
                kind: ChangeKind::LegacyImported,
                contractor_id: None,
                absorbed: &[],
                application_id: None,
                customer_id: None,
            },
        )
        .await?;
        Ok(outcome)
    }

    /// Links `customer_id` to the legacy record whose one-time customer PIN hashes to
    /// `pin_hash`, consuming the PIN. `NOT_FOUND` for a PIN of no record (answered from a read,
    /// writing nothing); `FAILED_PRECONDITION` for a PIN used already, or expired, or a customer
    /// linked to another record.
    pub async fn link_legacy_customer(
        &self,
        actor: &Actor,
        customer_id: &str,
        pin_hash: &str,
    ) -> Result<(Customer, LinkedRecord, Revision)> {
        record_by_pin(&self.db, pin_hash).await?;
        let txn = self.begin_change().await?;
        let found = record_by_pin(&txn, pin_hash).await?;
        // Locked, so that two customers racing for one PIN take turns: the second finds it used.
        let record = legacy_customer::Entity::find_by_id(found.legacy_customer_id)
            .lock(LockType::NoKeyUpdate)
            .one(&txn)
            .await?
            .ok_or_else(|| {
                Rule::NotFound("no legacy customer record has this customer PIN".into())
            })?;
        let customer = crate::entity::customer::Entity::find_by_id(customer_id)
            .one(&txn)
            .await?
            .ok_or_else(|| Rule::not_found("customer", customer_id))?;
        if record.customer_id.is_some() {
            return Err(Rule::FailedPrecondition(
                "this customer PIN was used already: each one links one customer, once".into(),
            )
            .into());
        }
        let now = now();
        if record.pin_expire_time <= now {
            return Err(Rule::FailedPrecondition(format!(
                "this customer PIN expired on {}: ask city staff for a new letter",
                record.pin_expire_time.format("%Y-%m-%d")
            ))
            .into());
        }
        if let Some(linked) = legacy_customer::Entity::find()
            .filter(legacy_customer::Column::CustomerId.eq(customer_id))
            .one(&txn)
            .await?
        {
            return Err(Rule::FailedPrecondition(format!(
                "this customer is linked to legacy record {} already",
                linked.legacy_customer_id
            ))
            .into());
        }
        let mut active: legacy_customer::ActiveModel = record.clone().into();
        active.customer_id = Set(Some(customer_id.to_owned()));
        active.link_time = Set(Some(now));
        active.update(&txn).await?;
        let revision = self
            .commit_change(
                txn,
                actor,
                Change {
                    customer_id: Some(customer_id),
                    ..Change::of(ChangeKind::LegacyCustomerLinked)
                },
            )
            .await?;
        Ok((
            customer.into(),
            LinkedRecord {
                legacy_customer_id: record.legacy_customer_id,
                display_name: record.display_name,
                link_time: now,
            },
            revision,
        ))
    }
}

impl Store {
    /// Staff: a new one-time customer PIN for the legacy record `legacy_customer_id`, valid
    /// until `expire_time`; the old one stops working. `new_pin` makes a PIN and its hash, and
    /// is called again in the (rare) case that the hash is taken. `NOT_FOUND` for an unknown
    /// record; `FAILED_PRECONDITION` for one linked already.
    pub async fn reissue_customer_pin<P>(
        &self,
        actor: &Actor,
        legacy_customer_id: &str,
        expire_time: DateTime<Utc>,
        mut new_pin: impl FnMut() -> Result<(P, String)>,
    ) -> Result<(P, Revision)> {
        let txn = self.begin_change().await?;
        let record = legacy_customer::Entity::find_by_id(legacy_customer_id)
            .lock(LockType::NoKeyUpdate)
            .one(&txn)
            .await?
            .ok_or_else(|| Rule::not_found("legacy customer record", legacy_customer_id))?;
        if let Some(customer) = &record.customer_id {
            return Err(Rule::FailedPrecondition(format!(
                "legacy customer record {legacy_customer_id} is linked to customer {customer} \
                 already: its PIN was used"
            ))
            .into());
        }
        let mut fresh = None;
        for _ in 0..PIN_ATTEMPTS {
            let (pin, hash) = new_pin()?;
            let taken = legacy_customer::Entity::find()
                .filter(legacy_customer::Column::PinHash.eq(&hash))
                .count(&txn)
                .await?
                > 0;
            if !taken {
                fresh = Some((pin, hash));
                break;
            }
        }
        let (pin, hash) =
            fresh.ok_or_else(|| Error::Internal("could not find an unused customer PIN".into()))?;
        let mut active: legacy_customer::ActiveModel = record.into();
        active.pin_hash = Set(hash);
        active.pin_expire_time = Set(expire_time);
        active.update(&txn).await?;
        let revision = self
            .commit_change(
                txn,
                actor,
                Change {
                    detail: Some(format!("legacy customer record {legacy_customer_id}")),
                    ..Change::of(ChangeKind::CustomerPinReissued)
                },
            )
            .await?;
        Ok((pin, revision))
    }
}

/// How many fresh customer PINs a reissue tries before giving up on a (45-bit) collision streak.
const PIN_ATTEMPTS: usize = 8;

/// The legacy record whose customer PIN hashes to `pin_hash`; `NOT_FOUND` when none has it.
async fn record_by_pin(
    db: &impl ConnectionTrait,
    pin_hash: &str,
) -> Result<legacy_customer::Model> {
    legacy_customer::Entity::find()
        .filter(legacy_customer::Column::PinHash.eq(pin_hash))
        .one(db)
        .await?
        .ok_or_else(|| {
            Rule::NotFound("no legacy customer record has this customer PIN".into()).into()
        })
}

/// Refuses a new PIN hash that is in use, and takes it. With 45-bit PINs this happens about
/// once in tens of millions of imports; the run then fails whole and can be run again.
fn require_unused(in_use: &mut HashSet<String>, hash: &str) -> Result<()> {
    if !in_use.insert(hash.to_owned()) {
        return Err(Error::Internal(
            "a new PIN of the import came out equal to one in use; run it again".into(),
        ));
    }
    Ok(())
}
