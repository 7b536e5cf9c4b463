//! Queries on `customers`: one function per statement.
//!
//! Listing is keyset-paginated: a page starts strictly after the last row of the previous
//! page in the requested order (with the id as tie-breaker), written as a row-value
//! comparison `(family_name, id) > ($1, $2)` that PostgreSQL answers with an index range
//! scan. Page 10,000 therefore costs what page 1 costs, and rows inserted during a walk
//! can never make a row appear twice. Filters arrive as a typed AST and become a boxed
//! diesel expression ([`super::filter`]): every value is a bind parameter, never SQL text.

use chrono::{DateTime, Utc};
use diesel::{
    dsl::sql,
    expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping, is_aggregate},
    pg::Pg,
    prelude::*,
    query_builder::{AstPass, QueryFragment, QueryId},
    sql_types::{Bool, Nullable, Text, Timestamptz},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{
    filter::{Condition, condition},
    models::{CustomerChanges, CustomerRow, NewCustomerRow},
    schema::customers,
};
use crate::domain::{
    filter::{CustomerField, Expr},
    order_by::{CustomerOrder, OrderField, OrderKey},
};

type BoxedCondition = Condition<customers::table>;

/// Inserts a new customer and returns the stored row.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    row: &NewCustomerRow,
) -> QueryResult<CustomerRow> {
    diesel::insert_into(customers::table)
        .values(row)
        .returning(CustomerRow::as_returning())
        .get_result(conn)
        .await
}

