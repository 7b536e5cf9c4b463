//! ImportCustomers (issue 18) and the long-running operations it runs as (AIP-151).
//!
//! An import reads its stream as it arrives (customers, or chunks of an NDJSON/CSV file
//! parsed by [`crate::convert::import_rows`]), validates each row as CreateCustomer does, and
//! commits every [`BATCH_ROWS`] rows in one transaction on the core's write path
//! ([`crate::resources::customer_import::commit_batch`]): the batch's customers, their
//! events, and the operation's progress commit together, or nothing of the batch does.
//!
//! The operation row (`operations`, [`crate::db::operations`]) is the import's replay
//! record and resume point. Its id is the import's `request_id` (a fresh UUIDv7 without
//! one), so a client polls `operations/{request_id}` while it uploads. Re-sending an import
//! with the same request id (same caller and settings):
//! - after it finished (succeeded, failed on its file, cancelled): answers it as it ended,
//!   reading nothing;
//! - after it broke off (the upload ended early, the database failed): resumes it, skipping
//!   the rows the committed batches covered (`rows_consumed`), so nothing is imported twice.
//!
//! Every batch transaction locks the operation row and checks that the resume point is
//! where this run expects it: two runs of one import at once cannot both commit a batch
//! (the later one stops with ABORTED). A CancelOperation sets a flag the next batch reads
//! under that lock: the import stops after the batch it is committing, done with
//! CANCELLED. An import runs on a task of its own, so a client that goes away leaves it
//! interrupted (resumable), never half-written.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use sha2::Digest;
use uuid::Uuid;

use super::{CustomerService, Error, Result, error::reason};
use crate::{
    convert::import_rows::{FileFormat, ParsedRow, RowReader},
    core::{store::Transact, write::Origin},
    db::{
        self,
        operations::{NewOperationRow, OperationRow, Progress},
        store::PgStore,
    },
    domain::{
        FieldViolation, Input as _, Violations,
        customer::{Customer, CustomerInput},
        names,
    },
    resources::{
        Resource,
        customer_import::{self, Mode, Row},
    },
};

/// Rows (valid or not) per batch: one transaction each.
pub const BATCH_ROWS: usize = 1000;

/// Most rejected rows an import reports (`ImportCustomersResponse.errors`).
pub const MAX_REPORTED_ERRORS: usize = 1000;

/// How often a batch that lost a race on a unique value is tried again.
const BATCH_ATTEMPTS: u32 = 3;

/// The `kind` of import operations.
pub const KIND: &str = "customers.import";

/// Operations a ListOperations page holds by default, and at most.
pub const DEFAULT_OPERATIONS_PAGE: i64 = 50;
/// Most operations in one page.
pub const MAX_OPERATIONS_PAGE: i64 = 1000;

/// How an import was asked for (its first message).
#[derive(Debug, Clone)]
pub struct ImportSettings {
    /// How rows become customers.
    pub mode: Mode,
    /// A dry run.
    pub validate_only: bool,
    /// The idempotency key (and the operation's id).
    pub request_id: String,
    /// The format of chunks, when the import sends a file.
    pub format: Option<FileFormat>,
}

/// One message of an import's stream after the first.
#[derive(Debug)]
pub enum ImportPart {
    /// Customers, as CreateCustomer takes them.
    Customers(Vec<CustomerInput>),
    /// The next bytes of the file.
    Chunk(Bytes),
}

/// The states of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Running.
    Running = 1,
    /// Its run ended early (upload broken off, database failure); a re-send resumes it.
    Interrupted = 2,
    /// Done.
    Succeeded = 3,
    /// Done, with an error (e.g. a file that cannot be read).
    Failed = 4,
    /// Done: stopped by CancelOperation.
    Cancelled = 5,
}

impl State {
    fn from_number(number: i16) -> Self {
        match number {
            1 => Self::Running,
            2 => Self::Interrupted,
            3 => Self::Succeeded,
            5 => Self::Cancelled,
            _ => Self::Failed,
        }
    }

