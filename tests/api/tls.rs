//! TLS on the listener; mutual TLS, where a registered client certificate stands for its client
//! system; and TLS to PostgreSQL, verified against an authority the test makes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mandate::pb::identity_service_client::IdentityServiceClient;
use mandate::pb::permission_service_client::PermissionServiceClient;
use mandate::pb::*;
use mandate::server::{Application, StartupError};
use mandate::settings::tls::ClientAuth;
use mandate_domain::client::{Scope, Scopes};
use sea_orm::{ConnectionTrait, Database};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{
    Backend, TestApp, TestDatabase, as_customer, contractor_request, start_with, start_with_tls,
    tls_channel,
};
use crate::on_both_backends;
use crate::pki::{Authority, Issued};

on_both_backends!(
    tls_serves_only_clients_that_trust_its_certificate,
    a_registered_client_certificate_stands_for_its_client_system,
    with_optional_client_certificates_api_keys_still_work,
    a_revoked_client_certificate_ends_the_feeds_it_opened,
);

/// A server with TLS on, its authority, and (for mutual TLS) the authority of client
/// certificates.
struct Secured {
    app: TestApp,
    server_ca: Authority,
    client_ca: Authority,
}

/// Starts a TLS server over a fresh database; with `client_auth`, mutual TLS with a client
/// authority. Its own clients present the bootstrap key and, for mutual TLS, an unregistered
/// certificate.
async fn secured(backend: Backend, client_auth: Option<ClientAuth>) -> Secured {
    let database = TestDatabase::new(backend).await;
    let server_ca = Authority::new("Mandate test server CA");
    let client_ca = Authority::new("Mandate test client CA");
    let mut settings = database.settings();
    let (cert, key) = server_ca.server().write(database.dir(), "server");
    settings.tls.tls_cert = Some(cert);
    settings.tls.tls_key = Some(key);
    let mut client = server_ca.trusted_by_client();
    if let Some(client_auth) = client_auth {
        settings.tls.tls_client_ca = Some(client_ca.write(database.dir(), "clients"));
        settings.tls.tls_client_auth = client_auth;
        client = client.identity(client_ca.client("test-harness").identity());
    }
    let app = start_with_tls(database, &settings, client).await;
    Secured {
        app,
        server_ca,
        client_ca,
    }
}

impl Secured {
    /// A connection presenting `certificate`, if any, and no key.
    fn connect_as(&self, certificate: Option<&Issued>) -> Channel {
        let mut tls = self.server_ca.trusted_by_client();
        if let Some(certificate) = certificate {
            tls = tls.identity(certificate.identity());
        }
        tls_channel(self.app.address(), tls).connect_lazy()
    }

    /// Registers `certificate` for the client system `name` with `scopes`, live at once;
    /// returns the registration's id.
    async fn register(&self, name: &str, scopes: &[Scope], certificate: &Issued) -> String {
        let (pem, _) = certificate.write(self.app.database().dir(), name);
        let scopes: Scopes = scopes.iter().copied().collect();
        let record = mandate::credentials::keys::register_certificate(
            &self.app.store,
            name,
            scopes,
            None,
            &pem,
        )
        .await
        .expect("register the certificate");
        self.app
            .keys
            .reload(&self.app.store)
            .await
            .expect("reload the credentials");
        record.key_id
    }
}

fn registration(subject: &str) -> RegisterCustomerRequest {
    RegisterCustomerRequest {
        external_subject: subject.into(),
        display_name: subject.into(),
        email: format!("{subject}@example.ca"),
    }
}

/// A call that the TLS layer refused: the connection failed or was closed, so the client made up
/// the status (its code depends on how far the connection got); no Mandate service answered.
fn assert_refused_by_tls<T: std::fmt::Debug>(result: Result<T, tonic::Status>, what: &str) {
    let status = result.expect_err(what);
    assert!(
        std::error::Error::source(&status)
            .is_some_and(|source| source.is::<tonic::transport::Error>()),
        "{what}: a transport failure, not an answer: {status:?}"
    );
}

