//! `customer-api import FILE`: ImportCustomers from an NDJSON or CSV file into a running
//! server, with a progress bar on stderr.
//!
//! Built like `customer-api export` ([`crate::export_cli`]): a gRPC client of the server's
//! own listener (`--server http://host:port`), authenticated by a bearer token or an API
//! key with the `customers.write` scope. The file is sent as `chunk` messages of
//! [`CHUNK_BYTES`] as it is read (constant memory); the bar shows the bytes sent and, from
//! GetOperation polled every half second, the rows committed and rejected. Every import has
//! a request id (`--request-id`, else a new one, printed first): running the command again
//! with it resumes an import that broke off, skipping what was committed. At the end the
//! counts and the rejected rows (line and violations) are printed to stdout; a failed or
//! cancelled import exits non-zero.

use std::{io::Read, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};
use prost::Message as _;

use crate::{
    export_cli::{ExportError, connect},
    longrunning::{self, operations_client::OperationsClient},
    pb::{self, customer_service_client::CustomerServiceClient},
};

/// The bytes of a file sent per message.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Arguments of `customer-api import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file: NDJSON (one JSON customer per line) or CSV with a header row (the columns
    /// of `customer-api export --format csv`).
    pub file: PathBuf,
    /// The server's listener, `http://host:port` (gRPC over HTTP/2 without TLS).
    #[arg(
        long,
        env = "CUSTOMER_API_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: http::Uri,
    /// A bearer token with the `customers.write` scope.
    #[arg(long, env = "CUSTOMER_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// An API key with the `customers.write` scope (instead of a token).
    #[arg(
        long,
        env = "CUSTOMER_API_KEY",
        hide_env_values = true,
        conflicts_with = "token"
    )]
    pub api_key: Option<String>,
    /// How rows become customers.
    #[arg(long, value_enum, default_value_t = Mode::CreateOnly)]
    pub mode: Mode,
    /// Validate every row without writing anything.
    #[arg(long)]
    pub validate_only: bool,
    /// The import's request id (a UUID): run again with it to resume an import that broke
    /// off. A new one when not given.
    #[arg(long)]
    pub request_id: Option<uuid::Uuid>,
    /// The file's format (default: from its extension, `.csv` or else NDJSON).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Never draw the progress bar (it is drawn only when stderr is a terminal anyway).
    #[arg(long)]
    pub quiet: bool,
}

/// How rows become customers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Every row registers a new customer.
    CreateOnly,
    /// Rows update the customer holding their external ids, or register one.
    Upsert,
}

/// The file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON customer per line.
    Ndjson,
    /// CSV with a header row.
    Csv,
}

/// How an import ended.
#[derive(Debug)]
pub struct Outcome {
    /// The operation's name.
    pub operation: String,
    /// Its result.
    pub response: pb::ImportCustomersResponse,
}

