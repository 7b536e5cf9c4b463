//! Queries on `operations`: the long-running operations (ImportCustomers), one function per
//! statement. An import's row is also its resume point: every batch moves it forward in the
//! batch's own transaction ([`advance`]), under the row lock taken by [`lock`].

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::operations;

/// An `operations` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = operations, check_for_backend(diesel::pg::Pg))]
pub struct OperationRow {
    /// Primary key (`operations/{id}`).
    pub id: Uuid,
    /// What runs (`customers.import`).
    pub kind: String,
    /// Who started it.
    pub creator: String,
    /// The starting request's fingerprint (settings and caller).
    pub fingerprint: Vec<u8>,
    /// 1 running, 2 interrupted, 3 succeeded, 4 failed, 5 cancelled.
    pub state: i16,
    /// A cancel was asked for.
    pub cancel_requested: bool,
    /// Import mode number.
    pub mode: i16,
    /// Dry run.
    pub validate_only: bool,
    /// Rows read.
    pub rows_read: i64,
    /// Input rows the committed batches covered (the resume point).
    pub rows_consumed: i64,
    /// Rows committed.
    pub rows_committed: i64,
    /// Rows rejected.
    pub rows_rejected: i64,
    /// Customers created.
    pub created: i64,
    /// Customers updated.
    pub updated: i64,
    /// Rows that changed nothing.
    pub unchanged: i64,
    /// The report so far (encoded ImportCustomersResponse).
    pub report: Option<Vec<u8>>,
    /// gRPC code of a failure.
    pub error_code: Option<i32>,
    /// Message of a failure.
    pub error_message: Option<String>,
    /// Start time.
    pub create_time: DateTime<Utc>,
    /// Last change.
    pub update_time: DateTime<Utc>,
}

/// A new operation.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = operations)]
pub struct NewOperationRow {
    /// Primary key.
    pub id: Uuid,
    /// What runs.
    pub kind: String,
    /// Who starts it.
    pub creator: String,
    /// The request's fingerprint.
    pub fingerprint: Vec<u8>,
    /// Initial state.
    pub state: i16,
    /// Import mode number.
    pub mode: i16,
    /// Dry run.
    pub validate_only: bool,
}

/// The progress a batch (or the end of an import) records.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = operations)]
pub struct Progress {
    /// State after the write.
    pub state: i16,
    /// Rows read.
    pub rows_read: i64,
    /// Resume point.
    pub rows_consumed: i64,
    /// Rows committed.
    pub rows_committed: i64,
    /// Rows rejected.
    pub rows_rejected: i64,
    /// Customers created.
    pub created: i64,
    /// Customers updated.
    pub updated: i64,
    /// Unchanged rows.
    pub unchanged: i64,
    /// The report so far.
    pub report: Option<Vec<u8>>,
    /// gRPC code of a failure.
    pub error_code: Option<i32>,
    /// Message of a failure.
    pub error_message: Option<String>,
}

/// Inserts `row` unless an operation with its id exists; then returns the operation,
/// locked for this transaction.
pub async fn insert_or_lock(
    conn: &mut AsyncPgConnection,
    row: &NewOperationRow,
) -> QueryResult<OperationRow> {
    diesel::insert_into(operations::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    lock(conn, row.id)
        .await?
        .ok_or(diesel::result::Error::NotFound)
}

/// The operation, locked for this transaction (`FOR UPDATE`).
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<OperationRow>> {
    operations::table
        .find(id)
        .select(OperationRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// The operation.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<OperationRow>> {
    operations::table
        .find(id)
        .select(OperationRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Records `progress` (and the time of it).
pub async fn advance(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    progress: &Progress,
) -> QueryResult<OperationRow> {
    diesel::update(operations::table.find(id))
        .set((progress, operations::update_time.eq(diesel::dsl::now)))
        .returning(OperationRow::as_returning())
        .get_result(conn)
        .await
}

/// Sets the state alone (e.g. running again on a resume), returning the row.
pub async fn set_state(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    state: i16,
) -> QueryResult<OperationRow> {
    diesel::update(operations::table.find(id))
        .set((
            operations::state.eq(state),
            operations::update_time.eq(diesel::dsl::now),
        ))
        .returning(OperationRow::as_returning())
        .get_result(conn)
        .await
}

/// Asks a running operation to stop; the operation as it is now (`None`: no such id).
pub async fn request_cancel(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<OperationRow>> {
    diesel::update(operations::table.find(id))
        .set((
            operations::cancel_requested.eq(true),
            operations::update_time.eq(diesel::dsl::now),
        ))
        .returning(OperationRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Up to `limit` operations, newest first (ids are UUIDv7 or caller-chosen request ids;
/// the order is by id), of `creator` only when given, finished or not when `done` says,
/// after the id `after`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    creator: Option<&str>,
    done: Option<bool>,
    after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<OperationRow>> {
    let mut query = operations::table
        .select(OperationRow::as_select())
        .order(operations::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(creator) = creator {
        query = query.filter(operations::creator.eq(creator.to_owned()));
    }
    match done {
        Some(true) => query = query.filter(operations::state.ge(3)),
        Some(false) => query = query.filter(operations::state.lt(3)),
        None => {}
    }
    if let Some(after) = after {
        query = query.filter(operations::id.lt(after));
    }
    query.load(conn).await
}

/// Forgets operations that have not moved for `ttl` and are not in state `running` (an
/// import's row is its request id's record, kept as long as request ids are:
/// `REQUEST_ID_TTL`); how many.
pub async fn purge(
    conn: &mut AsyncPgConnection,
    ttl: std::time::Duration,
    running: i16,
) -> QueryResult<usize> {
    let cutoff = Utc::now() - chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(1));
    diesel::delete(
        operations::table
            .filter(operations::update_time.lt(cutoff))
            .filter(operations::state.ne(running)),
    )
    .execute(conn)
    .await
}
