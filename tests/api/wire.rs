//! Bytes on the wire: what does not decode is the caller's error, and no request is read past
//! the size the largest legitimate one needs.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use mandate::pb::{CheckPermissionRequest, CheckPermissionsRequest, CheckPermissionsResponse};
use prost::Message;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tonic::Code;

use crate::helpers::{Backend, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    thousands_of_malformed_requests_get_deliberate_answers_and_failures_change_nothing
);

/// Sends `message` (already encoded, or not) to the gRPC method at `path` over a fresh HTTP/2
/// connection; returns the status code and message, and the response's first message.
async fn raw_call(
    address: SocketAddr,
    key: &str,
    path: &str,
    message: &[u8],
) -> (Code, String, Bytes) {
    raw_call_as(address, key, None, path, message).await
}

/// `raw_call`, on behalf of `customer` (`x-customer-id`, sent as given) when there is one.
async fn raw_call_as(
    address: SocketAddr,
    key: &str,
    customer: Option<&str>,
    path: &str,
    message: &[u8],
) -> (Code, String, Bytes) {
    let socket = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let (client, connection) = h2::client::handshake(socket).await.expect("HTTP/2");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let mut request = http::Request::post(format!("http://{address}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {key}"));
    if let Some(value) = customer.and_then(|c| http::HeaderValue::from_bytes(c.as_bytes()).ok()) {
        request = request.header("x-customer-id", value);
    }
    let request = request.body(()).expect("a request");
    let (response, mut body) = client.send_request(request, false).expect("send");
    let mut frame = BytesMut::with_capacity(message.len() + 5);
    frame.put_u8(0);
    frame.put_u32(u32::try_from(message.len()).expect("a small message"));
    frame.put_slice(message);
    // The server may answer, and reset the stream, before it has read all of a large body.
    let _ = body.send_data(frame.freeze(), true);
    let response = response.await.expect("an answer");
    let (parts, mut answer) = response.into_parts();
    let mut data = BytesMut::new();
    while let Some(chunk) = answer.data().await {
        match chunk {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(_) => break,
        }
    }
    let trailers = answer.trailers().await.ok().flatten();
    let headers = trailers.as_ref().unwrap_or(&parts.headers);
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(Code::Unknown, Code::from);
    let status_message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let first = if data.len() >= 5 {
        data.split_off(5).freeze()
    } else {
        Bytes::new()
    };
    (code, status_message, first)
}

