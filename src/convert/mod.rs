//! Conversions between the domain and the contract's protobuf messages, shared by the gRPC
//! adapter, the relay and the core's canonical encodings (no adapter imports another).

pub mod api_keys;
pub mod csv;
pub mod events;
pub mod import_rows;
pub mod operations;

pub mod merge;
pub mod privacy;

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use crate::{
    domain::{customer::PostalAddress, names::ResourceName, stored::Stored},
    encoding::DecodeError,
    pb,
};

/// A contract message's server-assigned fields — name, etag and times, and the uid of
/// soft-deleted resources — as the store's [`Stored`] record, both ways. Implemented for each
/// resource message by `stored_message!`.
pub trait StoredMessage: Default {
    /// A message of `name` carrying `stored`, every other field unset.
    fn stored_fields(name: String, stored: &Stored) -> Self;
    /// The name and stored record a stored message carries (encodings read back what this
    /// service wrote, so only what it cannot have written fails).
    fn stored<N: ResourceName>(&self) -> Result<(N, Stored), DecodeError>;
}

/// Implements [`StoredMessage`] for `pb::$message`, the message of request field `$field`
/// whose names read as `$form`; `soft` resources also carry `uid` and `delete_time`.
macro_rules! stored_message {
    ($message:ident in $field:literal as $form:literal $(, soft: $uid:ident, $delete_time:ident)?) => {
        impl StoredMessage for pb::$message {
            fn stored_fields(name: String, stored: &Stored) -> Self {
                Self {
                    name,
                    etag: stored.etag(),
                    create_time: Some(timestamp(stored.create_time)),
                    update_time: Some(timestamp(stored.update_time)),
                    $(
                        $uid: stored
                            .id
                            .hyphenated()
                            .encode_lower(&mut uuid::Uuid::encode_buffer())
                            .to_owned(),
                        $delete_time: stored.delete_time.map(timestamp),
                    )?
                    ..Self::default()
                }
            }

            fn stored<N: ResourceName>(&self) -> Result<(N, Stored), DecodeError> {
                let name = N::parse("name", &self.name)
                    .map_err(|_| DecodeError::invalid(concat!($field, ".name"), $form))?;
                let stored = Stored {
                    id: name.id(),
                    version: version(concat!($field, ".etag"), &self.etag)?,
                    create_time: required_time(concat!($field, ".create_time"), self.create_time)?,
                    update_time: required_time(concat!($field, ".update_time"), self.update_time)?,
                    delete_time: stored_message!(@delete_time self, $field $(, $delete_time)?),
                };
                Ok((name, stored))
            }
        }
    };
    (@delete_time $self:ident, $field:literal) => {
        None
    };
    (@delete_time $self:ident, $field:literal, $delete_time:ident) => {
        time(concat!($field, ".delete_time"), $self.$delete_time)?
    };
}

stored_message!(Customer in "customer" as "not customers/{uuid}", soft: uid, delete_time);
stored_message!(Company in "company" as "not companies/{uuid}", soft: uid, delete_time);
stored_message!(Note in "note" as "not customers/{uuid}/notes/{uuid}");

/// The version in an etag `W/"{version}"` ([`crate::domain::stored::etag_of`]).
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

/// A stored timestamp as a UTC time.
pub(crate) fn time(
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

/// A UTC time as a protobuf timestamp.
pub fn timestamp(time: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A postal address as its proto message.
pub fn address_to_proto(address: PostalAddress) -> pb::PostalAddress {
    pb::PostalAddress {
        lines: address.lines,
        locality: address.locality,
        region: address.region,
        postal_code: address.postal_code,
        country_code: address.country_code,
    }
}

/// A proto postal address as the domain's (validated later, with its customer).
pub fn address_from_proto(address: pb::PostalAddress) -> PostalAddress {
    PostalAddress {
        lines: address.lines,
        locality: address.locality,
        region: address.region,
        postal_code: address.postal_code,
        country_code: address.country_code,
    }
}
