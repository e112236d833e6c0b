//! Each client system's bucket of wrong PINs (`ClientPinBudget`), shared by every replica.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("client_pin_tokens")
                    .col(string_len("client", 100).primary_key())
                    // What the bucket held, in thousandths of a token times the window in
                    // milliseconds (so that a refill is exact, however often it is counted),
                    // and when (milliseconds since the Unix epoch).
                    .col(big_integer("credit"))
                    .col(big_integer("updated_ms"))
                    // Whether the last entry found the bucket empty.
                    .col(boolean("refused"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("client_pin_tokens").to_owned())
            .await
    }
}
