//! Conversions between the domain and the contract's protobuf messages, shared by the gRPC
//! adapter, the relay and the core's canonical encodings (no adapter imports another).

use crate::{domain::customer::PostalAddress, pb};

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
