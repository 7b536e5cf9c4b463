//! Request-id records (AIP-155): what makes a retried write safe.
//!
//! A write carrying a request id *claims* the id inside its own transaction with
//! `INSERT … ON CONFLICT DO NOTHING`. PostgreSQL makes a concurrent claimer of the same id wait
//! until the first transaction ends: if it committed, the claim conflicts; if it rolled back,
//! the claim succeeds. Either way exactly one write commits.
//!
//! A write of one resource claims last, with its response ([`claim_with_response`]): a
//! conflict rolls its write back, and it runs again claiming first ([`claim`], then
//! [`complete`]), which replays the stored response. Heavier writes claim first.

use std::time::Duration;

use diesel::{
    pg::Pg,
    prelude::*,
    query_builder::{AstPass, QueryFragment, QueryId},
    sql_types::Bytea,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::request_ids;

/// What a claim found.
#[derive(Debug)]
pub enum Claim {
    /// The id is new: proceed with the write, then [`complete`] it.
    Fresh,
    /// The id was used by a committed write with this fingerprint and response (one of the
    /// two encodings, see `crate::encoding::replay`).
    Used {
        /// Fingerprint of the first request.
        fingerprint: Vec<u8>,
        /// The first response, versioned (`response_pb`).
        response: Option<Vec<u8>>,
        /// The first response as version 1 JSON (`response`), stored before version 2.
        response_v1: Option<serde_json::Value>,
        /// The customer whose data the response held.
        customer_id: Option<Uuid>,
        /// Why neither response is stored any more ([`PURGED`], [`ERASED`]); `None` while
        /// one is, and on rows an older release forgot (its purge kept `customer_id`, its
        /// erasure cleared it).
        forgotten_reason: Option<String>,
    },
}

/// `request_ids.forgotten_reason` of a response erased with its purged customer
/// ([`erase_customer`]).
pub const PURGED: &str = "purged";
/// `request_ids.forgotten_reason` of a response erased with its erased customer
/// (`db::erasure::forget_replays`).
pub const ERASED: &str = "erased";

/// Claims `request_id` for a request with `fingerprint`. Must run inside the write's
/// transaction so that the claim and the write commit or roll back together.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    request_id: Uuid,
    fingerprint: &[u8],
) -> QueryResult<Claim> {
    let inserted = super::statement::rendered_once!(
        diesel::insert_into(request_ids::table)
            .values((
                request_ids::request_id.eq(request_id),
                request_ids::fingerprint.eq(fingerprint),
            ))
            .on_conflict(request_ids::request_id)
            .do_nothing()
    )
    .execute(conn)
    .await?;
    if inserted == 1 {
        return Ok(Claim::Fresh);
    }
    let (fingerprint, response, response_v1, customer_id, forgotten_reason) = request_ids::table
        .find(request_id)
        .select((
            request_ids::fingerprint,
            request_ids::response_pb,
            request_ids::response,
            request_ids::customer_id,
            request_ids::forgotten_reason,
        ))
        .first::<(
            Vec<u8>,
            Option<Vec<u8>>,
            Option<serde_json::Value>,
            Option<Uuid>,
            Option<String>,
        )>(conn)
        .await?;
    Ok(Claim::Used {
        fingerprint,
        response,
        response_v1,
        customer_id,
        forgotten_reason,
    })
}

/// Claims `request_id` and stores the write's response in one statement, at the end of a
/// write that ran before claiming (`Writer::optimistic`): `false` when the id was used by a
/// committed write (PostgreSQL makes this wait for a concurrent claimer's transaction to
/// end), and the caller must roll back. The row is written once, where claiming first
/// writes it and then updates it (a new tuple in each of its indexes).
pub async fn claim_with_response(
    conn: &mut AsyncPgConnection,
    request_id: Uuid,
    fingerprint: &[u8],
    response: &[u8],
    customer_id: Option<Uuid>,
) -> QueryResult<bool> {
    let inserted = super::statement::rendered_once!(
        diesel::insert_into(request_ids::table)
            .values((
                request_ids::request_id.eq(request_id),
                request_ids::fingerprint.eq(fingerprint),
                request_ids::response_pb.eq(response),
                request_ids::customer_id.eq(customer_id),
            ))
            .on_conflict(request_ids::request_id)
            .do_nothing()
    )
    .execute(conn)
    .await?;
    Ok(inserted == 1)
}

/// Stores the response of the write that claimed `request_id`, in the current version of
/// `crate::encoding::replay`, with the customer whose personal data it holds.
pub async fn complete(
    conn: &mut AsyncPgConnection,
    request_id: Uuid,
    response: &[u8],
    customer_id: Option<Uuid>,
) -> QueryResult<()> {
    Complete {
        request_id,
        response,
        customer_id,
    }
    .execute(conn)
    .await
    .map(drop)
}

/// `UPDATE request_ids SET response_pb = $1, customer_id = $2 WHERE request_id = $3`, spelled out as a query
/// with a static id so that it is prepared once per connection: diesel never caches an
/// `UPDATE` (a changeset may skip fields, changing the SQL), so `diesel::update` cost a
/// Parse round trip and a fresh plan on every write that carried a request id.
#[derive(Debug)]
struct Complete<'a> {
    request_id: Uuid,
    response: &'a [u8],
    customer_id: Option<Uuid>,
}

impl QueryId for Complete<'_> {
    type QueryId = Complete<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<Pg> for Complete<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("UPDATE request_ids SET response_pb = ");
        out.push_bind_param::<Bytea, _>(self.response)?;
        out.push_sql(", customer_id = ");
        out.push_bind_param::<diesel::sql_types::Nullable<diesel::sql_types::Uuid>, _>(
            &self.customer_id,
        )?;
        out.push_sql(" WHERE request_id = ");
        out.push_bind_param::<diesel::sql_types::Uuid, _>(&self.request_id)?;
        Ok(())
    }
}

/// Erases the stored responses that hold the data of customer `customer_id` (being purged),
/// recording why ([`PURGED`]): the claims stay, so a retry is still not a second
/// write, but it finds no response to replay. Returns how many.
pub async fn erase_customer(conn: &mut AsyncPgConnection, customer_id: Uuid) -> QueryResult<usize> {
    diesel::update(request_ids::table.filter(request_ids::customer_id.eq(customer_id)))
        .set((
            request_ids::response_pb.eq(None::<Vec<u8>>),
            request_ids::response.eq(None::<serde_json::Value>),
            request_ids::forgotten_reason.eq(PURGED),
        ))
        .execute(conn)
        .await
}

/// Forgets request ids older than `ttl`; returns how many.
pub async fn purge(conn: &mut AsyncPgConnection, ttl: Duration) -> QueryResult<usize> {
    let cutoff =
        chrono::Utc::now() - chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(1));
    diesel::delete(request_ids::table.filter(request_ids::create_time.lt(cutoff)))
        .execute(conn)
        .await
}
