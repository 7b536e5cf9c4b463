//! The service's error classification: one enum for every way a use case can fail.
//!
//! Each variant carries what a client needs to act (field violations, the resource, a
//! machine-readable reason) and nothing it must not see: database and pool failures are
//! logged here, with a reference, and surface only as a generic message. The transport
//! adapters translate variants into their protocol (gRPC status codes with
//! `google.rpc` details; HTTP statuses via the gateway), each by one exhaustive `match`.

use uuid::Uuid;

use crate::{
    core::store::Conflict,
    domain::{FieldViolation, Violations},
};

/// `ErrorInfo.domain` of every error this service produces.
pub const ERROR_DOMAIN: &str = "customer.example.com";

/// Machine-readable reasons (`ErrorInfo.reason`, UPPER_SNAKE_CASE).
pub mod reason {
    /// One or more request fields are invalid (see the `BadRequest` detail).
    pub const INVALID_FIELDS: &str = "INVALID_FIELDS";
    /// The page token is malformed, forged, or belongs to another query.
    pub const INVALID_PAGE_TOKEN: &str = "INVALID_PAGE_TOKEN";
    /// A request id was reused with a different request.
    pub const REQUEST_ID_REUSED: &str = "REQUEST_ID_REUSED";
    /// The request body is not a valid protobuf message.
    pub const MALFORMED_REQUEST: &str = "MALFORMED_REQUEST";
    /// The resource does not exist.
    pub const NOT_FOUND: &str = "RESOURCE_NOT_FOUND";
    /// Another live customer already uses the email.
    pub const EMAIL_ALREADY_EXISTS: &str = "EMAIL_ALREADY_EXISTS";
    /// Undelete of a customer that is not deleted.
    pub const NOT_DELETED: &str = "CUSTOMER_NOT_DELETED";
    /// UndeleteCompany of a company that is not deleted.
    pub const COMPANY_NOT_DELETED: &str = "COMPANY_NOT_DELETED";
    /// The supplied etag is not the current one.
    pub const ETAG_MISMATCH: &str = "ETAG_MISMATCH";
    /// A write to a soft-deleted customer, or any call on the notes of one.
    pub const DELETED: &str = "CUSTOMER_DELETED";
    /// Another live company already uses the business id.
    pub const BUSINESS_ID_ALREADY_EXISTS: &str = "BUSINESS_ID_ALREADY_EXISTS";
    /// A write to a soft-deleted company.
    pub const COMPANY_DELETED: &str = "COMPANY_DELETED";
    /// DeleteCompany without `force` while live customers belong to the company.
    pub const COMPANY_HAS_CUSTOMERS: &str = "COMPANY_HAS_CUSTOMERS";
    /// The database cannot be reached or the pool is exhausted.
    pub const DATABASE_UNAVAILABLE: &str = "DATABASE_UNAVAILABLE";
    /// The operation ran out of time.
    pub const DEADLINE_EXCEEDED: &str = "DEADLINE_EXCEEDED";
    /// An unexpected failure; details are in the server log under the reference.
    pub const INTERNAL: &str = "INTERNAL";
    /// The caller exceeded its rate limit.
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    /// The server is at its concurrency limit and shed the call.
    pub const OVERLOADED: &str = "OVERLOADED";
    /// A resume token names events that retention already removed.
    pub const RESUME_TOKEN_EXPIRED: &str = "RESUME_TOKEN_EXPIRED";
    /// A resume token is not one this service issued.
    pub const INVALID_RESUME_TOKEN: &str = "INVALID_RESUME_TOKEN";
    /// The business registry cannot be reached, failed, timed out or sent an unreadable
    /// response, or its circuit breaker is open.
    pub const REGISTRY_UNAVAILABLE: &str = "REGISTRY_UNAVAILABLE";
    /// No business registry is configured on this server (`BUSINESS_REGISTRY_URL`).
    pub const REGISTRY_NOT_CONFIGURED: &str = "REGISTRY_NOT_CONFIGURED";
    /// The server is shutting down (a watch ends with it); reconnect.
    pub const SHUTTING_DOWN: &str = "SHUTTING_DOWN";
    /// The caller already has its share of calls (or watches) in flight.
    pub const CALLER_CONCURRENCY_EXCEEDED: &str = "CALLER_CONCURRENCY_EXCEEDED";
    /// A watch was ended because its client did not read; watch again from the resume token
    /// in the status.
    pub const SLOW_CONSUMER: &str = "SLOW_CONSUMER";
    /// Another live customer has one of the `(source, id)` pairs of `external_ids`.
    pub const EXTERNAL_ID_ALREADY_EXISTS: &str = "EXTERNAL_ID_ALREADY_EXISTS";
    /// RotateApiKey of a revoked key.
    pub const API_KEY_REVOKED: &str = "API_KEY_REVOKED";
    /// RotateApiKey of a key past its expiry.
    pub const API_KEY_EXPIRED: &str = "API_KEY_EXPIRED";
    /// A request message over the size limit (`MAX_REQUEST_BYTES`).
    pub const REQUEST_TOO_LARGE: &str = "REQUEST_TOO_LARGE";
    /// The resources a BatchGet names are more than one response may hold
    /// (`MAX_RESPONSE_PAGE_BYTES`).
    pub const RESPONSE_TOO_LARGE: &str = "RESPONSE_TOO_LARGE";
    /// An export's snapshot holds more external id sources than an export has columns for.
    pub const TOO_MANY_EXTERNAL_ID_SOURCES: &str = "TOO_MANY_EXTERNAL_ID_SOURCES";
    /// A retry of a request whose first response was erased with the customer it was about
    /// (EraseCustomer): it is not run again, which could bring the erased data back.
    pub const REQUEST_ERASED: &str = "REQUEST_ERASED";
    /// Another run of the same import (same request id) is committing its rows.
    pub const IMPORT_RUNNING: &str = "IMPORT_RUNNING";
    /// An import's stream broke off; re-sending it with the same request id resumes it.
    pub const IMPORT_INTERRUPTED: &str = "IMPORT_INTERRUPTED";

