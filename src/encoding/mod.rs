//! Versioned, canonical encodings of what this service persists: the payload of every
//! event in the log ([`event_payload`]) and the first response of every idempotent write
//! ([`replay`]).
//!
//! Stored bytes outlive the Rust types that wrote them, so they are never the serde image of
//! a domain struct (where renaming a field or a variant silently changes — and breaks — what
//! is on disk). Version 2, written today, is one version byte ([`VERSION_2`]) followed by a
//! protobuf message of the public contract (`customer.v1.CustomerEvent`, `Customer`,
//! `Company`, `Note`): field numbers are a versioned contract already, a Rust rename cannot
//! change a byte, and golden tests pin the exact bytes.
//!
//! Version 1 is the JSON earlier releases stored (serde of the domain types of the time, in
//! the `jsonb` columns `events.data` and `request_ids.response`). It is still read, through
//! frozen private mirrors of those shapes ([`v1`] decoders), so rows written before the
//! upgrade keep working whatever happens to the domain types; it is never written again,
//! except that a purge still scrubs version 1 events in place (see `db::events`).
//!
//! The protobuf → domain conversions live here ([`proto`]); the domain → protobuf ones are the
//! gRPC adapter's, so a stored message is exactly what clients are served.

pub mod event_payload;
pub mod proto;
pub mod replay;
mod v1;

pub(crate) use self::v1::AddressJson;

#[cfg(test)]
mod golden;

pub use self::replay::Replayable;

/// The version byte that starts every version 2 payload (`0x02 || protobuf`). Version 1 is
/// JSON in a separate column, so it needs no prefix.
pub const VERSION_2: u8 = 2;

/// Stored bytes that cannot be read back: written by something other than this service, or
/// damaged. Messages name the problem, never stored values.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The payload has no version byte.
    #[error("empty payload")]
    Empty,
    /// The version byte is not one this release reads.
    #[error("unknown encoding version {0}")]
    UnknownVersion(u8),
    /// The bytes after the version byte are not the expected message.
    #[error("malformed protobuf payload: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// Version 1 JSON that does not have the shape version 1 wrote.
    #[error("malformed version 1 JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A well-formed message whose content breaks an invariant of what this service writes.
    #[error("invalid {field}: {problem}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
}

impl DecodeError {
    pub(crate) fn invalid(field: &'static str, problem: &'static str) -> Self {
        Self::Invalid { field, problem }
    }
}

/// `0x02 || message`.
pub(crate) fn versioned(message: &impl prost::Message) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + message.encoded_len());
    bytes.push(VERSION_2);
    // The vector was sized above (and would grow anyway), so encoding cannot run short.
    message.encode_raw(&mut bytes);
    bytes
}

/// The message bytes of a version 2 payload.
pub(crate) fn unversioned(bytes: &[u8]) -> Result<&[u8], DecodeError> {
    match bytes {
        [] => Err(DecodeError::Empty),
        [VERSION_2, message @ ..] => Ok(message),
        [version, ..] => Err(DecodeError::UnknownVersion(*version)),
    }
}
