//! `src/db/schema.rs` agrees with `migrations/`: every table and column the migrations create
//! is declared, with the same type, nullability and primary key, and nothing more.
//!
//! schema.rs is written by hand (diesel_cli is not part of the build), so this is what keeps
//! it honest: the `table!` blocks are parsed from the source text and compared with
//! `information_schema` of a freshly migrated database.

use std::collections::BTreeMap;

use diesel::{QueryableByName, sql_types::Text};
use diesel_async::RunQueryDsl;

use crate::helpers::fresh_database;

const SCHEMA_RS: &str = include_str!("../../src/db/schema.rs");

/// Diesel's own bookkeeping, not part of schema.rs.
const IGNORED_TABLES: &[&str] = &["__diesel_schema_migrations"];

/// One table: its primary key columns and column name -> (PostgreSQL type, nullable).
#[derive(Debug, Default, PartialEq)]
struct Table {
    primary_key: Vec<String>,
    columns: BTreeMap<String, (String, bool)>,
}

type Schema = BTreeMap<String, Table>;

/// The PostgreSQL type (as `information_schema` spells it) of a diesel SQL type.
fn postgres_type(diesel: &str) -> Result<String, String> {
    if let Some(inner) = diesel
        .strip_prefix("Array<")
        .and_then(|rest| rest.strip_suffix('>'))
    {
        return Ok(format!("{}[]", postgres_type(inner)?));
    }
    let name = match diesel {
        "Uuid" => "uuid",
        "Text" => "text",
        "VarChar" | "Varchar" => "character varying",
        "BigInt" | "Int8" => "bigint",
        "Integer" | "Int4" => "integer",
        "SmallInt" | "Int2" => "smallint",
        "Bool" => "boolean",
        "Timestamptz" => "timestamp with time zone",
        "Timestamp" => "timestamp without time zone",
        "Date" => "date",
        "Jsonb" => "jsonb",
        "Json" => "json",
        "Bytea" | "Binary" => "bytea",
        "Double" | "Float8" => "double precision",
        "Float" | "Float4" => "real",
        "Numeric" => "numeric",
        other => return Err(format!("no PostgreSQL type known for diesel type {other}")),
    };
    Ok(name.to_owned())
}

/// The tables declared by the `diesel::table!` blocks of `source`.
fn declared(source: &str) -> Result<Schema, String> {
    let mut schema = Schema::new();
    let mut lines = source.lines().map(str::trim).enumerate();
    while let Some((_, line)) = lines.next() {
        if line != "diesel::table! {" {
            continue;
        }
        let (number, header) = lines.next().ok_or("table! without a body")?;
        // `name (pk, …) {`
        let (name, rest) = header
            .split_once('(')
            .ok_or_else(|| format!("line {}: expected `table (key) {{`", number + 1))?;
        let (key, _) = rest
            .split_once(')')
            .ok_or_else(|| format!("line {}: expected `table (key) {{`", number + 1))?;
        let mut table = Table {
            primary_key: key.split(',').map(|c| c.trim().to_owned()).collect(),
            columns: BTreeMap::new(),
        };
        for (number, line) in lines.by_ref() {
            if line == "}" {
                break;
            }
            let (column, sql_type) = line
                .strip_suffix(',')
                .and_then(|line| line.split_once("->"))
                .ok_or_else(|| {
                    format!(
                        "line {}: `{line}` is not `column -> Type,` (extend this parser)",
                        number + 1
                    )
                })?;
            let sql_type = sql_type.trim();
            let (sql_type, nullable) = match sql_type
                .strip_prefix("Nullable<")
                .and_then(|inner| inner.strip_suffix('>'))
            {
                Some(inner) => (inner, true),
                None => (sql_type, false),
            };
            table.columns.insert(
                column.trim().to_owned(),
                (postgres_type(sql_type)?, nullable),
            );
        }
        schema.insert(name.trim().to_owned(), table);
    }
    Ok(schema)
}

#[derive(QueryableByName)]
struct Column {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Text)]
    is_nullable: String,
}

#[derive(QueryableByName)]
struct KeyColumn {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
}

