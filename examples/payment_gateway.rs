//! A payment gateway asks Mandate before it takes a payment for a contractor account: the Rust
//! twin of `examples/python/payment_gateway.py`, on the client that `mandate::pb` generates.
//!
//! ```sh
//! export MANDATE_ADDRESS=127.0.0.1:50051 MANDATE_API_KEY=mdt_...   # a key with the check scope
//! cargo run --example payment_gateway -- --customer CUSTOMER_ID --contractor CONTRACTOR_ID \
//!     --application "24-123456 BLD" --amount-cents 12500
//! ```
//!
//! Exit status 0 when the payment was taken, 1 when it was refused: when Mandate said no, and
//! when it could not answer (a payment gateway fails closed); 2 when it is misconfigured.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mandate::pb::permission_service_client::PermissionServiceClient;
use mandate::pb::{CheckPermissionRequest, CheckReason, Permission};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

/// The deadline of each call. A check is fast; one that is not answered in time is refused
/// rather than keeping the customer waiting.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Takes a payment if Mandate says the customer may pay. Mandate's address and the gateway's
/// key come from `MANDATE_ADDRESS` and `MANDATE_API_KEY` (never a flag: flags show in `ps`).
#[derive(Debug, Parser)]
struct Payment {
    /// The paying customer's id.
    #[arg(long)]
    customer: String,
    /// The account the customer pays for.
    #[arg(long)]
    contractor: String,
    /// The application or permit paid for, if any.
    #[arg(long, default_value = "")]
    application: String,
    /// The amount, in cents.
    #[arg(long)]
    amount_cents: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let payment = Payment::parse();
    let address = std::env::var("MANDATE_ADDRESS").unwrap_or_else(|_| "127.0.0.1:50051".to_owned());
    let Some(authorization) = std::env::var("MANDATE_API_KEY").ok().and_then(bearer) else {
        eprintln!("set MANDATE_API_KEY to a key with the check scope");
        return ExitCode::from(2);
    };
    // Connected on first use: an unreachable server fails the call with UNAVAILABLE, handled
    // with every other failure below. One channel per process in a real gateway.
    let channel = match Endpoint::from_shared(format!("http://{address}")) {
        Ok(endpoint) => endpoint.connect_timeout(TIMEOUT).connect_lazy(),
        Err(error) => {
            eprintln!("MANDATE_ADDRESS {address:?} is not a host:port: {error}");
            return ExitCode::from(2);
        }
    };

    let on_application = if payment.application.is_empty() {
        String::new()
    } else {
        format!(" on {}", payment.application)
    };
    println!(
        "payment of {}.{:02} by customer {} for account {}{on_application}",
        payment.amount_cents / 100,
        payment.amount_cents % 100,
        payment.customer,
        payment.contractor,
    );

    let decision = match check_pay(channel, authorization, &payment).await {
        Ok(decision) => decision,
        Err(status) => {
            // Fail closed: no answer is a refusal. The details are for the operator's log.
            println!("refused: Mandate could not decide: {}", explain(&status));
            eprintln!("mandate: {:?}: {}", status.code(), status.message());
            return ExitCode::FAILURE;
        }
    };
    let reason = match CheckReason::try_from(decision.reason) {
        Ok(reason) => format!("{}: {}", reason.as_str_name(), describe(reason)),
        // A reason added to the API after this client was built.
        Err(_) => format!("{}: no explanation", decision.reason),
    };
    if !decision.allowed {
        println!("refused: {reason}");
        return ExitCode::FAILURE;
    }
    // Here the real gateway charges the card.
    // On an application, `contractor_id` names the account whose permissions decided it.
    println!("taken: {reason} (account {})", decision.contractor_id);
    ExitCode::SUCCESS
}

/// Asks Mandate whether the customer may pay for the account (and application, if named).
async fn check_pay(
    channel: Channel,
    authorization: MetadataValue<Ascii>,
    payment: &Payment,
) -> Result<mandate::pb::CheckPermissionResponse, Status> {
    let mut request = Request::new(CheckPermissionRequest {
        customer_id: payment.customer.clone(),
        permission: Permission::Pay.into(),
        contractor_id: payment.contractor.clone(),
        application_id: payment.application.clone(),
        // The latest state, at most a second behind a change made through another replica.
        at_least_revision: 0,
    });
    // `grpc-timeout`: the server stops working on the call when it passes, and tonic's channel
    // ends the call on this side too.
    request.set_timeout(TIMEOUT);
    request
        .metadata_mut()
        .insert("authorization", authorization);
    let mut client = PermissionServiceClient::new(channel);
    Ok(client.check_permission(request).await?.into_inner())
}

/// The `authorization` metadata for `key`, marked sensitive: never printed, never indexed in
/// HTTP/2 header compression.
fn bearer(key: String) -> Option<MetadataValue<Ascii>> {
    let mut value = MetadataValue::try_from(format!("Bearer {key}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Mandate's reason, in words for the gateway's log and the customer.
fn describe(reason: CheckReason) -> &'static str {
    match reason {
        CheckReason::GrantedDirectly => "the customer holds Pay",
        CheckReason::GrantedThroughManage => "the customer is a Manager",
        CheckReason::NotAssociated => "the customer is not associated with the account",
        CheckReason::PermissionNotHeld => "a Manager has not granted the customer Pay",
        CheckReason::GrantExpired => "the customer's permissions have expired",
        CheckReason::ApplicationNotLinked => {
            "the application is not linked to an account of the customer's"
        }
        CheckReason::OwnApplication => "the application is the customer's own",
        CheckReason::Unspecified => "no explanation",
    }
}

/// What a failed call means for the gateway, by status code.
fn explain(status: &Status) -> &'static str {
    match status.code() {
        Code::Unauthenticated => "the gateway's API key was not accepted",
        Code::PermissionDenied => "the gateway's API key may not check permissions",
        Code::InvalidArgument => "the payment names a malformed customer, account or application",
        Code::NotFound => "the payment names an unknown customer or account",
        Code::Unavailable => "Mandate is unavailable; try again later",
        // tonic ends a call whose deadline passed on this side with CANCELLED.
        Code::DeadlineExceeded | Code::Cancelled => {
            "Mandate did not answer in time; try again later"
        }
        _ => "unexpected error",
    }
}
