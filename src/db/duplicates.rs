//! FindDuplicateCustomers' query: the live customers that share a normal form with a probe,
//! found by one index probe per reason (migrations `duplicate_indexes` and
//! `duplicate_name_gist`), then scored and ranked, in one statement.

use diesel::{
    QueryableByName,
    sql_types::{BigInt, Bool, Double, Jsonb, Nullable, Text},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use diesel_async::{AnsiTransactionManager, TransactionManager as _};

use crate::domain::duplicates::{MAX_CANDIDATES, NAME_SIMILARITY, Probe};

/// One candidate: its id, what matched and its score (0..1).
#[derive(Debug, Clone, QueryableByName)]
pub struct Hit {
    /// The candidate.
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub id: Uuid,
    /// Same normal email.
    #[diesel(sql_type = Bool)]
    pub same_email: bool,
    /// Same normal local part, another domain.
    #[diesel(sql_type = Bool)]
    pub same_local_part: bool,
    /// Same phone.
    #[diesel(sql_type = Bool)]
    pub same_phone: bool,
    /// Trigram similarity of the full names.
    #[diesel(sql_type = Double)]
    pub name_similarity: f64,
    /// Same company.
    #[diesel(sql_type = Bool)]
    pub same_company: bool,
    /// Holds one of the probe's external ids.
    #[diesel(sql_type = Bool)]
    pub same_external_id: bool,
    /// The weighted sum of the above, at most 1.
    #[diesel(sql_type = Double)]
    pub score: f64,
}

/// The candidates of `probe` other than `except`, best first (ties by id), `limit` of them
/// after the first `offset`.
///
/// Weights: the same email or external id 0.9, phone 0.7, a similar name 0.6 × similarity,
/// the local part at another domain 0.3, the company 0.1 (supporting only); capped at 1.
///
/// The candidates come from one index probe per reason, each cut at [`MAX_CANDIDATES`]
/// (+1, for `except`), united (`UNION`), then joined back by primary key and scored: the
/// cost follows the number of look-alikes, never the table's size. (An `OR` of the reasons
/// in one `WHERE` made PostgreSQL scan the table: 6-8 s per probe at 1,000,000 customers.)
/// Similar names come nearest first from the GiST trigram index (`<->`), pruned by `%`
/// at the candidate similarity [`NAME_SIMILARITY`], set for this transaction only: so a
/// common name costs its 100 nearest neighbours, not every name that shares a trigram.
pub async fn find(
    conn: &mut AsyncPgConnection,
    probe: &Probe,
    except: Option<Uuid>,
    limit: i64,
    offset: i64,
) -> diesel::QueryResult<Vec<Hit>> {
    AnsiTransactionManager::begin_transaction(conn).await?;
    let result = scored(conn, probe, except, limit, offset).await;
    super::finish(conn, result).await
}

/// [`find`]'s statements, inside its transaction.
async fn scored(
    conn: &mut AsyncPgConnection,
    probe: &Probe,
    except: Option<Uuid>,
    limit: i64,
    offset: i64,
) -> diesel::QueryResult<Vec<Hit>> {
    let external_ids = serde_json::to_value(&probe.external_ids)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    diesel::sql_query("SELECT set_config('pg_trgm.similarity_threshold', $1, true)")
        .bind::<Text, _>(NAME_SIMILARITY.to_string())
        .execute(conn)
        .await?;
    diesel::sql_query(
        "WITH ids AS ( \
             (SELECT c.id FROM customers c \
              WHERE $1 <> '' AND c.delete_time IS NULL \
                AND regexp_replace(lower(c.email), '\\+[^@]*@', '@') = $1 \
              LIMIT $11) \
             UNION \
             (SELECT c.id FROM customers c \
              WHERE $2 <> '' AND c.delete_time IS NULL \
                AND split_part(regexp_replace(lower(c.email), '\\+[^@]*@', '@'), '@', 1) = $2 \
              LIMIT $11) \
             UNION \
             (SELECT c.id FROM customers c \
              WHERE $3 <> '' AND c.delete_time IS NULL AND c.phone = $3 \
              LIMIT $11) \
             UNION \
             (SELECT c.id FROM customers c \
              WHERE $4 <> '' AND c.delete_time IS NULL \
                AND lower(c.given_name || ' ' || c.family_name) % $4 \
              ORDER BY lower(c.given_name || ' ' || c.family_name) <-> $4 \
              LIMIT $11) \
             UNION \
             (SELECT x.customer_id FROM jsonb_each_text($6) p \
              JOIN customer_external_ids x ON x.source = p.key AND x.external_id = p.value) \
         ), normal AS ( \
             SELECT c.id, c.phone, c.company, \
                    regexp_replace(lower(c.email), '\\+[^@]*@', '@') AS email, \
                    split_part(regexp_replace(lower(c.email), '\\+[^@]*@', '@'), '@', 1) AS local, \
                    lower(c.given_name || ' ' || c.family_name) AS full_name, \
                    c.external_ids \
             FROM ids JOIN customers c ON c.id = ids.id \
             WHERE c.delete_time IS NULL AND c.id IS DISTINCT FROM $7 \
         ), hits AS ( \
             SELECT n.id, \
                    $1 <> '' AND n.email = $1 AS same_email, \
                    $2 <> '' AND n.local = $2 AND n.email <> $1 AS same_local_part, \
                    $3 <> '' AND n.phone IS NOT DISTINCT FROM $3 AS same_phone, \
                    CASE WHEN $4 = '' THEN 0 ELSE similarity(n.full_name, $4)::float8 END \
                        AS name_similarity, \
                    $5 <> '' AND n.company IS NOT DISTINCT FROM $5 AS same_company, \
                    EXISTS (SELECT 1 FROM jsonb_each_text($6) p \
                            WHERE n.external_ids ->> p.key = p.value) AS same_external_id \
             FROM normal n \
         ), scored AS ( \
             SELECT *, least(1.0, \
                 0.9 * same_email::int + 0.9 * same_external_id::int \
                 + 0.7 * same_phone::int \
                 + CASE WHEN name_similarity >= $8 THEN 0.6 * name_similarity ELSE 0 END \
                 + 0.3 * same_local_part::int + 0.1 * same_company::int)::float8 AS score \
             FROM hits \
             WHERE same_email OR same_external_id OR same_phone OR same_local_part \
                OR name_similarity >= $8 \
         ) \
         SELECT * FROM scored ORDER BY score DESC, id LIMIT $9 OFFSET $10",
    )
    .bind::<Text, _>(&probe.email)
    .bind::<Text, _>(&probe.local_part)
    .bind::<Text, _>(&probe.phone)
    .bind::<Text, _>(&probe.full_name)
    .bind::<Text, _>(&probe.company)
    .bind::<Jsonb, _>(external_ids)
    .bind::<Nullable<diesel::sql_types::Uuid>, _>(except)
    .bind::<Double, _>(NAME_SIMILARITY)
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(offset)
    .bind::<BigInt, _>(MAX_CANDIDATES + 1)
    .load(conn)
    .await
}
