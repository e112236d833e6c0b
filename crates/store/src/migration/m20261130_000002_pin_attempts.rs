//! Each customer's PIN attempts in the current lockout window.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("pin_attempts")
                    .col(string_len("customer_id", 36).primary_key())
                    // Milliseconds since the Unix epoch: compared as numbers on both databases.
                    .col(big_integer("window_start_ms"))
                    .col(integer("attempts"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("pin_attempts").to_owned())
            .await
    }
}
