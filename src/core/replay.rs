//! Stored first responses of idempotent writes (AIP-155), replayed to retries.
//!
//! A response is stored in a versioned encoding (`crate::encoding::replay`: a version byte
//! and the contract's protobuf message); a reader accepts every version ever written, so an
//! upgrade never turns a retry into a second write.

use crate::{
    encoding::replay::Replayable as Encoding,
    service::{Error, Result, error::reason},
};

/// A stored response as the database holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredReplay {
    /// Version 1: the JSON of the domain type, as the first releases wrote it.
    Json(serde_json::Value),
    /// Version 2 and later: a version byte and the encoding of that version.
    Bytes(Vec<u8>),
    /// None any more: it was forgotten with the customer it held, for the stored reason
    /// (issue 16). The claim stays, so a retry is recognised and answered by
    /// [`Forgotten::answer`], never with the data and never with a second write.
    Forgotten(Forgotten),
}

/// Why a stored response was forgotten (`request_ids.forgotten_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgotten {
    /// The customer it held was purged at the end of its retention.
    Purged {
        /// The purged customer.
        customer: uuid::Uuid,
    },
    /// The customer it was about was erased (EraseCustomer).
    Erased,
}

impl Forgotten {
    /// What a retry of a request whose response was forgotten is answered, by the stored
    /// reason: NOT_FOUND for a purged customer (as a read of it would be), and
    /// FAILED_PRECONDITION `REQUEST_ERASED` for an erased one (running the request again
    /// could bring the erased data back).
    pub fn answer(self) -> Error {
        match self {
            Forgotten::Purged { customer } => {
                Error::customer_not_found(format!("customers/{customer}"))
            }
            Forgotten::Erased => Error::FailedPrecondition {
                message: "the first response to this request id was erased with the customer \
                          it was about (EraseCustomer); the request is not run again"
                    .to_owned(),
                reason: reason::REQUEST_ERASED,
                resource_type: crate::domain::names::CUSTOMER_TYPE,
                resource_name: String::new(),
            },
        }
    }
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
            StoredReplay::Forgotten(forgotten) => return Err(forgotten.answer()),
        }
        .map_err(|e| Error::internal(&e))
    }

    fn personal_data_of(&self) -> Option<uuid::Uuid> {
        Encoding::personal_data_of(self)
    }
}
