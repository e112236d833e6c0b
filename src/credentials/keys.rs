//! Client credentials: how API keys are made and client certificates registered, and the live
//! credentials every call is checked against.
//!
//! A key is `mdt_` and 64 hex characters (256 random bits). The database keeps its SHA-256 and
//! its first characters; the key itself is shown once, when it is created. A client certificate
//! (mutual TLS) is registered by its SHA-256 fingerprint. Each server keeps the live credentials
//! (not revoked) in memory and reloads them every half second, so a call pays no database read
//! for its credential and a revocation or a new credential reaches every replica within a
//! second. The same ring says whether the credential a stream was opened with still holds
//! ([`KeyRing::holds`], asked at each reload): a revoked or expired credential ends the streams
//! it opened within the same bound.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mandate_domain::client::Scopes;
use mandate_store::{ApiKey, KeyKind, NewKey, Store};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// What every key starts with, so that a leaked key is recognisable (secret scanners).
pub const KEY_PREFIX: &str = "mdt_";
/// How much of a key is stored and shown to tell keys apart.
const SHOWN_PREFIX_LEN: usize = 12;
/// How a certificate's fingerprint is shown; the stored prefix is this and 9 hex digits.
pub const FINGERPRINT_PREFIX: &str = "sha256:";
/// How often every server reloads the live keys: the bound on a revocation's delay is this plus
/// one database read.
pub const KEY_RELOAD: Duration = Duration::from_millis(500);

/// A new key, shown once.
pub struct IssuedKey {
    /// The key itself: give it to the client system; it is not stored.
    pub secret: String,
    pub record: ApiKey,
}

/// The client system behind a call, as its key says; in each authenticated call's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub name: String,
    pub scopes: Scopes,
    /// The credential the call presented, to ask later whether it still holds.
    pub credential: Credential,
}

/// Which credential a call presented: a key, by its SHA-256, or a client certificate, by its
/// fingerprint. Its `Debug` names the kind alone.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    Key([u8; 32]),
    Certificate([u8; 32]),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::Key(_) => "Key",
            Credential::Certificate(_) => "Certificate",
        })
    }
}

