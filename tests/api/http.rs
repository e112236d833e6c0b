//! The HTTP listener, as its users call it: the guide's story in JSON over HTTP/1.1 and HTTP/2,
//! errors as JSON `google.rpc.Status` under grpc-gateway's HTTP codes, the same keys, scopes,
//! lockout, deadlines and metrics as gRPC, the change feed as newline-delimited JSON, the
//! OpenAPI document, gRPC-Web, and CORS.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::Full;
use mandate::pb;
use mandate_domain::client::{Scope, Scopes};
use prost::Message;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    the_guides_story_over_http,
    refused_calls_answer_json_statuses_and_change_nothing,
    keys_and_scopes_hold_over_http,
    the_lockout_says_when_to_retry,
    a_deadline_over_http_answers_504_and_rolls_back,
    metrics_count_http_calls_by_transport,
    the_change_feed_streams_json_lines,
    grpc_web_reaches_the_same_service,
);

fn id(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no {pointer} in {value}"))
        .to_owned()
}

/// Registers a customer over HTTP; its id.
async fn customer(http: &HttpClient, subject: &str) -> String {
    let body = json!({
        "externalSubject": subject,
        "displayName": format!("Customer {subject}"),
        "email": format!("{subject}@example.ca"),
    });
    let answer = http
        .ok("POST", "/v1/customers", None, Some(&body.to_string()))
        .await;
    id(&answer, "/customer/customerId")
}

fn contractor_body(name: &str) -> String {
    json!({
        "businessName": name,
        "contact": {"name": "Marie Tremblay", "phone": "613-555-0199", "email": "marie@rideaubuilders.ca"},
        "mailingAddress": {"street": "110 Laurier Ave W", "city": "Ottawa", "province": "ON", "postalCode": "K1P 1J1", "country": "CA"},
    })
    .to_string()
}

fn check_body(customer: &str, permission: &str, target: (&str, &str)) -> String {
    let mut body = json!({ "customerId": customer, "permission": permission });
    body[target.0] = Value::String(target.1.to_owned());
    body.to_string()
}