    /// Whether the operation has ended.
    pub fn is_done(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// A rejected row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Its line (or position).
    pub line: i64,
    /// Every problem of it.
    pub violations: Vec<FieldViolation>,
}

/// The rejected rows an operation reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The first [`MAX_REPORTED_ERRORS`], in order.
    pub errors: Vec<RowError>,
    /// More rows were rejected.
    pub truncated: bool,
}

/// An import operation as stored.
#[derive(Debug, Clone)]
pub struct ImportOperation {
    /// `operations/{id}`.
    pub id: Uuid,
    /// Who started it.
    pub creator: String,
    /// Where it is.
    pub state: State,
    /// A cancel was asked for.
    pub cancel_requested: bool,
    /// How rows become customers.
    pub mode: Mode,
    /// A dry run.
    pub validate_only: bool,
    /// Rows read.
    pub rows_read: i64,
    /// Rows committed.
    pub rows_committed: i64,
    /// Rows rejected.
    pub rows_rejected: i64,
    /// Customers created.
    pub created: i64,
    /// Customers updated.
    pub updated: i64,
    /// Matched rows that changed nothing.
    pub unchanged: i64,
    /// The rejected rows.
    pub report: Report,
    /// A failure: gRPC code number and message.
    pub error: Option<(i32, String)>,
    /// Start.
    pub create_time: DateTime<Utc>,
    /// Last progress.
    pub update_time: DateTime<Utc>,
}

fn mode_number(mode: Mode) -> i16 {
    match mode {
        Mode::CreateOnly => 1,
        Mode::UpsertByExternalId => 2,
    }
}

impl ImportOperation {
    fn from_row(row: OperationRow) -> Self {
        let report = row
            .report
            .as_deref()
            .map(crate::convert::operations::decode_report)
            .unwrap_or_default();
        Self {
            id: row.id,
            creator: row.creator,
            state: State::from_number(row.state),
            cancel_requested: row.cancel_requested,
            mode: if row.mode == 2 {
                Mode::UpsertByExternalId
            } else {
                Mode::CreateOnly
            },
            validate_only: row.validate_only,
            rows_read: row.rows_read,
            rows_committed: row.rows_committed,
            rows_rejected: row.rows_rejected,
            created: row.created,
            updated: row.updated,
            unchanged: row.unchanged,
            report,
            error: row
                .error_code
                .map(|code| (code, row.error_message.unwrap_or_default())),
            create_time: row.create_time,
            update_time: row.update_time,
        }
    }
}

/// gRPC code numbers of the failures an operation records.
mod code {
    pub const CANCELLED: i32 = 1;
    pub const INVALID_ARGUMENT: i32 = 3;
}

/// The running totals of an import run.
#[derive(Debug, Clone)]
struct Totals {
    rows_read: i64,
    rows_consumed: i64,
    rows_committed: i64,
    rows_rejected: i64,
    created: i64,
    updated: i64,
    unchanged: i64,
    report: Report,
}

impl Totals {
    fn of(row: &OperationRow) -> Self {
        Self {
            rows_read: row.rows_read,
            rows_consumed: row.rows_consumed,
            rows_committed: row.rows_committed,
            rows_rejected: row.rows_rejected,
            created: row.created,
            updated: row.updated,
            unchanged: row.unchanged,
            report: row
                .report
                .as_deref()
                .map(crate::convert::operations::decode_report)
                .unwrap_or_default(),
        }
    }

    fn progress(&self, state: State, error: Option<(i32, String)>) -> Progress {
        let (error_code, error_message) = error.unzip();
        Progress {
            state: state as i16,
            rows_read: self.rows_read,
            rows_consumed: self.rows_consumed,
            rows_committed: self.rows_committed,
            rows_rejected: self.rows_rejected,
            created: self.created,
            updated: self.updated,
            unchanged: self.unchanged,
            report: Some(crate::convert::operations::encode_report(&self.report)),
            error_code,
            error_message,
        }
    }

    fn reject(&mut self, line: i64, violations: Vec<FieldViolation>) {
        self.rows_rejected += 1;
        if self.report.errors.len() < MAX_REPORTED_ERRORS {
            self.report.errors.push(RowError { line, violations });
        } else {
            self.report.truncated = true;
        }
    }
}

