//! FindDuplicateCustomers' query: the live customers that share a normal form with a probe,
//! scored and ranked in one statement over the indexes of the `duplicate_indexes`
//! migration (a `BitmapOr` of index scans, whatever the table's size).

use diesel::{
    QueryableByName,
    sql_types::{BigInt, Bool, Double, Jsonb, Nullable, Text},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::domain::duplicates::{NAME_SIMILARITY, Probe};

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
pub async fn find(
    conn: &mut AsyncPgConnection,
    probe: &Probe,
    except: Option<Uuid>,
    limit: i64,
    offset: i64,
) -> diesel::QueryResult<Vec<Hit>> {
    let external_ids = serde_json::to_value(&probe.external_ids)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    diesel::sql_query(
        "WITH normal AS ( \
             SELECT c.id, c.phone, c.company, \
                    regexp_replace(lower(c.email), '\\+[^@]*@', '@') AS email, \
                    split_part(regexp_replace(lower(c.email), '\\+[^@]*@', '@'), '@', 1) AS local, \
                    lower(c.given_name || ' ' || c.family_name) AS full_name \
             FROM customers c \
             WHERE c.delete_time IS NULL AND c.id IS DISTINCT FROM $7 \
               AND (regexp_replace(lower(c.email), '\\+[^@]*@', '@') = $1 \
                    OR split_part(regexp_replace(lower(c.email), '\\+[^@]*@', '@'), '@', 1) = $2 \
                    OR c.phone = $3 \
                    OR lower(c.given_name || ' ' || c.family_name) % $4 \
                    OR c.id IN (SELECT x.customer_id FROM customer_external_ids x \
                                JOIN jsonb_each_text($6) p \
                                  ON x.source = p.key AND x.external_id = p.value)) \
         ), hits AS ( \
             SELECT n.id, \
                    $1 <> '' AND n.email = $1 AS same_email, \
                    $2 <> '' AND n.local = $2 AND n.email <> $1 AS same_local_part, \
                    $3 <> '' AND n.phone IS NOT DISTINCT FROM $3 AS same_phone, \
                    CASE WHEN $4 = '' THEN 0 ELSE similarity(n.full_name, $4)::float8 END \
                        AS name_similarity, \
                    $5 <> '' AND n.company IS NOT DISTINCT FROM $5 AS same_company, \
                    n.id IN (SELECT x.customer_id FROM customer_external_ids x \
                             JOIN jsonb_each_text($6) p \
                               ON x.source = p.key AND x.external_id = p.value) \
                        AS same_external_id \
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
    .load(conn)
    .await
}
