//! Row types and their conversion to and from the domain model.
//!
//! JSON columns (`address`, `labels`) are encoded explicitly here (never as the serde image
//! of a domain type); everything else maps column-for-field. A row that violates the domain's invariants (an unknown status number,
//! malformed JSON) can only come from outside this service, so it surfaces as an internal
//! error rather than a panic.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::schema::{companies, customers, notes};
use crate::domain::{
    company::{Company, CompanyData},
    customer::{Customer, CustomerData, PostalAddress, Status},
    note::{Note, NoteData},
};

/// A `customers` row.
#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = customers, check_for_backend(diesel::pg::Pg))]
pub struct CustomerRow {
    /// Primary key.
    pub id: Uuid,
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Email.
    pub email: String,
    /// Phone.
    pub phone: Option<String>,
    /// Address as JSON.
    pub address: Option<serde_json::Value>,
    /// Status number.
    pub status: i16,
    /// Company reference.
    pub company: Option<String>,
    /// Business id.
    pub business_id: Option<String>,
    /// Labels as a JSON object.
    pub labels: serde_json::Value,
    /// Row version.
    pub version: i64,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last write time.
    pub update_time: DateTime<Utc>,
    /// Soft-deletion time.
    pub delete_time: Option<DateTime<Utc>>,
}

/// A new row: the id and the mutable columns; version and timestamps take their defaults
/// (the database clock, so every instance agrees on time).
///
/// `None` is inserted as NULL, never as `DEFAULT` (no nullable column has another default):
/// an insert whose SQL depends on which fields are `None` cannot be a cached prepared
/// statement, and was prepared afresh (an extra round trip) on every CreateCustomer.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = customers, treat_none_as_default_value = false)]
pub struct NewCustomerRow {
    /// Primary key.
    pub id: Uuid,
    /// Who created it.
    pub created_by: Option<String>,
    /// Everything else the client chose.
    #[diesel(embed)]
    pub fields: CustomerChanges,
}

/// The mutable columns, for `UPDATE ... SET` and inserts.
#[derive(Debug, Clone, AsChangeset, Insertable)]
#[diesel(
    table_name = customers,
    treat_none_as_null = true,
    treat_none_as_default_value = false
)]
pub struct CustomerChanges {
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Email.
    pub email: String,
    /// Phone.
    pub phone: Option<String>,
    /// Address as JSON.
    pub address: Option<serde_json::Value>,
    /// Status number.
    pub status: i16,
    /// Company reference.
    pub company: Option<String>,
    /// Business id.
    pub business_id: Option<String>,
    /// Labels as a JSON object.
    pub labels: serde_json::Value,
    /// Who made this change.
    pub updated_by: Option<String>,
}

impl CustomerChanges {
    /// The columns for `data`, written by `actor`.
    pub fn new(data: &CustomerData, actor: &str) -> Self {
        Self {
            updated_by: Some(actor.to_owned()),
            given_name: data.given_name.clone(),
            family_name: data.family_name.clone(),
            email: data.email.clone(),
            phone: data.phone.clone(),
            address: data.address.as_ref().map(address_json),
            status: data.status.number(),
            company: data.company.clone(),
            business_id: data.business_id.clone(),
            labels: labels_json(&data.labels),
        }
    }
}

fn address_json(address: &PostalAddress) -> serde_json::Value {
    serde_json::json!({
        "lines": address.lines,
        "locality": address.locality,
        "region": address.region,
        "postal_code": address.postal_code,
        "country_code": address.country_code,
    })
}

/// The `address` column as [`address_json`] writes it; parts missing from older rows read
/// as empty. Spelled out here so that the domain type's shape is not the column's.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct AddressColumn {
    #[serde(rename = "lines")]
    lines: Vec<String>,
    #[serde(rename = "locality")]
    locality: String,
    #[serde(rename = "region")]
    region: String,
    #[serde(rename = "postal_code")]
    postal_code: String,
    #[serde(rename = "country_code")]
    country_code: String,
}

impl From<AddressColumn> for PostalAddress {
    fn from(column: AddressColumn) -> Self {
        Self {
            lines: column.lines,
            locality: column.locality,
            region: column.region,
            postal_code: column.postal_code,
            country_code: column.country_code,
        }
    }
}