/// Bytes that are no protobuf message: a field with wire type 7, which does not exist.
const GARBAGE: &[u8] = &[0x0f, 0xff, 0xff, 0xff, 0xff, 0xff];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_requests_answer_invalid_argument() {
    let app = spawn_app(Backend::Sqlite).await;
    for path in [
        "/mandate.v1.IdentityService/RegisterCustomer",
        "/mandate.v1.IdentityService/GetCustomer",
        "/mandate.v1.ContractorService/RegisterContractor",
        "/mandate.v1.ContractorService/AssociateByPin",
        "/mandate.v1.PermissionService/SetPermissions",
        "/mandate.v1.PermissionService/CheckPermission",
        "/mandate.v1.PermissionService/CheckPermissions",
        "/mandate.v1.PermissionService/WatchChanges",
    ] {
        let (code, message, _) = raw_call(app.address(), &app.key, path, GARBAGE).await;
        assert_eq!(code, Code::InvalidArgument, "{path}: {message}");
        assert!(message.contains("protobuf"), "{path}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_batch_is_refused_unread_and_the_largest_legitimate_one_is_read() {
    let app = spawn_app(Backend::Sqlite).await;
    let path = "/mandate.v1.PermissionService/CheckPermissions";
    // 4 MB of empty items: two bytes each on the wire, a whole CheckPermissionRequest each once
    // decoded.
    let empty_items = [0x0a, 0x00].repeat(2 * 1024 * 1024);
    let (code, message, _) = raw_call(app.address(), &app.key, path, &empty_items).await;
    assert_eq!(code, Code::OutOfRange, "{message}");

    // The largest batch a caller may send: 100 items, every field at its longest, in four-byte
    // characters. It is read, and answered item by item.
    let item = CheckPermissionRequest {
        customer_id: "01a205df-1e69-7279-825f-4703e6030243".into(),
        permission: mandate::pb::Permission::Pay as i32,
        contractor_id: "01a205df-1f81-777b-a81a-51de193b618a".into(),
        application_id: "\u{1D538}".repeat(64),
        at_least_revision: i64::MAX,
    };
    let largest = CheckPermissionsRequest {
        items: vec![item; 100],
    }
    .encode_to_vec();
    let (code, message, first) = raw_call(app.address(), &app.key, path, &largest).await;
    assert_eq!(code, Code::Ok, "{message}");
    let answer = CheckPermissionsResponse::decode(first).expect("a CheckPermissionsResponse");
    assert_eq!(answer.results.len(), 100);
}

/// A small deterministic random source (splitmix64), so a failure can be replayed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// A string a hostile caller might send in any field.
    fn string(&mut self, customer: &str) -> String {
        match self.below(13) {
            0 => String::new(),
            1 => {
                let len = self.below(20_000) as usize;
                "x".repeat(len)
            }
            2 => {
                let len = self.below(300) as usize;
                "Ω\u{1F600}\u{202E}é".repeat(len)
            }
            3 => "\0\u{7}\n\r\t".into(),
            4 => customer.to_owned(),
            5 => "01a205df-1e69-7279-825f-4703e6030243".into(),
            6 => "4SB9-9AMR-CB".into(),
            7 => "24-123456 BLD".into(),
            8 => "' OR 1=1 --".into(),
            9 => "-1".into(),
            10 => "%s%n{}".repeat(50),
            11 => match self.below(5) {
                // Page tokens and ids that look right but are not: a cursor of the
                // accessible-applications form with bad hex, a well-formed id of nothing, a
                // number too large for any integer, an id with a trailing space.
                0 => "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b.zz".into(),
                1 => "ffffffff-ffff-7fff-bfff-ffffffffffff".into(),
                2 => "99999999999999999999999999".into(),
                3 => format!("{customer} "),
                _ => "0196a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b.".repeat(40),
            },
            _ => {
                let len = self.below(64) as usize;
                String::from_utf8_lossy(&self.bytes(len)).into_owned()
            }
        }
    }

    /// Protobuf bytes for some message: each of fields 1 to 7 absent, a string, a number (an
    /// unknown enum value among them), a nested message of random bytes, or repeated up to 300
    /// times (an oversize batch or permission list).
    fn message(&mut self, customer: &str) -> Vec<u8> {
        self.fields(customer, true)
    }

    fn fields(&mut self, customer: &str, repeats: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let kinds = if repeats { 6 } else { 5 };
        for field in 1u32..=7 {
            match self.below(kinds) {
                0 => {}
                5 => {
                    let times = self.below(300);
                    let item = self.fields(customer, false);
                    for _ in 0..times {
                        if field == 1 {
                            prost::encoding::bytes::encode(field, &item, &mut out);
                        } else {
                            let number = self.below(8) as i64 - 1;
                            prost::encoding::int64::encode(field, &number, &mut out);
                        }
                    }
                }
                1 | 2 => {
                    let text = self.string(customer);
                    prost::encoding::string::encode(field, &text, &mut out);
                }
                3 => {
                    let number = match self.below(6) {
                        0 => -1i64,
                        1 => i64::MAX,
                        2 => i64::from(i32::MAX),
                        3 => 99,
                        4 => i64::from(i32::MIN),
                        _ => self.next() as i64,
                    };
                    prost::encoding::int64::encode(field, &number, &mut out);
                }
                _ => {
                    let len = self.below(40) as usize;
                    let inner = self.bytes(len);
                    prost::encoding::bytes::encode(field, &inner, &mut out);
                }
            }
        }
        out
    }
}

/// Every row of every table but the PIN attempts (which a wrong PIN counts, by design) and the
/// denied checks (written after the answer, by design), as
/// text: what a failed call must leave as it was.
struct Snapshot {
    /// One query per table, each row as one text.
    queries: Vec<(String, String)>,
}

impl Snapshot {
    /// Reads the tables and their columns from the database's catalogue.
    async fn prepare(app: &crate::helpers::TestApp) -> Self {
        let db = app.store.connection();
        let backend = db.get_database_backend();
        let tables = texts(
            db,
            match backend {
                DbBackend::Postgres => {
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() \
                     AND tablename NOT IN ('pin_attempts', 'client_pin_tokens', 'denied_checks') \
                     ORDER BY 1"
                        .to_owned()
                }
                _ => "SELECT name FROM sqlite_master WHERE type = 'table' \
                      AND name NOT LIKE 'sqlite_%' \
                      AND name NOT IN ('pin_attempts', 'client_pin_tokens', 'denied_checks') \
                      ORDER BY 1"
                    .to_owned(),
            },
        )
        .await;
        assert!(tables.len() >= 8, "the tables: {tables:?}");
        let mut queries = Vec::new();
        for table in tables {
            let columns = texts(
                db,
                match backend {
                    DbBackend::Postgres => format!(
                        "SELECT column_name::text FROM information_schema.columns \
                         WHERE table_schema = current_schema() AND table_name = '{table}' \
                         ORDER BY ordinal_position"
                    ),
                    _ => format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"),
                },
            )
            .await;
            // SQLite's `quote` shows NULL, text and blobs (as hex) apart.
            let row = columns
                .iter()
                .map(|column| match backend {
                    DbBackend::Postgres => {
                        format!("COALESCE(CAST(\"{column}\" AS TEXT), '<null>')")
                    }
                    _ => format!("quote(\"{column}\")"),
                })
                .collect::<Vec<_>>()
                .join(" || '|' || ");
            queries.push((table.clone(), format!("SELECT {row} FROM \"{table}\"")));
        }
        Self { queries }
    }

    /// Every table's rows, sorted.
    async fn take(&self, app: &crate::helpers::TestApp) -> Vec<(String, Vec<String>)> {
        let mut tables = Vec::new();
        for (table, query) in &self.queries {
            let mut rows = texts(app.store.connection(), query.clone()).await;
            rows.sort();
            tables.push((table.clone(), rows));
        }
        tables
    }
}

async fn texts(db: &sea_orm::DatabaseConnection, sql: String) -> Vec<String> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("a snapshot query")
        .into_iter()
        .map(|row| row.try_get_by_index::<String>(0).expect("a text"))
        .collect()
}

