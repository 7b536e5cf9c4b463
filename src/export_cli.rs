//! `customer-api export`: ExportCustomers from a running server into a file (or stdout), as
//! NDJSON or CSV, with a progress bar on stderr.
//!
//! A gRPC client of the server's own listener over HTTP/2 without TLS (`--server
//! http://host:port`), authenticated by a bearer token or an API key with the
//! `customers.export` scope. Customers are written as they arrive through a buffered writer,
//! so memory stays constant whatever the size of the export. NDJSON lines are the REST
//! gateway's JSON of each message (the same writer, from the same descriptors); CSV rows come
//! from [`crate::convert::csv`], the writer of `GET /v1/customers:export?format=csv`, with the
//! `external_ids.<source>` columns the server announces in `export-external-id-sources`. An
//! export that fails midway exits non-zero and says how many customers were written.

use std::{
    io::Write,
    path::PathBuf,
    task::{Context, Poll},
    time::Duration,
};

use clap::{Args, ValueEnum};
use futures_util::StreamExt;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;

use crate::{
    convert::csv::CsvWriter, grpc::EXTERNAL_ID_SOURCES_HEADER, pb,
    pb::customer_service_client::CustomerServiceClient,
};

/// Arguments of `customer-api export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The server's listener, `http://host:port` (gRPC over HTTP/2 without TLS).
    #[arg(
        long,
        env = "CUSTOMER_API_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: http::Uri,
    /// A bearer token with the `customers.export` scope (`customer-api token --scopes
    /// customers.export`).
    #[arg(long, env = "CUSTOMER_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// An API key with the `customers.export` scope (instead of a token).
    #[arg(
        long,
        env = "CUSTOMER_API_KEY",
        hide_env_values = true,
        conflicts_with = "token"
    )]
    pub api_key: Option<String>,
    /// An AIP-160 filter, as in ListCustomers (e.g. `labels.tier = "gold"`).
    #[arg(long, default_value = "")]
    pub filter: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Ndjson)]
    pub format: Format,
    /// Include soft-deleted customers.
    #[arg(long)]
    pub show_deleted: bool,
    /// Write to this file instead of stdout.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Never draw the progress bar (it is drawn only when stderr is a terminal anyway).
    #[arg(long)]
    pub quiet: bool,
}

/// The representations of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON customer per line.
    Ndjson,
    /// RFC 4180 CSV with a header row (docs/operations.md, "Bulk export").
    Csv,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The server could not be reached.
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
    /// The server refused the export or failed midway.
    #[error("the export failed after {written} customer(s): {status}")]
    Status {
        /// Customers written before the failure.
        written: u64,
        /// What the server said.
        status: Box<tonic::Status>,
    },
    /// The output could not be written.
    #[error("cannot write the export: {0}")]
    Output(#[from] std::io::Error),
    /// A setting is unusable.
    #[error("{0}")]
    Usage(String),
}

/// Runs the export; returns how many customers were written.
pub async fn run(args: &ExportArgs) -> Result<u64, ExportError> {
    let mut client =
        CustomerServiceClient::with_origin(connect(&args.server).await?, args.server.clone());
    let mut request = tonic::Request::new(pb::ExportCustomersRequest {
        filter: args.filter.clone(),
        show_deleted: args.show_deleted,
    });
    let credential = match (&args.token, &args.api_key) {
        (Some(token), _) => Some(("authorization", format!("Bearer {token}"))),
        (None, Some(key)) => Some(("x-api-key", key.clone())),
        (None, None) => None,
    };
    if let Some((name, value)) = credential {
        let value = value
            .parse()
            .map_err(|_| ExportError::Usage(format!("the {name} is not a valid header value")))?;
        request.metadata_mut().insert(name, value);
    }
    let failed = |written, status| ExportError::Status {
        written,
        status: Box::new(status),
    };
    let response = client
        .export_customers(request)
        .await
        .map_err(|status| failed(0, status))?;
    let sources = response
        .metadata()
        .get(EXTERNAL_ID_SOURCES_HEADER)
        .and_then(|value| value.to_str().ok());
    let mut rows = Rows::new(args.format, CsvWriter::sources(sources))?;
    let mut stream = response.into_inner();

    let out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::fs::File::create(path)?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let progress = progress_bar(args.quiet);
    let mut line = Vec::with_capacity(4096);
    rows.header(&mut line);
    out.write_all(&line)?;
    let mut written = 0_u64;
    while let Some(customer) = stream.next().await {
        let customer = customer.map_err(|status| failed(written, status))?;
        line.clear();
        rows.row(&customer, &mut line)?;
        out.write_all(&line)?;
        written += 1;
        progress.inc(1);
    }
    out.flush()?;
    progress.finish_with_message(format!("{written} customers exported"));
    Ok(written)
}

