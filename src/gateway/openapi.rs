//! The OpenAPI 3.1 document of the HTTP/JSON API, generated from the descriptor set: a path
//! per route, a schema per message and enum in the proto3 JSON mapping the transcoder speaks,
//! the proto's comments as descriptions, and the bearer-key security scheme. Served at
//! `/openapi.json` and committed as `docs/openapi.json` (a test keeps the two equal).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use prost_reflect::{
    DescriptorPool, EnumDescriptor, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor,
};
use serde_json::{Map, Value, json};

use crate::gateway::routes::{BodyRule, Route, RouteTable, Segment, field_at};

/// The document, as JSON.
pub fn document(pool: &DescriptorPool, routes: &RouteTable) -> Value {
    let comments = Comments::new(pool);
    let mut schemas = Schemas {
        comments: &comments,
        found: BTreeMap::new(),
    };
    let mut paths = Map::new();
    let mut tags = BTreeSet::new();
    // In the proto's order: by service, then by method.
    let mut ordered: Vec<&Route> = routes.routes().iter().collect();
    let files: Vec<String> = pool.files().map(|file| file.name().to_owned()).collect();
    ordered.sort_by_key(|route| {
        let service = route.method.parent_service();
        let file = service.parent_file();
        let file = files.iter().position(|name| name == file.name());
        (file, service.index(), route.method.index())
    });
    for route in ordered {
        let service = route.method.parent_service();
        tags.insert(service.name().to_owned());
        let operation = operation(route, &comments, &mut schemas);
        let path = paths
            .entry(document_path(route))
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(path) = path {
            path.insert(route.http_method.as_str().to_lowercase(), operation);
        }
    }
    let status = pool.get_message_by_name("google.rpc.Status").map_or_else(
        || json!({ "type": "object" }),
        |status| schemas.message(&status),
    );
    for detail in ["google.rpc.BadRequest", "google.rpc.RetryInfo"] {
        if let Some(message) = pool.get_message_by_name(detail) {
            schemas.message(&message);
        }
    }
    let tags: Vec<Value> = pool
        .services()
        .filter(|service| tags.contains(service.name()))
        .map(|service| {
            json!({
                "name": service.name(),
                "description": comments.of(&service.parent_file(), service.path()),
            })
        })
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Mandate",
            "version": "v1",
            "summary": "May this customer act for this professional/contractor account, with \
                        this permission?",
            "description": DESCRIPTION,
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" },
        },
        "tags": tags,
        "security": [ { "apiKey": [] } ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A client system's API key (`mandate keys create`), as \
                                    `Authorization: Bearer <key>`. A key with the portal scope \
                                    acts for the customer named in `X-Customer-Id`.",
                },
            },
            "schemas": schemas.found,
            "responses": {
                "Error": {
                    "description": "The call failed: a `google.rpc.Status` with the gRPC code, \
                                    a message and typed details (`google.rpc.BadRequest` names \
                                    the fields at fault, `google.rpc.RetryInfo` when to retry, \
                                    also sent as `Retry-After`). The HTTP status is grpc-gateway's \
                                    for the code: 400 INVALID_ARGUMENT, FAILED_PRECONDITION and \
                                    OUT_OF_RANGE; 401 UNAUTHENTICATED; 403 PERMISSION_DENIED; \
                                    404 NOT_FOUND; 409 ALREADY_EXISTS and ABORTED; 429 \
                                    RESOURCE_EXHAUSTED; 499 CANCELLED; 500 INTERNAL; 501 \
                                    UNIMPLEMENTED; 503 UNAVAILABLE; 504 DEADLINE_EXCEEDED.",
                    "content": { "application/json": { "schema": status } },
                },
            },
        },
    })
}

