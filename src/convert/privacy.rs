//! Data-subject rights as `customer.v1` messages: the record of an erasure
//! (`CustomerErasure`), both ways (the answer of EraseCustomer and its stored replay).

use super::{required_time, timestamp};
use crate::{
    domain::{
        erasure::{Erasure, ErasureReason},
        names::{CustomerName, ResourceName as _},
    },
    encoding::DecodeError,
    pb,
};

/// An erasure as its contract message.
pub fn erasure_to_proto(erasure: Erasure) -> pb::CustomerErasure {
    pb::CustomerErasure {
        customer: erasure.customer.to_string(),
        reason: erasure.reason.number(),
        reference: erasure.reference.unwrap_or_default(),
        actor: erasure.actor,
        erase_time: Some(timestamp(erasure.erase_time)),
        notes_erased: erasure.notes_erased,
        events_scrubbed: erasure.events_scrubbed,
        replays_erased: erasure.replays_erased,
    }
}

/// An erasure read back from its contract message (a stored replay).
pub fn erasure_from_proto(message: pb::CustomerErasure) -> Result<Erasure, DecodeError> {
    Ok(Erasure {
        customer: CustomerName::parse("customer", &message.customer)
            .map_err(|_| DecodeError::invalid("customer", "not a customer name"))?,
        reason: ErasureReason::from_number("reason", message.reason)
            .map_err(|_| DecodeError::invalid("reason", "unknown"))?,
        reference: Some(message.reference).filter(|reference| !reference.is_empty()),
        actor: message.actor,
        erase_time: required_time("erase_time", message.erase_time)?,
        notes_erased: message.notes_erased,
        events_scrubbed: message.events_scrubbed,
        replays_erased: message.replays_erased,
    })
}
