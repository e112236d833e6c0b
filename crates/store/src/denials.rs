//! The denied-check trail: checks answered "no", written in batches by the server's recorder
//! (never inside a check). They change nothing, so they take no revision and are not in the
//! change feed.

use chrono::{DateTime, Utc};
use mandate_domain::decision::Reason;
use mandate_domain::permission::Permission;
use sea_orm::{ActiveValue::Set, EntityTrait};

use crate::entity::denied_check;
use crate::{Result, Store};

/// One denied check.
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl Store {
    /// Writes `checks` to the denied-check trail, in one statement.
    pub async fn record_denied_checks(&self, checks: &[DeniedCheck]) -> Result<()> {
        if checks.is_empty() {
            return Ok(());
        }
        denied_check::Entity::insert_many(checks.iter().map(|c| denied_check::ActiveModel {
            time: Set(c.time),
            client: Set(c.client.clone()),
            customer_id: Set(c.customer_id.clone()),
            permission: Set(c.permission.to_string()),
            contractor_id: Set(c.contractor_id.clone()),
            application_id: Set(c.application_id.clone()),
            reason: Set(c.reason.as_str().to_owned()),
            ..Default::default()
        }))
        .exec_without_returning(&self.db)
        .await?;
        Ok(())
    }
}
