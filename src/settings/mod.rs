//! Settings: defaults, then `MANDATE_…`/`DATABASE_URL` environment variables, then flags.

pub mod limits;
pub mod listen;
pub mod report;
pub mod tls;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use mandate_domain::lockout::{ClientPinBudget, PinLockout};
use mandate_domain::membership::ManagerlessPolicy;
use mandate_store::StoreOptions;

use crate::settings::limits::ConnectionLimits;
use crate::settings::listen::HttpListen;
use crate::settings::tls::TlsSettings;

/// How the server is configured.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address to serve gRPC on; port 0 picks a free port.
    #[arg(
        long,
        global = true,
        env = "MANDATE_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: SocketAddr,

    /// Address of the plain-HTTP listener for Prometheus metrics (`/metrics`); `off` serves
    /// none. Port 0 picks a free port.
    #[arg(
        long,
        global = true,
        env = "MANDATE_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    pub metrics_listen: HttpListen,

    /// Address of the plain-HTTP listener for the probes (`/healthz`, `/readyz`), apart from the
    /// metrics so that no scraper can crowd them out; each answer closes its connection. `off`
    /// serves none. Port 0 picks a free port.
    #[arg(
        long,
        global = true,
        env = "MANDATE_PROBE_LISTEN",
        default_value = "127.0.0.1:9465"
    )]
    pub probe_listen: HttpListen,

    /// Address of the HTTP listener: the API as JSON over HTTP/1.1 and HTTP/2 (`/v1/…`), its
    /// OpenAPI document (`/openapi.json`) and gRPC-Web, with the same keys, scopes, limits and
    /// metrics as gRPC. Plain HTTP: keep it on loopback or behind a TLS-terminating proxy.
    /// `off` serves none. Port 0 picks a free port.
    #[arg(
        long,
        global = true,
        env = "MANDATE_HTTP_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub http_listen: HttpListen,

    /// The browser origins (`https://portal.example.org`) allowed to call the HTTP listener
    /// across origins (CORS), separated by commas; none by default, so that no page of
    /// another origin can call it.
    #[arg(
        long,
        global = true,
        env = "MANDATE_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// How the log is written to standard error: `text` (for people), `json` (one object per
    /// line, for log collectors), or `auto`: text on a terminal, JSON otherwise.
    #[arg(long, global = true, env = "MANDATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    /// An OpenTelemetry collector to export each call's span to, over OTLP/gRPC
    /// (`http://collector:4317`); unset, nothing is exported.
    #[arg(long, global = true, env = "MANDATE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Database: `sqlite://FILE?mode=rwc` (created if missing) or `postgres://USER@HOST/DB`.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite://mandate.db?mode=rwc"
    )]
    pub database_url: String,

    /// Secret that keys PIN hashing and encryption: 64 hex characters. Every replica sharing a
    /// database must use the same one. Takes precedence over the secret file.
    #[arg(
        long,
        global = true,
        env = "MANDATE_PIN_SECRET",
        hide_env_values = true
    )]
    pub pin_secret: Option<SecretText>,

    /// File holding the PIN secret; created with a random secret, readable only by its owner,
    /// when missing. Defaults to `<database file>.secret` for a SQLite file.
    #[arg(long, global = true, env = "MANDATE_PIN_SECRET_FILE")]
    pub pin_secret_file: Option<PathBuf>,

    /// Where the first start writes the bootstrap API key (every scope) when the database has
    /// no key yet. Defaults to `<database file>.bootstrap-key` for a SQLite file, and to
    /// `mandate.bootstrap-key` in the working directory otherwise.
    #[arg(long, global = true, env = "MANDATE_BOOTSTRAP_KEY_FILE")]
    pub bootstrap_key_file: Option<PathBuf>,

    /// Whether server reflection (for grpcurl) is served, without a key. Health always is.
    #[arg(long, global = true, env = "MANDATE_REFLECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub reflection: bool,

    /// How many wrong PINs a customer may enter per lockout window; past it, every PIN the
    /// customer enters is refused until the window ends.
    #[arg(long, global = true, env = "MANDATE_PIN_ATTEMPTS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub pin_attempts: u32,

    /// The PIN lockout window, in seconds.
    #[arg(long, global = true, env = "MANDATE_PIN_LOCKOUT_SECS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub pin_lockout_secs: u64,

    /// Wrong PINs entered through one client system, across its customers, in one report window
    /// that make the window's report a warning (PIN guessing across customers).
    #[arg(long, global = true, env = "MANDATE_PIN_FAILURE_ALERT", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub pin_failure_alert: u64,

    /// How often, in seconds, the wrong PINs per client system are logged.
    #[arg(long, global = true, env = "MANDATE_PIN_FAILURE_WINDOW_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub pin_failure_window_secs: u64,

    /// How many wrong PINs the customers of one client system (the portal) may enter between
    /// them per `--client-pin-window-secs`, shared by every replica. Past it, PIN entries of
    /// customers registered less than `--client-pin-standing-hours` ago answer
    /// RESOURCE_EXHAUSTED (with RetryInfo) until the budget refills: guessing spread over fresh
    /// customers is held to this rate.
    #[arg(long, global = true, env = "MANDATE_CLIENT_PIN_FAILURES", default_value_t = 300,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub client_pin_failures: u32,

    /// The window, in seconds, over which a client system's wrong-PIN budget refills.
    #[arg(long, global = true, env = "MANDATE_CLIENT_PIN_WINDOW_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub client_pin_window_secs: u64,

    /// How long, in hours, a customer must have been registered to keep entering PINs while its
    /// client system's wrong-PIN budget is spent (its own lockout still applies).
    #[arg(long, global = true, env = "MANDATE_CLIENT_PIN_STANDING_HOURS", default_value_t = 24,
          value_parser = clap::value_parser!(u64).range(0..=8760))]
    pub client_pin_standing_hours: u64,

    /// How long, in milliseconds, a call waits on the database (for a connection, a lock or an
    /// answer) before answering UNAVAILABLE; also the longest any unary call takes.
    #[arg(long, global = true, env = "MANDATE_DATABASE_WAIT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub database_wait_ms: u64,

    /// The most database connections each server process keeps open (on PostgreSQL, one
    /// listens for the changes committed through other replicas).
    #[arg(long, global = true, env = "MANDATE_DATABASE_POOL_SIZE", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub database_pool_size: u32,

    /// The most grants the check cache keeps in memory (about 110 bytes each), and as many
    /// applications' links and customers' claimed records; 0 turns the cache off.
    #[arg(
        long,
        global = true,
        env = "MANDATE_CACHE_SIZE",
        default_value_t = 1_000_000
    )]
    pub cache_size: usize,

    /// How old, in milliseconds, a cached answer to a check without `at_least_revision` may be.
    /// Past it (while the change tail cannot read the database) checks read through.
    #[arg(long, global = true, env = "MANDATE_CACHE_STALENESS_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub cache_staleness_ms: u64,

    /// The most denied checks waiting to be written to the trail; past it they are dropped
    /// (and counted) rather than slowing checks.
    #[arg(
        long,
        global = true,
        env = "MANDATE_DENIED_CHECK_QUEUE",
        default_value_t = 10_000
    )]
    pub denied_check_queue: usize,

    /// How long, in seconds, identical denied checks (same client system, customer, permission,
    /// account, application and reason) fold into one row of the trail with a count; the row is
    /// written when the window ends. One caller repeating a denied check writes one row per
    /// window.
    #[arg(long, global = true, env = "MANDATE_DENIED_CHECK_WINDOW_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub denied_check_window_secs: u64,

    /// How long, in days, the denied-check trail keeps a row; older rows are deleted in the
    /// background, in small batches, every hour.
    #[arg(long, global = true, env = "MANDATE_DENIED_CHECK_RETENTION_DAYS", default_value_t = 90,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub denied_check_retention_days: u32,

    /// How long, in milliseconds, a new connection may take to start its first call before it
    /// is closed.
    #[arg(long, global = true, env = "MANDATE_HANDSHAKE_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub handshake_timeout_ms: u64,

    /// How long, in milliseconds, a connection may stay open with no call in flight.
    #[arg(long, global = true, env = "MANDATE_IDLE_TIMEOUT_MS", default_value_t = 300_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_ms: u64,

    /// How often, in milliseconds, the server pings a connection (HTTP/2 keep-alive); one that
    /// does not answer within the same time, at most 20 s, is closed as dead.
    #[arg(long, global = true, env = "MANDATE_KEEPALIVE_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub keepalive_ms: u64,

    /// The most client connections open at once; more are closed as they arrive.
    #[arg(long, global = true, env = "MANDATE_MAX_CONNECTIONS", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// The most calls in flight at once, across all connections; past it a call answers
    /// UNAVAILABLE at once rather than queue. Health is not counted.
    #[arg(long, global = true, env = "MANDATE_MAX_CALLS", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_calls: u32,

    /// The most calls (HTTP/2 streams) in flight on one connection.
    #[arg(long, global = true, env = "MANDATE_MAX_STREAMS_PER_CONNECTION", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_connection: u32,

    /// The most `WatchChanges` feeds one client system may hold open at once.
    #[arg(long, global = true, env = "MANDATE_MAX_FEEDS_PER_CLIENT", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_feeds_per_client: u32,

    /// How long, in milliseconds, a stopping server lets calls in flight finish before it cuts
    /// the connections still open and exits.
    #[arg(
        long,
        global = true,
        env = "MANDATE_SHUTDOWN_GRACE_MS",
        default_value_t = 10_000
    )]
    pub shutdown_grace_ms: u64,

    /// What the first customer to associate with an account without a Manager (an imported
    /// legacy account) receives: `manager` (today's behaviour) or `none` (the announced default).
    #[arg(long, global = true, env = "MANDATE_MANAGERLESS_POLICY", value_enum, default_value_t = Policy::Manager)]
    pub managerless_policy: Policy,

    #[command(flatten)]
    pub tls: TlsSettings,
}