fn labels_json(labels: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
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

impl TryFrom<CustomerRow> for Customer {
    type Error = CorruptRow;

    fn try_from(row: CustomerRow) -> Result<Self, CorruptRow> {
        let corrupt = |problem: String| CorruptRow {
            id: row.id,
            problem,
        };
        let status = Status::from_number(i32::from(row.status))
            .ok_or_else(|| corrupt(format!("unknown status {}", row.status)))?;
        let address = row
            .address
            .clone()
            .map(serde_json::from_value::<AddressColumn>)
            .transpose()
            .map_err(|e| corrupt(format!("address: {e}")))?
            .map(PostalAddress::from);
        let labels = serde_json::from_value::<BTreeMap<String, String>>(row.labels.clone())
            .map_err(|e| corrupt(format!("labels: {e}")))?;
        Ok(Customer {
            id: row.id,
            data: CustomerData {
                given_name: row.given_name,
                family_name: row.family_name,
                email: row.email,
                phone: row.phone,
                address,
                status,
                company: row.company,
                business_id: row.business_id,
                labels,
            },
            version: row.version,
            create_time: row.create_time,
            update_time: row.update_time,
            delete_time: row.delete_time,
            // The service sets it from the deletion time and its retention setting.
            expire_time: None,
        })
    }
}

/// A `companies` row.
#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = companies, check_for_backend(diesel::pg::Pg))]
pub struct CompanyRow {
    /// Primary key.
    pub id: Uuid,
    /// Display name.
    pub display_name: String,
    /// DNS name.
    pub domain: Option<String>,
    /// Business id.
    pub business_id: Option<String>,
    /// Labels as a JSON object.
    pub labels: serde_json::Value,
    /// Row version.
    pub version: i64,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last write time.
    pub update_time: DateTime<Utc>,
    /// Soft-deletion time.
    pub delete_time: Option<DateTime<Utc>>,
}

/// A new company row; version and timestamps take their defaults.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = companies)]
pub struct NewCompanyRow {
    /// Primary key.
    pub id: Uuid,
    /// Who created it.
    pub created_by: Option<String>,
    /// Everything else the client chose.
    #[diesel(embed)]
    pub fields: CompanyChanges,
}

/// The mutable columns of a company, for `UPDATE ... SET` and inserts.
#[derive(Debug, Clone, AsChangeset, Insertable)]
#[diesel(table_name = companies, treat_none_as_null = true)]
pub struct CompanyChanges {
    /// Display name.
    pub display_name: String,
    /// DNS name.
    pub domain: Option<String>,
    /// Business id.
    pub business_id: Option<String>,
    /// Labels as a JSON object.
    pub labels: serde_json::Value,
    /// Who made this change.
    pub updated_by: Option<String>,
}

impl CompanyChanges {
    /// The columns for `data`, written by `actor`.
    pub fn new(data: &CompanyData, actor: &str) -> Self {
        Self {
            display_name: data.display_name.clone(),
            domain: data.domain.clone(),
            business_id: data.business_id.clone(),
            labels: labels_json(&data.labels),
            updated_by: Some(actor.to_owned()),
        }
    }
}

impl TryFrom<CompanyRow> for Company {
    type Error = CorruptRow;

    fn try_from(row: CompanyRow) -> Result<Self, CorruptRow> {
        let labels = serde_json::from_value::<BTreeMap<String, String>>(row.labels.clone())
            .map_err(|e| CorruptRow {
                id: row.id,
                problem: format!("labels: {e}"),
            })?;
        Ok(Company {
            id: row.id,
            data: CompanyData {
                display_name: row.display_name,
                domain: row.domain,
                business_id: row.business_id,
                labels,
            },
            version: row.version,
            create_time: row.create_time,
            update_time: row.update_time,
            delete_time: row.delete_time,
        })
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
    /// The text.
    pub text: String,
    /// Who creates it.
    pub author: String,
    /// Who wrote it last (the author, at first).
    pub updated_by: Option<String>,
}

impl From<NoteRow> for Note {
    fn from(row: NoteRow) -> Self {
        Note {
            id: row.id,
            customer_id: row.customer_id,
            data: NoteData { text: row.text },
            author: row.author,
            version: row.version,
            create_time: row.create_time,
            update_time: row.update_time,
        }
    }
}
