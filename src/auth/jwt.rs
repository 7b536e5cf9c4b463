//! Bearer tokens (JWT) verified per RFC 8725.
//!
//! - An explicit allow-list: HS256 with the configured shared secret; RS256, ES256 and EdDSA
//!   with public keys from a JWKS file, chosen by `kid`. `none` and every other algorithm are
//!   refused, and the key's type must match the algorithm (jsonwebtoken checks the family).
//! - Keys come only from configuration: `jku`, `x5u` and embedded keys in the header are
//!   ignored, never fetched.
//! - `exp` is required, `nbf` honoured, `iss`/`aud` required and checked when configured
//!   (RFC 8725 §3.9: a token without the claim is not meant for us), with a small leeway.
//!   jsonwebtoken >= 10.3 rejects `exp`/`nbf` given as strings.
//! - A token may live at most `JWT_MAX_LIFETIME` (`exp - iat`, and `exp - now`), so a leaked
//!   token with `exp` in year 9999 is not a credential for ever.
//! - A `crit` header names extensions the verifier must understand; this one understands
//!   none, so any `crit` is refused (RFC 7515 §4.1.11).
//! - Token subjects live in their own namespace: a `sub` that looks like an API key's
//!   caller name (`api-key:…`) is not that key ([`token_subject`]).
//! - An unknown `kid` re-reads the JWKS file, at most once a minute.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind, jwk::JwkSet,
};
use serde::{Deserialize, Serialize};

use super::{AuthError, Principal};

/// Longest accepted token; anything larger is refused before parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Shortest accepted HS256 secret (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;
/// Verification keys by `kid`, with the algorithm each key declares (if any). Keys are
/// shared, so a verification does not copy key material.
type KeySet = HashMap<String, (Arc<DecodingKey>, Option<Algorithm>)>;

/// Minimum time between JWKS reloads triggered by unknown key ids.
const JWKS_REFRESH: Duration = Duration::from_secs(60);

/// How tokens are checked.
#[derive(Clone, Default)]
pub struct JwtSettings {
    /// Shared secret for HS256.
    pub hs256_secret: Option<String>,
    /// JWKS file with public keys (RS256, ES256, EdDSA).
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL (http or https) with public keys.
    pub jwks_url: Option<String>,
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Required `aud`.
    pub audience: Option<String>,
    /// Clock skew tolerated for `exp` and `nbf`.
    pub leeway: Duration,
    /// Longest lifetime (`exp - iat`, `exp - now`) accepted; zero accepts any.
    pub max_lifetime: Duration,
}

/// Why token verification could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum JwtSetupError {
    /// The HS256 secret is too short.
    #[error("the HS256 secret must be at least {MIN_SECRET_BYTES} bytes")]
    WeakSecret,
    /// The JWKS file is unreadable or invalid.
    #[error("JWKS {path}: {problem}")]
    Jwks {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
}

#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    /// Checked by jsonwebtoken (required); kept to know until when a verified token may be
    /// trusted without verifying it again.
    #[serde(default)]
    exp: Option<u64>,
    /// Issued-at, for the lifetime check; jsonwebtoken does not check it.
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
}

/// Verifies bearer tokens.
pub struct JwtVerifier {
    hs256: Option<Arc<DecodingKey>>,
    jwks: Option<Jwks>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
    max_lifetime: u64,
}

struct Jwks {
    source: JwksSource,
    state: RwLock<JwksState>,
}

/// Where the public keys come from.
#[derive(Debug, Clone)]
enum JwksSource {
    File(PathBuf),
    Url(http::Uri, crate::http_client::HttpClient),
}

impl JwksSource {
    async fn load(&self) -> Result<KeySet, JwtSetupError> {
        let (name, text) = match self {
            Self::File(path) => (
                path.display().to_string(),
                std::fs::read_to_string(path).map_err(|e| e.to_string()),
            ),
            Self::Url(uri, client) => (uri.to_string(), fetch(client, uri).await),
        };
        let text = text.map_err(|problem| JwtSetupError::Jwks {
            path: name.clone(),
            problem,
        })?;
        parse_jwks(&text).map_err(|problem| JwtSetupError::Jwks {
            path: name,
            problem,
        })
    }
}

struct JwksState {
    keys: KeySet,
    loaded: Instant,
}

impl JwtVerifier {
    /// A verifier for `settings`; `None` when neither a secret nor a JWKS is configured. A
    /// JWKS URL is fetched now (trusting the public roots), so a misconfiguration stops
    /// start-up.
    pub async fn new(settings: &JwtSettings) -> Result<Option<Self>, JwtSetupError> {
        Self::with_http(settings, None).await
    }

