//! Opaque, tamper-evident page tokens (AIP-158).
//!
//! A token is `base64url(body ‖ mac)`: `body` is a small protobuf message holding the
//! position after the page's last row and a fingerprint of the query (filter, order_by,
//! show_deleted); `mac` is HMAC-SHA256 over the body under a server key, truncated to 128
//! bits. Clients cannot read positions into it or forge one, and a token presented with a
//! different query is refused instead of silently skipping or repeating rows.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use prost::Message;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::customers::{Cursor, KeyValue};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the truncated MAC.
const MAC_LEN: usize = 16;
/// Tokens longer than this are rejected before any decoding.
const MAX_TOKEN_LEN: usize = 2048;

/// Signs and verifies page tokens.
#[derive(Clone)]
pub struct PageTokens {
    key: [u8; 32],
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens(<key>)")
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token this service issued (garbled, truncated or forged).
    #[error("is not a valid page token")]
    Invalid,
    /// Issued for a different filter, order_by or show_deleted.
    #[error("was issued for a different filter, order_by or show_deleted; start again without it")]
    QueryChanged,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TokenBody {
    #[prost(bytes = "vec", tag = "1")]
    query: Vec<u8>,
    #[prost(message, repeated, tag = "2")]
    values: Vec<TokenValue>,
    #[prost(bytes = "vec", tag = "3")]
    id: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TokenValue {
    #[prost(int64, optional, tag = "1")]
    time_micros: Option<i64>,
    #[prost(string, optional, tag = "2")]
    text: Option<String>,
}

impl PageTokens {
    /// Keys derived from a configured secret (shared by all instances), or random.
    pub fn new(secret: Option<&str>) -> Self {
        let key = match secret {
            Some(secret) => Sha256::digest(secret.as_bytes()).into(),
            None => {
                let mut key = [0_u8; 32];
                // The OS RNG failing is not recoverable in any useful way; fall back to a
                // per-process value that is still unknown to clients.
                if getrandom::fill(&mut key).is_err() {
                    key = Sha256::digest(Uuid::new_v4().as_bytes()).into();
                }
                key
            }
        };
        Self { key }
    }

    /// A fingerprint of the query parameters a token is bound to.
    pub fn query_fingerprint(parts: &[&str]) -> Vec<u8> {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        hasher.finalize()[..16].to_vec()
    }

    /// The token for the page after `cursor`.
    pub fn encode(&self, query: &[u8], cursor: &Cursor) -> String {
        let body = TokenBody {
            query: query.to_vec(),
            values: cursor
                .values
                .iter()
                .map(|value| match value {
                    KeyValue::Time(time) => TokenValue {
                        time_micros: Some(time.timestamp_micros()),
                        text: None,
                    },
                    KeyValue::Text(text) => TokenValue {
                        time_micros: None,
                        text: Some(text.clone()),
                    },
                })
                .collect(),
            id: cursor.id.as_bytes().to_vec(),
        };
        let mut bytes = body.encode_to_vec();
        let mac = self.mac(&bytes);
        bytes.extend_from_slice(&mac[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The cursor in `token`, if this service issued it for `query`.
    pub fn decode(&self, token: &str, query: &[u8]) -> Result<Cursor, TokenError> {
        let body = self.open(token, query)?;
        let values = body
            .values
            .into_iter()
            .map(|value| match (value.time_micros, value.text) {
                (Some(micros), None) => DateTime::<Utc>::from_timestamp_micros(micros)
                    .map(KeyValue::Time)
                    .ok_or(TokenError::Invalid),
                (None, Some(text)) => Ok(KeyValue::Text(text)),
                _ => Err(TokenError::Invalid),
            })
            .collect::<Result<_, _>>()?;
        let id = Uuid::from_slice(&body.id).map_err(|_| TokenError::Invalid)?;
        Ok(Cursor { values, id })
    }

    /// The token for the page after the event at `position` (ListCustomerEvents).
    pub fn encode_position(&self, query: &[u8], position: i64) -> String {
        let body = TokenBody {
            query: query.to_vec(),
            values: Vec::new(),
            id: position.to_be_bytes().to_vec(),
        };
        let mut bytes = body.encode_to_vec();
        let mac = self.mac(&bytes);
        bytes.extend_from_slice(&mac[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The event position in `token`, if this service issued it for `query`.
    pub fn decode_position(&self, token: &str, query: &[u8]) -> Result<i64, TokenError> {
        let body = self.open(token, query)?;
        let bytes: [u8; 8] = body.id.try_into().map_err(|_| TokenError::Invalid)?;
        Ok(i64::from_be_bytes(bytes))
    }

    /// Verifies the MAC and the query binding of `token` and returns its body.
    fn open(&self, token: &str, query: &[u8]) -> Result<TokenBody, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Invalid)?;
        let split = bytes
            .len()
            .checked_sub(MAC_LEN)
            .ok_or(TokenError::Invalid)?;
        let (body, mac) = bytes.split_at(split);
        let mut verifier =
            HmacSha256::new_from_slice(&self.key).map_err(|_| TokenError::Invalid)?;
        verifier.update(body);
        verifier
            .verify_truncated_left(mac)
            .map_err(|_| TokenError::Invalid)?;
        let body = TokenBody::decode(body).map_err(|_| TokenError::Invalid)?;
        if body.query != query {
            return Err(TokenError::QueryChanged);
        }
        Ok(body)
    }

    fn mac(&self, body: &[u8]) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor() -> Cursor {
        Cursor {
            values: vec![
                KeyValue::Text("Lovelace".into()),
                KeyValue::Time(DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap()),
            ],
            id: Uuid::now_v7(),
        }
    }

    #[test]
    fn tokens_round_trip() {
        let tokens = PageTokens::new(Some("test secret"));
        let query = PageTokens::query_fingerprint(&["status = ACTIVE", "family_name", "false"]);
        let position = cursor();
        let token = tokens.encode(&query, &position);
        assert_eq!(tokens.decode(&token, &query), Ok(position));
    }

    #[test]
    fn tokens_for_another_query_are_refused() {
        let tokens = PageTokens::new(Some("k"));
        let query = PageTokens::query_fingerprint(&["a", "b"]);
        let other = PageTokens::query_fingerprint(&["a", "c"]);
        let token = tokens.encode(&query, &cursor());
        assert_eq!(tokens.decode(&token, &other), Err(TokenError::QueryChanged));
    }

    #[test]
    fn tampered_or_foreign_tokens_are_refused() {
        let tokens = PageTokens::new(Some("k"));
        let query = PageTokens::query_fingerprint(&[]);
        let token = tokens.encode(&query, &cursor());
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[3] ^= 1;
        let tampered = URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(tokens.decode(&tampered, &query), Err(TokenError::Invalid));
        let foreign = PageTokens::new(Some("other key"));
        assert_eq!(foreign.decode(&token, &query), Err(TokenError::Invalid));
        for garbage in ["", "x", "!!!", &"A".repeat(5000)] {
            assert_eq!(tokens.decode(garbage, &query), Err(TokenError::Invalid));
        }
    }

    #[test]
    fn fingerprints_separate_their_parts() {
        assert_ne!(
            PageTokens::query_fingerprint(&["ab", "c"]),
            PageTokens::query_fingerprint(&["a", "bc"])
        );
    }
}
