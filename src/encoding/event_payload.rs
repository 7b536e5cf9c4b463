//! The stored payload of an event (`events.payload`): `0x02 ||` a `customer.v1.CustomerEvent`
//! holding only the event's content — the customer `snapshot` of customer events and the
//! `kind` with its company or note and diff — exactly as the gRPC adapter builds it
//! ([`content_to_proto`]). The envelope (id, resource, sequence, actor, request id, time,
//! position) lives in columns, which the database fills in (the time is its clock) and
//! queries by; the position-dependent `resume_token` is never stored.
//!
//! Like every channel, the payload carries `previous` narrowed to the changed fields, so the
//! log holds no copy of unchanged data. The domain's full `previous` is rebuilt on reading:
//! a field not named in `changed_fields` had the snapshot's value before the change too
//! (`changed_fields` names every field that differs, address sub-fields when both states
//! have an address).
//!
//! Rows written before version 2 hold version 1 JSON in `events.data` instead; [`decode_stored`]
//! reads either.

use prost::Message;

use super::{
    DecodeError,
    proto::{company_from_proto, customer_from_proto, non_empty, note_from_proto, status},
    unversioned, v1, versioned,
};
use crate::{
    convert::{address_from_proto, events::content_to_proto},
    domain::{
        company::{Company, CompanyData},
        customer::{Customer, CustomerData},
        event::{Change, EventData, EventType, MergeChange},
        note::{Note, NoteData},
    },
    pb::{self, customer_event::Kind},
};

/// The version 2 payload of an event of type `event_type`.
pub fn encode(event_type: EventType, data: EventData) -> Vec<u8> {
    let (snapshot, kind) = content_to_proto(event_type, data);
    versioned(&pb::CustomerEvent {
        snapshot,
        kind: Some(kind),
        ..pb::CustomerEvent::default()
    })
}

/// Reads a version 2 payload of an event stored with type `event_type` (the payload must
/// describe an event of that type).
pub fn decode(event_type: EventType, payload: &[u8]) -> Result<EventData, DecodeError> {
    let event = pb::CustomerEvent::decode(unversioned(payload)?)?;
    let kind = event
        .kind
        .ok_or(DecodeError::invalid("event.kind", "missing"))?;
    if type_of(&kind) != event_type {
        return Err(DecodeError::invalid(
            "event.kind",
            "does not match the stored event type",
        ));
    }
    let snapshot = event.snapshot;
    Ok(match kind {
        Kind::Registered(_)
        | Kind::Deleted(_)
        | Kind::Undeleted(_)
        | Kind::Purged(_)
        | Kind::Erased(_) => customer_change(customer_snapshot(snapshot)?, Vec::new(), None)?,
        Kind::Updated(updated) => customer_change(
            customer_snapshot(snapshot)?,
            paths(updated.changed_fields),
            updated.previous,
        )?,
        Kind::CompanyCreated(pb::CompanyCreated { company })
        | Kind::CompanyDeleted(pb::CompanyDeleted { company })
        | Kind::CompanyUndeleted(pb::CompanyUndeleted { company }) => {
            company_change(company_snapshot(company)?, Vec::new(), None)
        }
        Kind::CompanyUpdated(updated) => company_change(
            company_snapshot(updated.company)?,
            paths(updated.changed_fields),
            updated.previous,
        ),
        Kind::NoteAdded(pb::NoteAdded { note }) | Kind::NoteDeleted(pb::NoteDeleted { note }) => {
            note_change(note_snapshot(note)?, Vec::new(), None)
        }
        Kind::NoteUpdated(updated) => note_change(
            note_snapshot(updated.note)?,
            paths(updated.changed_fields),
            updated.previous,
        ),
        Kind::Merged(pb::CustomersMerged {
            merge,
            sources,
            changed_fields,
            previous,
            moved_notes,
        })
        | Kind::Unmerged(pb::CustomersUnmerged {
            merge,
            sources,
            changed_fields,
            previous,
            moved_notes,
        }) => {
            let EventData::Customer(change) = customer_change(
                customer_snapshot(snapshot)?,
                paths(changed_fields),
                previous,
            )?
            else {
                return Err(DecodeError::invalid("event", "not a customer change"));
            };
            EventData::Merge(Box::new(MergeChange {
                change: *change,
                merge,
                sources,
                moved_notes: moved_notes
                    .into_iter()
                    .map(|moved| (moved.previous_name, moved.name))
                    .collect(),
            }))
        }
    })
}

/// Reads the version 1 JSON (`events.data`) of an event stored with type `event_type`.
pub fn decode_v1(event_type: EventType, json: serde_json::Value) -> Result<EventData, DecodeError> {
    v1::event_data(event_type.resource(), json)
}

/// Reads a stored event whichever version it was written in: the version 2 `payload` when
/// there is one, else the version 1 JSON `data`.
pub fn decode_stored(
    event_type: EventType,
    payload: Option<&[u8]>,
    data: Option<serde_json::Value>,
) -> Result<EventData, DecodeError> {
    match (payload, data) {
        (Some(payload), _) => decode(event_type, payload),
        (None, Some(data)) => decode_v1(event_type, data),
        (None, None) => Err(DecodeError::invalid("event", "neither payload nor data")),
    }
}

/// A version 2 payload with the personal data of a purged customer erased
/// ([`EventData::forget`]): re-encoded, so it stays version 2.
pub fn scrub(
    event_type: EventType,
    payload: &[u8],
    purged: &Customer,
) -> Result<Vec<u8>, DecodeError> {
    let data = decode(event_type, payload)?.forget(purged);
    Ok(encode(event_type, data))
}

