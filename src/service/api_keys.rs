//! API key management (`ApiKeyService`): create, read, list, revoke and rotate service-account
//! keys, each change recorded with its caller in the key's audit trail.
//!
//! - **Secrets** are generated here ([`crate::auth::api_keys::generate`]), hashed before they
//!   are stored, and answered once: in the response of the create or rotation that made them.
//!   A retry of that call with the same request id (AIP-155) gets the key *without* its
//!   secret — the stored response never holds one (see [`Answer`]) — so a client that lost
//!   the first response rotates the key to get a new secret.
//! - **Writes** go through the core's idempotent write path ([`Writer::idempotent`]): the
//!   request-id claim, the change, its audit row and the stored response commit together.
//! - **Revocation** is a state, not a deletion: a revoked key stays readable with its audit
//!   trail. Revoking it again changes nothing. Rotating a revoked or expired key is refused.
//!
//! The key's contract message doubles as its domain record here: a key has no rules beyond
//! the validation below, so a separate domain type would only be copied field by field.

use std::time::Duration;

use chrono::Utc;
use prost::Message;
use uuid::Uuid;

use super::{CustomerService, Error, Result, Unreachable, error::reason};
use crate::{
    auth::api_keys as keys,
    convert::{api_keys::api_key_to_proto, timestamp},
    core::{
        fingerprint::{Fingerprint, Parts},
        list::{self, Paging},
        store::Transact,
        write::collect,
    },
    db::{
        api_keys::{self as queries, Audit, KeyInfo},
        customers::Cursor,
    },
    domain::{
        Violations,
        customer::bounded_text,
        names::{self, API_KEY_TYPE, ApiKeyName, ResourceName},
    },
    encoding::{DecodeError, replay::Replayable, unversioned, versioned},
    pb,
};

/// Longest `display_name`, in characters (trimmed; no control characters either).
pub const MAX_DISPLAY_NAME_CHARS: usize = 200;
/// Longest grace period of a rotation.
pub const MAX_ROTATION_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The key a write answers: the contract message, with the secret only in the first answer.
///
/// Stored for replay without the secret, so a retry (same request id) gets the key but never
/// the secret again, and no secret is ever at rest.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer(pub pb::ApiKey);

impl Replayable for Answer {
    fn encode_replay(&self) -> Vec<u8> {
        versioned(&pb::ApiKey {
            secret: String::new(),
            ..self.0.clone()
        })
    }

    fn decode_replay(bytes: &[u8]) -> std::result::Result<Self, DecodeError> {
        Ok(Self(pb::ApiKey::decode(unversioned(bytes)?)?))
    }

    fn decode_replay_v1(_: serde_json::Value) -> std::result::Result<Self, DecodeError> {
        // API keys came after version 2: no version 1 response of theirs exists.
        Err(DecodeError::UnknownVersion(1))
    }

    fn personal_data_of(&self) -> Option<Uuid> {
        // A key's answer names no customer.
        None
    }
}

/// What CreateApiKey asks for.
#[derive(Debug, Clone, Default)]
pub struct NewApiKey {
    /// `api_key.display_name`.
    pub display_name: String,
    /// `api_key.scopes`.
    pub scopes: Vec<String>,
    /// `api_key.expire_time`, if set.
    pub expire_time: Option<prost_types::Timestamp>,
}

impl CustomerService {
    /// Creates a key for `actor`; `None` is a missing `api_key`. The answer carries the
    /// secret, except to a retry of the same request id.
    pub async fn create_api_key(
        &self,
        input: Option<NewApiKey>,
        request_id: &str,
        actor: &str,
    ) -> Result<Answer> {
        let now = Utc::now();
        let mut violations = Violations::new();
        let request_id = collect(
            &mut violations,
            names::parse_request_id("request_id", request_id),
        );
        let present = input.is_some();
        let input = input.unwrap_or_default();
        let expire_time = match crate::convert::time("api_key.expire_time", input.expire_time) {
            Ok(Some(expiry)) if expiry <= now => {
                violations.add("api_key.expire_time", "must be in the future");
                None
            }
            Ok(expiry) => expiry,
            Err(_) => {
                violations.add("api_key.expire_time", "is not a valid timestamp");
                None
            }
        };
        let display_name = if present {
            let display_name = bounded_text(
                &mut violations,
                "api_key.display_name",
                &input.display_name,
                MAX_DISPLAY_NAME_CHARS,
                true,
            );
            check_scopes(&mut violations, &input.scopes);
            display_name
        } else {
            violations.add("api_key", "is required");
            String::new()
        };
        let Some(request_id) = violations.into_result(request_id)? else {
            return Err(Error::internal(&Unreachable(
                "validated create without request id",
            )));
        };
        let canonical = pb::ApiKey {
            display_name: display_name.clone(),
            scopes: input.scopes.clone(),
            expire_time: expire_time.map(timestamp),
            ..Default::default()
        };
        let fingerprint = fingerprint("CreateApiKey", actor, "", canonical.encode_to_vec());
        let id = Uuid::new_v4();
        let (secret, secret_hash) = keys::generate(id).map_err(|e| Error::internal(&e))?;
        let actor = actor.to_owned();
        let scopes = input.scopes;
        self.writer
            .idempotent(request_id, fingerprint, async move |conn| {
                let key = queries::NewKey {
                    id,
                    name: &display_name,
                    secret_hash: &secret_hash,
                    scopes: &scopes,
                    expire_time,
                };
                let audit = Audit {
                    actor: &actor,
                    request_id,
                };
                let info = queries::create(conn, key, audit).await?;
                let mut answer = answer(conn, info).await?;
                answer.0.secret = secret;
                Ok(answer)
            })
            .await
    }

