//! Queries on `customers`: one function per statement.
//!
//! Listing is keyset-paginated ([`super::keyset`]): page 10,000 costs what page 1 costs, and
//! rows inserted during a walk can never make a row appear twice. Filters arrive as a typed
//! AST and become a boxed diesel expression ([`super::filter`]): every value is a bind
//! parameter, never SQL text.

use diesel::{
    dsl::sql,
    prelude::*,
    sql_types::{Nullable, Timestamptz},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

pub use super::keyset::{Cursor, KeyValue};
use super::{
    keyset::{self, sort_keys},
    models::{CustomerChanges, CustomerRow, NewCustomerRow},
    schema::{customer_external_ids, customers},
    table::{bumped, soft_deleted_statements},
};
use crate::domain::{filter::CustomerField, order_by::CustomerOrder};

soft_deleted_statements!(customers: CustomerRow, NewCustomerRow, CustomerChanges);

/// Detaches every live customer of `company` (clears their `company`), bumping each one's
/// version, and returns them as they are now. Rows being written concurrently are waited
/// for and re-checked (PostgreSQL re-evaluates the condition on the newest row version).
pub async fn detach_company(
    conn: &mut AsyncPgConnection,
    company: &str,
    actor: &str,
) -> QueryResult<Vec<CustomerRow>> {
    diesel::update(live_in_company(company))
        .set((
            customers::company.eq(None::<String>),
            bumped!(customers),
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
    live_in_company(company).count().get_result(conn).await
}

/// The live customers of `company`.
#[diesel::dsl::auto_type]
fn live_in_company<'a>(company: &'a str) -> _ {
    customers::table
        .filter(customers::company.eq(company))
        .filter(customers::delete_time.is_null())
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

/// The live customer holding the external id `(source, id)` (one primary-key probe of
/// `customer_external_ids`, which holds live customers' pairs only).
pub async fn by_external_id(
    conn: &mut AsyncPgConnection,
    source: &str,
    id: &str,
) -> QueryResult<Option<Uuid>> {
    customer_external_ids::table
        .find((source, id))
        .select(customer_external_ids::customer_id)
        .first(conn)
        .await
        .optional()
}

sort_keys!(CustomerOrder for CustomerRow {
    CreateTime => Time(create_time),
    UpdateTime => Time(update_time),
    FamilyName => Text(family_name in columns),
    GivenName => Text(given_name in columns),
    Email => Text(email in columns),
});

/// One page request of [`list`].
pub type ListQuery<'a> = keyset::ListQuery<'a, CustomerField, CustomerOrder>;

/// One page of customers: of `company` (`companies/{id}`) only, when given.
pub async fn list(
    conn: &mut AsyncPgConnection,
    query: &ListQuery<'_>,
    company: Option<&str>,
) -> QueryResult<Vec<CustomerRow>> {
    let rows = || {
        let rows = rows(query.show_deleted);
        match company {
            Some(company) => rows.filter(customers::company.eq(company.to_owned())),
            None => rows,
        }
    };
    match query.filter.filter(|filter| keyset::searches_text(filter)) {
        // A substring search: the planner cannot tell a rare substring from a common one,
        // so the statement looks at the density among the next rows in order first.
        Some(search) => {
            let conn: &AsyncPgConnection = conn;
            let page = query.search(rows, "customers", search);
            keyset::with_generic_plan(conn, page.load(&mut &*conn)).await
        }
        None => query.page(rows()).load(conn).await,
    }
}

/// Which of `ids` are soft-deleted customers now (purged and unknown ids are not).
pub async fn deleted_among(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<Uuid>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    customers::table
        .filter(customers::id.eq_any(ids))
        .filter(customers::delete_time.is_not_null())
        .select(customers::id)
        .load(conn)
        .await
}

/// The sources of the external ids the customers of this snapshot hold, sorted, at most
/// `limit` of them (the CSV columns of an export). Live customers' pairs are read from the
/// primary key of `customer_external_ids`, skipping from one source to the next (one index
/// probe per source, however many pairs); deleted customers' maps only with `show_deleted`.
pub async fn external_id_sources(
    conn: &mut AsyncPgConnection,
    show_deleted: bool,
    limit: i64,
) -> QueryResult<Vec<String>> {
    #[derive(QueryableByName)]
    struct Source {
        #[diesel(sql_type = diesel::sql_types::Text)]
        source: String,
    }
    const LIVE: &str = "WITH RECURSIVE walk AS ( \
           (SELECT source FROM customer_external_ids ORDER BY source LIMIT 1) \
           UNION ALL \
           SELECT (SELECT e.source FROM customer_external_ids e \
                   WHERE e.source > walk.source ORDER BY e.source LIMIT 1) \
           FROM walk WHERE walk.source IS NOT NULL) \
         SELECT source FROM walk WHERE source IS NOT NULL";
    const DELETED: &str = " UNION SELECT jsonb_object_keys(external_ids) FROM customers \
         WHERE delete_time IS NOT NULL AND external_ids <> '{}'::jsonb";
    let sql = format!(
        "SELECT source FROM ({LIVE}{}) AS sources ORDER BY source LIMIT $1",
        if show_deleted { DELETED } else { "" }
    );
    let rows: Vec<Source> = diesel::sql_query(sql)
        .bind::<diesel::sql_types::BigInt, _>(limit)
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|row| row.source).collect())
}

/// Inserts a batch of new customers in one statement (an import's batch) and returns them
/// as stored, in the order given. The external-id trigger claims each row's pairs as for a
/// single insert; a taken email or pair fails the whole statement.
pub async fn insert_many(
    conn: &mut AsyncPgConnection,
    rows: &[NewCustomerRow],
) -> QueryResult<Vec<CustomerRow>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut stored: Vec<CustomerRow> = diesel::insert_into(customers::table)
        .values(rows)
        .returning(CustomerRow::as_returning())
        .get_results(conn)
        .await?;
    // RETURNING follows the VALUES order in practice; an import's events must, so it is
    // made certain.
    let order: std::collections::HashMap<Uuid, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| (row.id, i))
        .collect();
    stored.sort_by_key(|row| order.get(&row.id).copied().unwrap_or(usize::MAX));
    Ok(stored)
}

/// Which of `emails` (lowercased) live customers hold, and who: one set-based probe of the
/// live-email index for a whole batch.
pub async fn live_emails_among(
    conn: &mut AsyncPgConnection,
    emails: &[String],
) -> QueryResult<Vec<(String, Uuid)>> {
    if emails.is_empty() {
        return Ok(Vec::new());
    }
    customers::table
        .filter(customers::delete_time.is_null())
        .filter(
            sql::<diesel::sql_types::Bool>("lower(email) = ANY(")
                .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(emails)
                .sql(")"),
        )
        .select((
            sql::<diesel::sql_types::Text>("lower(email)"),
            customers::id,
        ))
        .load(conn)
        .await
}

/// The live customers holding any of the external ids `(sources[i], ids[i])`: one
/// set-based probe for a whole batch.
pub async fn external_id_holders(
    conn: &mut AsyncPgConnection,
    sources: &[String],
    ids: &[String],
) -> QueryResult<Vec<(String, String, Uuid)>> {
    if sources.is_empty() {
        return Ok(Vec::new());
    }
    customer_external_ids::table
        .filter(
            sql::<diesel::sql_types::Bool>("(source, external_id) IN (SELECT * FROM unnest(")
                .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(sources)
                .sql(", ")
                .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(ids)
                .sql("))"),
        )
        .select((
            customer_external_ids::source,
            customer_external_ids::external_id,
            customer_external_ids::customer_id,
        ))
        .load(conn)
        .await
}
