//! Queries of MergeCustomers and UnmergeCustomers (issue 19): locking the customers of a
//! merge, moving notes between customers, retiring a source and bringing it back, and the
//! merge records (`customer_merges`).

use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    sql_types::{Array, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{
    models::{CustomerChanges, CustomerRow},
    schema::{customer_merges, customers},
    table::bumped,
};

/// The customers `ids`, deleted or not, locked `FOR UPDATE` in id order (so that two merges
/// of overlapping customers take turns instead of deadlocking).
pub async fn lock_customers(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> QueryResult<Vec<CustomerRow>> {
    customers::table
        .filter(customers::id.eq_any(ids))
        .order(customers::id.asc())
        .for_update()
        .select(CustomerRow::as_select())
        .load(conn)
        .await
}

/// A note moved by [`move_notes`]: its id and the customer it belonged to.
#[derive(Debug, Clone, Copy, QueryableByName)]
pub struct Moved {
    /// The note.
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    /// Its customer before the move.
    #[diesel(sql_type = SqlUuid)]
    pub previous: Uuid,
}

/// Gives every note of `sources` to `target` (ids and versions unchanged: a note keeps its
/// etag; its name changes with its customer); the notes moved, oldest first.
pub async fn move_notes(
    conn: &mut AsyncPgConnection,
    target: Uuid,
    sources: &[Uuid],
) -> QueryResult<Vec<Moved>> {
    let mut moved: Vec<Moved> = diesel::sql_query(
        "WITH old AS (SELECT id, customer_id, create_time FROM notes \
                      WHERE customer_id = ANY($2) FOR UPDATE) \
         UPDATE notes n SET customer_id = $1 FROM old WHERE n.id = old.id \
         RETURNING n.id, old.customer_id AS previous",
    )
    .bind::<SqlUuid, _>(target)
    .bind::<Array<SqlUuid>, _>(sources)
    .load(conn)
    .await?;
    // UUID v7 ids: oldest first.
    moved.sort_by_key(|note| note.id);
    Ok(moved)
}

/// Gives the notes `ids` still held by `target` back to their customers `to` (pairwise);
/// the notes moved (a note deleted since stays deleted).
pub async fn move_notes_back(
    conn: &mut AsyncPgConnection,
    target: Uuid,
    ids: &[Uuid],
    to: &[Uuid],
) -> QueryResult<Vec<Moved>> {
    let mut moved: Vec<Moved> = diesel::sql_query(
        "UPDATE notes n SET customer_id = m.source \
         FROM unnest($2::uuid[], $3::uuid[]) AS m(id, source) \
         WHERE n.id = m.id AND n.customer_id = $1 \
         RETURNING n.id, $1 AS previous",
    )
    .bind::<SqlUuid, _>(target)
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<Array<SqlUuid>, _>(to)
    .load(conn)
    .await?;
    moved.sort_by_key(|note| note.id);
    Ok(moved)
}

/// Retires a merged source in one write (one version): soft-deleted, `merged_into`
/// `target`, its external ids gone (they moved to the target).
pub async fn retire_source(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    target: Uuid,
    actor: &str,
) -> QueryResult<CustomerRow> {
    diesel::update(customers::table.find(id))
        .set((
            customers::external_ids.eq(serde_json::json!({})),
            customers::merged_into.eq(Some(target)),
            customers::delete_time.eq(super::table::now_if(true)),
            bumped!(customers),
            customers::updated_by.eq(actor),
        ))
        .returning(CustomerRow::as_returning())
        .get_result(conn)
        .await
}

/// Brings a merged source back in one write (one version): live, no `merged_into`, with
/// the fields `changes` (what it had before the merge).
pub async fn restore_source(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    changes: &CustomerChanges,
) -> QueryResult<CustomerRow> {
    diesel::update(customers::table.find(id))
        .set((
            changes,
            customers::merged_into.eq(None::<Uuid>),
            customers::delete_time.eq(None::<DateTime<Utc>>),
            bumped!(customers),
        ))
        .returning(CustomerRow::as_returning())
        .get_result(conn)
        .await
}

/// A `customer_merges` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = customer_merges, check_for_backend(diesel::pg::Pg))]
pub struct MergeRow {
    /// The merge's id.
    pub id: Uuid,
    /// The customer merged into.
    pub target_id: Uuid,
    /// The merged customers, in request order.
    pub source_ids: Vec<Uuid>,
    /// Who merged.
    pub actor: String,
    /// Under which request id.
    pub request_id: Option<Uuid>,
    /// When.
    pub merge_time: DateTime<Utc>,
    /// The target's fields the merge changed.
    pub changed_fields: Vec<String>,
    /// The target before the merge (`0x02 ||` customer.v1.Customer).
    pub target_before: Vec<u8>,
    /// The target after it.
    pub target_after: Vec<u8>,
    /// Each source before it, as `source_ids`.
    pub sources_before: Vec<Vec<u8>>,
    /// The notes moved.
    pub moved_note_ids: Vec<Uuid>,
    /// The customer each of those belonged to.
    pub moved_note_sources: Vec<Uuid>,
    /// When it was undone.
    pub unmerge_time: Option<DateTime<Utc>>,
    /// Who undid it.
    pub unmerged_by: Option<String>,
}

/// Stores a merge record (its `merge_time` is the database's clock); the row as stored.
pub async fn insert(conn: &mut AsyncPgConnection, row: &MergeRow) -> QueryResult<MergeRow> {
    diesel::insert_into(customer_merges::table)
        .values((
            customer_merges::id.eq(row.id),
            customer_merges::target_id.eq(row.target_id),
            customer_merges::source_ids.eq(&row.source_ids),
            customer_merges::actor.eq(&row.actor),
            customer_merges::request_id.eq(row.request_id),
            customer_merges::changed_fields.eq(&row.changed_fields),
            customer_merges::target_before.eq(&row.target_before),
            customer_merges::target_after.eq(&row.target_after),
            customer_merges::sources_before.eq(&row.sources_before),
            customer_merges::moved_note_ids.eq(&row.moved_note_ids),
            customer_merges::moved_note_sources.eq(&row.moved_note_sources),
        ))
        .returning(MergeRow::as_returning())
        .get_result(conn)
        .await
}

/// The merge `id` into `target`, or (`id` none) the latest merge into `target` not undone
/// yet, locked for its unmerge.
pub async fn find_for_unmerge(
    conn: &mut AsyncPgConnection,
    target: Uuid,
    id: Option<Uuid>,
) -> QueryResult<Option<MergeRow>> {
    let query = customer_merges::table
        .filter(customer_merges::target_id.eq(target))
        .select(MergeRow::as_select())
        .for_update();
    match id {
        Some(id) => query.filter(customer_merges::id.eq(id)).first(conn).await,
        None => {
            query
                .filter(customer_merges::unmerge_time.is_null())
                .order((
                    customer_merges::merge_time.desc(),
                    customer_merges::id.desc(),
                ))
                .first(conn)
                .await
        }
    }
    .optional()
}

/// Marks a merge undone by `actor`; the row as stored.
pub async fn mark_unmerged(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    actor: &str,
) -> QueryResult<MergeRow> {
    diesel::update(customer_merges::table.find(id))
        .set((
            customer_merges::unmerge_time.eq(super::table::now_if(true)),
            customer_merges::unmerged_by.eq(actor),
        ))
        .returning(MergeRow::as_returning())
        .get_result(conn)
        .await
}

/// Deletes every merge record naming `customer` (as target or source): they hold its
/// personal data, and what they could undo is gone with it (a purge, an erasure). The
/// number deleted.
pub async fn forget_customer(conn: &mut AsyncPgConnection, customer: Uuid) -> QueryResult<usize> {
    diesel::delete(
        customer_merges::table.filter(
            customer_merges::target_id
                .eq(customer)
                .or(customer_merges::source_ids.contains(vec![customer])),
        ),
    )
    .execute(conn)
    .await
}
