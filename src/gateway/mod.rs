//! The HTTP listener (`--http-listen`): the `mandate.v1` API as JSON over HTTP/1.1 and HTTP/2
//! for systems that cannot speak gRPC, gRPC-Web for browsers, and the OpenAPI document at
//! `/openapi.json`.
//!
//! Nothing here decides anything. A JSON call is transcoded into the gRPC call its route names
//! (`routes`, read from the proto's `google.api.http` options) and handed, in process, to the
//! very service stack the gRPC listener serves: the same request ids, metrics (with
//! `transport="http"`), authentication, scopes, limits and audit. Its answer is transcoded
//! back; a status becomes a JSON `google.rpc.Status` under the HTTP status grpc-gateway gives
//! its code (`transcode`). gRPC-Web calls are unwrapped by `tonic-web` into the same stack.
//!
//! The listener is apart from the gRPC one because tonic's gRPC server applies a call's
//! `grpc-timeout` outside every layer and answers its expiry in gRPC's own form, which an
//! HTTP client could not read; here deadlines (`grpc-timeout`, or `Request-Timeout` in
//! seconds) are applied by `Deadline` and answered `504` in JSON. Connections are bounded,
//! timed out and cut at shutdown exactly as on the gRPC listener (`crate::transport`).

pub mod openapi;
pub mod routes;
pub mod transcode;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body as HttpBody, Frame};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prost_reflect::{DescriptorPool, MessageDescriptor};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tonic::body::Body;
use tonic::transport::server::Connected;
use tonic::{Code, Status};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::gateway::routes::{Found, Route, RouteTable};
use crate::gateway::transcode::{
    frame, http_status, request_message, response_json, retry_after, status_json, unframe,
};
use crate::settings::limits::ConnectionLimits;
use crate::telemetry::metrics::Transport;
use crate::transport::connections::{self, ConnectionInfo};

/// The service stack every `mandate.v1` call goes through, whatever its transport.
pub type GrpcStack = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// The largest JSON body a call takes: a full `CheckPermissions` batch in JSON fits several
/// times over; a larger body answers `OUT_OF_RANGE` (400) unread, as an oversized gRPC message.
pub const MAX_JSON_BYTES: usize = 256 * 1024;
/// The headers a call passes on to its gRPC call.
const PASSED_ON: [&str; 3] = ["authorization", "x-customer-id", "x-request-id"];
/// The media type of a `WatchChanges` feed: one JSON object per line.
const NDJSON: &str = "application/x-ndjson";
/// A gRPC message no service decodes (a field numbered 0), sent in place of a request the
/// transcoder refused.
const UNDECODABLE: &[u8] = &[0, 0, 0, 0, 1, 0];
/// How long an HTTP/1.1 client has to send its request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the HTTP listener serves.
pub struct Gateway {
    pool: DescriptorPool,
    routes: RouteTable,
    openapi: Bytes,
    grpc: GrpcStack,
    grpc_web: tonic_web::GrpcWebService<GrpcStack>,
}

/// The server's descriptors and the routes they declare.
fn routes() -> Result<(DescriptorPool, RouteTable), String> {
    let pool = DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET)
        .map_err(|err| format!("the descriptor set does not decode: {err}"))?;
    let routes = RouteTable::new(&pool)?;
    Ok((pool, routes))
}

/// The OpenAPI document, as served at `/openapi.json` and committed as `docs/openapi.json`.
pub fn openapi_json() -> Result<String, String> {
    let (pool, routes) = routes()?;
    serde_json::to_string_pretty(&openapi::document(&pool, &routes))
        .map_err(|err| format!("the OpenAPI document cannot be written: {err}"))
}

