//! Golden values: the exact bytes of version 2 and real version 1 samples
//! (`tests/fixtures/encoding/v1/`), read into fixed domain values. A change that moves a
//! byte here changes what is on disk: add a version instead.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use prost::Message;
use uuid::Uuid;

use super::{DecodeError, Replayable, VERSION_2, event_payload, replay};
use crate::{
    convert::events::event_to_proto,
    domain::{
        company::{self, Company, CompanyData},
        customer::{Customer, CustomerData, PostalAddress, Status},
        event::{Change, Event, EventData, EventType, NewEvent, changed_fields},
        note::{Note, NoteData},
        stored::Stored,
    },
    pb,
};

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("fixed time")
        .with_timezone(&Utc)
}

fn id(text: &str) -> Uuid {
    text.parse().expect("fixed UUID")
}

const CUSTOMER_ID: &str = "0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6e";
const COMPANY_ID: &str = "0190a7b2-8c1e-7c1a-9d2e-2a3b4c5d6e7f";
const NOTE_ID: &str = "0190a7b2-8c1e-7c1a-9d2e-3b4c5d6e7f80";

/// A registered customer with every field set.
fn customer() -> Customer {
    Customer {
        stored: stored(CUSTOMER_ID, 1, "2026-01-01T00:00:00Z"),
        data: CustomerData {
            given_name: "Ada".into(),
            family_name: "Lovelace".into(),
            email: "ada@example.com".into(),
            phone: Some("+442071234567".into()),
            address: Some(PostalAddress {
                lines: vec!["12 St James's Square".into()],
                locality: "London".into(),
                region: String::new(),
                postal_code: "SW1Y 4JH".into(),
                country_code: "GB".into(),
            }),
            status: Status::Active,
            company: Some(format!("companies/{COMPANY_ID}")),
            business_id: Some("GB-123456".into()),
            labels: BTreeMap::from([
                ("source".into(), "web".into()),
                ("tier".into(), "gold".into()),
            ]),
            // Empty: the pinned bytes predate external ids (an empty map encodes to
            // nothing); the round-trip properties below cover them.
            external_ids: BTreeMap::new(),
        },
        expire_time: None,
        merged_into: None,
    }
}

/// The record of `id` at `version`, created on 2026-01-01 and last written at `update_time`.
fn stored(id: &str, version: i64, update_time: &str) -> Stored {
    Stored {
        id: self::id(id),
        version,
        create_time: time("2026-01-01T00:00:00Z"),
        update_time: time(update_time),
        delete_time: None,
    }
}

/// `customer()` after an update of a name, the phone, two address parts, the status and
/// the labels; and the fields before it.
fn updated() -> (Customer, CustomerData) {
    let before = customer().data;
    let mut after = customer();
    after.stored.version = 2;
    after.stored.update_time = time("2026-01-02T03:04:05.123456Z");
    after.data.family_name = "King".into();
    after.data.phone = None;
    if let Some(address) = after.data.address.as_mut() {
        address.locality = "Ockham".into();
        address.postal_code = "GU23 6NW".into();
    }
    after.data.status = Status::Prospective;
    after.data.labels.remove("source");
    (after, before)
}

/// The updated customer, soft-deleted with purging on.
fn deleted() -> Customer {
    let (mut customer, _) = updated();
    customer.stored.version = 3;
    customer.stored.update_time = time("2026-01-03T00:00:00Z");
    customer.stored.delete_time = Some(time("2026-01-03T00:00:00Z"));
    customer.expire_time = Some(time("2026-02-02T00:00:00Z"));
    customer
}

fn company() -> Company {
    Company {
        stored: stored(COMPANY_ID, 2, "2026-01-02T03:04:05.123456Z"),
        data: CompanyData {
            display_name: "Analytical Engines Ltd".into(),
            domain: Some("engines.example".into()),
            business_id: Some("GB-123456".into()),
            labels: BTreeMap::from([("size".into(), "small".into())]),
        },
    }
}