/// One batch waiting to commit: the valid rows, and the rows that failed validation.
#[derive(Debug, Default)]
struct Batch {
    rows: Vec<Row>,
    invalid: Vec<RowError>,
    /// Input rows it covers.
    count: i64,
}

/// How a batch ended.
enum Committed {
    /// Written; the operation as it is now, and what a dry run's batch would have registered.
    Done(Box<OperationRow>, customer_import::Claims),
    /// Not written: the operation was cancelled.
    Cancelled(Box<OperationRow>),
}

/// Why a run stopped before the end of its stream.
enum Stop {
    /// Cancelled; the operation ended.
    Cancelled(Box<OperationRow>),
    /// A failure.
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(error: Error) -> Self {
        Self::Failed(error)
    }
}

impl CustomerService<PgStore> {
    /// Runs an import: the settings (the stream's first message) and the rest of the
    /// stream. The operation as it ended; an error when nothing started (bad settings, a
    /// request id used otherwise) or when the run broke off (the operation is then left
    /// interrupted, and re-sending the import resumes it).
    pub async fn import<P>(
        &self,
        settings: ImportSettings,
        actor: &str,
        parts: P,
    ) -> Result<ImportOperation>
    where
        P: Stream<Item = Result<ImportPart>> + Send + Unpin + 'static,
    {
        let request_id = names::parse_request_id("settings.request_id", &settings.request_id)?;
        let id = request_id.unwrap_or_else(Uuid::now_v7);
        let fingerprint = fingerprint(actor, &settings);
        let new = NewOperationRow {
            id,
            kind: KIND.to_owned(),
            creator: actor.to_owned(),
            fingerprint: fingerprint.clone(),
            state: State::Running as i16,
            mode: mode_number(settings.mode),
            validate_only: settings.validate_only,
        };
        let start = self
            .writer()
            .store
            .write(async move |conn| {
                let row = db::operations::insert_or_lock(conn, &new).await?;
                if row.fingerprint != fingerprint || row.creator != new.creator {
                    return Err(Error::invalid_field(
                        reason::REQUEST_ID_REUSED,
                        "settings.request_id",
                        "was already used for a different import; use a new UUID per import",
                    ));
                }
                if State::from_number(row.state).is_done() {
                    return Ok(row);
                }
                Ok(db::operations::set_state(conn, row.id, State::Running as i16).await?)
            })
            .await?;
        if State::from_number(start.state).is_done() {
            return Ok(ImportOperation::from_row(start));
        }
        tracing::info!(
            operation = %id,
            resume_after = start.rows_consumed,
            mode = ?settings.mode,
            validate_only = settings.validate_only,
            "import started"
        );
        let run = Run {
            service: self.clone(),
            origin: Origin {
                actor: actor.to_owned(),
                request_id,
            },
            id,
            earlier: settings
                .validate_only
                .then(|| Arc::new(customer_import::Earlier::default())),
            settings,
            totals: Totals::of(&start),
        };
        // A task of its own: the client going away must not cut the run short mid-write,
        // and the run must record that it was interrupted.
        let span = tracing::Span::current();
        tokio::spawn(tracing::Instrument::instrument(run.run(parts), span)).await?
    }

    /// The operation `name` (`operations/{id}`), if the caller may see it: its creator, or
    /// an admin (`privileged`). NOT_FOUND otherwise.
    pub async fn get_operation(
        &self,
        name: &str,
        actor: &str,
        privileged: bool,
    ) -> Result<ImportOperation> {
        let id = operation_id(name)?;
        let row = self
            .writer()
            .store
            .read(async move |conn| Ok(db::operations::find(conn, id).await?))
            .await?;
        row.filter(|row| privileged || row.creator == actor)
            .map(ImportOperation::from_row)
            .ok_or_else(|| operation_not_found(name))
    }

    /// Asks the operation `name` to stop (its creator, or an admin). Nothing changes for a
    /// finished operation.
    pub async fn cancel_operation(&self, name: &str, actor: &str, privileged: bool) -> Result<()> {
        let found = self.get_operation(name, actor, privileged).await?;
        if found.state.is_done() {
            return Ok(());
        }
        let id = found.id;
        self.writer()
            .store
            .write(async move |conn| Ok(db::operations::request_cancel(conn, id).await?))
            .await?;
        tracing::info!(operation = %id, "import cancel requested");
        Ok(())
    }

