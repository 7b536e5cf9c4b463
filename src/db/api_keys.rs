//! The `api_keys` table: service-account keys, stored as a SHA-256 hash of their secret.
//!
//! Only storage lives here; parsing, hashing, the constant-time comparison and the
//! revoked/expired rules are [`crate::auth::api_keys`]'s.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::api_keys;

/// A stored key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg))]
pub struct KeyInfo {
    /// Key id.
    pub id: Uuid,
    /// Human label.
    pub name: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Expiry, if any.
    pub expire_time: Option<DateTime<Utc>>,
    /// Revocation time, if revoked.
    pub revoke_time: Option<DateTime<Utc>>,
}

/// A new key as stored.
#[derive(Debug, Clone, Copy)]
pub struct NewKey<'a> {
    /// Key id.
    pub id: Uuid,
    /// Human label.
    pub name: &'a str,
    /// SHA-256 of the secret.
    pub secret_hash: &'a [u8],
    /// Granted scopes.
    pub scopes: &'a [String],
    /// Expiry, if any.
    pub expire_time: Option<DateTime<Utc>>,
}

/// The stored secret hash and record of key `id`, if there is one.
pub async fn find(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<(Vec<u8>, KeyInfo)>> {
    api_keys::table
        .find(id)
        .select((api_keys::secret_hash, KeyInfo::as_select()))
        .first(conn)
        .await
        .optional()
}

/// Stores a new key and returns its record.
pub async fn insert(conn: &mut AsyncPgConnection, key: NewKey<'_>) -> QueryResult<KeyInfo> {
    diesel::insert_into(api_keys::table)
        .values((
            api_keys::id.eq(key.id),
            api_keys::name.eq(key.name),
            api_keys::secret_hash.eq(key.secret_hash),
            api_keys::scopes.eq(key.scopes),
            api_keys::expire_time.eq(key.expire_time),
        ))
        .returning(KeyInfo::as_returning())
        .get_result(conn)
        .await
}

/// Every key, newest first.
pub async fn list(conn: &mut AsyncPgConnection) -> QueryResult<Vec<KeyInfo>> {
    api_keys::table
        .select(KeyInfo::as_select())
        .order(api_keys::create_time.desc())
        .load(conn)
        .await
}

/// Revokes key `id` at `now`; false when no unrevoked key has this id.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    diesel::update(
        api_keys::table
            .find(id)
            .filter(api_keys::revoke_time.is_null()),
    )
    .set(api_keys::revoke_time.eq(Some(now)))
    .execute(conn)
    .await
    .map(|n| n == 1)
}
