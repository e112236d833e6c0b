use std::pin::Pin;

use mandate_domain::paging::{PageRequest, parse_id};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::contractor::not_yet;
use super::{Shared, reply};
use crate::auth;
use crate::convert;
use crate::pb::permission_service_server::PermissionService;
use crate::pb::{
    CheckPermissionRequest, CheckPermissionResponse, CheckPermissionsRequest,
    CheckPermissionsResponse, LinkApplicationRequest, LinkApplicationResponse,
    ListAccessibleApplicationsRequest, ListAccessibleApplicationsResponse, ListAssociatesRequest,
    ListAssociatesResponse, RemoveAssociateRequest, RemoveAssociateResponse, SetPermissionsRequest,
    SetPermissionsResponse, UnlinkApplicationRequest, UnlinkApplicationResponse,
    WatchChangesRequest, WatchChangesResponse,
};

/// `mandate.v1.PermissionService`.
pub struct PermissionApi(pub Shared);

type ChangeStream = Pin<Box<dyn Stream<Item = Result<WatchChangesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PermissionService for PermissionApi {
    async fn list_associates(
        &self,
        request: Request<ListAssociatesRequest>,
    ) -> Result<Response<ListAssociatesResponse>, Status> {
        reply(
            async {
                let acting = auth::acting_customer(&self.0.store, &request).await?;
                let body = request.get_ref();
                let contractor_id = parse_id("contractor_id", &body.contractor_id)?;
                let page = PageRequest::parse(body.page_size, &body.page_token)?;
                let page = self
                    .0
                    .store
                    .associates(&acting.customer_id, contractor_id, &page)
                    .await?;
                Ok(ListAssociatesResponse {
                    associates: page.items.into_iter().map(convert::associate).collect(),
                    next_page_token: page.next_page_token.unwrap_or_default(),
                })
            }
            .await,
        )
    }

    async fn set_permissions(
        &self,
        _request: Request<SetPermissionsRequest>,
    ) -> Result<Response<SetPermissionsResponse>, Status> {
        reply(Err(not_yet(
            "SetPermissions",
            "granting and revoking permissions",
        )))
    }

    async fn remove_associate(
        &self,
        _request: Request<RemoveAssociateRequest>,
    ) -> Result<Response<RemoveAssociateResponse>, Status> {
        reply(Err(not_yet("RemoveAssociate", "removing associates")))
    }

    async fn check_permission(
        &self,
        _request: Request<CheckPermissionRequest>,
    ) -> Result<Response<CheckPermissionResponse>, Status> {
        reply(Err(not_yet("CheckPermission", "deciding checks")))
    }

    async fn check_permissions(
        &self,
        _request: Request<CheckPermissionsRequest>,
    ) -> Result<Response<CheckPermissionsResponse>, Status> {
        reply(Err(not_yet(
            "CheckPermissions",
            "deciding batches of checks",
        )))
    }

    async fn link_application(
        &self,
        _request: Request<LinkApplicationRequest>,
    ) -> Result<Response<LinkApplicationResponse>, Status> {
        reply(Err(not_yet(
            "LinkApplication",
            "linking applications to accounts",
        )))
    }

    async fn unlink_application(
        &self,
        _request: Request<UnlinkApplicationRequest>,
    ) -> Result<Response<UnlinkApplicationResponse>, Status> {
        reply(Err(not_yet(
            "UnlinkApplication",
            "unlinking applications from accounts",
        )))
    }

    async fn list_accessible_applications(
        &self,
        _request: Request<ListAccessibleApplicationsRequest>,
    ) -> Result<Response<ListAccessibleApplicationsResponse>, Status> {
        reply(Err(not_yet(
            "ListAccessibleApplications",
            "listing accessible applications",
        )))
    }

    type WatchChangesStream = ChangeStream;

    async fn watch_changes(
        &self,
        _request: Request<WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        reply(Err(not_yet("WatchChanges", "the change feed")))
    }
}
