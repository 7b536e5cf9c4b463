//! Why a lookup failed, and what the service answers for it.

use std::time::Duration;

use crate::service::{
    Error,
    error::reason::{INVALID_FIELDS, REGISTRY_NOT_CONFIGURED, REGISTRY_UNAVAILABLE},
};

/// Resource type of a business (`ResourceInfo.resource_type`).
pub const BUSINESS_TYPE: &str = "customer.example.com/Business";

/// The resource name of the business with `business_id`: `businesses/{business_id}`.
pub fn business_name(business_id: &str) -> String {
    format!("businesses/{business_id}")
}

/// Retry hint for a failing registry when the breaker gives none.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a lookup produced no [`BusinessInfo`](super::BusinessInfo). Cheap to clone: one
/// failure is shared by every caller whose lookup was coalesced with it. No variant carries
/// any part of a registry response body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No registry is configured (`BUSINESS_REGISTRY_URL` is unset).
    #[error("no business registry is configured on this server (BUSINESS_REGISTRY_URL)")]
    NotConfigured,
    /// The business id has the wrong shape; the registry was not asked.
    #[error("invalid business id: {0}")]
    InvalidId(String),
    /// The registry has no such business (HTTP 404 or 410).
    #[error("the business registry has no such business")]
    NotFound,
    /// No complete answer within the per-attempt timeout.
    #[error("the business registry did not answer within {0:?}")]
    Timeout(Duration),
    /// No connection, or it broke (refused, reset, TLS, not HTTP).
    #[error("the business registry cannot be reached: {0}")]
    Connection(String),
    /// The registry answered 5xx (or 429, too many requests).
    #[error("the business registry answered HTTP {0}")]
    Status(u16),
    /// The registry answered a status this client does not expect (a 4xx other than
    /// 404/410/429, a 1xx or 3xx): a configuration or contract problem on this side.
    #[error("the business registry answered HTTP {0}, which this service does not expect")]
    Rejected(u16),
    /// The response does not follow the contract (`docs/business-registry.md`).
    #[error("the business registry's response does not follow the contract: {0}")]
    Malformed(String),
    /// The circuit breaker is open: the registry was not asked.
    #[error("the business registry is failing; it is not asked again for {0:?}")]
    CircuitOpen(Duration),
}

impl RegistryError {
    /// Whether another attempt may succeed: timeouts, connection failures and 5xx answers.
    /// Never 4xx (429 included: the registry asked for less traffic), never a malformed
    /// response.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout(_) | Self::Connection(_) => true,
            Self::Status(status) => (500..=599).contains(status),
            _ => false,
        }
    }

    /// A short fixed name of the error: the `error.type` of trace spans, the `outcome` label
    /// of the registry metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotConfigured => "not_configured",
            Self::InvalidId(_) => "invalid_id",
            Self::NotFound => "not_found",
            Self::Timeout(_) => "timeout",
            Self::Connection(_) => "connection",
            Self::Status(_) => "status",
            Self::Rejected(_) => "rejected",
            Self::Malformed(_) => "malformed",
            Self::CircuitOpen(_) => "circuit_open",
        }
    }

    /// Whether the registry itself misbehaved (counts towards opening the circuit breaker).
    /// A 404 or another 4xx is a definite answer from a working registry.
    pub fn is_registry_failure(&self) -> bool {
        matches!(
            self,
            Self::Timeout(_) | Self::Connection(_) | Self::Status(_) | Self::Malformed(_)
        )
    }

    /// The service error for a failed lookup of `business_id`:
    ///
    /// | registry error | code | `ErrorInfo.reason` |
    /// |---|---|---|
    /// | [`NotConfigured`](Self::NotConfigured) | `FAILED_PRECONDITION` | `REGISTRY_NOT_CONFIGURED` |
    /// | [`InvalidId`](Self::InvalidId) | `INVALID_ARGUMENT` (field `name`) | `INVALID_FIELDS` |
    /// | [`NotFound`](Self::NotFound) | `NOT_FOUND` (resource `businesses/{id}`) | `RESOURCE_NOT_FOUND` |
    /// | [`Timeout`](Self::Timeout), [`Connection`](Self::Connection), [`Status`](Self::Status), [`Malformed`](Self::Malformed) | `UNAVAILABLE`, retry after 1 s | `REGISTRY_UNAVAILABLE` |
    /// | [`CircuitOpen`](Self::CircuitOpen) | `UNAVAILABLE`, retry after the rest of the cool-down | `REGISTRY_UNAVAILABLE` |
    /// | [`Rejected`](Self::Rejected) | `INTERNAL` (logged with a reference) | `INTERNAL` |
    ///
    /// Client messages never carry the registry's address or what it sent; the details
    /// were logged (without personal data) when the lookup failed.
    pub fn into_service_error(self, business_id: &str) -> Error {
        let unavailable = |message: &str, retry_after: Duration| Error::Unavailable {
            message: message.to_owned(),
            reason: REGISTRY_UNAVAILABLE,
            retry_after: retry_after.max(Duration::from_millis(1)),
        };
        match self {
            Self::NotConfigured => Error::FailedPrecondition {
                message: "business details are not available: no business registry is \
                          configured on this server"
                    .into(),
                reason: REGISTRY_NOT_CONFIGURED,
                resource_type: BUSINESS_TYPE,
                resource_name: business_name(business_id),
            },
            Self::InvalidId(description) => {
                Error::invalid_field(INVALID_FIELDS, "name", description)
            }
            Self::NotFound => Error::NotFound {
                resource_type: BUSINESS_TYPE,
                resource_name: business_name(business_id),
            },
            Self::Timeout(_) => unavailable(
                "the business registry did not answer in time, retry later",
                RETRY_AFTER,
            ),
            Self::Connection(_) | Self::Status(_) => unavailable(
                "the business registry is unavailable, retry later",
                RETRY_AFTER,
            ),
            Self::Malformed(_) => unavailable(
                "the business registry sent a response that could not be read, retry later",
                RETRY_AFTER,
            ),
            Self::CircuitOpen(retry_after) => unavailable(
                "the business registry is failing and is not being asked for now, retry later",
                retry_after,
            ),
            Self::Rejected(_) => Error::internal(&self),
        }
    }
}