/// Runs the import; the result of its operation.
pub async fn run(args: &ImportArgs) -> Result<Outcome, ExportError> {
    let format = args.format.unwrap_or_else(|| {
        let csv = args
            .file
            .extension()
            .is_some_and(|extension| extension.eq_ignore_ascii_case("csv"));
        if csv { Format::Csv } else { Format::Ndjson }
    });
    let mut file = std::fs::File::open(&args.file)?;
    let size = file.metadata()?.len();
    let request_id = args.request_id.unwrap_or_else(uuid::Uuid::now_v7);
    let operation = format!("operations/{request_id}");
    eprintln!("import {operation} (resume with --request-id {request_id})");
    let credential = match (&args.token, &args.api_key) {
        (Some(token), _) => Some(("authorization", format!("Bearer {token}"))),
        (None, Some(key)) => Some(("x-api-key", key.clone())),
        (None, None) => None,
    };
    let credential = credential
        .map(|(name, value)| {
            value
                .parse::<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>()
                .map(|value| (name, value))
                .map_err(|_| ExportError::Usage(format!("the {name} is not a valid header value")))
        })
        .transpose()?;
    let with_credential = |request| authorized(request, credential.as_ref());
    let with_credential_poll = |request| authorized(request, credential.as_ref());

    let settings = pb::ImportSettings {
        mode: match args.mode {
            Mode::CreateOnly => pb::ImportMode::CreateOnly,
            Mode::Upsert => pb::ImportMode::UpsertByExternalId,
        } as i32,
        validate_only: args.validate_only,
        request_id: request_id.to_string(),
        format: match format {
            Format::Ndjson => pb::ImportFormat::Ndjson,
            Format::Csv => pb::ImportFormat::Csv,
        } as i32,
    };
    let progress = progress_bar(args.quiet, size);
    let sent = progress.clone();
    let first = pb::ImportCustomersRequest {
        settings: Some(settings),
        ..Default::default()
    };
    let chunks = futures_util::stream::unfold(Some(first), move |first| {
        let sent = sent.clone();
        let next = match first {
            Some(first) => Some((first, None)),
            None => {
                let mut buffer = vec![0_u8; CHUNK_BYTES];
                match file.read(&mut buffer) {
                    Ok(0) | Err(_) => None,
                    Ok(read) => {
                        buffer.truncate(read);
                        sent.inc(read as u64);
                        Some((
                            pb::ImportCustomersRequest {
                                chunk: buffer,
                                ..Default::default()
                            },
                            None,
                        ))
                    }
                }
            }
        };
        async move { next }
    });

    let channel = connect(&args.server).await?;
    let mut client = CustomerServiceClient::with_origin(channel.clone(), args.server.clone())
        .max_decoding_message_size(64 * 1024 * 1024);
    let mut operations = OperationsClient::with_origin(channel, args.server.clone())
        .max_decoding_message_size(64 * 1024 * 1024);
    let import = client.import_customers(with_credential(tonic::Request::new(chunks)));
    let poll = async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let request =
                with_credential_poll(tonic::Request::new(longrunning::GetOperationRequest {
                    name: operation.clone(),
                }));
            if let Ok(found) = operations.get_operation(request).await
                && let Some(metadata) = found.into_inner().metadata
                && let Ok(metadata) = pb::ImportCustomersMetadata::decode(metadata.value.as_slice())
            {
                progress.set_message(format!(
                    "{} committed, {} rejected",
                    metadata.rows_committed, metadata.rows_rejected
                ));
            }
        }
    };
    let answer = tokio::select! {
        answer = import => answer,
        () = poll => unreachable_poll(),
    };
    let operation = answer
        .map_err(|status| ExportError::Status {
            written: 0,
            status: Box::new(status),
        })?
        .into_inner();
    progress.finish_and_clear();
    match operation.result {
        Some(longrunning::operation::Result::Response(any)) => {
            let response = pb::ImportCustomersResponse::decode(any.value.as_slice())
                .map_err(|e| ExportError::Usage(format!("an unreadable response: {e}")))?;
            print_report(&operation.name, &response);
            Ok(Outcome {
                operation: operation.name,
                response,
            })
        }
        Some(longrunning::operation::Result::Error(status)) => Err(ExportError::Status {
            written: 0,
            status: Box::new(tonic::Status::new(
                tonic::Code::from_i32(status.code),
                format!("{} ({})", status.message, operation.name),
            )),
        }),
        None => Err(ExportError::Usage(format!(
            "{} did not finish; run again with --request-id to resume it",
            operation.name
        ))),
    }
}

/// `request` with the credential, if any.
fn authorized<T>(
    mut request: tonic::Request<T>,
    credential: Option<&(
        &'static str,
        tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    )>,
) -> tonic::Request<T> {
    if let Some((name, value)) = credential {
        request.metadata_mut().insert(*name, value.clone());
    }
    request
}

/// The poll loop never ends.
fn unreachable_poll() -> Result<tonic::Response<longrunning::Operation>, tonic::Status> {
    Err(tonic::Status::internal("the progress poll ended"))
}

/// The counts and rejected rows, on stdout.
fn print_report(name: &str, response: &pb::ImportCustomersResponse) {
    println!(
        "{name}: {} created, {} updated, {} unchanged, {} rejected",
        response.created, response.updated, response.unchanged, response.rejected
    );
    for error in &response.errors {
        for violation in &error.field_violations {
            println!(
                "line {}: {}: {}",
                error.line, violation.field, violation.description
            );
        }
    }
    if response.errors_truncated {
        println!("(more rejected rows than listed)");
    }
}

/// A progress bar of the bytes sent, on stderr (hidden when stderr is no terminal or
/// `quiet`).
fn progress_bar(quiet: bool, size: u64) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(size);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:30} {binary_bytes}/{binary_total_bytes} sent ({binary_bytes_per_sec}, {elapsed}) {msg}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
