//! Settings: defaults, then `MANDATE_…`/`DATABASE_URL` environment variables, then flags.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use mandate_domain::membership::ManagerlessPolicy;
use mandate_store::StoreOptions;

/// How the server is configured.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address to serve gRPC on; port 0 picks a free port.
    #[arg(long, env = "MANDATE_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Database: `sqlite://FILE?mode=rwc` (created if missing) or `postgres://USER@HOST/DB`.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite://mandate.db?mode=rwc"
    )]
    pub database_url: String,

    /// Secret that keys PIN hashing and encryption: 64 hex characters. Every replica sharing a
    /// database must use the same one. Takes precedence over the secret file.
    #[arg(long, env = "MANDATE_PIN_SECRET", hide_env_values = true)]
    pub pin_secret: Option<Secret>,

    /// File holding the PIN secret; created with a random secret, readable only by its owner,
    /// when missing. Defaults to `<database file>.secret` for a SQLite file.
    #[arg(long, env = "MANDATE_PIN_SECRET_FILE")]
    pub pin_secret_file: Option<PathBuf>,

    /// How long, in milliseconds, a call waits for a database connection before answering
    /// UNAVAILABLE.
    #[arg(long, env = "MANDATE_DATABASE_WAIT_MS", default_value_t = 5000)]
    pub database_wait_ms: u64,

    /// What the first customer to associate with an account without a Manager (an imported
    /// legacy account) receives: `manager` (today's behaviour) or `none` (the announced default).
    #[arg(long, env = "MANDATE_MANAGERLESS_POLICY", value_enum, default_value_t = Policy::Manager)]
    pub managerless_policy: Policy,
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
            wait_for_connection: Duration::from_millis(self.database_wait_ms),
        }
    }

    /// The file of the SQLite database, if the database is a SQLite file.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        mandate_store::sqlite_file(&self.database_url)
    }
}