fn company_before() -> CompanyData {
    CompanyData {
        display_name: "Analytical Engines".into(),
        domain: None,
        business_id: Some("GB-123456".into()),
        labels: BTreeMap::new(),
    }
}

fn note() -> Note {
    Note {
        stored: stored(NOTE_ID, 3, "2026-01-02T03:04:05.123456Z"),
        customer_id: id(CUSTOMER_ID),
        author: "user:alice".into(),
        data: NoteData {
            text: "Prefers email.\nCall after 10:00.".into(),
        },
    }
}

fn customer_change(snapshot: Customer, previous: Option<CustomerData>) -> EventData {
    EventData::Customer(Box::new(Change {
        changed_fields: previous
            .as_ref()
            .map(|before| changed_fields(before, &snapshot.data))
            .unwrap_or_default(),
        previous,
        snapshot,
    }))
}

fn registered_event() -> EventData {
    customer_change(customer(), None)
}

fn updated_event() -> EventData {
    let (after, before) = updated();
    customer_change(after, Some(before))
}

fn purged_event() -> EventData {
    customer_change(deleted().purged(), None)
}

fn company_updated_event() -> EventData {
    let after = company();
    EventData::Company(Box::new(Change {
        changed_fields: company::changed_fields(&company_before(), &after.data),
        previous: Some(company_before()),
        snapshot: after,
    }))
}

fn note_deleted_event() -> EventData {
    EventData::Note(Box::new(Change {
        snapshot: note(),
        changed_fields: Vec::new(),
        previous: None,
    }))
}

fn note_updated_event() -> EventData {
    EventData::Note(Box::new(Change {
        snapshot: note(),
        changed_fields: vec!["text".into()],
        previous: Some(NoteData {
            text: "Prefers phone.".into(),
        }),
    }))
}

fn v1_sample(name: &str) -> serde_json::Value {
    let path = format!(
        "{}/tests/fixtures/encoding/v1/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("v1 sample");
    serde_json::from_str(&text).expect("v1 sample is JSON")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).expect("hex"))
        .collect()
}

// Version 2 payloads of an update of each resource (updates carry the most: snapshot,
// changed fields and the narrowed previous values).
const EVENT_CUSTOMER_UPDATED: &str = concat!(
    "022287020a2e637573746f6d6572732f30313930613762322d386331652d376331612d396432652d31663261",
    "3362346335643665122430313930613762322d386331652d376331612d396432652d31663261336234633564",
    "36651a0341646122044b696e672a0f616461406578616d706c652e636f6d3a2c0a143132205374204a616d65",
    "7327732053717561726512064f636b68616d22084755323320364e572a02474240024a2e636f6d70616e6965",
    "732f30313930613762322d386331652d376331612d396432652d326133623463356436653766520947422d31",
    "32333435365a0c0a04746965721204676f6c646205572f2232226a060880f2d6ca06720b08a5ebdcca061080",
    "94ef3a5a9b010a4b0a0b66616d696c795f6e616d650a0570686f6e650a10616464726573732e6c6f63616c69",
    "74790a13616464726573732e706f7374616c5f636f64650a067374617475730a066c6162656c73124c22084c",
    "6f76656c616365320d2b3434323037313233343536373a1212064c6f6e646f6e22085357315920344a484001",
    "5a0d0a06736f7572636512037765625a0c0a04746965721204676f6c64",
);

const EVENT_COMPANY_UPDATED: &str = concat!(
    "02aa01ee010ab5010a2e636f6d70616e6965732f30313930613762322d386331652d376331612d396432652d",
    "326133623463356436653766122430313930613762322d386331652d376331612d396432652d326133623463",
    "3564366537661a16416e616c79746963616c20456e67696e6573204c7464220f656e67696e65732e6578616d",
    "706c652a0947422d313233343536320d0a0473697a651205736d616c6c3a05572f22322242060880f2d6ca06",
    "4a0b08a5ebdcca06108094ef3a121e0a0c646973706c61795f6e616d650a06646f6d61696e0a066c6162656c",
    "731a141a12416e616c79746963616c20456e67696e6573",
);