/// The customer with this id, deleted or not.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<CustomerRow>> {
    customers::table
        .find(id)
        .select(CustomerRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The customer with this id, locked until the end of the transaction, so concurrent
/// writers of one customer take turns and each sees the other's result.
pub async fn find_for_update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<CustomerRow>> {
    customers::table
        .find(id)
        .select(CustomerRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// The customer with this id, share-locked until the end of the transaction: note writes
/// hold this, so they and a concurrent delete of the customer (which takes the update
/// lock) take turns and each sees the other's result.
pub async fn find_for_share(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<CustomerRow>> {
    customers::table
        .find(id)
        .select(CustomerRow::as_select())
        .for_share()
        .first(conn)
        .await
        .optional()
}

/// The customers with these ids, in no particular order.
pub async fn find_many(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> QueryResult<Vec<CustomerRow>> {
    customers::table
        .filter(customers::id.eq_any(ids))
        .select(CustomerRow::as_select())
        .load(conn)
        .await
}

/// Writes new field values, bumping the version and update time.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    changes: &CustomerChanges,
) -> QueryResult<CustomerRow> {
    diesel::update(customers::table.find(id))
        .set((
            changes,
            customers::version.eq(customers::version + 1),
            customers::update_time.eq(diesel::dsl::now),
        ))
        .returning(CustomerRow::as_returning())
        .get_result(conn)
        .await
}

/// Detaches every live customer of `company` (clears their `company`), bumping each one's
/// version, and returns them as they are now. Rows being written concurrently are waited
/// for and re-checked (PostgreSQL re-evaluates the condition on the newest row version).
pub async fn detach_company(
    conn: &mut AsyncPgConnection,
    company: &str,
    actor: &str,
) -> QueryResult<Vec<CustomerRow>> {
    diesel::update(
        customers::table
            .filter(customers::company.eq(company))
            .filter(customers::delete_time.is_null()),
    )
    .set((
        customers::company.eq(None::<String>),
        customers::version.eq(customers::version + 1),
        customers::update_time.eq(diesel::dsl::now),
        customers::updated_by.eq(actor),
    ))
    .returning(CustomerRow::as_returning())
    .get_results(conn)
    .await
}

/// How many live customers belong to `company`.
pub async fn count_live_in_company(
    conn: &mut AsyncPgConnection,
    company: &str,
) -> QueryResult<i64> {
    customers::table
        .filter(customers::company.eq(company))
        .filter(customers::delete_time.is_null())
        .count()
        .get_result(conn)
        .await
}

/// Soft-deletes a customer, bumping its version.
pub async fn set_deleted(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    actor: &str,
) -> QueryResult<CustomerRow> {
    diesel::update(customers::table.find(id))
        .set((
            customers::version.eq(customers::version + 1),
            customers::update_time.eq(diesel::dsl::now),
            customers::updated_by.eq(actor),
            customers::delete_time.eq(sql::<Nullable<Timestamptz>>("now()")),
        ))
        .returning(CustomerRow::as_returning())
        .get_result(conn)
        .await
}

/// Up to `limit` customers deleted at least `after` ago, locked for their purge; rows that
/// another transaction holds (another instance's purger, a concurrent undelete) are skipped.
pub async fn lock_expired(
    conn: &mut AsyncPgConnection,
    after: std::time::Duration,
    limit: i64,
) -> QueryResult<Vec<CustomerRow>> {
    customers::table
        .filter(
            customers::delete_time.le(sql::<Nullable<Timestamptz>>(
                "now() - make_interval(secs => ",
            )
            .bind::<diesel::sql_types::Double, _>(after.as_secs_f64())
            .sql(")")),
        )
        .order(customers::delete_time.asc())
        .limit(limit)
        .for_update()
        .skip_locked()
        .select(CustomerRow::as_select())
        .load(conn)
        .await
}

/// Deletes a customer row for good (its notes first: they refer to it).
pub async fn delete_for_good(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    diesel::delete(customers::table.find(id))
        .execute(conn)
        .await
        .map(drop)
}

/// Restores a soft-deleted customer, bumping its version; with `changes`, its fields are
/// replaced in the same write (one version, one event).
pub async fn restore(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    changes: Option<&CustomerChanges>,
    actor: &str,
) -> QueryResult<CustomerRow> {
    let query = diesel::update(customers::table.find(id));
    let restore = (
        customers::version.eq(customers::version + 1),
        customers::update_time.eq(diesel::dsl::now),
        customers::delete_time.eq(None::<DateTime<Utc>>),
    );
    match changes {
        None => {
            query
                .set((restore, customers::updated_by.eq(actor)))
                .returning(CustomerRow::as_returning())
                .get_result(conn)
                .await
        }
        Some(changes) => {
            query
                .set((restore, changes))
                .returning(CustomerRow::as_returning())
                .get_result(conn)
                .await
        }
    }
}

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
    pub fn after(row: &CustomerRow, order: &[OrderKey<CustomerOrder>]) -> Self {
        let values = order
            .iter()
            .map(|key| match key.field {
                CustomerOrder::CreateTime => KeyValue::Time(row.create_time),
                CustomerOrder::UpdateTime => KeyValue::Time(row.update_time),
                CustomerOrder::FamilyName => KeyValue::Text(row.family_name.clone()),
                CustomerOrder::GivenName => KeyValue::Text(row.given_name.clone()),
                CustomerOrder::Email => KeyValue::Text(row.email.clone()),
            })
            .collect();
        Self { values, id: row.id }
    }
}

/// One page request of [`list`].
#[derive(Debug)]
pub struct ListQuery<'a> {
    /// Parsed filter, if any.
    pub filter: Option<&'a Expr<CustomerField>>,
    /// Ordering keys (non-empty; the id is appended as tie-breaker).
    pub order: &'a [OrderKey<CustomerOrder>],
    /// Include soft-deleted rows.
    pub show_deleted: bool,
    /// Only the customers of this company (`companies/{id}`).
    pub company: Option<&'a str>,
    /// Start strictly after this position.
    pub after: Option<&'a Cursor>,
    /// Maximum rows to return.
    pub limit: i64,
}

/// One page of customers.
pub async fn list(
    conn: &mut AsyncPgConnection,
    query: &ListQuery<'_>,
) -> QueryResult<Vec<CustomerRow>> {
    let mut statement = customers::table
        .select(CustomerRow::as_select())
        .into_boxed::<Pg>();
    if !query.show_deleted {
        statement = statement.filter(customers::delete_time.is_null());
    }
    if let Some(company) = query.company {
        statement = statement.filter(customers::company.eq(company.to_owned()));
    }
    if let Some(filter) = query.filter {
        statement = statement.filter(condition(filter));
    }
    if let Some(cursor) = query.after {
        statement = statement.filter(keyset_after(query.order, cursor));
    }
    for key in query.order {
        statement = match (key.field, key.descending) {
            (CustomerOrder::CreateTime, false) => {
                statement.then_order_by(customers::create_time.asc())
            }
            (CustomerOrder::CreateTime, true) => {
                statement.then_order_by(customers::create_time.desc())
            }
            (CustomerOrder::UpdateTime, false) => {
                statement.then_order_by(customers::update_time.asc())
            }
            (CustomerOrder::UpdateTime, true) => {
                statement.then_order_by(customers::update_time.desc())
            }
            (CustomerOrder::FamilyName, false) => {
                statement.then_order_by(customers::family_name.asc())
            }
            (CustomerOrder::FamilyName, true) => {
                statement.then_order_by(customers::family_name.desc())
            }
            (CustomerOrder::GivenName, false) => {
                statement.then_order_by(customers::given_name.asc())
            }
            (CustomerOrder::GivenName, true) => {
                statement.then_order_by(customers::given_name.desc())
            }
            (CustomerOrder::Email, false) => statement.then_order_by(customers::email.asc()),
            (CustomerOrder::Email, true) => statement.then_order_by(customers::email.desc()),
        };
    }
    statement = if id_descending(query.order) {
        statement.then_order_by(customers::id.desc())
    } else {
        statement.then_order_by(customers::id.asc())
    };
    statement.limit(query.limit).load(conn).await
}

/// The id tie-breaker runs in the direction of the last key, so that with a single key the
/// whole ordering is one direction and matches a `(key, id)` index scanned either way.
pub(super) fn id_descending<K>(order: &[OrderKey<K>]) -> bool {
    order.last().is_some_and(|key| key.descending)
}

/// A sort key of a table: the column it orders by.
pub(super) trait SortColumn: OrderField {
    /// The column's name.
    fn column(self) -> &'static str;
}

impl SortColumn for CustomerOrder {
    fn column(self) -> &'static str {
        match self {
            CustomerOrder::CreateTime => "create_time",
            CustomerOrder::UpdateTime => "update_time",
            CustomerOrder::FamilyName => "family_name",
            CustomerOrder::GivenName => "given_name",
            CustomerOrder::Email => "email",
        }
    }
}

/// Rows strictly after `cursor` in `order`.
fn keyset_after(order: &[OrderKey<CustomerOrder>], cursor: &Cursor) -> BoxedCondition {
    Box::new(KeysetAfter::new(order, cursor))
}

/// SQL for "strictly after this position", as a diesel expression node.
///
/// When every key runs in one direction this is a single row-value comparison,
/// `(family_name, id) > ($1, $2)`, which PostgreSQL turns into an index range condition.
/// Mixed directions cannot be one row comparison; they get the equivalent OR-expansion,
/// plus a redundant bound on the first key so the index scan still starts at the cursor.
#[derive(Debug, Clone)]
pub(super) struct KeysetAfter {
    /// (column, descending) for every key, the id last.
    keys: Vec<(&'static str, bool)>,
    /// One value per key but the id.
    values: Vec<KeyValue>,
    id: Uuid,
}

impl KeysetAfter {
    /// Strictly after `cursor` in `order` (any table whose columns are named like the
    /// order keys, with an `id` tie-breaker).
    pub(super) fn new<K: SortColumn>(order: &[OrderKey<K>], cursor: &Cursor) -> Self {
        let keys = order
            .iter()
            .map(|key| (key.field.column(), key.descending))
            .chain(std::iter::once(("id", id_descending(order))))
            .collect();
        Self {
            keys,
            values: cursor.values.clone(),
            id: cursor.id,
        }
    }

    fn push_value<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>, position: usize) -> QueryResult<()> {
        match self.values.get(position) {
            Some(KeyValue::Time(time)) => out.push_bind_param::<Timestamptz, _>(time),
            Some(KeyValue::Text(text)) => out.push_bind_param::<Text, _>(text),
            None => out.push_bind_param::<diesel::sql_types::Uuid, _>(&self.id),
        }
    }
}

impl Expression for KeysetAfter {
    type SqlType = Bool;
}

impl<QS> AppearsOnTable<QS> for KeysetAfter {}

impl<QS> SelectableExpression<QS> for KeysetAfter {}

impl<GB> ValidGrouping<GB> for KeysetAfter {
    type IsAggregate = is_aggregate::Never;
}

impl QueryId for KeysetAfter {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Pg> for KeysetAfter {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let operator = |descending: bool| if descending { " < " } else { " > " };
        let first_descending = <[_]>::first(&self.keys).is_some_and(|(_, d)| *d);
        if self.keys.iter().all(|(_, d)| *d == first_descending) {
            out.push_sql("(");
            for (i, (column, _)) in self.keys.iter().enumerate() {
                if i > 0 {
                    out.push_sql(", ");
                }
                out.push_identifier(column)?;
            }
            out.push_sql(")");
            out.push_sql(operator(first_descending));
            out.push_sql("(");
            for i in 0..self.keys.len() {
                if i > 0 {
                    out.push_sql(", ");
                }
                self.push_value(&mut out, i)?;
            }
            out.push_sql(")");
            return Ok(());
        }
        // first >= v1 AND ((k1 op v1) OR (k1 = v1 AND k2 op v2) OR …)
        if let Some((column, descending)) = <[_]>::first(&self.keys) {
            out.push_identifier(column)?;
            out.push_sql(if *descending { " <= " } else { " >= " });
            self.push_value(&mut out, 0)?;
            out.push_sql(" AND (");
        }
        for (position, (column, descending)) in self.keys.iter().enumerate() {
            if position > 0 {
                out.push_sql(" OR ");
            }
            out.push_sql("(");
            for (earlier, (earlier_column, _)) in self.keys[..position].iter().enumerate() {
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
