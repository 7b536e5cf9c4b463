//! Service errors as gRPC statuses: one exhaustive `match`, no catch-all arm, so a new error
//! variant cannot compile until it has a status code and details.
//!
//! Every status carries `google.rpc.ErrorInfo` (reason + domain) and, where it applies,
//! `BadRequest` (every field violation), `ResourceInfo` (which resource) or
//! `PreconditionFailure`, encoded in `grpc-status-details-bin` as `google.rpc.Status`.

use std::collections::HashMap;

use base64::Engine;
use http::{HeaderMap, HeaderValue};
use prost::Message;
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

/// Restates the statuses tonic and tonic-web raise for a client's bad request as the
/// client's fault, in `metadata` (trailers or trailers-only headers), and returns the code
/// the call ends with: an undecodable gRPC-web base64 body is INVALID_ARGUMENT (tonic-web
/// says INTERNAL), a message over `MAX_REQUEST_BYTES` RESOURCE_EXHAUSTED (tonic says
/// OUT_OF_RANGE, which means a position past the end of something).
pub fn client_faults(code: Code, metadata: &mut HeaderMap) -> Code {
    let message = || {
        metadata
            .get("grpc-message")
            .map(|value| {
                percent_encoding::percent_decode(value.as_bytes())
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .unwrap_or_default()
    };
    let restated = match code {
        Code::Internal if is_grpc_web_decode_error(&message()) => transport_status(
            Code::InvalidArgument,
            reason::MALFORMED_REQUEST,
            "the gRPC-web request body is not valid base64",
            None,
        ),
        Code::OutOfRange if message().starts_with("Error, decoded message length too large") => {
            transport_status(
                Code::ResourceExhausted,
                reason::REQUEST_TOO_LARGE,
                message().replace(
                    "Error, decoded message length too large",
                    "the request message is too large",
                ),
                None,
            )
        }
        _ => return code,
    };
    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        metadata.remove(name);
    }
    let code = restated.code();
    if restated.add_header(metadata).is_err() {
        // Unencodable (it never is): state the code alone.
        metadata.insert("grpc-status", HeaderValue::from(code as i32));
    }
    code
}

/// Field violations listed in one `BadRequest`; more are counted in `ErrorInfo.metadata`
/// (`omittedViolations`).
pub const MAX_VIOLATIONS: usize = 20;
/// Longest field path or description in a violation, in characters.
const MAX_VIOLATION_CHARS: usize = 256;

/// `text` cut to [`MAX_VIOLATION_CHARS`] (with `…` when cut).
fn clip(text: String) -> String {
    if text.chars().count() <= MAX_VIOLATION_CHARS {
        return text;
    }
    let mut clipped: String = text.chars().take(MAX_VIOLATION_CHARS - 1).collect();
    clipped.push('…');
    clipped
}

/// Whether tonic-web raised `message` decoding a gRPC-web-text body (bad base64): the
/// client's fault, whether met after the read or while [`super::body::BodyFirst`] reads.
pub fn is_grpc_web_decode_error(message: &str) -> bool {
    message.starts_with("tonic-web: ")
}

/// The `Any` type URL of `google.rpc.ErrorInfo`.
const ERROR_INFO: &str = "type.googleapis.com/google.rpc.ErrorInfo";

/// Puts `requestId` into the `google.rpc.ErrorInfo` of the error status in `metadata` (the
/// trailers or trailers-only headers of a call), whoever raised it: the service, a
/// middleware or tonic itself. A status without an ErrorInfo (or without details) gets one,
/// its reason the code's name. An id already there is kept.
pub fn add_request_id(metadata: &mut HeaderMap, code: Code, request_id: &str) {
    const DETAILS: &str = "grpc-status-details-bin";
    // Either padding: the gRPC spec asks receivers to accept both.
    let base64 = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let mut status = metadata
        .get(DETAILS)
        .and_then(|value| base64.decode(value.as_bytes()).ok())
        .and_then(|bytes| tonic_types::pb::Status::decode(bytes.as_slice()).ok())
        .unwrap_or_else(|| tonic_types::pb::Status {
            code: code as i32,
            message: metadata
                .get("grpc-message")
                .map(|value| {
                    percent_encoding::percent_decode(value.as_bytes())
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .unwrap_or_default(),
            details: Vec::new(),
        });
    let position = status
        .details
        .iter()
        .position(|any| any.type_url == ERROR_INFO);
    let mut info = position
        .and_then(|at| tonic_types::pb::ErrorInfo::decode(status.details[at].value.as_slice()).ok())
        .unwrap_or_else(|| tonic_types::pb::ErrorInfo {
            reason: gateway::error::code_name(code).to_owned(),
            domain: ERROR_DOMAIN.to_owned(),
            metadata: HashMap::new(),
        });
    if info.metadata.contains_key("requestId") {
        return;
    }
    info.metadata
        .insert("requestId".to_owned(), request_id.to_owned());
    let any = prost_types::Any {
        type_url: ERROR_INFO.to_owned(),
        value: info.encode_to_vec(),
    };
    match position {
        Some(at) => status.details[at] = any,
        None => status.details.insert(0, any),
    }
    if let Ok(value) = HeaderValue::from_str(&base64.encode(status.encode_to_vec())) {
        metadata.insert(DETAILS, value);
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        let mut details = ErrorDetails::new();
        let code = match error {
            Error::InvalidArgument {
                reason, violations, ..
            } => {
                // Bounded: 100,000 bad mask paths must not become a 7 MB trailer that
                // clients refuse as RESOURCE_EXHAUSTED. The first MAX_VIOLATIONS are listed,
                // the rest counted.
                let omitted = violations.len().saturating_sub(MAX_VIOLATIONS);
                let metadata = if omitted > 0 {
                    HashMap::from([("omittedViolations".to_owned(), omitted.to_string())])
                } else {
                    HashMap::new()
                };
                details.set_error_info(reason, ERROR_DOMAIN, metadata);
                for violation in violations.into_iter().take(MAX_VIOLATIONS) {
                    details.add_bad_request_violation(
                        clip(violation.field),
                        clip(violation.description),
                    );
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
            Error::Duplicates {
                reason,
                resource_type,
                candidates,
                ..
            } => {
                // ErrorInfo first, then one ResourceInfo per candidate (AIP-193): ErrorDetails
                // holds a single ResourceInfo, so these statuses are built from the list.
                let mut list = vec![tonic_types::ErrorDetail::from(tonic_types::ErrorInfo::new(
                    reason,
                    ERROR_DOMAIN,
                    HashMap::from([("candidates".to_owned(), candidates.join(","))]),
                ))];
                for candidate in candidates {
                    list.push(
                        tonic_types::ResourceInfo::new(
                            resource_type,
                            candidate,
                            "",
                            "is likely a duplicate",
                        )
                        .into(),
                    );
                }
                return Status::with_error_details_vec(Code::AlreadyExists, message, list);
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
