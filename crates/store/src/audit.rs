//! The audit trail: one event per revision, written in the change's transaction.

use chrono::{DateTime, Utc};
use mandate_domain::membership;
use mandate_domain::paging::PageRequest;
use mandate_domain::permission::PermissionSet;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement, Value,
};

use crate::contractors::{permissions_of, stored_permissions};
use crate::entity::{audit_event, contractor};
use crate::merged::{Merged, read_account};
use crate::paging::keyset_page;
use crate::{Actor, AuditEvent, ChangeKind, Error, Page, Result, Revision, Store, Viewer, now};

/// What a revision changed, for whom.
pub(crate) struct Change<'a> {
    pub kind: ChangeKind,
    pub contractor_id: Option<&'a str>,
    pub customer_id: Option<&'a str>,
    pub before: Option<PermissionSet>,
    pub after: Option<PermissionSet>,
    pub expire_time: Option<DateTime<Utc>>,
    pub application_id: Option<&'a str>,
    pub absorbed_contractor_ids: &'a [String],
    /// What a bulk change did, in words.
    pub detail: Option<String>,
}

impl Change<'_> {
    /// A change of `kind` with nothing else said yet.
    pub fn of(kind: ChangeKind) -> Self {
        Self {
            kind,
            contractor_id: None,
            customer_id: None,
            before: None,
            after: None,
            expire_time: None,
            application_id: None,
            absorbed_contractor_ids: &[],
            detail: None,
        }
    }
}

/// Writes the audit event of `revision` in the change's transaction.
/// Takes the next revision in `txn` and records `change` as its audit event; the revision. The
/// counter's row lock, held until `txn` ends, is what puts every writer in line: revisions
/// commit in the order they are taken, without gaps. On PostgreSQL both happen in one
/// statement, so that the lock is held for that statement's round trip and the commit's alone.
pub(crate) async fn record_change(
    txn: &DatabaseTransaction,
    actor: &Actor,
    change: Change<'_>,
) -> Result<Revision> {
    const NEXT: &str = "UPDATE revision_counter SET value = value + 1 WHERE id = 1 RETURNING value";
    let backend = txn.get_database_backend();
    if backend != DbBackend::Postgres {
        let row = txn
            .query_one_raw(Statement::from_string(backend, NEXT))
            .await?
            .ok_or_else(|| Error::Corrupt("the revision counter row is missing".into()))?;
        let revision = row.try_get_by_index(0)?;
        record(txn, revision, actor, change).await?;
        return Ok(revision);
    }
    let bits = |set: PermissionSet| i16::from(set.bits());
    let values: [Value; 12] = [
        now().into(),
        change.kind.as_str().into(),
        actor.customer_id.clone().into(),
        actor.client.clone().into(),
        change.contractor_id.map(str::to_owned).into(),
        change.customer_id.map(str::to_owned).into(),
        change.before.map(bits).into(),
        change.after.map(bits).into(),
        change.application_id.map(str::to_owned).into(),
        change.expire_time.into(),
        absorbed(change.absorbed_contractor_ids).into(),
        change.detail.into(),
    ];
    let sql = format!(
        "WITH next AS ({NEXT}) INSERT INTO audit_events (revision, time, kind, \
         actor_customer_id, actor_client, contractor_id, customer_id, permissions_before, \
         permissions_after, application_id, expire_time, absorbed_contractor_ids, detail) \
         SELECT value, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 FROM next \
         RETURNING revision"
    );
    txn.query_one_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
        .ok_or_else(|| Error::Corrupt("the revision counter row is missing".into()))?
        .try_get_by_index(0)
        .map_err(Error::from)
}

/// The accounts a merge absorbed, as the audit trail stores them.
fn absorbed(ids: &[String]) -> Option<String> {
    (!ids.is_empty()).then(|| ids.join(" "))
}

