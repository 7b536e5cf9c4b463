//! Keyset pagination, shared by the listings of every resource table.
//!
//! A page starts strictly after the last row of the previous page in the requested order
//! (with the id as tie-breaker), written as a row-value comparison
//! `(family_name, id) > ($1, $2)` that PostgreSQL answers with an index range scan. Page
//! 10,000 therefore costs what page 1 costs, and rows inserted during a walk can never make
//! a row appear twice.
//!
//! A table takes part by declaring its sort keys with `sort_keys!`: the column each key
//! orders by and how its value is read from a row (what a page token carries).

use chrono::{DateTime, Utc};
use diesel::{
    Identifiable,
    dsl::AsSelect,
    expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping, is_aggregate},
    pg::Pg,
    prelude::*,
    query_builder::{AstPass, BoxedSelectStatement, FromClause, QueryFragment, QueryId},
    query_source::QuerySource,
    sql_types::{Bool, Text, Timestamptz},
};
use uuid::Uuid;

use super::filter::{Translate, condition};
use crate::domain::{
    filter::{Expr, FilterField},
    order_by::{OrderField, OrderKey},
};

/// A value of an ordering key, as found in the last row of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue {
    /// A timestamp key (`create_time`, `update_time`).
    Time(DateTime<Utc>),
    /// A text key (names, email).
    Text(String),
}

/// Where a page ends: the ordering key values and id of its last row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// One value per ordering key.
    pub values: Vec<KeyValue>,
    /// The last row's id (the final tie-breaker).
    pub id: Uuid,
}

impl Cursor {
    /// The cursor just after `row` in `order`.
    pub fn after<K: SortKey>(row: &K::Row, order: &[OrderKey<K>]) -> Self
    where
        for<'r> &'r K::Row: Identifiable<Id = &'r Uuid>,
    {
        Self {
            values: order.iter().map(|key| key.field.value(row)).collect(),
            id: *row.id(),
        }
    }
}

/// A sort key of a table: the column it orders by and its value in a row. Implemented with
/// `sort_keys!`.
pub trait SortKey: OrderField {
    /// The rows it sorts.
    type Row;
    /// The column's name.
    fn column(self) -> &'static str;
    /// Its value in `row`.
    fn value(self, row: &Self::Row) -> KeyValue;
    /// Whether it is a timestamp key ([`KeyValue::Time`]).
    fn is_time(self) -> bool;
}

/// Declares the sort keys of a table:
/// `sort_keys!(Order for Row { Variant => Time(column), Variant => Text(column in part), … })`,
/// one line per key, naming the column it orders by (a timestamp or a text column) and,
/// where the row keeps it in an embedded part, that part's field.
macro_rules! sort_keys {
    (
        $order:ident for $row:ty {
            $($key:ident => $kind:ident($column:ident $(in $part:ident)?),)+
        }
    ) => {
        impl $crate::db::keyset::SortKey for $order {
            type Row = $row;

            fn column(self) -> &'static str {
                match self {
                    $(Self::$key => stringify!($column),)+
                }
            }

            fn is_time(self) -> bool {
                match self {
                    $(Self::$key => stringify!($kind) == "Time",)+
                }
            }

            fn value(self, row: &$row) -> $crate::db::keyset::KeyValue {
                match self {
                    $(Self::$key => $crate::db::keyset::KeyValue::$kind(row$(.$part)?.$column.clone()),)+
                }
            }
        }
    };
}
pub(crate) use sort_keys;

/// One page request of a listing.
#[derive(Debug)]
pub struct ListQuery<'a, F: FilterField, K> {
    /// Parsed filter, if any.
    pub filter: Option<&'a Expr<F>>,
    /// Ordering keys (non-empty; the id is appended as tie-breaker).
    pub order: &'a [OrderKey<K>],
    /// Include soft-deleted rows.
    pub show_deleted: bool,
    /// Start strictly after this position.
    pub after: Option<&'a Cursor>,
    /// Maximum rows to return.
    pub limit: i64,
}