async fn tls_serves_only_clients_that_trust_its_certificate(backend: Backend) {
    let Secured {
        mut app, server_ca, ..
    } = secured(backend, None).await;
    app.customer("over-tls").await;
    let health = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .expect("Health over TLS")
        .into_inner();
    assert_eq!(health.status, 1, "SERVING");

    let plaintext = Channel::from_shared(format!("http://{}", app.address()))
        .expect("a valid URI")
        .connect_lazy();
    assert_refused_by_tls(
        HealthClient::new(plaintext)
            .check(HealthCheckRequest::default())
            .await,
        "a plaintext call to the TLS listener",
    );
    let stranger = Authority::new("Some other CA");
    let untrusting = tls_channel(app.address(), stranger.trusted_by_client()).connect_lazy();
    assert_refused_by_tls(
        HealthClient::new(untrusting)
            .check(HealthCheckRequest::default())
            .await,
        "a client that does not trust the server's certificate",
    );
    // The server's authority is what a client trusts; nothing else changed for it.
    drop(server_ca);
    app.customer("still-over-tls").await;
}

async fn a_registered_client_certificate_stands_for_its_client_system(backend: Backend) {
    let secured = secured(backend, Some(ClientAuth::Required)).await;
    let portal_cert = secured.client_ca.client("portal");
    let inspections_cert = secured.client_ca.client("inspections");
    secured
        .register("portal-system", &[Scope::Portal], &portal_cert)
        .await;
    let inspections = secured
        .register("inspections", &[Scope::Check], &inspections_cert)
        .await;

    // The portal's certificate is its credential: no key.
    let portal = secured.connect_as(Some(&portal_cert));
    let manager = IdentityServiceClient::new(portal.clone())
        .register_customer(registration("cert-manager"))
        .await
        .expect("the portal's certificate may register customers")
        .into_inner()
        .customer
        .expect("the customer")
        .customer_id;
    let contractor =
        mandate::pb::contractor_service_client::ContractorServiceClient::new(portal.clone())
            .register_contractor(as_customer(
                &manager,
                contractor_request("Certified Builds"),
            ))
            .await
            .expect("the portal's certificate may act for a customer")
            .into_inner()
            .contractor
            .expect("the contractor")
            .contractor_id;
    let events = PermissionServiceClient::new(portal)
        .list_audit_events(as_customer(
            &manager,
            ListAuditEventsRequest {
                contractor_id: contractor.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("the audit trail")
        .into_inner()
        .events;
    assert!(!events.is_empty());
    assert!(
        events
            .iter()
            .all(|event| event.actor_client == "portal-system"),
        "the audit trail names the certificate's client system: {events:?}"
    );

    // Inspections' certificate may check, and nothing else.
    let check = CheckPermissionRequest {
        customer_id: manager.clone(),
        contractor_id: contractor.clone(),
        permission: Permission::Inspections as i32,
        application_id: String::new(),
        at_least_revision: 0,
    };
    let mut checker = PermissionServiceClient::new(secured.connect_as(Some(&inspections_cert)));
    let decision = checker
        .check_permission(check.clone())
        .await
        .expect("inspections' certificate may check")
        .into_inner();
    assert!(decision.allowed, "the Manager may book inspections");
    let denied = IdentityServiceClient::new(secured.connect_as(Some(&inspections_cert)))
        .register_customer(registration("not-allowed"))
        .await
        .expect_err("inspections may not register customers");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("portal"), "{denied:?}");

    // A certificate from the right authority, but registered for no client system.
    let stranger = secured.client_ca.client("stranger");
    let refused = PermissionServiceClient::new(secured.connect_as(Some(&stranger)))
        .check_permission(check.clone())
        .await
        .expect_err("an unregistered certificate");
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.message().contains("not registered"), "{refused:?}");

    // No certificate, or one from another authority: the handshake fails.
    assert_refused_by_tls(
        PermissionServiceClient::new(secured.connect_as(None))
            .check_permission(check.clone())
            .await,
        "a connection without a client certificate",
    );
    let forged = Authority::new("Mandate test client CA").client("inspections");
    assert_refused_by_tls(
        PermissionServiceClient::new(secured.connect_as(Some(&forged)))
            .check_permission(check.clone())
            .await,
        "a client certificate from another authority",
    );

    // Revoked, the certificate stands for nobody, on a connection already open too.
    secured
        .app
        .store
        .revoke_key(&inspections)
        .await
        .expect("revoke the certificate");
    secured
        .app
        .keys
        .reload(&secured.app.store)
        .await
        .expect("reload");
    let revoked = checker
        .check_permission(check)
        .await
        .expect_err("a revoked certificate");
    assert_eq!(revoked.code(), Code::Unauthenticated);
}

async fn with_optional_client_certificates_api_keys_still_work(backend: Backend) {
    let secured = secured(backend, Some(ClientAuth::Optional)).await;
    let keyless = secured.connect_as(None);
    let refused = IdentityServiceClient::new(keyless)
        .register_customer(registration("nobody"))
        .await
        .expect_err("no key and no certificate");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let with_key = crate::helpers::with_key(secured.connect_as(None), &secured.app.key);
    IdentityServiceClient::new(with_key)
        .register_customer(registration("by-key"))
        .await
        .expect("a key without a certificate");
    let portal_cert = secured.client_ca.client("portal");
    secured
        .register("portal-system", &[Scope::Portal], &portal_cert)
        .await;
    IdentityServiceClient::new(secured.connect_as(Some(&portal_cert)))
        .register_customer(registration("by-certificate"))
        .await
        .expect("a certificate without a key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_tls_setting_stops_the_server_at_start_up() {
    let database = TestDatabase::new(Backend::Sqlite).await;
    let ca = Authority::new("Mandate test server CA");
    let server = ca.server();
    let (cert, key) = server.write(database.dir(), "server");
    let garbage = database.dir().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").expect("write");
    let missing = database.dir().join("missing.pem");

    let start = async |adjust: &dyn Fn(&mut mandate::settings::Settings)| {
        let mut settings = database.settings();
        adjust(&mut settings);
        match Application::build(&settings).await {
            Ok(_) => panic!("the server started with a wrong TLS setting"),
            Err(StartupError::Tls(message)) => message,
            Err(other) => panic!("not a TLS error: {other}"),
        }
    };
    let said = start(&|s| s.tls.tls_cert = Some(cert.clone())).await;
    assert!(said.contains("both"), "{said}");
    let said = start(&|s| s.tls.tls_client_ca = Some(cert.clone())).await;
    assert!(said.contains("--tls-cert"), "{said}");
    let said = start(&|s| {
        s.tls.tls_cert = Some(garbage.clone());
        s.tls.tls_key = Some(key.clone());
    })
    .await;
    assert!(said.contains("not usable"), "{said}");
    let said = start(&|s| {
        s.tls.tls_cert = Some(cert.clone());
        s.tls.tls_key = Some(missing.clone());
    })
    .await;
    assert!(said.contains("missing.pem"), "{said}");
    assert!(
        !said.contains("PRIVATE KEY"),
        "an error never shows a key: {said}"
    );
}

/// A PostgreSQL front that speaks TLS with a certificate the test made, forwarding the
/// decrypted protocol to the real PostgreSQL; it counts TLS sessions and plaintext attempts.
struct PostgresTlsFront {
    address: std::net::SocketAddr,
    sessions: Arc<AtomicUsize>,
    plaintext: Arc<AtomicUsize>,
}

/// The first message of a client asking PostgreSQL for TLS: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

impl PostgresTlsFront {
    async fn start(identity: &Issued, upstream: String) -> Self {
        let certs = CertificateDer::pem_slice_iter(identity.cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("the front's certificate");
        let key = PrivateKeyDer::from_pem_slice(identity.key.as_bytes()).expect("the front's key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("a TLS server configuration");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let front = Self {
            address: listener.local_addr().expect("the front's address"),
            sessions: Arc::default(),
            plaintext: Arc::default(),
        };
        let (sessions, plaintext) = (front.sessions.clone(), front.plaintext.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
                let (sessions, plaintext) = (sessions.clone(), plaintext.clone());
                tokio::spawn(async move {
                    let mut first = [0u8; 8];
                    if client.read_exact(&mut first).await.is_err() {
                        return;
                    }
                    if first != SSL_REQUEST {
                        plaintext.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    if client.write_all(b"S").await.is_err() {
                        return;
                    }
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    sessions.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                    }
                });
            }
        });
        front
    }
}

/// `host:port` of a PostgreSQL URL.
fn host_and_port(url: &str) -> String {
    let after_user = url.split_once('@').map_or(url, |(_, rest)| rest);
    after_user
        .split_once('/')
        .map_or(after_user, |(host, _)| host)
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_verifies_the_server_certificate() {
    let database = TestDatabase::new(Backend::Postgres).await;
    let ca = Authority::new("Mandate test PostgreSQL CA");
    let front = PostgresTlsFront::start(&ca.server(), host_and_port(&database.url)).await;
    let root = ca.write(database.dir(), "postgres-ca");
    let url = |root: &std::path::Path| {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}?sslmode=verify-full&sslrootcert={}",
            front.address.port(),
            database.name,
            root.display()
        )
    };

    // A root that did not sign the server's certificate: the server refuses to start.
    let other = Authority::new("Some other CA").write(database.dir(), "other-ca");
    let mut settings = database.settings();
    settings.database_url = url(&other);
    settings.database_wait_ms = 2000;
    let refused = Application::build(&settings).await;
    assert!(
        refused.is_err(),
        "the server started over an unverified TLS connection"
    );
    assert_eq!(front.plaintext.load(Ordering::SeqCst), 0);

    // The right root: every connection is TLS.
    settings.database_url = url(&root);
    let mut app = start_with(database, &settings).await;
    app.customer("through-tls").await;
    assert!(front.sessions.load(Ordering::SeqCst) > 0);
    assert_eq!(
        front.plaintext.load(Ordering::SeqCst),
        0,
        "no connection went without TLS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_encrypts_every_connection_to_postgres() {
    let database = TestDatabase::new(Backend::Postgres).await;
    let mut settings = database.settings();
    settings.database_url = format!("{}?sslmode=require", database.url);
    let name = database.name.clone();
    let admin = database.url.clone();
    let mut app = start_with(database, &settings).await;
    app.customer("encrypted").await;
    let db = Database::connect(&admin).await.expect("connect");
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT count(*) FILTER (WHERE s.ssl) AS encrypted, \
                        count(*) FILTER (WHERE NOT s.ssl) AS plain \
                 FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.datname = '{name}' AND a.pid <> pg_backend_pid()"
            ),
        ))
        .await
        .expect("the connections")
        .expect("a row");
    let encrypted: i64 = row.try_get("", "encrypted").expect("a count");
    let plain: i64 = row.try_get("", "plain").expect("a count");
    db.close().await.expect("close");
    assert!(encrypted > 0, "the server's connections are encrypted");
    assert_eq!(plain, 0, "no connection of the server is in plain text");
}

