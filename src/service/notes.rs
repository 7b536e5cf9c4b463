//! The note use cases: add, read, list, edit and delete the notes of a customer.
//!
//! Notes belong to their customer and share its fate: while the customer is soft-deleted,
//! every note call on it (reads included) answers FAILED_PRECONDITION with reason
//! `CUSTOMER_DELETED`, the same answer as any other write to a deleted customer. The notes
//! themselves are left untouched, so undeleting the customer brings them back as they were.
//! Note writes share-lock the customer row, so they and a delete of the customer take turns.
//!
//! Edits are etag-checked under the note's row lock, so two editors cannot overwrite each
//! other: the second one's etag is stale and the call is ABORTED. Notes are hard-deleted:
//! their history lives on in the event log (NoteAdded, NoteUpdated, NoteDeleted).

use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::{
    DEFAULT_PAGE_SIZE, Error, MAX_PAGE_SIZE, Result, Unreachable, check_etag_of, claim, collect,
    complete,
    error::reason,
    events::{Origin, record_note},
    fingerprint, json,
    page_token::PageTokens,
};
use crate::{
    db::{
        customers as customer_queries,
        customers::{Cursor, KeyValue},
        models::{CustomerRow, NewNoteRow},
        notes as queries,
    },
    domain::{
        Violations,
        event::EventType,
        names::{self, CUSTOMER_TYPE, CustomerName, NOTE_TYPE, NoteName},
        note::{Note, NoteInput, NoteMask},
    },
};

/// A ListNotes request.
#[derive(Debug, Clone, Default)]
pub struct NoteListRequest {
    /// `customers/{id}`.
    pub parent: String,
    /// Requested page size (0 = default).
    pub page_size: i32,
    /// Token from the previous page.
    pub page_token: String,
}

/// One page of ListNotes.
#[derive(Debug, Clone)]
pub struct NotePage {
    /// The notes, newest first.
    pub notes: Vec<Note>,
    /// Token for the next page; empty on the last one.
    pub next_page_token: String,
}

/// An UpdateNote request.
#[derive(Debug, Clone, Default)]
pub struct NoteUpdateRequest {
    /// `note.name`.
    pub name: String,
    /// `note.etag`: when non-empty, must match.
    pub etag: String,
    /// The new values.
    pub input: NoteInput,
    /// `update_mask.paths`; `None` (or empty) means "the fields set in `input`".
    pub update_mask: Option<Vec<String>>,
    /// Idempotency key.
    pub request_id: String,
}

impl super::CustomerService {
    /// Adds a note to a live customer; `actor` becomes its author.
    pub async fn create_note(
        &self,
        parent: &str,
        input: NoteInput,
        request_id: &str,
        actor: &str,
    ) -> Result<Note> {
        let mut violations = Violations::new();
        let customer = collect(&mut violations, CustomerName::parse("parent", parent));
        let request_id = collect(
            &mut violations,
            names::parse_request_id("request_id", request_id),
        );
        let data = match input.validate("note") {
            Ok(data) => Some(data),
            Err(more) => {
                violations.extend(more);
                None
            }
        };
        let (Some(customer), Some(request_id), Some(data)) =
            violations.into_result((customer, request_id, data))?
        else {
            return Err(Error::internal(&Unreachable(
                "validated note create without parts",
            )));
        };
        let fingerprint = fingerprint("CreateNote", &[actor, parent, &json(&input)]);
        let row = NewNoteRow {
            id: Uuid::now_v7(),
            customer_id: customer.id(),
            text: data.text,
            author: actor.to_owned(),
            updated_by: Some(actor.to_owned()),
        };
        self.write(async move |conn| {
            if let Some(replayed) = claim(conn, request_id, &fingerprint).await? {
                return Ok(replayed);
            }
            live_customer(conn, customer, true).await?;
            let note = Note::from(queries::insert(conn, &row).await?);
            let origin = Origin {
                actor: &row.author,
                request_id,
            };
            record_note(conn, EventType::NoteAdded, &note, None, origin).await?;
            complete(conn, request_id, &note).await?;
            Ok(note)
        })
        .await
    }

