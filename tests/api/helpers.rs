//! `spawn_app`: a fresh database, migrated, behind a real server on port 0, with clients.

use std::path::PathBuf;

use mandate::CUSTOMER_HEADER;
use mandate::pb::contractor_service_client::ContractorServiceClient;
use mandate::pb::identity_service_client::IdentityServiceClient;
use mandate::pb::permission_service_client::PermissionServiceClient;
use mandate::pb::{
    self, AssociateByPinRequest, CheckPermissionRequest, CheckPermissionResponse,
    RegisterContractorResponse, SetPermissionsRequest, SetPermissionsResponse,
};
use mandate::server::Application;
use mandate::settings::{LogFormat, Policy, Settings};
use sea_orm::{ConnectionTrait, Database, DatabaseTransaction, Statement, TransactionTrait};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

/// Where the tests create their PostgreSQL databases.
fn postgres_admin_url() -> String {
    std::env::var("MANDATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn name(backend: Backend)` of the enclosing module as two tests,
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )*
        }
    };
}

/// A fresh database that is dropped (PostgreSQL) or deleted (SQLite) with the test.
pub struct TestDatabase {
    pub backend: Backend,
    pub url: String,
    /// The SQLite file or PostgreSQL database name.
    pub name: String,
    dir: PathBuf,
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> Self {
        let unique = uuid::Uuid::now_v7().simple().to_string();
        // The SQLite file, or the bootstrap key file of a PostgreSQL test, lives here.
        let dir = std::env::temp_dir().join(format!("mandate-test-{unique}"));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        match backend {
            Backend::Sqlite => {
                let file = dir.join("mandate.db");
                Self {
                    backend,
                    url: format!("sqlite://{}?mode=rwc", file.display()),
                    name: file.display().to_string(),
                    dir,
                }
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("mandate_test_{unique}");
                let db = Database::connect(&admin).await.expect(
                    "PostgreSQL must be reachable at MANDATE_TEST_POSTGRES_URL or 127.0.0.1:5432",
                );
                db.execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create the test database");
                db.close().await.expect("close the admin connection");
                let base = admin.split('?').next().unwrap_or(&admin);
                let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
                Self {
                    backend,
                    url: format!("{server}/{name}"),
                    name,
                    dir,
                }
            }
        }
    }

    /// A private directory that lives as long as the database.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Where servers on this database write the bootstrap API key.
    pub fn key_file(&self) -> PathBuf {
        self.dir.join("bootstrap-key")
    }

    /// The bootstrap API key a server on this database wrote.
    pub fn key(&self) -> String {
        std::fs::read_to_string(self.key_file())
            .expect("the bootstrap key file")
            .trim()
            .to_owned()
    }

