//! Version 1: the JSON that releases before the versioned encodings stored — serde's image
//! of the domain types of the time — read through frozen mirrors of those shapes.
//!
//! FROZEN. Every name below is spelled out (`rename`) and every struct is private, so nothing
//! done to the domain types can change what these read. Rows of this shape exist in
//! databases and are never rewritten (the golden samples in `golden.rs` are real output of
//! the last release that wrote them); do not edit these types, add a new version instead.
//! What serde accepted then is accepted now: unknown keys are ignored, missing `Option`
//! fields read as absent, the address fills missing parts with empty values
//! (`#[serde(default)]`), `changed_fields`/`previous`/`expire_time` may be missing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

use super::DecodeError;
use crate::domain::{
    company::{Company, CompanyData},
    customer::{Customer, CustomerData, PostalAddress, Status},
    event::{Change, EventData, ResourceKind},
    note::{Note, NoteData},
    stored::Stored,
};

/// An event's `data`: the change alone (the event type says which resource it is about).
#[derive(Deserialize)]
#[serde(bound(deserialize = "S: Deserialize<'de>, D: Deserialize<'de>"))]
struct ChangeV1<S, D> {
    #[serde(rename = "snapshot")]
    snapshot: S,
    #[serde(rename = "changed_fields", default)]
    changed_fields: Vec<String>,
    #[serde(rename = "previous", default)]
    previous: Option<D>,
}

/// The keys every stored resource had beside its `data` (notes had no `delete_time`).
#[derive(Serialize, Deserialize)]
struct StoredV1 {
    #[serde(rename = "id")]
    id: Uuid,
    #[serde(rename = "version")]
    version: i64,
    #[serde(rename = "create_time")]
    create_time: DateTime<Utc>,
    #[serde(rename = "update_time")]
    update_time: DateTime<Utc>,
    #[serde(rename = "delete_time", default)]
    delete_time: Option<DateTime<Utc>>,
}

#[derive(Serialize, Deserialize)]
struct CustomerV1 {
    #[serde(flatten)]
    stored: StoredV1,
    #[serde(rename = "data")]
    data: CustomerDataV1,
    #[serde(
        rename = "expire_time",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    expire_time: Option<DateTime<Utc>>,
}

#[derive(Serialize, Deserialize)]
struct CustomerDataV1 {
    #[serde(rename = "given_name")]
    given_name: String,
    #[serde(rename = "family_name")]
    family_name: String,
    #[serde(rename = "email")]
    email: String,
    #[serde(rename = "phone")]
    phone: Option<String>,
    #[serde(rename = "address")]
    address: Option<AddressJson>,
    #[serde(rename = "status")]
    status: StatusV1,
    #[serde(rename = "company")]
    company: Option<String>,
    #[serde(rename = "business_id")]
    business_id: Option<String>,
    #[serde(rename = "labels")]
    labels: BTreeMap<String, String>,
}

