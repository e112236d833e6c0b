//! Who is calling. Every call to `mandate.v1` presents a client system's API key
//! (`authorization: Bearer <key>`) or comes over a mutual-TLS connection whose client
//! certificate is registered for a client system; [`Authenticate`] checks the credential against
//! the live ones, checks that its scopes allow the RPC, and puts the [`Client`] into the call's
//! extensions, where [`client`] and [`acting_customer`] read it. A key, when sent, decides alone.
//! Health and server reflection are open.

use std::sync::Arc;

use mandate_domain::Error as Rule;
use mandate_domain::client::Scope;
use mandate_domain::paging::is_identifier;
use mandate_store::{Actor, Error as StoreError, Store, Viewer};
use tonic::body::Body;
use tonic::transport::server::TlsConnectInfo;
use tonic::{Code, Request, Status};
use tower::Service;
use tracing::Instrument;

use crate::connections::ConnectionInfo;
use crate::error::{ApiError, ApiResult};
use crate::keys::{Client, FINGERPRINT_PREFIX, KeyRing, fingerprint};
use crate::metrics::{Metrics, Refusal};
use crate::middleware::{Answer, Around};
use crate::observe::{CallSpan, RequestId};

/// The metadata key naming the customer a portal call acts for.
pub const CUSTOMER_HEADER: &str = "x-customer-id";

/// Every `mandate.v1` RPC, by service and method, with the scopes that may call it (any one
/// suffices). The one table: the authentication layer reads it, a test checks it against the
/// served descriptor set (every method has an entry, every entry a method), the keys test calls
/// every RPC through it, and `docs/security.md`'s table is generated from it
/// (`scope_table_markdown`). A method missing here is refused to every key, never given a
/// default.
pub const SCOPES: &[(&str, &str, &[Scope])] = {
    use Scope::{Check, Portal, Records, Staff};
    const IDENTITY: &str = "mandate.v1.IdentityService";
    const CONTRACTOR: &str = "mandate.v1.ContractorService";
    const PERMISSION: &str = "mandate.v1.PermissionService";
    &[
        (IDENTITY, "RegisterCustomer", &[Portal]),
        (IDENTITY, "GetCustomer", &[Portal, Staff]),
        (IDENTITY, "LinkLegacyCustomer", &[Portal]),
        (IDENTITY, "ClearPinLockout", &[Staff]),
        (IDENTITY, "ReissueCustomerPin", &[Staff]),
        (CONTRACTOR, "RegisterContractor", &[Portal]),
        (CONTRACTOR, "GetContractor", &[Portal, Staff]),
        (CONTRACTOR, "UpdateContractor", &[Portal]),
        (CONTRACTOR, "ListMyContractors", &[Portal]),
        (CONTRACTOR, "AssociateByPin", &[Portal]),
        (CONTRACTOR, "GetPin", &[Portal]),
        (CONTRACTOR, "RotatePin", &[Portal]),
        (CONTRACTOR, "LeaveContractor", &[Portal]),
        (CONTRACTOR, "MergeContractors", &[Staff]),
        (CONTRACTOR, "AppointManager", &[Staff]),
        (CONTRACTOR, "ReissuePin", &[Staff]),
        (CONTRACTOR, "RetireAliasPins", &[Staff]),
        (CONTRACTOR, "SearchContractors", &[Staff]),
        (PERMISSION, "ListAssociates", &[Portal, Staff]),
        (PERMISSION, "SetPermissions", &[Portal]),
        (PERMISSION, "RemoveAssociate", &[Portal]),
        (PERMISSION, "CheckPermission", &[Check]),
        (PERMISSION, "CheckPermissions", &[Check]),
        (PERMISSION, "LinkApplication", &[Records, Staff]),
        (PERMISSION, "UnlinkApplication", &[Records, Staff]),
        (PERMISSION, "ListAccessibleApplications", &[Check, Portal]),
        (PERMISSION, "WatchChanges", &[Check]),
        (PERMISSION, "ListAuditEvents", &[Portal, Staff]),
    ]
};