    /// Key `name`, without its secret.
    pub async fn get_api_key(&self, name: &str) -> Result<pb::ApiKey> {
        let name = ApiKeyName::parse("name", name)?;
        self.writer
            .store
            .read(
                async move |conn| match queries::find_info(conn, name.id(), false).await? {
                    Some(info) => Ok(answer(conn, info).await?.0),
                    None => Err(not_found(name)),
                },
            )
            .await
    }

    /// One page of keys, newest first, without secrets; revoked ones with `show_revoked`.
    pub async fn list_api_keys(
        &self,
        page_size: i32,
        page_token: &str,
        show_revoked: bool,
    ) -> Result<super::Page<pb::ApiKey>> {
        let mut violations = Violations::new();
        let size = list::page_size(&mut violations, page_size);
        violations.into_result(())?;
        let revoked = if show_revoked { "revoked" } else { "live" };
        let query = super::PageTokens::query_fingerprint(&["apiKeys", revoked]);
        let paging: Paging<Cursor> = list::paging(&self.page_tokens, size, page_token, query)?;
        let after = list::time_and_id(paging.after.as_ref())?;
        let limit = paging.limit();
        let (rows, audit) = self
            .writer
            .store
            .read(async move |conn| {
                let rows = queries::list(conn, show_revoked, (after, limit)).await?;
                let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
                let audit = queries::audit_of(conn, &ids).await?;
                Ok((rows, audit))
            })
            .await?;
        let (rows, next_page_token) = list::page(
            rows,
            &paging,
            &self.page_tokens,
            |last| Cursor {
                values: vec![crate::db::customers::KeyValue::Time(last.create_time)],
                id: last.id,
            },
            // A key is a few hundred bytes; its label is the only part that varies.
            |info| 256 + info.name.len() + info.scopes.iter().map(String::len).sum::<usize>(),
        );
        let now = Utc::now();
        Ok(super::Page {
            items: rows
                .into_iter()
                .map(|info| api_key_to_proto(info, &audit, now))
                .collect(),
            next_page_token,
        })
    }

    /// Revokes key `name` for `actor`: from the answer on it authenticates nobody. A revoked
    /// key is answered as it is, with nothing recorded.
    pub async fn revoke_api_key(
        &self,
        name: &str,
        request_id: &str,
        actor: &str,
    ) -> Result<Answer> {
        let (name, request_id) = name_and_request_id(name, request_id)?;
        let fingerprint = fingerprint("RevokeApiKey", actor, &name.to_string(), Vec::new());
        let actor = actor.to_owned();
        self.writer
            .idempotent(request_id, fingerprint, async move |conn| {
                let Some(found) = queries::find_info(conn, name.id(), true).await? else {
                    return Err(not_found(name));
                };
                let audit = Audit {
                    actor: &actor,
                    request_id,
                };
                let info = match found.revoke_time {
                    Some(_) => found,
                    None => queries::revoke(conn, name.id(), Utc::now(), audit)
                        .await?
                        .ok_or_else(|| Error::internal(&Unreachable("a locked key vanished")))?,
                };
                answer(conn, info).await
            })
            .await
    }

