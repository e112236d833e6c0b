use sea_orm::entity::prelude::*;

/// Checks that were denied, identical ones within a window folded into one row, as the trail
/// keeps them (not a change: no revision).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "denied_checks")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub time: DateTimeUtc,
    /// The client system that asked.
    pub client: String,
    pub customer_id: String,
    /// The permission asked for, by name.
    pub permission: String,
    pub contractor_id: Option<String>,
    pub application_id: Option<String>,
    /// Why it was denied (`Reason::as_str`).
    pub reason: String,
    /// How many identical denials this row stands for, from `time` to `last_time`.
    pub occurrences: i64,
    /// The last of them; unset when there was one.
    pub last_time: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
