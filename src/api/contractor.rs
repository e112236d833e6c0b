use mandate_domain::Error as Rule;
use mandate_domain::contractor::ContractorDetails;
use mandate_domain::paging::{PageRequest, parse_id};
use mandate_domain::permission::PermissionSet;
use mandate_domain::pin::Pin;
use mandate_store::{ContractorQuery, Error as StoreError};
use tonic::{Request, Response, Status};

use super::{Shared, count, reply};
use crate::api::caller;
use crate::api::convert;
use crate::api::error::ApiError;
use crate::pb::contractor_service_server::ContractorService;
use crate::pb::{
    AppointManagerRequest, AppointManagerResponse, AssociateByPinRequest, AssociateByPinResponse,
    GetContractorRequest, GetContractorResponse, GetPinRequest, GetPinResponse,
    LeaveContractorRequest, LeaveContractorResponse, ListMyContractorsRequest,
    ListMyContractorsResponse, MergeContractorsRequest, MergeContractorsResponse,
    RegisterContractorRequest, RegisterContractorResponse, ReissuePinRequest, ReissuePinResponse,
    RetireAliasPinsRequest, RetireAliasPinsResponse, RotatePinRequest, RotatePinResponse,
    SearchContractorsRequest, SearchContractorsResponse, UpdateContractorRequest,
    UpdateContractorResponse,
};

/// `mandate.v1.ContractorService`.
pub struct ContractorApi(pub Shared);

#[tonic::async_trait]
impl ContractorService for ContractorApi {
    async fn register_contractor(
        &self,
        request: Request<RegisterContractorRequest>,
    ) -> Result<Response<RegisterContractorResponse>, Status> {
        reply(
            async {
                let acting = caller::acting_customer(&self.0.store, &request).await?;
                let body = request.into_inner();
                let details = ContractorDetails::parse(&convert::raw_details(
                    body.business_name,
                    body.contact,
                    body.mailing_address,
                ))?;
                let vault = &self.0.vault;
                let (contractor, pin, revision) = self
                    .0
                    .store
                    .register_contractor(&acting.actor, &acting.customer_id, details, |id| {
                        let pin = vault
                            .generate()
                            .map_err(|e| StoreError::Internal(format!("no random PIN: {e}")))?;
                        let sealed = vault.seal(id, &pin).map_err(StoreError::Internal)?;
                        Ok((pin, sealed))
                    })
                    .await?;
                tracing::info!(
                    contractor_id = %contractor.contractor_id,
                    customer_id = %acting.customer_id,
                    revision,
                    "contractor registered"
                );
                Ok(RegisterContractorResponse {
                    contractor: Some(convert::contractor(contractor)),
                    pin: pin.expose_formatted(),
                    permissions: convert::permissions(mandate_domain::membership::REGISTRANT),
                    revision,
                })
            }
            .await,
        )
    }

    async fn get_contractor(
        &self,
        request: Request<GetContractorRequest>,
    ) -> Result<Response<GetContractorResponse>, Status> {
        reply(
            async {
                let contractor_id = &parse_id("contractor_id", &request.get_ref().contractor_id)?;
                let store = &self.0.store;
                let mut contractor = convert::contractor(store.contractor(contractor_id).await?);
                let alias_pins = count(store.alias_pin_count(contractor_id).await?);
                let associated = match caller::claimed_customer(&request) {
                    Some(customer_id) => store.is_associated(contractor_id, &customer_id).await?,
                    None => false,
                };
                if !mandate_domain::membership::sees_account_contact(
                    caller::is_staff(&request),
                    associated,
                ) {
                    contractor.contact = None;
                    contractor.mailing_address = None;
                }
                Ok(GetContractorResponse {
                    contractor: Some(contractor),
                    alias_pins,
                })
            }
            .await,
        )
    }

