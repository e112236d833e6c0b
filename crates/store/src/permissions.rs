//! Granting, revoking, removing, leaving, and replacing the PIN: the Manager's operations.

use mandate_domain::membership::{self, Grant};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseTransaction, EntityTrait};

use crate::contractors::{
    fresh_pin, grant_of, managers_other_than, permissions_of, stored_permissions,
};
use crate::entity::{contractor, customer, membership as member};
use crate::merged::{Merged, lock_account, retire_alias_pins, retired_detail};
use crate::tail::Committed;
use crate::{
    Actor, Associate, Change, ChangeKind, Customer, Error, Result, Revision, SealedPin, Store, now,
    record_change,
};

/// A new PIN of an account, and how many alias PINs it retired.
#[derive(Debug)]
pub struct NewPin<P> {
    pub pin: P,
    /// The PINs of accounts merged into this one that stopped working with it.
    pub aliases_retired: u64,
}

impl Store {
    /// Sets the exact grant of `customer_id` on the account; `manager` must be a Manager, and
    /// the account keeps at least one Manager.
    pub async fn set_permissions(
        &self,
        actor: &Actor,
        manager: &str,
        contractor_id: &str,
        customer_id: &str,
        grant: Grant,
    ) -> Result<(Associate, Revision)> {
        let txn = self.begin_change().await?;
        lock_account(&txn, contractor_id, Merged::Refuse("set permissions")).await?;
        let row = member::Entity::find_by_id((contractor_id.to_owned(), customer_id.to_owned()))
            .one(&txn)
            .await?;
        let target = row.as_ref().map(|m| Grant {
            permissions: stored_permissions(m.permissions),
            expire_time: m.expire_time,
        });
        membership::set_permissions(
            permissions_of(&txn, contractor_id, manager).await?,
            target,
            grant,
            managers_other_than(&txn, contractor_id, customer_id).await?,
            now(),
        )?;
        // The rule above answers NOT_FOUND when there is no membership.
        let Some(row) = row else {
            return Err(Error::Internal(
                "set_permissions passed the rule without a membership".into(),
            ));
        };
        let customer = customer::Entity::find_by_id(customer_id)
            .one(&txn)
            .await?
            .ok_or_else(|| {
                Error::Corrupt(format!("membership of missing customer {customer_id}"))
            })?;
        let associate_time = row.associate_time;
        let mut active: member::ActiveModel = row.into();
        active.permissions = Set(i16::from(grant.permissions.bits()));
        active.expire_time = Set(grant.expire_time);
        active.update_time = Set(now());
        active.update(&txn).await?;
        let revision = self
            .commit_change(
                txn,
                actor,
                Change {
                    contractor_id: Some(contractor_id),
                    customer_id: Some(customer_id),
                    before: target.map(|t| t.permissions),
                    after: Some(grant.permissions),
                    expire_time: grant.expire_time,
                    ..Change::of(ChangeKind::PermissionsSet)
                },
            )
            .await?;
        Ok((
            Associate {
                customer: Customer::from(customer),
                permissions: grant.permissions,
                expire_time: grant.expire_time,
                associate_time,
            },
            revision,
        ))
    }

    /// Removes `customer_id` from the account; `manager` must be a Manager, and the account
    /// keeps at least one Manager.
    pub async fn remove_associate<P>(
        &self,
        actor: &Actor,
        manager: &str,
        contractor_id: &str,
        customer_id: &str,
        new_pin: Option<impl FnMut(&str) -> Result<(P, SealedPin)>>,
    ) -> Result<(Option<NewPin<P>>, Revision)> {
        let txn = self.begin_change().await?;
        let account =
            lock_account(&txn, contractor_id, Merged::Refuse("remove associates")).await?;
        let target = grant_of(&txn, contractor_id, customer_id).await?;
        membership::remove_associate(
            permissions_of(&txn, contractor_id, manager).await?,
            target,
            managers_other_than(&txn, contractor_id, customer_id).await?,
            now(),
        )?;
        let removal = delete_membership(
            &txn,
            ChangeKind::AssociateRemoved,
            (contractor_id, customer_id),
            target,
        )
        .await?;
        let Some(mut new_pin) = new_pin else {
            let revision = self.commit_change(txn, actor, removal).await?;
            return Ok((None, revision));
        };
        // The removal and the new PIN commit together, each at its own revision; the cache
        // forgets what each of them changed (the commit itself tells it of the last one).
        let committed = Committed::from(&removal);
        let removed = record_change(&txn, actor, removal).await?;
        let (pin, revision) = self
            .commit_new_pin(txn, actor, account, &mut new_pin)
            .await?;
        self.changes.committed(removed, &committed);
        Ok((Some(pin), revision))
    }

