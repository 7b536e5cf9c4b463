//! Errors as HTTP: the gRPC status code becomes the HTTP status (per `google/rpc/code.proto`)
//! and the body is the AIP-193 JSON error, with every `google.rpc` detail decoded, so a REST
//! client sees exactly the field violations and reasons a gRPC client sees.

use base64::Engine;
use http::{HeaderValue, StatusCode, header};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::{Value as Json, json};
use tonic::{Code, Status};

static ERROR_DOMAIN: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Sets the `ErrorInfo.domain` of the errors the gateway raises itself (unparseable bodies,
/// unknown parameters, Connect framing), so that a client sees one domain whichever layer
/// refused its call. The first call wins; unset, the domain is `gateway`.
pub fn set_error_domain(domain: &'static str) {
    let _ = ERROR_DOMAIN.set(domain);
}

/// The `ErrorInfo.domain` of gateway-raised errors (see [`set_error_domain`]).
pub fn error_domain() -> &'static str {
    ERROR_DOMAIN.get().copied().unwrap_or("gateway")
}

/// The HTTP status for a gRPC code (`google/rpc/code.proto`).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The `status` string of AIP-193 (`google.rpc.Code` enum names).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// An error answer of the gateway.
#[derive(Debug, Clone)]
pub struct HttpError {
    /// HTTP status.
    pub status: StatusCode,
    /// gRPC code it stands for.
    pub code: Code,
    /// Message for humans.
    pub message: String,
    /// Decoded `google.rpc` details, each with `@type`.
    pub details: Vec<Json>,
    /// Extra response headers (e.g. `WWW-Authenticate`, `Retry-After`, `Allow`).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

/// One `google.rpc.BadRequest.FieldViolation`.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The offending field or parameter.
    pub field: String,
    /// What is wrong.
    pub description: String,
}