    /// The settings of a server on port 0 over this database.
    pub fn settings(&self) -> Settings {
        Settings {
            listen: "127.0.0.1:0".parse().expect("a valid address"),
            metrics_listen: "127.0.0.1:0".parse().expect("a valid address"),
            probe_listen: "127.0.0.1:0".parse().expect("a valid address"),
            http_listen: "127.0.0.1:0".parse().expect("a valid address"),
            cors_origins: Vec::new(),
            log_format: LogFormat::Text,
            otlp_endpoint: None,
            database_url: self.url.clone(),
            // SQLite keeps its generated secret beside the database; PostgreSQL needs one given.
            pin_secret: match self.backend {
                Backend::Sqlite => None,
                Backend::Postgres => Some(
                    "5e6f7a8b9c0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9012"
                        .parse()
                        .expect("a valid secret"),
                ),
            },
            pin_secret_file: None,
            bootstrap_key_file: Some(self.key_file()),
            reflection: true,
            pin_attempts: 10,
            pin_lockout_secs: 900,
            pin_failure_alert: 100,
            pin_failure_window_secs: 60,
            client_pin_failures: 300,
            client_pin_window_secs: 600,
            client_pin_standing_hours: 24,
            managerless_policy: Policy::Manager,
            database_wait_ms: 5000,
            database_pool_size: 16,
            cache_size: 1_000_000,
            cache_staleness_ms: 1000,
            denied_check_queue: 10_000,
            denied_check_window_secs: 10,
            denied_check_retention_days: 90,
            handshake_timeout_ms: 10_000,
            idle_timeout_ms: 300_000,
            keepalive_ms: 30_000,
            max_connections: 4096,
            shutdown_grace_ms: 10_000,
            max_calls: 512,
            max_streams_per_connection: 128,
            max_feeds_per_client: 16,
            tls: mandate::settings::tls::TlsSettings::default(),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if self.backend == Backend::Postgres {
            let name = self.name.clone();
            // Drop runs inside the test's runtime; a thread of its own may block on a new one.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime to drop the test database");
                runtime.block_on(async {
                    if let Ok(db) = Database::connect(&postgres_admin_url()).await {
                        let _ = db
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .await;
                        let _ = db.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// A running server and clients connected to it.
pub struct TestApp {
    address: std::net::SocketAddr,
    /// Where the server serves its metrics and probes.
    pub metrics_address: std::net::SocketAddr,
    /// Where the server serves its probes.
    pub probe_address: std::net::SocketAddr,
    /// Where the server serves the HTTP/JSON API and gRPC-Web.
    pub http_address: std::net::SocketAddr,
    /// The server's store, for injecting faults into its connections.
    pub store: mandate_store::Store,
    /// The server's live API keys, to reload at once after a test changes them.
    pub keys: std::sync::Arc<mandate::credentials::keys::KeyRing>,
    pub identity: IdentityServiceClient<Authed>,
    pub contractors: ContractorServiceClient<Authed>,
    pub permissions: PermissionServiceClient<Authed>,
    /// The connection, without a key: for Health and reflection, which need none.
    pub channel: Channel,
    /// The bootstrap key, with every scope, that the clients above present.
    pub key: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    /// `Some` for the server that owns the database, until `stop` hands it back; declared last,
    /// so dropped after the server stops.
    database: Option<TestDatabase>,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    start_on(TestDatabase::new(backend).await).await
}

/// `spawn_app` with settings adjusted by `adjust`.
pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let database = TestDatabase::new(backend).await;
    let mut settings = database.settings();
    adjust(&mut settings);
    start_with(database, &settings).await
}

/// Starts a server over an existing test database.
pub async fn start_on(database: TestDatabase) -> TestApp {
    let settings = database.settings();
    start_with(database, &settings).await
}

/// Starts a server over a test database with adjusted settings.
pub async fn start_with(database: TestDatabase, settings: &Settings) -> TestApp {
    init_test_log();
    let app = Application::build(settings)
        .await
        .expect("the server starts");
    let key = database.key();
    serve(app, Some(database), key, None).await
}

/// Starts a server whose settings turn TLS on; its clients connect over TLS with `client`.
pub async fn start_with_tls(
    database: TestDatabase,
    settings: &Settings,
    client: ClientTlsConfig,
) -> TestApp {
    init_test_log();
    let app = Application::build(settings)
        .await
        .expect("the server starts");
    let key = database.key();
    serve(app, Some(database), key, Some(client)).await
}

/// Starts two servers over one fresh database at the same moment, as two replicas would;
/// the first owns the database.
pub async fn start_replicas(database: TestDatabase) -> (TestApp, TestApp) {
    start_replicas_with(database, |_| {}).await
}

/// Two replicas over `database`, with settings changed by `adjust`.
pub async fn start_replicas_with(
    database: TestDatabase,
    adjust: impl FnOnce(&mut Settings),
) -> (TestApp, TestApp) {
    init_test_log();
    let mut settings = database.settings();
    adjust(&mut settings);
    let (first, second) =
        tokio::join!(Application::build(&settings), Application::build(&settings));
    let key = database.key();
    let first = serve(
        first.expect("the first replica starts"),
        Some(database),
        key.clone(),
        None,
    )
    .await;
    let second = serve(second.expect("the second replica starts"), None, key, None).await;
    (first, second)
}

async fn serve(
    app: Application,
    database: Option<TestDatabase>,
    key: String,
    tls: Option<ClientTlsConfig>,
) -> TestApp {
    let address = app.address();
    let metrics_address = app
        .metrics_address()
        .expect("test servers serve their metrics");
    let probe_address = app
        .probe_address()
        .expect("test servers serve their probes");
    let http_address = app.http_address().expect("test servers serve the HTTP API");
    let store = app.store();
    let keys = app.keys();
    let (stop, stopped) = oneshot::channel();
    let server = tokio::spawn(async move {
        app.run_until(async {
            let _ = stopped.await;
        })
        .await
        .expect("the server runs");
    });
    let channel = match tls {
        None => channel_to(address).await,
        Some(tls) => tls_channel(address, tls)
            .connect()
            .await
            .expect("connect to the server over TLS"),
    };
    TestApp {
        address,
        metrics_address,
        probe_address,
        http_address,
        store,
        keys,
        identity: IdentityServiceClient::new(with_key(channel.clone(), &key)),
        contractors: ContractorServiceClient::new(with_key(channel.clone(), &key)),
        permissions: PermissionServiceClient::new(with_key(channel.clone(), &key)),
        channel,
        key,
        stop: Some(stop),
        server: Some(server),
        database,
    }
}

impl TestApp {
    /// Stops the server, waits for it to finish, and hands back its database.
    pub async fn stop(mut self) -> TestDatabase {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("the server stops cleanly");
        }
        self.database
            .take()
            .expect("the database is present until stop")
    }

    /// `GET path` on the server's metrics listener: the status code and the body.
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.metrics_address, path).await
    }

    /// `GET path` on the server's probe listener: the status code and the body.
    pub async fn probe(&self, path: &str) -> (u16, String) {
        http_get(self.probe_address, path).await
    }

    /// Waits until the server has let go of `count` calls to `method` (of `service`) that were
    /// cut off (`CANCELLED`): their futures, and with them their transactions, are dropped.
    pub async fn calls_cut_off(&self, service: &str, method: &str, count: f64) {
        let name = format!(
            "grpc_server_handled_total{{grpc_service=\"{service}\",grpc_method=\"{method}\",transport=\"grpc\",\
             grpc_code=\"CANCELLED\"}}"
        );
        self.metric_reaches(&name, count).await;
    }

    /// Waits until the series `name` of the server's metrics is at least `value` (30 s at most),
    /// and returns the exposition that showed it.
    pub async fn metric_reaches(&self, name: &str, value: f64) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let (_, text) = self.http_get("/metrics").await;
            if series(&text, name).is_some_and(|seen| seen >= value) {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name} did not reach {value}:\n{text}"
            );
            tokio::task::yield_now().await;
        }
    }

