//! The denied-check trail: checks answered "no", identical ones folded into one row with a count,
//! written in batches by the server's recorder (never inside a check) and pruned by age. They
//! change nothing, so they take no revision and are not in the change feed.

use chrono::{DateTime, Utc};
use mandate_domain::decision::Reason;
use mandate_domain::permission::Permission;
use sea_orm::sea_query::Query;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use crate::entity::denied_check;
use crate::{Result, Store};

/// Rows written in one statement at most: 10 values a row keeps a statement far below SQLite's
/// 32 766 variables and PostgreSQL's 65 535 parameters.
const ROWS_PER_STATEMENT: usize = 500;

/// One denied check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeniedCheck {
    pub time: DateTime<Utc>,
    /// The client system that asked.
    pub client: String,
    pub customer_id: String,
    pub permission: Permission,
    pub contractor_id: Option<String>,
    pub application_id: Option<String>,
    pub reason: Reason,
}

/// Identical denied checks, folded: the first (with its time), how many, and when the last was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeniedFold {
    pub first: DeniedCheck,
    pub occurrences: u64,
    pub last_time: DateTime<Utc>,
}

impl Store {
    /// Writes `folds` to the denied-check trail, a row each, in statements of at most
    /// `ROWS_PER_STATEMENT` rows. Each statement stands alone: on an error, the statements before
    /// it are written.
    pub async fn record_denied_checks(&self, folds: &[DeniedFold]) -> Result<()> {
        for chunk in folds.chunks(ROWS_PER_STATEMENT) {
            denied_check::Entity::insert_many(chunk.iter().map(|f| {
                let c = &f.first;
                denied_check::ActiveModel {
                    time: Set(c.time),
                    client: Set(c.client.clone()),
                    customer_id: Set(c.customer_id.clone()),
                    permission: Set(c.permission.to_string()),
                    contractor_id: Set(c.contractor_id.clone()),
                    application_id: Set(c.application_id.clone()),
                    reason: Set(c.reason.as_str().to_owned()),
                    occurrences: Set(i64::try_from(f.occurrences).unwrap_or(i64::MAX)),
                    last_time: Set((f.occurrences > 1).then_some(f.last_time)),
                    ..Default::default()
                }
            }))
            .exec_without_returning(&self.db)
            .await?;
        }
        Ok(())
    }

    /// Deletes up to `limit` rows of the trail whose first denial is older than `before`, in one
    /// short statement; how many it deleted.
    pub async fn prune_denied_checks(&self, before: DateTime<Utc>, limit: u64) -> Result<u64> {
        let oldest = Query::select()
            .column(denied_check::Column::Id)
            .from(denied_check::Entity)
            .and_where(denied_check::Column::Time.lt(before))
            .limit(limit)
            .to_owned();
        let deleted = denied_check::Entity::delete_many()
            .filter(denied_check::Column::Id.in_subquery(oldest))
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected)
    }

    /// How many rows the trail holds.
    pub async fn denied_check_rows(&self) -> Result<u64> {
        Ok(denied_check::Entity::find().count(&self.db).await?)
    }
}
