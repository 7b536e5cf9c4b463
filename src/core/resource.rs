//! The description of a resource: everything the generic write path needs to know about
//! customers, companies or notes, declared once per resource in `crate::resources`.
//!
//! Most of a resource is data (its name type, proto message, field set, mask fields, event
//! types, error reasons); the rest are small hooks with do-nothing defaults for the rules
//! only some resources have (a note's parent must be live, a customer's company must be
//! live, a company with customers is not deleted without `force`).

use std::{future::Future, time::Duration};

use prost::Message as _;

use super::{
    mask::{Mask, MaskField},
    replay::Replayable,
    store::Storage,
};
use crate::{
    convert::StoredMessage,
    domain::{Input, event::EventType, names::ResourceName, stored::Stored},
    service::{Error, Result, error::reason},
};

/// The event types of a resource's writes.
#[derive(Debug, Clone, Copy)]
pub struct Events {
    /// Create.
    pub created: EventType,
    /// Update.
    pub updated: EventType,
    /// Delete.
    pub deleted: EventType,
    /// Undelete (soft-deleted resources only).
    pub undeleted: Option<EventType>,
}

/// Reasons and messages of a resource's state errors.
#[derive(Debug, Clone, Copy)]
pub struct Reasons {
    /// `ErrorInfo.reason` of a write to a soft-deleted resource.
    pub deleted: &'static str,
    /// What to tell the caller after the name, e.g. `is deleted; undelete it first`.
    pub deleted_message: &'static str,
    /// `ErrorInfo.reason` of an undelete of a live resource.
    pub not_deleted: &'static str,
}