/// A boxed `SELECT` of rows `R` of table `T`, as listings build them.
pub(super) type Rows<'a, R, T> = BoxedSelectStatement<'a, AsSelect<R, Pg>, FromClause<T>, Pg>;

impl<F, K> ListQuery<'_, F, K>
where
    F: Translate,
    F::Table: QuerySource,
    K: SortKey,
    K::Row: Selectable<Pg>,
{
    /// Narrows `rows` to this page: matching the filter, strictly after the cursor in the
    /// order, ordered so (the id breaking ties), at most `limit` rows.
    pub(super) fn page<'a>(&self, rows: Rows<'a, K::Row, F::Table>) -> Rows<'a, K::Row, F::Table> {
        self.window(rows, self.filter, Keys::new(self.order), self.limit)
    }

    /// This page's rows among only the first [`PROBE_ROWS`] rows after the cursor in the
    /// order, filtered by `search` (the filter): `SELECT … FROM (the next PROBE_ROWS rows, in
    /// order) AS <table> WHERE filter ORDER BY … LIMIT limit`. The inner walk is bounded, so
    /// this costs the same for any filter; when it fills the page, the page is the query's
    /// (every earlier match is among the rows probed).
    fn probe<'a>(
        &self,
        rows: Rows<'a, K::Row, F::Table>,
        table: &'static str,
        search: &Expr<F>,
    ) -> Probe<'a, K::Row, F::Table> {
        Probe {
            select: K::Row::construct_selection(),
            inner: self.window(rows, None, Keys::new(self.order), PROBE_ROWS),
            table,
            filter: condition(search),
            keys: Keys::new(self.order),
            limit: self.limit,
        }
    }

    /// `rows` matching `filter`, strictly after the cursor in the order, ordered by `keys`
    /// (the order's, possibly [`Keys::unindexed`]), at most `limit`.
    fn window<'a>(
        &self,
        mut rows: Rows<'a, K::Row, F::Table>,
        filter: Option<&Expr<F>>,
        keys: Keys,
        limit: i64,
    ) -> Rows<'a, K::Row, F::Table> {
        if let Some(filter) = filter {
            rows = rows.filter(condition(filter));
        }
        if let Some(cursor) = self.after {
            rows = rows.filter(KeysetAfter {
                keys: keys.clone(),
                values: cursor.values.clone(),
                id: cursor.id,
            });
        }
        rows.order(keys).limit(limit)
    }

    /// The page of a substring search, in one statement whatever the density of its matches.
    ///
    /// The planner cannot tell a rare substring from a common one, so the statement first
    /// probes ([`Self::probe`], materialized once as `probe`) and the count of its matches picks one
    /// of three branches at execution time (each gated by a one-time filter on that count, so
    /// the others never start):
    ///
    /// * the probe filled the page: the probe is the page (every earlier match was among the
    ///   rows probed);
    /// * [`DENSE_MATCHES`] or more: the ordinary page, whose walk of the ordering index is then
    ///   short;
    /// * fewer (sparse): when the first key is a timestamp, the matches nearest to the cursor
    ///   in time ([`Nearest`]): with the `(text gist_trgm_ops, create_time)` GiST indexes a
    ///   best-first index scan that stops after `limit` matches (a heap fetch per row
    ///   returned, not per match), otherwise the trigram bitmap and a top-N sort; then every
    ///   match sharing the last row's time, so ties break by the remaining keys as the listing
    ///   does. When the first key is text, the ordinary page in an order no index provides
    ///   ([`Keys::unindexed`]): the trigram bitmap scan and a top-N sort of the matches.
    ///
    /// The result is sorted once more on the way out (at most `limit` rows of one branch, or
    /// `limit` plus the ties of the nearest branch), so the order is the listing's.
    pub(super) fn search<'a>(
        &self,
        rows: impl Fn() -> Rows<'a, K::Row, F::Table>,
        table: &'static str,
        search: &Expr<F>,
    ) -> Search<'a, K::Row, F::Table> {
        let gated = |gate: &str| {
            rows().filter(
                diesel::dsl::sql::<Bool>(&format!("(SELECT count(*) FROM probe) {gate} "))
                    .bind::<diesel::sql_types::BigInt, _>(DENSE_MATCHES as i64),
            )
        };
        let dense = gated(">=").filter(
            diesel::dsl::sql::<Bool>("(SELECT count(*) FROM probe) < ")
                .bind::<diesel::sql_types::BigInt, _>(self.limit),
        );
        let sparse = match self.order.first().filter(|key| key.field.is_time()) {
            Some(first) => {
                let column = first.field.column();
                let (last, beyond) = if first.descending {
                    ("min", ">")
                } else {
                    ("max", "<")
                };
                let nearest = Nearest {
                    table,
                    column,
                    descending: first.descending,
                    origin: self.after.and_then(|cursor| match cursor.values.first() {
                        Some(KeyValue::Time(time)) => Some(*time),
                        _ => None,
                    }),
                };
                let mut nearest_rows = gated("<").filter(condition(search));
                let mut ties =
                    gated("<")
                        .filter(condition(search))
                        .filter(diesel::dsl::sql::<Bool>(&format!(
                            "\"{column}\" = (SELECT {last}(\"{column}\") FROM nearest)"
                        )));
                if let Some(cursor) = self.after {
                    let keyset = KeysetAfter {
                        keys: Keys::new(self.order),
                        values: cursor.values.clone(),
                        id: cursor.id,
                    };
                    nearest_rows = nearest_rows.filter(keyset.clone());
                    ties = ties.filter(keyset);
                }
                Sparse::Nearest {
                    nearest: nearest_rows.order(nearest).limit(self.limit),
                    before_last: format!(
                        "SELECT * FROM nearest WHERE \"{column}\" {beyond} \
                         (SELECT {last}(\"{column}\") FROM nearest)"
                    ),
                    ties,
                }
            }
            None => Sparse::Sorted(self.window(
                gated("<"),
                Some(search),
                Keys::new(self.order).unindexed(),
                self.limit,
            )),
        };
        Search {
            probe: self.probe(rows(), table, search),
            dense: self.window(dense, Some(search), Keys::new(self.order), self.limit),
            sparse,
            select: K::Row::construct_selection(),
            table,
            keys: Keys::new(self.order),
            limit: self.limit,
        }
    }
}