    /// Removes `customer_id` from the account at its own request; the last Manager cannot leave.
    pub async fn leave_contractor(
        &self,
        actor: &Actor,
        customer_id: &str,
        contractor_id: &str,
    ) -> Result<Revision> {
        let txn = self.begin_change().await?;
        lock_account(&txn, contractor_id, Merged::Refuse("leave")).await?;
        let own = grant_of(&txn, contractor_id, customer_id).await?;
        membership::leave(
            own,
            managers_other_than(&txn, contractor_id, customer_id).await?,
            now(),
        )?;
        let membership = (contractor_id, customer_id);
        self.end_membership(txn, actor, ChangeKind::Left, membership, own)
            .await
    }

    /// Deletes the membership `(contractor_id, customer_id)`, records it as `kind` and commits.
    async fn end_membership(
        &self,
        txn: DatabaseTransaction,
        actor: &Actor,
        kind: ChangeKind,
        membership: (&str, &str),
        before: Option<Grant>,
    ) -> Result<Revision> {
        let change = delete_membership(&txn, kind, membership, before).await?;
        self.commit_change(txn, actor, change).await
    }

    /// Replaces the account's PIN; the old one stops working when this commits. `new_pin` is as
    /// for `register_contractor`.
    pub async fn rotate_pin<P>(
        &self,
        actor: &Actor,
        manager: &str,
        contractor_id: &str,
        mut new_pin: impl FnMut(&str) -> Result<(P, SealedPin)>,
    ) -> Result<(NewPin<P>, Revision)> {
        let txn = self.begin_change().await?;
        let account = lock_account(&txn, contractor_id, Merged::Refuse("rotate the PIN")).await?;
        membership::require_manager(
            permissions_of(&txn, contractor_id, manager).await?,
            "replace the account's PIN",
        )?;
        self.commit_new_pin(txn, actor, account, &mut new_pin).await
    }

    /// Gives `account` a fresh PIN from `new_pin`, retires the alias PINs of the accounts merged
    /// into it (a removed associate who kept an old PIN of the company must not walk back in
    /// through it), and commits the change; the PIN and the revision.
    pub(crate) async fn commit_new_pin<P>(
        &self,
        txn: DatabaseTransaction,
        actor: &Actor,
        account: contractor::Model,
        new_pin: &mut impl FnMut(&str) -> Result<(P, SealedPin)>,
    ) -> Result<(NewPin<P>, Revision)> {
        let contractor_id = account.contractor_id.clone();
        let pin = replace_pin(&txn, account, new_pin).await?;
        let aliases_retired = retire_alias_pins(&txn, &contractor_id).await?;
        let revision = self
            .commit_change(
                txn,
                actor,
                Change {
                    contractor_id: Some(&contractor_id),
                    detail: (aliases_retired > 0).then(|| retired_detail(aliases_retired)),
                    ..Change::of(ChangeKind::PinRotated)
                },
            )
            .await?;
        Ok((
            NewPin {
                pin,
                aliases_retired,
            },
            revision,
        ))
    }
}

/// Deletes the membership `(contractor_id, customer_id)`; the change to record for it.
async fn delete_membership<'a>(
    txn: &DatabaseTransaction,
    kind: ChangeKind,
    (contractor_id, customer_id): (&'a str, &'a str),
    before: Option<Grant>,
) -> Result<Change<'a>> {
    member::Entity::delete_by_id((contractor_id.to_owned(), customer_id.to_owned()))
        .exec(txn)
        .await?;
    Ok(Change {
        contractor_id: Some(contractor_id),
        customer_id: Some(customer_id),
        before: before.map(|g| g.permissions),
        ..Change::of(kind)
    })
}

/// Gives `account` a fresh PIN from `new_pin`; the PIN.
async fn replace_pin<P>(
    txn: &DatabaseTransaction,
    account: contractor::Model,
    new_pin: &mut impl FnMut(&str) -> Result<(P, SealedPin)>,
) -> Result<P> {
    let (pin, sealed) = fresh_pin(txn, &account.contractor_id, new_pin).await?;
    let mut active: contractor::ActiveModel = account.into();
    active.pin_hash = Set(sealed.hash);
    active.pin_ciphertext = Set(sealed.ciphertext);
    active.update_time = Set(now());
    active.update(txn).await?;
    Ok(pin)
}
