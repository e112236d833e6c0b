//! Who a call is from and whom it acts for, as the handlers read it from the call's
//! extensions (put there by [`crate::middleware::authenticate`]).

use mandate_domain::Error as Rule;
use mandate_domain::client::Scope;
use mandate_domain::paging::is_identifier;
use mandate_store::{Actor, Error as StoreError, Store, Viewer};
use tonic::Request;

use crate::api::error::{ApiError, ApiResult};
use crate::credentials::keys::Client;

use crate::credentials::scopes::CUSTOMER_HEADER;
/// Whether the call's key holds the staff scope.
pub fn is_staff<T>(request: &Request<T>) -> bool {
    request
        .extensions()
        .get::<Client>()
        .is_some_and(|client| client.scopes.contains(Scope::Staff))
}

/// The customer the portal says it acts for, if it names a well-formed one (in lower case, as
/// Mandate writes ids). Believed as the portal's word (only portal keys may send it); not
/// looked up.
pub fn claimed_customer<T>(request: &Request<T>) -> Option<String> {
    request
        .metadata()
        .get(CUSTOMER_HEADER)?
        .to_str()
        .ok()
        .map(|id| id.trim().to_ascii_lowercase())
        .filter(|id| is_identifier(id))
}

/// Whether the call may read what `customer_id` may act on: a check system may ask for any
/// customer; the portal only for the customer it acts for (`x-customer-id`), so that a portal
/// session of one customer cannot list another's applications.
pub fn may_list_for<T>(request: &Request<T>, customer_id: &str) -> ApiResult<()> {
    match claimed_customer(request) {
        Some(acting) if acting == customer_id => Ok(()),
        Some(acting) => Err(ApiError::from(Rule::PermissionDenied(format!(
            "a portal call acting for customer {acting} (`{CUSTOMER_HEADER}`) may list only that \
             customer's applications, not {customer_id}'s"
        )))),
        None if caller(request)?.scopes.contains(Scope::Check) => Ok(()),
        None => Err(ApiError::Unauthenticated(format!(
            "the portal lists the applications of the customer it acts for: send its id in the \
             `{CUSTOMER_HEADER}` metadata"
        ))),
    }
}

/// The client system behind a call, for the audit trail.
pub fn client<T>(request: &Request<T>) -> ApiResult<Actor> {
    Ok(Actor {
        customer_id: None,
        client: client_name(request)?.to_owned(),
    })
}

/// The name of the client system behind a call, as the authentication layer found it.
pub fn client_name<T>(request: &Request<T>) -> ApiResult<&str> {
    caller(request).map(|client| client.name.as_str())
}

/// The client system behind a call and the credential it presented, as the authentication
/// layer found them: a stream keeps it to ask, at each key reload, whether it still holds.
pub fn caller<T>(request: &Request<T>) -> ApiResult<&Client> {
    request
        .extensions()
        .get::<Client>()
        .ok_or_else(|| ApiError::Unauthenticated("this call presented no API key".to_owned()))
}

/// Who reads: the customer the portal acts for (`x-customer-id`), or, without one, staff.
pub enum Reader {
    Customer(ActingCustomer),
    Staff,
}

impl Reader {
    /// The store's view of the reader.
    pub fn viewer(&self) -> Viewer<'_> {
        match self {
            Self::Customer(acting) => Viewer::Customer(&acting.customer_id),
            Self::Staff => Viewer::Staff,
        }
    }
}

/// The reader of a call that a customer or staff may make: the acting customer when the call
/// names one, staff when it names none and its credential holds the staff scope.
pub async fn reader<T>(store: &Store, request: &Request<T>) -> ApiResult<Reader> {
    if is_staff(request) && !request.metadata().contains_key(CUSTOMER_HEADER) {
        return Ok(Reader::Staff);
    }
    Ok(Reader::Customer(acting_customer(store, request).await?))
}

/// A registered customer a call acts for.
pub struct ActingCustomer {
    pub customer_id: String,
    /// When the customer registered.
    pub since: chrono::DateTime<chrono::Utc>,
    /// The customer through its client system, for the audit trail.
    pub actor: Actor,
}

/// The customer a call acts for: `UNAUTHENTICATED` without a well-formed `x-customer-id`,
/// `NOT_FOUND` when no such customer is registered.
pub async fn acting_customer<T>(store: &Store, request: &Request<T>) -> ApiResult<ActingCustomer> {
    let value = request.metadata().get(CUSTOMER_HEADER).ok_or_else(|| {
        ApiError::Unauthenticated(format!(
            "this call acts for a customer: send the customer's id in the `{CUSTOMER_HEADER}` metadata"
        ))
    })?;
    let customer_id = value
        .to_str()
        .ok()
        .map(|id| id.trim().to_ascii_lowercase())
        .filter(|id| is_identifier(id))
        .ok_or_else(|| {
            ApiError::Unauthenticated(format!(
                "`{CUSTOMER_HEADER}` must be a customer id returned by RegisterCustomer"
            ))
        })?;
    let customer = store
        .customer(&customer_id)
        .await
        .map_err(|err| match err {
            StoreError::Domain(Rule::NotFound(_)) => {
                ApiError::from(StoreError::from(Rule::NotFound(format!(
                    "the customer named in the `{CUSTOMER_HEADER}` metadata, {customer_id}, is not \
                 registered: register it with RegisterCustomer first"
                ))))
            }
            other => other.into(),
        })?;
    Ok(ActingCustomer {
        actor: Actor {
            customer_id: Some(customer.customer_id.clone()),
            ..client(request)?
        },
        customer_id: customer.customer_id,
        since: customer.create_time,
    })
}
