use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "memberships")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub contractor_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub customer_id: String,
    /// `PermissionSet::bits`.
    pub permissions: i16,
    pub expire_time: Option<DateTimeUtc>,
    pub associate_time: DateTimeUtc,
    pub update_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
