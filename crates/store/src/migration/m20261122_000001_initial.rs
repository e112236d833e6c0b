//! Customers, contractor accounts, memberships, the revision counter and the audit trail.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("revision_counter")
                    .col(integer("id").primary_key())
                    .col(big_integer("value"))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table("revision_counter")
                    .columns(["id", "value"])
                    .values_panic([1.into(), 0i64.into()])
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("customers")
                    .col(string_len("customer_id", 36).primary_key())
                    .col(string_len_uniq("external_subject", 255))
                    .col(string_len("display_name", 200))
                    .col(string_len("email", 254))
                    .col(timestamp_with_time_zone("create_time"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("contractors")
                    .col(string_len("contractor_id", 36).primary_key())
                    .col(string_len("business_name", 200))
                    .col(string_len("contact_name", 200))
                    .col(string_len("contact_phone", 30))
                    .col(string_len("contact_email", 254))
                    .col(string_len("street", 200))
                    .col(string_len("city", 200))
                    .col(string_len("province", 100))
                    .col(string_len("postal_code", 20))
                    .col(string_len("country", 2))
                    .col(string_len_uniq("pin_hash", 64))
                    .col(blob("pin_ciphertext"))
                    .col(string_len_null("merged_into", 36))
                    .col(timestamp_with_time_zone("create_time"))
                    .col(timestamp_with_time_zone("update_time"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("memberships")
                    .col(string_len("contractor_id", 36))
                    .col(string_len("customer_id", 36))
                    .col(small_integer("permissions"))
                    .col(timestamp_with_time_zone_null("expire_time"))
                    .col(timestamp_with_time_zone("associate_time"))
                    .col(timestamp_with_time_zone("update_time"))
                    .primary_key(Index::create().col("contractor_id").col("customer_id"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("memberships", "contractor_id")
                            .to("contractors", "contractor_id"),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from("memberships", "customer_id")
                            .to("customers", "customer_id"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("memberships_by_customer")
                    .table("memberships")
                    .col("customer_id")
                    .col("contractor_id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("audit_events")
                    .col(big_integer("revision").primary_key())
                    .col(timestamp_with_time_zone("time"))
                    .col(string_len("kind", 40))
                    .col(string_len_null("actor_customer_id", 36))
                    .col(string_len("actor_client", 100))
                    .col(string_len_null("contractor_id", 36))
                    .col(string_len_null("customer_id", 36))
                    .col(small_integer_null("permissions_before"))
                    .col(small_integer_null("permissions_after"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("audit_events_by_contractor")
                    .table("audit_events")
                    .col("contractor_id")
                    .col("revision")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "audit_events",
            "memberships",
            "contractors",
            "customers",
            "revision_counter",
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
