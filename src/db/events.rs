//! The event log (transactional outbox) and its commit-ordered positions.
//!
//! Writers insert events inside their own transaction ([`insert`]); nothing else about an
//! event is decided at that point. A *sequencer* ([`assign_positions`]) then numbers committed
//! events in commit order: it takes the row lock of `event_log`, so sequencers of every
//! instance take turns, and each turn numbers the events its snapshot sees after the last
//! number handed out. A reader therefore always sees positions as a gap-free prefix
//! (pruning aside), and "everything after position p" never skips an event that committed
//! late, which a raw BIGSERIAL cursor would.
//!
//! The relay reads positioned, unpublished events in position order and marks them published
//! after the broker acknowledged them (through its lease connection, see [`super::relay`]);
//! retention deletes old published events. Readers never lock: [`has_unsequenced`] tells them
//! whether to wait for a sequencer run, and [`Listener`] announces positions as they are
//! assigned.

use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    sql_types::{BigInt, Nullable, Timestamptz},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{
    Pool,
    filter::condition,
    schema::{event_log, events},
};
use crate::{
    domain::{
        customer::Customer,
        event::EventType,
        filter::{EventField, Expr},
    },
    encoding::{DecodeError, event_payload},
};

/// A new event, as the writing transaction knows it. `None` is written as NULL (not
/// DEFAULT), so the INSERT has one shape and its prepared statement is cached. New events
/// fill `payload` only; `data` (version 1 JSON) is left NULL.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = events, treat_none_as_default_value = false)]
pub struct NewEventRow {
    /// Unique event id.
    pub event_id: Uuid,
    /// The resource: `customers/{id}`, `companies/{id}` or `customers/{id}/notes/{id}`.
    pub aggregate: String,
    /// Per-aggregate sequence.
    pub sequence: i64,
    /// `CustomerRegistered`, `CompanyCreated`, `NoteAdded` …
    pub event_type: String,
    /// What happened, in the current version of `crate::encoding::event_payload`.
    pub payload: Vec<u8>,
    /// Who made the change.
    pub actor: String,
    /// The call's request id.
    pub request_id: Option<Uuid>,
    /// The W3C `traceparent` of the request that wrote it, when it was traced.
    pub traceparent: Option<String>,
}

/// A positioned event read from the log.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = events, check_for_backend(diesel::pg::Pg))]
pub struct EventRow {
    /// Insertion order (internal).
    pub id: i64,
    /// Unique event id.
    pub event_id: Uuid,
    /// The resource: `customers/{id}`, `companies/{id}` or `customers/{id}/notes/{id}`.
    pub aggregate: String,
    /// Per-aggregate sequence.
    pub sequence: i64,
    /// Event type name.
    pub event_type: String,
    /// What happened, as version 1 JSON: events written before version 2 only.
    pub data: Option<serde_json::Value>,
    /// Who made the change.
    pub actor: String,
    /// The call's request id.
    pub request_id: Option<Uuid>,
    /// When the change was made.
    pub occur_time: DateTime<Utc>,
    /// Commit-ordered position (`None` until sequenced; never `None` in reads below).
    pub position: Option<i64>,
    /// What happened, versioned (`crate::encoding::event_payload`); `None` in events written
    /// before version 2, which have `data`.
    pub payload: Option<Vec<u8>>,
    /// The W3C `traceparent` of the request that wrote it, when it was traced.
    pub traceparent: Option<String>,
}

/// Records an event in the current transaction.
pub async fn insert(conn: &mut AsyncPgConnection, row: &NewEventRow) -> QueryResult<()> {
    super::statement::rendered_once!(diesel::insert_into(events::table).values(row))
        .execute(conn)
        .await
        .map(drop)
}

