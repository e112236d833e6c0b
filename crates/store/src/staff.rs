//! Staff operations: appointing a Manager, a new PIN for an unclaimed account, and finding
//! accounts.

use mandate_domain::Error as Rule;
use mandate_domain::paging::PageRequest;
use mandate_domain::permission::PermissionSet;
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use crate::contractors::{grant_of, insert_membership};
use crate::entity::{contractor, customer, membership as member};
use crate::merged::{Merged, lock_account};
use crate::paging::keyset_page;
use crate::{
    Actor, Change, ChangeKind, Contractor, NewPin, Page, Result, Revision, SealedPin, Store,
    current_revision, now,
};

/// What staff search accounts by.
pub enum ContractorQuery<'a> {
    /// Any part of the business name, in any case.
    BusinessName(&'a str),
    /// The whole contact email, in any case.
    Email(&'a str),
    /// The legacy id the account was imported with.
    LegacyId(&'a str),
}

impl Store {
    /// Makes `customer_id` a Manager of the account, associating it first if need be. Returns
    /// whether it was one already (nothing changes then) and the revision.
    pub async fn appoint_manager(
        &self,
        actor: &Actor,
        contractor_id: &str,
        customer_id: &str,
    ) -> Result<(bool, Revision)> {
        let txn = self.begin_change().await?;
        lock_account(&txn, contractor_id, Merged::Refuse("appoint the Manager")).await?;
        customer::Entity::find_by_id(customer_id)
            .one(&txn)
            .await?
            .ok_or_else(|| Rule::not_found("customer", customer_id))?;
        let before = grant_of(&txn, contractor_id, customer_id).await?;
        match before {
            Some(grant) if grant.permissions.is_manager() => {
                let revision = current_revision(&txn).await?;
                txn.rollback().await?;
                return Ok((true, revision));
            }
            Some(_) => {
                member::Entity::update_many()
                    .col_expr(
                        member::Column::Permissions,
                        Expr::value(i16::from(PermissionSet::MANAGER.bits())),
                    )
                    .col_expr(
                        member::Column::ExpireTime,
                        Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
                    )
                    .col_expr(member::Column::UpdateTime, Expr::value(now()))
                    .filter(member::Column::ContractorId.eq(contractor_id))
                    .filter(member::Column::CustomerId.eq(customer_id))
                    .exec(&txn)
                    .await?;
            }
            None => {
                insert_membership(&txn, contractor_id, customer_id, PermissionSet::MANAGER).await?;
            }
        }
        let revision = self
            .commit_change(
                txn,
                actor,
                Change {
                    contractor_id: Some(contractor_id),
                    customer_id: Some(customer_id),
                    before: before.map(|grant| grant.permissions),
                    after: Some(PermissionSet::MANAGER),
                    ..Change::of(ChangeKind::ManagerAppointed)
                },
            )
            .await?;
        Ok((false, revision))
    }

    /// A new PIN for an account that nobody has associated with; the old one stops working.
    pub async fn reissue_pin<P>(
        &self,
        actor: &Actor,
        contractor_id: &str,
        mut new_pin: impl FnMut(&str) -> Result<(P, SealedPin)>,
    ) -> Result<(NewPin<P>, Revision)> {
        let txn = self.begin_change().await?;
        let account = lock_account(
            &txn,
            contractor_id,
            Merged::Refuse("reissue the PIN (its PIN is an alias of that account's)"),
        )
        .await?;
        let associates = member::Entity::find()
            .filter(member::Column::ContractorId.eq(contractor_id))
            .count(&txn)
            .await?;
        if associates > 0 {
            return Err(Rule::FailedPrecondition(format!(
                "account {contractor_id} has {associates} associate(s): its Managers rotate its PIN"
            ))
            .into());
        }
        self.commit_new_pin(txn, actor, account, &mut new_pin).await
    }

    /// The accounts that match `query`, merged ones included, oldest first.
    pub async fn search_contractors(
        &self,
        query: ContractorQuery<'_>,
        page: &PageRequest,
    ) -> Result<Page<Contractor>> {
        let condition = match query {
            ContractorQuery::BusinessName(part) => Expr::expr(Func::lower(Expr::col(
                contractor::Column::BusinessName,
            )))
            .like(LikeExpr::new(format!("%{}%", escape_like(&part.to_lowercase()))).escape('\\')),
            ContractorQuery::Email(email) => {
                Expr::expr(Func::lower(Expr::col(contractor::Column::ContactEmail)))
                    .eq(email.to_lowercase())
            }
            ContractorQuery::LegacyId(id) => {
                Expr::col(contractor::Column::LegacyContractorId).eq(id)
            }
        };
        let (rows, next_page_token) = keyset_page(
            &self.db,
            contractor::Entity::find().filter(condition),
            contractor::Column::ContractorId,
            page.after.as_deref(),
            page,
            |c| c.contractor_id.clone(),
        )
        .await?;
        Ok(Page {
            items: rows.into_iter().map(Contractor::from).collect(),
            next_page_token,
        })
    }
}

/// `text` with the `LIKE` wildcards and the escape character escaped.
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::escape_like;

    #[test]
    fn like_wildcards_in_a_search_are_taken_literally() {
        assert_eq!(escape_like("100%_a\\b"), "100\\%\\_a\\\\b");
        assert_eq!(escape_like("Rideau"), "Rideau");
    }
}
