//! API keys for service accounts.
//!
//! A key is `cak_<id>_<secret>`: the id (a UUID, hex) finds the row, the secret (256 random
//! bits, base64url) proves possession. Only SHA-256 of the secret is stored — a fast hash is
//! right for high-entropy secrets, which cannot be brute-forced from the hash — and it is
//! compared in constant time. The full key is shown once, at creation (and at each rotation,
//! which replaces the secret; the old one may stay accepted for a grace period).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{AuthError, Principal, scopes};
pub use crate::db::api_keys::KeyInfo;
use crate::db::{Pool, api_keys as queries};

/// The prefix of every key (recognisable in secret scanners and logs).
pub const PREFIX: &str = "cak_";
/// The caller name of a key is this prefix and its id; token subjects never take this form
/// (see [`super::jwt::token_subject`]).
pub const SUBJECT_PREFIX: &str = "api-key:";

/// Errors of key management.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A scope that does not exist.
    #[error(
        "unknown scope `{0}` (known: customers.read, customers.write, customers.admin, customers.export, customers.privacy)"
    )]
    UnknownScope(String),
    /// No scopes given.
    #[error("a key needs at least one scope")]
    NoScopes,
    /// Database (or randomness) failure.
    #[error("database: {0}")]
    Database(String),
}

/// Verifies keys against the database.
#[derive(Clone)]
pub struct ApiKeys {
    pool: Pool,
}

impl ApiKeys {
    /// Keys stored in `pool`'s database.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// The database the keys are in.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The caller a key belongs to, if it is valid, unrevoked and unexpired, and until when it
    /// is (its expiry, or the end of the grace period of a secret replaced by a rotation).
    pub async fn verify_with_expiry(
        &self,
        key: &str,
    ) -> Result<(Principal, Option<DateTime<Utc>>), AuthError> {
        let invalid = |reason: &str| AuthError::InvalidApiKey(reason.to_owned());
        let (id, secret) = parse(key).ok_or_else(|| invalid("malformed key"))?;
        let row = self
            .pool
            .run(async |conn| Ok::<_, DbFailure>(queries::find(conn, id).await?))
            .await
            .map_err(|e| AuthError::Unavailable(e.0))?;
        let stored = row.ok_or_else(|| invalid("unknown key"))?;
        let now = Utc::now();
        let presented = hash(secret);
        let current = constant_time_eq(&stored.secret_hash, &presented);
        // The secret a rotation replaced, during its grace period.
        let grace = stored
            .info
            .previous_secret_expire_time
            .filter(|until| *until > now)
            .filter(|_| {
                !current
                    && stored
                        .previous_secret_hash
                        .as_ref()
                        .is_some_and(|previous| constant_time_eq(previous, &presented))
            });
        if !current && grace.is_none() {
            return Err(invalid("unknown key"));
        }
        let info = stored.info;
        if info.revoke_time.is_some() {
            return Err(invalid("the key was revoked"));
        }
        if info.expire_time.is_some_and(|expiry| expiry <= now) {
            return Err(invalid("the key has expired"));
        }
        let valid_until = match (info.expire_time, grace) {
            (Some(expiry), Some(grace)) => Some(expiry.min(grace)),
            (expiry, grace) => expiry.or(grace),
        };
        Ok((
            Principal {
                subject: subject(info.id).into(),
                scopes: info.scopes,
            },
            valid_until,
        ))
    }
}

/// The caller name of key `id`.
pub fn subject(id: Uuid) -> String {
    format!("{SUBJECT_PREFIX}{id}")
}

/// The first of `granted` that is not a scope, if any.
pub fn unknown_scope(granted: &[String]) -> Option<&String> {
    granted.iter().find(|s| !scopes::ALL.contains(&s.as_str()))
}

/// A new secret for key `id`: the full key, shown once, and the hash stored.
pub fn generate(id: Uuid) -> Result<(String, Vec<u8>), getrandom::Error> {
    let mut secret_bytes = [0_u8; 32];
    getrandom::fill(&mut secret_bytes)?;
    let secret = URL_SAFE_NO_PAD.encode(secret_bytes);
    let secret_hash = hash(&secret);
    Ok((format!("{PREFIX}{}_{secret}", id.simple()), secret_hash))
}

/// Creates a key as the `cli` caller (the `api-key create` command, which bootstraps the first
/// admin key); returns its record and the full key (shown once).
pub async fn create(
    pool: &Pool,
    name: &str,
    granted: &[String],
    expire_time: Option<DateTime<Utc>>,
) -> Result<(KeyInfo, String), KeyError> {
    if granted.is_empty() {
        return Err(KeyError::NoScopes);
    }
    if let Some(unknown) = unknown_scope(granted) {
        return Err(KeyError::UnknownScope(unknown.clone()));
    }
    let id = Uuid::new_v4();
    let (key, secret_hash) =
        generate(id).map_err(|e| KeyError::Database(format!("randomness: {e}")))?;
    let info = pool
        .run(async |conn| {
            let key = queries::NewKey {
                id,
                name,
                secret_hash: &secret_hash,
                scopes: granted,
                expire_time,
            };
            Ok::<_, DbFailure>(queries::create(conn, key, CLI).await?)
        })
        .await
        .map_err(|e| KeyError::Database(e.0))?;
    Ok((info, key))
}

/// Every key, newest first.
pub async fn list(pool: &Pool) -> Result<Vec<KeyInfo>, KeyError> {
    pool.run(async |conn| Ok::<_, DbFailure>(queries::list(conn, true, (None, i64::MAX)).await?))
        .await
        .map_err(|e| KeyError::Database(e.0))
}

/// Revokes a key as the `cli` caller; false when no unrevoked key has this id.
pub async fn revoke(pool: &Pool, id: Uuid) -> Result<bool, KeyError> {
    pool.run(async |conn| Ok::<_, DbFailure>(queries::revoke(conn, id, Utc::now(), CLI).await?))
        .await
        .map(|revoked| revoked.is_some())
        .map_err(|e| KeyError::Database(e.0))
}

/// The caller the command line's changes are recorded as.
const CLI: queries::Audit<'static> = queries::Audit {
    actor: "cli",
    request_id: None,
};

/// A failed checkout or statement, as text: these failures are reported, not classified.
struct DbFailure(String);

impl From<crate::db::PoolError> for DbFailure {
    fn from(error: crate::db::PoolError) -> Self {
        Self(error.to_string())
    }
}

impl From<crate::db::QueryError> for DbFailure {
    fn from(error: crate::db::QueryError) -> Self {
        Self(error.to_string())
    }
}

fn parse(key: &str) -> Option<(Uuid, &str)> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    if id.len() != 32 || secret.len() != 43 {
        return None;
    }
    Some((Uuid::try_parse(id).ok()?, secret))
}

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_into_id_and_secret() {
        let id = Uuid::new_v4();
        let secret = URL_SAFE_NO_PAD.encode([7_u8; 32]);
        let key = format!("{PREFIX}{}_{secret}", id.simple());
        assert_eq!(parse(&key), Some((id, secret.as_str())));
        for bad in [
            "",
            "cak_",
            "cak_x_y",
            &key[..key.len() - 1],
            &format!("xx{}", &key[2..]),
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn hashes_compare_in_constant_time() {
        assert!(constant_time_eq(&hash("a"), &hash("a")));
        assert!(!constant_time_eq(&hash("a"), &hash("b")));
        assert!(!constant_time_eq(&[1], &[1, 2]));
    }
}
