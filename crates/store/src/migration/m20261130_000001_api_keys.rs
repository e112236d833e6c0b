//! Client systems' API keys, kept only as hashes.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("api_keys")
                    .col(string_len("key_id", 36).primary_key())
                    .col(string_len("name", 64))
                    .col(string_len("scopes", 64))
                    .col(string_len_uniq("key_hash", 64))
                    .col(string_len("key_prefix", 16))
                    .col(timestamp_with_time_zone("create_time"))
                    .col(timestamp_with_time_zone_null("expire_time"))
                    .col(timestamp_with_time_zone_null("revoke_time"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("api_keys").to_owned())
            .await
    }
}
