//! Queries on `companies`: one function per statement.
//!
//! Listing works like customers (see [`super::customers`]): keyset pagination over the
//! requested order with the id as tie-breaker, and the filter AST turned into a boxed diesel
//! expression whose values are all bind parameters.

use diesel::{
    dsl::sql,
    pg::Pg,
    prelude::*,
    sql_types::{Bool, Nullable, Timestamptz},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{
    customers::{Cursor, KeyValue, KeysetAfter, SortColumn, id_descending},
    filter::{Condition, condition},
    models::{CompanyChanges, CompanyRow, NewCompanyRow},
    schema::companies,
};
use crate::domain::{
    filter::{CompanyField, Expr},
    order_by::{CompanyOrder, OrderKey},
};

type BoxedCondition = Condition<companies::table>;

/// Inserts a new company and returns the stored row.
pub async fn insert(conn: &mut AsyncPgConnection, row: &NewCompanyRow) -> QueryResult<CompanyRow> {
    diesel::insert_into(companies::table)
        .values(row)
        .returning(CompanyRow::as_returning())
        .get_result(conn)
        .await
}

/// The company with this id, deleted or not.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<CompanyRow>> {
    companies::table
        .find(id)
        .select(CompanyRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The company, locked against concurrent writers until the end of the transaction.
pub async fn find_for_update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<CompanyRow>> {
    companies::table
        .find(id)
        .select(CompanyRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// The company, share-locked until the end of the transaction: a customer write that
/// refers to it holds this, so a concurrent DeleteCompany (which takes the row's update
/// lock) waits for it, and the referring write waits for a delete that started first and
/// then sees its result.
pub async fn find_for_share(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<CompanyRow>> {
    companies::table
        .find(id)
        .select(CompanyRow::as_select())
        .for_share()
        .first(conn)
        .await
        .optional()
}

/// Writes new field values, bumping the version and update time.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    changes: &CompanyChanges,
) -> QueryResult<CompanyRow> {
    diesel::update(companies::table.find(id))
        .set((
            changes,
            companies::version.eq(companies::version + 1),
            companies::update_time.eq(diesel::dsl::now),
        ))
        .returning(CompanyRow::as_returning())
        .get_result(conn)
        .await
}

/// Soft-deletes (`deleted`) or restores a company, bumping its version. A restore fails
/// with the unique violation of `companies_live_business_id_key` if a live company has its
/// business id.
pub async fn set_deleted(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    actor: &str,
    deleted: bool,
) -> QueryResult<CompanyRow> {
    // One statement either way (a bound flag), so both stay one cached prepared statement.
    let delete_time = sql::<Nullable<Timestamptz>>("CASE WHEN ")
        .bind::<Bool, _>(deleted)
        .sql(" THEN now() END");
    diesel::update(companies::table.find(id))
        .set((
            companies::version.eq(companies::version + 1),
            companies::update_time.eq(diesel::dsl::now),
            companies::updated_by.eq(actor),
            companies::delete_time.eq(delete_time),
        ))
        .returning(CompanyRow::as_returning())
        .get_result(conn)
        .await
}

/// The cursor just after `row` in `order`.
pub fn cursor_after(row: &CompanyRow, order: &[OrderKey<CompanyOrder>]) -> Cursor {
    let values = order
        .iter()
        .map(|key| match key.field {
            CompanyOrder::CreateTime => KeyValue::Time(row.create_time),
            CompanyOrder::UpdateTime => KeyValue::Time(row.update_time),
            CompanyOrder::DisplayName => KeyValue::Text(row.display_name.clone()),
        })
        .collect();
    Cursor { values, id: row.id }
}

impl SortColumn for CompanyOrder {
    fn column(self) -> &'static str {
        match self {
            CompanyOrder::CreateTime => "create_time",
            CompanyOrder::UpdateTime => "update_time",
            CompanyOrder::DisplayName => "display_name",
        }
    }
}

/// One page request of [`list`].
#[derive(Debug)]
pub struct ListQuery<'a> {
    /// Parsed filter, if any.
    pub filter: Option<&'a Expr<CompanyField>>,
    /// Ordering keys (non-empty; the id is appended as tie-breaker).
    pub order: &'a [OrderKey<CompanyOrder>],
    /// Include soft-deleted rows.
    pub show_deleted: bool,
    /// Start strictly after this position.
    pub after: Option<&'a Cursor>,
    /// Maximum rows to return.
    pub limit: i64,
}

/// One page of companies.
pub async fn list(
    conn: &mut AsyncPgConnection,
    query: &ListQuery<'_>,
) -> QueryResult<Vec<CompanyRow>> {
    let mut statement = companies::table
        .select(CompanyRow::as_select())
        .into_boxed::<Pg>();
    if !query.show_deleted {
        statement = statement.filter(companies::delete_time.is_null());
    }
    if let Some(filter) = query.filter {
        statement = statement.filter(condition(filter));
    }
    if let Some(cursor) = query.after {
        let after: BoxedCondition = Box::new(KeysetAfter::new(query.order, cursor));
        statement = statement.filter(after);
    }
    for key in query.order {
        statement = match (key.field, key.descending) {
            (CompanyOrder::CreateTime, false) => {
                statement.then_order_by(companies::create_time.asc())
            }
            (CompanyOrder::CreateTime, true) => {
                statement.then_order_by(companies::create_time.desc())
            }
            (CompanyOrder::UpdateTime, false) => {
                statement.then_order_by(companies::update_time.asc())
            }
            (CompanyOrder::UpdateTime, true) => {
                statement.then_order_by(companies::update_time.desc())
            }
            (CompanyOrder::DisplayName, false) => {
                statement.then_order_by(companies::display_name.asc())
            }
            (CompanyOrder::DisplayName, true) => {
                statement.then_order_by(companies::display_name.desc())
            }
        };
    }
    statement = if id_descending(query.order) {
        statement.then_order_by(companies::id.desc())
    } else {
        statement.then_order_by(companies::id.asc())
    };
    statement.limit(query.limit).load(conn).await
}
