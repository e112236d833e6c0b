//! A fingerprint of the PIN secret the database was set up with, so that a server started
//! with another secret refuses to run instead of failing to find every PIN.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("key_check")
                    .col(integer("id").primary_key())
                    .col(string_len("fingerprint", 64))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("key_check").to_owned())
            .await
    }
}
