//! The resource core: the machinery every resource shares.
//!
//! - [`resource`]: what a resource declares (name type, fields, mask fields, events,
//!   hooks for its own rules).
//! - [`write`]: the one write path — validate → idempotent transaction (claim the request
//!   id, lock, check the etag, change, record the outbox event, store the replay) → respond.
//! - [`list`]: the one list path — page size → page token → keyset page → next token.
//! - [`mask`]: field masks (AIP-134), with output-only paths read from the proto.
//! - [`fingerprint`] and [`replay`]: versioned encodings of request fingerprints and stored
//!   responses.
//! - [`store`]: the storage seam the core is written against; `crate::db` implements it for
//!   PostgreSQL and the unit tests over maps.

pub mod coalesce;
pub mod fingerprint;
pub mod list;
pub mod mask;
pub mod replay;
pub mod resource;
pub mod store;
pub mod write;

#[cfg(test)]
mod memory;
