//! Who is calling, and may they: authentication (JWT bearer tokens, API keys) and the
//! per-RPC scope check.
//!
//! - [`jwt`]: bearer tokens verified with an explicit algorithm allow-list (RFC 8725).
//! - [`cache`]: verified credentials, so a caller's token is verified once, not per call.
//! - [`api_keys`]: random service-account keys, stored as hashes, with scopes, expiry and
//!   revocation.
//! - [`limits`]: per-caller rate limits and load shedding.
//! - [`scopes`]: the table mapping every RPC to the scope it needs (deny by default).
//! - [`layer`]: the middleware ([`crate::grpc::middleware`]) that enforces both on every gRPC
//!   call before any business work. REST and gRPC-web reach the same gRPC services, so one layer covers all three
//!   transports.

pub mod api_keys;
pub mod cache;
pub mod jwt;
pub mod layer;
pub mod limits;
pub mod scopes;

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use chrono::{DateTime, Utc};
use http::HeaderMap;
use tokio_util::sync::CancellationToken;

use self::cache::CredentialCache;
use crate::db::{Pool, api_keys::CHANGED_CHANNEL, events::Listener};

/// Verified credentials remembered at most (tokens and API keys together).
pub const CACHE_CAPACITY: usize = 10_000;
/// Default of `API_KEY_CACHE_TTL`: the longest a revoked API key keeps working.
pub const DEFAULT_API_KEY_CACHE_TTL: Duration = Duration::from_secs(5);

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Recorded as the actor of writes: the token's `sub` (escaped out of the API keys'
    /// namespace, see [`jwt::token_subject`]), or `api-key:{id}`.
    /// Shared, so the per-call checks (caller limits, the request context) key and keep it
    /// without a copy.
    pub subject: Arc<str>,
    /// Granted scopes.
    pub scopes: Vec<String>,
}

impl Principal {
    /// Whether the caller holds `scope`.
    pub fn has(&self, scope: &str) -> bool {
        self.scopes
            .iter()
            .any(|granted| scopes::grants(granted, scope))
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
///
/// Verified credentials are cached (see [`cache`]), which takes signature checking and
/// claim parsing (tokens) and a database round trip (API keys) off all but the first call of
/// a caller:
///
/// - a bearer token is trusted until its `exp`, exactly as long as it would verify (tokens
///   cannot be revoked; a JWKS key removed meanwhile stops being trusted for new tokens only);
/// - an API key is trusted for `API_KEY_CACHE_TTL` (5 s) at most, and never past its expiry:
///   a key revoked or rotated — through `ApiKeyService` on any instance, or with
///   `customer-api api-key revoke` — is forgotten as soon as the database announces it
///   ([`Authenticator::follow_changes`]; at once on the instance that did it), the TTL
///   bounding only what a lost announcement could leave. 0 asks the database on every call.
#[derive(Clone)]
pub struct Authenticator {
    jwt: Option<Arc<jwt::JwtVerifier>>,
    keys: Option<api_keys::ApiKeys>,
    disabled: bool,
    verified: Arc<CredentialCache>,
    api_key_ttl: Duration,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("jwt", &self.jwt.is_some())
            .field("api_keys", &self.keys.is_some())
            .field("disabled", &self.disabled)
            .field("cached", &self.verified.len())
            .field("api_key_ttl", &self.api_key_ttl)
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
            verified: Arc::new(CredentialCache::new(CACHE_CAPACITY)),
            api_key_ttl: DEFAULT_API_KEY_CACHE_TTL,
        }
    }

    /// Trusts a verified API key for `ttl` at most (0: ask the database on every call).
    pub fn with_api_key_cache_ttl(mut self, ttl: Duration) -> Self {
        self.api_key_ttl = ttl;
        self
    }

    /// Lets every call through as an all-scopes `anonymous` caller (`--auth-disabled`).
    pub fn disabled() -> Self {
        Self {
            jwt: None,
            keys: None,
            disabled: true,
            verified: Arc::new(CredentialCache::new(0)),
            api_key_ttl: Duration::ZERO,
        }
    }

    /// Stops trusting what was verified as `subject` (an API key revoked or rotated): its
    /// next call is checked against the database.
    pub fn forget(&self, subject: &str) {
        self.verified.forget(subject);
    }