async fn the_guides_story_over_http(backend: Backend) {
    let app = spawn_app(backend).await;
    for http2 in [false, true] {
        let http = HttpClient::new(app.http_address, Some(&app.key), http2);
        let tag = if http2 { "h2" } else { "h1" };
        let marie = customer(&http, &format!("oidc|marie-{tag}")).await;
        let ben = customer(&http, &format!("oidc|ben-{tag}")).await;
        let registered = http
            .ok(
                "POST",
                "/v1/contractors",
                Some(&marie),
                Some(&contractor_body("Rideau Builders Inc.")),
            )
            .await;
        let rideau = id(&registered, "/contractor/contractorId");
        assert_eq!(registered["permissions"].as_array().map(Vec::len), Some(5));
        // Revisions are int64: strings in JSON.
        assert!(registered["revision"].is_string(), "{registered}");
        let pin = http
            .ok(
                "GET",
                &format!("/v1/contractors/{rideau}/pin"),
                Some(&marie),
                None,
            )
            .await;
        let typed = id(&pin, "/pin").to_lowercase().replace('-', " ");
        let associated = http
            .ok(
                "POST",
                "/v1/contractors:associateByPin",
                Some(&ben),
                Some(&json!({ "pin": typed }).to_string()),
            )
            .await;
        assert_eq!(id(&associated, "/contractor/contractorId"), rideau);
        let check = check_body(&ben, "PERMISSION_PAY", ("contractorId", &rideau));
        let denied = http
            .ok("POST", "/v1/checks:check", None, Some(&check))
            .await;
        // Every field is written, also those at their default.
        assert_eq!(denied["allowed"], false, "{denied}");
        assert_eq!(denied["reason"], "CHECK_REASON_PERMISSION_NOT_HELD");
        let associates = http
            .ok(
                "GET",
                &format!("/v1/contractors/{rideau}/associates?pageSize=10"),
                Some(&marie),
                None,
            )
            .await;
        assert_eq!(associates["associates"].as_array().map(Vec::len), Some(2));
        let granted = http
            .ok(
                "POST",
                &format!("/v1/contractors/{rideau}/associates/{ben}:setPermissions"),
                Some(&marie),
                // Path fields written out at their default, as some clients do, are unset.
                Some(
                    r#"{"contractorId": "", "customerId": null,
                        "permissions": ["PERMISSION_PAY", "PERMISSION_INSPECTIONS"]}"#,
                ),
            )
            .await;
        let revision = id(&granted, "/revision");
        let allowed = http
            .ok("POST", "/v1/checks:check", None, Some(&check))
            .await;
        assert_eq!(allowed["allowed"], true, "{allowed}");
        assert_eq!(allowed["reason"], "CHECK_REASON_GRANTED_DIRECTLY");
        assert_eq!(allowed["revision"], Value::String(revision));
        // An application number with a space, in the path.
        let application = format!("24-123456 BLD {}", tag.to_uppercase());
        let escaped = application.replace(' ', "%20");
        http.ok(
            "POST",
            &format!("/v1/applications/{escaped}:link"),
            None,
            Some(&json!({ "contractorId": rideau }).to_string()),
        )
        .await;
        let on_permit = check_body(
            &ben,
            "PERMISSION_INSPECTIONS",
            ("applicationId", &application),
        );
        let allowed = http
            .ok("POST", "/v1/checks:check", None, Some(&on_permit))
            .await;
        assert_eq!(allowed["allowed"], true, "{allowed}");
        assert_eq!(allowed["contractorId"], Value::String(rideau.clone()));
        let listed = http
            .ok(
                "GET",
                &format!("/v1/customers/{ben}/applications?permission=PERMISSION_PAY"),
                None,
                None,
            )
            .await;
        assert_eq!(
            listed["applications"][0]["applicationId"],
            Value::String(application.clone()),
            "{listed}"
        );
        let batch = json!({ "items": [
            { "customerId": ben, "permission": "PERMISSION_PAY", "contractorId": rideau },
            { "customerId": ben, "permission": "PERMISSION_MANAGE", "contractorId": rideau },
        ]});
        let decided = http
            .ok(
                "POST",
                "/v1/checks:batchCheck",
                None,
                Some(&batch.to_string()),
            )
            .await;
        let allowed: Vec<&Value> = decided["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|result| &result["decision"]["allowed"])
            .collect();
        assert_eq!(
            allowed,
            [&Value::Bool(true), &Value::Bool(false)],
            "{decided}"
        );
        let last_manager = http
            .send(
                "DELETE",
                &format!("/v1/contractors/{rideau}/associates/{marie}"),
                Some(&marie),
                None,
                &[],
            )
            .await;
        assert_eq!(last_manager.status, 400, "{}", last_manager.text);
        assert_eq!(last_manager.json["code"], 9, "FAILED_PRECONDITION");
        http.ok(
            "DELETE",
            &format!("/v1/contractors/{rideau}/associates/{ben}?rotatePin=true"),
            Some(&marie),
            None,
        )
        .await;
        let removed = http
            .ok("POST", "/v1/checks:check", None, Some(&check))
            .await;
        assert_eq!(
            removed["reason"], "CHECK_REASON_NOT_ASSOCIATED",
            "{removed}"
        );
        // The PIN was rotated with the removal: the old one no longer associates.
        let again = http
            .send(
                "POST",
                "/v1/contractors:associateByPin",
                Some(&ben),
                Some(&json!({ "pin": typed }).to_string()),
                &[],
            )
            .await;
        assert_eq!(again.status, 404, "{}", again.text);
    }
}

/// A refused call: method, path, acting customer, body; the HTTP status, the gRPC code and the
/// fields the answer must name.
type Refused<'a> = (
    &'a str,
    String,
    Option<&'a str>,
    Option<String>,
    u16,
    i64,
    Vec<&'a str>,
);

