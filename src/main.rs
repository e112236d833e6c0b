//! `mandate`: the gRPC server (the default), and the operator's commands (`src/cli/`).

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};
use mandate::cli::Cli;

/// mimalloc rather than the system allocator: a call allocates and frees dozens of small
/// buffers, and mimalloc's per-thread free lists make that cheaper (BENCHMARKS.md, issue #19).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long a stopping server waits for its last spans to be exported.
const FLUSH_WAIT: Duration = Duration::from_secs(3);

#[tokio::main]
async fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    let telemetry = match mandate::telemetry::start_log(&cli.settings, cli.serves()) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let failed = match cli.run(&matches).await {
        Ok(()) => false,
        Err(err) => {
            tracing::error!("{err}");
            true
        }
    };
    if let Some(telemetry) = telemetry {
        // Off the runtime's workers: they run the export being flushed.
        let flush = tokio::task::spawn_blocking(move || telemetry.shutdown());
        if tokio::time::timeout(FLUSH_WAIT, flush).await.is_err() {
            tracing::warn!("the last spans were not exported in time");
            // The runtime would wait for the flush as it ends: the process ends now instead.
            std::process::exit(i32::from(failed));
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
