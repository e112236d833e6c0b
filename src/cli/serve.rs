//! `mandate serve` (the default): the gRPC server, until a signal stops it.

use crate::cli::CliError;
use crate::server::Application;
use crate::settings::Settings;

pub async fn run(settings: &Settings) -> Result<(), CliError> {
    Application::build(settings)
        .await?
        .run_until_stopped()
        .await?;
    Ok(())
}