const DESCRIPTION: &str = "The `mandate.v1` gRPC API as JSON over HTTP, transcoded from the one \
    proto by its `google.api.http` annotations: field names in lowerCamelCase, enums by name, \
    64-bit integers as strings, timestamps in RFC 3339. Every call goes through the same keys, \
    scopes, limits, metrics and audit as its gRPC twin. A deadline is sent as `grpc-timeout` \
    (`500m`) or `Request-Timeout` (seconds). `GET /v1/changes:watch` streams newline-delimited \
    JSON (`{\"result\": …}` per change, a last `{\"error\": …}` on failure).";

fn operation(route: &Route, comments: &Comments, schemas: &mut Schemas<'_>) -> Value {
    let method = &route.method;
    let input = method.input();
    let file = method.parent_file();
    let description = comments.of(&file, method.path());
    let summary = description
        .split_inclusive(". ")
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let path_fields: Vec<&str> = route.path_fields().collect();
    let mut parameters = Vec::new();
    for path in &path_fields {
        let Some(field) = field_at(&input, path) else {
            continue;
        };
        let mut description = schemas.comments.field(&field);
        if path.contains('.') {
            description = format!("Sets the request's `{path}`. {description}");
        }
        parameters.push(json!({
            "name": parameter_name(path),
            "in": "path",
            "required": true,
            "description": description,
            "schema": schemas.field(&field),
        }));
    }
    if route.body == BodyRule::None {
        for field in input.fields() {
            if path_fields.contains(&field.name()) || !queryable(&field) {
                continue;
            }
            parameters.push(json!({
                "name": field.json_name(),
                "in": "query",
                "required": false,
                "description": schemas.comments.field(&field),
                "schema": schemas.field(&field),
                "explode": true,
            }));
        }
    }
    parameters.push(json!({
        "name": "X-Customer-Id",
        "in": "header",
        "required": false,
        "description": "With a key that has the portal scope: the customer the call acts for.",
        "schema": { "type": "string" },
    }));
    let output = schemas.message(&method.output());
    let success = if method.is_server_streaming() {
        json!({
            "description": "The changes, one JSON object per line, as they commit.",
            "content": { "application/x-ndjson": { "schema": {
                "type": "object",
                "properties": {
                    "result": output,
                    "error": { "$ref": "#/components/schemas/google.rpc.Status" },
                },
            } } },
        })
    } else {
        json!({
            "description": "The call succeeded.",
            "content": { "application/json": { "schema": output } },
        })
    };
    let mut operation = json!({
        "operationId": format!("{}_{}", method.parent_service().name(), method.name()),
        "tags": [method.parent_service().name()],
        "summary": summary,
        "description": description,
        "parameters": parameters,
        "responses": {
            "200": success,
            "default": { "$ref": "#/components/responses/Error" },
        },
    });
    if route.body == BodyRule::All {
        schemas.message(&input);
        let mut body = schemas.body_schema(&input);
        if let Some(properties) = body.get_mut("properties").and_then(Value::as_object_mut) {
            for path in &path_fields {
                if let Some(field) = input.get_field_by_name(path) {
                    properties.remove(field.json_name());
                }
            }
        }
        // An empty body is every field at its default, as in proto3 JSON.
        operation["requestBody"] = json!({
            "required": false,
            "content": { "application/json": { "schema": body } },
        });
    }
    operation
}

/// A path variable's name in the document: its field's own name (`contractor_id` for
/// `contractor.contractor_id`), so that two routes on one path name their variable alike, as
/// OpenAPI requires; its description says which field it sets.
fn parameter_name(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// The route's path in the document, its variables named by `parameter_name`.
fn document_path(route: &Route) -> String {
    let mut path = String::new();
    for segment in &route.segments {
        path.push('/');
        match segment {
            Segment::Literal(literal) => path.push_str(literal),
            Segment::Field(field) => {
                path.push('{');
                path.push_str(parameter_name(field));
                path.push('}');
            }
        }
    }
    if let Some(verb) = &route.verb {
        path.push(':');
        path.push_str(verb);
    }
    path
}

/// Whether a field can be given in a query string: scalars, enums and the well-known types
/// written as strings, single or repeated.
fn queryable(field: &FieldDescriptor) -> bool {
    if field.is_map() {
        return false;
    }
    match field.kind() {
        Kind::Message(message) => matches!(
            message.full_name(),
            "google.protobuf.Timestamp" | "google.protobuf.Duration" | "google.protobuf.FieldMask"
        ),
        _ => true,
    }
}

/// The schemas found so far, by full name.
struct Schemas<'a> {
    comments: &'a Comments,
    found: BTreeMap<String, Value>,
}

