//! Change notifications: on PostgreSQL, every commit that adds to the audit trail notifies the
//! `mandate_changes` channel, which wakes the change tail of every replica (see `tail`). SQLite
//! has no notifications; its tail hears the commits of its own process and polls.

use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE FUNCTION mandate_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN PERFORM pg_notify('mandate_changes', ''); RETURN NULL; END $$; \
                 CREATE TRIGGER audit_events_notify AFTER INSERT ON audit_events \
                 FOR EACH STATEMENT EXECUTE FUNCTION mandate_notify_change();",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared(
                "DROP TRIGGER audit_events_notify ON audit_events; \
                 DROP FUNCTION mandate_notify_change();",
            )
            .await?;
        Ok(())
    }
}
