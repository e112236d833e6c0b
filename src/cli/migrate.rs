//! `mandate migrate`: apply pending database migrations and exit.

use crate::cli::CliError;
use crate::settings::Settings;

pub async fn run(settings: &Settings) -> Result<(), CliError> {
    crate::server::migrate(settings).await?;
    Ok(())
}