    /// Returns one note of a live customer.
    pub async fn get_note(&self, name: &str) -> Result<Note> {
        let name = NoteName::parse("name", name)?;
        let mut conn = self.pool.get().await?;
        live_customer(&mut conn, name.customer, false).await?;
        let row = queries::find(&mut conn, name.customer.id(), name.id())
            .await?
            .ok_or_else(|| Error::not_found(NOTE_TYPE, name))?;
        Ok(Note::from(row))
    }

    /// One page of a live customer's notes, newest first.
    pub async fn list_notes(&self, request: &NoteListRequest) -> Result<NotePage> {
        let mut violations = Violations::new();
        // `customers/-`: every live customer's notes (AIP-159).
        let parent = if request.parent == "customers/-" {
            Some(None)
        } else {
            collect(
                &mut violations,
                CustomerName::parse("parent", &request.parent),
            )
            .map(Some)
        };
        let page_size = match request.page_size {
            size if size < 0 => {
                violations.add("page_size", "must not be negative");
                DEFAULT_PAGE_SIZE
            }
            0 => DEFAULT_PAGE_SIZE,
            size => size.min(MAX_PAGE_SIZE),
        };
        let Some(parent) = violations.into_result(parent)? else {
            return Err(Error::internal(&Unreachable(
                "validated note list without parent",
            )));
        };
        let query = PageTokens::query_fingerprint(&["notes", &request.parent]);
        let after = match request.page_token.as_str() {
            "" => None,
            token => {
                let invalid = |message: String| {
                    Error::invalid_field(reason::INVALID_PAGE_TOKEN, "page_token", message)
                };
                let cursor = self
                    .page_tokens
                    .decode(token, &query)
                    .map_err(|e| invalid(e.to_string()))?;
                match cursor.values.as_slice() {
                    [KeyValue::Time(time)] => Some((*time, cursor.id)),
                    _ => return Err(invalid("is not a valid page token".into())),
                }
            }
        };
        let mut conn = self.pool.get().await?;
        if let Some(parent) = parent {
            live_customer(&mut conn, parent, false).await?;
        }
        let mut rows = queries::list(
            &mut conn,
            parent.map(|parent| parent.id()),
            after,
            i64::from(page_size) + 1,
        )
        .await?;
        drop(conn);
        let more = rows.len() > page_size as usize;
        rows.truncate(page_size as usize);
        let next_page_token = match rows.last() {
            Some(last) if more => self.page_tokens.encode(
                &query,
                &Cursor {
                    values: vec![KeyValue::Time(last.create_time)],
                    id: last.id,
                },
            ),
            _ => String::new(),
        };
        Ok(NotePage {
            notes: rows.into_iter().map(Note::from).collect(),
            next_page_token,
        })
    }

