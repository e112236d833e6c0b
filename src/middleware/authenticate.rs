//! Who is calling. Every call to `mandate.v1` presents a client system's API key
//! (`authorization: Bearer <key>`) or comes over a mutual-TLS connection whose client
//! certificate is registered for a client system; [`Authenticate`] checks the credential against
//! the live ones, checks that its scopes allow the RPC, and puts the [`Client`] into the call's
//! extensions, where [`client`] and [`acting_customer`] read it. A key, when sent, decides alone.
//! Health and server reflection are open.

use std::sync::Arc;

use mandate_domain::client::Scope;
use tonic::body::Body;
use tonic::transport::server::TlsConnectInfo;
use tonic::{Code, Status};
use tower::Service;
use tracing::Instrument;

use crate::credentials::keys::{Client, FINGERPRINT_PREFIX, KeyRing, fingerprint};
use crate::middleware::observe::{CallSpan, RequestId};
use crate::middleware::{Answer, Around};
use crate::telemetry::metrics::{Metrics, Refusal};
use crate::transport::connections::ConnectionInfo;

use crate::credentials::scopes::{CUSTOMER_HEADER, required_scopes};
/// Checks each call's key and scopes before it reaches a service.
#[derive(Clone)]
pub struct Authenticate {
    pub keys: Arc<KeyRing>,
    /// Counts the calls refused.
    pub metrics: Arc<Metrics>,
}

impl Around for Authenticate {
    fn around<S, B>(&self, mut request: http::Request<B>, next: &mut S) -> Answer<S::Error>
    where
        S: Service<http::Request<B>, Response = http::Response<Body>>,
        S::Future: Send + 'static,
    {
        let authorized =
            required_scopes(request.uri().path()).map(|scopes| self.authorize(&request, scopes));
        let client = match &authorized {
            Some(Ok(client)) => Some(client.name.as_str()),
            _ => None,
        };
        // The call's span, whole from the start (see `observe`).
        let span = tracing::info_span!(
            "rpc",
            method = %request.uri().path(),
            request_id = request.extensions().get::<RequestId>().map(RequestId::as_str),
            client,
            code = tracing::field::Empty,
        );
        match authorized {
            Some(Ok(client)) => {
                request.extensions_mut().insert(client);
            }
            Some(Err(status)) => {
                let refused = self.metrics.refused(match status.code() {
                    Code::Unauthenticated => Refusal::Unauthenticated,
                    _ => Refusal::MissingScope,
                });
                tracing::warn!(
                    parent: &span,
                    code = ?status.code(),
                    refused,
                    "call refused: {}",
                    status.message()
                );
                let mut response = status.into_http();
                if crate::telemetry::exporting() {
                    response.extensions_mut().insert(CallSpan(span));
                }
                return Box::pin(async move { Ok(response) });
            }
            None => {}
        }
        let answer = span.in_scope(|| next.call(request));
        // Only an exported span needs its code (see `observe`): otherwise the response carries
        // nothing more.
        let handed_back = crate::telemetry::exporting().then(|| CallSpan(span.clone()));
        Box::pin(
            async move {
                let mut response = answer.await?;
                if let Some(span) = handed_back {
                    response.extensions_mut().insert(span);
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}

impl Authenticate {
    /// The client whose key or certificate the call presents, if that credential is live and its
    /// scopes allow the RPC.
    fn authorize<B>(&self, request: &http::Request<B>, scopes: &[Scope]) -> Result<Client, Status> {
        let client = match request.headers().get(http::header::AUTHORIZATION) {
            Some(value) => {
                let presented = value
                    .to_str()
                    .ok()
                    .and_then(|value| {
                        value
                            .strip_prefix("Bearer ")
                            .or_else(|| value.strip_prefix("bearer "))
                    })
                    .map(str::trim)
                    .ok_or_else(|| {
                        Status::unauthenticated(
                            "the `authorization` metadata must be `Bearer <key>`",
                        )
                    })?;
                self.keys.verify(presented).ok_or_else(|| {
                    Status::unauthenticated("the API key is not valid: unknown, revoked or expired")
                })?
            }
            None => self.certified_client(request)?,
        };
        if !client.scopes.any_of(scopes) {
            let needed: Vec<&str> = scopes.iter().map(|scope| scope.as_str()).collect();
            return Err(Status::permission_denied(format!(
                "the credential of client `{}` lacks the scope this RPC needs: {}",
                client.name,
                needed.join(" or ")
            )));
        }
        if request.headers().contains_key(CUSTOMER_HEADER) && !client.scopes.contains(Scope::Portal)
        {
            return Err(Status::permission_denied(format!(
                "only a key with the portal scope may act for a customer (`{CUSTOMER_HEADER}`); \
                 the credential of client `{}` has none",
                client.name
            )));
        }
        Ok(client)
    }

    /// The client that the connection's TLS client certificate stands for.
    fn certified_client<B>(&self, request: &http::Request<B>) -> Result<Client, Status> {
        let certificates = request
            .extensions()
            .get::<TlsConnectInfo<ConnectionInfo>>()
            .and_then(TlsConnectInfo::peer_certs)
            .ok_or_else(|| {
                Status::unauthenticated(
                    "this call needs a client system's API key (`authorization: Bearer <key>`) \
                     or a registered client certificate",
                )
            })?;
        // The TLS handshake verified the chain; the first certificate is the client's own.
        let certificate = certificates
            .first()
            .ok_or_else(|| Status::unauthenticated("the TLS client presented no certificate"))?;
        self.keys.verify_certificate(certificate).ok_or_else(|| {
            Status::unauthenticated(format!(
                "the client certificate {FINGERPRINT_PREFIX}{}… is not registered for a client \
                 system (`mandate keys create --certificate`), or was revoked or expired",
                &hex::encode(fingerprint(certificate))[..16]
            ))
        })
    }
}
