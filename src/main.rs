//! `mandate`: the gRPC server (the default), and the operator's commands.

use std::io::{IsTerminal, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use mandate::config::{LogFormat, Settings};
use mandate::legacy::ImportFiles;
use mandate::metrics::HttpListen;
use mandate::startup::{Application, StartupError};
use mandate::telemetry::Telemetry;
use mandate_domain::client::{Scope, Scopes, parse_client_name};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

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
    /// Print the effective settings, secrets redacted, and where each came from.
    Config {
        /// Print the reference of every setting instead (docs/configuration.md), in Markdown.
        #[arg(long)]
        reference: bool,
    },
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
        command: KeysCommand,
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

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key for a client system and print it, once: it is stored only as a hash. With
    /// `--certificate`, register the client system's TLS client certificate instead.
    Create {
        /// The client system, as the audit trail will name it (`payments`, `staff-console`).
        #[arg(long)]
        name: String,
        /// What the key may do: portal, check, records, staff. Repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// When the key stops working, as an RFC 3339 time (`2027-06-30T00:00:00Z`).
        #[arg(long)]
        expires: Option<String>,
        /// A client certificate, as PEM, that stands for the client system over mutual TLS
        /// (`--tls-client-ca`): no key is made; the certificate's fingerprint is recorded.
        #[arg(long)]
        certificate: Option<PathBuf>,
    },
    /// List every key and certificate (never the keys themselves): id, client, scopes, kind,
    /// prefix or fingerprint, times.
    List,
    /// Revoke a key: every server refuses it within a second.
    Revoke {
        /// The key's id, as `keys list` shows it.
        key_id: String,
    },
}

