use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{Backend, spawn_app};
use crate::on_both_backends;

on_both_backends!(the_server_reports_itself_and_each_service_as_serving);

async fn the_server_reports_itself_and_each_service_as_serving(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut health = HealthClient::new(app.channel.clone());
    for service in [
        "",
        "mandate.v1.IdentityService",
        "mandate.v1.ContractorService",
        "mandate.v1.PermissionService",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }
}
