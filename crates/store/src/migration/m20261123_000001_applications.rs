//! Applications linked to accounts, and the audit trail's application and expiry columns.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("application_links")
                    .col(string_len("application_id", 64))
                    .col(string_len("contractor_id", 36))
                    .col(timestamp_with_time_zone("link_time"))
                    .primary_key(Index::create().col("application_id").col("contractor_id"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("application_links", "contractor_id")
                            .to("contractors", "contractor_id"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("application_links_by_contractor")
                    .table("application_links")
                    .col("contractor_id")
                    .col("application_id")
                    .to_owned(),
            )
            .await?;
        // One column per statement: SQLite alters one thing at a time.
        manager
            .alter_table(
                Table::alter()
                    .table("audit_events")
                    .add_column(string_len_null("application_id", 64))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("audit_events")
                    .add_column(timestamp_with_time_zone_null("expire_time"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in ["expire_time", "application_id"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("audit_events")
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table("application_links").to_owned())
            .await
    }
}