/// Starts the log, on standard error: standard output is for what a command prints, such as
/// a new key. With `--otlp-endpoint`, spans also go to that collector; the pipeline returned is
/// to be shut down at the end.
fn start_log(settings: &Settings, serving: bool) -> Result<Option<Telemetry>, String> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn"));
    let terminal = std::io::stderr().is_terminal();
    let json = match settings.log_format {
        LogFormat::Auto => !terminal,
        LogFormat::Text => false,
        LogFormat::Json => true,
    };
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = if json {
        lines
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        // Colour only on a terminal, and not when `NO_COLOR` asks for none (no-color.org).
        let colour = terminal && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
        lines.with_ansi(colour).boxed()
    };
    // Only a serving process exports: `mandate probe`, run every few seconds by a container's
    // health check, and the other commands have no calls to trace.
    let (export, telemetry) = match settings.otlp_endpoint.as_ref().filter(|_| serving) {
        Some(endpoint) => {
            let (layer, telemetry) = mandate::telemetry::otlp_layer(endpoint)?;
            (Some(layer), Some(telemetry))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .with(export)
        .init();
    Ok(telemetry)
}

#[tokio::main]
async fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    let serving = matches!(cli.command, None | Some(Command::Serve));
    let telemetry = match start_log(&cli.settings, serving) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => match Application::build(&cli.settings).await {
            Ok(app) => app.run_until_stopped().await,
            Err(err) => Err(err),
        },
        Command::Migrate => mandate::startup::migrate(&cli.settings).await,
        Command::Config { reference } => {
            let command = Cli::command();
            if reference {
                print!("{}", mandate::config_report::reference(&command));
            } else {
                print!(
                    "{}",
                    mandate::config_report::effective(&command, &matches, &cli.settings)
                );
            }
            Ok(())
        }
        Command::Probe => probe(&cli.settings),
        Command::Backup { file } => backup(&cli.settings, &file).await,
        Command::Keys { command } => keys(&cli.settings, command).await,
        Command::Unlock { customer_id } => unlock(&cli.settings, &customer_id).await,
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
            import_legacy(&cli.settings, &files).await
        }
        Command::Seed {
            customers,
            contractors,
            applications,
            seed,
            sample,
        } => {
            seed_database(
                &cli.settings,
                customers,
                contractors,
                applications,
                seed,
                sample.as_deref(),
            )
            .await
        }
    };
    let failed = match outcome {
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

/// `mandate keys …`.
async fn keys(settings: &Settings, command: KeysCommand) -> Result<(), StartupError> {
    let store = mandate::startup::open_store(settings).await?;
    match command {
        KeysCommand::Create {
            name,
            scopes,
            expires,
            certificate,
        } => {
            let name = parse_client_name("--name", &name).map_err(invalid)?;
            let scopes = scopes
                .iter()
                .map(|scope| Scope::parse("--scope", scope))
                .collect::<Result<Scopes, _>>()
                .map_err(invalid)?;
            let expire_time = expires
                .map(|text| {
                    DateTime::parse_from_rfc3339(&text)
                        .map(|time| time.with_timezone(&Utc))
                        .map_err(|err| {
                            StartupError::Invalid(format!(
                                "--expires must be an RFC 3339 time: {err}"
                            ))
                        })
                })
                .transpose()?;
            if let Some(pem) = certificate {
                let record =
                    mandate::keys::register_certificate(&store, &name, scopes, expire_time, &pem)
                        .await?;
                eprintln!(
                    "registered certificate {} ({}…) for client `{name}` with scopes {scopes}",
                    record.key_id, record.key_prefix
                );
                return Ok(());
            }
            let issued = mandate::keys::create(&store, &name, scopes, expire_time).await?;
            eprintln!(
                "created key {} for client `{name}` with scopes {scopes}; it is shown once, here:",
                issued.record.key_id
            );
            println!("{}", issued.secret);
        }
        KeysCommand::List => {
            println!(
                "{:<36}  {:<20}  {:<26}  {:<11}  {:<16}  {:<20}  {:<20}  revoked",
                "key id", "client", "scopes", "kind", "prefix", "created", "expires"
            );
            let time = |t: Option<DateTime<Utc>>| {
                t.map_or_else(
                    || "-".to_owned(),
                    |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                )
            };
            for key in store.keys().await? {
                println!(
                    "{:<36}  {:<20}  {:<26}  {:<11}  {:<16}  {:<20}  {:<20}  {}",
                    key.key_id,
                    key.name,
                    key.scopes.to_string(),
                    key.kind.as_str(),
                    key.key_prefix,
                    time(Some(key.create_time)),
                    time(key.expire_time),
                    time(key.revoke_time)
                );
            }
        }
        KeysCommand::Revoke { key_id } => {
            let key = store.revoke_key(key_id.trim()).await?;
            eprintln!(
                "revoked key {} of client `{}`: every server refuses it within a second",
                key.key_id, key.name
            );
        }
    }
    Ok(())
}

/// `mandate import-legacy …`.
async fn import_legacy(settings: &Settings, files: &ImportFiles<'_>) -> Result<(), StartupError> {
    if files.accounts.is_none() && files.customers.is_none() && files.applications.is_none() {
        return Err(StartupError::Invalid(
            "name at least one of --contractors, --customers and --applications".into(),
        ));
    }
    let store = mandate::startup::open_store(settings).await?;
    let vault = mandate::startup::open_vault(settings, &store).await?;
    // On a terminal, one line that counts the rows done; in a log or a pipe, nothing.
    let terminal = std::io::stderr().is_terminal();
    let mut progress = |stage: &str, done: usize, total: usize| {
        if terminal {
            let percent = (done * 100).checked_div(total).unwrap_or(100);
            eprint!("\r{stage}: {done} of {total} rows ({percent}%)\x1b[K");
            if done == total {
                eprintln!();
            }
        }
    };
    let summary = mandate::legacy::import(&store, &vault, files, &mut progress)
        .await
        .map_err(|err| StartupError::Invalid(err.to_string()))?;
    for bad in &summary.bad {
        eprintln!("{}:{}: {}", bad.file, bad.line, bad.reason);
    }
    if summary.refused {
        return Err(StartupError::Invalid(format!(
            "--strict: {} bad row(s); nothing was imported",
            summary.bad.len()
        )));
    }
    println!(
        "accounts: {} added, {} there already\n\
         legacy customer records: {} added, {} there already\n\
         application links: {} added, {} there already\n\
         bad rows: {}",
        summary.accounts_added,
        summary.accounts_existing,
        summary.customers_added,
        summary.customers_existing,
        summary.links_added,
        summary.links_existing,
        summary.bad.len()
    );
    match (summary.mail_merge_written, summary.revision) {
        (true, Some(revision)) => println!(
            "new PINs written to {} (mode 600); revision {revision}",
            files.mail_merge.display()
        ),
        (false, Some(revision)) => println!("no new PINs; revision {revision}"),
        (_, None) => println!("nothing new: nothing changed"),
    }
    Ok(())
}

/// On a terminal, one line that counts what a long command has done; in a log or a pipe,
/// nothing.
fn progress_line() -> impl FnMut(&str, usize, usize) {
    let terminal = std::io::stderr().is_terminal();
    move |stage: &str, done: usize, total: usize| {
        if terminal {
            let percent = (done * 100).checked_div(total).unwrap_or(100);
            eprint!("\r{stage}: {done} of {total} ({percent}%)\x1b[K");
            if done == total {
                eprintln!();
            }
        }
    }
}

/// `mandate seed …`.
async fn seed_database(
    settings: &Settings,
    customers: usize,
    contractors: usize,
    applications: usize,
    seed: Option<u64>,
    sample: Option<&std::path::Path>,
) -> Result<(), StartupError> {
    let seed = match seed {
        Some(seed) => seed,
        None => {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes)
                .map_err(|err| StartupError::Invalid(format!("no random seed: {err}")))?;
            u64::from_le_bytes(bytes)
        }
    };
    let store = mandate::startup::open_store(settings).await?;
    let vault = mandate::startup::open_vault(settings, &store).await?;
    let started = std::time::Instant::now();
    let options = mandate::seed::SeedOptions {
        customers,
        contractors,
        applications,
        seed,
        sample,
    };
    let mut progress = progress_line();
    let summary = mandate::seed::seed(&store, &vault, &options, &mut progress)
        .await
        .map_err(|err| StartupError::Invalid(err.to_string()))?;
    let counts = summary.counts;
    println!(
        "seeded {} customers, {} accounts, {} memberships, {} application links in {:.1} s \
         (seed {seed}); revision {}",
        counts.customers,
        counts.contractors,
        counts.memberships,
        counts.links,
        started.elapsed().as_secs_f64(),
        summary.revision
    );
    if let (Some(path), Some(entries)) = (sample, summary.sample_entries) {
        println!(
            "benchmark sample: {entries} entries in {} (mode 600: it holds PINs)",
            path.display()
        );
    }
    Ok(())
}