    /// One page of the caller's operations (everyone's for an admin), newest first, and
    /// the next page's token.
    pub async fn list_operations(
        &self,
        filter: &str,
        page_size: i32,
        page_token: &str,
        actor: &str,
        privileged: bool,
    ) -> Result<(Vec<ImportOperation>, String)> {
        let mut violations = Violations::new();
        let done = match filter.split_whitespace().collect::<Vec<_>>().as_slice() {
            [] => None,
            ["done", "=", "true"] => Some(true),
            ["done", "=", "false"] => Some(false),
            _ => {
                violations.add("filter", "must be empty, `done = true` or `done = false`");
                None
            }
        };
        let limit = match page_size {
            0 => DEFAULT_OPERATIONS_PAGE,
            size if size < 0 => {
                violations.add("page_size", "must not be negative");
                0
            }
            size => i64::from(size).min(MAX_OPERATIONS_PAGE),
        };
        let after = match page_token {
            "" => None,
            token => {
                use base64::Engine as _;
                let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(token)
                    .ok()
                    .and_then(|bytes| Uuid::from_slice(&bytes).ok());
                if id.is_none() {
                    violations.add("page_token", "is not a token of this list");
                }
                id
            }
        };
        violations.into_result(())?;
        let creator = (!privileged).then(|| actor.to_owned());
        let rows = self
            .writer()
            .store
            .read(async move |conn| {
                Ok(db::operations::list(conn, creator.as_deref(), done, after, limit + 1).await?)
            })
            .await?;
        let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
        let operations: Vec<ImportOperation> = rows
            .into_iter()
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(ImportOperation::from_row)
            .collect();
        let next = match (more, operations.last()) {
            (true, Some(last)) => {
                use base64::Engine as _;
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last.id.as_bytes())
            }
            _ => String::new(),
        };
        Ok((operations, next))
    }
}

/// The id of `operations/{id}`.
fn operation_id(name: &str) -> Result<Uuid> {
    name.strip_prefix("operations/")
        .and_then(|id| Uuid::try_parse(id).ok())
        .ok_or_else(|| {
            Error::invalid_field(
                reason::INVALID_FIELDS,
                "name",
                "must be operations/{id}, the name of an operation",
            )
        })
}

fn operation_not_found(name: &str) -> Error {
    Error::NotFound {
        resource_type: "longrunning.googleapis.com/Operation",
        resource_name: name.to_owned(),
    }
}

/// What identifies an import besides its request id: the caller and the settings.
fn fingerprint(actor: &str, settings: &ImportSettings) -> Vec<u8> {
    let text = format!(
        "ImportCustomers\u{1f}{actor}\u{1f}{:?}\u{1f}{}\u{1f}{:?}",
        settings.mode, settings.validate_only, settings.format
    );
    sha2::Sha256::digest(text.as_bytes()).to_vec()
}

/// One run of an import.
struct Run {
    service: CustomerService<PgStore>,
    origin: Origin,
    id: Uuid,
    settings: ImportSettings,
    totals: Totals,
    /// A dry run's earlier batches (not in the table).
    earlier: Option<Arc<customer_import::Earlier>>,
}