    async fn update_contractor(
        &self,
        request: Request<UpdateContractorRequest>,
    ) -> Result<Response<UpdateContractorResponse>, Status> {
        reply(
            async {
                let acting = caller::acting_customer(&self.0.store, &request).await?;
                let body = request.into_inner();
                let contractor = body.contractor.ok_or_else(|| {
                    mandate_domain::Error::invalid(
                        "contractor",
                        "is required: the account and its new values",
                    )
                })?;
                let contractor_id =
                    parse_id("contractor.contractor_id", &contractor.contractor_id)?;
                let paths = body.update_mask.map(|m| m.paths).unwrap_or_default();
                let raw = convert::raw_details(
                    contractor.business_name,
                    contractor.contact,
                    contractor.mailing_address,
                );
                let (contractor, revision) = self
                    .0
                    .store
                    .update_contractor(
                        &acting.actor,
                        &acting.customer_id,
                        &contractor_id,
                        |current| current.update(&raw, &paths),
                    )
                    .await?;
                tracing::info!(%contractor_id, revision, "contractor updated");
                Ok(UpdateContractorResponse {
                    contractor: Some(convert::contractor(contractor)),
                    revision,
                })
            }
            .await,
        )
    }

    async fn list_my_contractors(
        &self,
        request: Request<ListMyContractorsRequest>,
    ) -> Result<Response<ListMyContractorsResponse>, Status> {
        reply(
            async {
                let acting = caller::acting_customer(&self.0.store, &request).await?;
                let body = request.get_ref();
                let page = PageRequest::parse(body.page_size, &body.page_token)?;
                let page = self.0.store.memberships(&acting.customer_id, &page).await?;
                Ok(ListMyContractorsResponse {
                    memberships: page.items.into_iter().map(convert::membership).collect(),
                    next_page_token: page.next_page_token.unwrap_or_default(),
                })
            }
            .await,
        )
    }

    async fn associate_by_pin(
        &self,
        request: Request<AssociateByPinRequest>,
    ) -> Result<Response<AssociateByPinResponse>, Status> {
        reply(
            async {
                let acting = caller::acting_customer(&self.0.store, &request).await?;
                let pin = Pin::parse("pin", &request.get_ref().pin)?;
                let (membership, already_associated, revision) = self
                    .0
                    .enter_pin(
                        &acting,
                        self.0.store.associate_by_pin(
                            &acting.actor,
                            &acting.customer_id,
                            &self.0.vault.hash(&pin),
                        ),
                    )
                    .await?;
                tracing::info!(
                    contractor_id = %membership.contractor.contractor_id,
                    customer_id = %acting.customer_id,
                    already_associated,
                    revision,
                    "associated by PIN"
                );
                Ok(AssociateByPinResponse {
                    permissions: convert::permissions(membership.permissions),
                    contractor: Some(convert::contractor(membership.contractor)),
                    already_associated,
                    revision,
                })
            }
            .await,
        )
    }

    async fn get_pin(
        &self,
        request: Request<GetPinRequest>,
    ) -> Result<Response<GetPinResponse>, Status> {
        reply(async {
            let acting = caller::acting_customer(&self.0.store, &request).await?;
            let contractor_id = &parse_id("contractor_id", &request.get_ref().contractor_id)?;
            let (pin, revision) = self
                .0
                .store
                .read_pin(&acting.actor, &acting.customer_id, contractor_id, |sealed| {
                    self.0.vault.open(contractor_id, sealed).map_err(|reason| {
                        StoreError::Internal(format!("PIN of account {contractor_id}: {reason}"))
                    })
                })
                .await?;
            tracing::info!(%contractor_id, customer_id = %acting.customer_id, revision, "PIN read");
            Ok(GetPinResponse {
                pin: pin.expose_formatted(),
                revision,
            })
        }
        .await)
    }

    async fn rotate_pin(
        &self,
        request: Request<RotatePinRequest>,
    ) -> Result<Response<RotatePinResponse>, Status> {
        reply(
            async {
                let acting = caller::acting_customer(&self.0.store, &request).await?;
                let contractor_id = &parse_id("contractor_id", &request.get_ref().contractor_id)?;
                let (new, revision) = self
                    .0
                    .store
                    .rotate_pin(&acting.actor, &acting.customer_id, contractor_id, |id| {
                        self.0.new_pin(id)
                    })
                    .await?;
                tracing::info!(
                    %contractor_id,
                    customer_id = %acting.customer_id,
                    revision,
                    aliases_retired = new.aliases_retired,
                    "PIN rotated"
                );
                Ok(RotatePinResponse {
                    pin: new.pin.expose_formatted(),
                    revision,
                    retired_alias_pins: count(new.aliases_retired),
                })
            }
            .await,
        )
    }

