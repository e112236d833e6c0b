//! What the operator runs and watches: the metrics and probes listener, request ids, `mandate
//! config` and its reference, `mandate probe`, `mandate backup`, and start-up failures that
//! name their cause.

use mandate::pb::identity_service_client::IdentityServiceClient;
use mandate::pb::{self, GetCustomerRequest, RegisterCustomerRequest, WatchChangesRequest};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use tonic::Code;

use crate::helpers::{
    Backend, TestDatabase, as_customer, channel_to, expect_code, series, spawn_app, spawn_app_with,
    with_key,
};
use crate::newcomer::tempfile_dir;
use crate::on_both_backends;
use crate::process::{ServerProcess, mandate_command};

on_both_backends!(
    the_metrics_count_calls_decisions_refusals_and_the_pool,
    a_call_gets_its_request_id_back_or_a_new_one,
);

fn check_series(method: &str, code: &str) -> String {
    format!(
        "grpc_server_handled_total{{grpc_service=\"mandate.v1.PermissionService\",\
         grpc_method=\"{method}\",transport=\"grpc\",grpc_code=\"{code}\"}}"
    )
}

async fn the_metrics_count_calls_decisions_refusals_and_the_pool(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    app.set_permissions(&manager, &contractor, &associate, &[pb::Permission::Pay])
        .await
        .expect("grant Pay");
    for _ in 0..3 {
        app.check(&associate, pb::Permission::Pay, &contractor, "")
            .await
            .expect("an allowed check");
    }
    app.check(&associate, pb::Permission::Apply, &contractor, "")
        .await
        .expect("a denied check");
    expect_code(
        app.check(&associate, pb::Permission::Pay, "not-an-id", "")
            .await,
        Code::InvalidArgument,
    );
    // No key: refused before the service.
    let mut anonymous = IdentityServiceClient::new(app.channel.clone());
    expect_code(
        anonymous
            .get_customer(GetCustomerRequest {
                customer_id: manager.clone(),
            })
            .await,
        Code::Unauthenticated,
    );
    // A wrong PIN.
    expect_code(
        app.contractors
            .associate_by_pin(as_customer(
                &associate,
                pb::AssociateByPinRequest {
                    pin: "Q4WE-3CVY-HW".into(),
                },
            ))
            .await,
        Code::NotFound,
    );
    // A change feed held open while the metrics are read.
    let mut feed = app
        .permissions
        .watch_changes(WatchChangesRequest { after_revision: 0 })
        .await
        .expect("open a feed")
        .into_inner();
    feed.message()
        .await
        .expect("a change")
        .expect("the feed is open");

    let (status, text) = app.http_get("/metrics").await;
    assert_eq!(status, 200, "{text}");
    let expect = |name: &str, value: f64| {
        assert_eq!(series(&text, name), Some(value), "{name} in:\n{text}");
    };
    expect(&check_series("CheckPermission", "OK"), 4.0);
    expect(&check_series("CheckPermission", "INVALID_ARGUMENT"), 1.0);
    expect(&check_series("SetPermissions", "OK"), 1.0);
    expect(
        "grpc_server_handling_seconds_count{grpc_service=\"mandate.v1.PermissionService\",\
         grpc_method=\"CheckPermission\",transport=\"grpc\"}",
        5.0,
    );
    expect(
        "grpc_server_handled_total{grpc_service=\"mandate.v1.IdentityService\",\
         grpc_method=\"GetCustomer\",transport=\"grpc\",grpc_code=\"UNAUTHENTICATED\"}",
        1.0,
    );
    expect(
        "mandate_decisions_total{permission=\"PERMISSION_PAY\",\
         reason=\"CHECK_REASON_GRANTED_DIRECTLY\"}",
        3.0,
    );
    expect(
        "mandate_decisions_total{permission=\"PERMISSION_APPLY\",\
         reason=\"CHECK_REASON_PERMISSION_NOT_HELD\"}",
        1.0,
    );
    expect(
        "mandate_refused_calls_total{cause=\"unauthenticated\"}",
        1.0,
    );
    expect(
        "mandate_pin_entries_refused_total{cause=\"wrong_pin\"}",
        1.0,
    );
    expect("mandate_watch_streams_open", 1.0);
    expect("mandate_db_pool_max_connections", 16.0);
    let idle = series(&text, "mandate_db_pool_connections{state=\"idle\"}");
    let in_use = series(&text, "mandate_db_pool_connections{state=\"in_use\"}");
    assert!(
        matches!((idle, in_use), (Some(idle), Some(in_use)) if idle + in_use >= 1.0),
        "the pool's connections in:\n{text}"
    );
    let hits = series(&text, "mandate_cache_hits_total").expect("cache hits");
    let misses = series(&text, "mandate_cache_misses_total").expect("cache misses");
    assert_eq!(
        hits + misses,
        4.0,
        "every decided check went through the cache"
    );
    assert!(
        series(&text, "mandate_db_write_wait_seconds_count").is_some_and(|writes| writes >= 4.0),
        "the writes' waits in:\n{text}"
    );
    assert!(
        text.ends_with("# EOF\n"),
        "a complete OpenMetrics exposition"
    );

    // The feed ends: no stream is left counted.
    drop(feed);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, text) = app.http_get("/metrics").await;
        if series(&text, "mandate_watch_streams_open") == Some(0.0) {
            assert!(
                series(
                    &text,
                    "grpc_server_handled_total{grpc_service=\"mandate.v1.PermissionService\",\
                     grpc_method=\"WatchChanges\",transport=\"grpc\",grpc_code=\"CANCELLED\"}"
                ) == Some(1.0),
                "a feed the client closed is CANCELLED:\n{text}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the closed feed is still counted"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(app.probe("/healthz").await.0, 200);
    assert_eq!(app.probe("/readyz").await.0, 200);
    app.stop().await;
}

async fn a_call_gets_its_request_id_back_or_a_new_one(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let customer = app.customer("ids").await.customer_id;
    let get = |id: Option<&str>| {
        let mut request = tonic::Request::new(GetCustomerRequest {
            customer_id: customer.clone(),
        });
        if let Some(id) = id {
            request
                .metadata_mut()
                .insert("x-request-id", id.parse().expect("a metadata value"));
        }
        request
    };
    let returned = |response: &tonic::Response<pb::GetCustomerResponse>| {
        response
            .metadata()
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .expect("a request id")
    };
    let own = app
        .identity
        .get_customer(get(Some("portal-7f3a")))
        .await
        .expect("get");
    assert_eq!(returned(&own), "portal-7f3a");
    let first = returned(&app.identity.get_customer(get(None)).await.expect("get"));
    let second = returned(&app.identity.get_customer(get(None)).await.expect("get"));
    assert!(!first.is_empty() && first != second, "{first} and {second}");
    // Not repeated: one that would not fit a log line.
    let long = "x".repeat(300);
    let replaced = returned(
        &app.identity
            .get_customer(get(Some(&long)))
            .await
            .expect("get"),
    );
    assert_ne!(replaced, long);
    // A refused call carries its id too.
    let mut anonymous = IdentityServiceClient::new(app.channel.clone());
    let status = anonymous
        .get_customer(get(Some("portal-refused")))
        .await
        .expect_err("no key");
    assert_eq!(
        status
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("portal-refused")
    );
    app.stop().await;
}

/// Runs `mandate` with `args` and the environment `envs`; (succeeded, stdout, stderr).
fn run(args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let output = mandate_command(args, envs).output().expect("run mandate");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn config_prints_the_effective_settings_with_secrets_redacted() {
    let secret = "5e6f7a8b9c0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9012";
    let (ok, out, err) = run(
        &["config", "--max-calls", "64"],
        &[
            (
                "DATABASE_URL",
                "postgres://app:hunter2@db.internal:5432/permits",
            ),
            ("MANDATE_PIN_SECRET", secret),
        ],
    );
    assert!(ok, "{err}");
    assert!(!out.contains("hunter2") && !out.contains(secret), "{out}");
    let line = |name: &str| {
        out.lines()
            .find(|line| line.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in:\n{out}"))
            .to_owned()
    };
    assert!(
        line("MANDATE_MAX_CALLS").contains("=64 ")
            && line("MANDATE_MAX_CALLS").contains("command line")
    );
    assert!(
        line("DATABASE_URL").starts_with("DATABASE_URL=postgres://app@db.internal:5432/permits ")
    );
    assert!(line("DATABASE_URL").contains("environment, password redacted"));
    assert!(line("MANDATE_PIN_SECRET").starts_with("MANDATE_PIN_SECRET=<redacted> "));
    assert!(
        line("MANDATE_LISTEN").contains("127.0.0.1:50051")
            && line("MANDATE_LISTEN").contains("default")
    );
}

#[test]
fn config_redacts_a_password_given_in_the_query_and_a_collector_credential() {
    let (ok, out, err) = run(
        &["config"],
        &[
            (
                "DATABASE_URL",
                "postgres://app@db.internal/permits?password=hunter3",
            ),
            (
                "MANDATE_OTLP_ENDPOINT",
                "https://collector:t0ken@otel.internal:4317",
            ),
        ],
    );
    assert!(ok, "{err}");
    assert!(!out.contains("hunter3") && !out.contains("t0ken"), "{out}");
    assert!(
        out.contains("DATABASE_URL=postgres://app@db.internal/permits "),
        "{out}"
    );
}

#[test]
fn an_invalid_setting_stops_the_start_naming_it_and_what_it_accepts() {
    let (ok, _, err) = run(&["config"], &[("MANDATE_LOG_FORMAT", "xml")]);
    assert!(!ok);
    assert!(
        err.contains("--log-format") && err.contains("auto, text, json"),
        "{err}"
    );
    let (ok, _, err) = run(&["serve", "--metrics-listen", "everywhere"], &[]);
    assert!(!ok);
    assert!(
        err.contains("--metrics-listen") && err.contains("`off`"),
        "{err}"
    );
    let (ok, _, err) = run(&["--pin-attempts", "0", "serve"], &[]);
    assert!(!ok);
    assert!(
        err.contains("--pin-attempts") && err.contains("1.."),
        "{err}"
    );
}

#[test]
fn the_configuration_reference_matches_the_settings() {
    let (ok, out, err) = run(&["config", "--reference"], &[]);
    assert!(ok, "{err}");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
    let written = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        written == out,
        "docs/configuration.md is out of date: run `cargo run -- config --reference > \
         docs/configuration.md`"
    );
    for variable in [
        "DATABASE_URL",
        "MANDATE_METRICS_LISTEN",
        "MANDATE_LOG_FORMAT",
    ] {
        assert!(out.contains(&format!("`{variable}`")), "{variable}");
    }
}

#[test]
fn the_log_is_json_when_asked() {
    let dir = tempfile_dir();
    let url = format!("sqlite://{}/json.db?mode=rwc", dir.display());
    let (ok, _, err) = run(
        &["migrate", "--database-url", &url],
        &[("MANDATE_LOG_FORMAT", "json")],
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert!(!lines.is_empty());
    for line in lines {
        assert!(
            line.starts_with('{') && line.ends_with('}') && line.contains("\"level\":"),
            "not a JSON object: {line}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_and_backup_work_against_a_running_sqlite_server() {
    let database = TestDatabase::new(Backend::Sqlite).await;
    let server = ServerProcess::start(&database, &[]).await;
    let probes = server
        .probe_address()
        .expect("the server logs its probe address");
    let mut identity =
        IdentityServiceClient::new(with_key(channel_to(server.address).await, &database.key()));
    let customer = identity
        .register_customer(RegisterCustomerRequest {
            external_subject: "oidc|kept".into(),
            display_name: "Kept".into(),
            email: "kept@example.ca".into(),
        })
        .await
        .expect("register")
        .into_inner()
        .customer
        .expect("a customer")
        .customer_id;

    let probe_flag = probes.to_string();
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || run(&["probe", "--probe-listen", &probe_flag], &[]))
            .await
            .expect("probe");
    assert!(ok && out.contains("ready"), "{out} {err}");

    let copy = database.dir().join("copy.db");
    let copy_flag = copy.display().to_string();
    let url = database.url.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        run(&["backup", &copy_flag, "--database-url", &url], &[])
    })
    .await
    .expect("backup");
    assert!(ok, "{out} {err}");
    let secret = database.dir().join("copy.db.secret");
    assert!(copy.exists() && secret.exists(), "{out}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&secret)
            .expect("the secret copy")
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0, "the secret copy is private");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&copy).expect("the copy").permissions(),
    );
    assert_eq!(mode & 0o077, 0, "the copy is private");
    // A database that is not there is not created to be backed up.
    let nowhere = format!("sqlite://{}/nowhere.db?mode=rwc", database.dir().display());
    let elsewhere = database.dir().join("elsewhere.db").display().to_string();
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        run(&["backup", &elsewhere, "--database-url", &nowhere], &[])
    })
    .await
    .expect("backup of nothing");
    assert!(!ok && err.contains("no SQLite database"), "{err}");
    assert!(!database.dir().join("nowhere.db").exists());
    assert!(!database.dir().join("nowhere.db.secret").exists());
    // Again onto the same file: refused, nothing overwritten.
    let (copy_flag, url) = (copy.display().to_string(), database.url.clone());
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        run(&["backup", &copy_flag, "--database-url", &url], &[])
    })
    .await
    .expect("backup again");
    assert!(!ok && err.contains("exists"), "{err}");
    server.stop().await;

    // The copy with its secret is a database a server starts on, with the customer in it.
    let copy_url = format!("sqlite://{}?mode=rwc", copy.display());
    let restored = ServerProcess::start_url(&copy_url, &database.dir().join("copy.key")).await;
    let key = std::fs::read_to_string(database.key_file()).expect("the original key");
    let mut identity =
        IdentityServiceClient::new(with_key(channel_to(restored.address).await, key.trim()));
    let found = identity
        .get_customer(GetCustomerRequest {
            customer_id: customer.clone(),
        })
        .await
        .expect("the customer is in the copy");
    assert_eq!(
        found.into_inner().customer.map(|c| c.customer_id),
        Some(customer)
    );
    let log = restored.whole_log_after_stop().await;
    assert!(
        !log.iter()
            .any(|line| line.contains("generated a new PIN secret")),
        "the copy's secret was used: {log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_on_postgres_points_to_pg_dump() {
    let database = TestDatabase::new(Backend::Postgres).await;
    let url = database.url.clone();
    let target = database.dir().join("never.db").display().to_string();
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        run(
            &["backup", &target, "--database-url", &url],
            &[(
                "MANDATE_PIN_SECRET",
                "5e6f7a8b9c0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9012",
            )],
        )
    })
    .await
    .expect("backup");
    assert!(!ok && err.contains("pg_dump"), "{err}");
    assert!(!database.dir().join("never.db").exists());
}

