//! Queries of data-subject rights (issue 19): what an erasure deletes besides the rows the
//! purge deletes too (the stored responses of requests about the customer), and the
//! erasure log.

use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    sql_types::{Nullable, Text},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{request_ids, schema::erasure_log};
use crate::domain::{
    erasure::{Erasure, ErasureReason},
    names::{CustomerName, ResourceName as _},
};

/// Clears the stored responses of every earlier request about `customer`
/// (`customers/{uuid}`): those whose events name it or its notes, and those whose stored
/// response names it (a write that changed nothing records no event). The claims stay, with
/// their fingerprints (hashes), so that a retry of such a request is recognised and refused
/// rather than run again, which could bring the erased data back. `except`: the erasure's
/// own request id. The reason is stored (`erased`), so a retry is told the
/// request was erased (`REQUEST_ERASED`), not that a purged customer is gone; the owner is
/// cleared as well, which is how a release before that column tells the two apart. The
/// number of responses cleared.
///
/// One scan of `request_ids`, which holds one day of requests (`REQUEST_ID_TTL`); erasures
/// are rare.
pub async fn forget_replays(
    conn: &mut AsyncPgConnection,
    customer: &str,
    except: Option<Uuid>,
) -> QueryResult<usize> {
    // A UUID holds no LIKE metacharacter.
    let notes = format!("{customer}/notes/%");
    diesel::sql_query(
        "UPDATE request_ids SET response = NULL, response_pb = NULL, customer_id = NULL, \
                forgotten_reason = $4 \
         WHERE request_id IS DISTINCT FROM $3 \
           AND (response IS NOT NULL OR response_pb IS NOT NULL) \
           AND (request_id IN (SELECT request_id FROM events \
                               WHERE (aggregate = $1 OR aggregate LIKE $2) \
                                 AND request_id IS NOT NULL) \
                OR position(convert_to($1, 'UTF8') IN response_pb) > 0 \
                OR strpos(response::text, $1) > 0)",
    )
    .bind::<Text, _>(customer)
    .bind::<Text, _>(&notes)
    .bind::<Nullable<diesel::sql_types::Uuid>, _>(except)
    .bind::<Text, _>(request_ids::ERASED)
    .execute(conn)
    .await
}

/// An erasure log row, as [`logged`] reads it.
type Logged = (
    Uuid,
    String,
    Option<String>,
    String,
    DateTime<Utc>,
    i64,
    i64,
    i64,
);

/// The columns [`Logged`] holds.
#[diesel::dsl::auto_type]
fn logged() -> _ {
    (
        erasure_log::customer_id,
        erasure_log::reason,
        erasure_log::reference,
        erasure_log::actor,
        erasure_log::erase_time,
        erasure_log::notes_erased,
        erasure_log::events_scrubbed,
        erasure_log::replays_erased,
    )
}

/// Records `erasure` (made under `request_id`); the record as stored (its time to the
/// microsecond).
pub async fn record(
    conn: &mut AsyncPgConnection,
    erasure: &Erasure,
    request_id: Option<Uuid>,
) -> QueryResult<Erasure> {
    let row: Logged = diesel::insert_into(erasure_log::table)
        .values((
            erasure_log::customer_id.eq(erasure.customer.id()),
            erasure_log::reason.eq(erasure.reason.as_str()),
            erasure_log::reference.eq(erasure.reference.as_deref()),
            erasure_log::actor.eq(&erasure.actor),
            erasure_log::request_id.eq(request_id),
            erasure_log::erase_time.eq(erasure.erase_time),
            erasure_log::notes_erased.eq(erasure.notes_erased),
            erasure_log::events_scrubbed.eq(erasure.events_scrubbed),
            erasure_log::replays_erased.eq(erasure.replays_erased),
        ))
        .returning(logged())
        .get_result(conn)
        .await?;
    erasure_of(row)
}

/// The erasure of a customer, if it was erased.
pub async fn find(conn: &mut AsyncPgConnection, customer_id: Uuid) -> QueryResult<Option<Erasure>> {
    let row: Option<Logged> = erasure_log::table
        .find(customer_id)
        .select(logged())
        .first(conn)
        .await
        .optional()?;
    row.map(erasure_of).transpose()
}

fn erasure_of(
    (customer, reason, reference, actor, erase_time, notes, events, replays): Logged,
) -> QueryResult<Erasure> {
    let reason = ErasureReason::parse(&reason).ok_or_else(|| {
        diesel::result::Error::DeserializationError("unknown erasure reason stored".into())
    })?;
    Ok(Erasure {
        customer: CustomerName(customer),
        reason,
        reference,
        actor,
        erase_time,
        notes_erased: notes,
        events_scrubbed: events,
        replays_erased: replays,
    })
}
