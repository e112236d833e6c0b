//! `mandate keys`: create, list and revoke the API keys (and client certificates) of client
//! systems.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use mandate_domain::client::{Scope, Scopes, parse_client_name};

use crate::cli::CliError;
use crate::settings::Settings;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
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

/// `mandate keys …`.
pub async fn run(settings: &Settings, command: KeysCommand) -> Result<(), CliError> {
    let store = crate::server::open_store(settings).await?;
    match command {
        KeysCommand::Create {
            name,
            scopes,
            expires,
            certificate,
        } => {
            let name = parse_client_name("--name", &name).map_err(CliError::rule)?;
            let scopes = scopes
                .iter()
                .map(|scope| Scope::parse("--scope", scope))
                .collect::<Result<Scopes, _>>()
                .map_err(CliError::rule)?;
            let expire_time = expires
                .map(|text| {
                    DateTime::parse_from_rfc3339(&text)
                        .map(|time| time.with_timezone(&Utc))
                        .map_err(|err| {
                            CliError::Usage(format!("--expires must be an RFC 3339 time: {err}"))
                        })
                })
                .transpose()?;
            if let Some(pem) = certificate {
                let record = crate::credentials::keys::register_certificate(
                    &store,
                    &name,
                    scopes,
                    expire_time,
                    &pem,
                )
                .await?;
                eprintln!(
                    "registered certificate {} ({}…) for client `{name}` with scopes {scopes}",
                    record.key_id, record.key_prefix
                );
                return Ok(());
            }
            let issued =
                crate::credentials::keys::create(&store, &name, scopes, expire_time).await?;
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