#[test]
fn start_up_failures_name_their_cause() {
    let dir = tempfile_dir();
    let cases = [
        (
            "mysql://db/permits".to_owned(),
            "must start with `sqlite://` or `postgres://`, not `mysql`",
        ),
        (
            format!("sqlite://{}/missing/m.db?mode=rwc", dir.display()),
            "of the SQLite database does not exist",
        ),
        (
            format!("sqlite://{}/m.db", dir.display()),
            "add `?mode=rwc`",
        ),
        (
            "postgres://postgres@127.0.0.1:5432/mandate_no_such_database".to_owned(),
            "has no database `mandate_no_such_database`: create it",
        ),
        (
            "postgres://postgres@127.0.0.1:1/test".to_owned(),
            "nothing accepts connections at 127.0.0.1:1",
        ),
    ];
    for (url, cause) in cases {
        let (ok, _, err) = run(
            &[
                "migrate",
                "--database-url",
                &url,
                "--database-wait-ms",
                "300",
            ],
            &[(
                "MANDATE_PIN_SECRET",
                "5e6f7a8b9c0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9012",
            )],
        );
        assert!(!ok, "{url} started");
        assert!(err.contains(cause), "{url}: {err}");
        assert!(!err.contains("PIN secret"), "{url}: {err}");
    }
    assert!(
        std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0) == 0,
        "a failed start left files behind"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stand-in OpenTelemetry collector: every export it receives goes to `spans`.
struct Collector {
    spans: tokio::sync::mpsc::UnboundedSender<ExportTraceServiceRequest>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.spans.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The string value of a span's attribute `key`.
fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
        .and_then(|value| match value {
            any_value::Value::StringValue(text) => Some(text.clone()),
            _ => None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_spans_go_to_an_otlp_collector_when_one_is_named() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port for the collector");
    let collector = listener.local_addr().expect("the collector's address");
    let (spans, mut received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector { spans }))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let database = TestDatabase::new(Backend::Sqlite).await;
    let endpoint = format!("http://{collector}");
    let server = ServerProcess::start(&database, &["--otlp-endpoint", &endpoint]).await;
    let mut identity =
        IdentityServiceClient::new(with_key(channel_to(server.address).await, &database.key()));
    let mut request = tonic::Request::new(RegisterCustomerRequest {
        external_subject: "oidc|traced".into(),
        display_name: "Traced".into(),
        email: "traced@example.ca".into(),
    });
    request
        .metadata_mut()
        .insert("x-request-id", "trace-me-1".parse().expect("metadata"));
    identity.register_customer(request).await.expect("register");
    // Stopping flushes what is queued.
    server.stop().await;
    let found = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(export) = received.recv().await {
            for resource in export.resource_spans {
                for scope in resource.scope_spans {
                    for span in scope.spans {
                        if span.name == "rpc"
                            && attribute(&span, "request_id").as_deref() == Some("trace-me-1")
                        {
                            return Some(span);
                        }
                    }
                }
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("the call's span reached the collector");
    assert_eq!(
        attribute(&found, "method").as_deref(),
        Some("/mandate.v1.IdentityService/RegisterCustomer")
    );
    assert_eq!(attribute(&found, "client").as_deref(), Some("bootstrap"));
    assert_eq!(attribute(&found, "code").as_deref(), Some("OK"));
}

/// A thousand connections to the metrics listener that never send a request: the probes and
/// the scrape still answer while they are open, and the server closes every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_to_the_metrics_listener_are_closed_and_probes_still_answer() {
    use tokio::io::AsyncReadExt;
    let app = spawn_app(Backend::Sqlite).await;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(
            tokio::net::TcpStream::connect(app.metrics_address)
                .await
                .expect("an idle connection"),
        );
    }
    assert_eq!(app.probe("/readyz").await.0, 200);
    let (status, text) = app.http_get("/metrics").await;
    assert_eq!(status, 200, "{text}");
    let closed = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        for mut socket in idle {
            let mut byte = [0u8; 1];
            assert_eq!(
                socket.read(&mut byte).await.unwrap_or(0),
                0,
                "the server sent something unasked"
            );
        }
    })
    .await;
    assert!(closed.is_ok(), "the server left idle connections open");
    app.stop().await;
}

