//! Notes as a resource of the core: the declaration plus the note's own rules.
//!
//! Notes belong to their customer and share its fate: while the customer is soft-deleted,
//! every note call on it (reads included) answers FAILED_PRECONDITION with reason
//! `CUSTOMER_DELETED`. The notes themselves are left untouched, so undeleting the customer
//! brings them back as they were. Note writes share-lock the customer row, so they and a
//! delete of the customer take turns. Notes are hard-deleted: their history lives on in the
//! event log, where a deletion takes the number after the note's last version.

use crate::{
    core::{
        mask::{Mask, mask_fields},
        resource::{Events, Reasons, Resource},
        store::{Lock, Repository, Storage},
    },
    domain::{
        customer::Customer,
        event::{Change, EventData, EventType},
        names::{CUSTOMER_TYPE, CustomerName, NOTE_TYPE, NoteName},
        note::{Note, NoteData, NoteField, NoteInput},
        stored::Stored,
    },
    pb,
    service::{Error, Result, error::reason},
};

impl Resource for Note {
    type Name = NoteName;
    type Input = NoteInput;
    type Data = NoteData;
    type Field = NoteField;
    type Message = pb::Note;

    const TYPE: &'static str = NOTE_TYPE;
    const PROTO: &'static str = "customer.v1.Note";
    const FIELD: &'static str = "note";
    const KIND: &'static str = "Note";
    const EVENTS: Events = Events {
        created: EventType::NoteAdded,
        updated: EventType::NoteUpdated,
        deleted: EventType::NoteDeleted,
        undeleted: None,
    };
    // Notes are never soft-deleted: these describe their customer's state.
    const REASONS: Reasons = Reasons {
        deleted: reason::DELETED,
        deleted_message: "is deleted",
        not_deleted: reason::NOT_DELETED,
    };

    fn name(&self) -> NoteName {
        Note::name(self)
    }

    fn stored(&self) -> &Stored {
        &self.stored
    }

    fn data(&self) -> &NoteData {
        &self.data
    }

    fn stand_in() -> NoteInput {
        NoteInput { text: "x".into() }
    }

    fn to_message(self) -> pb::Note {
        let stored = self.stored_message();
        pb::Note {
            text: self.data.text,
            author: self.author,
            ..stored
        }
    }

    fn input_from(note: pb::Note) -> NoteInput {
        NoteInput { text: note.text }
    }

    fn input_message(input: &NoteInput) -> pb::Note {
        pb::Note {
            text: input.text.clone(),
            ..pb::Note::default()
        }
    }

    fn legacy_input(input: &NoteInput) -> String {
        serde_json::to_string(input).unwrap_or_default()
    }

    fn legacy_mask(mask: &Mask<NoteField>) -> String {
        let text = match mask {
            Mask::All => true,
            Mask::Fields(fields) => fields.contains(&NoteField::Text),
        };
        format!("NoteMask {{ text: {text} }}")
    }

    fn event(_: EventType, snapshot: &Self, previous: Option<&NoteData>) -> EventData {
        let changed_fields = match previous {
            Some(before) if before.text != snapshot.data.text => vec!["text".to_owned()],
            _ => Vec::new(),
        };
        EventData::Note(Box::new(Change {
            changed_fields,
            previous: previous.cloned(),
            snapshot: snapshot.clone(),
        }))
    }

    /// A deletion (the note is gone, its version never bumped) takes `version + 1`, which
    /// keeps the note's sequence gap-free and its last event last.
    fn sequence(event_type: EventType, snapshot: &Self) -> i64 {
        match event_type {
            EventType::NoteDeleted => snapshot.stored.version + 1,
            _ => snapshot.stored.version,
        }
    }

    /// Writers share-lock the customer (`lock`), so a delete of the customer waits for them
    /// and they wait for a delete that started first (and then see the customer deleted).
    async fn check_parent<C: Storage>(conn: &mut C, name: NoteName, lock: bool) -> Result<()> {
        live_customer(conn, name.customer, lock).await
    }
}

/// The customer that owns notes, which must exist and be live.
pub(crate) async fn live_customer<C: Storage>(
    conn: &mut C,
    name: CustomerName,
    lock: bool,
) -> Result<()> {
    let lock = if lock { Lock::Share } else { Lock::None };
    let customer = Repository::<Customer>::find(conn, name, lock)
        .await?
        .ok_or_else(|| Error::customer_not_found(name))?;
    if customer.is_deleted() {
        return Err(Error::FailedPrecondition {
            message: format!(
                "{name} is deleted; its notes are hidden until the customer is undeleted"
            ),
            reason: reason::DELETED,
            resource_type: CUSTOMER_TYPE,
            resource_name: name.to_string(),
        });
    }
    Ok(())
}

mask_fields! {
    NoteField for NoteInput {
        Text = "text" => text,
    }
}
