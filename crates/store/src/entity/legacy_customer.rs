use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "legacy_customers")]
pub struct Model {
    /// The previous system's identifier of the record.
    #[sea_orm(primary_key, auto_increment = false)]
    pub legacy_customer_id: String,
    pub display_name: String,
    pub email: String,
    /// Hex HMAC of the one-time customer PIN, as for account PINs.
    #[sea_orm(unique)]
    pub pin_hash: String,
    pub pin_expire_time: DateTimeUtc,
    /// The customer the record is linked to, once the PIN was used.
    #[sea_orm(unique)]
    pub customer_id: Option<String>,
    pub link_time: Option<DateTimeUtc>,
    pub import_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