/// The scopes that may call the RPC at `path`, any one of them sufficing; `None` for the open
/// services (Health, reflection). A `mandate.` path that is in no entry of `SCOPES` needs a
/// scope no key has: refused, whatever it is.
pub fn required_scopes(path: &str) -> Option<&'static [Scope]> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    if !service.starts_with("mandate.") {
        return None;
    }
    Some(
        SCOPES
            .iter()
            .find(|(s, m, _)| *s == service && *m == method)
            .map_or(&[], |(_, _, scopes)| *scopes),
    )
}

/// `docs/security.md`'s table of who may call what, generated from `SCOPES`: one row per RPC,
/// a column per scope.
pub fn scope_table_markdown() -> String {
    let mut table = String::from("| RPC |");
    for scope in Scope::ALL {
        table.push_str(&format!(" `{}` |", scope.as_str()));
    }
    table.push_str("\n| --- |");
    for _ in Scope::ALL {
        table.push_str(" --- |");
    }
    table.push('\n');
    for (service, method, scopes) in SCOPES {
        let service = service.trim_start_matches("mandate.v1.");
        table.push_str(&format!("| `{service}.{method}` |"));
        for scope in Scope::ALL {
            table.push_str(if scopes.contains(&scope) {
                " ✓ |"
            } else {
                " |"
            });
        }
        table.push('\n');
    }
    table.push_str("| `grpc.health.v1.Health`, server reflection | open | open | open | open |\n");
    table
}

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

/// Whether the call's key holds the staff scope.
pub fn is_staff<T>(request: &Request<T>) -> bool {
    request
        .extensions()
        .get::<Client>()
        .is_some_and(|client| client.scopes.contains(Scope::Staff))
}

/// The customer the portal says it acts for, if it names a well-formed one (in lower case, as
/// Mandate writes ids). Believed as the portal's word (only portal keys may send it); not
/// looked up.
pub fn claimed_customer<T>(request: &Request<T>) -> Option<String> {
    request
        .metadata()
        .get(CUSTOMER_HEADER)?
        .to_str()
        .ok()
        .map(|id| id.trim().to_ascii_lowercase())
        .filter(|id| is_identifier(id))
}

/// Whether the call may read what `customer_id` may act on: a check system may ask for any
/// customer; the portal only for the customer it acts for (`x-customer-id`), so that a portal
/// session of one customer cannot list another's applications.
pub fn may_list_for<T>(request: &Request<T>, customer_id: &str) -> ApiResult<()> {
    match claimed_customer(request) {
        Some(acting) if acting == customer_id => Ok(()),
        Some(acting) => Err(ApiError::from(Rule::PermissionDenied(format!(
            "a portal call acting for customer {acting} (`{CUSTOMER_HEADER}`) may list only that \
             customer's applications, not {customer_id}'s"
        )))),
        None if caller(request)?.scopes.contains(Scope::Check) => Ok(()),
        None => Err(ApiError::Unauthenticated(format!(
            "the portal lists the applications of the customer it acts for: send its id in the \
             `{CUSTOMER_HEADER}` metadata"
        ))),
    }
}

/// The client system behind a call, for the audit trail.
pub fn client<T>(request: &Request<T>) -> ApiResult<Actor> {
    Ok(Actor {
        customer_id: None,
        client: client_name(request)?.to_owned(),
    })
}

/// The name of the client system behind a call, as the authentication layer found it.
pub fn client_name<T>(request: &Request<T>) -> ApiResult<&str> {
    caller(request).map(|client| client.name.as_str())
}

/// The client system behind a call and the credential it presented, as the authentication
/// layer found them: a stream keeps it to ask, at each key reload, whether it still holds.
pub fn caller<T>(request: &Request<T>) -> ApiResult<&Client> {
    request
        .extensions()
        .get::<Client>()
        .ok_or_else(|| ApiError::Unauthenticated("this call presented no API key".to_owned()))
}

/// Who reads: the customer the portal acts for (`x-customer-id`), or, without one, staff.
pub enum Reader {
    Customer(ActingCustomer),
    Staff,
}

impl Reader {
    /// The store's view of the reader.
    pub fn viewer(&self) -> Viewer<'_> {
        match self {
            Self::Customer(acting) => Viewer::Customer(&acting.customer_id),
            Self::Staff => Viewer::Staff,
        }
    }
}

