//! Protobuf → domain: customers, companies and notes read back from stored messages. The
//! inverse of the gRPC adapter's `to_proto`, `company_to_proto` and `note_to_proto`; the
//! version comes back from the etag (`W/"{version}"`).
//!
//! Nothing here validates input the way a request is validated: these messages were written
//! by this service from valid (or purged) resources, so they are taken as they are; only what
//! could not have been written (a missing timestamp, an unknown status, a malformed name)
//! fails.

use super::DecodeError;
use crate::{
    convert::{StoredMessage, address_from_proto, time},
    domain::{
        company::{Company, CompanyData},
        customer::{Customer, CustomerData, Status},
        names::NoteName,
        note::{Note, NoteData},
    },
    pb,
};

/// A customer as stored beside its resource (a merge record): `0x02 ||` its contract message.
pub fn customer_to_bytes(customer: &Customer) -> Vec<u8> {
    super::versioned(&crate::resources::Resource::to_message(customer.clone()))
}

/// A customer stored by [`customer_to_bytes`].
pub fn customer_from_bytes(bytes: &[u8]) -> Result<Customer, DecodeError> {
    customer_from_proto(<pb::Customer as prost::Message>::decode(
        super::unversioned(bytes)?,
    )?)
}

/// The customer a stored `customer.v1.Customer` describes.
pub fn customer_from_proto(customer: pb::Customer) -> Result<Customer, DecodeError> {
    let (_, stored) = customer.stored::<crate::domain::names::CustomerName>()?;
    Ok(Customer {
        stored,
        expire_time: time("customer.expire_time", customer.expire_time)?,
        merged_into: match customer.merged_into.as_str() {
            "" => None,
            name => Some(
                <crate::domain::names::CustomerName as crate::domain::names::ResourceName>::parse(
                    "customer.merged_into",
                    name,
                )
                .map_err(|_| DecodeError::invalid("customer.merged_into", "not a customer name"))?,
            ),
        },
        data: CustomerData {
            given_name: customer.given_name,
            family_name: customer.family_name,
            email: customer.email,
            phone: non_empty(customer.phone),
            address: customer.address.map(address_from_proto),
            status: status(customer.status)?,
            company: non_empty(customer.company),
            business_id: non_empty(customer.business_id),
            labels: customer.labels,
            external_ids: customer.external_ids,
        },
    })
}

pub(crate) fn status(number: i32) -> Result<Status, DecodeError> {
    Status::from_number(number).ok_or(DecodeError::invalid(
        "customer.status",
        "not a status this service writes",
    ))
}

/// The company a stored `customer.v1.Company` describes.
pub fn company_from_proto(company: pb::Company) -> Result<Company, DecodeError> {
    let (_, stored) = company.stored::<crate::domain::names::CompanyName>()?;
    Ok(Company {
        stored,
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
    let (name, stored) = note.stored::<NoteName>()?;
    Ok(Note {
        stored,
        customer_id: name.customer.0,
        author: note.author,
        data: NoteData { text: note.text },
    })
}

/// Proto3 strings have no "unset": the domain's `None` is written as "" (validated values are
/// never empty).
pub(crate) fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}