/// `file` with `suffix` added to its name (`mandate.db` → `mandate.db.secret`): how the files
/// kept beside a database file are named.
pub fn beside(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// The `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    Auto,
    /// Lines of text, coloured on a terminal unless `NO_COLOR` is set.
    Text,
    /// One JSON object per line.
    Json,
}

/// The `--managerless-policy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Policy {
    /// The first associate becomes Manager with every permission.
    Manager,
    /// The first associate gets no permissions; staff appoint the Manager.
    None,
}

impl From<Policy> for ManagerlessPolicy {
    fn from(policy: Policy) -> Self {
        match policy {
            Policy::Manager => ManagerlessPolicy::FirstAssociateManages,
            Policy::None => ManagerlessPolicy::NoPermissions,
        }
    }
}

/// The PIN secret as configured, checked only when it is used: its parsing never fails, so the
/// argument parser never echoes a malformed secret in an error.
#[derive(Clone)]
pub struct SecretText(String);

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretText(<redacted>)")
    }
}

impl FromStr for SecretText {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

impl SecretText {
    /// The secret, or why it is malformed (without repeating it).
    pub fn secret(&self) -> Result<Secret, String> {
        self.0.parse()
    }
}

/// 32 secret bytes. Neither `Debug` nor an error message ever shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(crate) [u8; 32]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl FromStr for Secret {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes)
            .map_err(|_| "the PIN secret must be 64 hexadecimal characters".to_owned())?;
        Ok(Self(bytes))
    }
}

