//! The HTTP routes of the `mandate.v1` RPCs, read from their `(google.api.http)` options in
//! the descriptor set: the proto is the one definition of each route, for the transcoder and
//! for the OpenAPI document alike.

use prost_reflect::{DescriptorPool, DynamicMessage, FieldDescriptor, MessageDescriptor};
use prost_reflect::{MethodDescriptor, Value};

/// The extension that carries a method's HTTP rule.
const HTTP_RULE: &str = "google.api.http";
/// The package whose services are routed.
const PACKAGE: &str = "mandate.v1";

/// What the HTTP body of a route carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRule {
    /// No body: every field not in the path comes from the query string.
    None,
    /// Every field not in the path (`body: "*"`).
    All,
}

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// A request field, by its dotted path of proto field names (`contractor.contractor_id`).
    Field(String),
}

/// One RPC's route.
#[derive(Debug, Clone)]
pub struct Route {
    pub http_method: http::Method,
    /// The path template as written in the proto.
    pub template: String,
    pub segments: Vec<Segment>,
    /// The custom method after the last segment (`check` in `/v1/checks:check`).
    pub verb: Option<String>,
    pub body: BodyRule,
    pub method: MethodDescriptor,
    /// The gRPC path, `/mandate.v1.PermissionService/CheckPermission`.
    pub grpc_path: String,
}

impl Route {
    /// The values of the path's fields when `path` (percent-encoded, without its query) is
    /// this route's, decoded.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let rest = path.strip_prefix('/')?;
        let rest = match &self.verb {
            Some(verb) => rest.strip_suffix(verb.as_str())?.strip_suffix(':')?,
            None => rest,
        };
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.len() != self.segments.len() {
            return None;
        }
        // A last segment with a `:` names a custom method: it is no value of a plain route's
        // variable (`GET /v1/contractors/{id}` does not serve `/v1/contractors/x:leave`).
        if self.verb.is_none() && parts.last().is_some_and(|last| last.contains(':')) {
            return None;
        }
        let mut fields = Vec::new();
        for (part, segment) in parts.iter().zip(&self.segments) {
            match segment {
                Segment::Literal(literal) => {
                    if part != literal {
                        return None;
                    }
                }
                Segment::Field(field) => {
                    if part.is_empty() {
                        return None;
                    }
                    fields.push((field.clone(), percent_decode(part)?));
                }
            }
        }
        Some(fields)
    }

    /// The request fields named in the path.
    pub fn path_fields(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|segment| match segment {
            Segment::Field(field) => Some(field.as_str()),
            Segment::Literal(_) => None,
        })
    }

    pub fn is_streaming(&self) -> bool {
        self.method.is_server_streaming()
    }
}

/// Every route, in the order they are tried: custom methods first, so that no path variable
/// takes a `:verb` for part of its value.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
}

/// What a request's method and path reach.
pub enum Found<'a> {
    Route(&'a Route, Vec<(String, String)>),
    /// The path is a route's, but not with this method: the methods it takes.
    WrongMethod(Vec<http::Method>),
    None,
}

impl RouteTable {
    /// The routes of every `mandate.v1` method with an HTTP rule. A rule this transcoder cannot
    /// serve is an error, found when the server starts (and by the tests), not by a caller.
    pub fn new(pool: &DescriptorPool) -> Result<Self, String> {
        let extension = pool
            .get_extension_by_name(HTTP_RULE)
            .ok_or_else(|| format!("the descriptor set lacks {HTTP_RULE}"))?;
        let mut routes = Vec::new();
        for service in pool.services() {
            if service.package_name() != PACKAGE {
                continue;
            }
            for method in service.methods() {
                let options = method.options();
                if !options.has_extension(&extension) {
                    continue;
                }
                let rule = options.get_extension(&extension);
                let Value::Message(rule) = rule.as_ref() else {
                    return Err(format!(
                        "{}: the HTTP rule is not a message",
                        method.full_name()
                    ));
                };
                routes.push(
                    route(&method, rule).map_err(|err| format!("{}: {err}", method.full_name()))?,
                );
            }
        }
        routes.sort_by_key(|route| route.verb.is_none());
        Ok(Self { routes })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route of `method` and `path`.
    pub fn find(&self, method: &http::Method, path: &str) -> Found<'_> {
        let mut allowed = Vec::new();
        for route in &self.routes {
            if let Some(fields) = route.matches(path) {
                if route.http_method == method {
                    return Found::Route(route, fields);
                }
                allowed.push(route.http_method.clone());
            }
        }
        if allowed.is_empty() {
            Found::None
        } else {
            Found::WrongMethod(allowed)
        }
    }
}

