//! What a newcomer following the README met: settings after the subcommand, colour codes in
//! piped logs, a SQLite file that was not whole after a clean stop, and an unknown acting
//! customer whose NOT_FOUND did not say where the id came from.

use mandate::pb::identity_service_client::IdentityServiceClient;
use mandate::pb::{ListMyContractorsRequest, RegisterCustomerRequest};
use sea_orm::{ConnectionTrait, Database, Statement};
use tonic::Code;

use crate::helpers::{
    Backend, TestDatabase, as_customer, channel_to, expect_code, spawn_app, with_key,
};
use crate::process::{ServerProcess, mandate_command};

#[test]
fn settings_are_taken_after_the_subcommand_too() {
    let database = tempfile_dir();
    let url = format!("sqlite://{}/late.db?mode=rwc", database.display());
    let mut command = mandate_command(&["migrate", "--database-url", &url], &[]);
    // Not a terminal, and no NO_COLOR: the log must still be plain text.
    command.env_remove("NO_COLOR");
    let output = command.output().expect("run mandate migrate");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(
        database.join("late.db").exists(),
        "the database named after the subcommand"
    );
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes in a piped log: {log:?}"
    );
    let _ = std::fs::remove_dir_all(&database);
}

/// A fresh directory of this test's own.
pub fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mandate-newcomer-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleanly_stopped_sqlite_server_leaves_everything_in_the_database_file() {
    let database = TestDatabase::new(Backend::Sqlite).await;
    let server = ServerProcess::start(&database, &[]).await;
    let mut identity =
        IdentityServiceClient::new(with_key(channel_to(server.address).await, &database.key()));
    let ana = identity
        .register_customer(RegisterCustomerRequest {
            external_subject: "oidc|ana".into(),
            display_name: "Ana".into(),
            email: "ana@example.ca".into(),
        })
        .await
        .expect("register a customer")
        .into_inner()
        .customer
        .expect("a customer")
        .customer_id;
    drop(identity);
    let (status, _) = server.stop().await;
    assert!(status.success(), "the server exits cleanly: {status}");
    let file = mandate_store::sqlite_file(&database.url).expect("a SQLite database file");
    let mut wal = file.clone().into_os_string();
    wal.push("-wal");
    let wal_bytes = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert_eq!(
        wal_bytes, 0,
        "the write-ahead log was checkpointed into the file"
    );
    // The file alone, as a backup copies it, holds the customer.
    let copy = database.dir().join("copy.db");
    std::fs::copy(&file, &copy).expect("copy the database file");
    let db = Database::connect(format!("sqlite://{}?mode=ro", copy.display()))
        .await
        .expect("open the copy");
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COUNT(*) FROM customers WHERE customer_id = '{ana}'"),
        ))
        .await
        .expect("query the copy")
        .expect("a row");
    assert_eq!(row.try_get_by_index::<i64>(0).expect("a count"), 1);
    db.close().await.expect("close the copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_cannot_listen_leaves_no_files_behind() {
    let busy = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("hold a port");
    let dir = tempfile_dir();
    let database = dir.join("never.db");
    let mut settings = TestDatabase::new(Backend::Sqlite).await.settings();
    settings.listen = busy.local_addr().expect("the held port");
    settings.database_url = format!("sqlite://{}?mode=rwc", database.display());
    settings.bootstrap_key_file = Some(dir.join("never.bootstrap-key"));
    let built = mandate::server::Application::build(&settings).await;
    assert!(
        matches!(built, Err(mandate::server::StartupError::Bind { .. })),
        "the busy port is the error"
    );
    let left: Vec<_> = std::fs::read_dir(&dir)
        .expect("the directory")
        .map(|entry| entry.expect("an entry").file_name())
        .collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_acting_customer_is_not_found_and_the_metadata_is_named() {
    let mut app = spawn_app(Backend::Sqlite).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let status = expect_code(
        app.contractors
            .list_my_contractors(as_customer(&unknown, ListMyContractorsRequest::default()))
            .await,
        Code::NotFound,
    );
    assert!(
        status.message().contains("x-customer-id") && status.message().contains(&unknown),
        "{}",
        status.message()
    );
}