async fn refused_calls_answer_json_statuses_and_change_nothing(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    let http = app.http();
    let before = app.revision_counter().await;
    let big = format!(r#"{{"businessName": "{}"}}"#, "x".repeat(300 * 1024));
    let cases: Vec<Refused<'_>> = vec![
        // An unknown field, a wrong type, broken JSON, a body that is not an object.
        (
            "POST",
            "/v1/checks:check".into(),
            None,
            Some(r#"{"customerId": "x", "bogus": 1}"#.into()),
            400,
            3,
            vec!["bogus"],
        ),
        (
            "POST",
            "/v1/checks:check".into(),
            None,
            Some(r#"{"atLeastRevision": {"a": 1}}"#.into()),
            400,
            3,
            vec!["atLeastRevision"],
        ),
        (
            "POST",
            "/v1/checks:check".into(),
            None,
            Some("{".into()),
            400,
            3,
            vec!["body"],
        ),
        (
            "POST",
            "/v1/checks:check".into(),
            None,
            Some("[]".into()),
            400,
            3,
            vec!["body"],
        ),
        // The service's own validation, with its field violations.
        (
            "POST",
            "/v1/checks:check".into(),
            None,
            Some(
                r#"{"customerId": "nope", "permission": "PERMISSION_PAY", "contractorId": "x"}"#
                    .into(),
            ),
            400,
            3,
            vec!["customer_id", "contractor_id"],
        ),
        // A body larger than the listener takes.
        (
            "POST",
            "/v1/contractors".into(),
            Some(&manager),
            Some(big),
            400,
            11,
            vec![],
        ),
        // A query parameter that is no field; a body on a route that takes none.
        (
            "GET",
            format!("/v1/contractors/{contractor}/associates?bogus=1"),
            Some(&manager),
            None,
            400,
            3,
            vec!["bogus"],
        ),
        (
            "DELETE",
            format!("/v1/contractors/{contractor}/associates/{associate}"),
            Some(&manager),
            Some("{}".into()),
            400,
            3,
            vec!["body"],
        ),
        // The path and the body disagree.
        (
            "POST",
            format!("/v1/contractors/{contractor}/associates/{associate}:setPermissions"),
            Some(&manager),
            Some(format!(
                r#"{{"contractorId": "{}", "permissions": ["PERMISSION_PAY"]}}"#,
                uuid::Uuid::now_v7()
            )),
            400,
            3,
            vec!["contractorId"],
        ),
        // A custom method's path with another method.
        (
            "GET",
            format!("/v1/contractors/{contractor}:leave"),
            Some(&associate),
            None,
            405,
            12,
            vec![],
        ),
        // Not found, not allowed, a precondition.
        (
            "GET",
            format!("/v1/contractors/{}", uuid::Uuid::now_v7()),
            None,
            None,
            404,
            5,
            vec![],
        ),
        (
            "POST",
            format!("/v1/contractors/{contractor}/associates/{manager}:setPermissions"),
            Some(&associate),
            Some(r#"{"permissions": ["PERMISSION_PAY"]}"#.into()),
            403,
            7,
            vec![],
        ),
        (
            "POST",
            format!("/v1/contractors/{contractor}/associates/{manager}:setPermissions"),
            Some(&manager),
            Some(r#"{"permissions": ["PERMISSION_PAY"]}"#.into()),
            400,
            9,
            vec![],
        ),
        // No such route; a route with another method.
        ("GET", "/v1/nothing".into(), None, None, 404, 5, vec![]),
        (
            "PUT",
            "/v1/checks:check".into(),
            None,
            Some("{}".into()),
            405,
            12,
            vec![],
        ),
    ];
    for (method, path, customer, body, status, code, fields) in cases {
        let answer = http
            .send(method, &path, customer, body.as_deref(), &[])
            .await;
        let shown = format!(
            "{method} {path}: {}",
            answer.text.chars().take(400).collect::<String>()
        );
        assert_eq!(answer.status, status, "{shown}");
        assert_eq!(answer.json["code"], code, "{shown}");
        assert!(
            answer.json["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{shown}"
        );
        assert_eq!(
            answer.header("content-type"),
            Some("application/json"),
            "{shown}"
        );
        assert_eq!(answer.header("cache-control"), Some("no-store"), "{shown}");
        let violations = answer.violations();
        for field in fields {
            assert!(
                violations.iter().any(|v| v == field),
                "{field} not named: {shown}"
            );
        }
        if status == 405 {
            assert_eq!(answer.header("allow"), Some("POST"), "{shown}");
        }
    }
    assert_eq!(
        app.revision_counter().await,
        before,
        "a refused call changed something"
    );
}

async fn keys_and_scopes_hold_over_http(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    let check = check_body(&associate, "PERMISSION_PAY", ("contractorId", &contractor));
    let anonymous = HttpClient::new(app.http_address, None, false);
    let answer = anonymous
        .send("POST", "/v1/checks:check", None, Some(&check), &[])
        .await;
    assert_eq!(answer.status, 401, "{}", answer.text);
    assert_eq!(answer.json["code"], 16);
    assert!(
        answer
            .header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer"))
    );
    // The key is judged before the request: broken JSON, a bad query or an oversized body from
    // a caller without a key is refused for the key.
    for (method, path, body) in [
        ("POST", "/v1/checks:check".to_owned(), Some("{".to_owned())),
        (
            "GET",
            format!("/v1/contractors/{contractor}/associates?pageSize=x"),
            None,
        ),
        (
            "POST",
            "/v1/contractors".to_owned(),
            Some("x".repeat(300 * 1024)),
        ),
    ] {
        let answer = anonymous
            .send(method, &path, None, body.as_deref(), &[])
            .await;
        assert_eq!(answer.status, 401, "{method} {path}: {}", answer.text);
    }
    let wrong = HttpClient::new(app.http_address, Some("mk_not_a_key"), false);
    let answer = wrong
        .send("POST", "/v1/checks:check", None, Some(&check), &[])
        .await;
    assert_eq!(answer.status, 401, "{}", answer.text);

    let scopes: Scopes = [Scope::Check].into_iter().collect();
    let issued = mandate::credentials::keys::create(&app.store, "payments", scopes, None)
        .await
        .expect("a key");
    app.keys.reload(&app.store).await.expect("reload the keys");
    let payments = HttpClient::new(app.http_address, Some(&issued.secret), false);
    payments
        .ok("POST", "/v1/checks:check", None, Some(&check))
        .await;
    // A key without the scope hears so, whatever its request.
    let answer = payments
        .send("POST", "/v1/customers", None, Some("{"), &[])
        .await;
    assert_eq!(answer.status, 403, "{}", answer.text);
    // A check key may not manage, nor act for a customer.
    let answer = payments
        .send(
            "GET",
            &format!("/v1/contractors/{contractor}/pin"),
            Some(&manager),
            None,
            &[],
        )
        .await;
    assert_eq!(answer.status, 403, "{}", answer.text);
    assert_eq!(answer.json["code"], 7);
    let answer = payments
        .send(
            "POST",
            "/v1/customers",
            None,
            Some(r#"{"externalSubject": "x"}"#),
            &[],
        )
        .await;
    assert_eq!(answer.status, 403, "{}", answer.text);
}

async fn the_lockout_says_when_to_retry(backend: Backend) {
    let mut app = spawn_app_with(backend, |settings| settings.pin_attempts = 3).await;
    let (_, _, _, pin) = app.story().await;
    let guesser = app.customer("guesser").await.customer_id;
    let http = app.http();
    let mut statuses = Vec::new();
    let mut last = None;
    for n in 0..5u64 {
        let guess =
            mandate_domain::pin::Pin::from_random(0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(n + 3))
                .expose_formatted();
        if guess == pin {
            continue;
        }
        let answer = http
            .send(
                "POST",
                "/v1/contractors:associateByPin",
                Some(&guesser),
                Some(&json!({ "pin": guess }).to_string()),
                &[],
            )
            .await;
        statuses.push(answer.status);
        last = Some(answer);
    }
    assert_eq!(&statuses[..3], &[404, 404, 404], "{statuses:?}");
    let locked = last.expect("an answer");
    assert_eq!(locked.status, 429, "{}", locked.text);
    assert_eq!(locked.json["code"], 8);
    let retry: u64 = locked
        .header("retry-after")
        .and_then(|value| value.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=900).contains(&retry), "{retry}");
    let detail = &locked.json["details"][0];
    assert_eq!(detail["@type"], "type.googleapis.com/google.rpc.RetryInfo");
    assert!(
        detail["retryDelay"]
            .as_str()
            .is_some_and(|d| d.ends_with('s')),
        "{detail}"
    );
}

async fn a_deadline_over_http_answers_504_and_rolls_back(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (manager, associate, contractor, _pin) = app.story().await;
    let http = app.http();
    let path = format!("/v1/contractors/{contractor}/associates/{associate}:setPermissions");
    let body = r#"{"permissions": ["PERMISSION_PAY"]}"#;
    let malformed = http
        .send(
            "POST",
            &path,
            Some(&manager),
            Some(body),
            &[("grpc-timeout", "soon")],
        )
        .await;
    assert_eq!(malformed.status, 400, "{}", malformed.text);
    assert_eq!(malformed.violations(), ["grpc-timeout"]);
    let before = app.revision_counter().await;
    let writer = app.hold_revision_lock().await;
    for header in [("request-timeout", "0.3"), ("grpc-timeout", "300m")] {
        let answer = http
            .send("POST", &path, Some(&manager), Some(body), &[header])
            .await;
        assert_eq!(answer.status, 504, "{header:?}: {}", answer.text);
        assert_eq!(answer.json["code"], 4);
    }
    writer.rollback().await.expect("release the lock");
    assert_eq!(app.revision_counter().await, before);
    let decided = http
        .ok(
            "POST",
            "/v1/checks:check",
            None,
            Some(&check_body(
                &associate,
                "PERMISSION_PAY",
                ("contractorId", &contractor),
            )),
        )
        .await;
    assert_eq!(
        decided["allowed"], false,
        "the cut-off grant was rolled back: {decided}"
    );
}

async fn metrics_count_http_calls_by_transport(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, associate, contractor, _) = app.story().await;
    let http = app.http();
    let check = check_body(&associate, "PERMISSION_PAY", ("contractorId", &contractor));
    let answer = http
        .send(
            "POST",
            "/v1/checks:check",
            None,
            Some(&check),
            &[("x-request-id", "pay-42")],
        )
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-request-id"), Some("pay-42"));
    let generated = http
        .send("POST", "/v1/checks:check", None, Some("{}"), &[])
        .await;
    assert!(
        generated
            .header("x-request-id")
            .is_some_and(|id| !id.is_empty())
    );
    app.metric_reaches(
        "grpc_server_handled_total{grpc_service=\"mandate.v1.PermissionService\",\
         grpc_method=\"CheckPermission\",transport=\"http\",grpc_code=\"OK\"}",
        1.0,
    )
    .await;
    let text = app
        .metric_reaches(
            "grpc_server_handled_total{grpc_service=\"mandate.v1.PermissionService\",\
             grpc_method=\"CheckPermission\",transport=\"http\",grpc_code=\"INVALID_ARGUMENT\"}",
            1.0,
        )
        .await;
    assert_eq!(
        series(
            &text,
            "grpc_server_handled_total{grpc_service=\"mandate.v1.PermissionService\",\
             grpc_method=\"CheckPermission\",transport=\"grpc\",grpc_code=\"OK\"}"
        ),
        None,
        "no gRPC check was made:\n{text}"
    );
    assert!(
        series(
            &text,
            "mandate_decisions_total{permission=\"PERMISSION_PAY\",\
             reason=\"CHECK_REASON_PERMISSION_NOT_HELD\"}"
        )
        .is_some_and(|count| count >= 1.0),
        "{text}"
    );
}

async fn the_change_feed_streams_json_lines(backend: Backend) {
    use http_body_util::BodyExt;
    let mut app = spawn_app(backend).await;
    let (_manager, _associate, _contractor, _) = app.story().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = http::Request::get(format!(
        "http://{}/v1/changes:watch?afterRevision=0",
        app.http_address
    ))
    .header("authorization", format!("Bearer {}", app.key))
    .body(Full::new(Bytes::new()))
    .expect("a request");
    let response = client.request(request).await.expect("the feed");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-type").map(|v| v.as_bytes()),
        Some(b"application/x-ndjson".as_slice())
    );
    let mut body = response.into_body();
    let mut text = String::new();
    let mut revisions = Vec::new();
    // The story made four changes; a fifth, made while the feed is open, arrives live.
    let mut registered = false;
    while revisions.len() < 5 {
        let frame = body
            .frame()
            .await
            .expect("the feed goes on")
            .expect("a frame");
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
        while let Some((line, rest)) = text.split_once('\n') {
            let change: Value = serde_json::from_str(line).expect("a JSON line");
            revisions.push(id(&change, "/result/change/revision"));
            text = rest.to_owned();
        }
        if revisions.len() >= 4 && !registered {
            app.customer("live").await;
            registered = true;
        }
    }
    assert_eq!(revisions, ["1", "2", "3", "4", "5"]);
}

/// A gRPC-Web message frame, or the trailers frame (flag 0x80).
fn grpc_web_frames(mut body: Bytes) -> (Vec<Bytes>, String) {
    let mut messages = Vec::new();
    let mut trailers = String::new();
    while body.remaining() >= 5 {
        let flag = body.get_u8();
        let length = body.get_u32() as usize;
        let frame = body.split_to(length);
        if flag & 0x80 != 0 {
            trailers.push_str(&String::from_utf8_lossy(&frame));
        } else {
            messages.push(frame);
        }
    }
    (messages, trailers)
}

async fn grpc_web_reaches_the_same_service(backend: Backend) {
    let mut app = spawn_app_with(backend, |settings| {
        settings.cors_origins = vec!["https://portal.example.org".to_owned()];
    })
    .await;
    let (_, associate, contractor, _) = app.story().await;
    let http = app.http();
    let message = pb::CheckPermissionRequest {
        customer_id: associate.clone(),
        permission: pb::Permission::Pay as i32,
        contractor_id: contractor.clone(),
        ..Default::default()
    };
    let call = |message: &pb::CheckPermissionRequest, key: Option<&str>| {
        let mut framed = BytesMut::new();
        framed.put_u8(0);
        framed.put_u32(message.encoded_len() as u32);
        message.encode(&mut framed).expect("encode");
        let mut request = http::Request::post(format!(
            "http://{}/mandate.v1.PermissionService/CheckPermission",
            app.http_address
        ))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("origin", "https://portal.example.org");
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        request.body(Full::new(framed.freeze())).expect("a request")
    };
    let answer = http.answer(call(&message, Some(&app.key))).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("https://portal.example.org")
    );
    let (messages, trailers) = grpc_web_frames(answer.bytes.clone());
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    let decided = pb::CheckPermissionResponse::decode(messages[0].clone()).expect("a response");
    assert_eq!(decided.reason, pb::CheckReason::PermissionNotHeld as i32);
    // Without a key: the same refusal as over gRPC.
    let answer = http.answer(call(&message, None)).await;
    let status = answer.header("grpc-status").map(str::to_owned).or_else(|| {
        let (_, trailers) = grpc_web_frames(answer.bytes.clone());
        trailers.lines().find_map(|line| {
            line.strip_prefix("grpc-status:")
                .map(|s| s.trim().to_owned())
        })
    });
    assert_eq!(status.as_deref(), Some("16"), "{answer:?}");
    app.metric_reaches(
        "grpc_server_handled_total{grpc_service=\"mandate.v1.PermissionService\",\
         grpc_method=\"CheckPermission\",transport=\"grpc-web\",grpc_code=\"OK\"}",
        1.0,
    )
    .await;

    // CORS: a preflight from the listed origin is answered; another origin gets no grant.
    for (origin, allowed) in [
        ("https://portal.example.org", true),
        ("https://evil.example.com", false),
    ] {
        let preflight = http::Request::builder()
            .method("OPTIONS")
            .uri(format!("http://{}/v1/checks:check", app.http_address))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .body(Full::new(Bytes::new()))
            .expect("a preflight");
        let answer = http.answer(preflight).await;
        assert_eq!(
            answer.header("access-control-allow-origin").is_some(),
            allowed,
            "{origin}: {answer:?}"
        );
    }
}

/// Without configured origins, no CORS header is ever sent: no other origin's page can call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_off_by_default() {
    let app = spawn_app(Backend::Sqlite).await;
    let preflight = http::Request::builder()
        .method("OPTIONS")
        .uri(format!("http://{}/v1/checks:check", app.http_address))
        .header("origin", "https://portal.example.org")
        .header("access-control-request-method", "POST")
        .body(Full::new(Bytes::new()))
        .expect("a preflight");
    let answer = app.http().answer(preflight).await;
    assert!(
        answer.header("access-control-allow-origin").is_none(),
        "{answer:?}"
    );
}

/// The document served is the one committed under docs/, and names every route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_served_as_committed() {
    let app = spawn_app(Backend::Sqlite).await;
    let anonymous = HttpClient::new(app.http_address, None, false);
    let answer = anonymous
        .send("GET", "/openapi.json", None, None, &[])
        .await;
    assert_eq!(answer.status, 200);
    let committed: Value = serde_json::from_str(include_str!("../../docs/openapi.json"))
        .expect("docs/openapi.json is JSON");
    assert_eq!(answer.json, committed);
    assert_eq!(answer.json["openapi"], "3.1.0");
    assert!(answer.json["paths"]["/v1/checks:check"]["post"].is_object());
}