impl Gateway {
    /// The gateway in front of `grpc`, with the routes of the server's descriptor set.
    pub fn new(grpc: GrpcStack) -> Result<Self, String> {
        let (pool, routes) = routes()?;
        let openapi = openapi_json()?;
        let grpc = BoxCloneSyncService::new(Deadline { inner: grpc });
        Ok(Self {
            grpc_web: tonic_web::GrpcWebLayer::new().layer(grpc.clone()),
            pool,
            routes,
            openapi: Bytes::from(openapi + "\n"),
            grpc,
        })
    }

    /// Answers one HTTP request that came on `connection`.
    async fn answer(
        &self,
        mut request: Request<Incoming>,
        connection: ConnectionInfo,
    ) -> Response<Body> {
        request.extensions_mut().insert(connection);
        if is_grpc_web(request.headers()) {
            request.extensions_mut().insert(Transport::GrpcWeb);
            return match self.grpc_web.clone().oneshot(request.map(Body::new)).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
        }
        let path = request.uri().path().to_owned();
        if path == "/openapi.json" {
            return self.document(request.method());
        }
        match self.routes.find(request.method(), &path) {
            Found::Route(route, fields) => match self.call(route, fields, request).await {
                Ok(response) | Err(response) => response,
            },
            Found::WrongMethod(allowed) => {
                let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
                let mut response = self.error(
                    &Status::unimplemented(format!(
                        "{path} is not served for {}: use {}",
                        request.method(),
                        names.join(", ")
                    )),
                    None,
                );
                *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                if let Ok(allow) = HeaderValue::from_str(&names.join(", ")) {
                    response.headers_mut().insert(header::ALLOW, allow);
                }
                response
            }
            Found::None => self.error(
                &Status::not_found(format!(
                    "no route {path}: the routes are listed in /openapi.json"
                )),
                None,
            ),
        }
    }

    fn document(&self, method: &Method) -> Response<Body> {
        if method != Method::GET {
            let mut response = self.error(&Status::unimplemented("use GET"), None);
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            return response;
        }
        let mut response = Response::new(Body::new(Full::new(self.openapi.clone())));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }

    /// Transcodes a JSON call into its gRPC call and its answer back.
    async fn call(
        &self,
        route: &Route,
        fields: Vec<(String, String)>,
        request: Request<Incoming>,
    ) -> Result<Response<Body>, Response<Body>> {
        let (parts, body) = request.into_parts();
        let request_id = parts.headers.get("x-request-id").cloned();
        let fail = |status: Status| self.error(&status, request_id.clone());
        // What the transcoder refuses still goes through the stack, with a message no service
        // decodes: so the key and scopes are judged first (a caller without a key hears 401,
        // not what was wrong with its JSON), and the refusal is counted and logged as any
        // call's. Its INVALID_ARGUMENT is then answered with the transcoder's own, which names
        // the field.
        let (payload, deadline, refused) = match self.transcode(route, fields, &parts, body).await {
            Ok((message, deadline)) => (frame(&message), deadline, None),
            Err(status) => (Bytes::from_static(UNDECODABLE), None, Some(status)),
        };
        let mut call = Request::builder()
            .method(Method::POST)
            .uri(route.grpc_path.as_str())
            .version(http::Version::HTTP_2)
            .header(header::CONTENT_TYPE, "application/grpc")
            .header(header::TE, "trailers");
        for name in PASSED_ON {
            if let Some(value) = parts.headers.get(name) {
                call = call.header(name, value);
            }
        }
        if let Some(deadline) = deadline {
            call = call.header("grpc-timeout", format!("{}m", deadline.as_millis().max(1)));
        }
        let mut call = call
            .body(Body::new(Full::new(payload)))
            .map_err(|err| fail(Status::internal(err.to_string())))?;
        call.extensions_mut().insert(Transport::Http);
        if let Some(connection) = parts.extensions.get::<ConnectionInfo>() {
            call.extensions_mut().insert(connection.clone());
        }
        let answer = match self.grpc.clone().oneshot(call).await {
            Ok(answer) => answer,
            Err(never) => match never {},
        };
        let (answer, body) = answer.into_parts();
        let request_id = answer.headers.get("x-request-id").cloned().or(request_id);
        let fail = |status: Status| self.error(&status, request_id.clone());
        if answer.headers.contains_key("grpc-status") {
            // A call refused before its first message: its status is in the headers.
            let status = Status::from_header_map(&answer.headers)
                .unwrap_or_else(|| Status::internal("an unreadable status"));
            return Err(fail(match refused {
                Some(refused) if status.code() == Code::InvalidArgument => refused,
                _ => status,
            }));
        }
        if let Some(refused) = refused {
            // Not expected: the stack passed an undecodable message on. Nothing ran with it.
            tracing::warn!(path = %route.grpc_path, "an undecodable message was not refused");
            return Err(fail(refused));
        }
        let output = route.method.output();
        if route.is_streaming() {
            let mut response = Response::new(Body::new(Lines {
                body,
                buffer: BytesMut::new(),
                output,
                pool: self.pool.clone(),
                done: false,
            }));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
            finish_headers(response.headers_mut(), request_id);
            return Ok(response);
        }
        let collected = body.collect().await.map_err(&fail)?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let status = Status::from_header_map(&trailers)
            .unwrap_or_else(|| Status::internal("the call ended without a status"));
        if status.code() != Code::Ok {
            return Err(fail(status));
        }
        let mut data = BytesMut::from(collected.to_bytes().as_ref());
        let mut messages = unframe(&mut data).map_err(fail)?;
        let (Some(message), true) = (messages.pop(), messages.is_empty() && data.is_empty()) else {
            return Err(fail(Status::internal(
                "a unary call answered other than one message",
            )));
        };
        let json = response_json(&output, message).map_err(fail)?;
        Ok(self.json(StatusCode::OK, &json, request_id))
    }

