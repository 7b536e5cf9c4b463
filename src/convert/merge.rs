//! Merges as `customer.v1` messages: the merge record (`CustomerMerge`) and the answers of
//! MergeCustomers and UnmergeCustomers, both ways (the answer and its stored replay).

use prost_types::FieldMask;

use super::{required_time, time, timestamp};
use crate::{
    domain::{
        merge::{Merge, MergeOutcome, MovedNote},
        names::{CustomerName, NoteName, ResourceName as _},
    },
    encoding::{DecodeError, proto::customer_from_proto},
    pb,
    resources::Resource as _,
};

/// A merge record as its contract message.
pub fn merge_to_proto(merge: Merge) -> pb::CustomerMerge {
    pb::CustomerMerge {
        name: merge.name(),
        target: merge.target.to_string(),
        sources: merge.sources.iter().map(ToString::to_string).collect(),
        changed_fields: Some(FieldMask {
            paths: merge.changed_fields,
        }),
        moved_notes: merge.moved_notes.iter().map(moved_to_proto).collect(),
        actor: merge.actor,
        merge_time: Some(timestamp(merge.merge_time)),
        unmerge_time: merge.unmerge_time.map(timestamp),
        unmerged_by: merge.unmerged_by.unwrap_or_default(),
    }
}

/// A moved note as its contract message.
pub fn moved_to_proto(moved: &MovedNote) -> pb::MovedNote {
    pb::MovedNote {
        previous_name: moved.previous.to_string(),
        name: moved.name.to_string(),
    }
}

/// A merge record read back from its contract message (a stored replay).
pub fn merge_from_proto(message: pb::CustomerMerge) -> Result<Merge, DecodeError> {
    let customer = |text: &str| {
        CustomerName::parse("", text).map_err(|_| DecodeError::invalid("merge", "not a customer"))
    };
    let note = |text: &str| {
        NoteName::parse("", text).map_err(|_| DecodeError::invalid("merge", "not a note"))
    };
    let id = message
        .name
        .rsplit_once("/merges/")
        .and_then(|(_, id)| crate::domain::names::parse_uuid(id))
        .ok_or(DecodeError::invalid("merge.name", "not a merge name"))?;
    Ok(Merge {
        id,
        target: customer(&message.target)?,
        sources: message
            .sources
            .iter()
            .map(|source| customer(source))
            .collect::<Result<_, _>>()?,
        changed_fields: message
            .changed_fields
            .map(|mask| mask.paths)
            .unwrap_or_default(),
        moved_notes: message
            .moved_notes
            .iter()
            .map(|moved| {
                Ok(MovedNote {
                    previous: note(&moved.previous_name)?,
                    name: note(&moved.name)?,
                })
            })
            .collect::<Result<_, DecodeError>>()?,
        actor: message.actor,
        merge_time: required_time("merge.merge_time", message.merge_time)?,
        unmerge_time: time("merge.unmerge_time", message.unmerge_time)?,
        unmerged_by: Some(message.unmerged_by).filter(|actor| !actor.is_empty()),
    })
}

/// MergeCustomers' answer (also the stored form of UnmergeCustomers', whose message has the
/// same fields).
pub fn outcome_to_proto(outcome: MergeOutcome) -> pb::MergeCustomersResponse {
    pb::MergeCustomersResponse {
        customer: Some(outcome.customer.to_message()),
        sources: outcome
            .sources
            .into_iter()
            .map(|source| source.to_message())
            .collect(),
        merge: Some(merge_to_proto(outcome.merge)),
    }
}

/// UnmergeCustomers' answer.
pub fn unmerge_to_proto(outcome: MergeOutcome) -> pb::UnmergeCustomersResponse {
    let pb::MergeCustomersResponse {
        customer,
        sources,
        merge,
    } = outcome_to_proto(outcome);
    pb::UnmergeCustomersResponse {
        customer,
        sources,
        merge,
    }
}

/// An answer read back from its stored message.
pub fn outcome_from_proto(
    message: pb::MergeCustomersResponse,
) -> Result<MergeOutcome, DecodeError> {
    Ok(MergeOutcome {
        customer: customer_from_proto(
            message
                .customer
                .ok_or(DecodeError::invalid("customer", "missing"))?,
        )?,
        sources: message
            .sources
            .into_iter()
            .map(customer_from_proto)
            .collect::<Result<_, _>>()?,
        merge: merge_from_proto(
            message
                .merge
                .ok_or(DecodeError::invalid("merge", "missing"))?,
        )?,
    })
}