/// A progress bar on stderr (hidden when stderr is no terminal or `quiet`).
fn progress_bar(quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} {human_pos} customers exported ({per_sec}, {elapsed}) {msg}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Writes customers in one format.
enum Rows {
    Ndjson {
        plans: Box<gateway::wire::Plans>,
        plan: usize,
        message: Vec<u8>,
    },
    Csv(CsvWriter),
}

impl Rows {
    fn new(format: Format, sources: Vec<String>) -> Result<Self, ExportError> {
        Ok(match format {
            Format::Csv => Self::Csv(CsvWriter::new(sources)),
            Format::Ndjson => {
                let pool = prost_reflect::DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET)
                    .map_err(|e| ExportError::Usage(format!("descriptors: {e}")))?;
                let customer = pool
                    .get_message_by_name("customer.v1.Customer")
                    .ok_or_else(|| ExportError::Usage("no customer.v1.Customer".into()))?;
                let mut plans = Box::<gateway::wire::Plans>::default();
                let plan = plans.add(&customer);
                Self::Ndjson {
                    plans,
                    plan,
                    message: Vec::new(),
                }
            }
        })
    }

    fn header(&self, out: &mut Vec<u8>) {
        if let Self::Csv(writer) = self {
            writer.header(out);
        }
    }

    fn row(&mut self, customer: &pb::Customer, out: &mut Vec<u8>) -> Result<(), ExportError> {
        match self {
            Self::Csv(writer) => writer.row(customer, out),
            Self::Ndjson {
                plans,
                plan,
                message,
            } => {
                message.clear();
                customer
                    .encode(message)
                    .map_err(|e| ExportError::Usage(e.to_string()))?;
                plans.write(*plan, message, out).map_err(|_| {
                    ExportError::Usage("a customer the JSON writer does not support".into())
                })?;
                out.push(b'\n');
            }
        }
        Ok(())
    }
}

/// An HTTP/2 connection to `server`, as the tower service tonic's client calls.
pub(crate) async fn connect(server: &http::Uri) -> Result<H2, ExportError> {
    let fail = |e: &dyn std::fmt::Display| ExportError::Connect(server.to_string(), e.to_string());
    if server.scheme_str() != Some("http") {
        return Err(ExportError::Usage(format!(
            "--server must be an http:// URL (gRPC over HTTP/2 without TLS), not `{server}`"
        )));
    }
    let authority = server
        .authority()
        .ok_or_else(|| ExportError::Usage(format!("--server `{server}` has no host")))?;
    let port = authority.port_u16().unwrap_or(80);
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| fail(&e))?;
    let _ = tcp.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| fail(&e))?;
    tokio::spawn(connection);
    Ok(H2(sender))
}

/// One HTTP/2 connection as a tower service.
#[derive(Clone)]
pub(crate) struct H2(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tower::Service<Request<tonic::body::Body>> for H2 {
    type Response = Response<Incoming>;
    type Error = hyper::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Incoming>, hyper::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}
