//! Conversions between the domain and the contract's protobuf messages, shared by the gRPC
//! adapter, the relay and the core's canonical encodings (no adapter imports another).

pub mod events;

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use crate::{domain::customer::PostalAddress, pb};

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