impl Schemas<'_> {
    /// A reference to `message`'s schema, adding it (and what it refers to) when new.
    fn message(&mut self, message: &MessageDescriptor) -> Value {
        if let Some(inline) = well_known(message.full_name()) {
            return inline;
        }
        let name = message.full_name().to_owned();
        if !self.found.contains_key(&name) {
            self.found.insert(name.clone(), Value::Null);
            let schema = self.body_schema(message);
            self.found.insert(name.clone(), schema);
        }
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }

    /// `message`'s own schema: its fields by JSON name; any other field is refused.
    fn body_schema(&mut self, message: &MessageDescriptor) -> Value {
        let mut properties = Map::new();
        for field in message.fields() {
            let mut schema = nullable(self.field(&field));
            let description = self.comments.field(&field);
            if !description.is_empty() {
                schema["description"] = Value::String(description);
            }
            properties.insert(field.json_name().to_owned(), schema);
        }
        let mut schema = json!({
            "type": "object",
            "properties": properties,
            "additionalProperties": false,
        });
        let description = self.comments.of(&message.parent_file(), message.path());
        if !description.is_empty() {
            schema["description"] = Value::String(description);
        }
        schema
    }

    fn field(&mut self, field: &FieldDescriptor) -> Value {
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                return json!({ "type": "object" });
            };
            let value = entry.map_entry_value_field();
            return json!({ "type": "object", "additionalProperties": self.single(&value.kind()) });
        }
        let single = self.single(&field.kind());
        if field.is_list() {
            json!({ "type": "array", "items": single })
        } else {
            single
        }
    }

    fn single(&mut self, kind: &Kind) -> Value {
        match kind {
            Kind::Double | Kind::Float => json!({ "type": "number" }),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({ "type": "integer", "format": "int32" })
            }
            Kind::Uint32 | Kind::Fixed32 => {
                json!({ "type": "integer", "minimum": 0, "maximum": u32::MAX })
            }
            // Written as strings; read as strings or numbers, as proto3 JSON allows.
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => json!({
                "type": ["string", "integer"],
                "format": "int64",
                "pattern": "^-?[0-9]{1,19}$",
            }),
            Kind::Uint64 | Kind::Fixed64 => json!({
                "type": ["string", "integer"],
                "format": "uint64",
                "pattern": "^[0-9]{1,20}$",
                "minimum": 0,
            }),
            Kind::Bool => json!({ "type": "boolean" }),
            Kind::String => json!({ "type": "string" }),
            Kind::Bytes => json!({ "type": "string", "contentEncoding": "base64" }),
            Kind::Enum(descriptor) => self.enumeration(descriptor),
            Kind::Message(message) => self.message(message),
        }
    }

    fn enumeration(&mut self, descriptor: &EnumDescriptor) -> Value {
        let name = descriptor.full_name().to_owned();
        if !self.found.contains_key(&name) {
            let values: Vec<String> = descriptor
                .values()
                .map(|value| value.name().to_owned())
                .collect();
            let described: Vec<String> = descriptor
                .values()
                .map(|value| {
                    let comment = self.comments.of(&descriptor.parent_file(), value.path());
                    format!("- `{}`: {comment}", value.name())
                })
                .collect();
            let intro = self
                .comments
                .of(&descriptor.parent_file(), descriptor.path());
            self.found.insert(
                name.clone(),
                // Written by name; read by name or number, as proto3 JSON allows.
                json!({
                    "oneOf": [
                        { "type": "string", "enum": values },
                        { "type": "integer", "format": "int32" },
                    ],
                    "description": format!("{intro}\n\n{}", described.join("\n")),
                }),
            );
        }
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }
}