    /// The request message and deadline of a JSON call, from its path, query, headers and body.
    async fn transcode(
        &self,
        route: &Route,
        fields: Vec<(String, String)>,
        parts: &http::request::Parts,
        body: Incoming,
    ) -> Result<(prost_reflect::DynamicMessage, Option<Duration>), Status> {
        let deadline = deadline(&parts.headers)?;
        let body = match Limited::new(body, MAX_JSON_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) if err.is::<http_body_util::LengthLimitError>() => {
                return Err(Status::out_of_range(format!(
                    "the body is larger than {MAX_JSON_BYTES} bytes"
                )));
            }
            Err(err) => return Err(Status::cancelled(format!("the body was cut: {err}"))),
        };
        let message = request_message(route, fields, parts.uri.query(), &body)?;
        Ok((message, deadline))
    }

    fn json(
        &self,
        code: StatusCode,
        json: &serde_json::Value,
        request_id: Option<HeaderValue>,
    ) -> Response<Body> {
        let mut bytes = serde_json::to_vec(json).unwrap_or_default();
        bytes.push(b'\n');
        let mut response = Response::new(Body::new(Full::new(Bytes::from(bytes))));
        *response.status_mut() = code;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        finish_headers(response.headers_mut(), request_id);
        response
    }

    /// `status` as a JSON `google.rpc.Status`, under its HTTP status.
    fn error(&self, status: &Status, request_id: Option<HeaderValue>) -> Response<Body> {
        let mut response = self.json(
            http_status(status.code()),
            &status_json(&self.pool, status),
            request_id,
        );
        let headers = response.headers_mut();
        if let Some(seconds) = retry_after(status) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status.code() == Code::Unauthenticated {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"mandate\""),
            );
        }
        response
    }
}

/// Every API answer may carry a PIN or a person's details: no cache keeps it.
fn finish_headers(headers: &mut HeaderMap, request_id: Option<HeaderValue>) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(id) = request_id {
        headers.insert(HeaderName::from_static("x-request-id"), id);
    }
}

fn is_grpc_web(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc-web"))
}

