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
    /// None: it held the data of `customer`, which was purged since (issue 16). A retry is
    /// answered NOT_FOUND for that customer, not with its data and not with a second write.
    Erased {
        /// The purged customer.
        customer: uuid::Uuid,
    },
}

/// A resource whose write responses can be stored and replayed.
pub trait Replayable: Sized {
    /// The stored form of `self`.
    fn store_replay(&self) -> StoredReplay;

    /// Reads a stored response back, whichever version wrote it.
    fn load_replay(stored: StoredReplay) -> Result<Self>;

    /// The customer whose personal data the stored form holds, if any.
    fn personal_data_of(&self) -> Option<uuid::Uuid>;
}

impl<T: Encoding> Replayable for T {
    fn store_replay(&self) -> StoredReplay {
        StoredReplay::Bytes(self.encode_replay())
    }

    fn load_replay(stored: StoredReplay) -> Result<Self> {
        match stored {
            StoredReplay::Bytes(bytes) => T::decode_replay(&bytes),
            StoredReplay::Json(json) => T::decode_replay_v1(json),
            StoredReplay::Erased { customer } => {
                return Err(Error::customer_not_found(format!("customers/{customer}")));
            }
        }
        .map_err(|e| Error::internal(&e))
    }

    fn personal_data_of(&self) -> Option<uuid::Uuid> {
        Encoding::personal_data_of(self)
    }
}