    /// Follows the keys revoked or rotated anywhere — through any instance, or by the
    /// `api-key revoke` command — as the database announces them (`LISTEN`), forgetting what
    /// this instance verified of each, until `stop` is cancelled; reconnects with backoff.
    /// Each (re)subscription first forgets every cached API key: announcements made while
    /// it was not listening are lost.
    pub async fn follow_changes(self, stop: CancellationToken) {
        let Some(keys) = self.keys.clone() else {
            return stop.cancelled().await;
        };
        let mut failures = 0_u32;
        loop {
            match stop.run_until_cancelled(self.follow(keys.pool())).await {
                None => return,
                Some(Ok(())) => failures = 0,
                Some(Err(error)) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, failures, "API key change notifications lost; reconnecting");
                }
            }
            let pause = crate::service::events::backoff(failures);
            if stop
                .run_until_cancelled(tokio::time::sleep(pause))
                .await
                .is_none()
            {
                return;
            }
        }
    }

    async fn follow(&self, pool: &Pool) -> Result<(), String> {
        use futures_util::StreamExt;
        let mut listener = Listener::subscribe(pool, CHANGED_CHANNEL)
            .await
            .map_err(|e| e.to_string())?;
        self.verified
            .forget_where(|subject| subject.starts_with(api_keys::SUBJECT_PREFIX));
        let mut payloads = std::pin::pin!(listener.payloads());
        while let Some(payload) = payloads.next().await {
            let payload = payload.map_err(|e| e.to_string())?;
            if let Ok(id) = uuid::Uuid::parse_str(&payload) {
                self.forget(&api_keys::subject(id));
            }
        }
        Ok(())
    }

    /// The caller of a request with these headers.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Principal>, AuthError> {
        if self.disabled {
            return Ok(Arc::new(Principal {
                subject: "anonymous".into(),
                scopes: scopes::ALL.map(String::from).to_vec(),
            }));
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
            let token = token.trim();
            // A token over the size limit is refused by the verifier before any work; not
            // worth hashing either.
            return self
                .verify_cached(
                    "jwt",
                    token,
                    token.len() <= jwt::MAX_TOKEN_BYTES,
                    || verifier.verify_with_expiry(token),
                    |_, exp| exp.map(cache::unix_time),
                )
                .await;
        }
        // A constant name: looking a header up by a `&str` parses and hashes the name first.
        const X_API_KEY: http::HeaderName = http::HeaderName::from_static("x-api-key");
        if let Some(value) = headers.get(X_API_KEY) {
            let key = value
                .to_str()
                .map_err(|_| AuthError::InvalidApiKey("not text".into()))?;
            let keys = self
                .keys
                .as_ref()
                .ok_or_else(|| AuthError::InvalidApiKey("API keys are not accepted here".into()))?;
            let key = key.trim();
            return self
                .verify_cached(
                    "api-key",
                    key,
                    !self.api_key_ttl.is_zero(),
                    || keys.verify_with_expiry(key),
                    |now, expiry| Some(api_key_valid_until(now, self.api_key_ttl, expiry)),
                )
                .await;
        }
        Err(AuthError::Missing)
    }

    /// The caller of `credential` (of `kind`): from the cache while its entry is valid, else
    /// by `verify`, remembered until the instant `valid_until` makes of the verification time
    /// and the credential's expiry. Without `cacheable`, `verify` alone decides.
    ///
    /// `verify` makes the verification future only on a miss, and that future is boxed: kept
    /// inline, its state (a database lookup for API keys) would be part of every call's auth
    /// future and copied on each one, hits included (~15k instructions per call measured).
    async fn verify_cached<T, F>(
        &self,
        kind: &str,
        credential: &str,
        cacheable: bool,
        verify: impl FnOnce() -> F,
        valid_until: impl FnOnce(SystemTime, T) -> Option<SystemTime>,
    ) -> Result<Arc<Principal>, AuthError>
    where
        F: Future<Output = Result<(Principal, T), AuthError>>,
    {
        if !cacheable {
            return Box::pin(verify())
                .await
                .map(|(principal, _)| Arc::new(principal));
        }
        let now = SystemTime::now();
        let key = CredentialCache::key(kind, credential);
        if let Some(principal) = self.verified.get(&key, now) {
            return Ok(principal);
        }
        let (principal, expiry) = Box::pin(verify()).await?;
        let principal = Arc::new(principal);
        if let Some(valid_until) = valid_until(now, expiry) {
            self.verified
                .insert(key, principal.clone(), valid_until, now);
        }
        Ok(principal)
    }
}

/// Until when a verified API key may be trusted: `ttl` from `now`, but never past its expiry.
fn api_key_valid_until(
    now: SystemTime,
    ttl: Duration,
    expiry: Option<DateTime<Utc>>,
) -> SystemTime {
    let by_ttl = now + ttl;
    match expiry {
        Some(expiry) => by_ttl.min(SystemTime::from(expiry)),
        None => by_ttl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_key_is_trusted_for_the_ttl_but_never_past_its_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ttl = Duration::from_secs(5);
        assert_eq!(api_key_valid_until(now, ttl, None), now + ttl);
        let soon = DateTime::<Utc>::from(now + Duration::from_secs(2));
        assert_eq!(
            api_key_valid_until(now, ttl, Some(soon)),
            now + Duration::from_secs(2)
        );
        let later = DateTime::<Utc>::from(now + Duration::from_secs(3600));
        assert_eq!(api_key_valid_until(now, ttl, Some(later)), now + ttl);
    }
}