    /// Gives key `name` a new secret for `actor`, answered once; the old one stays accepted
    /// for `grace_period` (not at all for `None` or zero).
    pub async fn rotate_api_key(
        &self,
        name: &str,
        grace_period: Option<prost_types::Duration>,
        request_id: &str,
        actor: &str,
    ) -> Result<Answer> {
        let mut violations = Violations::new();
        let parsed = collect(&mut violations, ApiKeyName::parse("name", name));
        let request_id = collect(
            &mut violations,
            names::parse_request_id("request_id", request_id),
        );
        let grace = grace_period.as_ref().and_then(|grace| {
            let valid = grace.seconds >= 0 && (0..1_000_000_000).contains(&grace.nanos);
            let duration = Duration::new(grace.seconds.max(0) as u64, grace.nanos.max(0) as u32);
            if !valid {
                violations.add("grace_period", "must be a non-negative duration");
                None
            } else if duration > MAX_ROTATION_GRACE {
                violations.add("grace_period", "must be at most 7 days (604800s)");
                None
            } else {
                Some(duration).filter(|grace| !grace.is_zero())
            }
        });
        let (Some(name), Some(request_id)) = violations.into_result((parsed, request_id))? else {
            return Err(Error::internal(&Unreachable(
                "validated rotation without parts",
            )));
        };
        let input = grace.map(|grace| prost_types::Duration {
            seconds: grace.as_secs() as i64,
            nanos: grace.subsec_nanos() as i32,
        });
        let fingerprint = fingerprint(
            "RotateApiKey",
            actor,
            &name.to_string(),
            input.map(|grace| grace.encode_to_vec()).unwrap_or_default(),
        );
        let (secret, secret_hash) = keys::generate(name.id()).map_err(|e| Error::internal(&e))?;
        let actor = actor.to_owned();
        self.writer
            .idempotent(request_id, fingerprint, async move |conn| {
                let Some(found) = queries::find_info(conn, name.id(), true).await? else {
                    return Err(not_found(name));
                };
                let now = Utc::now();
                let refused = if found.revoke_time.is_some() {
                    Some(("revoked", reason::API_KEY_REVOKED))
                } else if found.expire_time.is_some_and(|expiry| expiry <= now) {
                    Some(("expired", reason::API_KEY_EXPIRED))
                } else {
                    None
                };
                if let Some((state, reason)) = refused {
                    return Err(Error::FailedPrecondition {
                        message: format!("{name} is {state}: only an active key can be rotated"),
                        reason,
                        resource_type: API_KEY_TYPE,
                        resource_name: name.to_string(),
                    });
                }
                let grace_until = grace.and_then(|grace| {
                    chrono::Duration::from_std(grace)
                        .ok()
                        .map(|grace| now + grace)
                });
                let audit = Audit {
                    actor: &actor,
                    request_id,
                };
                let info =
                    queries::rotate(conn, name.id(), &secret_hash, (now, grace_until), audit)
                        .await?
                        .ok_or_else(|| Error::internal(&Unreachable("a locked key vanished")))?;
                let mut answer = answer(conn, info).await?;
                answer.0.secret = secret;
                Ok(answer)
            })
            .await
    }
}

/// The answer about key `info`: its message with its audit trail, as it stands now.
async fn answer(conn: &mut crate::db::Conn, info: KeyInfo) -> Result<Answer> {
    let audit = queries::audit_of(conn, &[info.id]).await?;
    Ok(Answer(api_key_to_proto(info, &audit, Utc::now())))
}

fn not_found(name: ApiKeyName) -> Error {
    Error::not_found(API_KEY_TYPE, name)
}

/// The fingerprint of an API key write (AIP-155): the RPC, the caller, the key's name and
/// the canonical bytes of what else the request says.
fn fingerprint(method: &str, actor: &str, name: &str, input: Vec<u8>) -> Fingerprint {
    let parts = Parts {
        method: method.to_owned(),
        actor: actor.to_owned(),
        name: name.to_owned(),
        input,
        ..Parts::default()
    };
    Fingerprint::new(&parts, &[actor, name])
}

/// A write's `name` and `request_id`, both checked.
fn name_and_request_id(name: &str, request_id: &str) -> Result<(ApiKeyName, Option<Uuid>)> {
    crate::core::write::name_and_request_id(name, request_id)
}

/// `scopes`: at least one, each a known scope ([`crate::auth::scopes::ALL`]), none twice.
fn check_scopes(violations: &mut Violations, scopes: &[String]) {
    let known = crate::auth::scopes::ALL.join(", ");
    if scopes.is_empty() {
        violations.add(
            "api_key.scopes",
            format!("is required: at least one of {known}"),
        );
    }
    for (i, scope) in scopes.iter().enumerate() {
        let field = format!("api_key.scopes[{i}]");
        if keys::unknown_scope(std::slice::from_ref(scope)).is_some() {
            let shown: String = scope.chars().take(64).collect();
            violations.add(field, format!("unknown scope `{shown}` (known: {known})"));
        } else if scopes[..i].contains(scope) {
            violations.add(field, format!("repeats `{scope}`"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violations_of(check: impl FnOnce(&mut Violations)) -> Vec<(String, String)> {
        let mut violations = Violations::new();
        check(&mut violations);
        violations
            .into_vec()
            .into_iter()
            .map(|v| (v.field, v.description))
            .collect()
    }

    #[test]
    fn scopes_must_be_known_present_and_unrepeated() {
        let owned = |scopes: &[&str]| scopes.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(violations_of(|v| check_scopes(v, &owned(&["customers.read"]))).is_empty());
        assert_eq!(
            violations_of(|v| check_scopes(v, &[]))[0].0,
            "api_key.scopes"
        );
        let found = violations_of(|v| {
            check_scopes(
                v,
                &owned(&["customers.read", "customers.everything", "customers.read"]),
            )
        });
        let fields: Vec<&str> = found.iter().map(|(field, _)| field.as_str()).collect();
        assert_eq!(fields, ["api_key.scopes[1]", "api_key.scopes[2]"]);
    }

    #[test]
    fn a_stored_answer_never_holds_the_secret() {
        let answer = Answer(pb::ApiKey {
            name: "apiKeys/0190a7b2-0000-7000-8000-000000000000".into(),
            secret: "cak_secret".into(),
            ..Default::default()
        });
        let replayed = Answer::decode_replay(&answer.encode_replay()).unwrap();
        assert_eq!(replayed.0.secret, "");
        assert_eq!(replayed.0.name, answer.0.name);
    }
}