    /// A merge source, or an undelete, of a customer merged into another already.
    pub const CUSTOMER_MERGED: &str = "CUSTOMER_MERGED";
    /// UnmergeCustomers of a merge undone already.
    pub const MERGE_ALREADY_UNDONE: &str = "MERGE_ALREADY_UNDONE";
    /// UnmergeCustomers of a merge whose source was purged, erased, undeleted or merged
    /// elsewhere since: it cannot be restored as it was.
    pub const MERGE_SOURCE_CHANGED: &str = "MERGE_SOURCE_CHANGED";
    /// CreateCustomer with `duplicate_policy = REJECT` found likely duplicates.
    pub const DUPLICATE_CUSTOMER: &str = "DUPLICATE_CUSTOMER";
    /// CreateCompany with `duplicate_policy = REJECT`: live companies have the domain.
    pub const DUPLICATE_COMPANY: &str = "DUPLICATE_COMPANY";
}

/// Result of a use case.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure of a use case.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is invalid; nothing was done.
    #[error("{message}")]
    InvalidArgument {
        /// Summary for humans.
        message: String,
        /// `ErrorInfo.reason`.
        reason: &'static str,
        /// Every invalid field.
        violations: Vec<FieldViolation>,
    },
    /// The named resource does not exist.
    #[error("{resource_name} not found")]
    NotFound {
        /// Resource type, e.g. `customer.example.com/Customer`.
        resource_type: &'static str,
        /// The requested name.
        resource_name: String,
    },
    /// The resource (or a unique attribute of it) already exists.
    #[error("{message}")]
    AlreadyExists {
        /// Summary for humans.
        message: String,
        /// `ErrorInfo.reason`.
        reason: &'static str,
        /// Resource type.
        resource_type: &'static str,
        /// The conflicting resource, when it may be disclosed.
        resource_name: String,
    },
    /// A create with `duplicate_policy = REJECT` found live look-alikes: customers likely the
    /// same person, companies with the same domain (ALREADY_EXISTS).
    #[error("{message}")]
    Duplicates {
        /// Summary for humans.
        message: String,
        /// `ErrorInfo.reason`: DUPLICATE_CUSTOMER or DUPLICATE_COMPANY.
        reason: &'static str,
        /// The candidates' resource type.
        resource_type: &'static str,
        /// The candidates' names, best first.
        candidates: Vec<String>,
    },
    /// Optimistic concurrency: the supplied etag is stale. Re-read and retry.
    #[error("{message}")]
    Aborted {
        /// Summary for humans.
        message: String,
        /// `ErrorInfo.reason`.
        reason: &'static str,
        /// Resource type.
        resource_type: &'static str,
        /// The resource.
        resource_name: String,
    },
    /// The resource is not in a state that allows the operation.
    #[error("{message}")]
    FailedPrecondition {
        /// Summary for humans.
        message: String,
        /// `ErrorInfo.reason`.
        reason: &'static str,
        /// Resource type.
        resource_type: &'static str,
        /// The resource.
        resource_name: String,
    },
    /// The request reaches past what is available (a resume token older than retention).
    #[error("{message}")]
    OutOfRange {
        /// Summary for humans.
        message: String,
        /// `ErrorInfo.reason`.
        reason: &'static str,
        /// The offending request field.
        field: &'static str,
    },
    /// A dependency (the database, the business registry) is unreachable or saturated;
    /// retry with backoff.
    #[error("{message}")]
    Unavailable {
        /// Summary for humans.
        message: String,
        /// `ErrorInfo.reason`: which dependency ([`reason::DATABASE_UNAVAILABLE`],
        /// [`reason::REGISTRY_UNAVAILABLE`]).
        reason: &'static str,
        /// When the client may retry (`RetryInfo.retry_delay`).
        retry_after: std::time::Duration,
    },
    /// The operation did not finish in time.
    #[error("{message}")]
    DeadlineExceeded {
        /// Summary for humans.
        message: String,
    },
    /// Anything unexpected. Logged with `reference`; clients see only the reference.
    #[error("internal error (reference {reference})")]
    Internal {
        /// Correlates the client's error with the server log line.
        reference: Uuid,
    },
}

