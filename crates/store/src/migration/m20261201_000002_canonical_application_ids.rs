//! Application numbers in one form: trimmed, runs of spaces collapsed, in upper case, as
//! `parse_application_id` makes them from now on. A link stored in another form is rewritten;
//! one that becomes a second link of the same account to the same number is removed, since the
//! account already holds it.

use std::collections::HashSet;

use mandate_domain::application::parse_application_id;
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let select = Query::select()
            .columns(["application_id", "contractor_id"])
            .from("application_links")
            .to_owned();
        let mut links = Vec::new();
        for row in manager.get_connection().query_all(&select).await? {
            let application: String = row.try_get("", "application_id")?;
            let contractor: String = row.try_get("", "contractor_id")?;
            links.push((application, contractor));
        }
        let mut held: HashSet<(String, String)> = links.iter().cloned().collect();
        for (application, contractor) in links {
            // A number the new rules refuse (one that grows past 64 characters in upper case)
            // is left as it is.
            let Ok(canonical) = parse_application_id("application_id", &application) else {
                continue;
            };
            if canonical == application {
                continue;
            }
            let this_link = Expr::col("application_id")
                .eq(application.as_str())
                .and(Expr::col("contractor_id").eq(contractor.as_str()));
            if held.insert((canonical.clone(), contractor.clone())) {
                manager
                    .exec_stmt(
                        Query::update()
                            .table("application_links")
                            .value("application_id", canonical)
                            .cond_where(this_link)
                            .to_owned(),
                    )
                    .await?;
            } else {
                manager
                    .exec_stmt(
                        Query::delete()
                            .from_table("application_links")
                            .cond_where(this_link)
                            .to_owned(),
                    )
                    .await?;
            }
            held.remove(&(application, contractor));
        }
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // The forms the numbers were written in are not kept: nothing to undo.
        Ok(())
    }
}
