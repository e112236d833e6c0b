//! API keys: how they are made, and the verified keys every call is checked against.
//!
//! A key is `mdt_` and 64 hex characters (256 random bits). The database keeps its SHA-256 and
//! its first characters; the key itself is shown once, when it is created. Each server keeps the
//! live keys (not revoked) in memory and reloads them every half second, so a call pays no
//! database read for its key and a revocation or a new key reaches every replica within a
//! second.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mandate_domain::client::Scopes;
use mandate_store::{ApiKey, NewKey, Store};
use sha2::{Digest, Sha256};

/// What every key starts with, so that a leaked key is recognisable (secret scanners).
pub const KEY_PREFIX: &str = "mdt_";
/// How much of a key is stored and shown to tell keys apart.
const SHOWN_PREFIX_LEN: usize = 12;
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

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot generate a key: {0}")]
    Random(getrandom::Error),
    #[error(transparent)]
    Store(#[from] mandate_store::Error),
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
            key_hash: &hash,
            key_prefix: &secret[..SHOWN_PREFIX_LEN],
            expire_time,
        })
        .await?;
    Ok(IssuedKey { secret, record })
}

/// On a database with no key at all, creates one with every scope for the client `bootstrap`
/// and writes it to `file`, readable only by its owner. Returns the key's record when it did.
pub async fn bootstrap(store: &Store, file: &Path) -> Result<Option<ApiKey>, KeyError> {
    let (secret, hash) = generate().map_err(KeyError::Random)?;
    let key = NewKey {
        name: "bootstrap",
        scopes: Scopes::all(),
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

/// A live key in memory.
struct Known {
    digest: [u8; 32],
    client: Client,
    expire_time: Option<DateTime<Utc>>,
}

/// The live keys, by the SHA-256 of the key.
#[derive(Default)]
pub struct KeyRing {
    keys: RwLock<Arc<HashMap<[u8; 32], Known>>>,
}

impl KeyRing {
    /// The client a presented key belongs to, if it is live and unexpired.
    pub fn verify(&self, presented: &str) -> Option<Client> {
        let digest = digest(presented);
        let keys = self
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let known = keys.get(&digest)?;
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

    /// Replaces the live keys with those `store` holds now.
    pub async fn reload(&self, store: &Store) -> Result<usize, mandate_store::Error> {
        let mut live = HashMap::new();
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
            live.insert(
                digest,
                Known {
                    digest,
                    client: Client {
                        name: key.name,
                        scopes: key.scopes,
                    },
                    expire_time: key.expire_time,
                },
            );
        }
        let count = live.len();
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(live);
        Ok(count)
    }
}

/// Whether two byte strings are equal, in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}