    /// Changes a note's text (AIP-134), checking the etag under the note's row lock.
    pub async fn update_note(&self, request: NoteUpdateRequest, actor: &str) -> Result<Note> {
        let mut violations = Violations::new();
        let name = collect(&mut violations, NoteName::parse("note.name", &request.name));
        let request_id = collect(
            &mut violations,
            names::parse_request_id("request_id", &request.request_id),
        );
        let mask = match request.update_mask.as_deref() {
            Some(paths) if !paths.is_empty() => {
                let (mask, more) = NoteMask::parse("update_mask", paths);
                violations.extend(more);
                mask
            }
            _ => NoteMask {
                text: !request.input.text.is_empty(),
            },
        };
        let text = if mask.text {
            match request.input.validate("note") {
                Ok(data) => Some(data.text),
                Err(more) => {
                    violations.extend(more);
                    None
                }
            }
        } else {
            None
        };
        let (Some(name), Some(request_id)) = violations.into_result((name, request_id))? else {
            return Err(Error::internal(&Unreachable(
                "validated note update without parts",
            )));
        };
        let fingerprint = fingerprint(
            "UpdateNote",
            &[
                actor,
                &request.name,
                &request.etag,
                &format!("{mask:?}"),
                &json(&request.input),
            ],
        );
        let actor = actor.to_owned();
        self.write(async move |conn| {
            if let Some(replayed) = claim(conn, request_id, &fingerprint).await? {
                return Ok(replayed);
            }
            let current = locked_note(conn, name, &request.etag).await?;
            let note = match text {
                Some(text) if text != current.data.text => {
                    let row = queries::update_text(conn, current.id, &text, &actor).await?;
                    let updated = Note::from(row);
                    let origin = Origin {
                        actor: &actor,
                        request_id,
                    };
                    record_note(
                        conn,
                        EventType::NoteUpdated,
                        &updated,
                        Some(&current.data),
                        origin,
                    )
                    .await?;
                    updated
                }
                // Nothing changes: no write, no new etag, no event.
                _ => current,
            };
            complete(conn, request_id, &note).await?;
            Ok(note)
        })
        .await
    }

    /// Deletes a note for good, checking the etag.
    pub async fn delete_note(
        &self,
        name: &str,
        etag: &str,
        request_id: &str,
        actor: &str,
    ) -> Result<()> {
        let mut violations = Violations::new();
        let parsed = collect(&mut violations, NoteName::parse("name", name));
        let request_id = collect(
            &mut violations,
            names::parse_request_id("request_id", request_id),
        );
        let (Some(parsed), Some(request_id)) = violations.into_result((parsed, request_id))? else {
            return Err(Error::internal(&Unreachable(
                "validated note delete without parts",
            )));
        };
        let fingerprint = fingerprint("DeleteNote", &[actor, name, etag]);
        let etag = etag.to_owned();
        let actor = actor.to_owned();
        self.write(async move |conn| {
            // A retry replays the deleted note (the answer is empty either way).
            if claim::<Note>(conn, request_id, &fingerprint)
                .await?
                .is_some()
            {
                return Ok(());
            }
            let current = locked_note(conn, parsed, &etag).await?;
            queries::delete(conn, current.id).await?;
            let origin = Origin {
                actor: &actor,
                request_id,
            };
            record_note(conn, EventType::NoteDeleted, &current, None, origin).await?;
            complete(conn, request_id, &current).await?;
            Ok(())
        })
        .await
    }
}

/// The customer that owns notes, which must exist and be live. Writers share-lock it
/// (`lock`), so a delete of the customer waits for them and they wait for a delete that
/// started first (and then see the customer deleted).
async fn live_customer(
    conn: &mut AsyncPgConnection,
    name: CustomerName,
    lock: bool,
) -> Result<CustomerRow> {
    let row = if lock {
        customer_queries::find_for_share(conn, name.id()).await?
    } else {
        customer_queries::find(conn, name.id()).await?
    };
    let row = row.ok_or_else(|| Error::customer_not_found(name))?;
    if row.delete_time.is_some() {
        return Err(Error::FailedPrecondition {
            message: format!(
                "{name} is deleted; its notes are hidden until the customer is undeleted"
            ),
            reason: reason::DELETED,
            resource_type: CUSTOMER_TYPE,
            resource_name: name.to_string(),
        });
    }
    Ok(row)
}

/// The note of a live customer, locked for this transaction, after checking the etag.
async fn locked_note(conn: &mut AsyncPgConnection, name: NoteName, etag: &str) -> Result<Note> {
    live_customer(conn, name.customer, true).await?;
    let row = queries::find_for_update(conn, name.customer.id(), name.id())
        .await?
        .ok_or_else(|| Error::not_found(NOTE_TYPE, name))?;
    let current = Note::from(row);
    check_etag_of(&name.to_string(), NOTE_TYPE, &current.etag(), etag)?;
    Ok(current)
}
