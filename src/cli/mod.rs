//! The `mandate` command line: the server (`serve`, the default) and the operator's commands,
//! one file each. Each command's body takes the settings and what its flags say, and answers
//! with a [`CliError`] that names what went wrong; `main` prints it.

mod backup;
mod config;
mod import_legacy;
mod keys;
mod migrate;
mod probe;
mod seed;
mod serve;
mod unlock;

use std::io::IsTerminal;
use std::path::PathBuf;

use chrono::Utc;
use clap::{ArgMatches, Parser, Subcommand};

use crate::credentials::keys::KeyError;
use crate::credentials::vault::SecretError;
use crate::ops::legacy::{ImportError, ImportFiles};
use crate::ops::seed::SeedError;
use crate::server::StartupError;
use crate::settings::Settings;

/// Mandate: may this customer act for this professional/contractor account, with this permission?
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve gRPC (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the effective settings, secrets redacted, and where each came from.
    Config {
        /// Print the reference of every setting instead (docs/configuration.md), in Markdown.
        #[arg(long)]
        reference: bool,
    },
    /// Print the OpenAPI 3.1 document of the HTTP/JSON API (docs/openapi.json), as the server
    /// serves it at `/openapi.json`.
    Openapi,
    /// Ask the running server's readiness probe (`/readyz` on the probe listener): exit 0
    /// when it is ready. For a container's health check, where no HTTP client is installed.
    Probe,
    /// Write a consistent copy of the SQLite database to FILE, and its PIN secret to
    /// FILE.secret (mode 600), while the server runs; restore both together. On PostgreSQL,
    /// use pg_dump and keep the PIN secret with the dump.
    Backup {
        /// The copy to create; it must not exist.
        file: PathBuf,
    },
    /// Manage the API keys of client systems.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Lift a customer's PIN-guessing lockout (a staff operation).
    Unlock {
        /// The customer's id.
        customer_id: String,
    },
    /// Import the previous permit system's export (CSV files, described in
    /// docs/legacy-import.md) and write the new PINs, once, to a mail-merge file. Running it
    /// again adds only what is new.
    ImportLegacy {
        /// Accounts, one per legacy contact.
        #[arg(long)]
        contractors: Option<PathBuf>,
        /// Legacy customer records.
        #[arg(long)]
        customers: Option<PathBuf>,
        /// Applications, with their legacy contact and/or customer.
        #[arg(long)]
        applications: Option<PathBuf>,
        /// The mail-merge file to create (mode 600) with every new PIN; it must not exist.
        #[arg(long)]
        mail_merge: PathBuf,
        /// Import nothing when any row is bad.
        #[arg(long)]
        strict: bool,
        /// Days the one-time customer PINs of this run stay valid.
        #[arg(long, default_value_t = 180, value_parser = clap::value_parser!(u32).range(1..=3650))]
        customer_pin_days: u32,
    },
    /// Write a generated, realistic data set (test data) into an empty database, quickly: the
    /// rows the API would write, with PINs sealed by the configured PIN secret, in one
    /// transaction with one revision and one audit event. Refuses a database that holds
    /// customers or accounts. Described in docs/seed.md.
    Seed {
        /// Customers to register.
        #[arg(long, default_value_t = 1_000_000)]
        customers: usize,
        /// Accounts to register, each with 1 to 3 Managers and 0 to 20 associates.
        #[arg(long, default_value_t = 200_000)]
        contractors: usize,
        /// Applications to link to the accounts.
        #[arg(long, default_value_t = 5_000_000)]
        applications: usize,
        /// Shapes the data the same way on every run (names, memberships, permissions, links);
        /// a random one, printed, by default.
        #[arg(long)]
        seed: Option<u64>,
        /// Where to write mandate-bench's sample (mode 600, it holds PINs): checks with their
        /// expected answers, applications, PINs and Manager/associate pairs. It must not exist.
        #[arg(long)]
        sample: Option<PathBuf>,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server or what it opens (the database, the PIN secret, the listeners).
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("the database failed: {0}")]
    Store(#[from] mandate_store::Error),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Seed(#[from] SeedError),
    /// What the command was asked cannot be done as asked: a flag's value, a missing flag, a
    /// setting the command needs.
    #[error("{0}")]
    Usage(String),
    /// The command did what it was asked, and it failed: the probe found the server not ready,
    /// a file could not be written.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// A flag's value that a domain rule refuses.
    fn rule(err: mandate_domain::Error) -> Self {
        Self::Usage(err.to_string())
    }
}

impl Cli {
    /// Whether the command serves (and so exports its spans, when configured).
    pub fn serves(&self) -> bool {
        matches!(self.command, None | Some(Command::Serve))
    }

    /// Runs the command; `matches` are the parsed arguments `Cli` came from, which say where
    /// each setting came from.
    pub async fn run(self, matches: &ArgMatches) -> Result<(), CliError> {
        let settings = &self.settings;
        match self.command.unwrap_or(Command::Serve) {
            Command::Serve => serve::run(settings).await,
            Command::Migrate => migrate::run(settings).await,
            Command::Config { reference } => {
                config::run(settings, matches, reference);
                Ok(())
            }
            Command::Openapi => {
                let document = crate::gateway::openapi_json().map_err(CliError::Failed)?;
                println!("{document}");
                Ok(())
            }
            Command::Probe => probe::run(settings),
            Command::Backup { file } => backup::run(settings, &file).await,
            Command::Keys { command } => keys::run(settings, command).await,
            Command::Unlock { customer_id } => unlock::run(settings, &customer_id).await,
            Command::ImportLegacy {
                contractors,
                customers,
                applications,
                mail_merge,
                strict,
                customer_pin_days,
            } => {
                let files = ImportFiles {
                    accounts: contractors.as_deref(),
                    customers: customers.as_deref(),
                    applications: applications.as_deref(),
                    mail_merge: &mail_merge,
                    strict,
                    customer_pin_expire_time: Utc::now()
                        + chrono::Duration::days(i64::from(customer_pin_days)),
                };
                import_legacy::run(settings, &files).await
            }
            Command::Seed {
                customers,
                contractors,
                applications,
                seed,
                sample,
            } => {
                seed::run(
                    settings,
                    customers,
                    contractors,
                    applications,
                    seed,
                    sample.as_deref(),
                )
                .await
            }
        }
    }
}

/// On a terminal, one line that counts what a long command has done (`unit`: what it counts,
/// such as `" rows"`, or nothing); in a log or a pipe, nothing.
pub fn progress_line(unit: &'static str) -> impl FnMut(&str, usize, usize) {
    let terminal = std::io::stderr().is_terminal();
    move |stage: &str, done: usize, total: usize| {
        if terminal {
            let percent = (done * 100).checked_div(total).unwrap_or(100);
            eprint!("\r{stage}: {done} of {total}{unit} ({percent}%)\x1b[K");
            if done == total {
                eprintln!();
            }
        }
    }
}