/// The reader of a call that a customer or staff may make: the acting customer when the call
/// names one, staff when it names none and its credential holds the staff scope.
pub async fn reader<T>(store: &Store, request: &Request<T>) -> ApiResult<Reader> {
    if is_staff(request) && !request.metadata().contains_key(CUSTOMER_HEADER) {
        return Ok(Reader::Staff);
    }
    Ok(Reader::Customer(acting_customer(store, request).await?))
}

/// A registered customer a call acts for.
pub struct ActingCustomer {
    pub customer_id: String,
    /// When the customer registered.
    pub since: chrono::DateTime<chrono::Utc>,
    /// The customer through its client system, for the audit trail.
    pub actor: Actor,
}

/// The customer a call acts for: `UNAUTHENTICATED` without a well-formed `x-customer-id`,
/// `NOT_FOUND` when no such customer is registered.
pub async fn acting_customer<T>(store: &Store, request: &Request<T>) -> ApiResult<ActingCustomer> {
    let value = request.metadata().get(CUSTOMER_HEADER).ok_or_else(|| {
        ApiError::Unauthenticated(format!(
            "this call acts for a customer: send the customer's id in the `{CUSTOMER_HEADER}` metadata"
        ))
    })?;
    let customer_id = value
        .to_str()
        .ok()
        .map(|id| id.trim().to_ascii_lowercase())
        .filter(|id| is_identifier(id))
        .ok_or_else(|| {
            ApiError::Unauthenticated(format!(
                "`{CUSTOMER_HEADER}` must be a customer id returned by RegisterCustomer"
            ))
        })?;
    let customer = store
        .customer(&customer_id)
        .await
        .map_err(|err| match err {
            StoreError::Domain(Rule::NotFound(_)) => {
                ApiError::from(StoreError::from(Rule::NotFound(format!(
                    "the customer named in the `{CUSTOMER_HEADER}` metadata, {customer_id}, is not \
                 registered: register it with RegisterCustomer first"
                ))))
            }
            other => other.into(),
        })?;
    Ok(ActingCustomer {
        actor: Actor {
            customer_id: Some(customer.customer_id.clone()),
            ..client(request)?
        },
        customer_id: customer.customer_id,
        since: customer.create_time,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prost::Message;

    use super::*;

    /// Every method of every `mandate.v1` service the server describes (and serves) has an entry
    /// in `SCOPES`, and every entry names such a method.
    #[test]
    fn the_scope_table_covers_exactly_the_served_methods() {
        let set = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set");
        let served: BTreeSet<(String, String)> = set
            .file
            .iter()
            .filter(|file| file.package() == "mandate.v1")
            .flat_map(|file| {
                file.service.iter().flat_map(move |service| {
                    service.method.iter().map(move |method| {
                        (
                            format!("{}.{}", file.package(), service.name()),
                            method.name().to_owned(),
                        )
                    })
                })
            })
            .collect();
        let listed: BTreeSet<(String, String)> = SCOPES
            .iter()
            .map(|(service, method, _)| ((*service).to_owned(), (*method).to_owned()))
            .collect();
        assert_eq!(listed.len(), SCOPES.len(), "an RPC is listed twice");
        let missing: Vec<_> = served.difference(&listed).collect();
        let unknown: Vec<_> = listed.difference(&served).collect();
        assert!(
            missing.is_empty(),
            "served methods with no scopes: {missing:?}"
        );
        assert!(
            unknown.is_empty(),
            "scope entries naming no method: {unknown:?}"
        );
        assert!(SCOPES.iter().all(|(_, _, scopes)| !scopes.is_empty()));
    }

    #[test]
    fn a_method_in_no_entry_is_open_to_no_scope_and_other_services_need_none() {
        assert_eq!(
            required_scopes("/mandate.v1.ContractorService/DropEverything"),
            Some(&[][..])
        );
        assert_eq!(
            required_scopes("/mandate.v1.ContractorService/RetireAliasPins"),
            Some(&[Scope::Staff][..])
        );
        assert_eq!(required_scopes("/grpc.health.v1.Health/Check"), None);
    }

    #[test]
    fn the_security_page_shows_the_scope_table() {
        let page = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/security.md"));
        let table = scope_table_markdown();
        assert!(
            page.contains(&table),
            "docs/security.md must show the scope table as `scope_table_markdown` writes it:\n{table}"
        );
    }
}