/// Records many events in the current transaction, in one statement per thousand (an
/// import's batch).
pub async fn insert_many(conn: &mut AsyncPgConnection, rows: &[NewEventRow]) -> QueryResult<()> {
    for chunk in rows.chunks(1000) {
        diesel::insert_into(events::table)
            .values(chunk)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Notification channel announcing newly positioned events (payload: the last position).
pub const SEQUENCED_CHANNEL: &str = "customer_api_events";

#[derive(QueryableByName)]
struct Assigned {
    #[diesel(sql_type = Nullable<BigInt>)]
    last: Option<i64>,
}

/// Numbers up to `limit` committed, unnumbered events in insertion order, after the last
/// number handed out, and announces the new last position. Returns it when any event was
/// numbered. Runs in a transaction of its own (the `event_log` row lock is what serialises
/// sequencers; it is held until commit, so numbers commit in order).
pub async fn assign_positions(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> QueryResult<Option<i64>> {
    conn.transaction(async |conn| assign_positions_locked(conn, limit).await)
        .await
}

async fn assign_positions_locked(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> QueryResult<Option<i64>> {
    // Taking the lock first matters: in READ COMMITTED the next statement takes a fresh
    // snapshot, which then includes every event numbered by the previous holder and every
    // event committed before we got the lock.
    let last: i64 = event_log::table
        .select(event_log::last_position)
        .for_update()
        .first(conn)
        .await?;
    let assigned: Assigned = diesel::sql_query(
        "WITH batch AS ( \
             SELECT id, row_number() OVER (ORDER BY id) AS n \
             FROM events WHERE position IS NULL ORDER BY id LIMIT $2 \
         ), numbered AS ( \
             UPDATE events e SET position = $1 + batch.n FROM batch WHERE e.id = batch.id \
             RETURNING e.position \
         ) \
         SELECT max(position) AS last FROM numbered",
    )
    .bind::<BigInt, _>(last)
    .bind::<BigInt, _>(limit)
    .get_result(conn)
    .await?;
    let Some(new_last) = assigned.last else {
        return Ok(None);
    };
    diesel::update(event_log::table)
        .set(event_log::last_position.eq(new_last))
        .execute(conn)
        .await?;
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<diesel::sql_types::Text, _>(SEQUENCED_CHANNEL)
        .bind::<diesel::sql_types::Text, _>(new_last.to_string())
        .execute(conn)
        .await?;
    Ok(Some(new_last))
}

/// Whether any committed event is still waiting for its position. A plain read (no lock): a
/// reader that sees `true` asks the sequencer to run and waits for it.
pub async fn has_unsequenced(conn: &mut AsyncPgConnection) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        events::table.filter(events::position.is_null()),
    ))
    .get_result(conn)
    .await
}

/// A connection of its own subscribed to a notification channel: [`SEQUENCED_CHANNEL`]
/// (positions assigned by any instance, as they are announced), or another one
/// ([`Listener::subscribe`]).
pub struct Listener {
    conn: AsyncPgConnection,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").finish_non_exhaustive()
    }
}

impl Listener {
    /// Opens a dedicated connection (outside the pool: it stays subscribed for the life of
    /// the listener), subscribes, then reads the last position handed out, so that nothing
    /// numbered before the subscription is missed. Returns the listener and that position.
    pub async fn start(pool: &Pool) -> Result<(Self, i64), ListenError> {
        let mut listener = Self::subscribe(pool, SEQUENCED_CHANNEL).await?;
        let (last, _) = log_state(&mut listener.conn).await?;
        Ok((listener, last))
    }

    /// A dedicated connection (outside the pool) subscribed to `channel`, an identifier.
    pub async fn subscribe(pool: &Pool, channel: &str) -> Result<Self, ListenError> {
        let mut conn = super::dedicated_connection(pool)
            .await
            .map_err(ListenError::Connect)?;
        diesel::sql_query(format!("LISTEN {channel}"))
            .execute(&mut conn)
            .await?;
        Ok(Self { conn })
    }

