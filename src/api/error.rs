//! The one place where errors become gRPC statuses (README, "The API": the table of codes).

use mandate_domain::Error as Rule;
use mandate_store::Error as StoreError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// Everything an RPC can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The call does not say who is calling, or says it in a form that is not accepted.
    #[error("{0}")]
    Unauthenticated(String),
    /// A failure inside this process, with its detail for the log only.
    #[error("{0}")]
    Internal(String),
    /// The caller holds as much of a bounded resource as it may.
    #[error("{0}")]
    Exhausted(String),
}

impl From<Rule> for ApiError {
    fn from(rule: Rule) -> Self {
        ApiError::Store(StoreError::Domain(rule))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        match err {
            ApiError::Store(StoreError::Domain(rule)) => rule_status(rule),
            ApiError::Store(StoreError::Unavailable(detail)) => {
                tracing::warn!(error = %detail, "database unavailable");
                Status::unavailable("the database is unavailable; retry shortly")
            }
            ApiError::Store(StoreError::TimedOut(wait)) => {
                tracing::warn!(?wait, "the database did not answer in time");
                Status::unavailable(format!(
                    "the database did not answer within {} ms; retry shortly",
                    wait.as_millis()
                ))
            }
            ApiError::Store(StoreError::Gone(detail)) => {
                tracing::error!(error = %detail, "database lost");
                Status::unavailable(
                    "the database is unavailable: this server must be restarted by its operator",
                )
            }
            ApiError::Store(
                err @ (StoreError::Database(_) | StoreError::Corrupt(_) | StoreError::Internal(_)),
            ) => internal(&err.to_string()),
            ApiError::Internal(detail) => internal(&detail),
            ApiError::Unauthenticated(message) => Status::unauthenticated(message),
            ApiError::Exhausted(message) => Status::resource_exhausted(message),
        }
    }
}

fn rule_status(rule: Rule) -> Status {
    let message = rule.to_string();
    match rule {
        Rule::Invalid(violations) => {
            let violations: Vec<FieldViolation> = violations
                .into_iter()
                .map(|v| FieldViolation::new(v.field, v.description))
                .collect();
            Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request(violations),
            )
        }
        Rule::NotFound(_) => Status::not_found(message),
        Rule::AlreadyExists(_) => Status::already_exists(message),
        Rule::PermissionDenied(_) => Status::permission_denied(message),
        Rule::FailedPrecondition(_) => Status::failed_precondition(message),
        Rule::Throttled { retry_after, .. } => Status::with_error_details(
            Code::ResourceExhausted,
            message,
            ErrorDetails::with_retry_info(Some(retry_after)),
        ),
    }
}

/// The per-item error of a batch: what the item would have answered on its own.
pub fn check_error(err: ApiError) -> crate::pb::CheckError {
    let status = Status::from(err);
    crate::pb::CheckError {
        code: status.code() as i32,
        message: status.message().to_owned(),
        field_violations: status
            .get_details_bad_request()
            .map(|bad| {
                bad.field_violations
                    .into_iter()
                    .map(|v| crate::pb::FieldViolation {
                        field: v.field,
                        description: v.description,
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Logs the detail and answers without it: database detail never reaches a caller.
fn internal(detail: &str) -> Status {
    tracing::error!(error = %detail, "internal error");
    Status::internal("internal error; the server log has the detail")
}