/// The call's deadline: `grpc-timeout` in gRPC's form (`500m`, `2S`), or `Request-Timeout` in
/// seconds (`0.5`); a malformed one is `INVALID_ARGUMENT` naming the header.
fn deadline(headers: &HeaderMap) -> Result<Option<Duration>, Status> {
    let bad = |name: &str, why: &str| transcode::bad_field(name, why);
    if let Some(value) = headers.get("grpc-timeout") {
        return parse_grpc_timeout(value.as_bytes())
            .map(Some)
            .ok_or_else(|| {
                bad(
                    "grpc-timeout",
                    "must be 1 to 8 digits and a unit: H, M, S, m, u or n",
                )
            });
    }
    if let Some(value) = headers.get("request-timeout") {
        let seconds = value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|seconds| seconds.is_finite() && *seconds > 0.0 && *seconds <= 86_400.0)
            .ok_or_else(|| {
                bad(
                    "request-timeout",
                    "must be a number of seconds, at most 86400",
                )
            })?;
        return Ok(Some(Duration::from_secs_f64(seconds)));
    }
    Ok(None)
}

/// A `grpc-timeout` value: at most 8 digits and a unit.
fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Ends a call at its `grpc-timeout` with `DEADLINE_EXCEEDED`; dropping the call rolls its
/// transaction back, as at a gRPC client's deadline.
#[derive(Clone)]
struct Deadline {
    inner: GrpcStack,
}

impl Service<Request<Body>> for Deadline {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let limit = request
            .headers()
            .get("grpc-timeout")
            .and_then(|value| parse_grpc_timeout(value.as_bytes()));
        let call = self.inner.call(request);
        Box::pin(async move {
            let Some(limit) = limit else {
                return call.await;
            };
            match tokio::time::timeout(limit, call).await {
                Ok(answer) => answer,
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "the call's deadline of {} ms passed",
                    limit.as_millis()
                ))
                .into_http()),
            }
        })
    }
}

/// A `WatchChanges` feed as newline-delimited JSON: `{"result": change}` per change, and a
/// last `{"error": status}` when the feed ends with an error.
struct Lines {
    body: Body,
    buffer: BytesMut,
    output: MessageDescriptor,
    pool: DescriptorPool,
    done: bool,
}

impl Lines {
    fn error_line(&mut self, status: &Status) -> Bytes {
        self.done = true;
        line(&serde_json::json!({ "error": status_json(&self.pool, status) }))
    }
}

fn line(json: &serde_json::Value) -> Bytes {
    let mut bytes = serde_json::to_vec(json).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

impl HttpBody for Lines {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            let polled = match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(polled) => polled,
            };
            match polled {
                None => {
                    self.done = true;
                    return Poll::Ready(None);
                }
                Some(Err(status)) => {
                    let line = self.error_line(&status);
                    return Poll::Ready(Some(Ok(Frame::data(line))));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        self.buffer.extend_from_slice(&data);
                        let mut out = BytesMut::new();
                        let messages = match unframe(&mut self.buffer) {
                            Ok(messages) => messages,
                            Err(status) => {
                                let line = self.error_line(&status);
                                return Poll::Ready(Some(Ok(Frame::data(line))));
                            }
                        };
                        for message in messages {
                            match response_json(&self.output, message) {
                                Ok(json) => {
                                    out.extend_from_slice(&line(
                                        &serde_json::json!({ "result": json }),
                                    ));
                                }
                                Err(status) => {
                                    out.extend_from_slice(&self.error_line(&status));
                                    break;
                                }
                            }
                        }
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                        }
                    }
                    Err(frame) => {
                        let Some(trailers) = frame.trailers_ref() else {
                            continue;
                        };
                        let status = Status::from_header_map(trailers)
                            .unwrap_or_else(|| Status::internal("an unreadable status"));
                        if status.code() == Code::Ok {
                            self.done = true;
                            return Poll::Ready(None);
                        }
                        let line = self.error_line(&status);
                        return Poll::Ready(Some(Ok(Frame::data(line))));
                    }
                },
            }
        }
    }
}