/// A random key, and the hex SHA-256 it is stored as.
fn generate() -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let secret = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    let hash = hex::encode(digest(&secret));
    Ok((secret, hash))
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The SHA-256 fingerprint of a DER-encoded certificate.
pub fn fingerprint(certificate: &[u8]) -> [u8; 32] {
    Sha256::digest(certificate).into()
}

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot generate a key: {0}")]
    Random(getrandom::Error),
    #[error(transparent)]
    Store(#[from] mandate_store::Error),
    #[error("{0}")]
    Certificate(String),
    #[error("cannot write the key file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

/// Creates a key for the client system `name` with `scopes`.
pub async fn create(
    store: &Store,
    name: &str,
    scopes: Scopes,
    expire_time: Option<DateTime<Utc>>,
) -> Result<IssuedKey, KeyError> {
    let (secret, hash) = generate().map_err(KeyError::Random)?;
    let record = store
        .create_key(&NewKey {
            name,
            scopes,
            kind: KeyKind::Key,
            key_hash: &hash,
            key_prefix: &secret[..SHOWN_PREFIX_LEN],
            expire_time,
        })
        .await?;
    Ok(IssuedKey { secret, record })
}

/// Registers the client certificate in the PEM file `pem` for the client system `name` with
/// `scopes`: a client presenting it in a mutual-TLS handshake needs no key. The certificate
/// itself is not stored, only its fingerprint.
pub async fn register_certificate(
    store: &Store,
    name: &str,
    scopes: Scopes,
    expire_time: Option<DateTime<Utc>>,
    pem: &Path,
) -> Result<ApiKey, KeyError> {
    let certificate = CertificateDer::from_pem_file(pem).map_err(|err| {
        KeyError::Certificate(format!(
            "cannot read a PEM certificate from {}: {err}",
            pem.display()
        ))
    })?;
    let hash = hex::encode(fingerprint(&certificate));
    let shown = format!("{FINGERPRINT_PREFIX}{}", &hash[..9]);
    Ok(store
        .create_key(&NewKey {
            name,
            scopes,
            kind: KeyKind::Certificate,
            key_hash: &hash,
            key_prefix: &shown,
            expire_time,
        })
        .await?)
}

/// On a database with no key at all, creates one with every scope for the client `bootstrap`
/// and writes it to `file`, readable only by its owner. Returns the key's record when it did.
pub async fn bootstrap(store: &Store, file: &Path) -> Result<Option<ApiKey>, KeyError> {
    let (secret, hash) = generate().map_err(KeyError::Random)?;
    let key = NewKey {
        name: "bootstrap",
        scopes: Scopes::all(),
        kind: KeyKind::Key,
        key_hash: &hash,
        key_prefix: &secret[..SHOWN_PREFIX_LEN],
        expire_time: None,
    };
    let Some(record) = store.create_first_key(&key).await? else {
        return Ok(None);
    };
    let failure = |source| KeyError::File {
        path: file.display().to_string(),
        source,
    };
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .map_err(failure)?;
    writeln!(out, "{secret}").map_err(failure)?;
    out.sync_all().map_err(failure)?;
    Ok(Some(record))
}

/// A live credential in memory.
struct Known {
    digest: [u8; 32],
    client: Client,
    expire_time: Option<DateTime<Utc>>,
}

/// The live credentials: keys by the SHA-256 of the key, certificates by their fingerprint.
#[derive(Default)]
struct Live {
    keys: HashMap<[u8; 32], Known>,
    certificates: HashMap<[u8; 32], Known>,
}

/// The live credentials, as last loaded.
pub struct KeyRing {
    live: RwLock<Arc<Live>>,
    /// Counts the reloads (and the reloads tried), for the streams that recheck their
    /// credential at each.
    reloads: watch::Sender<u64>,
}

impl Default for KeyRing {
    fn default() -> Self {
        Self {
            live: RwLock::default(),
            reloads: watch::Sender::new(0),
        }
    }
}

impl KeyRing {
    /// Whether the credential `client` was authenticated with is still live and unexpired.
    pub fn holds(&self, client: &Client) -> bool {
        match client.credential {
            Credential::Key(digest) => self.find(digest, |live| &live.keys),
            Credential::Certificate(digest) => self.find(digest, |live| &live.certificates),
        }
        .is_some()
    }

    /// Changes at every reload, and at every reload tried while the database is away (expiry
    /// still counts then).
    pub fn reloads(&self) -> watch::Receiver<u64> {
        self.reloads.subscribe()
    }

    /// Tells the streams that a reload was tried: they ask again whether their credential holds.
    pub fn announce(&self) {
        self.reloads
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    /// The client a presented key belongs to, if it is live and unexpired.
    pub fn verify(&self, presented: &str) -> Option<Client> {
        self.find(digest(presented), |live| &live.keys)
    }

    /// The client a DER-encoded client certificate (already verified by the TLS handshake)
    /// stands for, if it is registered, live and unexpired.
    pub fn verify_certificate(&self, certificate: &[u8]) -> Option<Client> {
        self.find(fingerprint(certificate), |live| &live.certificates)
    }

    fn find(
        &self,
        digest: [u8; 32],
        table: impl FnOnce(&Live) -> &HashMap<[u8; 32], Known>,
    ) -> Option<Client> {
        let live = self
            .live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let known = table(&live).get(&digest)?;
        // The map found it by its digest; compare the whole digest again in constant time, so
        // that no answer depends on how much of a guess was right.
        if !constant_time_eq(&known.digest, &digest) {
            return None;
        }
        if known.expire_time.is_some_and(|expiry| expiry <= Utc::now()) {
            return None;
        }
        Some(known.client.clone())
    }

    /// Replaces the live credentials with those `store` holds now; returns how many there are.
    pub async fn reload(&self, store: &Store) -> Result<usize, mandate_store::Error> {
        let mut live = Live::default();
        for key in store.within(store.keys()).await? {
            if key.revoke_time.is_some() {
                continue;
            }
            let Some(digest) = hex::decode(&key.key_hash)
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            else {
                tracing::error!(key_id = %key.key_id, "a stored key hash is malformed; ignored");
                continue;
            };
            let (table, credential) = match key.kind {
                KeyKind::Key => (&mut live.keys, Credential::Key(digest)),
                KeyKind::Certificate => (&mut live.certificates, Credential::Certificate(digest)),
            };
            table.insert(
                digest,
                Known {
                    digest,
                    client: Client {
                        name: key.name,
                        scopes: key.scopes,
                        credential,
                    },
                    expire_time: key.expire_time,
                },
            );
        }
        let count = live.keys.len() + live.certificates.len();
        *self.live.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(live);
        self.announce();
        Ok(count)
    }
}

/// Whether two byte strings are equal, in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}