    /// The address the server listens on.
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    /// The database behind the server.
    pub fn database(&self) -> &TestDatabase {
        self.database
            .as_ref()
            .expect("the database is present until stop")
    }

    /// Registers a customer for `subject`.
    pub async fn customer(&mut self, subject: &str) -> pb::Customer {
        self.identity
            .register_customer(pb::RegisterCustomerRequest {
                external_subject: subject.to_owned(),
                display_name: format!("Customer {subject}"),
                email: format!("{subject}@example.ca"),
            })
            .await
            .expect("register a customer")
            .into_inner()
            .customer
            .expect("a customer in the response")
    }

    /// Registers a contractor account for `customer_id`.
    pub async fn contractor(&mut self, customer_id: &str) -> RegisterContractorResponse {
        self.contractors
            .register_contractor(as_customer(
                customer_id,
                contractor_request("Rideau Builders Inc."),
            ))
            .await
            .expect("register a contractor")
            .into_inner()
    }
}

impl TestApp {
    /// The revision counter: the revision of the latest change.
    pub async fn revision_counter(&self) -> i64 {
        let db = self.store.connection();
        db.query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT value FROM revision_counter WHERE id = 1",
        ))
        .await
        .expect("the revision counter")
        .expect("the counter's row")
        .try_get_by_index(0)
        .expect("a revision")
    }

    /// A transaction of the test's own, on a connection straight to the database, holding the
    /// revision lock that every writer needs until it is committed or rolled back.
    pub async fn hold_revision_lock(&self) -> DatabaseTransaction {
        let db = Database::connect(&self.database().url)
            .await
            .expect("a connection of the test's own");
        let writer = db.begin().await.expect("a transaction");
        writer
            .execute_unprepared("UPDATE revision_counter SET value = value WHERE id = 1")
            .await
            .expect("the revision lock");
        writer
    }

    /// Links `application_id` to `count` accounts written straight into the database (one
    /// statement each; none has a member), beside whatever links it has: a permit as widely
    /// linked as no API caller would take the time to make.
    pub async fn link_widely(&self, application_id: &str, count: u32) {
        let db = self.store.connection();
        let backend = db.get_database_backend();
        let (now, empty) = match backend {
            sea_orm::DbBackend::Postgres => ("now()", "decode('', 'hex')"),
            _ => ("strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')", "x''"),
        };
        let numbers = format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count})"
        );
        let accounts = format!(
            "{numbers} INSERT INTO contractors (contractor_id, business_name, contact_name, \
             contact_phone, contact_email, street, city, province, postal_code, country, \
             pin_hash, pin_ciphertext, create_time, update_time) \
             SELECT 'wide-' || i, 'Wide ' || i, 'Contact', '+1 613-555-0100', 'w@example.ca', \
             '1 Main St', 'Ottawa', 'ON', 'K1P 1J1', 'CA', 'wide-pin-' || i, {empty}, {now}, \
             {now} FROM n"
        );
        let links = format!(
            "{numbers} INSERT INTO application_links (application_id, contractor_id, link_time) \
             SELECT '{application_id}', 'wide-' || i, {now} FROM n"
        );
        for sql in [accounts, links] {
            db.execute_raw(Statement::from_string(backend, sql))
                .await
                .expect("the wide links");
        }
    }

    /// Links `count` applications (`24-W<n> BLD`) to the account `contractor_id`, written straight
    /// into the database in one statement: an account as widely linked as a large builder's.
    pub async fn link_many(&self, contractor_id: &str, count: u32) {
        let db = self.store.connection();
        let backend = db.get_database_backend();
        let now = match backend {
            sea_orm::DbBackend::Postgres => "now()",
            _ => "strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')",
        };
        let sql = format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) \
             INSERT INTO application_links (application_id, contractor_id, link_time) \
             SELECT '24-W' || i || ' BLD', '{contractor_id}', {now} FROM n"
        );
        db.execute_raw(Statement::from_string(backend, sql))
            .await
            .expect("the links");
    }

    /// Associates `customer_id` with the account whose PIN is `pin`.
    pub async fn associate(&mut self, customer_id: &str, pin: &str) {
        self.contractors
            .associate_by_pin(as_customer(
                customer_id,
                AssociateByPinRequest {
                    pin: pin.to_owned(),
                },
            ))
            .await
            .expect("associate by PIN");
    }

    /// A registered customer, an account it manages, and a second customer associated with it
    /// (no permissions): the guide's starting point. Returns (manager, associate, account, PIN).
    pub async fn story(&mut self) -> (String, String, String, String) {
        let manager = self.customer("manager").await.customer_id;
        let associate = self.customer("associate").await.customer_id;
        let registered = self.contractor(&manager).await;
        let contractor_id = registered.contractor.expect("a contractor").contractor_id;
        self.associate(&associate, &registered.pin).await;
        (manager, associate, contractor_id, registered.pin)
    }

    /// `SetPermissions` as `manager`.
    pub async fn set_permissions(
        &mut self,
        manager: &str,
        contractor_id: &str,
        customer_id: &str,
        permissions: &[pb::Permission],
    ) -> Result<SetPermissionsResponse, Status> {
        self.set_grant(manager, contractor_id, customer_id, permissions, None)
            .await
    }

    /// `SetPermissions` as `manager` of a grant that ends at `end`.
    pub async fn grant_until(
        &mut self,
        manager: &str,
        contractor_id: &str,
        customer_id: &str,
        permissions: &[pb::Permission],
        end: chrono::DateTime<chrono::Utc>,
    ) -> SetPermissionsResponse {
        let end = prost_types::Timestamp {
            seconds: end.timestamp(),
            nanos: i32::try_from(end.timestamp_subsec_nanos()).expect("nanoseconds"),
        };
        self.set_grant(manager, contractor_id, customer_id, permissions, Some(end))
            .await
            .expect("a time-limited grant")
    }

    async fn set_grant(
        &mut self,
        manager: &str,
        contractor_id: &str,
        customer_id: &str,
        permissions: &[pb::Permission],
        expire_time: Option<prost_types::Timestamp>,
    ) -> Result<SetPermissionsResponse, Status> {
        self.permissions
            .set_permissions(as_customer(
                manager,
                SetPermissionsRequest {
                    contractor_id: contractor_id.to_owned(),
                    customer_id: customer_id.to_owned(),
                    permissions: self::permissions(permissions),
                    expire_time,
                },
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    /// `CheckPermission` of `permission` for `customer_id` on an account and/or application.
    pub async fn check(
        &mut self,
        customer_id: &str,
        permission: pb::Permission,
        contractor_id: &str,
        application_id: &str,
    ) -> Result<CheckPermissionResponse, Status> {
        self.permissions
            .check_permission(CheckPermissionRequest {
                customer_id: customer_id.to_owned(),
                permission: permission as i32,
                contractor_id: contractor_id.to_owned(),
                application_id: application_id.to_owned(),
                at_least_revision: 0,
            })
            .await
            .map(tonic::Response::into_inner)
    }
}

/// Asserts a check's decision and reason.
pub fn assert_decision(response: &CheckPermissionResponse, allowed: bool, reason: pb::CheckReason) {
    assert_eq!(
        (response.allowed, pb::CheckReason::try_from(response.reason)),
        (allowed, Ok(reason)),
        "decision {response:?}"
    );
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if !std::thread::panicking() {
            crate::logcheck::assert_no_secrets_logged();
        }
    }
}

/// A complete, valid registration of a contractor named `business_name`.
pub fn contractor_request(business_name: &str) -> pb::RegisterContractorRequest {
    pb::RegisterContractorRequest {
        business_name: business_name.to_owned(),
        contact: Some(pb::Contact {
            name: "Marie Tremblay".into(),
            phone: "+1 613-555-0199".into(),
            email: "marie@rideaubuilders.ca".into(),
        }),
        mailing_address: Some(pb::MailingAddress {
            street: "110 Laurier Ave W".into(),
            city: "Ottawa".into(),
            province: "ON".into(),
            postal_code: "K1P 1J1".into(),
            country: "CA".into(),
        }),
    }
}

/// Presents an API key on every call.
#[derive(Clone)]
pub struct WithKey(MetadataValue<Ascii>);

impl Interceptor for WithKey {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A connection whose calls present a key.
pub type Authed = InterceptedService<Channel, WithKey>;

/// `channel`, presenting `key` on every call.
pub fn with_key(channel: Channel, key: &str) -> Authed {
    let value = format!("Bearer {key}")
        .parse()
        .expect("a key is valid metadata");
    InterceptedService::new(channel, WithKey(value))
}

/// A connection to the TLS server at `address`, whose certificate names `localhost`.
pub fn tls_channel(
    address: std::net::SocketAddr,
    tls: ClientTlsConfig,
) -> tonic::transport::Endpoint {
    Channel::from_shared(format!("https://{address}"))
        .expect("a valid URI")
        .tls_config(tls.domain_name("localhost"))
        .expect("a valid TLS configuration")
}

/// A new connection to the server at `address`.
pub async fn channel_to(address: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{address}"))
        .expect("a valid URI")
        .connect()
        .await
        .expect("connect to the server")
}

/// `message` sent on behalf of `customer_id` (the portal's `x-customer-id`).
pub fn as_customer<T>(customer_id: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        CUSTOMER_HEADER,
        customer_id.parse().expect("an id is valid metadata"),
    );
    request
}

/// Asserts `result` failed with `code`, and returns the status.
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got success: {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            status
        }
    }
}

