//! Professional/contractor accounts, their PINs, and memberships.

use std::collections::HashMap;

use mandate_domain::Error as Rule;
use mandate_domain::contractor::ContractorDetails;
use mandate_domain::membership::{self, Association, Grant};
use mandate_domain::paging::PageRequest;
use mandate_domain::permission::PermissionSet;
use sea_orm::sea_query::LockType;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait,
    PaginatorTrait, QueryFilter, QuerySelect,
};

use crate::entity::{contractor, customer, membership as member};
use crate::merged::{Merged, lock_account, read_account};
use crate::paging::keyset_page;
use crate::{
    Actor, Associate, Change, ChangeKind, Contractor, Customer, Error, Membership, Page, Result,
    Revision, SealedPin, Store, Viewer, current_revision, new_id, now,
};

/// How many fresh PINs registration tries before giving up on a (45-bit) collision streak.
const PIN_ATTEMPTS: usize = 8;

impl Store {
    /// Registers an account for `registrant`, who becomes its Manager. `new_pin` makes a PIN for
    /// the account id it is given and returns it with its sealed form; it is called again in the
    /// (rare) case that the PIN is taken.
    pub async fn register_contractor<P>(
        &self,
        actor: &Actor,
        registrant: &str,
        details: ContractorDetails,
        mut new_pin: impl FnMut(&str) -> Result<(P, SealedPin)>,
    ) -> Result<(Contractor, P, Revision)> {
        let txn = self.begin_change().await?;
        let contractor_id = new_id();
        let (pin, sealed) = fresh_pin(&txn, &contractor_id, &mut new_pin).await?;
        let model = new_account(contractor_id.clone(), details, sealed, None, now());
        contractor::Entity::insert(contractor::ActiveModel::from(model.clone()))
            .exec_without_returning(&txn)
            .await?;
        insert_membership(&txn, &contractor_id, registrant, membership::REGISTRANT).await?;
        let revision = self
            .commit_change(
                txn,
                actor,
                Change {
                    contractor_id: Some(&contractor_id),
                    customer_id: Some(registrant),
                    after: Some(membership::REGISTRANT),
                    ..Change::of(ChangeKind::ContractorRegistered)
                },
            )
            .await?;
        Ok((model.into(), pin, revision))
    }

    /// One account, merged away or not; `NOT_FOUND` for an unknown id.
    pub async fn contractor(&self, contractor_id: &str) -> Result<Contractor> {
        Ok(find_contractor(&self.db, contractor_id).await?.into())
    }

    /// Changes an account's details; only a Manager may. `change` computes the new details.
    pub async fn update_contractor(
        &self,
        actor: &Actor,
        manager: &str,
        contractor_id: &str,
        change: impl FnOnce(&ContractorDetails) -> mandate_domain::Result<ContractorDetails>,
    ) -> Result<(Contractor, Revision)> {
        let txn = self.begin_change().await?;
        let current =
            lock_account(&txn, contractor_id, Merged::Refuse("change the details")).await?;
        let actor_permissions = permissions_of(&txn, contractor_id, manager).await?;
        membership::require_manager(actor_permissions, "change the account's details")?;
        let details = change(&Contractor::from(current.clone()).details)?;
        let mut model = current;
        model.business_name = details.business_name;
        model.contact_name = details.contact.name;
        model.contact_phone = details.contact.phone;
        model.contact_email = details.contact.email;
        model.street = details.mailing_address.street;
        model.city = details.mailing_address.city;
        model.province = details.mailing_address.province;
        model.postal_code = details.mailing_address.postal_code;
        model.country = details.mailing_address.country;
        model.update_time = now();
        contractor::Entity::update(contractor::ActiveModel::from(model.clone()).reset_all())
            .exec(&txn)
            .await?;
        let revision = self
            .commit_change(
                txn,
                actor,
                Change {
                    contractor_id: Some(contractor_id),
                    ..Change::of(ChangeKind::ContractorUpdated)
                },
            )
            .await?;
        Ok((model.into(), revision))
    }

    /// Whether `customer_id` is associated with the account, with whatever permissions.
    pub async fn is_associated(&self, contractor_id: &str, customer_id: &str) -> Result<bool> {
        Ok(permissions_of(&self.db, contractor_id, customer_id)
            .await?
            .is_some())
    }

