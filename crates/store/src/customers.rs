//! Customer accounts.

use mandate_domain::Error as Rule;
use mandate_domain::customer::NewCustomer;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, SqlErr};

use crate::entity::customer;
use crate::{Actor, Change, ChangeKind, Customer, Error, Result, Revision, Store, new_id, now};

impl Store {
    /// Registers a customer; `ALREADY_EXISTS` when its external subject has one.
    pub async fn register_customer(
        &self,
        actor: &Actor,
        new: NewCustomer,
    ) -> Result<(Customer, Revision)> {
        let txn = self.begin_change().await?;
        let taken = customer::Entity::find()
            .filter(customer::Column::ExternalSubject.eq(&new.external_subject))
            .one(&txn)
            .await?;
        if taken.is_some() {
            return Err(subject_taken());
        }
        let model = customer::Model {
            customer_id: new_id(),
            external_subject: new.external_subject,
            display_name: new.display_name,
            email: new.email,
            create_time: now(),
        };
        customer::Entity::insert(customer::ActiveModel {
            customer_id: Set(model.customer_id.clone()),
            external_subject: Set(model.external_subject.clone()),
            display_name: Set(model.display_name.clone()),
            email: Set(model.email.clone()),
            create_time: Set(model.create_time),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(|err| match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => subject_taken(),
            _ => Error::from(err),
        })?;
        let revision = self
            .commit_change(
                txn,
                actor,
                Change {
                    customer_id: Some(&model.customer_id),
                    ..Change::of(ChangeKind::CustomerRegistered)
                },
            )
            .await?;
        Ok((model.into(), revision))
    }

    /// One customer; `NOT_FOUND` for an unknown id.
    pub async fn customer(&self, customer_id: &str) -> Result<Customer> {
        customer::Entity::find_by_id(customer_id)
            .one(&self.db)
            .await?
            .map(Customer::from)
            .ok_or_else(|| Rule::not_found("customer", customer_id).into())
    }
}

fn subject_taken() -> Error {
    Rule::AlreadyExists("a customer with this external_subject is registered already".into()).into()
}