/// The id tie-breaker runs in the direction of the last key, so that with a single key the
/// whole ordering is one direction and matches a `(key, id)` index scanned either way.
fn id_descending<K>(order: &[OrderKey<K>]) -> bool {
    order.last().is_some_and(|key| key.descending)
}

/// (column, descending) for every ordering key, the id last: as SQL, an `ORDER BY` list.
///
/// With `unindexed`, the first key is written `ROW(column)`: the same order (a one-field
/// record compares as its field, with the column's collation), which no index provides,
/// so the planner cannot walk an index in this order and filter every row it meets.
#[derive(Debug, Clone)]
struct Keys(Vec<(&'static str, bool)>, bool);

impl Keys {
    fn new<K: SortKey>(order: &[OrderKey<K>]) -> Self {
        Self(
            order
                .iter()
                .map(|key| (key.field.column(), key.descending))
                .chain(std::iter::once(("id", id_descending(order))))
                .collect(),
            false,
        )
    }

    /// The same order, written so that no index provides it.
    fn unindexed(mut self) -> Self {
        self.1 = true;
        self
    }
}

/// SQL for "strictly after this position", as a diesel expression node.
///
/// When every key runs in one direction this is a single row-value comparison,
/// `(family_name, id) > ($1, $2)`, which PostgreSQL turns into an index range condition.
/// Mixed directions cannot be one row comparison; they get the equivalent OR-expansion,
/// plus a redundant bound on the first key so the index scan still starts at the cursor.
#[derive(Debug, Clone)]
struct KeysetAfter {
    keys: Keys,
    /// One value per key but the id.
    values: Vec<KeyValue>,
    id: Uuid,
}

impl KeysetAfter {
    fn push_value<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>, position: usize) -> QueryResult<()> {
        match self.values.get(position) {
            Some(KeyValue::Time(time)) => out.push_bind_param::<Timestamptz, _>(time),
            Some(KeyValue::Text(text)) => out.push_bind_param::<Text, _>(text),
            None => out.push_bind_param::<diesel::sql_types::Uuid, _>(&self.id),
        }
    }
}

/// Both nodes are plain SQL over the listed table's own columns: usable in any query of it.
macro_rules! sql_node {
    ($node:ty, $sql_type:ty) => {
        impl Expression for $node {
            type SqlType = $sql_type;
        }

        impl<QS> AppearsOnTable<QS> for $node {}

        impl<QS> SelectableExpression<QS> for $node {}

        impl<GB> ValidGrouping<GB> for $node {
            type IsAggregate = is_aggregate::Never;
        }

        impl QueryId for $node {
            type QueryId = ();
            const HAS_STATIC_QUERY_ID: bool = false;
        }
    };
}

sql_node!(KeysetAfter, Bool);
sql_node!(Keys, diesel::expression::expression_types::NotSelectable);

impl QueryFragment<Pg> for Keys {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        for (i, (column, descending)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push_sql(", ");
            }
            if i == 0 && self.1 {
                out.push_sql("ROW(");
                out.push_identifier(column)?;
                out.push_sql(")");
            } else {
                out.push_identifier(column)?;
            }
            out.push_sql(if *descending { " DESC" } else { " ASC" });
        }
        Ok(())
    }
}