/// TLS on the gRPC listener with a plain-HTTP listener off loopback would put keys on the wire
/// in clear: the server refuses to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_beside_tls_must_stay_on_loopback() {
    let database = TestDatabase::new(Backend::Sqlite).await;
    let mut settings = database.settings();
    let (cert, key) = crate::pki::Authority::new("test CA")
        .server()
        .write(database.dir(), "server");
    settings.tls.tls_cert = Some(cert);
    settings.tls.tls_key = Some(key);
    settings.http_listen = "0.0.0.0:0".parse().expect("an address");
    let refused = mandate::server::Application::build(&settings).await;
    let message = refused.err().map(|err| err.to_string()).unwrap_or_default();
    assert!(message.contains("--http-listen"), "{message}");
    settings.http_listen = "127.0.0.1:0".parse().expect("an address");
    assert!(mandate::server::Application::build(&settings).await.is_ok());
}

/// A keep-alive connection that only reads the document is in use, not a silent socket: it
/// outlives the handshake timeout, which closes a connection that never sends a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_in_use_outlives_the_handshake_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.handshake_timeout_ms = 300;
    })
    .await;
    let request = format!(
        "GET /openapi.json HTTP/1.1\r\nHost: {}\r\n\r\n",
        app.http_address
    );
    let mut stream = tokio::net::TcpStream::connect(app.http_address)
        .await
        .expect("connect");
    let mut silent = tokio::net::TcpStream::connect(app.http_address)
        .await
        .expect("connect");
    let document = serde_json::to_string_pretty(
        &serde_json::from_str::<Value>(include_str!("../../docs/openapi.json")).expect("JSON"),
    )
    .expect("JSON")
    .len();
    for _ in 0..3 {
        stream.write_all(request.as_bytes()).await.expect("send");
        // The head, then the whole document, on the same connection each time.
        let mut answer = Vec::new();
        let mut chunk = vec![0u8; 65536];
        while answer.len() <= document || !answer.ends_with(b"}\n") {
            let read = stream.read(&mut chunk).await.expect("read");
            assert!(read > 0, "the connection was closed");
            answer.extend_from_slice(&chunk[..read]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"));
        // Past the handshake timeout between two requests.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The socket that never spoke was closed by then.
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), silent.read(&mut byte))
        .await
        .expect("closed within the handshake timeout");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
}
