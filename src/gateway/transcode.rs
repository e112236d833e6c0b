//! JSON to protobuf and back, by the proto3 JSON mapping of `prost-reflect` over the server's
//! descriptor set: a request's body, path and query become one JSON object that is decoded
//! strictly (an unknown field or a wrong type is `INVALID_ARGUMENT` naming the field), and a
//! response or a status is written in lowerCamelCase, enums by name, 64-bit integers as
//! strings and timestamps in RFC 3339, with every field present.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, Kind, MessageDescriptor, SerializeOptions,
};
use serde_json::{Map, Value};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::gateway::routes::{BodyRule, Route, field_at, percent_decode};

/// How responses are written: every field, also those at their default (`"allowed": false`).
const WRITE: SerializeOptions = SerializeOptions::new().skip_default_fields(false);
/// How requests are read: an unknown field is an error.
const READ: DeserializeOptions = DeserializeOptions::new().deny_unknown_fields(true);

/// `INVALID_ARGUMENT` with one field at fault, as the gRPC API answers it.
pub fn bad_field(field: &str, description: impl Into<String>) -> Status {
    let description = description.into();
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {description}"),
        ErrorDetails::with_bad_request_violation(field, description),
    )
}

/// The request message of `route`, from the path's fields, the query string and the body.
pub fn request_message(
    route: &Route,
    path_fields: Vec<(String, String)>,
    query: Option<&str>,
    body: &[u8],
) -> Result<DynamicMessage, Status> {
    let input = route.method.input();
    let blank = body.iter().all(u8::is_ascii_whitespace);
    let mut object = match route.body {
        BodyRule::All if blank => Map::new(),
        BodyRule::All => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => object,
            Ok(_) => return Err(bad_field("body", "must be a JSON object")),
            Err(err) => return Err(bad_field("body", format!("is not JSON: {err}"))),
        },
        BodyRule::None if blank => Map::new(),
        BodyRule::None => {
            return Err(bad_field(
                "body",
                format!(
                    "{} {} takes no body: send its fields in the query string",
                    route.http_method, route.template
                ),
            ));
        }
    };
    for (path, value) in path_fields {
        set_field(
            &mut object,
            &input,
            &path,
            Value::String(value),
            Source::Path,
        )?;
    }
    if let Some(query) = query {
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |text: &str| percent_decode(&text.replace('+', " "));
            let (Some(name), Some(value)) = (decode(name), decode(value)) else {
                return Err(bad_field("query", "is not valid percent-encoded UTF-8"));
            };
            if route.body == BodyRule::All {
                return Err(bad_field(
                    &name,
                    "send it in the JSON body: this route takes no query parameters",
                ));
            }
            let path = proto_path(&input, &name)
                .ok_or_else(|| bad_field(&name, format!("is not a field of {}", input.name())))?;
            let field = field_at(&input, &path).ok_or_else(|| bad_field(&name, "unknown"))?;
            let value = query_value(&field.kind(), &value);
            set_field(&mut object, &input, &path, value, Source::Query)?;
        }
    }
    object
        .iter()
        .try_for_each(|(name, value)| exact_numbers(value, name))?;
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(Value::Object(object), &mut track);
    DynamicMessage::deserialize_with_options(input, deserializer, &READ).map_err(|err| {
        let path = track.path().to_string();
        let message = err.to_string();
        let field = match unknown_field(&message) {
            Some(name) if path == "." || path.is_empty() => name.to_owned(),
            Some(name) => format!("{path}.{name}"),
            None if path == "." => "body".to_owned(),
            None => path,
        };
        bad_field(&field, message)
    })
}

/// Refuses a JSON number that is not an integer of 64 bits but reads as a large one (beyond
/// 2^53 a float is no longer exact): `-9223372036854775809` would otherwise be read as the
/// smallest 64-bit integer. Such integers are to be sent as strings, as proto3 JSON writes them.
/// (No `mandate.v1` message has a float field, which could take such a number.)
fn exact_numbers(value: &Value, path: &str) -> Result<(), Status> {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match value {
        Value::Number(number) if number.is_f64() => match number.as_f64() {
            Some(float) if float.abs() >= EXACT => Err(bad_field(
                path,
                "is a number too large to be exact: send it as a string",
            )),
            _ => Ok(()),
        },
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(at, item)| exact_numbers(item, &format!("{path}[{at}]"))),
        Value::Object(fields) => fields
            .iter()
            .try_for_each(|(name, item)| exact_numbers(item, &format!("{path}.{name}"))),
        _ => Ok(()),
    }
}

