//! Stored first responses of idempotent writes (AIP-155), replayed to retries.
//!
//! A response is stored in a versioned encoding (`crate::encoding::replay`: a version byte
//! and the contract's protobuf message); a reader accepts every version ever written, so an
//! upgrade never turns a retry into a second write.

use crate::{
    encoding::replay::Replayable as Encoding,
    service::{Error, Result},
};

/// A stored response as the database holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredReplay {
    /// Version 1: the JSON of the domain type, as the first releases wrote it.
    Json(serde_json::Value),
    /// Version 2 and later: a version byte and the encoding of that version.
    Bytes(Vec<u8>),
}

/// A resource whose write responses can be stored and replayed.
pub trait Replayable: Sized {
    /// The stored form of `self`.
    fn store_replay(&self) -> StoredReplay;

    /// Reads a stored response back, whichever version wrote it.
    fn load_replay(stored: StoredReplay) -> Result<Self>;
}

impl<T: Encoding> Replayable for T {
    fn store_replay(&self) -> StoredReplay {
        StoredReplay::Bytes(self.encode_replay())
    }

    fn load_replay(stored: StoredReplay) -> Result<Self> {
        match stored {
            StoredReplay::Bytes(bytes) => T::decode_replay(&bytes),
            StoredReplay::Json(json) => T::decode_replay_v1(json),
        }
        .map_err(|e| Error::internal(&e))
    }
}
