//! Service errors as gRPC statuses: one exhaustive `match`, no catch-all arm, so a new error
//! variant cannot compile until it has a status code and details.
//!
//! Every status carries `google.rpc.ErrorInfo` (reason + domain) and, where it applies,
//! `BadRequest` (every field violation), `ResourceInfo` (which resource) or
//! `PreconditionFailure`, encoded in `grpc-status-details-bin` as `google.rpc.Status`.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::service::{
    Error,
    error::{ERROR_DOMAIN, reason},
};

/// A status raised below the service layer (codec, limits): `ErrorInfo` with `reason`, and a
/// `RetryInfo` when the client should come back after `retry`.
pub fn transport_status(
    code: Code,
    reason: &str,
    message: impl Into<String>,
    retry: Option<std::time::Duration>,
) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
    if let Some(retry) = retry {
        details.set_retry_info(Some(retry));
    }
    Status::with_error_details(code, message, details)
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        let mut details = ErrorDetails::new();
        let code = match error {
            Error::InvalidArgument {
                reason, violations, ..
            } => {
                details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
                for violation in violations {
                    details.add_bad_request_violation(violation.field, violation.description);
                }
                Code::InvalidArgument
            }
            Error::NotFound {
                resource_type,
                resource_name,
            } => {
                details.set_error_info(
                    reason::NOT_FOUND,
                    ERROR_DOMAIN,
                    HashMap::from([("resource".to_owned(), resource_name.clone())]),
                );
                details.set_resource_info(resource_type, resource_name, "", "does not exist");
                Code::NotFound
            }
            Error::AlreadyExists {
                reason,
                resource_type,
                resource_name,
                ..
            } => {
                details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
                if !resource_name.is_empty() {
                    details.set_resource_info(resource_type, resource_name, "", "already exists");
                }
                Code::AlreadyExists
            }
            Error::Aborted {
                reason,
                resource_type,
                resource_name,
                ..
            } => {
                details.set_error_info(
                    reason,
                    ERROR_DOMAIN,
                    HashMap::from([("resource".to_owned(), resource_name.clone())]),
                );
                details.set_resource_info(
                    resource_type,
                    resource_name,
                    "",
                    "was changed concurrently",
                );
                Code::Aborted
            }
            Error::FailedPrecondition {
                reason,
                resource_type,
                resource_name,
                message,
            } => {
                details.set_error_info(
                    reason,
                    ERROR_DOMAIN,
                    HashMap::from([("resource".to_owned(), resource_name.clone())]),
                );
                details.add_precondition_failure_violation("STATE", &resource_name, message);
                details.set_resource_info(resource_type, resource_name, "", "");
                Code::FailedPrecondition
            }
            Error::OutOfRange {
                reason,
                field,
                message,
            } => {
                details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
                details.add_bad_request_violation(field, message);
                Code::OutOfRange
            }
            Error::Unavailable {
                reason,
                retry_after,
                ..
            } => {
                details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
                details.set_retry_info(Some(retry_after));
                Code::Unavailable
            }
            Error::DeadlineExceeded { .. } => {
                details.set_error_info(reason::DEADLINE_EXCEEDED, ERROR_DOMAIN, HashMap::new());
                Code::DeadlineExceeded
            }
            Error::Internal { reference } => {
                details.set_error_info(
                    reason::INTERNAL,
                    ERROR_DOMAIN,
                    HashMap::from([("reference".to_owned(), reference.to_string())]),
                );
                Code::Internal
            }
        };
        Status::with_error_details(code, message, details)
    }
}
