//! The stored first response of an idempotent write (`request_ids.response_pb`), replayed
//! to a retry with the same request id: `0x02 ||` the resource's `customer.v1` message, which
//! is what the client was answered. Responses stored before version 2 are version 1 JSON in
//! `request_ids.response`; [`decode_stored`] reads either.

use prost::Message;

use super::{
    DecodeError,
    proto::{company_from_proto, customer_from_proto, note_from_proto},
    unversioned, v1, versioned,
};
use crate::{
    domain::{company::Company, customer::Customer, note::Note},
    pb,
    resources::Resource,
};

/// A resource a write answers with, and so may have to replay.
pub trait Replayable: Sized {
    /// The version 2 encoding of this response.
    fn encode_replay(&self) -> Vec<u8>;
    /// Reads a version 2 response.
    fn decode_replay(bytes: &[u8]) -> Result<Self, DecodeError>;
    /// Reads a version 1 (JSON) response.
    fn decode_replay_v1(json: serde_json::Value) -> Result<Self, DecodeError>;
    /// The customer whose personal data this response holds: the customer itself, a note's
    /// customer; none for a company.
    fn personal_data_of(&self) -> Option<uuid::Uuid>;
}

/// A stored response whichever version it was written in: the version 2 bytes when there are
/// some, else the version 1 JSON; `None` when neither was stored.
pub fn decode_stored<T: Replayable>(
    protobuf: Option<&[u8]>,
    json: Option<serde_json::Value>,
) -> Result<Option<T>, DecodeError> {
    match (protobuf, json) {
        (Some(bytes), _) => T::decode_replay(bytes).map(Some),
        (None, Some(json)) => T::decode_replay_v1(json).map(Some),
        (None, None) => Ok(None),
    }
}

/// [`Replayable`] for a resource stored as its contract message `$message` (what
/// `Resource::to_message` writes), read back by `$from_proto`, or from version 1 JSON by
/// `$from_v1`.
macro_rules! replayable {
    ($resource:ty as $message:ty: $from_proto:path, $from_v1:path, $owner:expr) => {
        impl Replayable for $resource {
            fn encode_replay(&self) -> Vec<u8> {
                versioned(&self.clone().to_message())
            }

            fn decode_replay(bytes: &[u8]) -> Result<Self, DecodeError> {
                $from_proto(<$message>::decode(unversioned(bytes)?)?)
            }

            fn decode_replay_v1(json: serde_json::Value) -> Result<Self, DecodeError> {
                $from_v1(json)
            }

            fn personal_data_of(&self) -> Option<uuid::Uuid> {
                $owner(self)
            }
        }
    };
}

replayable!(Customer as pb::Customer: customer_from_proto, v1::customer,
    |customer: &Customer| Some(customer.stored.id));
replayable!(Company as pb::Company: company_from_proto, v1::company, |_: &Company| None);
replayable!(Note as pb::Note: note_from_proto, v1::note, |note: &Note| Some(note.customer_id));

/// EraseCustomer's answer: `0x02 ||` a `customer.v1.CustomerErasure` (a new method: no
/// version 1 was ever written).
impl Replayable for crate::domain::erasure::Erasure {
    fn encode_replay(&self) -> Vec<u8> {
        versioned(&crate::convert::privacy::erasure_to_proto(self.clone()))
    }

    fn decode_replay(bytes: &[u8]) -> Result<Self, DecodeError> {
        crate::convert::privacy::erasure_from_proto(pb::CustomerErasure::decode(unversioned(
            bytes,
        )?)?)
    }

    fn decode_replay_v1(_: serde_json::Value) -> Result<Self, DecodeError> {
        Err(DecodeError::invalid(
            "response",
            "erasures were never stored as version 1",
        ))
    }

    fn personal_data_of(&self) -> Option<uuid::Uuid> {
        // An erasure's answer holds no personal data: nothing to forget with the customer.
        None
    }
}

/// MergeCustomers' and UnmergeCustomers' answer: `0x02 ||` a
/// `customer.v1.MergeCustomersResponse` (new methods: no version 1 was ever written).
impl Replayable for crate::domain::merge::MergeOutcome {
    fn encode_replay(&self) -> Vec<u8> {
        versioned(&crate::convert::merge::outcome_to_proto(self.clone()))
    }

    fn decode_replay(bytes: &[u8]) -> Result<Self, DecodeError> {
        crate::convert::merge::outcome_from_proto(pb::MergeCustomersResponse::decode(unversioned(
            bytes,
        )?)?)
    }

    fn decode_replay_v1(_: serde_json::Value) -> Result<Self, DecodeError> {
        Err(DecodeError::invalid(
            "response",
            "merges were never stored as version 1",
        ))
    }

    fn personal_data_of(&self) -> Option<uuid::Uuid> {
        // The target's; an erasure of a source finds the response by the source's events,
        // which carry the merge's request id (db::erasure::forget_replays).
        Some(self.customer.stored.id)
    }
}