impl HttpError {
    /// A gateway-side INVALID_ARGUMENT (unparseable body, unknown parameter …), shaped like the
    /// service's own: `BadRequest` with every violation plus `ErrorInfo`.
    pub fn bad_request(
        reason: &str,
        message: impl Into<String>,
        violations: Vec<Violation>,
    ) -> Self {
        let mut details = vec![json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason,
            "domain": error_domain(),
            "metadata": {},
        })];
        if !violations.is_empty() {
            details.push(json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": violations
                    .iter()
                    .map(|v| json!({"field": v.field, "description": v.description}))
                    .collect::<Vec<_>>(),
            }));
        }
        Self {
            status: StatusCode::BAD_REQUEST,
            code: Code::InvalidArgument,
            message: message.into(),
            details,
            headers: Vec::new(),
        }
    }

    /// An error with an explicit HTTP status that has no gRPC counterpart of its own
    /// (415, 413, 405), reported under the closest code.
    pub fn with_status(
        status: StatusCode,
        code: Code,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: vec![json!({
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": error_domain(),
                "metadata": {},
            })],
            headers: Vec::new(),
        }
    }

    /// A gRPC status from the service, its details decoded with `pool`; its metadata
    /// (e.g. `www-authenticate`) becomes response headers.
    pub fn from_status(status: &Status, pool: &DescriptorPool) -> Self {
        let mut headers = crate::transcode::metadata_headers(status.metadata().as_ref());
        headers.extend(retry_after(status));
        Self {
            status: http_status(status.code()),
            code: status.code(),
            message: status.message().to_owned(),
            details: decode_details(status.details(), pool),
            headers,
        }
    }

    /// Sets `key` in the metadata of the `google.rpc.ErrorInfo` detail (unless already there),
    /// adding an ErrorInfo (reason: the code's name, domain `gateway`) when there is none.
    pub fn add_error_metadata(&mut self, key: &str, value: String) {
        let info = self.details.iter_mut().find(|detail| {
            detail.get("@type").and_then(Json::as_str)
                == Some("type.googleapis.com/google.rpc.ErrorInfo")
        });
        let info = match info {
            Some(info) => info,
            None => {
                self.details.push(json!({
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": code_name(self.code),
                    "domain": error_domain(),
                    "metadata": {},
                }));
                let last = self.details.len() - 1;
                &mut self.details[last]
            }
        };
        let Some(fields) = info.as_object_mut() else {
            return;
        };
        let metadata = fields
            .entry("metadata")
            .or_insert_with(|| Json::Object(serde_json::Map::new()));
        if let Some(metadata) = metadata.as_object_mut() {
            metadata
                .entry(key.to_owned())
                .or_insert(Json::String(value));
        }
    }

    /// The AIP-193 JSON body.
    pub fn body(&self) -> Json {
        json!({
            "error": {
                "code": self.status.as_u16(),
                "message": self.message,
                "status": code_name(self.code),
                "details": self.details,
            }
        })
    }

    /// The full HTTP response.
    pub fn into_response(self) -> http::Response<axum::body::Body> {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = http::Response::new(axum::body::Body::from(body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        response
    }
}

/// `Retry-After` from a `google.rpc.RetryInfo` detail, if any.
fn retry_after(status: &Status) -> Vec<(header::HeaderName, HeaderValue)> {
    let Ok(rpc_status) = tonic_types::pb::Status::decode(status.details()) else {
        return Vec::new();
    };
    rpc_status
        .details
        .iter()
        .filter(|any| any.type_url.ends_with("/google.rpc.RetryInfo"))
        .filter_map(|any| tonic_types::pb::RetryInfo::decode(any.value.as_slice()).ok())
        .filter_map(|info| info.retry_delay)
        .map(|delay| {
            let seconds = delay.seconds.max(0) + i64::from(delay.nanos > 0);
            (header::RETRY_AFTER, HeaderValue::from(seconds.max(1)))
        })
        .take(1)
        .collect()
}

/// `grpc-status-details-bin` (a serialized `google.rpc.Status`) as JSON details.
fn decode_details(details: &[u8], pool: &DescriptorPool) -> Vec<Json> {
    if details.is_empty() {
        return Vec::new();
    }
    let Ok(status) = tonic_types::pb::Status::decode(details) else {
        return Vec::new();
    };
    status
        .details
        .iter()
        .map(|any| decode_any(&any.type_url, &any.value, pool))
        .collect()
}

/// One `google.protobuf.Any` as JSON with `@type` (base64 `value` when undecodable).
pub(crate) fn decode_any(type_url: &str, value: &[u8], pool: &DescriptorPool) -> Json {
    let name = type_url.rsplit('/').next().unwrap_or(type_url);
    let decoded = pool
        .get_message_by_name(name)
        .and_then(|descriptor| DynamicMessage::decode(descriptor, value).ok())
        .and_then(|message| {
            message
                .serialize_with_options(
                    serde_json::value::Serializer,
                    &SerializeOptions::new().skip_default_fields(false),
                )
                .ok()
        });
    match decoded {
        Some(Json::Object(mut fields)) => {
            let mut object = serde_json::Map::new();
            object.insert("@type".into(), Json::String(type_url.to_owned()));
            object.append(&mut fields);
            Json::Object(object)
        }
        _ => json!({
            "@type": type_url,
            "value": base64::engine::general_purpose::STANDARD.encode(value),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tonic_types::{ErrorDetails, StatusExt};

    use super::*;

    fn pool() -> DescriptorPool {
        let mut pool = DescriptorPool::new();
        pool.decode_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .unwrap();
        pool
    }

    fn retry_after_for(delay: std::time::Duration) -> Option<String> {
        let status = Status::with_error_details(
            Code::Unavailable,
            "later",
            ErrorDetails::with_retry_info(Some(delay)),
        );
        HttpError::from_status(&status, &pool())
            .headers
            .iter()
            .find(|(name, _)| name == header::RETRY_AFTER)
            .map(|(_, value)| value.to_str().unwrap().to_owned())
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        use std::time::Duration;
        assert_eq!(
            retry_after_for(Duration::from_secs(30)).as_deref(),
            Some("30")
        );
        assert_eq!(
            retry_after_for(Duration::from_millis(2100)).as_deref(),
            Some("3")
        );
        assert_eq!(
            retry_after_for(Duration::from_millis(10)).as_deref(),
            Some("1")
        );
        assert_eq!(retry_after_for(Duration::ZERO).as_deref(), Some("1"));
        let plain = Status::unavailable("later");
        assert!(HttpError::from_status(&plain, &pool()).headers.is_empty());
    }

    #[test]
    fn every_code_has_a_status_and_a_name() {
        assert_eq!(http_status(Code::Ok), StatusCode::OK);
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(http_status(Code::Cancelled).as_u16(), 499);
    }

    #[test]
    fn undecodable_details_are_dropped_or_passed_on() {
        let garbage = Status::with_details(Code::Internal, "x", vec![0xff, 0xff].into());
        assert!(HttpError::from_status(&garbage, &pool()).details.is_empty());
        // An Any whose bytes do not fit its type is passed on as base64.
        let rpc = tonic_types::pb::Status {
            code: 13,
            message: "x".into(),
            details: vec![prost_types::Any {
                type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
                value: vec![0xff],
            }],
        };
        let status = Status::with_details(Code::Internal, "x", rpc.encode_to_vec().into());
        assert_eq!(
            HttpError::from_status(&status, &pool()).details,
            vec![json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "value": "/w=="})]
        );
    }

    #[test]
    fn the_response_has_the_status_json_and_extra_headers() {
        let mut error = HttpError::bad_request("WHY", "bad", Vec::new());
        error
            .headers
            .push((header::ALLOW, HeaderValue::from_static("GET")));
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(response.headers()[header::ALLOW], "GET");
    }
}