/// A postal address as JSON: in version 1 payloads, and in the `address` column, which has
/// the same shape (parts missing from older rows read as empty).
#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
pub(crate) struct AddressJson {
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

#[derive(Serialize, Deserialize)]
enum StatusV1 {
    #[serde(rename = "Active")]
    Active,
    #[serde(rename = "Prospective")]
    Prospective,
    #[serde(rename = "Inactive")]
    Inactive,
}

#[derive(Deserialize)]
struct CompanyV1 {
    #[serde(flatten)]
    stored: StoredV1,
    #[serde(rename = "data")]
    data: CompanyDataV1,
}

#[derive(Deserialize)]
struct CompanyDataV1 {
    #[serde(rename = "display_name")]
    display_name: String,
    #[serde(rename = "domain")]
    domain: Option<String>,
    #[serde(rename = "business_id")]
    business_id: Option<String>,
    #[serde(rename = "labels")]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct NoteV1 {
    #[serde(flatten)]
    stored: StoredV1,
    #[serde(rename = "customer_id")]
    customer_id: Uuid,
    #[serde(rename = "data")]
    data: NoteDataV1,
    #[serde(rename = "author")]
    author: String,
}

#[derive(Deserialize)]
struct NoteDataV1 {
    #[serde(rename = "text")]
    text: String,
}

/// The data of a stored event about a `kind` resource.
pub(super) fn event_data(
    kind: ResourceKind,
    json: serde_json::Value,
) -> Result<EventData, DecodeError> {
    Ok(match kind {
        ResourceKind::Customer => {
            EventData::Customer(ChangeV1::<CustomerV1, CustomerDataV1>::read(json)?)
        }
        ResourceKind::Company => {
            EventData::Company(ChangeV1::<CompanyV1, CompanyDataV1>::read(json)?)
        }
        ResourceKind::Note => EventData::Note(ChangeV1::<NoteV1, NoteDataV1>::read(json)?),
    })
}

impl<S: DeserializeOwned, D: DeserializeOwned> ChangeV1<S, D> {
    /// The change `json` holds, as the domain's.
    fn read<R, F>(json: serde_json::Value) -> Result<Box<Change<R, F>>, DecodeError>
    where
        S: Into<R>,
        D: Into<F>,
    {
        let change: Self = serde_json::from_value(json)?;
        Ok(Box::new(Change {
            snapshot: change.snapshot.into(),
            changed_fields: change.changed_fields,
            previous: change.previous.map(Into::into),
        }))
    }
}

/// A stored customer response.
pub(super) fn customer(json: serde_json::Value) -> Result<Customer, DecodeError> {
    Ok(serde_json::from_value::<CustomerV1>(json)?.into())
}

/// A stored company response.
pub(super) fn company(json: serde_json::Value) -> Result<Company, DecodeError> {
    Ok(serde_json::from_value::<CompanyV1>(json)?.into())
}

/// A stored note response.
pub(super) fn note(json: serde_json::Value) -> Result<Note, DecodeError> {
    Ok(serde_json::from_value::<NoteV1>(json)?.into())
}

/// A customer as version 1 JSON: what a purge writes into the version 1 events it scrubs.
pub(super) fn customer_json(customer: &Customer) -> serde_json::Result<serde_json::Value> {
    let data = &customer.data;
    let stored = &customer.stored;
    let mirror = CustomerV1 {
        stored: StoredV1 {
            id: stored.id,
            version: stored.version,
            create_time: stored.create_time,
            update_time: stored.update_time,
            delete_time: stored.delete_time,
        },
        data: CustomerDataV1 {
            given_name: data.given_name.clone(),
            family_name: data.family_name.clone(),
            email: data.email.clone(),
            phone: data.phone.clone(),
            address: data.address.as_ref().map(AddressJson::from),
            status: match data.status {
                Status::Active => StatusV1::Active,
                Status::Prospective => StatusV1::Prospective,
                Status::Inactive => StatusV1::Inactive,
            },
            company: data.company.clone(),
            business_id: data.business_id.clone(),
            labels: data.labels.clone(),
        },
        expire_time: customer.expire_time,
    };
    serde_json::to_value(mirror)
}

impl From<CustomerV1> for Customer {
    fn from(v1: CustomerV1) -> Self {
        Self {
            stored: v1.stored.into(),
            data: v1.data.into(),
            expire_time: v1.expire_time,
            merged_into: None,
        }
    }
}

impl From<CustomerDataV1> for CustomerData {
    fn from(v1: CustomerDataV1) -> Self {
        Self {
            given_name: v1.given_name,
            family_name: v1.family_name,
            email: v1.email,
            phone: v1.phone,
            address: v1.address.map(PostalAddress::from),
            status: match v1.status {
                StatusV1::Active => Status::Active,
                StatusV1::Prospective => Status::Prospective,
                StatusV1::Inactive => Status::Inactive,
            },
            company: v1.company,
            business_id: v1.business_id,
            labels: v1.labels,
            // Version 1 predates external ids.
            external_ids: BTreeMap::new(),
        }
    }
}

impl From<CompanyV1> for Company {
    fn from(v1: CompanyV1) -> Self {
        Self {
            stored: v1.stored.into(),
            data: v1.data.into(),
        }
    }
}

impl From<CompanyDataV1> for CompanyData {
    fn from(v1: CompanyDataV1) -> Self {
        Self {
            display_name: v1.display_name,
            domain: v1.domain,
            business_id: v1.business_id,
            labels: v1.labels,
        }
    }
}

impl From<NoteV1> for Note {
    fn from(v1: NoteV1) -> Self {
        Self {
            stored: v1.stored.into(),
            customer_id: v1.customer_id,
            author: v1.author,
            data: v1.data.into(),
        }
    }
}

impl From<StoredV1> for Stored {
    fn from(v1: StoredV1) -> Self {
        Self {
            id: v1.id,
            version: v1.version,
            create_time: v1.create_time,
            update_time: v1.update_time,
            delete_time: v1.delete_time,
        }
    }
}

impl From<&PostalAddress> for AddressJson {
    fn from(address: &PostalAddress) -> Self {
        Self {
            lines: address.lines.clone(),
            locality: address.locality.clone(),
            region: address.region.clone(),
            postal_code: address.postal_code.clone(),
            country_code: address.country_code.clone(),
        }
    }
}

impl From<AddressJson> for PostalAddress {
    fn from(json: AddressJson) -> Self {
        Self {
            lines: json.lines,
            locality: json.locality,
            region: json.region,
            postal_code: json.postal_code,
            country_code: json.country_code,
        }
    }
}

impl From<NoteDataV1> for NoteData {
    fn from(v1: NoteDataV1) -> Self {
        Self { text: v1.text }
    }
}
