//! sea-orm entities, one per table.

pub mod audit_event;
pub mod contractor;
pub mod customer;
pub mod membership;