/// `schema`, or `null`: proto3 JSON reads a field given as `null` as the field left out.
fn nullable(schema: Value) -> Value {
    match schema.get("type").cloned() {
        Some(Value::String(kind)) => {
            let mut schema = schema;
            schema["type"] = json!([kind, "null"]);
            schema
        }
        Some(Value::Array(mut kinds)) => {
            let mut schema = schema;
            kinds.push(json!("null"));
            schema["type"] = Value::Array(kinds);
            schema
        }
        _ => json!({ "anyOf": [schema, { "type": "null" }] }),
    }
}

/// The JSON form of the well-known types the proto uses.
fn well_known(name: &str) -> Option<Value> {
    Some(match name {
        "google.protobuf.Timestamp" => json!({ "type": "string", "format": "date-time" }),
        "google.protobuf.Duration" => {
            json!({ "type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$" })
        }
        "google.protobuf.FieldMask" => json!({
            "type": "string",
            "description": "Field paths in lowerCamelCase, separated by commas.",
        }),
        "google.protobuf.Any" => json!({
            "type": "object",
            "properties": { "@type": { "type": "string" } },
            "required": ["@type"],
            "additionalProperties": true,
        }),
        _ => return None,
    })
}

/// The leading comments of every declaration, by file and source path.
struct Comments {
    by_file: HashMap<String, HashMap<Vec<i32>, String>>,
}

impl Comments {
    fn new(pool: &DescriptorPool) -> Self {
        let mut by_file = HashMap::new();
        for file in pool.files() {
            let mut comments = HashMap::new();
            if let Some(info) = &file.file_descriptor_proto().source_code_info {
                for location in &info.location {
                    if let Some(text) = &location.leading_comments {
                        comments.insert(location.path.clone(), tidy(text));
                    }
                }
            }
            by_file.insert(file.name().to_owned(), comments);
        }
        Self { by_file }
    }

    fn of(&self, file: &FileDescriptor, path: &[i32]) -> String {
        self.by_file
            .get(file.name())
            .and_then(|comments| comments.get(path))
            .cloned()
            .unwrap_or_default()
    }

    fn field(&self, field: &FieldDescriptor) -> String {
        self.of(&field.parent_file(), field.path())
    }
}

/// A comment's lines joined into paragraphs.
fn tidy(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines
        .split(|line| line.is_empty())
        .filter(|paragraph| !paragraph.is_empty())
        .map(|paragraph| paragraph.join(" "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/openapi.json` is the document the server serves: regenerate it with
    /// `cargo run -q -- openapi > docs/openapi.json` when the proto changes.
    #[test]
    fn the_committed_document_is_the_generated_one() {
        let generated = crate::gateway::openapi_json().unwrap();
        let committed = include_str!("../../docs/openapi.json");
        assert!(
            committed.trim_end() == generated,
            "docs/openapi.json differs from the proto's document: run \
             `cargo run -q -- openapi > docs/openapi.json`"
        );
    }

    #[test]
    fn every_schema_referred_to_is_defined() {
        let pool = DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        let routes = RouteTable::new(&pool).unwrap();
        let document = serde_json::to_string(&document(&pool, &routes)).unwrap();
        let parsed: Value = serde_json::from_str(&document).unwrap();
        let schemas = parsed["components"]["schemas"].as_object().unwrap();
        for reference in document.split("\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "{name} is not defined");
        }
        assert!(parsed["paths"]["/v1/checks:check"]["post"]["requestBody"].is_object());
    }
}
