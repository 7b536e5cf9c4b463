//! Events as `customer.v1.CustomerEvent` (customer, company and note events): the
//! conversion shared by the gRPC adapter (ListCustomerEvents, WatchCustomerEvents), the
//! NATS relay and the stored event payload, so that every channel carries the same message.

use prost_types::FieldMask;

use super::timestamp;
use crate::{
    core::resource::Resource,
    domain::{
        company::CompanyData,
        customer::{Customer, CustomerData, CustomerInput},
        event::{Event, EventData, EventType},
    },
    pb,
    service::events::resume_token,
};

/// The proto event. `with_resume_token` is false for broker bodies (published before any
/// client could resume from them; consumers deduplicate by `event_id`).
pub fn event_to_proto(event: Event, with_resume_token: bool) -> pb::CustomerEvent {
    let recorded = event.recorded;
    let (snapshot, kind) = content_to_proto(recorded.event_type, recorded.data);
    pb::CustomerEvent {
        event_id: event.event_id.to_string(),
        customer: event.customer,
        resource: recorded.resource,
        sequence: recorded.sequence,
        snapshot,
        actor: recorded.actor,
        request_id: recorded
            .request_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        occur_time: Some(timestamp(event.occur_time)),
        resume_token: if with_resume_token {
            resume_token(event.position)
        } else {
            String::new()
        },
        kind: Some(kind),
    }
}

/// What an event says, without its envelope (id, resource, sequence, actor, times): the
/// customer `snapshot` of customer events and the `kind` carrying a company or note and the
/// diff. `previous` holds only the changed fields. This is also the stored payload of an
/// event ([`crate::encoding::event_payload`]), so the log and every channel carry one message.
pub fn content_to_proto(
    event_type: EventType,
    data: EventData,
) -> (Option<pb::Customer>, pb::customer_event::Kind) {
    use pb::customer_event::Kind;
    let mask = |paths: &[String]| {
        Some(FieldMask {
            paths: paths.to_vec(),
        })
    };
    match data {
        EventData::Customer(change) => {
            let kind = match event_type {
                EventType::CustomerUpdated => Kind::Updated(pb::CustomerUpdated {
                    previous: change
                        .previous
                        .as_ref()
                        .map(|previous| only_fields(previous, &change.changed_fields)),
                    changed_fields: mask(&change.changed_fields),
                }),
                EventType::CustomerDeleted => Kind::Deleted(pb::CustomerDeleted {}),
                EventType::CustomerUndeleted => Kind::Undeleted(pb::CustomerUndeleted {}),
                EventType::CustomerPurged => Kind::Purged(pb::CustomerPurged {}),
                EventType::CustomerErased => Kind::Erased(pb::CustomerErased {}),
                // Registration, and (for data the service cannot have written) anything else.
                _ => Kind::Registered(pb::CustomerRegistered {}),
            };
            (Some(change.snapshot.to_message()), kind)
        }
        EventData::Merge(merge) => {
            let crate::domain::event::MergeChange {
                change,
                merge,
                sources,
                moved_notes,
            } = *merge;
            let previous = change
                .previous
                .as_ref()
                .map(|previous| only_fields(previous, &change.changed_fields));
            let changed_fields = mask(&change.changed_fields);
            let moved_notes = moved_notes
                .into_iter()
                .map(|(previous_name, name)| pb::MovedNote {
                    previous_name,
                    name,
                })
                .collect();
            let kind = match event_type {
                EventType::CustomersUnmerged => Kind::Unmerged(pb::CustomersUnmerged {
                    merge,
                    sources,
                    changed_fields,
                    previous,
                    moved_notes,
                }),
                _ => Kind::Merged(pb::CustomersMerged {
                    merge,
                    sources,
                    changed_fields,
                    previous,
                    moved_notes,
                }),
            };
            (Some(change.snapshot.to_message()), kind)
        }
        EventData::Company(change) => {
            let company = Some(change.snapshot.to_message());
            let kind = match event_type {
                EventType::CompanyUpdated => Kind::CompanyUpdated(pb::CompanyUpdated {
                    company,
                    previous: change
                        .previous
                        .as_ref()
                        .map(|previous| company_fields(previous, &change.changed_fields)),
                    changed_fields: mask(&change.changed_fields),
                }),
                EventType::CompanyDeleted => Kind::CompanyDeleted(pb::CompanyDeleted { company }),
                EventType::CompanyUndeleted => {
                    Kind::CompanyUndeleted(pb::CompanyUndeleted { company })
                }
                _ => Kind::CompanyCreated(pb::CompanyCreated { company }),
            };
            (None, kind)
        }
        EventData::Note(change) => {
            let note = Some(change.snapshot.to_message());
            let kind = match event_type {
                EventType::NoteUpdated => Kind::NoteUpdated(pb::NoteUpdated {
                    note,
                    previous: change.previous.map(|previous| pb::Note {
                        text: previous.text,
                        ..pb::Note::default()
                    }),
                    changed_fields: mask(&change.changed_fields),
                }),
                EventType::NoteDeleted => Kind::NoteDeleted(pb::NoteDeleted { note }),
                _ => Kind::NoteAdded(pb::NoteAdded { note }),
            };
            (None, kind)
        }
    }
}

/// A proto customer holding only the values of `paths` (top-level fields and
/// `address.<field>`); every other field is unset.
fn only_fields(data: &CustomerData, paths: &[String]) -> pb::Customer {
    let full = Customer::input_message(&CustomerInput::from(data));
    let mut out = pb::Customer::default();
    for path in paths {
        match path.as_str() {
            "given_name" => out.given_name.clone_from(&full.given_name),
            "family_name" => out.family_name.clone_from(&full.family_name),
            "email" => out.email.clone_from(&full.email),
            "phone" => out.phone.clone_from(&full.phone),
            "address" => out.address.clone_from(&full.address),
            "status" => out.status = full.status,
            "company" => out.company.clone_from(&full.company),
            "business_id" => out.business_id.clone_from(&full.business_id),
            "labels" => out.labels.clone_from(&full.labels),
            "external_ids" => out.external_ids.clone_from(&full.external_ids),
            sub => {
                let (Some(field), Some(from)) = (sub.strip_prefix("address."), &full.address)
                else {
                    continue;
                };
                let to = out.address.get_or_insert_with(Default::default);
                match field {
                    "lines" => to.lines.clone_from(&from.lines),
                    "locality" => to.locality.clone_from(&from.locality),
                    "region" => to.region.clone_from(&from.region),
                    "postal_code" => to.postal_code.clone_from(&from.postal_code),
                    "country_code" => to.country_code.clone_from(&from.country_code),
                    _ => {}
                }
            }
        }
    }
    out
}

/// A proto company holding only the values of `paths`; every other field is unset.
fn company_fields(data: &CompanyData, paths: &[String]) -> pb::Company {
    let mut out = pb::Company::default();
    for path in paths {
        match path.as_str() {
            "display_name" => out.display_name.clone_from(&data.display_name),
            "domain" => out.domain = data.domain.clone().unwrap_or_default(),
            "business_id" => out.business_id = data.business_id.clone().unwrap_or_default(),
            "labels" => out.labels.clone_from(&data.labels),
            _ => {}
        }
    }
    out
}
