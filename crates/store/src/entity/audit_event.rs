use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub revision: i64,
    pub time: DateTimeUtc,
    pub kind: String,
    pub actor_customer_id: Option<String>,
    pub actor_client: String,
    pub contractor_id: Option<String>,
    pub customer_id: Option<String>,
    pub permissions_before: Option<i16>,
    pub permissions_after: Option<i16>,
    pub application_id: Option<String>,
    pub expire_time: Option<DateTimeUtc>,
    /// The accounts a merge absorbed, separated by spaces.
    pub absorbed_contractor_ids: Option<String>,
    /// What a bulk change (an import run) did, in words.
    pub detail: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
