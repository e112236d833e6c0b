//! Bytes on the wire: what does not decode is the caller's error, and no request is read past
//! the size the largest legitimate one needs.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use mandate::pb::{CheckPermissionRequest, CheckPermissionsRequest, CheckPermissionsResponse};
use prost::Message;
use tonic::Code;

use crate::helpers::{Backend, spawn_app};

/// Sends `message` (already encoded, or not) to the gRPC method at `path` over a fresh HTTP/2
/// connection; returns the status code and message, and the response's first message.
async fn raw_call(
    address: SocketAddr,
    key: &str,
    path: &str,
    message: &[u8],
) -> (Code, String, Bytes) {
    let socket = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let (client, connection) = h2::client::handshake(socket).await.expect("HTTP/2");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::post(format!("http://{address}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {key}"))
        .body(())
        .expect("a request");
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
