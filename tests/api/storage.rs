use std::os::unix::fs::PermissionsExt;

use mandate::pb::{AssociateByPinRequest, GetCustomerRequest, GetPinRequest};
use sea_orm::{ConnectionTrait, Database, Statement};

use crate::helpers::{Backend, TestApp, as_customer, spawn_app, start_on};
use crate::on_both_backends;

on_both_backends!(
    no_pin_is_stored_in_plain_text,
    the_data_and_the_pins_survive_a_restart
);

/// Everything the database stores, as text: every row of every table on PostgreSQL; the raw
/// database and write-ahead-log files on SQLite (free pages included).
async fn everything_stored(app: &TestApp) -> String {
    let database = app.database();
    match database.backend {
        Backend::Sqlite => {
            let mut bytes = std::fs::read(&database.name).unwrap();
            if let Ok(wal) = std::fs::read(format!("{}-wal", database.name)) {
                bytes.extend(wal);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Backend::Postgres => {
            let db = Database::connect(&database.url).await.unwrap();
            let backend = db.get_database_backend();
            let tables = db
                .query_all_raw(Statement::from_string(
                    backend,
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
                ))
                .await
                .unwrap();
            let mut text = String::new();
            for table in tables {
                let table: String = table.try_get_by_index(0).unwrap();
                let rows = db
                    .query_all_raw(Statement::from_string(
                        backend,
                        format!("SELECT t::text FROM \"{table}\" t"),
                    ))
                    .await
                    .unwrap();
                for row in rows {
                    text.push_str(&row.try_get_by_index::<String>(0).unwrap());
                    text.push('\n');
                }
            }
            db.close().await.unwrap();
            text
        }
    }
}

async fn no_pin_is_stored_in_plain_text(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let ben = app.customer("ben").await;
    let registered = app.contractor(&ana.customer_id).await;
    app.contractors
        .associate_by_pin(as_customer(
            &ben.customer_id,
            AssociateByPinRequest {
                pin: registered.pin.clone(),
            },
        ))
        .await
        .unwrap();
    app.contractors
        .get_pin(as_customer(
            &ana.customer_id,
            GetPinRequest {
                contractor_id: registered.contractor.clone().unwrap().contractor_id,
            },
        ))
        .await
        .unwrap();

    let stored = everything_stored(&app).await.to_uppercase();
    // The search finds what is stored in plain text...
    assert!(
        stored.contains("RIDEAU BUILDERS INC."),
        "the search reads nothing"
    );
    assert!(stored.contains(&registered.contractor.unwrap().contractor_id.to_uppercase()));
    // ...and not the PIN, in any of its forms.
    let formatted = registered.pin.to_uppercase();
    let canonical = formatted.replace('-', "");
    assert!(
        !stored.contains(&formatted),
        "the PIN {formatted} is stored as shown"
    );
    assert!(
        !stored.contains(&canonical),
        "the PIN {canonical} is stored in canonical form"
    );
}

async fn the_data_and_the_pins_survive_a_restart(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ana = app.customer("ana").await;
    let registered = app.contractor(&ana.customer_id).await;
    let contractor_id = registered.contractor.unwrap().contractor_id;

    let database = app.stop().await;
    if backend == Backend::Sqlite {
        let secret = std::fs::metadata(format!("{}.secret", database.name)).unwrap();
        assert_eq!(
            secret.permissions().mode() & 0o777,
            0o600,
            "the secret file is private"
        );
    }
    let mut app = start_on(database).await;

    let customer = app
        .identity
        .get_customer(GetCustomerRequest {
            customer_id: ana.customer_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    assert_eq!(customer, ana);
    let pin = app
        .contractors
        .get_pin(as_customer(
            &ana.customer_id,
            GetPinRequest { contractor_id },
        ))
        .await
        .unwrap()
        .into_inner()
        .pin;
    assert_eq!(pin, registered.pin);
}
