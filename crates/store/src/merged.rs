//! What an id of an account merged away means, decided here for every call that names an
//! account, and the alias PINs such accounts leave behind.
//!
//! Two rules, one per family of calls (`proto/mandate/v1/contractor.proto` says which RPC
//! follows which):
//! - [`Merged::Follow`]: the call acts on the survivor. Checks, and the permit systems' links
//!   and unlinks, whose permits name the account number they were filed under.
//! - [`Merged::Refuse`]: `FAILED_PRECONDITION` naming the survivor. Every change to an account
//!   and every read of what its Managers hold (PIN, associates, audit trail): acting on a record
//!   that no longer holds anything would answer OK and change nothing.
//!
//! Lock order: the row of an account merged away is written only while its survivor's row is
//! locked (a merge of the survivor re-points it, a new survivor PIN retires its alias), and no
//! path locks it before its survivor: a call that follows reads the merged row without a lock,
//! then locks the survivor. So a merge and an association through an alias PIN take turns on the
//! survivor instead of deadlocking.

use mandate_domain::Error as Rule;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    TransactionTrait,
};

use crate::contractors::{find_contractor, lock_contractor};
use crate::entity::contractor;
use crate::{Actor, Change, ChangeKind, Error, Result, Revision, Store, now};

/// How many `merged_into` links are followed before the data is called inconsistent. A merge
/// re-points the accounts merged into what it absorbs, so one link is all there should be.
const MERGE_DEPTH: usize = 16;

/// What stands in `pin_hash` once an alias PIN is retired: no HMAC (hex) has a colon, and the
/// account id after it keeps the column unique.
const RETIRED: &str = "retired:";

/// What a call naming an account merged away gets.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Merged<'a> {
    /// The survivor.
    Follow,
    /// `FAILED_PRECONDITION` naming the survivor; says what to do there ("rotate its PIN").
    Refuse(&'a str),
}

/// The refusal of a call that named `contractor_id`, merged into `survivor`.
fn refusal(contractor_id: &str, survivor: &str, what: &str) -> Error {
    Rule::FailedPrecondition(format!(
        "account {contractor_id} was merged into {survivor}: {what} on {survivor} instead"
    ))
    .into()
}

/// The account `contractor_id` names under `merged`, its row locked until `txn` ends (see
/// `lock_contractor`); `NOT_FOUND` for an unknown id.
pub(crate) async fn lock_account(
    txn: &DatabaseTransaction,
    contractor_id: &str,
    merged: Merged<'_>,
) -> Result<contractor::Model> {
    // Read first, unlocked: an account merged away is never locked before its survivor.
    let named = find_contractor(txn, contractor_id).await?;
    let mut target = match (named.merged_into, merged) {
        (None, _) => contractor_id.to_owned(),
        (Some(survivor), Merged::Refuse(what)) => {
            return Err(refusal(contractor_id, &survivor, what));
        }
        (Some(survivor), Merged::Follow) => survivor,
    };
    for _ in 0..MERGE_DEPTH {
        // Each lock in a savepoint of its own: a row that was merged away while this call
        // waited for it is let go again (rolling back to the savepoint releases its lock)
        // before its survivor is locked, so it is never held while waiting for the survivor.
        let attempt = txn.begin().await?;
        let account = lock_contractor(&attempt, &target).await?;
        // Merged while this call waited for it: the rule applies to what holds now.
        match (account.merged_into.clone(), merged) {
            (None, _) => {
                attempt.commit().await?;
                return Ok(account);
            }
            (Some(survivor), Merged::Refuse(what)) => {
                attempt.rollback().await?;
                return Err(refusal(contractor_id, &survivor, what));
            }
            (Some(survivor), Merged::Follow) => {
                attempt.rollback().await?;
                target = survivor;
            }
        }
    }
    Err(Error::Corrupt(format!(
        "account {contractor_id} is merged more than {MERGE_DEPTH} levels deep"
    )))
}

/// The account `contractor_id` names under `merged`, read without a lock.
pub(crate) async fn read_account(
    db: &impl ConnectionTrait,
    contractor_id: &str,
    merged: Merged<'_>,
) -> Result<contractor::Model> {
    let account = find_contractor(db, contractor_id).await?;
    match (&account.merged_into, merged) {
        (None, _) => Ok(account),
        (Some(survivor), Merged::Refuse(what)) => Err(refusal(contractor_id, survivor, what)),
        (Some(survivor), Merged::Follow) => find_contractor(db, survivor).await,
    }
}

/// Retires every alias PIN of `survivor`, whose row `txn` holds locked: the PINs of the accounts
/// merged into it stop working, and their sealed copies are erased. How many were retired.
pub(crate) async fn retire_alias_pins(txn: &DatabaseTransaction, survivor: &str) -> Result<u64> {
    let result = contractor::Entity::update_many()
        .col_expr(
            contractor::Column::PinHash,
            // `||` concatenates on both databases.
            Expr::cust(format!("'{RETIRED}' || contractor_id")),
        )
        .col_expr(
            contractor::Column::PinCiphertext,
            Expr::value(Vec::<u8>::new()),
        )
        .col_expr(contractor::Column::UpdateTime, Expr::value(now()))
        .filter(contractor::Column::MergedInto.eq(survivor))
        .filter(contractor::Column::PinHash.not_like(format!("{RETIRED}%")))
        .exec(txn)
        .await?;
    Ok(result.rows_affected)
}

/// How many alias PINs of `survivor` still work: those of the accounts merged into it that no new
/// PIN of the survivor has retired.
pub(crate) async fn alias_pins(db: &impl ConnectionTrait, survivor: &str) -> Result<u64> {
    Ok(contractor::Entity::find()
        .filter(contractor::Column::MergedInto.eq(survivor))
        .filter(contractor::Column::PinHash.not_like(format!("{RETIRED}%")))
        .count(db)
        .await?)
}

impl Store {
    /// How many alias PINs of the account still work (see `alias_pins`); none for an account
    /// merged away, whose own PIN is one of its survivor's.
    pub async fn alias_pin_count(&self, contractor_id: &str) -> Result<u64> {
        alias_pins(&self.db, contractor_id).await
    }

    /// Staff: retires every alias PIN of the account without changing its own PIN. How many were
    /// retired, and the revision (the current one when none was left).
    pub async fn retire_alias_pins(
        &self,
        actor: &Actor,
        contractor_id: &str,
    ) -> Result<(u64, Revision)> {
        let txn = self.begin_change().await?;
        lock_account(&txn, contractor_id, Merged::Refuse("retire alias PINs")).await?;
        let retired = retire_alias_pins(&txn, contractor_id).await?;
        if retired == 0 {
            let revision = crate::current_revision(&txn).await?;
            txn.rollback().await?;
            return Ok((0, revision));
        }
        let revision = self
            .commit_change(
                txn,
                actor,
                Change {
                    contractor_id: Some(contractor_id),
                    detail: Some(retired_detail(retired)),
                    ..Change::of(ChangeKind::AliasPinsRetired)
                },
            )
            .await?;
        Ok((retired, revision))
    }
}

/// The audit trail's words for `count` alias PINs retired.
pub(crate) fn retired_detail(count: u64) -> String {
    match count {
        1 => "retired 1 alias PIN".to_owned(),
        n => format!("retired {n} alias PINs"),
    }
}
