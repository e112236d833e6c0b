pub use sea_orm; pub use sea_orm_migration;