/// A unary call cut off by its client's deadline while it waits on the database is counted as
/// handled, `CANCELLED` (what tonic answers for it), not left started for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cut_off_by_its_deadline_is_counted_as_handled() {
    let mut app = spawn_app(Backend::Postgres).await;
    let blocker = app.hold_revision_lock().await;
    let mut request = tonic::Request::new(RegisterCustomerRequest {
        external_subject: "oidc|late".into(),
        display_name: "Late".into(),
        email: "late@example.ca".into(),
    });
    request.set_timeout(std::time::Duration::from_millis(300));
    let status = app
        .identity
        .register_customer(request)
        .await
        .expect_err("the write waits past the deadline");
    assert!(
        matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{status:?}"
    );
    app.calls_cut_off("mandate.v1.IdentityService", "RegisterCustomer", 1.0)
        .await;
    blocker.commit().await.expect("release the revision lock");
    let (_, text) = app.http_get("/metrics").await;
    assert_eq!(
        series(
            &text,
            "grpc_server_started_total{grpc_service=\"mandate.v1.IdentityService\",\
             grpc_method=\"RegisterCustomer\",transport=\"grpc\"}"
        ),
        Some(1.0),
        "{text}"
    );
    app.stop().await;
}

/// A stopping server says so at once: a load balancer watching Health hears `NOT_SERVING`
/// while the calls in flight finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_reports_not_serving_to_health_watchers() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.shutdown_grace_ms = 500;
    })
    .await;
    let mut health = HealthClient::new(app.channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch Health")
        .into_inner();
    let first = watch
        .message()
        .await
        .expect("a status")
        .expect("the watch is open");
    assert_eq!(first.status(), ServingStatus::Serving);
    let stopping = tokio::spawn(app.stop());
    let next = watch
        .message()
        .await
        .expect("a status")
        .expect("the watch is still open");
    assert_eq!(next.status(), ServingStatus::NotServing);
    stopping.await.expect("the server stops");
}

