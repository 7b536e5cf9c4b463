//! The statements every resource table shares, declared once and stamped out per table.
//!
//! Every resource row carries a `version` and an `update_time` that each write bumps;
//! customers and companies are also soft-deleted (`delete_time`). The statements below differ
//! between tables only in the table and its row types, so they are macros over those; what
//! a table has of its own stays in its module. The locking modes are diesel marker types
//! that are not public, which is why a read under a [`Lock`](crate::core::store::Lock) is a
//! macro too rather than a generic function.

use diesel::{
    dsl::{AsExprOf, sql},
    expression::{SqlLiteral, UncheckedBind},
    sql_types::{Bool, Nullable, Timestamptz},
};

/// `now()` when `deleted`, else NULL: the `delete_time` a soft delete or a restore writes.
/// One statement either way (a bound flag), so both stay one cached prepared statement.
pub(crate) fn now_if(deleted: bool) -> NowIf {
    sql("CASE WHEN ")
        .bind::<Bool, _>(deleted)
        .sql(" THEN now() END")
}

/// The SQL of [`now_if`].
pub(crate) type NowIf = SqlLiteral<
    Nullable<Timestamptz>,
    UncheckedBind<SqlLiteral<Nullable<Timestamptz>>, AsExprOf<bool, Bool>>,
>;

/// `query.first(conn)` under `lock`, as an `Option`: `FOR SHARE` or `FOR UPDATE` until the
/// end of the transaction, or a plain read. `query` has a fixed shape: its SQL is rendered
/// once ([`rendered_once!`](crate::db::statement::rendered_once)).
macro_rules! first_under {
    ($conn:expr, $query:expr, $lock:expr) => {{
        use $crate::db::statement::rendered_once;
        let query = $query.limit(1);
        match $lock {
            $crate::core::store::Lock::None => rendered_once!(query).get_result($conn).await,
            $crate::core::store::Lock::Share => {
                rendered_once!(query.for_share()).get_result($conn).await
            }
            $crate::core::store::Lock::Update => {
                rendered_once!(query.for_update()).get_result($conn).await
            }
        }
        .optional()
    }};
}
pub(crate) use first_under;

/// The assignments of every write of a row of `$table`: the next version, the update time.
macro_rules! bumped {
    ($table:ident) => {
        (
            $table::version.eq($table::version + 1),
            $table::update_time.eq(diesel::dsl::now),
        )
    };
}
pub(crate) use bumped;

/// `insert` and `update` of a versioned table `$table` with row type `$row`, new-row type
/// `$new` and changeset `$changes`; an update also makes the assignments `$also`.
macro_rules! versioned_statements {
    ($table:ident: $row:ident, $new:ident, $changes:ident $(, also $also:expr)?) => {
        /// Inserts a new row and returns it as stored.
        pub async fn insert(conn: &mut AsyncPgConnection, row: &$new) -> QueryResult<$row> {
            $crate::db::statement::rendered_once!(
                diesel::insert_into($table::table)
                    .values(row)
                    .returning($row::as_returning())
            )
            .get_result(conn)
            .await
        }

        /// Writes new column values, bumping the version and update time.
        pub async fn update(
            conn: &mut AsyncPgConnection,
            id: Uuid,
            changes: &$changes,
        ) -> QueryResult<$row> {
            $crate::db::statement::rendered_once!(
                diesel::update($table::table.find(id))
                    .set((changes, $crate::db::table::bumped!($table) $(, $also)?))
                    .returning($row::as_returning())
            )
            .get_result(conn)
            .await
        }
    };
}
pub(crate) use versioned_statements;

/// The statements of a soft-deleted resource table: [`versioned_statements!`], reads by id
/// (one under a lock, or many), soft delete and restore, and the rows a listing starts
/// from.
macro_rules! soft_deleted_statements {
    ($table:ident: $row:ident, $new:ident, $changes:ident) => {
        // A write of the columns leaves the row live: an update of a live row, or an undelete
        // that replaces the columns of a soft-deleted one in the same write (one version,
        // one event).
        $crate::db::table::versioned_statements!(
            $table: $row, $new, $changes,
            also $table::delete_time.eq(None::<chrono::DateTime<chrono::Utc>>)
        );

        /// The row with this id, deleted or not.
        pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<$row>> {
            find_locked(conn, id, $crate::core::store::Lock::None).await
        }

        /// The row with this id, deleted or not, read under `lock`.
        pub async fn find_locked(
            conn: &mut AsyncPgConnection,
            id: Uuid,
            lock: $crate::core::store::Lock,
        ) -> QueryResult<Option<$row>> {
            $crate::db::table::first_under!(
                conn,
                $table::table.find(id).select($row::as_select()),
                lock
            )
        }

        /// Soft-deletes (`deleted`) or restores a row, bumping its version. A restore fails
        /// with the unique violation of a column another live row holds meanwhile.
        pub async fn set_deleted(
            conn: &mut AsyncPgConnection,
            id: Uuid,
            actor: &str,
            deleted: bool,
        ) -> QueryResult<$row> {
            diesel::update($table::table.find(id))
                .set((
                    $crate::db::table::bumped!($table),
                    $table::updated_by.eq(actor),
                    $table::delete_time.eq($crate::db::table::now_if(deleted)),
                ))
                .returning($row::as_returning())
                .get_result(conn)
                .await
        }

        /// Every row (`show_deleted`) or the live ones, for a listing to narrow down.
        fn rows<'a>(
            show_deleted: bool,
        ) -> $crate::db::keyset::Rows<'a, $row, $table::table> {
            let rows = $table::table.select($row::as_select()).into_boxed();
            if show_deleted {
                rows
            } else {
                rows.filter($table::delete_time.is_null())
            }
        }

        /// The rows with these ids, deleted or not, in no particular order.
        pub async fn find_many(
            conn: &mut AsyncPgConnection,
            ids: &[Uuid],
        ) -> QueryResult<Vec<$row>> {
            $table::table
                .filter($table::id.eq_any(ids))
                .select($row::as_select())
                .load(conn)
                .await
        }
    };
}
pub(crate) use soft_deleted_statements;
