//! `google.longrunning.Operations` over the service's import operations, and the reading
//! of ImportCustomers' client stream into the service's [`ImportSettings`] and
//! [`ImportPart`]s.
//!
//! An operation is the caller's own: GetOperation, ListOperations and CancelOperation see
//! the operations their caller started, or every operation with `customers.admin`; any
//! other is NOT_FOUND (its existence is not disclosed).

use tonic::{Code, Request, Response, Status};

use super::{actor, privileged};
use crate::{
    convert::{import_rows::FileFormat, operations::operation_to_proto},
    longrunning::{self, operations_server::Operations},
    pb,
    resources::{Resource as _, customer_import::Mode},
    service::{
        CustomerService, Error,
        error::reason,
        import::{ImportPart, ImportSettings},
    },
};

/// The tonic service implementation of `google.longrunning.Operations`.
#[derive(Debug, Clone)]
pub struct OperationsApi {
    service: CustomerService,
}

impl OperationsApi {
    /// The adapter over `service`.
    pub fn new(service: CustomerService) -> Self {
        Self { service }
    }
}

#[tonic::async_trait]
impl Operations for OperationsApi {
    async fn list_operations(
        &self,
        request: Request<longrunning::ListOperationsRequest>,
    ) -> Result<Response<longrunning::ListOperationsResponse>, Status> {
        let (actor, privileged) = (actor(&request), privileged(&request));
        let request = request.into_inner();
        let (operations, next_page_token) = self
            .service
            .list_operations(
                &request.filter,
                request.page_size,
                &request.page_token,
                &actor,
                privileged,
            )
            .await?;
        Ok(Response::new(longrunning::ListOperationsResponse {
            operations: operations.iter().map(operation_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn get_operation(
        &self,
        request: Request<longrunning::GetOperationRequest>,
    ) -> Result<Response<longrunning::Operation>, Status> {
        let (actor, privileged) = (actor(&request), privileged(&request));
        let operation = self
            .service
            .get_operation(&request.get_ref().name, &actor, privileged)
            .await?;
        Ok(Response::new(operation_to_proto(&operation)))
    }

    async fn cancel_operation(
        &self,
        request: Request<longrunning::CancelOperationRequest>,
    ) -> Result<Response<()>, Status> {
        let (actor, privileged) = (actor(&request), privileged(&request));
        self.service
            .cancel_operation(&request.get_ref().name, &actor, privileged)
            .await?;
        Ok(Response::new(()))
    }
}

/// The settings of an import (its first message) and what else that message carries.
pub(crate) fn first_message(
    first: Option<pb::ImportCustomersRequest>,
) -> Result<(ImportSettings, Vec<ImportPart>), Status> {
    let invalid = |field: &str, description: &str| {
        Status::from(Error::invalid_field(
            reason::INVALID_FIELDS,
            field,
            description,
        ))
    };
    let Some(mut first) = first else {
        return Err(invalid(
            "settings",
            "is required: the first message of an import carries its settings",
        ));
    };
    let Some(settings) = first.settings.take() else {
        return Err(invalid(
            "settings",
            "is required: the first message of an import carries its settings",
        ));
    };
    let mode = match pb::ImportMode::try_from(settings.mode) {
        Ok(pb::ImportMode::Unspecified | pb::ImportMode::CreateOnly) => Mode::CreateOnly,
        Ok(pb::ImportMode::UpsertByExternalId) => Mode::UpsertByExternalId,
        Err(_) => {
            return Err(invalid(
                "settings.mode",
                "must be IMPORT_MODE_CREATE_ONLY or IMPORT_MODE_UPSERT_BY_EXTERNAL_ID",
            ));
        }
    };
    let format = match pb::ImportFormat::try_from(settings.format) {
        Ok(pb::ImportFormat::Unspecified) => None,
        Ok(pb::ImportFormat::Ndjson) => Some(FileFormat::Ndjson),
        Ok(pb::ImportFormat::Csv) => Some(FileFormat::Csv),
        Err(_) => {
            return Err(invalid(
                "settings.format",
                "must be IMPORT_FORMAT_NDJSON or IMPORT_FORMAT_CSV",
            ));
        }
    };
    let parts = parts(first).map_err(Status::from)?;
    Ok((
        ImportSettings {
            mode,
            validate_only: settings.validate_only,
            request_id: settings.request_id,
            format,
        },
        parts,
    ))
}

/// The parts of a later message of an import stream.
pub(crate) fn later_message(
    message: Result<pb::ImportCustomersRequest, Status>,
) -> Vec<Result<ImportPart, Error>> {
    let message = match message {
        Ok(message) => message,
        Err(status) => return vec![Err(stream_error(&status))],
    };
    if message.settings.is_some() {
        return vec![Err(Error::invalid_field(
            reason::INVALID_FIELDS,
            "settings",
            "is only allowed in the first message of an import",
        ))];
    }
    match parts(message) {
        Ok(parts) => parts.into_iter().map(Ok).collect(),
        Err(error) => vec![Err(error)],
    }
}

fn parts(message: pb::ImportCustomersRequest) -> Result<Vec<ImportPart>, Error> {
    match (message.customers.is_empty(), message.chunk.is_empty()) {
        (true, true) => Ok(Vec::new()),
        (false, true) => Ok(vec![ImportPart::Customers(
            message
                .customers
                .into_iter()
                .map(crate::domain::customer::Customer::input_from)
                .collect(),
        )]),
        (true, false) => Ok(vec![ImportPart::Chunk(message.chunk.into())]),
        (false, false) => Err(Error::invalid_field(
            reason::INVALID_FIELDS,
            "chunk",
            "a message carries customers or a chunk, not both",
        )),
    }
}

/// What a broken request stream means for the import: a malformed message is the client's
/// fault (the import fails); a body that stopped arriving or a reset stream interrupt it.
fn stream_error(status: &Status) -> Error {
    match status.code() {
        Code::InvalidArgument | Code::ResourceExhausted => Error::invalid_field(
            reason::MALFORMED_REQUEST,
            "chunk",
            format!("the import stream is malformed: {}", status.message()),
        ),
        Code::DeadlineExceeded => Error::DeadlineExceeded {
            message: "the next message of the import did not arrive in time \
                      (REQUEST_BODY_TIMEOUT); re-send the import with the same request_id \
                      to resume it"
                .into(),
        },
        _ => Error::Unavailable {
            message: format!(
                "the import stream broke off ({}); re-send the import with the same \
                 request_id to resume it",
                status.message()
            ),
            reason: reason::IMPORT_INTERRUPTED,
            retry_after: std::time::Duration::from_secs(1),
        },
    }
}
