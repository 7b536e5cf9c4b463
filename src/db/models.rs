//! Row types and their conversion to and from the domain model.
//!
//! A resource's fields are the columns a client chooses ([`CustomerColumns`],
//! [`CompanyColumns`]); `resource_rows!` declares around them the stored row, the changeset
//! of a write and the new row, which every soft-deleted resource table has alike. JSON columns
//! (`address`, `labels`) are encoded explicitly here (never as the serde image of a domain
//! type); everything else maps column-for-field. A row that violates the domain's invariants
//! (an unknown status number, malformed JSON) can only come from outside this service, so it
//! surfaces as an internal error rather than a panic.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::schema::{companies, customers, notes};
use crate::domain::{
    company::{Company, CompanyData},
    customer::{Customer, CustomerData, PostalAddress, Status},
    note::{Note, NoteData},
    stored::Stored,
};
use crate::encoding::AddressJson;

/// The columns a client chooses, read and written as the domain's fields.
pub trait Columns: Sized {
    /// The domain's fields.
    type Data;
    /// The columns for `data`.
    fn new(data: &Self::Data) -> Self;
    /// The fields these columns hold (`id`: the row, named in errors).
    fn into_data(self, id: Uuid) -> Result<Self::Data, CorruptRow>;
}

/// Declares `$columns`, the columns of `$table` a client chooses, each holding the field of
/// its name of `$data` ([`Column`]), and implements [`Columns`] for it.
macro_rules! columns {
    (
        $(#[$doc:meta])*
        $table:ident: $columns:ident => $data:ident {
            $($(#[$field_doc:meta])* $field:ident: $column:ty,)*
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Queryable, Selectable, AsChangeset, Insertable)]
        #[diesel(
            table_name = $table,
            check_for_backend(diesel::pg::Pg),
            treat_none_as_null = true,
            treat_none_as_default_value = false
        )]
        pub struct $columns {
            $($(#[$field_doc])* pub $field: $column,)*
        }

        impl Columns for $columns {
            type Data = $data;

            fn new(data: &$data) -> Self {
                Self {
                    $($field: Column::encode(&data.$field),)*
                }
            }

            fn into_data(self, id: Uuid) -> Result<$data, CorruptRow> {
                Ok($data {
                    $($field: Column::decode(self.$field, id, stringify!($field))?,)*
                })
            }
        }
    };
}

/// Declares the rows of a soft-deleted resource table `$table` around its [`Columns`]: the
/// stored row (`$row`), the changeset of a write (`$changes`: the columns and who wrote
/// them) and the new row (`$new`: the id, who created it, and a changeset); and the
/// conversion of a stored row into `$resource`, whose other fields are `$field: $value`.
///
/// Version and timestamps take their defaults on insert (the database clock, so every
/// instance agrees on time). `None` is inserted as NULL, never as `DEFAULT` (no nullable
/// column has another default): an insert whose SQL depends on which fields are `None`
/// cannot be a cached prepared statement, and was prepared afresh (an extra round trip) on
/// every create.
macro_rules! resource_rows {
    (
        table: $table:ident,
        columns: $columns:ident,
        rows: $row:ident, $new:ident, $changes:ident,
        $(kept: { $($(#[$kept_doc:meta])* $kept:ident: $kept_ty:ty,)* },)?
        resource: $resource:ident |$r:ident| { $($field:ident: $value:expr),* $(,)? },
    ) => {
        #[doc = concat!("A `", stringify!($table), "` row.")]
        #[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
        #[diesel(table_name = $table, check_for_backend(diesel::pg::Pg))]
        pub struct $row {
            /// Primary key.
            pub id: Uuid,
            /// What the client chose.
            #[diesel(embed)]
            pub columns: $columns,
            /// Row version.
            pub version: i64,
            /// Creation time.
            pub create_time: DateTime<Utc>,
            /// Last write time.
            pub update_time: DateTime<Utc>,
            /// Soft-deletion time.
            pub delete_time: Option<DateTime<Utc>>,
            $($($(#[$kept_doc])* pub $kept: $kept_ty,)*)?
        }

        #[doc = concat!("A new `", stringify!($table), "` row.")]
        #[derive(Debug, Clone, Insertable)]
        #[diesel(table_name = $table, treat_none_as_default_value = false)]
        pub struct $new {
            /// Primary key.
            pub id: Uuid,
            /// Who created it.
            pub created_by: Option<String>,
            /// Everything else the client chose.
            #[diesel(embed)]
            pub fields: $changes,
        }

        impl $new {
            /// Row `id` holding `data`, created by `actor`.
            pub fn new(id: Uuid, data: &<$columns as Columns>::Data, actor: &str) -> Self {
                Self {
                    id,
                    created_by: Some(actor.to_owned()),
                    fields: $changes::new(data, actor),
                }
            }
        }

        #[doc = concat!("The columns a write to `", stringify!($table), "` sets.")]
        #[derive(Debug, Clone, AsChangeset, Insertable)]
        #[diesel(
            table_name = $table,
            treat_none_as_null = true,
            treat_none_as_default_value = false
        )]
        pub struct $changes {
            /// What the client chose.
            #[diesel(embed)]
            pub columns: $columns,
            /// Who made this change.
            pub updated_by: Option<String>,
        }

        impl $changes {
            /// The columns for `data`, written by `actor`.
            pub fn new(data: &<$columns as Columns>::Data, actor: &str) -> Self {
                Self {
                    columns: $columns::new(data),
                    updated_by: Some(actor.to_owned()),
                }
            }
        }

        impl TryFrom<$row> for $resource {
            type Error = CorruptRow;

            fn try_from(row: $row) -> Result<Self, CorruptRow> {
                let $r = &row;
                $(let $field = $value;)*
                Ok($resource {
                    data: row.columns.into_data(row.id)?,
                    stored: Stored {
                        id: row.id,
                        version: row.version,
                        create_time: row.create_time,
                        update_time: row.update_time,
                        delete_time: row.delete_time,
                    },
                    $($field,)*
                })
            }
        }
    };
}

resource_rows! {
    table: customers,
    columns: CustomerColumns,
    rows: CustomerRow, NewCustomerRow, CustomerChanges,
    kept: {
        /// The customer this one was merged into (MergeCustomers); written only by merges.
        merged_into: Option<Uuid>,
    },
    // The service sets `expire_time` from the deletion time and its retention setting.
    resource: Customer |row| {
        expire_time: None,
        merged_into: row.merged_into.map(crate::domain::names::CustomerName),
    },
}

resource_rows! {
    table: companies,
    columns: CompanyColumns,
    rows: CompanyRow, NewCompanyRow, CompanyChanges,
    resource: Company |_row| {},
}

columns! {
    /// The columns of a customer its client chooses.
    customers: CustomerColumns => CustomerData {
        /// Given name.
        given_name: String,
        /// Family name.
        family_name: String,
        /// Email.
        email: String,
        /// Phone.
        phone: Option<String>,
        /// Address as JSON.
        address: Option<JsonText>,
        /// Status number.
        status: i16,
        /// Company reference.
        company: Option<String>,
        /// Business id.
        business_id: Option<String>,
        /// Labels as a JSON object.
        labels: JsonText,
        /// External ids as a JSON object (source -> id); the database keeps
        /// `customer_external_ids` in step with it.
        external_ids: JsonText,
    }
}

columns! {
    /// The columns of a company its client chooses.
    companies: CompanyColumns => CompanyData {
        /// Display name.
        display_name: String,
        /// DNS name.
        domain: Option<String>,
        /// Business id.
        business_id: Option<String>,
        /// Labels as a JSON object.
        labels: JsonText,
    }
}

/// How a domain field is stored in its column: most as they are; JSON columns (`address`,
/// `labels`, `external_ids`) and the status number are encoded explicitly here.
trait Column<T>: Sized {
    /// The column's value for `value`.
    fn encode(value: &T) -> Self;
    /// The field in the column `name` of row `id`.
    fn decode(self, id: Uuid, name: &str) -> Result<T, CorruptRow>;
}

impl<T: Clone> Column<T> for T {
    fn encode(value: &T) -> Self {
        value.clone()
    }

    fn decode(self, _: Uuid, _: &str) -> Result<T, CorruptRow> {
        Ok(self)
    }
}

impl Column<Status> for i16 {
    fn encode(status: &Status) -> Self {
        status.number()
    }

    fn decode(self, id: Uuid, _: &str) -> Result<Status, CorruptRow> {
        Status::from_number(i32::from(self))
            .ok_or_else(|| CorruptRow::new(id, format!("unknown status {self}")))
    }
}

/// The `address` column: [`AddressJson`], spelled out apart from the domain type so that
/// its shape is not the column's.
impl Column<Option<PostalAddress>> for Option<JsonText> {
    fn encode(address: &Option<PostalAddress>) -> Self {
        address
            .as_ref()
            .map(|address| JsonText::of(&AddressJson::from(address)))
    }

    fn decode(self, id: Uuid, name: &str) -> Result<Option<PostalAddress>, CorruptRow> {
        self.map(|json| json.read::<AddressJson>())
            .transpose()
            .map(|address| address.map(PostalAddress::from))
            .map_err(|e| CorruptRow::new(id, format!("{name}: {e}")))
    }
}

/// A string map (`labels`, `external_ids`) as a JSON object of strings.
impl Column<BTreeMap<String, String>> for JsonText {
    fn encode(map: &BTreeMap<String, String>) -> Self {
        JsonText::of(map)
    }

    fn decode(self, id: Uuid, name: &str) -> Result<BTreeMap<String, String>, CorruptRow> {
        // PostgreSQL writes an empty `jsonb` object as exactly this: most customers have no
        // external ids, many no labels.
        if self.0 == b"{}" {
            return Ok(BTreeMap::new());
        }
        self.read()
            .map_err(|e| CorruptRow::new(id, format!("{name}: {e}")))
    }
}

/// A `jsonb` column's value as JSON text, read into and written from the domain's types
/// directly: no `serde_json::Value` tree is built in between (per customer read, a tree of
/// every label, id and address line, then taken apart again). PostgreSQL's binary `jsonb`
/// is a version byte (1) and the text, as diesel's own `serde_json::Value` impls read and
/// write it.
#[derive(
    Debug, Clone, PartialEq, Eq, diesel::deserialize::FromSqlRow, diesel::expression::AsExpression,
)]
#[diesel(sql_type = diesel::sql_types::Jsonb)]
pub struct JsonText(Vec<u8>);

/// The `jsonb` binary format's version byte.
const JSONB_VERSION: u8 = 1;

impl JsonText {
    /// `value` as JSON text (`null` if it cannot be: a map or struct of strings always can).
    fn of(value: &impl serde::Serialize) -> Self {
        Self(serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec()))
    }

    /// The text read as a `T`.
    fn read<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        // Checked as UTF-8 once, whole: read from bytes, `serde_json` checks each string
        // again as it takes it (a tenth of a customer's read, for its address and labels).
        match std::str::from_utf8(&self.0) {
            Ok(text) => serde_json::from_str(text),
            // Read as bytes, the error says where the text goes wrong.
            Err(_) => serde_json::from_slice(&self.0),
        }
    }
}

impl diesel::deserialize::FromSql<diesel::sql_types::Jsonb, diesel::pg::Pg> for JsonText {
    fn from_sql(value: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
        match value.as_bytes() {
            [JSONB_VERSION, text @ ..] => Ok(Self(text.to_vec())),
            _ => Err("Unsupported JSONB encoding version".into()),
        }
    }
}

impl diesel::serialize::ToSql<diesel::sql_types::Jsonb, diesel::pg::Pg> for JsonText {
    fn to_sql<'b>(
        &'b self,
        out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
    ) -> diesel::serialize::Result {
        use std::io::Write as _;
        out.write_all(&[JSONB_VERSION])?;
        out.write_all(&self.0)?;
        Ok(diesel::serialize::IsNull::No)
    }
}

/// A stored row that does not satisfy the domain's invariants.
#[derive(Debug, thiserror::Error)]
#[error("corrupt row {id}: {problem}")]
pub struct CorruptRow {
    /// The row.
    pub id: Uuid,
    /// What is wrong with it.
    pub problem: String,
}

impl CorruptRow {
    fn new(id: Uuid, problem: String) -> Self {
        Self { id, problem }
    }
}

/// A `notes` row.
#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = notes, check_for_backend(diesel::pg::Pg))]
pub struct NoteRow {
    /// Primary key.
    pub id: Uuid,
    /// The customer it belongs to.
    pub customer_id: Uuid,
    /// The text.
    pub text: String,
    /// Who created it.
    pub author: String,
    /// Row version.
    pub version: i64,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last write time.
    pub update_time: DateTime<Utc>,
}

/// A new note row; version and timestamps take their defaults.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = notes)]
pub struct NewNoteRow {
    /// Primary key.
    pub id: Uuid,
    /// The customer it belongs to.
    pub customer_id: Uuid,
    /// Who creates it.
    pub author: String,
    /// The text, written by the author.
    #[diesel(embed)]
    pub fields: NoteChanges,
}

/// The columns a write of a note sets.
#[derive(Debug, Clone, AsChangeset, Insertable)]
#[diesel(table_name = notes)]
pub struct NoteChanges {
    /// The text.
    pub text: String,
    /// Who wrote it last.
    pub updated_by: Option<String>,
}

impl NoteChanges {
    /// The columns for `data`, written by `actor`.
    pub fn new(data: &NoteData, actor: &str) -> Self {
        Self {
            text: data.text.clone(),
            updated_by: Some(actor.to_owned()),
        }
    }
}

impl From<NoteRow> for Note {
    fn from(row: NoteRow) -> Self {
        Note {
            stored: Stored {
                id: row.id,
                version: row.version,
                create_time: row.create_time,
                update_time: row.update_time,
                delete_time: None,
            },
            customer_id: row.customer_id,
            author: row.author,
            data: NoteData { text: row.text },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_maps_are_stored_as_json_objects_and_read_back() {
        let map = BTreeMap::from([
            ("crm".to_owned(), "c-1".to_owned()),
            ("tier".to_owned(), "gold \"vip\"".to_owned()),
        ]);
        let json = <JsonText as Column<BTreeMap<String, String>>>::encode(&map);
        assert_eq!(json.0, br#"{"crm":"c-1","tier":"gold \"vip\""}"#);
        let read: BTreeMap<String, String> = json.decode(Uuid::nil(), "labels").unwrap();
        assert_eq!(read, map);
    }

    #[test]
    fn a_json_column_that_is_not_the_domain_shape_is_a_corrupt_row() {
        let error = <JsonText as Column<BTreeMap<String, String>>>::decode(
            JsonText(br#"{"crm":1}"#.to_vec()),
            Uuid::nil(),
            "labels",
        )
        .unwrap_err();
        assert!(
            error.problem.starts_with("labels: invalid type: integer"),
            "{error}"
        );
    }
}