impl QueryFragment<Pg> for KeysetAfter {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let keys = &self.keys.0;
        let operator = |descending: bool| if descending { " < " } else { " > " };
        let first_descending = <[_]>::first(keys).is_some_and(|(_, d)| *d);
        if keys.iter().all(|(_, d)| *d == first_descending) {
            out.push_sql("(");
            for (i, (column, _)) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_sql(", ");
                }
                out.push_identifier(column)?;
            }
            out.push_sql(")");
            out.push_sql(operator(first_descending));
            out.push_sql("(");
            for i in 0..keys.len() {
                if i > 0 {
                    out.push_sql(", ");
                }
                self.push_value(&mut out, i)?;
            }
            out.push_sql(")");
            return Ok(());
        }
        // first >= v1 AND ((k1 op v1) OR (k1 = v1 AND k2 op v2) OR …)
        if let Some((column, descending)) = <[_]>::first(keys) {
            out.push_identifier(column)?;
            out.push_sql(if *descending { " <= " } else { " >= " });
            self.push_value(&mut out, 0)?;
            out.push_sql(" AND (");
        }
        for (position, (column, descending)) in keys.iter().enumerate() {
            if position > 0 {
                out.push_sql(" OR ");
            }
            out.push_sql("(");
            for (earlier, (earlier_column, _)) in keys[..position].iter().enumerate() {
                out.push_identifier(earlier_column)?;
                out.push_sql(" = ");
                self.push_value(&mut out, earlier)?;
                out.push_sql(" AND ");
            }
            out.push_identifier(column)?;
            out.push_sql(operator(*descending));
            self.push_value(&mut out, position)?;
            out.push_sql(")");
        }
        out.push_sql(")");
        Ok(())
    }
}

/// `({table}.create_time, {table}.id) < (time, id)`: the rows after `(time, id)` of a
/// listing ordered newest first (notes, API keys), as one row comparison (one index range
/// condition).
pub(crate) fn created_before<QS>(
    table: &str,
    (time, id): (DateTime<Utc>, Uuid),
) -> Box<dyn diesel::BoxableExpression<QS, Pg, SqlType = Bool>> {
    Box::new(
        diesel::dsl::sql::<Bool>(&format!("({table}.create_time, {table}.id) < ("))
            .bind::<diesel::sql_types::Timestamptz, _>(time)
            .sql(", ")
            .bind::<diesel::sql_types::Uuid, _>(id)
            .sql(")"),
    )
}

/// Rows a substring search first examines in order before it decides how to go on.
pub const PROBE_ROWS: i64 = 500;

