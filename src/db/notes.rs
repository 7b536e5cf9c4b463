//! Queries on `notes`: one function per statement.
//!
//! A customer's notes are listed newest first, keyset-paginated by `(create_time, id)`
//! descending, which the `(customer_id, create_time DESC, id DESC)` index answers directly.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::models::{NewNoteRow, NoteChanges, NoteRow};
use super::schema::notes;
use super::table::{first_under, versioned_statements};
use crate::core::store::Lock;

versioned_statements!(notes: NoteRow, NewNoteRow, NoteChanges);

/// The note `id` of customer `customer_id`, read under `lock`.
pub async fn find(
    conn: &mut AsyncPgConnection,
    customer_id: Uuid,
    id: Uuid,
    lock: Lock,
) -> QueryResult<Option<NoteRow>> {
    let query = notes::table
        .find(id)
        .filter(notes::customer_id.eq(customer_id))
        .select(NoteRow::as_select());
    first_under!(conn, query, lock)
}

/// Deletes the note for good.
pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    diesel::delete(notes::table.find(id))
        .execute(conn)
        .await
        .map(drop)
}

/// Deletes every note of a customer (a purge).
pub async fn delete_all_of(conn: &mut AsyncPgConnection, customer: Uuid) -> QueryResult<usize> {
    diesel::delete(notes::table.filter(notes::customer_id.eq(customer)))
        .execute(conn)
        .await
}

/// Up to `limit` notes of a customer, newest first, strictly after `(create_time, id)`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    customer_id: Option<Uuid>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<NoteRow>> {
    let mut query = notes::table
        .select(NoteRow::as_select())
        .order((notes::create_time.desc(), notes::id.desc()))
        .limit(limit)
        .into_boxed::<diesel::pg::Pg>();
    query = match customer_id {
        Some(customer_id) => query.filter(notes::customer_id.eq(customer_id)),
        // Every customer's: the notes of deleted customers are hidden with them. Written as
        // SQL because diesel's typed subquery does not box with this query's FROM clause.
        None => query.filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
            "notes.customer_id IN (SELECT id FROM customers WHERE delete_time IS NULL)",
        )),
    };
    if let Some(after) = after {
        query = query.filter(super::keyset::created_before("notes", after));
    }
    query.load(conn).await
}
