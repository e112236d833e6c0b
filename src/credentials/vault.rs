//! PINs at rest: a keyed hash to find an account by its PIN, and an authenticated encryption
//! so a Manager can read the PIN again. Neither reveals the PIN without the server's secret.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use mandate_domain::pin::Pin;
use mandate_store::SealedPin;
use sha2::Sha256;

use crate::settings::{Secret, Settings};

type HmacSha256 = Hmac<Sha256>;

const NONCE_LEN: usize = 12;

/// Why the PIN secret could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "a PIN secret is required with this database: set MANDATE_PIN_SECRET (64 hex characters) \
         or MANDATE_PIN_SECRET_FILE, the same on every replica"
    )]
    Missing,
    #[error("MANDATE_PIN_SECRET (--pin-secret) is malformed: {0}")]
    Malformed(String),
    #[error("cannot use the PIN secret file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("cannot generate a PIN secret: {0}")]
    Random(getrandom::Error),
}

/// The configured secret; or the one in the secret file, created on first start.
pub fn load_secret(settings: &Settings) -> Result<Secret, SecretError> {
    if let Some(secret) = &settings.pin_secret {
        return secret.secret().map_err(SecretError::Malformed);
    }
    let path = match settings.pin_secret_path() {
        Some(path) => path,
        None if settings.database_url.starts_with("sqlite:") => {
            // An in-memory database: its data dies with the process, and so may its secret.
            return Secret::generate().map_err(SecretError::Random);
        }
        None => return Err(SecretError::Missing),
    };
    read_or_create(&path)
}

fn read_or_create(path: &Path) -> Result<Secret, SecretError> {
    let failure = |reason: String| SecretError::File {
        path: path.display().to_string(),
        reason,
    };
    match fs::read_to_string(path) {
        Ok(text) => {
            if let Ok(meta) = fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(path = %path.display(), "the PIN secret file is readable by others; chmod 600 it");
            }
            text.parse().map_err(failure)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let secret = Secret::generate().map_err(SecretError::Random)?;
            // Written whole under a private name, then linked into place: a second process
            // starting at the same moment either links first or reads the complete file.
            let mut tag = [0u8; 8];
            getrandom::fill(&mut tag).map_err(SecretError::Random)?;
            let draft = path.with_extension(format!("draft-{}", hex::encode(tag)));
            let written = write_private(&draft, &secret);
            let linked = written.and_then(|()| fs::hard_link(&draft, path));
            let _ = fs::remove_file(&draft);
            match linked {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "generated a new PIN secret");
                    Ok(secret)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_or_create(path),
                Err(e) => Err(failure(e.to_string())),
            }
        }
        Err(err) => Err(failure(err.to_string())),
    }
}

/// Writes `secret` to a new file at `path`, readable only by its owner, and syncs it.
pub fn write_private(path: &Path, secret: &Secret) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{}", secret.expose_hex())?;
    file.sync_all()
}

/// Hashes, seals and opens PINs with keys derived from the server's secret.
pub struct PinVault {
    lookup_key: [u8; 32],
    cipher: ChaCha20Poly1305,
}

impl PinVault {
    pub fn new(secret: &Secret) -> Self {
        let derive = |label: &[u8]| -> [u8; 32] {
            let mut mac = <HmacSha256 as Mac>::new_from_slice(&secret.0)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
            mac.update(label);
            mac.finalize().into_bytes().into()
        };
        let encryption_key = derive(b"mandate pin encryption v1");
        Self {
            lookup_key: derive(b"mandate pin lookup v1"),
            cipher: ChaCha20Poly1305::new(Key::from_slice(&encryption_key)),
        }
    }