/// `mandate unlock CUSTOMER_ID`.
async fn unlock(settings: &Settings, customer_id: &str) -> Result<(), StartupError> {
    let store = mandate::startup::open_store(settings).await?;
    let customer_id = customer_id.trim();
    let actor = mandate_store::Actor {
        customer_id: None,
        client: "mandate-cli".to_owned(),
    };
    if store
        .clear_pin_lockout(&actor, customer_id, settings.pin_lockout())
        .await?
        .0
    {
        eprintln!("lifted the PIN lockout of customer {customer_id}");
    } else {
        eprintln!("customer {customer_id} had no PIN attempts to forget");
    }
    Ok(())
}

/// `mandate probe`: `GET /readyz` on the probe listener, over plain HTTP/1.1.
fn probe(settings: &Settings) -> Result<(), StartupError> {
    let HttpListen::At(mut address) = settings.probe_listen else {
        return Err(StartupError::Invalid(
            "the probe asks the probe listener, and MANDATE_PROBE_LISTEN is off".into(),
        ));
    };
    // A server listening on every interface answers on loopback.
    if address.ip().is_unspecified() {
        address.set_ip(match address {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    let failed = |err: std::io::Error| {
        StartupError::Invalid(format!("the probe could not ask {address}: {err}"))
    };
    let mut stream = TcpStream::connect_timeout(&address, PROBE_TIMEOUT).map_err(failed)?;
    stream
        .set_read_timeout(Some(PROBE_TIMEOUT))
        .map_err(failed)?;
    stream
        .set_write_timeout(Some(PROBE_TIMEOUT))
        .map_err(failed)?;
    write!(
        stream,
        "GET /readyz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .map_err(failed)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(failed)?;
    let status = answer.lines().next().unwrap_or_default();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
    if status.split_whitespace().nth(1) == Some("200") {
        println!("{body}");
        Ok(())
    } else {
        Err(StartupError::Invalid(format!(
            "not ready: {status}: {body}"
        )))
    }
}

/// How long a stopping server waits for its last spans to be exported.
const FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// How long `mandate probe` waits for the server.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// `mandate backup FILE`.
async fn backup(settings: &Settings, file: &std::path::Path) -> Result<(), StartupError> {
    let Some(database) = settings.sqlite_file() else {
        return Err(StartupError::Invalid(
            "mandate backup copies a SQLite database; back PostgreSQL up with pg_dump (or your \
             service's backups), and keep the PIN secret with the dump"
                .into(),
        ));
    };
    // Nothing is created or migrated here: a backup run against the wrong file must not make
    // an empty database and a new secret, and report success.
    if !database.exists() {
        return Err(StartupError::Invalid(format!(
            "there is no SQLite database at {}: nothing to back up (check DATABASE_URL and the \
             working directory)",
            database.display()
        )));
    }
    if settings.pin_secret.is_none()
        && let Some(path) = settings.pin_secret_path()
        && !path.exists()
    {
        return Err(StartupError::Invalid(format!(
            "the PIN secret file {} is missing: a copy without its secret could not be read",
            path.display()
        )));
    }
    let secret_file = mandate::config::beside(file, ".secret");
    for path in [file, &secret_file] {
        if path.exists() {
            return Err(StartupError::Invalid(format!(
                "{} exists: name a new file",
                path.display()
            )));
        }
    }
    let secret = mandate::secrets::load_secret(settings)?;
    let store = mandate::startup::open_unmigrated(settings).await?;
    // Only the secret this database was set up with is worth keeping beside the copy.
    mandate::startup::open_vault(settings, &store).await?;
    if let Some(copied) = store.backup_into(file).await {
        copied?;
    }
    // The copy holds what the database does: readable by its owner only, like the secret.
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).map_err(|err| {
        StartupError::Invalid(format!("cannot make {} private: {err}", file.display()))
    })?;
    mandate::secrets::write_private(&secret_file, &secret).map_err(|err| {
        StartupError::Invalid(format!(
            "the database was copied to {}, but its PIN secret could not be written to {}: {err}",
            file.display(),
            secret_file.display()
        ))
    })?;
    println!(
        "copied the database to {} and its PIN secret to {} (both mode 600); to restore, put \
         both back in place of the database and its secret file, with the server stopped",
        file.display(),
        secret_file.display()
    );
    Ok(())
}

fn invalid(err: mandate_domain::Error) -> StartupError {
    StartupError::Invalid(err.to_string())
}
