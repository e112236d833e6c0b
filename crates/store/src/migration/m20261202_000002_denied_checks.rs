//! The denied-check trail: every check answered "no", recorded off the check's path in batches.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("denied_checks")
                    .col(big_pk_auto("id"))
                    .col(timestamp_with_time_zone("time"))
                    .col(string_len("client", 100))
                    .col(string_len("customer_id", 36))
                    .col(string_len("permission", 20))
                    .col(string_len_null("contractor_id", 36))
                    .col(string_len_null("application_id", 100))
                    .col(string_len("reason", 40))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("denied_checks_by_contractor")
                    .table("denied_checks")
                    .col("contractor_id")
                    .col("time")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("denied_checks").to_owned())
            .await
    }
}