/// One keep-alive client asking `GET path` again and again until `end`, connecting again
/// whenever the server closes its connection; how many answers it read.
async fn hammer(address: std::net::SocketAddr, path: &str, end: tokio::time::Instant) -> u64 {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let request = format!("GET {path} HTTP/1.1\r\nHost: hammer\r\n\r\n");
    let mut answers = 0;
    'connect: while tokio::time::Instant::now() < end {
        let Ok(stream) = tokio::net::TcpStream::connect(address).await else {
            tokio::task::yield_now().await;
            continue;
        };
        let mut stream = BufReader::new(stream);
        while tokio::time::Instant::now() < end {
            if stream
                .get_mut()
                .write_all(request.as_bytes())
                .await
                .is_err()
            {
                continue 'connect;
            }
            let mut length = 0;
            loop {
                let mut line = String::new();
                match stream.read_line(&mut line).await {
                    Ok(0) | Err(_) => continue 'connect,
                    Ok(_) => {}
                }
                if line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if stream.read_exact(&mut body).await.is_err() {
                continue 'connect;
            }
            answers += 1;
        }
    }
    answers
}

/// The attack of #17: 200 keep-alive scrapers looping on `/metrics` and 300 connections that
/// never finish their request, against the metrics listener, while the probes are asked: every
/// probe answers (before, 72 of 73 liveness probes failed, and Kubernetes would have restarted
/// every replica).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_while_scrapers_flood_the_metrics_listener() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app(Backend::Sqlite).await;
    let metrics = app.metrics_address;
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut scrapers = tokio::task::JoinSet::new();
    for _ in 0..200 {
        scrapers.spawn(async move { hammer(metrics, "/metrics", end).await });
    }
    let mut half_sent = Vec::new();
    for _ in 0..300 {
        if let Ok(mut socket) = tokio::net::TcpStream::connect(metrics).await {
            let _ = socket
                .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
                .await;
            half_sent.push(socket);
        }
    }
    for n in 0..20 {
        let path = if n % 2 == 0 { "/healthz" } else { "/readyz" };
        let (status, body) = app.probe(path).await;
        assert_eq!(status, 200, "{path} during the flood: {body}");
    }
    let mut scrapes = 0;
    while let Some(scraper) = scrapers.join_next().await {
        scrapes += scraper.expect("a scraper");
    }
    assert!(scrapes > 0, "the scrapers were answered too");
    drop(half_sent);
    app.stop().await;
}
