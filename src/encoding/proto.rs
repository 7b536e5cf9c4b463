//! Protobuf → domain: customers, companies and notes read back from stored messages. The
//! inverse of the gRPC adapter's `to_proto`, `company_to_proto` and `note_to_proto`; the
//! version comes back from the etag (`W/"{version}"`).
//!
//! Nothing here validates input the way a request is validated: these messages were written
//! by this service from valid (or purged) resources, so they are taken as they are; only what
//! could not have been written (a missing timestamp, an unknown status, a malformed name)
//! fails.

use crate::domain::names::ResourceName as _;
use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use super::DecodeError;
use crate::{
    domain::{
        company::{Company, CompanyData},
        customer::{Customer, CustomerData, PostalAddress, Status},
        names::{CompanyName, CustomerName, NoteName},
        note::{Note, NoteData},
    },
    pb,
};

/// The customer a stored `customer.v1.Customer` describes.
pub fn customer_from_proto(customer: pb::Customer) -> Result<Customer, DecodeError> {
    let name = CustomerName::parse("name", &customer.name)
        .map_err(|_| DecodeError::invalid("customer.name", "not customers/{uuid}"))?;
    Ok(Customer {
        id: name.id(),
        version: version("customer.etag", &customer.etag)?,
        create_time: required_time("customer.create_time", customer.create_time)?,
        update_time: required_time("customer.update_time", customer.update_time)?,
        delete_time: time("customer.delete_time", customer.delete_time)?,
        expire_time: time("customer.expire_time", customer.expire_time)?,
        data: CustomerData {
            given_name: customer.given_name,
            family_name: customer.family_name,
            email: customer.email,
            phone: non_empty(customer.phone),
            address: customer.address.map(address),
            status: status(customer.status)?,
            company: non_empty(customer.company),
            business_id: non_empty(customer.business_id),
            labels: customer.labels,
        },
    })
}

pub(crate) fn address(address: pb::PostalAddress) -> PostalAddress {
    PostalAddress {
        lines: address.lines,
        locality: address.locality,
        region: address.region,
        postal_code: address.postal_code,
        country_code: address.country_code,
    }
}

pub(crate) fn status(number: i32) -> Result<Status, DecodeError> {
    Status::from_number(number).ok_or(DecodeError::invalid(
        "customer.status",
        "not a status this service writes",
    ))
}

/// The company a stored `customer.v1.Company` describes.
pub fn company_from_proto(company: pb::Company) -> Result<Company, DecodeError> {
    let name = CompanyName::parse("name", &company.name)
        .map_err(|_| DecodeError::invalid("company.name", "not companies/{uuid}"))?;
    Ok(Company {
        id: name.id(),
        version: version("company.etag", &company.etag)?,
        create_time: required_time("company.create_time", company.create_time)?,
        update_time: required_time("company.update_time", company.update_time)?,
        delete_time: time("company.delete_time", company.delete_time)?,
        data: CompanyData {
            display_name: company.display_name,
            domain: non_empty(company.domain),
            business_id: non_empty(company.business_id),
            labels: company.labels,
        },
    })
}

/// The note a stored `customer.v1.Note` describes.
pub fn note_from_proto(note: pb::Note) -> Result<Note, DecodeError> {
    let name = NoteName::parse("name", &note.name)
        .map_err(|_| DecodeError::invalid("note.name", "not customers/{uuid}/notes/{uuid}"))?;
    Ok(Note {
        id: name.id(),
        customer_id: name.customer.id(),
        data: NoteData { text: note.text },
        author: note.author,
        version: version("note.etag", &note.etag)?,
        create_time: required_time("note.create_time", note.create_time)?,
        update_time: required_time("note.update_time", note.update_time)?,
    })
}

/// The version in an etag `W/"{version}"` (`domain::customer::etag_of`).
fn version(field: &'static str, etag: &str) -> Result<i64, DecodeError> {
    etag.strip_prefix("W/\"")
        .and_then(|rest| rest.strip_suffix('"'))
        .and_then(|number| number.parse().ok())
        .ok_or(DecodeError::invalid(field, "not W/\"{version}\""))
}

fn required_time(
    field: &'static str,
    time: Option<Timestamp>,
) -> Result<DateTime<Utc>, DecodeError> {
    self::time(field, time)?.ok_or(DecodeError::invalid(field, "missing"))
}

fn time(
    field: &'static str,
    time: Option<Timestamp>,
) -> Result<Option<DateTime<Utc>>, DecodeError> {
    time.map(|time| {
        u32::try_from(time.nanos)
            .ok()
            .and_then(|nanos| DateTime::from_timestamp(time.seconds, nanos))
            .ok_or(DecodeError::invalid(field, "out of range"))
    })
    .transpose()
}

/// Proto3 strings have no "unset": the domain's `None` is written as "" (validated values are
/// never empty).
pub(crate) fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}