impl Secret {
    /// A new random secret.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// The secret as the 64 hex characters that `MANDATE_PIN_SECRET` takes.
    pub fn expose_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl Settings {
    /// The store's options.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            managerless_policy: self.managerless_policy.into(),
            database_wait: Duration::from_millis(self.database_wait_ms),
            pool_size: self.database_pool_size,
            cache_size: self.cache_size,
            cache_staleness: Duration::from_millis(self.cache_staleness_ms),
        }
    }

    /// The PIN-guessing lockout.
    pub fn pin_lockout(&self) -> PinLockout {
        PinLockout {
            attempts: self.pin_attempts,
            window: Duration::from_secs(self.pin_lockout_secs),
        }
    }

    /// The wrong-PIN budget of each client system.
    pub fn client_pin_budget(&self) -> ClientPinBudget {
        ClientPinBudget {
            failures: self.client_pin_failures,
            window: Duration::from_secs(self.client_pin_window_secs),
            standing: Duration::from_secs(self.client_pin_standing_hours * 3600),
        }
    }

    /// How client connections are bounded.
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
        }
    }

    /// Where the PIN secret is kept when it is not given itself: the secret file set, or
    /// `<database file>.secret` beside a SQLite file.
    pub fn pin_secret_path(&self) -> Option<PathBuf> {
        if let Some(path) = &self.pin_secret_file {
            return Some(path.clone());
        }
        self.sqlite_file().map(|db| beside(&db, ".secret"))
    }

    /// Where the bootstrap key goes.
    pub fn bootstrap_key_file(&self) -> PathBuf {
        if let Some(file) = &self.bootstrap_key_file {
            return file.clone();
        }
        match self.sqlite_file() {
            Some(db) => beside(&db, ".bootstrap-key"),
            None => PathBuf::from("mandate.bootstrap-key"),
        }
    }

    /// The file of the SQLite database, if the database is a SQLite file.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        mandate_store::sqlite_file(&self.database_url)
    }
}
