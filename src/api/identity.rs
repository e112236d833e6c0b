use mandate_domain::Error as Rule;
use mandate_domain::customer::NewCustomer;
use mandate_domain::legacy::parse_legacy_id;
use mandate_domain::paging::parse_id;
use mandate_domain::pin::Pin;
use tonic::{Request, Response, Status};

use super::{Shared, reply};
use crate::api::caller;
use crate::api::convert;
use crate::pb::identity_service_server::IdentityService;
use crate::pb::{
    ClearPinLockoutRequest, ClearPinLockoutResponse, GetCustomerRequest, GetCustomerResponse,
    LegacyCustomer, LinkLegacyCustomerRequest, LinkLegacyCustomerResponse, RegisterCustomerRequest,
    RegisterCustomerResponse, ReissueCustomerPinRequest, ReissueCustomerPinResponse,
};

/// `mandate.v1.IdentityService`.
pub struct IdentityApi(pub Shared);

#[tonic::async_trait]
impl IdentityService for IdentityApi {
    async fn register_customer(
        &self,
        request: Request<RegisterCustomerRequest>,
    ) -> Result<Response<RegisterCustomerResponse>, Status> {
        reply(async {
            let actor = caller::client(&request)?;
            let body = request.get_ref();
            let new = NewCustomer::parse(&body.external_subject, &body.display_name, &body.email)?;
            let (customer, revision) = self.0.store.register_customer(&actor, new).await?;
            tracing::info!(customer_id = %customer.customer_id, revision, "customer registered");
            Ok(RegisterCustomerResponse {
                customer: Some(convert::customer(customer)),
                revision,
            })
        }
        .await)
    }

    async fn get_customer(
        &self,
        request: Request<GetCustomerRequest>,
    ) -> Result<Response<GetCustomerResponse>, Status> {
        reply(
            async {
                let customer_id = &parse_id("customer_id", &request.get_ref().customer_id)?;
                let mut customer = convert::customer(self.0.store.customer(customer_id).await?);
                let is_the_customer = caller::claimed_customer(&request).as_deref()
                    == Some(customer.customer_id.as_str());
                if !mandate_domain::membership::sees_customer_contact(
                    caller::is_staff(&request),
                    is_the_customer,
                ) {
                    customer.email.clear();
                    customer.external_subject.clear();
                }
                Ok(GetCustomerResponse {
                    customer: Some(customer),
                })
            }
            .await,
        )
    }

    async fn link_legacy_customer(
        &self,
        request: Request<LinkLegacyCustomerRequest>,
    ) -> Result<Response<LinkLegacyCustomerResponse>, Status> {
        reply(
            async {
                let acting = caller::acting_customer(&self.0.store, &request).await?;
                let pin = Pin::parse("customer_pin", &request.get_ref().customer_pin)?;
                let (customer, record, revision) = self
                    .0
                    .enter_pin(
                        &acting,
                        self.0.store.link_legacy_customer(
                            &acting.actor,
                            &acting.customer_id,
                            &self.0.vault.hash(&pin),
                        ),
                    )
                    .await?;
                tracing::info!(
                    customer_id = %acting.customer_id,
                    legacy_customer_id = %record.legacy_customer_id,
                    revision,
                    "legacy customer record linked"
                );
                Ok(LinkLegacyCustomerResponse {
                    customer: Some(convert::customer(customer)),
                    legacy_customer: Some(LegacyCustomer {
                        legacy_customer_id: record.legacy_customer_id,
                        display_name: record.display_name,
                        link_time: Some(convert::timestamp(record.link_time)),
                    }),
                    revision,
                })
            }
            .await,
        )
    }

    async fn clear_pin_lockout(
        &self,
        request: Request<ClearPinLockoutRequest>,
    ) -> Result<Response<ClearPinLockoutResponse>, Status> {
        reply(
            async {
                let actor = caller::client(&request)?;
                let customer_id = &parse_id("customer_id", &request.get_ref().customer_id)?;
                let (cleared, revision) =
                    self.0
                        .store
                        .clear_pin_lockout(&actor, customer_id, self.0.lockout)
                        .await?;
                tracing::info!(%customer_id, client = %actor.client, cleared, revision, "PIN lockout lifted");
                Ok(ClearPinLockoutResponse { cleared, revision })
            }
            .await,
        )
    }

    async fn reissue_customer_pin(
        &self,
        request: Request<ReissueCustomerPinRequest>,
    ) -> Result<Response<ReissueCustomerPinResponse>, Status> {
        reply(
            async {
                let actor = caller::client(&request)?;
                let body = request.get_ref();
                let legacy_customer_id =
                    &parse_legacy_id("legacy_customer_id", &body.legacy_customer_id)?;
                let days = match body.valid_days {
                    0 => DEFAULT_CUSTOMER_PIN_DAYS,
                    days @ 1..=MAX_CUSTOMER_PIN_DAYS => days,
                    _ => {
                        return Err(Rule::invalid(
                            "valid_days",
                            "must be 0 (180 days) or 1 to 3650 days",
                        )
                        .into());
                    }
                };
                let expire_time = chrono::Utc::now() + chrono::Duration::days(i64::from(days));
                let (pin, revision) = self
                    .0
                    .store
                    .reissue_customer_pin(&actor, legacy_customer_id, expire_time, || {
                        self.0.vault.customer_pin()
                    })
                    .await?;
                tracing::info!(
                    %legacy_customer_id,
                    client = %actor.client,
                    revision,
                    "customer PIN reissued by staff"
                );
                Ok(ReissueCustomerPinResponse {
                    customer_pin: pin.expose_formatted(),
                    expire_time: Some(convert::timestamp(expire_time)),
                    revision,
                })
            }
            .await,
        )
    }
}

/// How long a reissued customer PIN stays valid unless staff say otherwise: as an import's.
const DEFAULT_CUSTOMER_PIN_DAYS: i32 = 180;
/// The longest a reissued customer PIN may stay valid.
const MAX_CUSTOMER_PIN_DAYS: i32 = 3650;
