//! The denied-check trail folds identical denials into one row with a count, and is pruned by
//! age: the count and the last time of a fold, and an index on the time for the pruning.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One statement per column: SQLite adds one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table("denied_checks")
                    .add_column(big_integer("occurrences").default(1))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("denied_checks")
                    .add_column(timestamp_with_time_zone_null("last_time"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("denied_checks_by_time")
                    .table("denied_checks")
                    .col("time")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("denied_checks_by_time")
                    .table("denied_checks")
                    .to_owned(),
            )
            .await?;
        for column in ["last_time", "occurrences"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("denied_checks")
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