/// Matches among the [`PROBE_ROWS`] from which walking on in order beats the trigram index.
/// The walk costs about `page / density` rows, each tested with `ILIKE`; the index costs a
/// heap fetch per match anywhere in the table: at a million rows the two meet near 0.5%
/// density (BENCHMARKS.md, "contains-search").
pub const DENSE_MATCHES: usize = 3;

/// Whether `filter` has a substring match (`field:"text"`), the condition the planner
/// misjudges: it cannot tell from its statistics how rare a substring is, so it walks the
/// ordering index and tests every row, however few match.
pub fn searches_text<F: FilterField>(filter: &Expr<F>) -> bool {
    match filter {
        Expr::And(left, right) | Expr::Or(left, right) => {
            searches_text(left) || searches_text(right)
        }
        Expr::Not(inner) => searches_text(inner),
        Expr::Contains { .. } => true,
        Expr::Compare(_) | Expr::Present { .. } => false,
    }
}

/// The statement of [`ListQuery::probe`].
pub(super) struct Probe<'a, R: Selectable<Pg>, T: QuerySource + 'static> {
    select: R::SelectExpression,
    inner: Rows<'a, R, T>,
    table: &'static str,
    filter: super::filter::Condition<T>,
    keys: Keys,
    limit: i64,
}

impl<R: Selectable<Pg>, T: QuerySource> QueryId for Probe<'_, R, T> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<'a, R: Selectable<Pg>, T: QuerySource> diesel::query_builder::Query for Probe<'a, R, T>
where
    Rows<'a, R, T>: diesel::query_builder::Query,
{
    type SqlType = <Rows<'a, R, T> as diesel::query_builder::Query>::SqlType;
}

impl<'a, R: Selectable<Pg>, T: QuerySource> QueryFragment<Pg> for Probe<'a, R, T>
where
    R::SelectExpression: QueryFragment<Pg>,
    Rows<'a, R, T>: QueryFragment<Pg>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("SELECT ");
        self.select.walk_ast(out.reborrow())?;
        out.push_sql(" FROM (");
        self.inner.walk_ast(out.reborrow())?;
        // Named as the table, so the filter's qualified columns read the probed rows.
        out.push_sql(") AS ");
        out.push_identifier(self.table)?;
        out.push_sql(" WHERE ");
        self.filter.walk_ast(out.reborrow())?;
        out.push_sql(" ORDER BY ");
        self.keys.walk_ast(out.reborrow())?;
        out.push_sql(" LIMIT ");
        out.push_bind_param::<diesel::sql_types::BigInt, _>(&self.limit)
    }
}

/// `column <-> origin`: the distance in time from the cursor's time (or, on a first page,
/// from the table's earliest or latest time, by the key's direction), as an `ORDER BY`
/// term. Nearest first is the key's own order among the rows after the cursor; the
/// `(text gist_trgm_ops, create_time)` GiST indexes (btree_gist) return rows in it.
#[derive(Debug, Clone)]
struct Nearest {
    table: &'static str,
    column: &'static str,
    descending: bool,
    origin: Option<DateTime<Utc>>,
}

sql_node!(Nearest, diesel::expression::expression_types::NotSelectable);

impl QueryFragment<Pg> for Nearest {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_identifier(self.column)?;
        out.push_sql(" <-> ");
        match &self.origin {
            Some(time) => out.push_bind_param::<Timestamptz, _>(time),
            None => {
                out.push_sql(if self.descending {
                    "(SELECT max("
                } else {
                    "(SELECT min("
                });
                out.push_identifier(self.column)?;
                out.push_sql(") FROM ");
                out.push_identifier(self.table)?;
                out.push_sql(")");
                Ok(())
            }
        }
    }
}