    async fn leave_contractor(
        &self,
        request: Request<LeaveContractorRequest>,
    ) -> Result<Response<LeaveContractorResponse>, Status> {
        reply(async {
            let acting = caller::acting_customer(&self.0.store, &request).await?;
            let contractor_id = &parse_id("contractor_id", &request.get_ref().contractor_id)?;
            let revision = self
                .0
                .store
                .leave_contractor(&acting.actor, &acting.customer_id, contractor_id)
                .await?;
            tracing::info!(%contractor_id, customer_id = %acting.customer_id, revision, "left account");
            Ok(LeaveContractorResponse { revision })
        }
        .await)
    }

    async fn appoint_manager(
        &self,
        request: Request<AppointManagerRequest>,
    ) -> Result<Response<AppointManagerResponse>, Status> {
        reply(
            async {
                let actor = caller::client(&request)?;
                let body = request.get_ref();
                let (contractor_id, customer_id) = both(
                    parse_id("contractor_id", &body.contractor_id),
                    parse_id("customer_id", &body.customer_id),
                )?;
                let (already_manager, revision) = self
                    .0
                    .store
                    .appoint_manager(&actor, &contractor_id, &customer_id)
                    .await?;
                tracing::info!(
                    %contractor_id,
                    %customer_id,
                    client = %actor.client,
                    already_manager,
                    revision,
                    "Manager appointed by staff"
                );
                Ok(AppointManagerResponse {
                    permissions: convert::permissions(PermissionSet::MANAGER),
                    revision,
                    already_manager,
                })
            }
            .await,
        )
    }

    async fn reissue_pin(
        &self,
        request: Request<ReissuePinRequest>,
    ) -> Result<Response<ReissuePinResponse>, Status> {
        reply(
            async {
                let actor = caller::client(&request)?;
                let contractor_id = &parse_id("contractor_id", &request.get_ref().contractor_id)?;
                let (new, revision) = self
                    .0
                    .store
                    .reissue_pin(&actor, contractor_id, |id| self.0.new_pin(id))
                    .await?;
                tracing::info!(
                    %contractor_id,
                    client = %actor.client,
                    revision,
                    aliases_retired = new.aliases_retired,
                    "PIN reissued by staff"
                );
                Ok(ReissuePinResponse {
                    pin: new.pin.expose_formatted(),
                    revision,
                    retired_alias_pins: count(new.aliases_retired),
                })
            }
            .await,
        )
    }

    async fn retire_alias_pins(
        &self,
        request: Request<RetireAliasPinsRequest>,
    ) -> Result<Response<RetireAliasPinsResponse>, Status> {
        reply(
            async {
                let actor = caller::client(&request)?;
                let contractor_id = &parse_id("contractor_id", &request.get_ref().contractor_id)?;
                let (retired, revision) = self
                    .0
                    .store
                    .retire_alias_pins(&actor, contractor_id)
                    .await?;
                tracing::info!(
                    %contractor_id,
                    client = %actor.client,
                    revision,
                    retired,
                    "alias PINs retired by staff"
                );
                Ok(RetireAliasPinsResponse {
                    retired_alias_pins: count(retired),
                    revision,
                })
            }
            .await,
        )
    }

    async fn search_contractors(
        &self,
        request: Request<SearchContractorsRequest>,
    ) -> Result<Response<SearchContractorsResponse>, Status> {
        reply(
            async {
                let body = request.get_ref();
                let query = parse_search(body)?;
                let page = PageRequest::parse(body.page_size, &body.page_token)?;
                let page = self.0.store.search_contractors(query, &page).await?;
                Ok(SearchContractorsResponse {
                    contractors: page.items.into_iter().map(convert::contractor).collect(),
                    next_page_token: page.next_page_token.unwrap_or_default(),
                })
            }
            .await,
        )
    }