    /// [`JwtVerifier::new`], fetching a JWKS URL with `http` (e.g. one that trusts
    /// `EXTRA_CA_FILE`) when given.
    pub async fn with_http(
        settings: &JwtSettings,
        http: Option<crate::http_client::HttpClient>,
    ) -> Result<Option<Self>, JwtSetupError> {
        if settings.hs256_secret.is_none()
            && settings.jwks_file.is_none()
            && settings.jwks_url.is_none()
        {
            return Ok(None);
        }
        let hs256 = match &settings.hs256_secret {
            Some(secret) if secret.len() < MIN_SECRET_BYTES => {
                return Err(JwtSetupError::WeakSecret);
            }
            Some(secret) => Some(Arc::new(DecodingKey::from_secret(secret.as_bytes()))),
            None => None,
        };
        let source = match (&settings.jwks_file, &settings.jwks_url) {
            (Some(path), _) => Some(JwksSource::File(path.clone())),
            (None, Some(url)) => {
                let uri: http::Uri = url.parse().map_err(|e| JwtSetupError::Jwks {
                    path: url.clone(),
                    problem: format!("not a URL: {e}"),
                })?;
                let client = match http {
                    Some(client) => client,
                    None => {
                        crate::http_client::HttpClient::new().map_err(|e| JwtSetupError::Jwks {
                            path: url.clone(),
                            problem: e.to_string(),
                        })?
                    }
                };
                Some(JwksSource::Url(uri, client))
            }
            (None, None) => None,
        };
        let jwks = match source {
            Some(source) => Some(Jwks {
                state: RwLock::new(JwksState {
                    keys: source.load().await?,
                    loaded: Instant::now(),
                }),
                source,
            }),
            None => None,
        };
        Ok(Some(Self {
            hs256,
            jwks,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway: settings.leeway.as_secs(),
            max_lifetime: settings.max_lifetime.as_secs(),
        }))
    }

    /// The caller a token names, if it verifies, and its `exp` (seconds since the epoch).
    pub async fn verify_with_expiry(
        &self,
        token: &str,
    ) -> Result<(Principal, Option<u64>), AuthError> {
        let invalid = |reason: &str| AuthError::InvalidToken(reason.to_owned());
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid("the token is too large"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            invalid(
                "malformed token or unsupported algorithm (accepted: HS256, RS256, ES256, EdDSA)",
            )
        })?;
        if header.crit.is_some() {
            return Err(invalid(
                "the token names critical header extensions (crit) this service does not understand",
            ));
        }
        let key = match header.alg {
            Algorithm::HS256 => self
                .hs256
                .clone()
                .ok_or_else(|| invalid("HS256 tokens are not accepted"))?,
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA => {
                let jwks = self
                    .jwks
                    .as_ref()
                    .ok_or_else(|| invalid("no public keys are configured for this algorithm"))?;
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or_else(|| invalid("the token has no `kid`"))?;
                jwks.key(kid, header.alg).await?
            }
            _ => return Err(invalid("the token's algorithm is not accepted")),
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if self.issuer.is_some() {
            required.push("iss");
        }
        if self.audience.is_some() {
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| {
            invalid(match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
                ErrorKind::InvalidIssuer => "wrong issuer (iss)",
                ErrorKind::InvalidAudience => "wrong audience (aud)",
                ErrorKind::InvalidSignature => "bad signature",
                ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
                    "iss" => "a required claim is missing (iss)",
                    "aud" => "a required claim is missing (aud)",
                    _ => "a required claim is missing (exp)",
                },
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {
                    "the key does not match the token's algorithm"
                }
                _ => "malformed token",
            })
        })?;
        if self.max_lifetime > 0 {
            check_lifetime(&data.claims, now_secs(), self.max_lifetime, self.leeway)
                .map_err(invalid)?;
        }
        let subject = data
            .claims
            .sub
            .filter(|s| !s.is_empty())
            .map(token_subject)
            .ok_or_else(|| invalid("the token has no subject (sub)"))?;
        let scopes = data
            .claims
            .scope
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        Ok((
            Principal {
                subject: subject.into(),
                scopes,
            },
            data.claims.exp,
        ))
    }
}

/// Seconds since the Unix epoch.
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Refuses a token that lives longer than `max` seconds: from its `iat` to its `exp`, or
/// (whatever `iat` claims) from now to its `exp`.
fn check_lifetime(claims: &Claims, now: u64, max: u64, leeway: u64) -> Result<(), &'static str> {
    let Some(exp) = claims.exp else {
        return Ok(());
    };
    let from_issue = claims.iat.map_or(0, |iat| exp.saturating_sub(iat));
    let from_now = exp.saturating_sub(now);
    if from_issue > max.saturating_add(leeway) || from_now > max.saturating_add(leeway) {
        return Err("the token lives longer than this service accepts (JWT_MAX_LIFETIME)");
    }
    Ok(())
}