impl Run {
    async fn run<P>(mut self, mut parts: P) -> Result<ImportOperation>
    where
        P: Stream<Item = Result<ImportPart>> + Send + Unpin,
    {
        let outcome = self.read_all(&mut parts).await;
        drop(parts);
        match outcome {
            Ok(row) => Ok(ImportOperation::from_row(row)),
            Err(Stop::Cancelled(row)) => {
                tracing::info!(operation = %self.id, rows_read = self.totals.rows_read, "import cancelled");
                Ok(ImportOperation::from_row(*row))
            }
            Err(Stop::Failed(error)) => {
                let final_failure = matches!(error, Error::InvalidArgument { .. });
                let state = if final_failure {
                    State::Failed
                } else {
                    State::Interrupted
                };
                tracing::info!(operation = %self.id, %error, ?state, "import stopped");
                let recorded = if final_failure {
                    Some((code::INVALID_ARGUMENT, error.to_string()))
                } else {
                    None
                };
                // The progress of committed batches is already stored; this records the
                // state only (and the rows read so far are not the resume point).
                let id = self.id;
                let mut progress = self.totals.progress(state, recorded);
                let stored = self
                    .service
                    .writer()
                    .store
                    .write(async move |conn| {
                        let Some(row) = db::operations::lock(conn, id).await? else {
                            return Ok(None);
                        };
                        // Another run may have moved on: keep its numbers.
                        if row.rows_consumed != progress.rows_consumed {
                            return Ok(Some(row));
                        }
                        progress.rows_read = progress.rows_read.max(row.rows_read);
                        Ok(Some(db::operations::advance(conn, id, &progress).await?))
                    })
                    .await;
                match (final_failure, stored) {
                    (true, Ok(Some(row))) => Ok(ImportOperation::from_row(row)),
                    _ => Err(error),
                }
            }
        }
    }

    /// Reads the stream to its end, committing batch by batch; the operation as it ended.
    async fn read_all<P>(&mut self, parts: &mut P) -> Result<OperationRow, Stop>
    where
        P: Stream<Item = Result<ImportPart>> + Send + Unpin,
    {
        let skip = self.totals.rows_consumed;
        let mut seen: i64 = 0;
        let mut reader: Option<RowReader> = None;
        let mut customers_sent = false;
        let mut batch = Batch::default();
        let mut parsed: Vec<ParsedRow> = Vec::new();
        while let Some(part) = parts.next().await {
            match part? {
                ImportPart::Customers(customers) => {
                    if reader.is_some() {
                        return Err(mixed().into());
                    }
                    customers_sent = true;
                    for input in customers {
                        // A customer's line is its position in the stream.
                        let line = seen + 1;
                        self.take(&mut batch, &mut seen, skip, line, Ok(input))
                            .await?;
                    }
                }
                ImportPart::Chunk(chunk) => {
                    if customers_sent {
                        return Err(mixed().into());
                    }
                    let Some(format) = self.settings.format else {
                        return Err(Error::invalid_field(
                            reason::INVALID_FIELDS,
                            "settings.format",
                            "is required for an import of chunks: IMPORT_FORMAT_NDJSON or \
                             IMPORT_FORMAT_CSV",
                        )
                        .into());
                    };
                    let reader = reader.get_or_insert_with(|| RowReader::new(format));
                    reader.push(&chunk, &mut parsed).map_err(file_error)?;
                    for row in parsed.drain(..) {
                        let input = row.customer.map(Customer::input_from);
                        self.take(&mut batch, &mut seen, skip, row.line, input)
                            .await?;
                    }
                }
            }
        }
        if let Some(reader) = reader.as_mut() {
            reader.finish(&mut parsed).map_err(file_error)?;
            for row in parsed.drain(..) {
                let input = row.customer.map(Customer::input_from);
                self.take(&mut batch, &mut seen, skip, row.line, input)
                    .await?;
            }
        }
        // The last batch (perhaps empty) ends the operation.
        let seen = seen.max(self.totals.rows_consumed);
        self.commit(batch, seen, true).await
    }

    /// Counts the row at `line` (the `seen`-th of the input); unless an earlier run of the
    /// import committed it (the first `skip`), validates it into `batch` and commits a full
    /// batch.
    async fn take(
        &mut self,
        batch: &mut Batch,
        seen: &mut i64,
        skip: i64,
        line: i64,
        input: Result<CustomerInput, Violations>,
    ) -> Result<(), Stop> {
        *seen += 1;
        if *seen <= skip {
            return Ok(());
        }
        self.add(batch, line, input);
        if batch.count >= BATCH_ROWS as i64 {
            self.commit(std::mem::take(batch), *seen, false).await?;
        }
        Ok(())
    }

    /// Validates one row (as CreateCustomer does) into `batch`.
    fn add(&self, batch: &mut Batch, line: i64, input: Result<CustomerInput, Violations>) {
        batch.count += 1;
        match input.and_then(|input| {
            input
                .validate(Customer::FIELD)
                .map(|data| Row { line, input, data })
        }) {
            Ok(row) => batch.rows.push(row),
            Err(violations) => batch.invalid.push(RowError {
                line,
                violations: violations.into_vec(),
            }),
        }
    }

