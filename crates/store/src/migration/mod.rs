//! Schema migrations, as code; applied at start-up and by `mandate migrate`.

use sea_orm_migration::prelude::*;

mod m20261122_000001_initial;
mod m20261123_000001_applications;
mod m20261123_000002_key_check;
mod m20261130_000001_api_keys;
mod m20261130_000002_pin_attempts;
mod m20261201_000001_key_kind;
mod m20261201_000002_canonical_application_ids;
mod m20261201_000003_merges;
mod m20261201_000004_legacy;
mod m20261202_000001_change_notifications;
mod m20261202_000002_denied_checks;
mod m20261203_000001_denied_check_folds;
mod m20261203_000002_client_pin_tokens;

/// Every migration, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_initial::Migration),
            Box::new(m20261123_000001_applications::Migration),
            Box::new(m20261123_000002_key_check::Migration),
            Box::new(m20261130_000001_api_keys::Migration),
            Box::new(m20261130_000002_pin_attempts::Migration),
            Box::new(m20261201_000001_key_kind::Migration),
            Box::new(m20261201_000002_canonical_application_ids::Migration),
            Box::new(m20261201_000003_merges::Migration),
            Box::new(m20261201_000004_legacy::Migration),
            Box::new(m20261202_000001_change_notifications::Migration),
            Box::new(m20261202_000002_denied_checks::Migration),
            Box::new(m20261203_000001_denied_check_folds::Migration),
            Box::new(m20261203_000002_client_pin_tokens::Migration),
        ]
    }
}