const EVENT_NOTE_UPDATED: &str = concat!(
    "02fa01c2010aa5010a59637573746f6d6572732f30313930613762322d386331652d376331612d396432652d",
    "3166326133623463356436652f6e6f7465732f30313930613762322d386331652d376331612d396432652d33",
    "623463356436653766383012205072656665727320656d61696c2e0a43616c6c2061667465722031303a3030",
    "2e1a0a757365723a616c6963652205572f2233222a060880f2d6ca06320b08a5ebdcca06108094ef3a12060a",
    "04746578741a10120e507265666572732070686f6e652e",
);

const REPLAY_CUSTOMER: &str = concat!(
    "020a2e637573746f6d6572732f30313930613762322d386331652d376331612d396432652d31663261336234",
    "6335643665122430313930613762322d386331652d376331612d396432652d3166326133623463356436651a",
    "0341646122044b696e672a0f616461406578616d706c652e636f6d3a2c0a143132205374204a616d65732773",
    "2053717561726512064f636b68616d22084755323320364e572a02474240024a2e636f6d70616e6965732f30",
    "313930613762322d386331652d376331612d396432652d326133623463356436653766520947422d31323334",
    "35365a0c0a04746965721204676f6c646205572f2233226a060880f2d6ca0672060880b8e1ca067a060880b8",
    "e1ca068a01060880d2ffcb06",
);

const REPLAY_COMPANY: &str = concat!(
    "020a2e636f6d70616e6965732f30313930613762322d386331652d376331612d396432652d32613362346335",
    "6436653766122430313930613762322d386331652d376331612d396432652d3261336234633564366537661a",
    "16416e616c79746963616c20456e67696e6573204c7464220f656e67696e65732e6578616d706c652a094742",
    "2d313233343536320d0a0473697a651205736d616c6c3a05572f22322242060880f2d6ca064a0b08a5ebdcca",
    "06108094ef3a",
);

const REPLAY_NOTE: &str = concat!(
    "020a59637573746f6d6572732f30313930613762322d386331652d376331612d396432652d31663261336234",
    "63356436652f6e6f7465732f30313930613762322d386331652d376331612d396432652d3362346335643665",
    "3766383012205072656665727320656d61696c2e0a43616c6c2061667465722031303a30302e1a0a75736572",
    "3a616c6963652205572f2233222a060880f2d6ca06320b08a5ebdcca06108094ef3a",
);

#[test]
fn event_payloads_v2_are_pinned_and_read_back() {
    for (golden, event_type, data) in [
        (
            EVENT_CUSTOMER_UPDATED,
            EventType::CustomerUpdated,
            updated_event(),
        ),
        (
            EVENT_COMPANY_UPDATED,
            EventType::CompanyUpdated,
            company_updated_event(),
        ),
        (
            EVENT_NOTE_UPDATED,
            EventType::NoteUpdated,
            note_updated_event(),
        ),
    ] {
        assert_eq!(
            hex(&event_payload::encode(event_type, data.clone())),
            golden,
            "{event_type:?}"
        );
        assert_eq!(
            event_payload::decode(event_type, &unhex(golden)).expect("decodes"),
            data,
            "{event_type:?}"
        );
    }
}

#[test]
fn replays_v2_are_pinned_and_read_back() {
    assert_eq!(hex(&deleted().encode_replay()), REPLAY_CUSTOMER);
    assert_eq!(hex(&company().encode_replay()), REPLAY_COMPANY);
    assert_eq!(hex(&note().encode_replay()), REPLAY_NOTE);
    assert_eq!(
        Customer::decode_replay(&unhex(REPLAY_CUSTOMER)).expect("customer"),
        deleted()
    );
    assert_eq!(
        Company::decode_replay(&unhex(REPLAY_COMPANY)).expect("company"),
        company()
    );
    assert_eq!(
        Note::decode_replay(&unhex(REPLAY_NOTE)).expect("note"),
        note()
    );
}