/// The caller name of a token's `sub`: the subject itself, except that subjects in the
/// namespace of API keys (`api-key:…`) or of escaped subjects (`jwt:…`) are prefixed with
/// `jwt:`. The mapping is one-to-one and never yields an API key's `api-key:{id}`, so a
/// token cannot share a key's rate limit, stored replays or audit identity.
pub fn token_subject(sub: String) -> String {
    if sub.starts_with(super::api_keys::SUBJECT_PREFIX) || sub.starts_with(TOKEN_ESCAPE) {
        format!("{TOKEN_ESCAPE}{sub}")
    } else {
        sub
    }
}

/// Prefix of token subjects escaped out of the API keys' namespace.
const TOKEN_ESCAPE: &str = "jwt:";

impl Jwks {
    async fn key(&self, kid: &str, alg: Algorithm) -> Result<Arc<DecodingKey>, AuthError> {
        let lookup = || {
            self.state
                .read()
                .ok()
                .and_then(|state| state.keys.get(kid).cloned())
        };
        let found = match lookup() {
            Some(found) => Some(found),
            None => {
                self.refresh().await;
                lookup()
            }
        };
        let (key, key_alg) =
            found.ok_or_else(|| AuthError::InvalidToken("unknown signing key (kid)".into()))?;
        if key_alg.is_some_and(|key_alg| key_alg != alg) {
            return Err(AuthError::InvalidToken(
                "the key does not match the token's algorithm".into(),
            ));
        }
        Ok(key)
    }

    /// Reloads the keys unless they were loaded within the last minute, so a flood of tokens
    /// with made-up key ids cannot turn into a flood of fetches.
    async fn refresh(&self) {
        {
            let Ok(mut state) = self.state.write() else {
                return;
            };
            if state.loaded.elapsed() < JWKS_REFRESH {
                return;
            }
            state.loaded = Instant::now();
        }
        match self.source.load().await {
            Ok(keys) => {
                if let Ok(mut state) = self.state.write() {
                    state.keys = keys;
                }
            }
            Err(error) => tracing::warn!(%error, "JWKS reload failed; keeping the previous keys"),
        }
    }
}

fn parse_jwks(text: &str) -> Result<KeySet, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            return Err("every key needs a `kid`".into());
        };
        let key = Arc::new(DecodingKey::from_jwk(jwk).map_err(|e| format!("key {kid}: {e}"))?);
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|alg| alg.to_string().parse::<Algorithm>().ok());
        keys.insert(kid, (key, alg));
    }
    Ok(keys)
}

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Bound on connecting to and reading from the JWKS endpoint.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// GETs a JWKS over HTTP/1.1 (TLS for https URLs, with the client's roots).
async fn fetch(client: &crate::http_client::HttpClient, uri: &http::Uri) -> Result<String, String> {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/json"),
    );
    let response = tokio::time::timeout(FETCH_TIMEOUT, client.get(uri, &headers, MAX_JWKS_BYTES))
        .await
        .map_err(|_| format!("no answer within {FETCH_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    if !response.status.is_success() {
        return Err(format!("HTTP {}", response.status));
    }
    String::from_utf8(response.body.to_vec()).map_err(|e| e.to_string())
}

#[derive(Debug, Serialize)]
struct MintClaims<'a> {
    sub: &'a str,
    scope: String,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// Mints an HS256 token (for development, tests and grpcurl sessions).
pub fn mint_hs256(
    settings: &JwtSettings,
    subject: &str,
    scopes: &[String],
    ttl: Duration,
) -> Result<String, String> {
    let secret = settings
        .hs256_secret
        .as_ref()
        .ok_or("no HS256 secret configured (JWT_HS256_SECRET)")?;
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "the HS256 secret must be at least {MIN_SECRET_BYTES} bytes"
        ));
    }
    let now = now_secs();
    let claims = MintClaims {
        sub: subject,
        scope: scopes.join(" "),
        iat: now,
        exp: now + ttl.as_secs(),
        iss: settings.issuer.as_deref(),
        aud: settings.audience.as_deref(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_subjects_never_enter_the_api_key_namespace() {
        assert_eq!(token_subject("alice".into()), "alice");
        assert_eq!(token_subject("api-key:42".into()), "jwt:api-key:42");
        assert_eq!(token_subject("jwt:api-key:42".into()), "jwt:jwt:api-key:42");
    }

    #[test]
    fn a_lifetime_beyond_the_maximum_is_refused_from_iat_or_from_now() {
        let claims = |iat, exp| Claims {
            sub: None,
            exp: Some(exp),
            iat,
            scope: None,
        };
        let day = 86_400;
        assert!(check_lifetime(&claims(Some(1000), 1000 + day), 1000, day, 0).is_ok());
        assert!(check_lifetime(&claims(Some(1000), 1001 + day), 1000, day, 0).is_err());
        assert!(check_lifetime(&claims(None, 1001 + day), 1000, day, 0).is_err());
        assert!(check_lifetime(&claims(Some(5000), 1001 + day), 1000, day, 0).is_err());
    }
}
