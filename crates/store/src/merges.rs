//! Merging a company's accounts into one (staff): the survivor takes the absorbed accounts'
//! applications, associates (permissions united) and PINs (aliases), and their history stays
//! readable from it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use mandate_domain::Error as Rule;
use mandate_domain::membership::{self, Grant};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::contractors::{lock_contractor, stored_permissions};
use crate::entity::{application_link as link, contractor, membership as member};
use crate::merged::alias_pins;
use crate::{Actor, Change, ChangeKind, Contractor, Error, Result, Revision, Store, now};

/// Memberships written in one statement: 6 values each, far below either database's limit.
const MEMBERS_PER_STATEMENT: usize = 500;

impl Store {
    /// Merges the accounts `absorbed` into `survivor` in one transaction. Refused when an
    /// account is unknown, when the survivor was itself merged away, or when an absorbed
    /// account was merged already.
    pub async fn merge_contractors(
        &self,
        actor: &Actor,
        survivor_id: &str,
        absorbed: &[String],
    ) -> Result<(Contractor, u64, Revision)> {
        let txn = self.begin_change().await?;
        // An account merged away already is refused before any lock is taken: no path locks
        // such an account before its survivor (see `merged`).
        let accounts = contractor::Entity::find()
            .filter(
                contractor::Column::ContractorId
                    .is_in(absorbed.iter().map(String::as_str).chain([survivor_id])),
            )
            .all(&txn)
            .await?;
        for account in &accounts {
            refuse_merged(&account.contractor_id, survivor_id, &account.merged_into)?;
        }
        // Every account of the merge is locked in id order, so that merges sharing an account
        // take turns without deadlocking, and each is looked at as soon as it is locked: one
        // merged away while this merge waited for it is refused at once (the whole transaction
        // rolls back), never held while waiting for the next.
        let mut ids: Vec<&str> = absorbed
            .iter()
            .map(String::as_str)
            .chain([survivor_id])
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut survivor = None;
        for id in ids {
            let account = lock_contractor(&txn, id).await?;
            refuse_merged(id, survivor_id, &account.merged_into)?;
            if id == survivor_id {
                survivor = Some(account);
            }
        }
        let survivor = survivor.ok_or_else(|| {
            Error::Internal("the survivor was not among the accounts locked".into())
        })?;
        let now = now();

        // Associates: each customer keeps the union of what it held on any of the accounts.
        let mut grants: HashMap<String, (Grant, Fate)> = member::Entity::find()
            .filter(member::Column::ContractorId.eq(survivor_id))
            .all(&txn)
            .await?
            .into_iter()
            .map(|m| {
                (
                    m.customer_id,
                    (stored_grant(m.permissions, m.expire_time), Fate::Kept),
                )
            })
            .collect();
        let absorbed_members = member::Entity::find()
            .filter(member::Column::ContractorId.is_in(absorbed.iter().map(String::as_str)))
            .all(&txn)
            .await?;
        for m in absorbed_members {
            let grant = stored_grant(m.permissions, m.expire_time);
            match grants.get_mut(&m.customer_id) {
                Some((held, fate)) => {
                    let united = membership::unite(Some(*held), grant, now);
                    if united != *held {
                        *held = united;
                        if *fate == Fate::Kept {
                            *fate = Fate::Changed;
                        }
                    }
                    if let Fate::Joined(since) = fate {
                        *since = Ord::min(*since, m.associate_time);
                    }
                }
                None => {
                    let united = membership::unite(None, grant, now);
                    grants.insert(m.customer_id, (united, Fate::Joined(m.associate_time)));
                }
            }
        }
        member::Entity::delete_many()
            .filter(member::Column::ContractorId.is_in(absorbed.iter().map(String::as_str)))
            .exec(&txn)
            .await?;
        let mut joined = Vec::new();
        for (customer_id, (grant, fate)) in grants {
            match fate {
                Fate::Kept => {}
                Fate::Changed => {
                    member::Entity::update_many()
                        .col_expr(
                            member::Column::Permissions,
                            Expr::value(i16::from(grant.permissions.bits())),
                        )
                        .col_expr(member::Column::ExpireTime, Expr::value(grant.expire_time))
                        .col_expr(member::Column::UpdateTime, Expr::value(now))
                        .filter(member::Column::ContractorId.eq(survivor_id))
                        .filter(member::Column::CustomerId.eq(customer_id))
                        .exec(&txn)
                        .await?;
                }
                Fate::Joined(associate_time) => joined.push(member::ActiveModel {
                    contractor_id: Set(survivor_id.to_owned()),
                    customer_id: Set(customer_id),
                    permissions: Set(i16::from(grant.permissions.bits())),
                    expire_time: Set(grant.expire_time),
                    associate_time: Set(associate_time),
                    update_time: Set(now),
                }),
            }
        }
        for chunk in joined.chunks(MEMBERS_PER_STATEMENT) {
            member::Entity::insert_many(chunk.iter().cloned())
                .exec_without_returning(&txn)
                .await?;
        }

        // Applications: the survivor's from now on; a permit linked to both stays linked once
        // (the survivor's link, or the earliest of the absorbed accounts'). Two set-based statements, whatever the number of links: an
        // account of 100 000 permits moves in one round trip each, not one per permit.
        let survivor_holds = Query::select()
            .column(link::Column::ApplicationId)
            .from(link::Entity)
            .and_where(link::Column::ContractorId.eq(survivor_id))
            .to_owned();
        let moving = Query::select()
            .column(link::Column::ApplicationId)
            .expr(Expr::val(survivor_id))
            .expr(Expr::col(link::Column::LinkTime).min())
            .from(link::Entity)
            .and_where(link::Column::ContractorId.is_in(absorbed.iter().map(String::as_str)))
            .and_where(link::Column::ApplicationId.not_in_subquery(survivor_holds))
            .group_by_col(link::Column::ApplicationId)
            .to_owned();
        let copy = Query::insert()
            .into_table(link::Entity)
            .columns([
                link::Column::ApplicationId,
                link::Column::ContractorId,
                link::Column::LinkTime,
            ])
            .select_from(moving)
            .map_err(|err| Error::Internal(format!("the merge's link copy: {err}")))?
            .to_owned();
        txn.execute_raw(txn.get_database_backend().build(&copy))
            .await?;
        link::Entity::delete_many()
            .filter(link::Column::ContractorId.is_in(absorbed.iter().map(String::as_str)))
            .exec(&txn)
            .await?;

        // The absorbed accounts, and any merged into them before, now point at the survivor:
        // their PINs associate to it and their ids decide checks through it.
        contractor::Entity::update_many()
            .col_expr(contractor::Column::MergedInto, Expr::value(survivor_id))
            .col_expr(contractor::Column::UpdateTime, Expr::value(now))
            .filter(
                contractor::Column::ContractorId
                    .is_in(absorbed.iter().map(String::as_str))
                    .or(contractor::Column::MergedInto.is_in(absorbed.iter().map(String::as_str))),
            )
            .exec(&txn)
            .await?;
        let aliases = alias_pins(&txn, survivor_id).await?;
        let revision = self
            .commit_change(
                txn,
                actor,
                Change {
                    contractor_id: Some(survivor_id),
                    absorbed_contractor_ids: absorbed,
                    ..Change::of(ChangeKind::ContractorsMerged)
                },
            )
            .await?;
        Ok((survivor.into(), aliases, revision))
    }
}

/// The refusal of a merge naming `contractor_id` (as survivor when it is `survivor_id`) when that
/// account was merged into `merged_into` already.
fn refuse_merged(
    contractor_id: &str,
    survivor_id: &str,
    merged_into: &Option<String>,
) -> Result<()> {
    match merged_into {
        None => Ok(()),
        Some(into) if contractor_id == survivor_id => Err(Rule::FailedPrecondition(format!(
            "account {contractor_id} was merged into {into}: merge into {into} instead"
        ))
        .into()),
        Some(into) => Err(Rule::FailedPrecondition(format!(
            "account {contractor_id} was merged into {into} already"
        ))
        .into()),
    }
}

/// What a merge does to one customer's membership of the survivor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Held on the survivor, and the absorbed accounts add nothing.
    Kept,
    /// Held on the survivor, and united with more.
    Changed,
    /// New to the survivor: associated since the earliest of its absorbed memberships.
    Joined(DateTime<Utc>),
}

fn stored_grant(permissions: i16, expire_time: Option<DateTime<Utc>>) -> Grant {
    Grant {
        permissions: stored_permissions(permissions),
        expire_time,
    }
}
