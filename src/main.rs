//! `mandate`: the gRPC server (the default), and the operator's commands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mandate::config::Settings;
use mandate::startup::Application;
use tracing_subscriber::EnvFilter;

/// Mandate: may this customer act for this professional/contractor account, with this permission?
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve gRPC (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            EnvFilter::new("info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn")
        }))
        .init();
    let cli = Cli::parse();
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => match Application::build(&cli.settings).await {
            Ok(app) => app.run_until_stopped().await,
            Err(err) => Err(err),
        },
        Command::Migrate => mandate::startup::migrate(&cli.settings).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            ExitCode::FAILURE
        }
    }
}