    /// Commits `batch` (and, when `last`, ends the operation): retried when it lost a race
    /// on a unique value to a concurrent writer.
    async fn commit(
        &mut self,
        batch: Batch,
        rows_read: i64,
        last: bool,
    ) -> Result<OperationRow, Stop> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.commit_once(&batch, rows_read, last).await {
                Err(Stop::Failed(Error::AlreadyExists { .. })) if attempt < BATCH_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                }
                Err(stop) => return Err(stop),
                Ok(Committed::Cancelled(row)) => return Err(Stop::Cancelled(row)),
                Ok(Committed::Done(row, claims)) => {
                    if let Some(earlier) = &mut self.earlier {
                        Arc::make_mut(earlier).extend(claims);
                    }
                    self.totals = Totals::of(&row);
                    return Ok(*row);
                }
            }
        }
    }

    async fn commit_once(
        &self,
        batch: &Batch,
        rows_read: i64,
        last: bool,
    ) -> Result<Committed, Stop> {
        let (id, origin) = (self.id, self.origin.clone());
        let (mode, dry_run) = (self.settings.mode, self.settings.validate_only);
        let earlier = self.earlier.clone();
        let mut totals = self.totals.clone();
        let rows = batch.rows.clone();
        let invalid = batch.invalid.clone();
        let count = batch.count;
        let committed = self
            .service
            .writer()
            .store
            .write(async move |conn| {
                let Some(row) = db::operations::lock(conn, id).await? else {
                    return Err(Error::internal(&super::Unreachable(
                        "an import without its operation",
                    )));
                };
                if row.rows_consumed != totals.rows_consumed {
                    return Err(Error::Aborted {
                        message: "another run of this import (same request_id) is committing \
                                  its rows; poll the operation, or retry once it stopped"
                            .into(),
                        reason: reason::IMPORT_RUNNING,
                        resource_type: "longrunning.googleapis.com/Operation",
                        resource_name: format!("operations/{id}"),
                    });
                }
                if row.cancel_requested {
                    let progress = totals.progress(
                        State::Cancelled,
                        Some((
                            code::CANCELLED,
                            format!(
                                "cancelled by CancelOperation after {} rows; the batches \
                                 committed before stay committed",
                                totals.rows_consumed
                            ),
                        )),
                    );
                    let row = db::operations::advance(conn, id, &progress).await?;
                    return Ok(Committed::Cancelled(Box::new(row)));
                }
                let outcome =
                    customer_import::commit_batch(conn, rows, mode, earlier.as_deref(), &origin)
                        .await?;
                let mut rejected: Vec<RowError> = invalid;
                rejected.extend(
                    outcome
                        .rejected
                        .into_iter()
                        .map(|(line, violations)| RowError {
                            line,
                            violations: violations.into_vec(),
                        }),
                );
                rejected.sort_by_key(|error| error.line);
                for error in rejected {
                    totals.reject(error.line, error.violations);
                }
                totals.created += outcome.created;
                totals.updated += outcome.updated;
                totals.unchanged += outcome.unchanged;
                if !dry_run {
                    totals.rows_committed += outcome.created + outcome.updated + outcome.unchanged;
                }
                totals.rows_consumed += count;
                totals.rows_read = rows_read.max(totals.rows_consumed);
                let state = if last {
                    State::Succeeded
                } else {
                    State::Running
                };
                let row = db::operations::advance(conn, id, &totals.progress(state, None)).await?;
                Ok(Committed::Done(Box::new(row), outcome.claims))
            })
            .await?;
        Ok(committed)
    }
}

fn mixed() -> Error {
    Error::invalid_field(
        reason::INVALID_FIELDS,
        "chunk",
        "an import sends either customers or chunks of a file, not both",
    )
}

fn file_error(error: crate::convert::import_rows::FileError) -> Stop {
    Stop::Failed(Error::invalid_field(
        reason::INVALID_FIELDS,
        "chunk",
        error.0,
    ))
}