/// The name in prost-reflect's "unrecognized field name 'name'" (or serde's "unknown field
/// `name`, expected …").
fn unknown_field(message: &str) -> Option<&str> {
    if let Some(rest) = message.strip_prefix("unrecognized field name '") {
        return rest.split('\'').next();
    }
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

#[derive(Clone, Copy)]
enum Source {
    Path,
    Query,
}

/// The proto path of a query parameter named by proto names or JSON names, dotted.
fn proto_path(message: &MessageDescriptor, name: &str) -> Option<String> {
    let mut message = message.clone();
    let mut path = Vec::new();
    let mut parts = name.split('.').peekable();
    while let Some(part) = parts.next() {
        let field = message
            .fields()
            .find(|field| field.name() == part || field.json_name() == part)?;
        path.push(field.name().to_owned());
        if parts.peek().is_some() {
            message = field.kind().as_message()?.clone();
        }
    }
    Some(path.join("."))
}

/// A query parameter's text as the JSON value its field's kind reads.
fn query_value(kind: &Kind, text: &str) -> Value {
    let number = || text.parse::<serde_json::Number>().ok().map(Value::Number);
    match kind {
        Kind::Bool => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(text.to_owned()),
        },
        Kind::Int32
        | Kind::Sint32
        | Kind::Sfixed32
        | Kind::Uint32
        | Kind::Fixed32
        | Kind::Float
        | Kind::Double => number().unwrap_or_else(|| Value::String(text.to_owned())),
        _ => Value::String(text.to_owned()),
    }
}

/// Sets the field at the dotted proto `path` in the JSON `object`, by JSON names. A path value
/// the body sets to something else too is refused; query parameters repeat into lists.
fn set_field(
    object: &mut Map<String, Value>,
    message: &MessageDescriptor,
    path: &str,
    value: Value,
    source: Source,
) -> Result<(), Status> {
    let mut object = object;
    let mut message = message.clone();
    let mut parts = path.split('.').peekable();
    let mut json_path = Vec::new();
    while let Some(part) = parts.next() {
        let field = message
            .get_field_by_name(part)
            .ok_or_else(|| bad_field(path, "is not a field of the request"))?;
        let name = field.json_name().to_owned();
        // The body may name the field by its proto name too.
        if name != part
            && let Some(given) = object.remove(part)
        {
            object.insert(name.clone(), given);
        }
        json_path.push(name.clone());
        if parts.peek().is_none() {
            let shown = json_path.join(".");
            match (object.get_mut(&name), source) {
                // Written out at its default ("" or null), the field is unset in proto3 JSON:
                // the path's value stands.
                (Some(given), Source::Path) if given.is_null() || *given == "" => {
                    *given = value;
                }
                (Some(given), Source::Path) if *given != value => {
                    return Err(bad_field(
                        &shown,
                        format!(
                            "the body says {given}, the path {value}: leave it out of the body"
                        ),
                    ));
                }
                (Some(_), Source::Path) => {}
                (Some(Value::Array(list)), Source::Query) if field.is_list() => list.push(value),
                (Some(_), Source::Query) => {
                    return Err(bad_field(&shown, "is given more than once"));
                }
                (None, _) if field.is_list() => {
                    object.insert(name, Value::Array(vec![value]));
                }
                (None, _) => {
                    object.insert(name, value);
                }
            }
            return Ok(());
        }
        let Some(next) = field.kind().as_message().cloned() else {
            return Err(bad_field(path, "is not a field of the request"));
        };
        message = next;
        let entry = object
            .entry(name)
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(inner) = entry else {
            return Err(bad_field(&json_path.join("."), "must be a JSON object"));
        };
        object = inner;
    }
    Ok(())
}