#[test]
fn every_event_type_round_trips_through_version_2() {
    let customer_types = [
        (EventType::CustomerRegistered, registered_event()),
        (EventType::CustomerUpdated, updated_event()),
        (EventType::CustomerDeleted, customer_change(deleted(), None)),
        (EventType::CustomerUndeleted, registered_event()),
        (EventType::CustomerPurged, purged_event()),
    ];
    let company_data = |previous: bool| {
        EventData::Company(Box::new(Change {
            snapshot: company(),
            changed_fields: Vec::new(),
            previous: previous.then(|| company().data),
        }))
    };
    let others = [
        (EventType::CompanyCreated, company_data(false)),
        (EventType::CompanyUpdated, company_updated_event()),
        // An update that changed nothing still says so.
        (EventType::CompanyUpdated, company_data(true)),
        (EventType::CompanyDeleted, company_data(false)),
        (EventType::CompanyUndeleted, company_data(false)),
        (EventType::NoteAdded, note_deleted_event()),
        (EventType::NoteUpdated, note_updated_event()),
        (EventType::NoteDeleted, note_deleted_event()),
    ];
    for (event_type, data) in customer_types.into_iter().chain(others) {
        let payload = event_payload::encode(event_type, data.clone());
        assert_eq!(payload[0], VERSION_2);
        assert_eq!(
            event_payload::decode(event_type, &payload).expect("decodes"),
            data,
            "{event_type:?}"
        );
    }
}

/// The stored payload is the public `CustomerEvent` every channel carries, envelope aside.
#[test]
fn an_event_payload_is_the_served_event_without_its_envelope() {
    let data = updated_event();
    let served = event_to_proto(
        Event {
            event_id: Uuid::nil(),
            customer: format!("customers/{CUSTOMER_ID}"),
            recorded: NewEvent {
                event_type: EventType::CustomerUpdated,
                resource: format!("customers/{CUSTOMER_ID}"),
                sequence: 2,
                data: data.clone(),
                actor: "user:alice".into(),
                request_id: None,
            },
            occur_time: time("2026-01-02T03:04:05Z"),
            position: 7,
        },
        false,
    );
    let stored = pb::CustomerEvent::decode(
        &event_payload::encode(EventType::CustomerUpdated, data.clone())[1..],
    )
    .expect("protobuf");
    assert_eq!(
        stored,
        pb::CustomerEvent {
            snapshot: served.snapshot,
            kind: served.kind,
            ..pb::CustomerEvent::default()
        }
    );
}

#[test]
fn version_1_events_read_into_the_domain_values_they_were_written_from() {
    for (sample, event_type, expected) in [
        (
            "event_customer_registered",
            EventType::CustomerRegistered,
            registered_event(),
        ),
        (
            "event_customer_updated",
            EventType::CustomerUpdated,
            updated_event(),
        ),
        (
            "event_customer_purged",
            EventType::CustomerPurged,
            purged_event(),
        ),
        (
            "event_company_updated",
            EventType::CompanyUpdated,
            company_updated_event(),
        ),
        (
            "event_note_deleted",
            EventType::NoteDeleted,
            note_deleted_event(),
        ),
    ] {
        assert_eq!(
            event_payload::decode_v1(event_type, v1_sample(sample)).expect(sample),
            expected,
            "{sample}"
        );
        assert_eq!(
            event_payload::decode_stored(event_type, None, Some(v1_sample(sample))).expect(sample),
            expected,
            "{sample}"
        );
    }
    // Events recorded before `expire_time` existed, or that never had a diff, lack keys.
    let mut older = v1_sample("event_customer_registered");
    older["snapshot"]
        .as_object_mut()
        .expect("snapshot")
        .remove("expire_time");
    assert_eq!(
        event_payload::decode_v1(EventType::CustomerRegistered, older).expect("older"),
        registered_event()
    );
    // The event type decides the resource: a customer's data is no note.
    assert!(matches!(
        event_payload::decode_v1(
            EventType::NoteDeleted,
            v1_sample("event_customer_registered")
        ),
        Err(DecodeError::Json(_))
    ));
}

