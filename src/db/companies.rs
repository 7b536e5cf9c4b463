//! Queries on `companies`: one function per statement.
//!
//! Listing works like customers (see [`super::customers`]): keyset pagination over the
//! requested order with the id as tie-breaker, and the filter AST turned into a boxed diesel
//! expression whose values are all bind parameters. A restore fails with the unique
//! violation of `companies_live_business_id_key` if a live company has its business id.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{
    keyset::{self, Cursor, sort_keys},
    models::{CompanyChanges, CompanyRow, NewCompanyRow},
    schema::companies,
    table::soft_deleted_statements,
};
use crate::domain::{
    filter::CompanyField,
    order_by::{CompanyOrder, OrderKey},
};

soft_deleted_statements!(companies: CompanyRow, NewCompanyRow, CompanyChanges);

sort_keys!(CompanyOrder for CompanyRow {
    CreateTime => Time(create_time),
    UpdateTime => Time(update_time),
    DisplayName => Text(display_name in columns),
});

/// The cursor just after `row` in `order`.
pub fn cursor_after(row: &CompanyRow, order: &[OrderKey<CompanyOrder>]) -> Cursor {
    Cursor::after(row, order)
}

/// One page request of [`list`].
pub type ListQuery<'a> = keyset::ListQuery<'a, CompanyField, CompanyOrder>;

/// One page of companies.
pub async fn list(
    conn: &mut AsyncPgConnection,
    query: &ListQuery<'_>,
) -> QueryResult<Vec<CompanyRow>> {
    query.page(rows(query.show_deleted)).load(conn).await
}

/// Which of `ids` are live companies, share-locked for this transaction (customers written
/// in it refer to them, so a concurrent DeleteCompany waits): one statement for a batch.
pub async fn live_among(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<Uuid>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    companies::table
        .filter(companies::id.eq_any(ids))
        .filter(companies::delete_time.is_null())
        .select(companies::id)
        .for_share()
        .load(conn)
        .await
}

/// Up to `limit` live companies with `domain` other than `except`, oldest first.
pub async fn live_with_domain(
    conn: &mut AsyncPgConnection,
    domain: &str,
    except: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<Uuid>> {
    let mut query = companies::table
        .filter(companies::domain.eq(domain))
        .filter(companies::delete_time.is_null())
        .order(companies::id.asc())
        .limit(limit)
        .select(companies::id)
        .into_boxed();
    if let Some(except) = except {
        query = query.filter(companies::id.ne(except));
    }
    query.load(conn).await
}