    async fn merge_contractors(
        &self,
        request: Request<MergeContractorsRequest>,
    ) -> Result<Response<MergeContractorsResponse>, Status> {
        reply(
            async {
                let actor = caller::client(&request)?;
                let body = request.get_ref();
                let (survivor, absorbed) =
                    parse_merge(&body.survivor_contractor_id, &body.absorbed_contractor_ids)?;
                let (contractor, alias_pins, revision) = self
                    .0
                    .store
                    .merge_contractors(&actor, &survivor, &absorbed)
                    .await?;
                tracing::info!(
                    survivor = %survivor,
                    absorbed = ?absorbed,
                    client = %actor.client,
                    revision,
                    "accounts merged"
                );
                Ok(MergeContractorsResponse {
                    contractor: Some(convert::contractor(contractor)),
                    revision,
                    alias_pins: count(alias_pins),
                })
            }
            .await,
        )
    }
}

/// The most accounts one merge absorbs.
const MAX_ABSORBED: usize = 20;

/// A merge's survivor and absorbed accounts, checked: ids of the right form, at least one and at
/// most `MAX_ABSORBED` absorbed accounts, none twice, and not the survivor itself.
fn parse_merge(survivor: &str, absorbed: &[String]) -> Result<(String, Vec<String>), ApiError> {
    const FIELD: &str = "absorbed_contractor_ids";
    let survivor = parse_id("survivor_contractor_id", survivor);
    let mut violations = Vec::new();
    if absorbed.is_empty() {
        violations.push(Rule::invalid(FIELD, "name at least one account to absorb"));
    }
    if absorbed.len() > MAX_ABSORBED {
        violations.push(Rule::invalid(
            FIELD,
            format!("a merge absorbs at most {MAX_ABSORBED} accounts"),
        ));
    }
    let mut ids = Vec::new();
    for (i, id) in absorbed.iter().take(MAX_ABSORBED).enumerate() {
        match parse_id(&format!("{FIELD}[{i}]"), id) {
            Ok(id) if ids.contains(&id) => violations.push(Rule::invalid(
                format!("{FIELD}[{i}]"),
                "names an account already named",
            )),
            Ok(id) if survivor.as_ref().is_ok_and(|s| *s == id) => violations.push(Rule::invalid(
                format!("{FIELD}[{i}]"),
                "is the survivor: an account cannot be merged into itself",
            )),
            Ok(id) => ids.push(id),
            Err(err) => violations.push(err),
        }
    }
    let survivor = match survivor {
        Ok(survivor) if violations.is_empty() => return Ok((survivor, ids)),
        Ok(_) => None,
        Err(err) => Some(err),
    };
    Err(Rule::all_invalid(survivor.into_iter().chain(violations)).into())
}

/// The longest business name or email a search takes.
const MAX_SEARCH_LEN: usize = 200;

/// Both values, or every field violation of either.
fn both<A, B>(
    a: mandate_domain::Result<A>,
    b: mandate_domain::Result<B>,
) -> Result<(A, B), ApiError> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (a, b) => Err(Rule::all_invalid([a.err(), b.err()].into_iter().flatten()).into()),
    }
}

/// What a `SearchContractors` request asks for: exactly one criterion, of a sensible length.
fn parse_search(body: &SearchContractorsRequest) -> Result<ContractorQuery<'_>, ApiError> {
    let criteria = [
        ("business_name", body.business_name.trim()),
        ("email", body.email.trim()),
        ("legacy_contractor_id", body.legacy_contractor_id.trim()),
    ];
    let given: Vec<(&str, &str)> = criteria
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .collect();
    let [(field, value)] = given[..] else {
        return Err(Rule::invalid(
            "business_name",
            "give exactly one of business_name, email and legacy_contractor_id",
        )
        .into());
    };
    let length = value.chars().count();
    if length > MAX_SEARCH_LEN {
        return Err(Rule::invalid(
            field,
            format!("must be at most {MAX_SEARCH_LEN} characters"),
        )
        .into());
    }
    Ok(match field {
        "business_name" if length < 2 => {
            return Err(Rule::invalid(field, "give at least 2 characters").into());
        }
        "business_name" => ContractorQuery::BusinessName(value),
        "email" => ContractorQuery::Email(value),
        _ => ContractorQuery::LegacyId(value),
    })
}