/// Asserts `result` failed with INVALID_ARGUMENT naming exactly `fields` as violations.
pub fn expect_invalid<T: std::fmt::Debug>(result: Result<T, Status>, fields: &[&str]) -> Status {
    let status = expect_code(result, Code::InvalidArgument);
    let bad_request = status
        .get_details_bad_request()
        .expect("INVALID_ARGUMENT carries google.rpc.BadRequest");
    let named: Vec<&str> = bad_request
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(named, fields, "field violations of {status:?}");
    status
}

/// The permissions as the wire lists them.
pub fn permissions(list: &[pb::Permission]) -> Vec<i32> {
    list.iter().map(|p| *p as i32).collect()
}

/// Every permission, as a Manager holds them.
pub fn all_permissions() -> Vec<i32> {
    permissions(&[
        pb::Permission::Apply,
        pb::Permission::Pay,
        pb::Permission::Inspections,
        pb::Permission::UploadFiles,
        pb::Permission::Manage,
    ])
}

fn init_test_log() {
    crate::logcheck::install();
}

/// A TCP proxy on a free loopback port, forwarding to `target`, that a test can cut (as a
/// database outage would), turn into a black hole (a silent outage: connections stay open and
/// nothing is forwarded, as when packets are dropped), and restore.
pub struct Proxy {
    address: std::net::SocketAddr,
    target: String,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    dark: tokio::sync::watch::Sender<bool>,
    /// Bytes forwarded from clients to the target so far.
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Proxy {
    pub async fn start(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a proxy");
        let proxy = Self {
            address: listener.local_addr().expect("the proxy's address"),
            target: target.to_owned(),
            tasks: Default::default(),
            dark: tokio::sync::watch::Sender::new(false),
            sent: Default::default(),
        };
        proxy.accept_on(listener);
        proxy
    }

    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    /// Bytes forwarded from clients to the target so far: what a client asked of the target.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn accept_on(&self, listener: tokio::net::TcpListener) {
        let target = self.target.clone();
        let sent = self.sent.clone();
        let tasks = self.tasks.clone();
        let dark = self.dark.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let mut inbound = Counted {
                    stream: inbound,
                    read: sent.clone(),
                };
                let target = target.clone();
                let mut dark = dark.subscribe();
                let relay = tokio::spawn(async move {
                    let silent = *dark.borrow_and_update();
                    if silent {
                        // Accepted, and never answered.
                        std::future::pending::<()>().await;
                    }
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            () = async { let _ = dark.wait_for(|dark| *dark).await; } => {
                                // Both sockets stay open, and silent, until the proxy is dropped.
                                std::future::pending::<()>().await;
                            }
                        }
                    }
                });
                tasks
                    .lock()
                    .expect("the task list")
                    .push(relay.abort_handle());
            }
        });
        self.tasks
            .lock()
            .expect("the task list")
            .push(acceptor.abort_handle());
    }

    /// Closes every connection and stops accepting: connections are refused from now on.
    pub fn cut(&self) {
        for task in self.tasks.lock().expect("the task list").drain(..) {
            task.abort();
        }
    }

    /// Stops forwarding without closing anything: open connections go silent, new ones are
    /// accepted and never answered.
    pub fn black_hole(&self) {
        self.dark.send_replace(true);
    }

    /// Forwards new connections again; those silenced by `black_hole` stay silent.
    pub fn light(&self) {
        self.dark.send_replace(false);
    }

    /// Accepts connections again, on the same port.
    pub async fn restore(&self) {
        let listener = tokio::net::TcpListener::bind(self.address)
            .await
            .expect("bind the proxy's port again");
        self.accept_on(listener);
    }
}

