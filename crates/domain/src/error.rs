/// A field of a request that was not acceptable, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's path in the request, such as `contact.email`.
    pub field: String,
    /// What is wrong with it, in words a developer with grpcurl understands.
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }

    /// The same violation, nested under `prefix` (`email` under `contact` is `contact.email`).
    pub fn under(self, prefix: &str) -> Self {
        Self {
            field: format!("{prefix}.{}", self.field),
            description: self.description,
        }
    }
}

/// Why a rule refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request's fields are not acceptable.
    #[error("invalid request: {}", describe(.0))]
    Invalid(Vec<FieldViolation>),
    /// Something the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Something the request would create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The actor does not hold the role the request needs.
    #[error("{0}")]
    PermissionDenied(String),
    /// A rule refuses the request in the account's current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Too many attempts: the caller may try again after `retry_after`.
    #[error("{message}")]
    Throttled {
        message: String,
        retry_after: std::time::Duration,
    },
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// A request with a single bad field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }

    /// `kind` `id` does not exist.
    pub fn not_found(kind: &str, id: &str) -> Self {
        Self::NotFound(format!("{kind} {id} not found"))
    }

    /// The refusals of several fields as one, naming every bad field.
    pub fn all_invalid(errors: impl IntoIterator<Item = Error>) -> Self {
        Self::Invalid(
            errors
                .into_iter()
                .flat_map(|err| match err {
                    Self::Invalid(violations) => violations,
                    other => vec![FieldViolation::new("", other.to_string())],
                })
                .collect(),
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Collects the violations of several fields, so that one reply names every bad field.
#[derive(Debug, Default)]
pub(crate) struct Violations(Vec<FieldViolation>);

impl Violations {
    /// Keeps the value of a field that parsed, or records why it did not.
    pub(crate) fn check<T>(&mut self, result: Result<T, FieldViolation>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(violation) => {
                self.0.push(violation);
                None
            }
        }
    }

    /// Records the violations of a nested message under its field name.
    pub(crate) fn nested<T>(&mut self, prefix: &str, result: Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(Error::Invalid(violations)) => {
                self.0
                    .extend(violations.into_iter().map(|v| v.under(prefix)));
                None
            }
            Err(other) => {
                self.0.push(FieldViolation::new(prefix, other.to_string()));
                None
            }
        }
    }

    pub(crate) fn push(&mut self, violation: FieldViolation) {
        self.0.push(violation);
    }

    /// The error that names every field recorded as not acceptable.
    pub(crate) fn into_error(self) -> Error {
        Error::Invalid(self.0)
    }
}
