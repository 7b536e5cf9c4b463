//! The note use cases: the core's write path for notes (see `crate::resources::notes` for
//! their rules), and ListNotes, newest first.

use super::{CustomerService, Error, Result};
use crate::domain::names::ResourceName as _;
use crate::{
    core::{
        list::{self, Paging},
        store::Transact,
        write::collect,
    },
    db::{
        self,
        customers::{Cursor, KeyValue},
        store::PgStore,
    },
    domain::{Violations, names::CustomerName, note::Note},
    pb,
    resources::notes::live_customer,
};

impl CustomerService<PgStore> {
    /// One page of a live customer's notes (or, for `customers/-`, every live customer's
    /// (AIP-159)), newest first.
    pub async fn list_notes(&self, request: &super::ListRequest) -> Result<super::Page<pb::Note>> {
        let mut violations = Violations::new();
        let parent = if request.parent == "customers/-" {
            Some(None)
        } else {
            collect(
                &mut violations,
                CustomerName::parse("parent", &request.parent),
            )
            .map(Some)
        };
        let size = list::page_size(&mut violations, request.page_size);
        let Some(parent) = violations.into_result(parent)? else {
            return Err(Error::internal(&super::Unreachable(
                "validated note list without parent",
            )));
        };
        let query = super::PageTokens::query_fingerprint(&["notes", &request.parent]);
        let paging: Paging<Cursor> =
            list::paging(&self.page_tokens, size, &request.page_token, query)?;
        let after = list::time_and_id(paging.after.as_ref())?;
        let limit = paging.limit();
        let rows = self
            .writer
            .store
            .read(async move |conn| {
                if let Some(parent) = parent {
                    live_customer(conn, parent, false).await?;
                }
                Ok(db::notes::list(conn, parent.map(|parent| parent.id()), after, limit).await?)
            })
            .await?;
        let notes = rows.into_iter().map(|row| {
            let note = Note::from(row);
            let cursor = Cursor {
                values: vec![KeyValue::Time(note.stored.create_time)],
                id: note.stored.id,
            };
            (cursor, note)
        });
        Ok(list::message_page(notes, &paging, &self.page_tokens))
    }
}