/// Records `change` as the audit event of `revision`.
async fn record(
    txn: &DatabaseTransaction,
    revision: Revision,
    actor: &Actor,
    change: Change<'_>,
) -> Result<()> {
    let bits = |set: PermissionSet| i16::from(set.bits());
    audit_event::Entity::insert(audit_event::ActiveModel {
        revision: Set(revision),
        time: Set(now()),
        kind: Set(change.kind.as_str().to_owned()),
        actor_customer_id: Set(actor.customer_id.clone()),
        actor_client: Set(actor.client.clone()),
        contractor_id: Set(change.contractor_id.map(str::to_owned)),
        customer_id: Set(change.customer_id.map(str::to_owned)),
        permissions_before: Set(change.before.map(bits)),
        permissions_after: Set(change.after.map(bits)),
        application_id: Set(change.application_id.map(str::to_owned)),
        expire_time: Set(change.expire_time),
        absorbed_contractor_ids: Set(absorbed(change.absorbed_contractor_ids)),
        detail: Set(change.detail),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

impl Store {
    /// An account's audit trail in `[start, end)`, with that of the accounts merged into it,
    /// oldest first; its Managers and staff only.
    /// The page cursor is a revision.
    pub async fn audit_events(
        &self,
        viewer: Viewer<'_>,
        contractor_id: &str,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>> {
        read_account(
            &self.db,
            contractor_id,
            Merged::Refuse("read the audit trail (it includes this account's history)"),
        )
        .await?;
        if let Viewer::Customer(viewer) = viewer {
            membership::require_manager(
                permissions_of(&self.db, contractor_id, viewer).await?,
                "read its audit trail",
            )?;
        }
        // The history of the accounts merged into this one is its history too.
        let mut accounts: Vec<String> = contractor::Entity::find()
            .filter(contractor::Column::MergedInto.eq(contractor_id))
            .select_only()
            .column(contractor::Column::ContractorId)
            .into_tuple()
            .all(&self.db)
            .await?;
        accounts.push(contractor_id.to_owned());
        let mut query =
            audit_event::Entity::find().filter(audit_event::Column::ContractorId.is_in(accounts));
        if let Some(start) = start {
            query = query.filter(audit_event::Column::Time.gte(start));
        }
        if let Some(end) = end {
            query = query.filter(audit_event::Column::Time.lt(end));
        }
        let (rows, next_page_token) = keyset_page(
            &self.db,
            query,
            audit_event::Column::Revision,
            page.after.as_deref().and_then(|t| t.parse::<i64>().ok()),
            page,
            |e| e.revision.to_string(),
        )
        .await?;
        let items: Vec<AuditEvent> = rows
            .into_iter()
            .map(AuditEvent::try_from)
            .collect::<Result<_>>()?;
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// Up to `limit` changes committed after `after`, in revision order. PIN reads are left out:
    /// they change nothing a check depends on.
    pub async fn changes_after(&self, after: Revision, limit: u64) -> Result<Vec<AuditEvent>> {
        self.events_after(after, limit, false).await
    }

    /// Up to `limit` audit events after `after`, in revision order, PIN reads with them or not.
    pub(crate) async fn events_after(
        &self,
        after: Revision,
        limit: u64,
        with_pin_reads: bool,
    ) -> Result<Vec<AuditEvent>> {
        let mut events =
            audit_event::Entity::find().filter(audit_event::Column::Revision.gt(after));
        if !with_pin_reads {
            events = events.filter(audit_event::Column::Kind.ne(ChangeKind::PinRead.as_str()));
        }
        events
            .order_by_asc(audit_event::Column::Revision)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(AuditEvent::try_from)
            .collect()
    }
}

impl TryFrom<audit_event::Model> for AuditEvent {
    type Error = Error;

    fn try_from(m: audit_event::Model) -> Result<Self> {
        let kind = ChangeKind::parse(&m.kind).ok_or_else(|| {
            Error::Corrupt(format!(
                "audit event {} has unknown kind {:?}",
                m.revision, m.kind
            ))
        })?;
        Ok(Self {
            revision: m.revision,
            time: m.time,
            kind,
            actor: Actor {
                customer_id: m.actor_customer_id,
                client: m.actor_client,
            },
            contractor_id: m.contractor_id,
            customer_id: m.customer_id,
            permissions_before: m.permissions_before.map(stored_permissions),
            permissions_after: m.permissions_after.map(stored_permissions),
            expire_time: m.expire_time,
            application_id: m.application_id,
            absorbed_contractor_ids: m
                .absorbed_contractor_ids
                .map(|ids| ids.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            detail: m.detail,
        })
    }
}