impl Error {
    /// INVALID_ARGUMENT listing `violations`.
    pub fn invalid(violations: Violations) -> Self {
        let violations = violations.into_vec();
        let message = match violations.as_slice() {
            [one] => format!("invalid request: {}: {}", one.field, one.description),
            many => format!("invalid request: {} invalid fields", many.len()),
        };
        Self::InvalidArgument {
            message,
            reason: reason::INVALID_FIELDS,
            violations,
        }
    }

    /// INVALID_ARGUMENT for one field with a specific reason.
    pub fn invalid_field(
        reason: &'static str,
        field: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        let violation = FieldViolation {
            field: field.into(),
            description: description.into(),
        };
        Self::InvalidArgument {
            message: format!(
                "invalid request: {}: {}",
                violation.field, violation.description
            ),
            reason,
            violations: vec![violation],
        }
    }

    /// NOT_FOUND for a resource of `resource_type`.
    pub fn not_found(resource_type: &'static str, name: impl ToString) -> Self {
        Self::NotFound {
            resource_type,
            resource_name: name.to_string(),
        }
    }

    /// NOT_FOUND for a customer.
    pub fn customer_not_found(name: impl ToString) -> Self {
        Self::NotFound {
            resource_type: crate::domain::names::CUSTOMER_TYPE,
            resource_name: name.to_string(),
        }
    }

    /// UNAVAILABLE because the database cannot be reached; retry in a second.
    pub fn database_unavailable() -> Self {
        Self::Unavailable {
            message: "the database is unavailable, retry later".into(),
            reason: reason::DATABASE_UNAVAILABLE,
            retry_after: std::time::Duration::from_secs(1),
        }
    }

    /// Logs `source` with a fresh reference and returns the generic INTERNAL error.
    pub fn internal(source: &dyn std::error::Error) -> Self {
        let reference = Uuid::new_v4();
        tracing::error!(%reference, error = %source, "internal error");
        Self::Internal { reference }
    }
}

impl From<Violations> for Error {
    fn from(violations: Violations) -> Self {
        Self::invalid(violations)
    }
}

impl From<FieldViolation> for Error {
    fn from(violation: FieldViolation) -> Self {
        Self::invalid(violation.into())
    }
}

impl From<Conflict> for Error {
    fn from(conflict: Conflict) -> Self {
        match conflict {
            Conflict::Email => Self::AlreadyExists {
                message: "another live customer already uses this email".into(),
                reason: reason::EMAIL_ALREADY_EXISTS,
                resource_type: crate::domain::names::CUSTOMER_TYPE,
                resource_name: String::new(),
            },
            Conflict::BusinessId => Self::AlreadyExists {
                message: "another live company already has this business_id".into(),
                reason: reason::BUSINESS_ID_ALREADY_EXISTS,
                resource_type: crate::domain::names::COMPANY_TYPE,
                resource_name: String::new(),
            },
            Conflict::ExternalId { source, id, holder } => {
                let holder = holder
                    .map(|id| crate::domain::names::CustomerName(id).to_string())
                    .unwrap_or_default();
                Self::AlreadyExists {
                    message: format!(
                        "another live customer{} already has external id {source} = {:?}",
                        if holder.is_empty() {
                            String::new()
                        } else {
                            format!(" ({holder})")
                        },
                        crate::domain::customer::clip(&id),
                    ),
                    reason: reason::EXTERNAL_ID_ALREADY_EXISTS,
                    resource_type: crate::domain::names::CUSTOMER_TYPE,
                    resource_name: holder,
                }
            }
        }
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(error: tokio::task::JoinError) -> Self {
        Self::internal(&error)
    }
}
