use std::time::Duration;

use mandate::pb::{
    CheckPermissionRequest, CheckPermissionsRequest, GetCustomerRequest, GetPinRequest,
    RegisterCustomerRequest, WatchChangesRequest,
};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{
    Backend, Proxy, TestDatabase, as_customer, expect_code, spawn_app, start_replicas, start_with,
};
use crate::on_both_backends;

on_both_backends!(
    the_server_reports_itself_and_each_service_as_serving,
    two_replicas_started_together_on_one_database_share_its_data,
    stopping_the_server_ends_open_change_feeds,
    reflection_v1_and_v1alpha_list_every_service,
    a_server_with_another_pin_secret_refuses_to_start,
);

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

async fn two_replicas_started_together_on_one_database_share_its_data(backend: Backend) {
    let (mut first, mut second) = start_replicas(TestDatabase::new(backend).await).await;
    let (manager, _associate, contractor, pin) = first.story().await;
    let customer = second
        .identity
        .get_customer(GetCustomerRequest {
            customer_id: manager.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    assert_eq!(customer.customer_id, manager);
    // The second replica reads the PIN the first sealed: they share the PIN secret.
    let shown = second
        .contractors
        .get_pin(as_customer(
            &manager,
            GetPinRequest {
                contractor_id: contractor,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.pin, pin);
    // Revisions from both replicas form one sequence.
    let newcomer = second.customer("newcomer").await.customer_id;
    second.associate(&newcomer, &pin).await;
    let third = first.customer("third").await;
    let revision = first
        .identity
        .get_customer(GetCustomerRequest {
            customer_id: third.customer_id,
        })
        .await
        .unwrap();
    assert!(revision.into_inner().customer.is_some());
}

async fn stopping_the_server_ends_open_change_feeds(backend: Backend) {
    let mut app = spawn_app(backend).await;
    app.customer("someone").await;
    let mut feed = app
        .permissions
        .watch_changes(WatchChangesRequest { after_revision: 0 })
        .await
        .unwrap()
        .into_inner();
    let first = feed.message().await.unwrap().unwrap();
    assert_eq!(first.change.unwrap().revision, 1);
    // The consumer stays connected; the server must still stop, and tell it why.
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("the server stops within 10 s although a feed is open");
    match feed.message().await {
        Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        Ok(message) => panic!("the feed went on after the stop: {message:?}"),
    }
}

/// The services the reflection service of version `$module` (of `tonic_reflection::pb`) lists
/// on `$channel`. grpcurl 1.8 speaks v1alpha; newer clients v1.
macro_rules! reflected_services {
    ($module:ident, $channel:expr) => {{
        use tonic_reflection::pb::$module as reflection;
        let mut client =
            reflection::server_reflection_client::ServerReflectionClient::new($channel);
        let request = reflection::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                reflection::server_reflection_request::MessageRequest::ListServices(String::new()),
            ),
        };
        let mut responses = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        match responses.message().await.unwrap().unwrap().message_response {
            Some(
                reflection::server_reflection_response::MessageResponse::ListServicesResponse(list),
            ) => {
                let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
                names.sort();
                names
            }
            other => panic!("unexpected reflection answer {other:?}"),
        }
    }};
}

async fn reflection_v1_and_v1alpha_list_every_service(backend: Backend) {
    let app = spawn_app(backend).await;
    let expected = |version: &str| {
        vec![
            "grpc.health.v1.Health".to_owned(),
            format!("grpc.reflection.{version}.ServerReflection"),
            "mandate.v1.ContractorService".to_owned(),
            "mandate.v1.IdentityService".to_owned(),
            "mandate.v1.PermissionService".to_owned(),
        ]
    };
    assert_eq!(reflected_services!(v1, app.channel.clone()), expected("v1"));
    assert_eq!(
        reflected_services!(v1alpha, app.channel.clone()),
        expected("v1alpha")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_unavailable_changes_nothing_and_passes_on_postgres() {
    let database = TestDatabase::new(Backend::Postgres).await;
    // The server reaches PostgreSQL through a proxy the test can cut.
    let (credentials, rest) = database.url.split_once('@').unwrap();
    let (server, name) = rest.split_once('/').unwrap();
    let proxy = Proxy::start(server).await;
    let mut settings = database.settings();
    settings.database_url = format!("{credentials}@{}/{name}", proxy.address());
    settings.database_wait_ms = 500;
    let mut app = start_with(database, &settings).await;
    let ana = app.customer("ana").await;
    let register = |subject: &str| RegisterCustomerRequest {
        external_subject: subject.to_owned(),
        display_name: "Ben".into(),
        email: "ben@example.ca".into(),
    };

    proxy.cut();
    let read = app
        .identity
        .get_customer(GetCustomerRequest {
            customer_id: ana.customer_id.clone(),
        })
        .await;
    let status = expect_code(read, Code::Unavailable);
    assert!(
        !status.message().contains("127.0.0.1"),
        "database detail leaked: {status:?}"
    );
    expect_code(
        app.identity.register_customer(register("ben")).await,
        Code::Unavailable,
    );
    // A batch of checks fails whole, so that the caller retries, rather than answering OK
    // with an error in every item.
    let item = CheckPermissionRequest {
        customer_id: ana.customer_id.clone(),
        permission: mandate::pb::Permission::Pay as i32,
        contractor_id: "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b".into(),
        application_id: String::new(),
        at_least_revision: 0,
    };
    let batch = app
        .permissions
        .check_permissions(CheckPermissionsRequest {
            items: vec![item.clone(), item],
        })
        .await;
    expect_code(batch, Code::Unavailable);

    proxy.restore().await;
    let read = app
        .identity
        .get_customer(GetCustomerRequest {
            customer_id: ana.customer_id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(read.into_inner().customer.unwrap(), ana);
    // The registration refused during the outage left nothing behind.
    let again = app
        .identity
        .register_customer(register("ben"))
        .await
        .unwrap();
    assert_eq!(again.into_inner().revision, 2);
}

async fn a_server_with_another_pin_secret_refuses_to_start(backend: Backend) {
    let mut app = spawn_app(backend).await;
    app.story().await;
    let database = app.stop().await;
    let mut settings = database.settings();
    settings.pin_secret = Some("00".repeat(32).parse().unwrap());
    match mandate::server::Application::build(&settings).await {
        Ok(_) => panic!("a server with another PIN secret started"),
        Err(err) => {
            let message = err.to_string();
            assert!(message.contains("PIN secret differs"), "{message}");
            assert!(
                !message.contains(&"00".repeat(32)),
                "the secret leaked: {message}"
            );
        }
    }
    // The original secret still works.
    let mut app = crate::helpers::start_on(database).await;
    app.customer("still-here").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_pin_secret_is_refused_without_being_echoed() {
    let database = TestDatabase::new(Backend::Sqlite).await;
    // Almost a secret: one character short, the kind of value an operator mistypes.
    let secret = "5e6f7a8b9c0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f901";
    let by_flag = ["--database-url", &database.url, "--pin-secret", secret];
    let by_env = ["--database-url", &database.url];
    for (args, envs) in [
        (&by_flag[..], &[][..]),
        (&by_env[..], &[("MANDATE_PIN_SECRET", secret)][..]),
    ] {
        let output = crate::process::mandate_command(args, envs)
            .output()
            .expect("run mandate");
        assert!(!output.status.success(), "a malformed secret was accepted");
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            printed.contains("MANDATE_PIN_SECRET (--pin-secret) is malformed"),
            "the error says what is wrong: {printed}"
        );
        assert!(
            !printed.contains(&secret[..16]),
            "the secret was echoed: {printed}"
        );
    }
}

/// #17: the SQLite database holds every name, email and address: it is created readable by its
/// owner alone (it was 0644), and so are its write-ahead log and shared-memory files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_sqlite_database_is_readable_by_its_owner_alone() {
    use std::os::unix::fs::PermissionsExt;
    let mut app = spawn_app(Backend::Sqlite).await;
    app.customer("private").await;
    let file = std::path::PathBuf::from(&app.database().name);
    for path in [
        file.clone(),
        file.with_extension("db-wal"),
        file.with_extension("db-shm"),
    ] {
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
    }
}

/// #17: a SQLite database whose secret file went missing is refused before anything is written:
/// no fresh secret beside it (a later start would find that one and refuse on it), and the
/// original secret, put back, still opens every PIN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_whose_secret_file_is_missing_is_refused_and_no_new_secret_is_written() {
    let mut app = spawn_app(Backend::Sqlite).await;
    app.story().await;
    let database = app.stop().await;
    let secret = std::path::PathBuf::from(format!("{}.secret", database.name));
    let kept = std::fs::read(&secret).expect("the secret file");
    std::fs::remove_file(&secret).expect("lose the secret file");
    match mandate::server::Application::build(&database.settings()).await {
        Ok(_) => panic!("a server started without the database's secret"),
        Err(err) => {
            let message = err.to_string();
            assert!(message.contains("is missing"), "{message}");
            assert!(message.contains(&secret.display().to_string()), "{message}");
        }
    }
    assert!(!secret.exists(), "no new secret was written");
    std::fs::write(&secret, kept).expect("restore the secret");
    let mut app = crate::helpers::start_on(database).await;
    app.customer("after-restore").await;
}