    /// The payloads announced from now on; ends, or yields an error, when the connection is
    /// lost.
    pub fn payloads(&mut self) -> impl futures_util::Stream<Item = QueryResult<String>> + '_ {
        use futures_util::StreamExt;
        self.conn
            .notifications_stream()
            .map(|notification| notification.map(|n| n.payload))
    }

    /// The positions announced from now on (`None` for a payload that is not a position);
    /// ends, or yields an error, when the connection is lost.
    pub fn positions(&mut self) -> impl futures_util::Stream<Item = QueryResult<Option<i64>>> + '_ {
        use futures_util::StreamExt;
        self.payloads()
            .map(|payload| payload.map(|payload| payload.parse::<i64>().ok()))
    }
}

/// Why the notification listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// No connection could be opened.
    #[error("cannot open the event notification connection: {0}")]
    Connect(String),
    /// A statement failed.
    #[error("event notification connection: {0}")]
    Query(#[from] diesel::result::Error),
}

/// The last position handed out and the highest position removed by retention.
pub async fn log_state(conn: &mut AsyncPgConnection) -> QueryResult<(i64, i64)> {
    event_log::table
        .select((event_log::last_position, event_log::pruned_through))
        .first(conn)
        .await
}

/// One page of positioned events after `after`, oldest first, matching `filter`: every
/// event, or those of one customer (`customers/{id}`) and its notes.
pub async fn list(
    conn: &mut AsyncPgConnection,
    customer: Option<&str>,
    filter: Option<&Expr<EventField>>,
    after: i64,
    limit: i64,
) -> QueryResult<Vec<EventRow>> {
    let mut query = events::table
        .select(EventRow::as_select())
        .filter(events::position.gt(after))
        .order(events::position.asc())
        .limit(limit)
        .into_boxed::<diesel::pg::Pg>();
    if let Some(customer) = customer {
        // The customer's own events and those of its notes (`customers/{id}/notes/{note}`).
        // `customer` is a parsed name (a UUID), so it holds no LIKE metacharacters.
        let notes = format!("{customer}/notes/%");
        query = query.filter(
            events::aggregate
                .eq(customer.to_owned())
                .or(events::aggregate.like(notes)),
        );
    }
    if let Some(filter) = filter {
        query = query.filter(condition(filter));
    }
    query.load(conn).await
}

/// Up to `limit` positioned events not yet published, in position order.
pub async fn unpublished(conn: &mut AsyncPgConnection, limit: i64) -> QueryResult<Vec<EventRow>> {
    events::table
        .select(EventRow::as_select())
        .filter(events::publish_time.is_null())
        .filter(events::position.is_not_null())
        .order(events::position.asc())
        .limit(limit)
        .load(conn)
        .await
}

/// Marks these events published now.
pub async fn mark_published(conn: &mut AsyncPgConnection, ids: &[i64]) -> QueryResult<usize> {
    diesel::update(events::table.filter(events::id.eq_any(ids)))
        .set(events::publish_time.eq(diesel::dsl::now))
        .execute(conn)
        .await
}

#[derive(QueryableByName)]
struct Lag {
    #[diesel(sql_type = BigInt)]
    count: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    oldest: Option<DateTime<Utc>>,
}

/// How many events are not yet published, and when the oldest of them happened.
pub async fn unpublished_lag(
    conn: &mut AsyncPgConnection,
) -> QueryResult<(i64, Option<DateTime<Utc>>)> {
    let lag: Lag = diesel::sql_query(
        "SELECT count(*) AS count, min(occur_time) AS oldest FROM events WHERE publish_time IS NULL",
    )
    .get_result(conn)
    .await?;
    Ok((lag.count, lag.oldest))
}

#[derive(QueryableByName)]
struct Pruned {
    #[diesel(sql_type = BigInt)]
    deleted: i64,
}