/// A stream that counts the bytes read from it.
struct Counted {
    stream: tokio::net::TcpStream,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.stream).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        self.read
            .fetch_add(read, std::sync::atomic::Ordering::Relaxed);
        polled
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// `GET path` from `address` over plain HTTP/1.1: the status code and the body.
pub async fn http_get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect to the metrics listener");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("send the request");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .expect("read the answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    (status, body.to_owned())
}

/// The value of the series `name{labels}` in a metrics exposition (exactly as it writes it), if
/// present.
pub fn series(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// An answer of the HTTP listener: its status, headers and body (JSON when it parses).
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub text: String,
    pub json: serde_json::Value,
    /// The body as it came.
    pub bytes: bytes::Bytes,
}

impl HttpAnswer {
    /// The `google.rpc.BadRequest` fields at fault of a JSON error.
    pub fn violations(&self) -> Vec<String> {
        self.json["details"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|detail| detail["@type"] == "type.googleapis.com/google.rpc.BadRequest")
            .flat_map(|detail| {
                detail["fieldViolations"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|violation| violation["field"].as_str().map(str::to_owned))
            .collect()
    }

    /// A response header, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// A real HTTP client to the server's HTTP listener: HTTP/1.1, or HTTP/2 without TLS (h2c).
#[derive(Clone)]
pub struct HttpClient {
    address: std::net::SocketAddr,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
    key: Option<String>,
}

impl HttpClient {
    pub fn new(address: std::net::SocketAddr, key: Option<&str>, http2: bool) -> Self {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(http2)
                .build_http();
        Self {
            address,
            client,
            key: key.map(str::to_owned),
        }
    }

    /// `method path` with `body` (JSON text, or none), as `customer` when given, with the
    /// client's key, and with `headers` besides.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        customer: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> HttpAnswer {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.address));
        if let Some(key) = &self.key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        if let Some(customer) = customer {
            request = request.header("x-customer-id", customer);
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.unwrap_or_default().to_owned(),
            )))
            .expect("a request");
        self.answer(request).await
    }

    /// Sends `request` as it is.
    pub async fn answer(
        &self,
        request: http::Request<http_body_util::Full<bytes::Bytes>>,
    ) -> HttpAnswer {
        use http_body_util::BodyExt;
        let response = self.client.request(request).await.expect("an HTTP answer");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("the body")
            .to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        HttpAnswer {
            status,
            headers,
            text,
            json,
            bytes: body,
        }
    }

    /// `send` that must answer 200, for a JSON body.
    pub async fn ok(
        &self,
        method: &str,
        path: &str,
        customer: Option<&str>,
        body: Option<&str>,
    ) -> serde_json::Value {
        let answer = self.send(method, path, customer, body, &[]).await;
        assert_eq!(answer.status, 200, "{method} {path}: {}", answer.text);
        answer.json
    }
}

impl TestApp {
    /// An HTTP/1.1 client of the HTTP listener with the bootstrap key.
    pub fn http(&self) -> HttpClient {
        HttpClient::new(self.http_address, Some(&self.key), false)
    }
}
