use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "contractors")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub contractor_id: String,
    pub business_name: String,
    pub contact_name: String,
    pub contact_phone: String,
    pub contact_email: String,
    pub street: String,
    pub city: String,
    pub province: String,
    pub postal_code: String,
    pub country: String,
    /// Hex HMAC of the canonical PIN under the server's lookup key.
    #[sea_orm(unique)]
    pub pin_hash: String,
    /// The PIN sealed with the server's encryption key (nonce, then ciphertext and tag).
    pub pin_ciphertext: Vec<u8>,
    pub merged_into: Option<String>,
    /// The previous permit system's id of the contact this account was imported from.
    #[sea_orm(unique)]
    pub legacy_contractor_id: Option<String>,
    pub create_time: DateTimeUtc,
    pub update_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