/// #17: a client certificate revoked while a `WatchChanges` feed it opened is open: the feed
/// ends with UNAUTHENTICATED at the next reload, as a new call on that connection is refused.
async fn a_revoked_client_certificate_ends_the_feeds_it_opened(backend: Backend) {
    let mut secured = secured(backend, Some(ClientAuth::Required)).await;
    let certificate = secured.client_ca.client("inspections");
    let registration_id = secured
        .register("inspections", &[Scope::Check], &certificate)
        .await;
    let after = secured.app.revision_counter().await;
    let mut feed = PermissionServiceClient::new(secured.connect_as(Some(&certificate)))
        .watch_changes(mandate::pb::WatchChangesRequest {
            after_revision: after,
        })
        .await
        .expect("a feed opened with the certificate")
        .into_inner();
    let next = async |feed: &mut tonic::Streaming<mandate::pb::WatchChangesResponse>| {
        tokio::time::timeout(std::time::Duration::from_secs(30), feed.message())
            .await
            .expect("the feed answers within 30 s")
    };
    let heard = secured.app.customer("heard").await;
    let change = next(&mut feed)
        .await
        .expect("a healthy feed")
        .and_then(|message| message.change)
        .expect("a change");
    assert_eq!(change.customer_id, heard.customer_id);
    secured
        .app
        .store
        .revoke_key(&registration_id)
        .await
        .expect("revoke the certificate");
    secured
        .app
        .keys
        .reload(&secured.app.store)
        .await
        .expect("reload");
    secured.app.customer("not-heard").await;
    let ended = next(&mut feed)
        .await
        .expect_err("the feed ends instead of delivering the next change");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
}