/// A resource the core can create, read, update and delete.
pub trait Resource: Clone + Send + Sync + Replayable + 'static {
    /// Its parsed name (`customers/{id}`, …), which knows its parent's.
    type Name: ResourceName;
    /// Its fields as a client sent them.
    type Input: Input<Data = Self::Data, Field = Self::Field>;
    /// Its mutable fields, validated.
    type Data: Clone + PartialEq + Send + Sync + 'static;
    /// The fields an update mask may name.
    type Field: MaskField<Input = Self::Input>;
    /// Its contract message (`customer.v1.Customer`, …): what every transport answers.
    type Message: prost::Message + StoredMessage + Send + 'static;

    /// The resource type (`customer.example.com/Customer`).
    const TYPE: &'static str;
    /// The full name of its proto message (`customer.v1.Customer`): the source of its
    /// output-only fields.
    const PROTO: &'static str;
    /// The request field holding it (`customer`): the prefix of violation paths.
    const FIELD: &'static str;
    /// The RPC suffix (`Customer` in `CreateCustomer`).
    const KIND: &'static str;
    /// Its event types.
    const EVENTS: Events;
    /// Its state errors.
    const REASONS: Reasons;
    /// Whether its delete has `force` (a part of version-1 fingerprints).
    const HAS_FORCE: bool = false;

    /// Its name.
    fn name(&self) -> Self::Name;
    /// Its id, version and times.
    fn stored(&self) -> &Stored;
    /// Its mutable fields.
    fn data(&self) -> &Self::Data;

    /// Its row version (the etag and the event sequence derive from it).
    fn version(&self) -> i64 {
        self.stored().version
    }

    /// Whether it is soft-deleted.
    fn is_deleted(&self) -> bool {
        self.stored().is_deleted()
    }

    /// A valid stand-in for the stored fields, to check masked input before any read.
    fn stand_in() -> Self::Input;
    /// The resource as its contract message.
    fn to_message(self) -> Self::Message;
    /// Its contract message with only the stored fields set (name, etag, times), for
    /// [`Resource::to_message`] to complete.
    fn stored_message(&self) -> Self::Message {
        Self::Message::stored_fields(self.name().to_string(), self.stored())
    }
    /// The client-settable fields of a message, moved out of it; output-only fields are
    /// ignored (AIP-203).
    fn input_from(message: Self::Message) -> Self::Input;
    /// Raw input as its message, every other field unset.
    fn input_message(input: &Self::Input) -> Self::Message;
    /// The input as canonical protobuf bytes of its contract message (fingerprints).
    fn canonical_input(input: &Self::Input) -> Vec<u8> {
        Self::input_message(input).encode_to_vec()
    }
    /// The input as version-1 fingerprints spelled it (frozen).
    fn legacy_input(input: &Self::Input) -> String;

    /// The event of `event_type` about `snapshot` (`previous`: the fields before an update).
    fn event(
        event_type: EventType,
        snapshot: &Self,
        previous: Option<&Self::Data>,
    ) -> crate::domain::event::EventData;

    /// The mask as version-1 fingerprints spelled it (frozen).
    fn legacy_mask(mask: &Mask<Self::Field>) -> String {
        mask.legacy_debug()
    }

    /// The resource as served, given how long soft-deleted resources are kept (a customer
    /// shows when it will be purged).
    fn with_retention(self, retention: Option<Duration>) -> Self {
        let _ = retention;
        self
    }

    /// Logs a create at debug level (the log writer masks email addresses and phone
    /// numbers in every line).
    fn trace_create(data: &Self::Data) {
        let _ = data;
        tracing::debug!("creating {}", Self::FIELD);
    }

    /// The etag (AIP-154).
    fn etag(&self) -> String {
        self.stored().etag()
    }

    /// The per-resource sequence of an event about `snapshot` (its version after the change).
    fn sequence(event_type: EventType, snapshot: &Self) -> i64 {
        let _ = event_type;
        snapshot.version()
    }

    /// Checks, inside the write, that the parent of `name` may be read (`lock`: and written
    /// under): a note's customer must exist and be live. Nothing for top-level resources.
    fn check_parent<C: Storage>(
        conn: &mut C,
        name: Self::Name,
        lock: bool,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = (conn, name, lock);
        async { Ok(()) }
    }

    /// Checks the references of new fields (`current`: the fields they replace), inside the
    /// write: a customer's company must be live.
    fn check_references<C: Storage>(
        conn: &mut C,
        data: &Self::Data,
        current: Option<&Self::Data>,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = (conn, data, current);
        async { Ok(()) }
    }

    /// Runs before a delete, inside the write: a company refuses while it has live customers,
    /// or detaches them with `force`.
    fn before_delete<C: Storage>(
        conn: &mut C,
        current: &Self,
        force: bool,
        origin: &super::write::Origin,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = (conn, current, force, origin);
        async { Ok(()) }
    }

    /// The fields a restored resource comes back with, if not its own: a customer whose
    /// company was deleted meanwhile comes back without it.
    fn restored_data<C: Storage>(
        conn: &mut C,
        current: &Self,
    ) -> impl Future<Output = Result<Option<Self::Data>>> + Send {
        let _ = (conn, current);
        async { Ok(None) }
    }

    /// Where concurrent reads of it meet to share a statement (`core::coalesce`); `None`:
    /// each read runs alone.
    fn gate(gates: &super::coalesce::Gates) -> Option<&super::coalesce::Gate<Self>> {
        let _ = gates;
        None
    }

    /// NOT_FOUND for `name`.
    fn not_found(name: Self::Name) -> Error {
        Error::not_found(Self::TYPE, name)
    }

    /// FAILED_PRECONDITION for a write to the soft-deleted `name`.
    fn deleted(name: Self::Name) -> Error {
        Error::FailedPrecondition {
            message: format!("{name} {}", Self::REASONS.deleted_message),
            reason: Self::REASONS.deleted,
            resource_type: Self::TYPE,
            resource_name: name.to_string(),
        }
    }
}

/// A supplied etag must be the current one (AIP-154); an empty one matches anything.
pub fn check_etag<R: Resource>(current: &R, etag: &str) -> Result<()> {
    let current_etag = current.etag();
    if etag.is_empty() || etag == current_etag {
        return Ok(());
    }
    let name = current.name();
    Err(Error::Aborted {
        message: format!(
            "{name} was changed since it was read (etag {etag} is not current); read it again and retry"
        ),
        reason: reason::ETAG_MISMATCH,
        resource_type: R::TYPE,
        resource_name: name.to_string(),
    })
}