/// Deletes events that happened before `cutoff` (only published ones unless
/// `include_unpublished`, for deployments without a broker) and records the highest
/// position removed, so that resume tokens from before it are refused. Returns how many
/// events were deleted.
pub async fn prune(
    conn: &mut AsyncPgConnection,
    cutoff: DateTime<Utc>,
    include_unpublished: bool,
) -> QueryResult<i64> {
    let pruned: Pruned = diesel::sql_query(
        "WITH gone AS ( \
             DELETE FROM events \
             WHERE occur_time < $1 AND position IS NOT NULL \
               AND (publish_time IS NOT NULL OR $2) \
             RETURNING position \
         ), mark AS ( \
             UPDATE event_log SET pruned_through = greatest(pruned_through, \
                 (SELECT coalesce(max(position), 0) FROM gone)) \
         ) \
         SELECT count(*) AS deleted FROM gone",
    )
    .bind::<Timestamptz, _>(cutoff)
    .bind::<diesel::sql_types::Bool, _>(include_unpublished)
    .get_result(conn)
    .await?;
    Ok(pruned.deleted)
}

/// Erases the personal data a purged customer left in the log (`purged` is its purged
/// snapshot): each of its own events keeps `snapshot` = `purged` (name, status and times
/// only) and loses `previous`; each event of its notes keeps its note with an empty text and
/// loses `previous` ([`EventData::forget`](crate::domain::event::EventData::forget)). Types,
/// sequences, positions and changed field names stay, so the history still reads in order.
/// Version 1 rows are rewritten in SQL, version 2 rows are decoded, scrubbed and re-encoded;
/// each keeps its version. The number of events rewritten. Runs in the purge's transaction,
/// which holds the customer's row lock, so no writer adds events to these aggregates
/// meanwhile.
pub async fn scrub_customer(conn: &mut AsyncPgConnection, purged: &Customer) -> QueryResult<usize> {
    use diesel::sql_types::{Array, Bytea, Jsonb, Text};
    let customer = purged.name().to_string();
    // `customers/{uuid}/notes/…`: a UUID holds no LIKE metacharacter, and the prefix is what
    // events_aggregate_prefix_idx (text_pattern_ops) answers.
    let notes = format!("{customer}/notes/%");
    let snapshot_v1 = event_payload::snapshot_v1(purged)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    let own = diesel::sql_query(
        "UPDATE events SET data = jsonb_set(data - 'previous', '{snapshot}', $1) \
         WHERE aggregate = $2 AND data IS NOT NULL",
    )
    .bind::<Jsonb, _>(snapshot_v1)
    .bind::<Text, _>(&customer)
    .execute(conn)
    .await?;
    let own_notes = diesel::sql_query(
        "UPDATE events SET data = jsonb_set(data - 'previous', '{snapshot,data,text}', '\"\"') \
         WHERE aggregate LIKE $1 AND data IS NOT NULL",
    )
    .bind::<Text, _>(&notes)
    .execute(conn)
    .await?;

    let stored: Vec<StoredPayload> = diesel::sql_query(
        "SELECT id, event_type, payload FROM events \
         WHERE (aggregate = $1 OR aggregate LIKE $2) AND payload IS NOT NULL",
    )
    .bind::<Text, _>(&customer)
    .bind::<Text, _>(&notes)
    .load(conn)
    .await?;
    let mut ids = Vec::with_capacity(stored.len());
    let mut payloads = Vec::with_capacity(stored.len());
    for row in stored {
        let scrubbed = EventType::parse(&row.event_type)
            .ok_or(DecodeError::invalid("event_type", "unknown"))
            .and_then(|event_type| event_payload::scrub(event_type, &row.payload, purged))
            .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?;
        ids.push(row.id);
        payloads.push(scrubbed);
    }
    let rewritten = if ids.is_empty() {
        0
    } else {
        // One statement for every event, whatever their number.
        diesel::sql_query(
            "UPDATE events SET payload = scrubbed.payload \
             FROM unnest($1, $2) AS scrubbed(id, payload) WHERE events.id = scrubbed.id",
        )
        .bind::<Array<BigInt>, _>(&ids)
        .bind::<Array<Bytea>, _>(&payloads)
        .execute(conn)
        .await?
    };
    Ok(own + own_notes + rewritten)
}

#[derive(QueryableByName)]
struct StoredPayload {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    event_type: String,
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    payload: Vec<u8>,
}
