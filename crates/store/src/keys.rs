//! Client systems' credentials: API keys and client certificates. Only a key's SHA-256 is stored
//! (a key is 256 random bits, so a fast hash is enough), with a short prefix that lets an operator
//! tell keys apart; a certificate is stored as its SHA-256 fingerprint.

use chrono::{DateTime, Utc};
use mandate_domain::Error as Rule;
use mandate_domain::client::Scopes;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait,
    QueryOrder,
};

use crate::entity::api_key;
use crate::{Error, Result, Store, new_id, now};

/// The PostgreSQL advisory lock that serialises the first key's creation ("mdtkeys" in ASCII).
const FIRST_KEY_LOCK: i64 = 0x006d_6474_6b65_7973;

/// What a client credential is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// An API key, presented as `authorization: Bearer <key>`.
    Key,
    /// A client certificate, presented in the TLS handshake.
    Certificate,
}

impl KeyKind {
    /// The kind as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Certificate => "certificate",
        }
    }

    fn from_stored(text: &str) -> Option<Self> {
        match text {
            "key" => Some(Self::Key),
            "certificate" => Some(Self::Certificate),
            _ => None,
        }
    }
}

/// A client system's credential, as stored: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub key_id: String,
    /// The client system, as the audit trail names it.
    pub name: String,
    pub scopes: Scopes,
    pub kind: KeyKind,
    /// Hex SHA-256 of the key, or of the certificate (its fingerprint).
    pub key_hash: String,
    /// The key's first characters, to recognise it by.
    pub key_prefix: String,
    pub create_time: DateTime<Utc>,
    pub expire_time: Option<DateTime<Utc>>,
    pub revoke_time: Option<DateTime<Utc>>,
}

/// A key about to be recorded.
pub struct NewKey<'a> {
    pub name: &'a str,
    pub scopes: Scopes,
    pub kind: KeyKind,
    pub key_hash: &'a str,
    pub key_prefix: &'a str,
    pub expire_time: Option<DateTime<Utc>>,
}

impl TryFrom<api_key::Model> for ApiKey {
    type Error = Error;

    fn try_from(row: api_key::Model) -> Result<Self> {
        let scopes = Scopes::from_stored(&row.scopes).ok_or_else(|| {
            Error::Corrupt(format!(
                "key {} has unknown scopes {}",
                row.key_id, row.scopes
            ))
        })?;
        let kind = KeyKind::from_stored(&row.kind).ok_or_else(|| {
            Error::Corrupt(format!("key {} has unknown kind {}", row.key_id, row.kind))
        })?;
        Ok(Self {
            key_id: row.key_id,
            name: row.name,
            scopes,
            kind,
            key_hash: row.key_hash,
            key_prefix: row.key_prefix,
            create_time: row.create_time,
            expire_time: row.expire_time,
            revoke_time: row.revoke_time,
        })
    }
}

async fn insert_key(db: &impl ConnectionTrait, key: &NewKey<'_>) -> Result<ApiKey> {
    let row = api_key::Model {
        key_id: new_id(),
        name: key.name.to_owned(),
        scopes: key.scopes.to_stored(),
        key_hash: key.key_hash.to_owned(),
        key_prefix: key.key_prefix.to_owned(),
        kind: key.kind.as_str().to_owned(),
        create_time: now(),
        expire_time: key.expire_time,
        revoke_time: None,
    };
    api_key::Entity::insert(api_key::ActiveModel::from(row.clone()))
        .exec_without_returning(db)
        .await?;
    row.try_into()
}

impl Store {
    /// Records a new key.
    pub async fn create_key(&self, key: &NewKey<'_>) -> Result<ApiKey> {
        insert_key(&self.db, key).await
    }

    /// Records `key` only if the database has no key at all, which is true of exactly one of
    /// several servers starting together on a new database; `None` when a key exists.
    pub async fn create_first_key(&self, key: &NewKey<'_>) -> Result<Option<ApiKey>> {
        let txn = self.begin_write().await?;
        if txn.get_database_backend() == DbBackend::Postgres {
            txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({FIRST_KEY_LOCK})"))
                .await?;
        }
        if api_key::Entity::find().count(&txn).await? > 0 {
            txn.rollback().await?;
            return Ok(None);
        }
        let created = insert_key(&txn, key).await?;
        txn.commit().await?;
        Ok(Some(created))
    }

    /// Every key ever created, revoked and expired ones included, oldest first.
    pub async fn keys(&self) -> Result<Vec<ApiKey>> {
        api_key::Entity::find()
            .order_by_asc(api_key::Column::CreateTime)
            .order_by_asc(api_key::Column::KeyId)
            .all(&self.db)
            .await?
            .into_iter()
            .map(ApiKey::try_from)
            .collect()
    }

    /// Revokes the key `key_id` from now on; revoking it again changes nothing.
    pub async fn revoke_key(&self, key_id: &str) -> Result<ApiKey> {
        let row = api_key::Entity::find_by_id(key_id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| Rule::not_found("key", key_id))?;
        if row.revoke_time.is_some() {
            return row.try_into();
        }
        let mut active: api_key::ActiveModel = row.into();
        active.revoke_time = Set(Some(now()));
        active.update(&self.db).await?.try_into()
    }
}
