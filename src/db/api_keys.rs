//! The `api_keys` table (service-account keys, stored as a SHA-256 hash of their secret) and
//! its audit trail, `api_key_audit`.
//!
//! Only storage lives here; parsing, hashing, the constant-time comparison and the
//! revoked/expired rules are [`crate::auth::api_keys`]'s, the use cases
//! [`crate::service::api_keys`]'. Every change of a key and its audit row are written by one
//! function here, in one transaction (a savepoint inside a caller's), so no path can change a
//! key without recording who did.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{api_key_audit, api_keys};

/// Notification channel announcing keys revoked or rotated (payload: the key id), so every
/// instance stops trusting what it verified of them (`auth::Authenticator::follow_changes`).
pub const CHANGED_CHANNEL: &str = "customer_api_key_changes";

/// A stored key, without its secret or its hashes.
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
    /// Who created it (`None` for keys older than the audit).
    pub creator: Option<String>,
    /// Last rotation, if any.
    pub rotate_time: Option<DateTime<Utc>>,
    /// Until when the secret before the last rotation is accepted.
    pub previous_secret_expire_time: Option<DateTime<Utc>>,
}

/// What verifying a key needs: its record and the hashes of the secrets it accepts.
#[derive(Debug, Clone)]
pub struct StoredKey {
    /// The record.
    pub info: KeyInfo,
    /// SHA-256 of the current secret.
    pub secret_hash: Vec<u8>,
    /// SHA-256 of the secret before the last rotation (accepted until
    /// `info.previous_secret_expire_time`).
    pub previous_secret_hash: Option<Vec<u8>>,
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

/// Who changes a key, as its audit row records it.
#[derive(Debug, Clone, Copy)]
pub struct Audit<'a> {
    /// The caller (a token's `sub`, `api-key:{id}`, or `cli`).
    pub actor: &'a str,
    /// The call's request id, if it had one.
    pub request_id: Option<Uuid>,
}

/// What an audit row says was done (the `action` column's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The key was created.
    Created,
    /// The key got a new secret.
    Rotated,
    /// The key was revoked.
    Revoked,
}

impl Action {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Rotated => "ROTATED",
            Self::Revoked => "REVOKED",
        }
    }

    /// The action a stored spelling names (the column's CHECK allows no other).
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Created, Self::Rotated, Self::Revoked]
            .into_iter()
            .find(|action| action.as_str() == text)
    }
}

/// One audit row: key `api_key_id` had `action` ([`Action::as_str`]) done to it by `actor` at
/// `occur_time`, in a call with `request_id`.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = api_key_audit, check_for_backend(diesel::pg::Pg))]
pub struct AuditRow {
    pub(crate) api_key_id: Uuid,
    pub(crate) action: String,
    pub(crate) actor: String,
    pub(crate) request_id: Option<Uuid>,
    pub(crate) occur_time: DateTime<Utc>,
}

/// Key `id` with the hashes of the secrets it accepts, if there is one.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<StoredKey>> {
    let row = api_keys::table
        .find(id)
        .select((
            api_keys::secret_hash,
            api_keys::previous_secret_hash,
            KeyInfo::as_select(),
        ))
        .first::<(Vec<u8>, Option<Vec<u8>>, KeyInfo)>(conn)
        .await
        .optional()?;
    Ok(
        row.map(|(secret_hash, previous_secret_hash, info)| StoredKey {
            info,
            secret_hash,
            previous_secret_hash,
        }),
    )
}

/// The record of key `id`, locked against concurrent changes until the transaction ends when
/// `lock` is set.
pub async fn find_info(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    lock: bool,
) -> QueryResult<Option<KeyInfo>> {
    let query = api_keys::table.find(id).select(KeyInfo::as_select());
    if lock {
        query.for_update().first(conn).await.optional()
    } else {
        query.first(conn).await.optional()
    }
}

/// Stores a new key created by `audit.actor` and records its creation; returns its record.
pub async fn create(
    conn: &mut AsyncPgConnection,
    key: NewKey<'_>,
    audit: Audit<'_>,
) -> QueryResult<KeyInfo> {
    conn.transaction(async |conn| {
        let info = diesel::insert_into(api_keys::table)
            .values((
                api_keys::id.eq(key.id),
                api_keys::name.eq(key.name),
                api_keys::secret_hash.eq(key.secret_hash),
                api_keys::scopes.eq(key.scopes),
                api_keys::expire_time.eq(key.expire_time),
                api_keys::creator.eq(audit.actor),
            ))
            .returning(KeyInfo::as_returning())
            .get_result(conn)
            .await?;
        let time = info.create_time;
        record(conn, info.id, (Action::Created, audit, time)).await?;
        Ok(info)
    })
    .await
}