/// The tables of the migrated database at `url`.
async fn migrated(url: &str) -> Schema {
    let mut conn = crate::helpers::connect(url).await.unwrap();
    // Arrays are `ARRAY` in data_type; their element type is udt_name without the `_`.
    let columns: Vec<Column> = diesel::sql_query(
        "SELECT table_name::text, column_name::text, \
                CASE WHEN data_type = 'ARRAY' THEN substr(udt_name, 2)::regtype::text || '[]' \
                     ELSE data_type END::text AS data_type, \
                is_nullable::text \
         FROM information_schema.columns WHERE table_schema = 'public'",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let keys: Vec<KeyColumn> = diesel::sql_query(
        "SELECT k.table_name::text, k.column_name::text \
         FROM information_schema.table_constraints c \
         JOIN information_schema.key_column_usage k USING (constraint_schema, constraint_name) \
         WHERE c.constraint_type = 'PRIMARY KEY' AND c.table_schema = 'public' \
         ORDER BY k.table_name, k.ordinal_position",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let mut schema = Schema::new();
    for column in columns {
        if IGNORED_TABLES.contains(&column.table_name.as_str()) {
            continue;
        }
        schema.entry(column.table_name).or_default().columns.insert(
            column.column_name,
            (column.data_type, column.is_nullable == "YES"),
        );
    }
    for key in keys {
        if let Some(table) = schema.get_mut(&key.table_name) {
            table.primary_key.push(key.column_name);
        }
    }
    schema
}

/// Every disagreement, one line each, naming the table and column.
fn differences(declared: &Schema, migrated: &Schema) -> Vec<String> {
    let shown = |(sql_type, nullable): &(String, bool)| {
        format!(
            "{sql_type}{}",
            if *nullable { " NULL" } else { " NOT NULL" }
        )
    };
    let mut out = Vec::new();
    for (name, table) in migrated {
        let Some(ours) = declared.get(name) else {
            out.push(format!(
                "table {name}: created by the migrations, missing in schema.rs"
            ));
            continue;
        };
        if ours.primary_key != table.primary_key {
            out.push(format!(
                "table {name}: primary key ({}) in the migrations, ({}) in schema.rs",
                table.primary_key.join(", "),
                ours.primary_key.join(", ")
            ));
        }
        for (column, actual) in &table.columns {
            match ours.columns.get(column) {
                None => out.push(format!(
                    "{name}.{column}: {} in the migrations, missing in schema.rs",
                    shown(actual)
                )),
                Some(expected) if expected != actual => out.push(format!(
                    "{name}.{column}: {} in the migrations, {} in schema.rs",
                    shown(actual),
                    shown(expected)
                )),
                Some(_) => {}
            }
        }
        for (column, expected) in &ours.columns {
            if !table.columns.contains_key(column) {
                out.push(format!(
                    "{name}.{column}: {} in schema.rs, missing in the migrations",
                    shown(expected)
                ));
            }
        }
    }
    for name in declared.keys().filter(|name| !migrated.contains_key(*name)) {
        out.push(format!(
            "table {name}: in schema.rs, missing in the migrations"
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_rs_matches_the_migrated_database() {
    let database = fresh_database().await;
    let (url, _) = database.parts();
    let migrated = migrated(&url).await;
    let ours = declared(SCHEMA_RS).unwrap();
    assert!(migrated.contains_key("service_keys") && migrated.contains_key("customers"));
    assert_eq!(
        differences(&ours, &migrated),
        Vec::<String>::new(),
        "src/db/schema.rs disagrees with migrations/"
    );

    // The comparison is not vacuous: each kind of drift is reported by table and column.
    let drifted = SCHEMA_RS
        .replace("phone -> Nullable<Text>,", "phone -> Text,")
        .replace("secret_hash -> Bytea,", "secret_hash -> Text,")
        .replace("scopes -> Array<Text>,", "scopes -> Array<Uuid>,")
        .replace("        publish_time -> Nullable<Timestamptz>,\n", "")
        .replace(
            "pruned_through -> BigInt,",
            "pruned_through -> BigInt,\n        extra -> Bool,",
        )
        .replace("service_keys (name)", "service_keys (key)")
        .replace(
            "diesel::table! {\n    notes (id)",
            "diesel::table! {\n    memos (id)",
        );
    assert_eq!(
        differences(&declared(&drifted).unwrap(), &migrated),
        [
            "api_keys.scopes: text[] NOT NULL in the migrations, uuid[] NOT NULL in schema.rs",
            "api_keys.secret_hash: bytea NOT NULL in the migrations, text NOT NULL in schema.rs",
            "customers.phone: text NULL in the migrations, text NOT NULL in schema.rs",
            "event_log.extra: boolean NOT NULL in schema.rs, missing in the migrations",
            "events.publish_time: timestamp with time zone NULL in the migrations, missing in schema.rs",
            "table notes: created by the migrations, missing in schema.rs",
            "table service_keys: primary key (name) in the migrations, (key) in schema.rs",
            "table memos: in schema.rs, missing in the migrations",
        ]
    );
    assert_eq!(
        declared("diesel::table! {\n    t (id) {\n        #[sql_name = \"x\"]\n    }\n}"),
        Err("line 3: `#[sql_name = \"x\"]` is not `column -> Type,` (extend this parser)".into())
    );
}

#[test]
fn every_migration_has_a_version_of_its_own() {
    // Diesel keys applied migrations by the version before the first `_`: two directories
    // with one version (branches merged the same day) would leave one of them unapplied.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    let mut versions: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|name| name.split_once('_').map(|(version, _)| version.to_owned()))
        .collect();
    let count = versions.len();
    versions.sort();
    versions.dedup();
    assert_eq!(versions.len(), count, "a migration version is used twice");
}