/// The version 1 JSON of a customer snapshot, for scrubbing version 1 events in place (the
/// one thing still written in version 1: those rows are not rewritten to version 2, so that
/// a purge changes no more than the data it erases).
pub fn snapshot_v1(customer: &Customer) -> serde_json::Result<serde_json::Value> {
    v1::customer_json(customer)
}

/// The event type a stored kind describes.
fn type_of(kind: &Kind) -> EventType {
    match kind {
        Kind::Registered(_) => EventType::CustomerRegistered,
        Kind::Updated(_) => EventType::CustomerUpdated,
        Kind::Deleted(_) => EventType::CustomerDeleted,
        Kind::Undeleted(_) => EventType::CustomerUndeleted,
        Kind::Purged(_) => EventType::CustomerPurged,
        Kind::Erased(_) => EventType::CustomerErased,
        Kind::Merged(_) => EventType::CustomersMerged,
        Kind::Unmerged(_) => EventType::CustomersUnmerged,
        Kind::CompanyCreated(_) => EventType::CompanyCreated,
        Kind::CompanyUpdated(_) => EventType::CompanyUpdated,
        Kind::CompanyDeleted(_) => EventType::CompanyDeleted,
        Kind::CompanyUndeleted(_) => EventType::CompanyUndeleted,
        Kind::NoteAdded(_) => EventType::NoteAdded,
        Kind::NoteUpdated(_) => EventType::NoteUpdated,
        Kind::NoteDeleted(_) => EventType::NoteDeleted,
    }
}

fn paths(mask: Option<prost_types::FieldMask>) -> Vec<String> {
    mask.map(|mask| mask.paths).unwrap_or_default()
}

fn customer_snapshot(snapshot: Option<pb::Customer>) -> Result<Customer, DecodeError> {
    customer_from_proto(snapshot.ok_or(DecodeError::invalid("event.snapshot", "missing"))?)
}

fn company_snapshot(company: Option<pb::Company>) -> Result<Company, DecodeError> {
    company_from_proto(company.ok_or(DecodeError::invalid("event.company", "missing"))?)
}

fn note_snapshot(note: Option<pb::Note>) -> Result<Note, DecodeError> {
    note_from_proto(note.ok_or(DecodeError::invalid("event.note", "missing"))?)
}

fn customer_change(
    snapshot: Customer,
    changed_fields: Vec<String>,
    previous: Option<pb::Customer>,
) -> Result<EventData, DecodeError> {
    let previous = previous
        .map(|previous| customer_before(&snapshot.data, previous, &changed_fields))
        .transpose()?;
    Ok(EventData::Customer(Box::new(Change {
        snapshot,
        changed_fields,
        previous,
    })))
}

fn company_change(
    snapshot: Company,
    changed_fields: Vec<String>,
    previous: Option<pb::Company>,
) -> EventData {
    let previous =
        previous.map(|previous| company_before(&snapshot.data, previous, &changed_fields));
    EventData::Company(Box::new(Change {
        snapshot,
        changed_fields,
        previous,
    }))
}

fn note_change(
    snapshot: Note,
    changed_fields: Vec<String>,
    previous: Option<pb::Note>,
) -> EventData {
    let previous = previous.map(|previous| NoteData {
        text: if changed_fields.iter().any(|path| path == "text") {
            previous.text
        } else {
            snapshot.data.text.clone()
        },
    });
    EventData::Note(Box::new(Change {
        snapshot,
        changed_fields,
        previous,
    }))
}

/// A customer's fields before a change: the snapshot's, with the changed ones taken from
/// `previous` (the inverse of the adapter's narrowing to `changed` paths; unknown paths are
/// skipped there and here).
fn customer_before(
    after: &CustomerData,
    mut previous: pb::Customer,
    changed: &[String],
) -> Result<CustomerData, DecodeError> {
    let take = std::mem::take::<String>;
    let mut before = after.clone();
    for path in changed {
        match path.as_str() {
            "given_name" => before.given_name = take(&mut previous.given_name),
            "family_name" => before.family_name = take(&mut previous.family_name),
            "email" => before.email = take(&mut previous.email),
            "phone" => before.phone = non_empty(take(&mut previous.phone)),
            "address" => before.address = previous.address.take().map(address_from_proto),
            "status" => before.status = status(previous.status)?,
            "company" => before.company = non_empty(take(&mut previous.company)),
            "business_id" => before.business_id = non_empty(take(&mut previous.business_id)),
            "labels" => before.labels = std::mem::take(&mut previous.labels),
            "external_ids" => before.external_ids = std::mem::take(&mut previous.external_ids),
            sub => {
                let (Some(field), Some(from), Some(to)) = (
                    sub.strip_prefix("address."),
                    previous.address.as_mut(),
                    before.address.as_mut(),
                ) else {
                    continue;
                };
                match field {
                    "lines" => to.lines = std::mem::take(&mut from.lines),
                    "locality" => to.locality = take(&mut from.locality),
                    "region" => to.region = take(&mut from.region),
                    "postal_code" => to.postal_code = take(&mut from.postal_code),
                    "country_code" => to.country_code = take(&mut from.country_code),
                    _ => {}
                }
            }
        }
    }
    Ok(before)
}

/// A company's fields before a change, as [`customer_before`].
fn company_before(
    after: &CompanyData,
    mut previous: pb::Company,
    changed: &[String],
) -> CompanyData {
    let take = std::mem::take::<String>;
    let mut before = after.clone();
    for path in changed {
        match path.as_str() {
            "display_name" => before.display_name = take(&mut previous.display_name),
            "domain" => before.domain = non_empty(take(&mut previous.domain)),
            "business_id" => before.business_id = non_empty(take(&mut previous.business_id)),
            "labels" => before.labels = std::mem::take(&mut previous.labels),
            _ => {}
        }
    }
    before
}
