//! Who is calling. Every RPC learns its actor here, so the API-key layer planned in design.md
//! ("Who is calling") slots in at one place: it will authenticate `authorization: Bearer …`,
//! put the client's name and scopes into the request's extensions, and `actor` will read them.

use mandate_domain::paging::is_identifier;
use mandate_store::{Actor, Store};
use tonic::Request;

use crate::error::{ApiError, ApiResult};

/// The metadata key naming the customer a portal call acts for.
pub const CUSTOMER_HEADER: &str = "x-customer-id";

/// The client recorded in the audit trail until API keys identify clients.
const UNIDENTIFIED_CLIENT: &str = "unidentified";

/// The client system behind a call, for the audit trail.
pub fn client<T>(_request: &Request<T>) -> Actor {
    Actor {
        customer_id: None,
        client: UNIDENTIFIED_CLIENT.to_owned(),
    }
}

/// A registered customer a call acts for.
pub struct ActingCustomer {
    pub customer_id: String,
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
        .map(str::trim)
        .filter(|id| is_identifier(id))
        .ok_or_else(|| {
            ApiError::Unauthenticated(format!(
                "`{CUSTOMER_HEADER}` must be a customer id returned by RegisterCustomer"
            ))
        })?;
    let customer = store.customer(customer_id).await?;
    Ok(ActingCustomer {
        actor: Actor {
            customer_id: Some(customer.customer_id.clone()),
            ..client(request)
        },
        customer_id: customer.customer_id,
    })
}