/// Revokes key `id` at `now` and records it; `None` when no unrevoked key has this id.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
    audit: Audit<'_>,
) -> QueryResult<Option<KeyInfo>> {
    conn.transaction(async |conn| {
        let revoked = diesel::update(
            api_keys::table
                .find(id)
                .filter(api_keys::revoke_time.is_null()),
        )
        .set((
            api_keys::revoke_time.eq(Some(now)),
            // A revoked key accepts no secret, the previous one included.
            api_keys::previous_secret_hash.eq(None::<Vec<u8>>),
            api_keys::previous_secret_expire_time.eq(None::<DateTime<Utc>>),
        ))
        .returning(KeyInfo::as_returning())
        .get_result(conn)
        .await
        .optional()?;
        audited(conn, revoked, (Action::Revoked, audit, now)).await
    })
    .await
}

/// Gives unrevoked key `id` the secret hashed as `secret_hash` at `now` and records it; the
/// old secret stays accepted until `grace_until` (not at all for `None`). `None` when no
/// unrevoked key has this id.
pub async fn rotate(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    secret_hash: &[u8],
    (now, grace_until): (DateTime<Utc>, Option<DateTime<Utc>>),
    audit: Audit<'_>,
) -> QueryResult<Option<KeyInfo>> {
    conn.transaction(async |conn| {
        let old_hash: Option<Vec<u8>> = api_keys::table
            .find(id)
            .filter(api_keys::revoke_time.is_null())
            .select(api_keys::secret_hash)
            .for_update()
            .first(conn)
            .await
            .optional()?;
        let Some(old_hash) = old_hash else {
            return Ok(None);
        };
        // The old secret becomes the previous one only while it is accepted; without a grace
        // period nothing but the new secret is.
        let rotated = diesel::update(api_keys::table.find(id))
            .set((
                api_keys::previous_secret_hash.eq(grace_until.map(|_| old_hash)),
                api_keys::previous_secret_expire_time.eq(grace_until),
                api_keys::secret_hash.eq(secret_hash),
                api_keys::rotate_time.eq(Some(now)),
            ))
            .returning(KeyInfo::as_returning())
            .get_result(conn)
            .await?;
        audited(conn, Some(rotated), (Action::Rotated, audit, now)).await
    })
    .await
}

/// Up to `limit` keys, newest first (ties by id), after `after` (the `(create_time, id)` of
/// the last key of the previous page); revoked ones only with `show_revoked`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    show_revoked: bool,
    (after, limit): (Option<(DateTime<Utc>, Uuid)>, i64),
) -> QueryResult<Vec<KeyInfo>> {
    let newest_first = (api_keys::create_time.desc(), api_keys::id.desc());
    let mut query = api_keys::table
        .order(newest_first)
        .limit(limit)
        .into_boxed();
    if !show_revoked {
        query = query.filter(api_keys::revoke_time.is_null());
    }
    if let Some(after) = after {
        query = query.filter(super::keyset::created_before("api_keys", after));
    }
    query.select(KeyInfo::as_select()).load(conn).await
}

/// The audit rows of the keys `ids`, oldest first.
pub async fn audit_of(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<AuditRow>> {
    api_key_audit::table
        .filter(api_key_audit::api_key_id.eq_any(ids))
        .select(AuditRow::as_select())
        .order(api_key_audit::id)
        .load(conn)
        .await
}

/// `changed` (the key an update changed, if it found one), its change recorded as `what`
/// and announced on [`CHANGED_CHANNEL`] (at commit).
async fn audited(
    conn: &mut AsyncPgConnection,
    changed: Option<KeyInfo>,
    what: (Action, Audit<'_>, DateTime<Utc>),
) -> QueryResult<Option<KeyInfo>> {
    if let Some(info) = &changed {
        record(conn, info.id, what).await?;
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<diesel::sql_types::Text, _>(CHANGED_CHANNEL)
            .bind::<diesel::sql_types::Text, _>(info.id.to_string())
            .execute(conn)
            .await?;
    }
    Ok(changed)
}

/// Records `action` on key `id` by `audit`'s caller at `time`.
async fn record(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    (action, audit, time): (Action, Audit<'_>, DateTime<Utc>),
) -> QueryResult<()> {
    diesel::insert_into(api_key_audit::table)
        .values((
            api_key_audit::api_key_id.eq(id),
            api_key_audit::action.eq(action.as_str()),
            api_key_audit::actor.eq(audit.actor),
            api_key_audit::request_id.eq(audit.request_id),
            api_key_audit::occur_time.eq(time),
        ))
        .execute(conn)
        .await
        .map(drop)
}