#[test]
fn version_1_replays_read_into_the_responses_they_were_written_from() {
    assert_eq!(
        Customer::decode_replay_v1(v1_sample("replay_customer")).expect("customer"),
        deleted()
    );
    assert_eq!(
        Company::decode_replay_v1(v1_sample("replay_company")).expect("company"),
        company()
    );
    assert_eq!(
        Note::decode_replay_v1(v1_sample("replay_note")).expect("note"),
        note()
    );
    // Version 2 wins when both exist; neither is no response.
    assert_eq!(
        replay::decode_stored::<Note>(
            Some(&unhex(REPLAY_NOTE)),
            Some(v1_sample("replay_customer"))
        )
        .expect("note"),
        Some(note())
    );
    assert_eq!(
        replay::decode_stored::<Customer>(None, Some(v1_sample("replay_customer")))
            .expect("customer"),
        Some(deleted())
    );
    assert!(
        replay::decode_stored::<Customer>(None, None)
            .expect("nothing")
            .is_none()
    );
}

/// Version 1 events are scrubbed in SQL (`db::events::scrub_customer`) with this snapshot,
/// version 2 ones in Rust: both must end as the same history.
#[test]
fn a_purge_scrubs_both_versions_to_the_same_history() {
    let purged = deleted().purged();
    assert_eq!(
        event_payload::snapshot_v1(&purged).expect("serialises"),
        v1_sample("purged_snapshot")
    );
    // What the SQL makes of the version 1 update and note events.
    let mut update_v1 = v1_sample("event_customer_updated");
    update_v1
        .as_object_mut()
        .expect("object")
        .remove("previous");
    update_v1["snapshot"] = v1_sample("purged_snapshot");
    let mut note_v1 = v1_sample("event_note_deleted");
    note_v1["snapshot"]["data"]["text"] = serde_json::Value::from("");

    let forgotten_update = updated_event().forget(&purged);
    let forgotten_note = note_updated_event().forget(&purged);
    assert_eq!(
        event_payload::decode_v1(EventType::CustomerUpdated, update_v1).expect("v1 update"),
        forgotten_update
    );
    assert_eq!(
        event_payload::decode_v1(EventType::NoteDeleted, note_v1).expect("v1 note"),
        note_deleted_event().forget(&purged)
    );
    let EventData::Customer(change) = &forgotten_update else {
        panic!("a customer event");
    };
    assert_eq!(
        (change.snapshot.clone(), change.previous.clone()),
        (purged.clone(), None)
    );
    assert_eq!(
        change.changed_fields,
        [
            "family_name",
            "phone",
            "address.locality",
            "address.postal_code",
            "status",
            "labels"
        ]
    );

    for (event_type, data, forgotten) in [
        (
            EventType::CustomerUpdated,
            updated_event(),
            forgotten_update.clone(),
        ),
        (
            EventType::NoteUpdated,
            note_updated_event(),
            forgotten_note.clone(),
        ),
    ] {
        let scrubbed = event_payload::scrub(
            event_type,
            &event_payload::encode(event_type, data.clone()),
            &purged,
        )
        .expect("scrubs");
        assert_eq!(
            event_payload::decode(event_type, &scrubbed).expect("decodes"),
            forgotten
        );
    }
    let EventData::Note(note) = forgotten_note else {
        panic!("a note event");
    };
    assert_eq!(
        (note.snapshot.data.text.as_str(), note.previous),
        ("", None)
    );
    assert_eq!(note.changed_fields, ["text"]);
}