/// `message` as one gRPC frame: uncompressed, its length, its bytes.
pub fn frame(message: &DynamicMessage) -> Bytes {
    let length = message.encoded_len();
    let mut framed = BytesMut::with_capacity(5 + length);
    framed.put_u8(0);
    framed.put_u32(u32::try_from(length).unwrap_or(u32::MAX));
    message.encode_raw(&mut framed);
    framed.freeze()
}

/// The messages framed in `buffer`, taken out of it; what remains is an unfinished frame.
pub fn unframe(buffer: &mut BytesMut) -> Result<Vec<Bytes>, Status> {
    let mut messages = Vec::new();
    while buffer.len() >= 5 {
        if buffer[0] != 0 {
            return Err(Status::internal(
                "a compressed response cannot be transcoded",
            ));
        }
        let length = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]);
        let length = usize::try_from(length).unwrap_or(usize::MAX);
        if buffer.len() - 5 < length {
            break;
        }
        let mut frame = buffer.split_to(5 + length);
        messages.push(frame.split_off(5).freeze());
    }
    Ok(messages)
}

/// A response message's bytes as JSON.
pub fn response_json(descriptor: &MessageDescriptor, bytes: Bytes) -> Result<Value, Status> {
    let message = DynamicMessage::decode(descriptor.clone(), bytes)
        .map_err(|err| Status::internal(format!("an undecodable response: {err}")))?;
    message
        .serialize_with_options(serde_json::value::Serializer, &WRITE)
        .map_err(|err| Status::internal(format!("a response cannot be written as JSON: {err}")))
}

/// A status as the JSON `google.rpc.Status`, with its details by type.
pub fn status_json(pool: &DescriptorPool, status: &Status) -> Value {
    let plain = || {
        serde_json::json!({
            "code": status.code() as i32,
            "message": status.message(),
            "details": [],
        })
    };
    let Some(descriptor) = pool.get_message_by_name("google.rpc.Status") else {
        return plain();
    };
    let details = status.details();
    let message = if details.is_empty() {
        None
    } else {
        DynamicMessage::decode(descriptor.clone(), details).ok()
    };
    let Some(mut message) = message else {
        return plain();
    };
    // The code and message are the status's own, whatever the details say.
    message.set_field_by_name("code", prost_reflect::Value::I32(status.code() as i32));
    message.set_field_by_name(
        "message",
        prost_reflect::Value::String(status.message().to_owned()),
    );
    message
        .serialize_with_options(serde_json::value::Serializer, &WRITE)
        .unwrap_or_else(|_| plain())
}

/// The HTTP status of a gRPC code, as grpc-gateway maps them.
pub fn http_status(code: Code) -> http::StatusCode {
    use http::StatusCode as S;
    match code {
        Code::Ok => S::OK,
        Code::Cancelled => S::from_u16(499).unwrap_or(S::BAD_REQUEST),
        Code::Unknown | Code::Internal | Code::DataLoss => S::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => S::BAD_REQUEST,
        Code::DeadlineExceeded => S::GATEWAY_TIMEOUT,
        Code::NotFound => S::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => S::CONFLICT,
        Code::PermissionDenied => S::FORBIDDEN,
        Code::Unauthenticated => S::UNAUTHORIZED,
        Code::ResourceExhausted => S::TOO_MANY_REQUESTS,
        Code::Unimplemented => S::NOT_IMPLEMENTED,
        Code::Unavailable => S::SERVICE_UNAVAILABLE,
    }
}