    /// A fingerprint of the secret, safe to store: it reveals nothing of the keys, and two
    /// servers with the same secret compute the same one.
    pub fn fingerprint(&self) -> String {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.lookup_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"mandate key fingerprint v1");
        hex::encode(mac.finalize().into_bytes())
    }

    /// A new random PIN for the account `contractor_id`, with its sealed form.
    pub fn account_pin(
        &self,
        contractor_id: &str,
    ) -> Result<(Pin, SealedPin), mandate_store::Error> {
        let pin = self
            .generate()
            .map_err(|e| mandate_store::Error::Internal(format!("no random PIN: {e}")))?;
        let sealed = self
            .seal(contractor_id, &pin)
            .map_err(mandate_store::Error::Internal)?;
        Ok((pin, sealed))
    }

    /// A new random one-time customer PIN, with its hash (it is never read back, so not sealed).
    pub fn customer_pin(&self) -> Result<(Pin, String), mandate_store::Error> {
        let pin = self
            .generate()
            .map_err(|e| mandate_store::Error::Internal(format!("no random PIN: {e}")))?;
        let hash = self.hash(&pin);
        Ok((pin, hash))
    }

    /// A new random PIN.
    pub fn generate(&self) -> Result<Pin, getrandom::Error> {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes)?;
        Ok(Pin::from_random(u64::from_le_bytes(bytes)))
    }

    /// The keyed hash an account is found by.
    pub fn hash(&self, pin: &Pin) -> String {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.lookup_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(pin.expose_canonical().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The PIN's stored form for the account `contractor_id`; the ciphertext is bound to it.
    pub fn seal(&self, contractor_id: &str, pin: &Pin) -> Result<SealedPin, String> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| format!("no random nonce: {e}"))?;
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: pin.expose_canonical().as_bytes(),
                    aad: contractor_id.as_bytes(),
                },
            )
            .map_err(|_| "PIN encryption failed".to_owned())?;
        Ok(SealedPin {
            hash: self.hash(pin),
            ciphertext: [nonce.as_slice(), &ciphertext].concat(),
        })
    }

    /// The PIN sealed for `contractor_id`.
    pub fn open(&self, contractor_id: &str, sealed: &[u8]) -> Result<Pin, String> {
        if sealed.len() <= NONCE_LEN {
            return Err("the sealed PIN is truncated".into());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: contractor_id.as_bytes(),
                },
            )
            .map_err(|_| "the sealed PIN does not open with this secret".to_owned())?;
        let text = String::from_utf8(plain).map_err(|_| "the sealed PIN is not text".to_owned())?;
        Pin::parse("pin", &text).map_err(|_| "the sealed PIN is not a PIN".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(byte: u8) -> PinVault {
        PinVault::new(&Secret([byte; 32]))
    }

    #[test]
    fn a_sealed_pin_opens_for_its_account_only() {
        let vault = vault(7);
        let pin = vault.generate().unwrap();
        let sealed = vault.seal("account-a", &pin).unwrap();
        assert_eq!(vault.open("account-a", &sealed.ciphertext).unwrap(), pin);
        assert!(vault.open("account-b", &sealed.ciphertext).is_err());
    }

    #[test]
    fn a_sealed_pin_does_not_open_with_another_secret() {
        let pin = vault(1).generate().unwrap();
        let sealed = vault(1).seal("a", &pin).unwrap();
        assert!(vault(2).open("a", &sealed.ciphertext).is_err());
        assert_ne!(vault(1).hash(&pin), vault(2).hash(&pin));
    }

    #[test]
    fn the_stored_forms_do_not_contain_the_pin() {
        let vault = vault(3);
        let pin = vault.generate().unwrap();
        let sealed = vault.seal("a", &pin).unwrap();
        let canonical = pin.expose_canonical().as_bytes();
        assert!(
            !sealed
                .hash
                .as_bytes()
                .windows(canonical.len())
                .any(|w| w == canonical)
        );
        assert!(
            !sealed
                .ciphertext
                .windows(canonical.len())
                .any(|w| w == canonical)
        );
    }

    #[test]
    fn a_secret_file_is_created_private_and_read_back() {
        let dir = std::env::temp_dir().join(format!("mandate-secret-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.secret");
        let _ = fs::remove_file(&path);
        let first = read_or_create(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_or_create(&path).unwrap(), first);
        fs::remove_dir_all(&dir).unwrap();
    }
}