async fn thousands_of_malformed_requests_get_deliberate_answers_and_failures_change_nothing(
    backend: Backend,
) {
    let mut app = spawn_app(backend).await;
    let (manager, _associate, _contractor, _pin) = app.story().await;
    let methods = [
        "IdentityService/RegisterCustomer",
        "IdentityService/GetCustomer",
        "IdentityService/LinkLegacyCustomer",
        "IdentityService/ClearPinLockout",
        "ContractorService/RegisterContractor",
        "ContractorService/GetContractor",
        "ContractorService/UpdateContractor",
        "ContractorService/ListMyContractors",
        "ContractorService/AssociateByPin",
        "ContractorService/GetPin",
        "ContractorService/RotatePin",
        "ContractorService/LeaveContractor",
        "ContractorService/MergeContractors",
        "ContractorService/AppointManager",
        "ContractorService/ReissuePin",
        "ContractorService/SearchContractors",
        "PermissionService/ListAssociates",
        "PermissionService/SetPermissions",
        "PermissionService/RemoveAssociate",
        "PermissionService/CheckPermission",
        "PermissionService/CheckPermissions",
        "PermissionService/LinkApplication",
        "PermissionService/UnlinkApplication",
        "PermissionService/ListAccessibleApplications",
        "PermissionService/ListAuditEvents",
    ];
    let mut random = Random(0x5eed_0000_0000_0007);
    let snapshot = Snapshot::prepare(&app).await;
    let mut before = snapshot.take(&app).await;
    let mut calls = 0;
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    for method in methods {
        let path = format!("/mandate.v1.{method}");
        for _ in 0..100 {
            let message = match random.below(4) {
                0 => {
                    let len = random.below(200) as usize;
                    random.bytes(len)
                }
                _ => random.message(&manager),
            };
            // gRPC metadata values are printable ASCII, and HTTP/2 servers cap the size of a
            // request's headers (hyper answers 431 past 16 KiB): other values are the HTTP/2
            // layer's to refuse, not Mandate's.
            let customer = match random.below(3) {
                0 => None,
                1 => Some(manager.clone()),
                _ => Some(
                    random
                        .string(&manager)
                        .chars()
                        .filter(|c| (' '..='~').contains(c))
                        .take(200)
                        .collect(),
                ),
            };
            let (code, status_message, _) = raw_call_as(
                app.address(),
                &app.key,
                customer.as_deref(),
                &path,
                &message,
            )
            .await;
            calls += 1;
            *answers.entry(format!("{code:?}")).or_default() += 1;
            assert!(
                !matches!(code, Code::Unknown | Code::Internal),
                "{path} answered {code:?} ({status_message}) to {message:?}"
            );
            let after = snapshot.take(&app).await;
            if code != Code::Ok {
                assert_eq!(
                    after, before,
                    "{path} failed with {code:?} but changed what is stored"
                );
            }
            before = after;
        }
    }
    assert_eq!(calls, methods.len() * 100);
    eprintln!(
        "{calls} calls, {} tables compared after each: {answers:?}",
        snapshot.queries.len()
    );
    // Still serving.
    app.customer("after-the-storm").await;
}
