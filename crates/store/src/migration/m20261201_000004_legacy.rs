//! The previous permit system's records: each imported account's legacy id, the legacy customer
//! records with their one-time customer PINs, the applications of those records, and a detail
//! column in the audit trail for what an import run added.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("contractors")
                    .add_column(string_len_null("legacy_contractor_id", 64))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("contractors_by_legacy_id")
                    .table("contractors")
                    .col("legacy_contractor_id")
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("audit_events")
                    .add_column(text_null("detail"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("legacy_customers")
                    .col(string_len("legacy_customer_id", 64).primary_key())
                    .col(string_len("display_name", 200))
                    .col(string_len("email", 254))
                    .col(string_len_uniq("pin_hash", 64))
                    .col(timestamp_with_time_zone("pin_expire_time"))
                    .col(string_len_null("customer_id", 36).unique_key())
                    .col(timestamp_with_time_zone_null("link_time"))
                    .col(timestamp_with_time_zone("import_time"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("legacy_customers", "customer_id")
                            .to("customers", "customer_id"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("legacy_applications")
                    .col(string_len("application_id", 64))
                    .col(string_len("legacy_customer_id", 64))
                    .primary_key(
                        Index::create()
                            .col("application_id")
                            .col("legacy_customer_id"),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from("legacy_applications", "legacy_customer_id")
                            .to("legacy_customers", "legacy_customer_id"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("legacy_applications_by_record")
                    .table("legacy_applications")
                    .col("legacy_customer_id")
                    .col("application_id")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["legacy_applications", "legacy_customers"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table("audit_events")
                    .drop_column("detail")
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("contractors_by_legacy_id")
                    .table("contractors")
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("contractors")
                    .drop_column("legacy_contractor_id")
                    .to_owned(),
            )
            .await
    }
}