/// How [`ListQuery::search`] answers a sparse term.
pub(super) enum Sparse<'a, R: Selectable<Pg>, T: QuerySource + 'static> {
    /// The page in an unindexed order.
    Sorted(Rows<'a, R, T>),
    /// The `limit` matches nearest in time (materialized as `nearest`), those before the
    /// last one's time, and every match at that time.
    Nearest {
        nearest: Rows<'a, R, T>,
        before_last: String,
        ties: Rows<'a, R, T>,
    },
}

/// The statement of [`ListQuery::search`].
pub(super) struct Search<'a, R: Selectable<Pg>, T: QuerySource + 'static> {
    probe: Probe<'a, R, T>,
    dense: Rows<'a, R, T>,
    sparse: Sparse<'a, R, T>,
    select: R::SelectExpression,
    table: &'static str,
    keys: Keys,
    limit: i64,
}

impl<R: Selectable<Pg>, T: QuerySource> QueryId for Search<'_, R, T> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<'a, R: Selectable<Pg>, T: QuerySource> diesel::query_builder::Query for Search<'a, R, T>
where
    Rows<'a, R, T>: diesel::query_builder::Query,
{
    type SqlType = <Rows<'a, R, T> as diesel::query_builder::Query>::SqlType;
}

impl<'a, R: Selectable<Pg>, T: QuerySource> QueryFragment<Pg> for Search<'a, R, T>
where
    R::SelectExpression: QueryFragment<Pg>,
    Rows<'a, R, T>: QueryFragment<Pg>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH probe AS MATERIALIZED (");
        self.probe.walk_ast(out.reborrow())?;
        if let Sparse::Nearest { nearest, .. } = &self.sparse {
            out.push_sql("), nearest AS MATERIALIZED (");
            nearest.walk_ast(out.reborrow())?;
        }
        out.push_sql(") SELECT ");
        self.select.walk_ast(out.reborrow())?;
        out.push_sql(" FROM ((SELECT * FROM probe WHERE (SELECT count(*) FROM probe) >= ");
        out.push_bind_param::<diesel::sql_types::BigInt, _>(&self.limit)?;
        out.push_sql(") UNION ALL (");
        self.dense.walk_ast(out.reborrow())?;
        out.push_sql(") UNION ALL (");
        match &self.sparse {
            Sparse::Sorted(page) => page.walk_ast(out.reborrow())?,
            Sparse::Nearest {
                before_last, ties, ..
            } => {
                out.push_sql(before_last);
                out.push_sql(") UNION ALL (");
                ties.walk_ast(out.reborrow())?;
            }
        }
        // Named as the table, so the selection's qualified columns read the branches' rows.
        out.push_sql(")) AS ");
        out.push_identifier(self.table)?;
        out.push_sql(" ORDER BY ");
        self.keys.walk_ast(out.reborrow())?;
        out.push_sql(" LIMIT ");
        out.push_bind_param::<diesel::sql_types::BigInt, _>(&self.limit)
    }
}

/// Awaits `statement` (a [`ListQuery::search`] on `conn`) under `plan_cache_mode = force_generic_plan`.
///
/// The search's branches are chosen at execution time, so one plan serves every term; but
/// PostgreSQL prices the generic plan by all its branches at once and keeps planning the
/// prepared statement anew for each call (5–13 ms at 1,000,000 rows on this machine's
/// load, more than the execution). The setting is switched on just before and reset just
/// after, in statements pipelined with `statement` (one round trip for the three). All three
/// are sent on the first poll, so the reset runs whatever `statement` answers; a call
/// abandoned midway discards its connection (`db::checkout`), setting and all.
pub(super) async fn with_generic_plan<T>(
    conn: &diesel_async::AsyncPgConnection,
    statement: impl Future<Output = QueryResult<T>>,
) -> QueryResult<T> {
    // Both diesel's and diesel-async's `RunQueryDsl` apply to a `sql_query`: say which.
    let run = |sql| diesel_async::RunQueryDsl::execute(diesel::sql_query(sql), &mut &*conn);
    let generic = run("SET plan_cache_mode = force_generic_plan");
    let reset = run("RESET plan_cache_mode");
    // Joined futures are first polled in order, so the three are sent in this order.
    let (generic, rows, reset) = futures_util::future::join3(generic, statement, reset).await;
    generic?;
    reset?;
    rows
}
