//! Stored first responses of idempotent writes (AIP-155), replayed to retries.
//!
//! A response is stored in a versioned encoding; a reader accepts every version it ever
//! wrote, so an upgrade never turns a retry into a second write.

use crate::service::{Error, Result};

/// A stored response as the database holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredReplay {
    /// Version 1: the JSON of the domain type, as the first releases wrote it.
    Json(serde_json::Value),
    /// Version 2 and later: versioned bytes.
    Bytes(Vec<u8>),
}

/// A resource whose write responses can be stored and replayed.
pub trait Replayable: Sized {
    /// The stored form of `self`.
    fn encode_replay(&self) -> StoredReplay;

    /// Reads a stored response back.
    fn decode_replay(stored: StoredReplay) -> Result<Self>;
}

/// Decodes the version-1 JSON of a domain type.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(stored: StoredReplay) -> Result<T> {
    match stored {
        StoredReplay::Json(json) => serde_json::from_value(json).map_err(|e| Error::internal(&e)),
        StoredReplay::Bytes(_) => Err(Error::internal(&crate::service::Unreachable(
            "replay in an encoding this build does not write",
        ))),
    }
}

/// The version-1 JSON of a domain type.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> StoredReplay {
    StoredReplay::Json(serde_json::to_value(value).unwrap_or_default())
}