/// CORS for the browsers of `origins`; none when the list is empty, so that a browser page of
/// another origin cannot call at all.
pub fn cors(origins: &[String]) -> Result<Option<CorsLayer>, String> {
    if origins.is_empty() {
        return Ok(None);
    }
    let origins = origins
        .iter()
        .map(|origin| {
            HeaderValue::from_str(origin).map_err(|_| format!("`{origin}` is not a usable origin"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let header = HeaderName::from_static;
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header("x-customer-id"),
                header("x-request-id"),
                header("x-grpc-web"),
                header("x-user-agent"),
                header("grpc-timeout"),
                header("request-timeout"),
            ])
            .expose_headers([
                header("grpc-status"),
                header("grpc-message"),
                header("grpc-status-details-bin"),
                header("x-request-id"),
                header::RETRY_AFTER,
            ])
            .max_age(Duration::from_secs(600)),
    ))
}

/// Serves `gateway` on `listener` within `limits` (and at most `max_streams` calls at once on
/// an HTTP/2 connection) until `drain` completes: then no new connection is taken and open ones
/// finish their calls; `cut` closes what is left.
pub async fn serve<C, F, D, G>(
    listener: TcpListener,
    limits: ConnectionLimits,
    max_streams: u32,
    gateway: Arc<Gateway>,
    cors: Option<CorsLayer>,
    cut: C,
    drain: D,
) where
    C: Fn() -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
    D: Fn() -> G,
    G: Future<Output = ()> + Send + 'static,
{
    let mut incoming = connections::accept(listener, limits, cut);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().max_concurrent_streams(max_streams);
    let builder = Arc::new(builder);
    let stop = drain();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            accepted = incoming.next() => accepted,
            () = &mut stop => break,
        };
        let Some(Ok(io)) = accepted else {
            continue;
        };
        let connection = io.connect_info();
        let front = Front {
            gateway: gateway.clone(),
            connection,
        };
        let service = tower::ServiceBuilder::new()
            .option_layer(cors.clone())
            .service(front);
        let service = hyper_util::service::TowerToHyperService::new(service);
        let (builder, drain) = (builder.clone(), drain());
        tokio::spawn(async move {
            let served = builder.serve_connection(TokioIo::new(io), service);
            tokio::pin!(served);
            tokio::select! {
                result = served.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(error = %err, "an HTTP connection ended with an error");
                    }
                    return;
                }
                () = drain => {}
            }
            served.as_mut().graceful_shutdown();
            if let Err(err) = served.await {
                tracing::debug!(error = %err, "an HTTP connection ended with an error");
            }
        });
    }
}

/// One connection's requests, for hyper.
#[derive(Clone)]
struct Front {
    gateway: Arc<Gateway>,
    connection: ConnectionInfo,
}

impl Service<Request<Incoming>> for Front {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let (gateway, connection) = (self.gateway.clone(), self.connection.clone());
        Box::pin(async move {
            // Every request counts as a call for the connection's timeouts, also those answered
            // here (the document, a route that does not exist): the connection is in use, not
            // a socket that never speaks. A call's streamed answer is counted by the stack.
            let _call = connection.activity.begin();
            Ok(gateway.answer(request, connection).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_grpc_defines_them() {
        assert_eq!(
            parse_grpc_timeout(b"500m"),
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_grpc_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout(b"123456789m"), None);
        assert_eq!(parse_grpc_timeout(b"m"), None);
        assert_eq!(parse_grpc_timeout(b"5x"), None);
        let mut headers = HeaderMap::new();
        headers.insert("request-timeout", HeaderValue::from_static("0.25"));
        assert_eq!(
            deadline(&headers).unwrap(),
            Some(Duration::from_millis(250))
        );
        headers.insert("request-timeout", HeaderValue::from_static("-1"));
        assert!(deadline(&headers).is_err());
    }
}