fn route(method: &MethodDescriptor, rule: &DynamicMessage) -> Result<Route, String> {
    let text = |name: &str| -> String {
        rule.get_field_by_name(name)
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let mut found = None;
    for (name, http_method) in [
        ("get", http::Method::GET),
        ("post", http::Method::POST),
        ("put", http::Method::PUT),
        ("delete", http::Method::DELETE),
        ("patch", http::Method::PATCH),
    ] {
        if rule.has_field_by_name(name) {
            found = Some((http_method, text(name)));
        }
    }
    let (http_method, template) = found.ok_or("only get, post, put, delete and patch rules")?;
    if method.is_client_streaming() {
        return Err("client streaming cannot be transcoded".to_owned());
    }
    let body = match text("body").as_str() {
        "" => BodyRule::None,
        "*" => BodyRule::All,
        other => return Err(format!("body `{other}`: only `*` or none")),
    };
    if !text("response_body").is_empty() {
        return Err("response_body is not supported".to_owned());
    }
    let (segments, verb) = parse_template(&template)?;
    let input = method.input();
    for segment in &segments {
        if let Segment::Field(path) = segment {
            let field = field_at(&input, path)
                .ok_or_else(|| format!("`{path}` is not a field of the request"))?;
            if field.is_list() || field.is_map() || field.kind().as_message().is_some() {
                return Err(format!("`{path}` must be a single scalar field"));
            }
        }
    }
    Ok(Route {
        http_method,
        template,
        segments,
        verb,
        body,
        grpc_path: format!("/{}/{}", method.parent_service().full_name(), method.name()),
        method: method.clone(),
    })
}

/// The segments and custom verb of a template such as `/v1/contractors/{contractor_id}:leave`.
fn parse_template(template: &str) -> Result<(Vec<Segment>, Option<String>), String> {
    let rest = template
        .strip_prefix('/')
        .ok_or_else(|| format!("`{template}` must start with /"))?;
    let (rest, verb) = match rest.rfind(':') {
        Some(at) if !rest[at..].contains('}') && !rest[at..].contains('/') => {
            (&rest[..at], Some(rest[at + 1..].to_owned()))
        }
        _ => (rest, None),
    };
    let mut segments = Vec::new();
    for part in rest.split('/') {
        if let Some(field) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            if field.contains('=') || field.contains('*') {
                return Err(format!("`{part}`: only plain `{{field}}` variables"));
            }
            segments.push(Segment::Field(field.to_owned()));
        } else if part.is_empty() || part.contains(['{', '}', '*']) {
            return Err(format!("`{template}`: segment `{part}` is not supported"));
        } else {
            segments.push(Segment::Literal(part.to_owned()));
        }
    }
    Ok((segments, verb))
}

/// The field at a dotted path of proto field names below `message`.
pub fn field_at(message: &MessageDescriptor, path: &str) -> Option<FieldDescriptor> {
    let mut message = message.clone();
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let field = message.get_field_by_name(part)?;
        if parts.peek().is_none() {
            return Some(field);
        }
        message = field.kind().as_message()?.clone();
    }
    None
}

/// `text` with its `%XX` escapes decoded; `None` when an escape is malformed or the result is
/// not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = text.get(at + 1..at + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split_into_segments_and_a_verb() {
        let (segments, verb) = parse_template("/v1/contractors/{contractor_id}:leave").unwrap();
        assert_eq!(
            segments,
            vec![
                Segment::Literal("v1".into()),
                Segment::Literal("contractors".into()),
                Segment::Field("contractor_id".into()),
            ]
        );
        assert_eq!(verb.as_deref(), Some("leave"));
        let (segments, verb) = parse_template("/v1/checks:check").unwrap();
        assert_eq!(segments.len(), 2);
        assert_eq!(verb.as_deref(), Some("check"));
        assert!(parse_template("/v1/{name=things/*}").is_err());
        assert!(parse_template("v1/x").is_err());
    }

    #[test]
    fn percent_escapes_decode_and_bad_ones_do_not() {
        assert_eq!(percent_decode("24-1%20BLD").as_deref(), Some("24-1 BLD"));
        assert_eq!(percent_decode("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn every_rpc_of_the_proto_has_a_route_and_paths_find_them() {
        let pool = DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        let table = RouteTable::new(&pool).unwrap();
        let methods: usize = pool
            .services()
            .filter(|service| service.package_name() == PACKAGE)
            .map(|service| service.methods().len())
            .sum();
        assert_eq!(table.routes().len(), methods);
        let Found::Route(route, fields) = table.find(&http::Method::GET, "/v1/contractors/C%201")
        else {
            panic!("no route");
        };
        assert_eq!(route.method.name(), "GetContractor");
        assert_eq!(fields, vec![("contractor_id".to_owned(), "C 1".to_owned())]);
        let Found::Route(route, _) = table.find(&http::Method::GET, "/v1/contractors:search")
        else {
            panic!("no route");
        };
        assert_eq!(route.method.name(), "SearchContractors");
        assert!(matches!(
            table.find(&http::Method::PUT, "/v1/checks:check"),
            Found::WrongMethod(_)
        ));
        assert!(matches!(
            table.find(&http::Method::GET, "/v1/nothing"),
            Found::None
        ));
        let Found::WrongMethod(allowed) = table.find(&http::Method::GET, "/v1/contractors/x:leave")
        else {
            panic!("a custom method's path is not a plain route's");
        };
        assert_eq!(allowed, [http::Method::POST]);
    }
}