    /// The accounts `customer_id` is associated with, in the order the accounts were registered.
    pub async fn memberships(
        &self,
        customer_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Membership>> {
        let (rows, next_page_token) = keyset_page(
            &self.db,
            member::Entity::find().filter(member::Column::CustomerId.eq(customer_id)),
            member::Column::ContractorId,
            page.after.as_deref(),
            page,
            |m| m.contractor_id.clone(),
        )
        .await?;
        let ids: Vec<&str> = rows.iter().map(|m| m.contractor_id.as_str()).collect();
        let mut contractors: HashMap<String, contractor::Model> = contractor::Entity::find()
            .filter(contractor::Column::ContractorId.is_in(ids))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|c| (c.contractor_id.clone(), c))
            .collect();
        let items = rows
            .into_iter()
            .map(|m| {
                let contractor = contractors.remove(&m.contractor_id).ok_or_else(|| {
                    Error::Corrupt(format!("membership of missing account {}", m.contractor_id))
                })?;
                Ok(Membership {
                    contractor: contractor.into(),
                    permissions: stored_permissions(m.permissions),
                    expire_time: m.expire_time,
                    associate_time: m.associate_time,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// Associates `customer_id` with the account whose PIN hashes to `pin_hash`. Returns the
    /// membership, whether it existed already, and the revision (the current one when nothing
    /// changed).
    pub async fn associate_by_pin(
        &self,
        actor: &Actor,
        customer_id: &str,
        pin_hash: &str,
    ) -> Result<(Membership, bool, Revision)> {
        // A wrong PIN (a typo, or a guess) is answered from a plain read: it writes nothing and
        // waits for no writer, so guessing cannot slow the changes of everyone else.
        account_by_pin(&self.db, pin_hash).await?;
        let txn = self.begin_change().await?;
        let found = account_by_pin(&txn, pin_hash).await?;
        // FAQ: old PINs of merged accounts "keep working" for the surviving account (until a new
        // PIN of the survivor retires them).
        let account = lock_account(&txn, &found.contractor_id, Merged::Follow).await?;
        // Every change to a PIN, an alias's included, is made under the lock of the account it
        // leads to, now held: read again, the PIN must still lead here.
        let now_leads_to = account_by_pin(&txn, pin_hash).await?;
        if now_leads_to.contractor_id != account.contractor_id
            && now_leads_to.merged_into.as_deref() != Some(account.contractor_id.as_str())
        {
            // Replaced or retired while this change waited for the account.
            return Err(pin_unknown());
        }
        let existing =
            member::Entity::find_by_id((account.contractor_id.clone(), customer_id.to_owned()))
                .one(&txn)
                .await?;
        let has_manager = managers_other_than(&txn, &account.contractor_id, customer_id).await? > 0;
        let decision = membership::associate(
            existing.as_ref().map(|m| {
                Grant {
                    permissions: stored_permissions(m.permissions),
                    expire_time: m.expire_time,
                }
                .effective(now())
            }),
            has_manager,
            self.managerless_policy,
        );
        match (decision, existing) {
            (Association::Existing(permissions), Some(existing)) => {
                // Nothing changes: nothing is committed.
                let revision = current_revision(&txn).await?;
                txn.rollback().await?;
                Ok((
                    Membership {
                        contractor: account.into(),
                        permissions,
                        expire_time: existing.expire_time,
                        associate_time: existing.associate_time,
                    },
                    true,
                    revision,
                ))
            }
            (Association::New(permissions), _) | (Association::Existing(permissions), None) => {
                let row = insert_membership(&txn, &account.contractor_id, customer_id, permissions)
                    .await?;
                let revision = self
                    .commit_change(
                        txn,
                        actor,
                        Change {
                            contractor_id: Some(&account.contractor_id),
                            customer_id: Some(customer_id),
                            after: Some(permissions),
                            ..Change::of(ChangeKind::Associated)
                        },
                    )
                    .await?;
                Ok((
                    Membership {
                        contractor: account.into(),
                        permissions,
                        expire_time: None,
                        associate_time: row.associate_time,
                    },
                    false,
                    revision,
                ))
            }
        }
    }

    /// The PIN of an account, opened from its sealed form by `open`, for a Manager to read; the
    /// read is audited.
    pub async fn read_pin<P>(
        &self,
        actor: &Actor,
        manager: &str,
        contractor_id: &str,
        open: impl FnOnce(&[u8]) -> Result<P>,
    ) -> Result<(P, Revision)> {
        let txn = self.begin_change().await?;
        let account = lock_account(&txn, contractor_id, Merged::Refuse("read the PIN")).await?;
        membership::require_manager(
            permissions_of(&txn, contractor_id, manager).await?,
            "read the account's PIN",
        )?;
        // Opened before the read is recorded: a PIN that cannot be shown was not read.
        let pin = open(&account.pin_ciphertext)?;
        let revision = self
            .commit_change(
                txn,
                actor,
                Change {
                    contractor_id: Some(contractor_id),
                    ..Change::of(ChangeKind::PinRead)
                },
            )
            .await?;
        Ok((pin, revision))
    }

    /// The associates of an account, in the order the customers registered; only its
    /// associates may list them.
    pub async fn associates(
        &self,
        viewer: Viewer<'_>,
        contractor_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Associate>> {
        read_account(
            &self.db,
            contractor_id,
            Merged::Refuse("list the associates"),
        )
        .await?;
        let contacts = match viewer {
            Viewer::Staff => true,
            Viewer::Customer(viewer) => {
                let viewer = permissions_of(&self.db, contractor_id, viewer).await?;
                membership::require_associate(viewer, "list its associates")?;
                viewer.is_some_and(membership::sees_contact_details)
            }
        };
        let (rows, next_page_token) = keyset_page(
            &self.db,
            member::Entity::find().filter(member::Column::ContractorId.eq(contractor_id)),
            member::Column::CustomerId,
            page.after.as_deref(),
            page,
            |m| m.customer_id.clone(),
        )
        .await?;
        let ids: Vec<&str> = rows.iter().map(|m| m.customer_id.as_str()).collect();
        let mut customers: HashMap<String, customer::Model> = customer::Entity::find()
            .filter(customer::Column::CustomerId.is_in(ids))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|c| (c.customer_id.clone(), c))
            .collect();
        let items = rows
            .into_iter()
            .map(|m| {
                let mut customer = customers.remove(&m.customer_id).ok_or_else(|| {
                    Error::Corrupt(format!("membership of missing customer {}", m.customer_id))
                })?;
                if !contacts {
                    customer.email.clear();
                    customer.external_subject.clear();
                }
                Ok(Associate {
                    customer: Customer::from(customer),
                    permissions: stored_permissions(m.permissions),
                    expire_time: m.expire_time,
                    associate_time: m.associate_time,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Page {
            items,
            next_page_token,
        })
    }
}

pub(crate) async fn find_contractor(
    db: &impl ConnectionTrait,
    contractor_id: &str,
) -> Result<contractor::Model> {
    contractor::Entity::find_by_id(contractor_id)
        .one(db)
        .await?
        .ok_or_else(|| Rule::not_found("contractor", contractor_id).into())
}

/// The account `contractor_id`, its row locked until `txn` ends, so that the changes to one
/// account take turns and each one's rules see every earlier change (see the crate's
/// documentation); `NOT_FOUND` for an unknown id. The lock (`FOR NO KEY UPDATE`) lets rows that
/// merely refer to the account be written meanwhile. SQLite has no row locks: its writers take
/// turns already.
pub(crate) async fn lock_contractor(
    txn: &DatabaseTransaction,
    contractor_id: &str,
) -> Result<contractor::Model> {
    contractor::Entity::find_by_id(contractor_id)
        .lock(LockType::NoKeyUpdate)
        .one(txn)
        .await?
        .ok_or_else(|| Rule::not_found("contractor", contractor_id).into())
}

/// The row of a new account.
pub(crate) fn new_account(
    contractor_id: String,
    details: ContractorDetails,
    sealed: SealedPin,
    legacy_contractor_id: Option<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> contractor::Model {
    contractor::Model {
        contractor_id,
        business_name: details.business_name,
        contact_name: details.contact.name,
        contact_phone: details.contact.phone,
        contact_email: details.contact.email,
        street: details.mailing_address.street,
        city: details.mailing_address.city,
        province: details.mailing_address.province,
        postal_code: details.mailing_address.postal_code,
        country: details.mailing_address.country,
        pin_hash: sealed.hash,
        pin_ciphertext: sealed.ciphertext,
        merged_into: None,
        legacy_contractor_id,
        create_time: now,
        update_time: now,
    }
}

/// The account whose PIN hashes to `pin_hash`; `NOT_FOUND` when none has it.
async fn account_by_pin(db: &impl ConnectionTrait, pin_hash: &str) -> Result<contractor::Model> {
    contractor::Entity::find()
        .filter(contractor::Column::PinHash.eq(pin_hash))
        .one(db)
        .await?
        .ok_or_else(pin_unknown)
}

fn pin_unknown() -> Error {
    Rule::NotFound("no account has this PIN; check it with the person who shared it".into()).into()
}

/// A PIN from `new_pin` that no account holds, trying again on the rare collision.
pub(crate) async fn fresh_pin<P>(
    db: &impl ConnectionTrait,
    contractor_id: &str,
    new_pin: &mut impl FnMut(&str) -> Result<(P, SealedPin)>,
) -> Result<(P, SealedPin)> {
    for _ in 0..PIN_ATTEMPTS {
        let (pin, sealed) = new_pin(contractor_id)?;
        let taken = contractor::Entity::find()
            .filter(contractor::Column::PinHash.eq(&sealed.hash))
            .count(db)
            .await?
            > 0;
        if !taken {
            return Ok((pin, sealed));
        }
    }
    Err(Error::Internal("could not find an unused PIN".into()))
}

/// The permissions `customer_id` holds on the account now, `None` when not associated.
/// Permissions whose grant has expired count as none.
pub(crate) async fn permissions_of(
    db: &impl ConnectionTrait,
    contractor_id: &str,
    customer_id: &str,
) -> Result<Option<PermissionSet>> {
    Ok(grant_of(db, contractor_id, customer_id)
        .await?
        .map(|grant| grant.effective(now())))
}

/// What `customer_id` holds on the account, `None` when not associated.
pub(crate) async fn grant_of(
    db: &impl ConnectionTrait,
    contractor_id: &str,
    customer_id: &str,
) -> Result<Option<Grant>> {
    let row = member::Entity::find_by_id((contractor_id.to_owned(), customer_id.to_owned()))
        .one(db)
        .await?;
    Ok(row.map(|m| Grant {
        permissions: stored_permissions(m.permissions),
        expire_time: m.expire_time,
    }))
}

/// How many customers other than `customer_id` are Managers of the account. (Manage cannot be
/// time-limited, so a stored Manager is a Manager now.)
pub(crate) async fn managers_other_than(
    db: &impl ConnectionTrait,
    contractor_id: &str,
    customer_id: &str,
) -> Result<usize> {
    let count = member::Entity::find()
        .filter(member::Column::ContractorId.eq(contractor_id))
        .filter(member::Column::CustomerId.ne(customer_id))
        .filter(member::Column::Permissions.eq(i16::from(PermissionSet::MANAGER.bits())))
        .count(db)
        .await?;
    Ok(usize::try_from(count).unwrap_or(usize::MAX))
}

pub(crate) async fn insert_membership(
    db: &impl ConnectionTrait,
    contractor_id: &str,
    customer_id: &str,
    permissions: PermissionSet,
) -> Result<member::Model> {
    let now = now();
    let model = member::Model {
        contractor_id: contractor_id.to_owned(),
        customer_id: customer_id.to_owned(),
        permissions: i16::from(permissions.bits()),
        expire_time: None,
        associate_time: now,
        update_time: now,
    };
    member::Entity::insert(member::ActiveModel::from(model.clone()))
        .exec_without_returning(db)
        .await?;
    Ok(model)
}

pub(crate) fn stored_permissions(bits: i16) -> PermissionSet {
    PermissionSet::from_bits(u8::try_from(bits).unwrap_or_default())
}