#[test]
fn unreadable_payloads_are_errors_not_guesses() {
    let payload = unhex(EVENT_NOTE_UPDATED);
    assert!(matches!(
        event_payload::decode(EventType::NoteUpdated, &[]),
        Err(DecodeError::Empty)
    ));
    let mut future = payload.clone();
    future[0] = 3;
    assert!(matches!(
        event_payload::decode(EventType::NoteUpdated, &future),
        Err(DecodeError::UnknownVersion(3))
    ));
    assert!(matches!(
        event_payload::decode(EventType::NoteUpdated, &payload[..payload.len() - 3]),
        Err(DecodeError::Protobuf(_))
    ));
    assert!(matches!(
        event_payload::decode(EventType::NoteDeleted, &payload),
        Err(DecodeError::Invalid {
            field: "event.kind",
            ..
        })
    ));
    assert!(matches!(
        event_payload::decode_stored(EventType::NoteDeleted, None, None),
        Err(DecodeError::Invalid { .. })
    ));
    // Another resource's message is not mistaken for a customer.
    assert!(Customer::decode_replay(&unhex(REPLAY_NOTE)).is_err());
    assert!(Note::decode_replay(&unhex(REPLAY_COMPANY)).is_err());
    let misnamed = pb::Note {
        name: format!("companies/{COMPANY_ID}"),
        ..crate::resources::Resource::to_message(note())
    };
    assert!(matches!(
        Note::decode_replay(&super::versioned(&misnamed)),
        Err(DecodeError::Invalid {
            field: "note.name",
            ..
        })
    ));
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn optional() -> impl Strategy<Value = Option<String>> {
        prop::option::of("[a-z+0-9]{1,6}")
    }

    fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
        prop::collection::btree_map("[a-z]{1,3}", "[a-z]{0,3}", 0..3)
    }

    prop_compose! {
        fn address()(
            lines in prop::collection::vec("[a-z ]{0,5}", 0..3),
            locality in "[a-z]{0,4}",
            region in "[a-z]{0,4}",
            postal_code in "[0-9]{0,4}",
            country_code in "[A-Z]{2}",
        ) -> PostalAddress {
            PostalAddress { lines, locality, region, postal_code, country_code }
        }
    }

    prop_compose! {
        fn data()(
            given_name in "[a-z]{1,4}",
            family_name in "[a-z]{1,4}",
            email in "[a-z]{1,4}",
            phone in optional(),
            address in prop::option::of(address()),
            status in prop::sample::select(vec![Status::Active, Status::Prospective, Status::Inactive]),
            company in optional(),
            business_id in optional(),
            labels in labels(),
            external_ids in labels(),
        ) -> CustomerData {
            CustomerData {
                given_name, family_name, email, phone, address, status, company, business_id, labels,
                external_ids,
            }
        }
    }

    prop_compose! {
        fn company_data()(
            display_name in "[a-z]{1,4}",
            domain in optional(),
            business_id in optional(),
            labels in labels(),
        ) -> CompanyData {
            CompanyData { display_name, domain, business_id, labels }
        }
    }

    proptest! {
        /// As for customers, with the company's changed fields.
        #[test]
        fn every_company_update_reads_back_whole(before in company_data(), after in company_data()) {
            let mut snapshot = company();
            snapshot.data = after;
            let data = EventData::Company(Box::new(Change {
                changed_fields: company::changed_fields(&before, &snapshot.data),
                previous: Some(before),
                snapshot,
            }));
            let payload = event_payload::encode(EventType::CompanyUpdated, data.clone());
            prop_assert_eq!(
                event_payload::decode(EventType::CompanyUpdated, &payload).expect("decodes"),
                data
            );
        }

        /// The payload keeps only the changed fields of `previous`, yet every update reads
        /// back whole.
        #[test]
        fn every_customer_update_reads_back_whole(before in data(), after in data()) {
            let mut snapshot = customer();
            snapshot.data = after;
            let data = customer_change(snapshot, Some(before));
            let payload = event_payload::encode(EventType::CustomerUpdated, data.clone());
            prop_assert_eq!(
                event_payload::decode(EventType::CustomerUpdated, &payload).expect("decodes"),
                data
            );
        }
    }
}
