//! Service keys stored in the database: secrets generated once and then shared by every
//! replica over the same database, so a deployment needs no key configuration to agree.
//!
//! The first replica to start inserts a random key with `INSERT … ON CONFLICT DO NOTHING`;
//! every replica (that one included) then reads whichever key was stored. PostgreSQL makes a
//! concurrent inserter of the same name wait for the first one's commit and then do nothing,
//! so replicas starting at once still end up with the same key. Keys never leave this module
//! except as the return value: they are not logged.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::service_keys;

/// Name of the root key page tokens derive their encryption key from.
const PAGE_TOKEN_KEY: &str = "page_tokens";

/// The page-token root key shared by all replicas, generated and stored on first use.
pub async fn page_token_key(conn: &mut AsyncPgConnection) -> QueryResult<[u8; 32]> {
    shared_key(conn, PAGE_TOKEN_KEY).await
}

/// The 32-byte key stored under `name`, stored first if there is none yet.
async fn shared_key(conn: &mut AsyncPgConnection, name: &str) -> QueryResult<[u8; 32]> {
    let mut candidate = [0_u8; 32];
    getrandom::fill(&mut candidate).map_err(|e| {
        diesel::result::Error::QueryBuilderError(format!("no randomness for a key: {e}").into())
    })?;
    // Two statements, not one: a single statement's snapshot would not see a key that a
    // concurrent replica committed while this insert waited on it.
    diesel::insert_into(service_keys::table)
        .values((
            service_keys::name.eq(name),
            service_keys::key.eq(candidate.as_slice()),
        ))
        .on_conflict(service_keys::name)
        .do_nothing()
        .execute(conn)
        .await?;
    let stored: Vec<u8> = service_keys::table
        .filter(service_keys::name.eq(name))
        .select(service_keys::key)
        .first(conn)
        .await?;
    // The table's CHECK keeps keys at 32 bytes; a row edited by hand is refused, not truncated.
    stored.try_into().map_err(|stored: Vec<u8>| {
        diesel::result::Error::DeserializationError(
            format!(
                "service key {name:?} is {} bytes, expected 32",
                stored.len()
            )
            .into(),
        )
    })
}
