//! Import operations as `google.longrunning.Operation` (AIP-151), and the stored form of an
//! import's report (an encoded `customer.v1.ImportCustomersResponse` holding the rejected
//! rows; the counts live in columns of their own).

use prost::Message as _;

use super::timestamp;
use crate::{
    domain::FieldViolation,
    longrunning, pb,
    resources::customer_import::Mode,
    service::import::{ImportOperation, Report, RowError, State},
};

/// The type URL prefix of packed messages.
const TYPE_URL: &str = "type.googleapis.com/";

/// The report as stored.
pub fn encode_report(report: &Report) -> Vec<u8> {
    pb::ImportCustomersResponse {
        errors: report.errors.iter().map(row_error_to_proto).collect(),
        errors_truncated: report.truncated,
        ..Default::default()
    }
    .encode_to_vec()
}

/// A stored report (an unreadable one reads as empty).
pub fn decode_report(bytes: &[u8]) -> Report {
    let Ok(response) = pb::ImportCustomersResponse::decode(bytes) else {
        return Report::default();
    };
    Report {
        errors: response
            .errors
            .into_iter()
            .map(|error| RowError {
                line: error.line,
                violations: error
                    .field_violations
                    .into_iter()
                    .map(|violation| FieldViolation {
                        field: violation.field,
                        description: violation.description,
                    })
                    .collect(),
            })
            .collect(),
        truncated: response.errors_truncated,
    }
}

fn row_error_to_proto(error: &RowError) -> pb::ImportRowError {
    pb::ImportRowError {
        line: error.line,
        field_violations: error
            .violations
            .iter()
            .map(|violation| tonic_types::pb::bad_request::FieldViolation {
                field: violation.field.clone(),
                description: violation.description.clone(),
                ..Default::default()
            })
            .collect(),
    }
}

fn pack(message: &impl prost::Message, name: &str) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("{TYPE_URL}{name}"),
        value: message.encode_to_vec(),
    }
}

/// The mode as its proto enum.
pub fn mode_to_proto(mode: Mode) -> pb::ImportMode {
    match mode {
        Mode::CreateOnly => pb::ImportMode::CreateOnly,
        Mode::UpsertByExternalId => pb::ImportMode::UpsertByExternalId,
    }
}

/// The progress of an import (its operation's metadata).
pub fn metadata_to_proto(operation: &ImportOperation) -> pb::ImportCustomersMetadata {
    pb::ImportCustomersMetadata {
        rows_read: operation.rows_read,
        rows_committed: operation.rows_committed,
        rows_rejected: operation.rows_rejected,
        create_time: Some(timestamp(operation.create_time)),
        update_time: Some(timestamp(operation.update_time)),
        mode: mode_to_proto(operation.mode) as i32,
        validate_only: operation.validate_only,
        cancel_requested: operation.cancel_requested,
    }
}

/// The result of an import.
pub fn response_to_proto(operation: &ImportOperation) -> pb::ImportCustomersResponse {
    pb::ImportCustomersResponse {
        created: operation.created,
        updated: operation.updated,
        rejected: operation.rows_rejected,
        unchanged: operation.unchanged,
        errors: operation
            .report
            .errors
            .iter()
            .map(row_error_to_proto)
            .collect(),
        errors_truncated: operation.report.truncated,
    }
}

/// An import as its operation.
pub fn operation_to_proto(operation: &ImportOperation) -> longrunning::Operation {
    let result = match (operation.state, &operation.error) {
        (State::Succeeded, _) => Some(longrunning::operation::Result::Response(pack(
            &response_to_proto(operation),
            "customer.v1.ImportCustomersResponse",
        ))),
        (State::Failed | State::Cancelled, error) => {
            let (code, message) = error.clone().unwrap_or((2, "the import failed".to_owned()));
            Some(longrunning::operation::Result::Error(
                tonic_types::pb::Status {
                    code,
                    message,
                    details: Vec::new(),
                },
            ))
        }
        (State::Running | State::Interrupted, _) => None,
    };
    longrunning::Operation {
        name: format!("operations/{}", operation.id),
        metadata: Some(pack(
            &metadata_to_proto(operation),
            "customer.v1.ImportCustomersMetadata",
        )),
        done: operation.state.is_done(),
        result,
    }
}
