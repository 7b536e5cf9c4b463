//! Stored API keys (and their audit rows) as the contract's `ApiKey` message.

use chrono::{DateTime, Utc};

use super::timestamp;
use crate::{
    db::api_keys::{Action, AuditRow, KeyInfo},
    domain::names::ApiKeyName,
    pb::{self, api_key::State, audit_record},
};

/// Key `info` with its `audit` rows (any order of keys; oldest first per key), as it stands
/// at `now`, without its secret.
pub fn api_key_to_proto(info: KeyInfo, audit: &[AuditRow], now: DateTime<Utc>) -> pb::ApiKey {
    let state = if info.revoke_time.is_some() {
        State::Revoked
    } else if info.expire_time.is_some_and(|expiry| expiry <= now) {
        State::Expired
    } else {
        State::Active
    };
    pb::ApiKey {
        name: ApiKeyName(info.id).to_string(),
        uid: info.id.to_string(),
        display_name: info.name,
        scopes: info.scopes,
        expire_time: info.expire_time.map(timestamp),
        secret: String::new(),
        state: state.into(),
        create_time: Some(timestamp(info.create_time)),
        revoke_time: info.revoke_time.map(timestamp),
        rotate_time: info.rotate_time.map(timestamp),
        previous_secret_expire_time: info
            .previous_secret_expire_time
            .filter(|until| *until > now)
            .map(timestamp),
        creator: info.creator.unwrap_or_default(),
        audit: audit
            .iter()
            .filter(|row| row.api_key_id == info.id)
            .map(audit_to_proto)
            .collect(),
    }
}

fn audit_to_proto(row: &AuditRow) -> pb::AuditRecord {
    let action = match Action::parse(&row.action) {
        Some(Action::Created) => audit_record::Action::Created,
        Some(Action::Rotated) => audit_record::Action::Rotated,
        Some(Action::Revoked) => audit_record::Action::Revoked,
        None => audit_record::Action::Unspecified,
    };
    pb::AuditRecord {
        action: action.into(),
        actor: row.actor.clone(),
        time: Some(timestamp(row.occur_time)),
        request_id: row.request_id.map(|id| id.to_string()).unwrap_or_default(),
    }
}
