//! Who is calling, and may they: authentication (JWT bearer tokens, API keys) and the
//! per-RPC scope check.
//!
//! - [`jwt`]: bearer tokens verified with an explicit algorithm allow-list (RFC 8725).
//! - [`api_keys`]: random service-account keys, stored as hashes, with scopes, expiry and
//!   revocation.
//! - [`limits`]: per-caller rate limits and load shedding.
//! - [`scopes`]: the table mapping every RPC to the scope it needs (deny by default).
//! - [`layer`]: the tower layer that enforces both on every gRPC call before any business
//!   work. REST and gRPC-web reach the same gRPC services, so one layer covers all three
//!   transports.

pub mod api_keys;
pub mod jwt;
pub mod layer;
pub mod limits;
pub mod scopes;

use std::sync::Arc;

use http::HeaderMap;

use crate::db::Pool;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Recorded as the actor of writes: the token's `sub`, or `api-key:{id}`.
    pub subject: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
}

impl Principal {
    /// Whether the caller holds `scope`.
    pub fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|granted| granted == scope)
    }
}

/// Why a caller could not be authenticated. The text is safe to return to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `authorization: Bearer …` and no `x-api-key`.
    #[error("missing credentials: send `authorization: Bearer <token>` or `x-api-key: <key>`")]
    Missing,
    /// A bearer token that does not verify.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// An API key that is unknown, revoked or expired.
    #[error("invalid API key: {0}")]
    InvalidApiKey(String),
    /// Credentials could not be checked (the key store is unreachable).
    #[error("credentials could not be checked: {0}")]
    Unavailable(String),
}

/// Verifies credentials from request headers.
#[derive(Clone)]
pub struct Authenticator {
    jwt: Option<Arc<jwt::JwtVerifier>>,
    keys: Option<api_keys::ApiKeys>,
    disabled: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("jwt", &self.jwt.is_some())
            .field("api_keys", &self.keys.is_some())
            .field("disabled", &self.disabled)
            .finish()
    }
}

impl Authenticator {
    /// Checks tokens with `jwt` (if configured) and API keys in `pool`.
    pub fn new(jwt: Option<jwt::JwtVerifier>, pool: Pool) -> Self {
        Self {
            jwt: jwt.map(Arc::new),
            keys: Some(api_keys::ApiKeys::new(pool)),
            disabled: false,
        }
    }

    /// Lets every call through as an all-scopes `anonymous` caller (`--auth-disabled`).
    pub fn disabled() -> Self {
        Self {
            jwt: None,
            keys: None,
            disabled: true,
        }
    }

    /// The caller of a request with these headers.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        if self.disabled {
            return Ok(Principal {
                subject: "anonymous".into(),
                scopes: vec![
                    scopes::READ.into(),
                    scopes::WRITE.into(),
                    scopes::ADMIN.into(),
                ],
            });
        }
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            let value = value.to_str().map_err(|_| {
                AuthError::InvalidToken("the authorization header is not text".into())
            })?;
            let token = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .ok_or_else(|| AuthError::InvalidToken("expected `Bearer <token>`".into()))?;
            let verifier = self.jwt.as_ref().ok_or_else(|| {
                AuthError::InvalidToken("bearer tokens are not accepted here".into())
            })?;
            return verifier.verify(token.trim()).await;
        }
        if let Some(value) = headers.get("x-api-key") {
            let key = value
                .to_str()
                .map_err(|_| AuthError::InvalidApiKey("not text".into()))?;
            let keys = self
                .keys
                .as_ref()
                .ok_or_else(|| AuthError::InvalidApiKey("API keys are not accepted here".into()))?;
            return keys.verify(key.trim()).await;
        }
        Err(AuthError::Missing)
    }
}