/// The whole seconds to wait that a status's `RetryInfo` asks for, rounded up.
pub fn retry_after(status: &Status) -> Option<u64> {
    let delay = status.get_details_retry_info()?.retry_delay?;
    let millis = delay.as_millis();
    Some(
        u64::try_from(millis.div_ceil(1000))
            .unwrap_or(u64::MAX)
            .max(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::routes::{Found, RouteTable};

    fn table() -> (DescriptorPool, RouteTable) {
        let pool = DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        let table = RouteTable::new(&pool).unwrap();
        (pool, table)
    }

    fn request(
        method: http::Method,
        path: &str,
        query: Option<&str>,
        body: &str,
    ) -> Result<DynamicMessage, Status> {
        let (_, table) = table();
        let Found::Route(route, fields) = table.find(&method, path) else {
            panic!("no route for {path}");
        };
        request_message(route, fields, query, body.as_bytes())
    }

    fn violation(status: &Status) -> String {
        let details = status.get_details_bad_request().expect("a BadRequest");
        details.field_violations[0].field.clone()
    }

    #[test]
    fn a_body_path_and_query_make_one_request() {
        let message = request(
            http::Method::POST,
            "/v1/contractors/C1/associates/U1:setPermissions",
            None,
            r#"{"permissions": ["PERMISSION_PAY"], "expireTime": "2030-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        let request =
            crate::pb::SetPermissionsRequest::decode(message.encode_to_vec().as_slice()).unwrap();
        assert_eq!(request.contractor_id, "C1");
        assert_eq!(request.customer_id, "U1");
        assert_eq!(request.permissions, vec![crate::pb::Permission::Pay as i32]);
        assert!(request.expire_time.is_some());
        let message = request_list(Some("pageSize=7&page_token=abc"));
        assert_eq!(message.page_size, 7);
        assert_eq!(message.page_token, "abc");
    }

    fn request_list(query: Option<&str>) -> crate::pb::ListAssociatesRequest {
        let message = request(
            http::Method::GET,
            "/v1/contractors/C1/associates",
            query,
            "",
        )
        .unwrap();
        crate::pb::ListAssociatesRequest::decode(message.encode_to_vec().as_slice()).unwrap()
    }

    #[test]
    fn unknown_fields_and_wrong_types_name_the_field() {
        let status = request(
            http::Method::POST,
            "/v1/checks:check",
            None,
            r#"{"customerId": "U", "bogus": 1}"#,
        )
        .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert_eq!(violation(&status), "bogus", "{}", status.message());
        let status = request(
            http::Method::POST,
            "/v1/checks:batchCheck",
            None,
            r#"{"items": [{"customerId": "U", "atLeastRevision": "x"}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            violation(&status),
            "items[0].atLeastRevision",
            "{}",
            status.message()
        );
        let status = request(
            http::Method::POST,
            "/v1/checks:batchCheck",
            None,
            r#"{"items": [{"atLeastRevision": -9223372036854775809}]}"#,
        )
        .unwrap_err();
        assert_eq!(violation(&status), "items[0].atLeastRevision");
        let status = request(http::Method::POST, "/v1/checks:check", None, "[1]").unwrap_err();
        assert_eq!(violation(&status), "body");
        let status = request(http::Method::POST, "/v1/checks:check", None, "{").unwrap_err();
        assert_eq!(violation(&status), "body");
        let status = request(
            http::Method::GET,
            "/v1/contractors/C1/associates",
            Some("nope=1"),
            "",
        )
        .unwrap_err();
        assert_eq!(violation(&status), "nope");
        let status = request(
            http::Method::POST,
            "/v1/contractors/C1:leave",
            None,
            r#"{"contractorId": "C2"}"#,
        )
        .unwrap_err();
        assert_eq!(violation(&status), "contractorId");
    }

    #[test]
    fn statuses_map_to_http_and_keep_their_details() {
        let (pool, _) = table();
        let status = bad_field("customerId", "is required");
        let json = status_json(&pool, &status);
        assert_eq!(json["code"], 3);
        assert_eq!(
            json["details"][0]["@type"],
            "type.googleapis.com/google.rpc.BadRequest"
        );
        assert_eq!(
            json["details"][0]["fieldViolations"][0]["field"],
            "customerId"
        );
        assert_eq!(http_status(Code::ResourceExhausted), 429);
        assert_eq!(http_status(Code::FailedPrecondition), 400);
        let throttled = Status::with_error_details(
            Code::ResourceExhausted,
            "wait",
            ErrorDetails::with_retry_info(Some(std::time::Duration::from_millis(1500))),
        );
        assert_eq!(retry_after(&throttled), Some(2));
        assert_eq!(
            status_json(&pool, &throttled)["details"][0]["retryDelay"],
            "1.500s"
        );
    }
}
