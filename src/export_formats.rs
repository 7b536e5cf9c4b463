//! `GET /v1/customers:export?format=ndjson|csv`: the REST form of ExportCustomers in the
//! representation the client asks for.
//!
//! The REST gateway serves every route from the proto, and a server stream as
//! newline-delimited JSON; CSV is not a protobuf representation, so this thin layer in
//! front of the gateway takes the `format` parameter off the export route. `ndjson` (the
//! default) goes on to the gateway unchanged; `csv` still goes through the gateway's
//! transcoding and the same in-process gRPC call (so authentication, scopes, limits,
//! metrics and errors are those of every other route), and only the messages it streams
//! back are written as CSV rows ([`crate::convert::csv`]), gathered into chunks of about
//! [`CHUNK_BYTES`]: memory stays at one chunk whatever the size of the export. Any other
//! format is `INVALID_ARGUMENT` with a field violation on `format`.
//!
//! A CSV export that fails after its first bytes were sent cannot change its status: the
//! body is cut short (no final chunk, or an HTTP/2 reset), which a client sees as an
//! incomplete response, never as a shorter complete file.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use axum::body::Body;
use bytes::Bytes;
use gateway::{
    Gateway, Outcome,
    error::{HttpError, Violation},
    grpc_call::Call,
    transcode::metadata_headers,
};
use http::{HeaderValue, Method, Request, Response, header};
use prost::Message;
use tonic::Code;
use tower::Service;

use crate::{convert::csv::CsvWriter, grpc::EXTERNAL_ID_SOURCES_HEADER, observe::REQUEST_ID, pb};

/// The REST route of ExportCustomers.
pub const PATH: &str = "/v1/customers:export";

/// About how many bytes of CSV rows make one chunk of the response body.
pub const CHUNK_BYTES: usize = 32 * 1024;

/// The representations of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Ndjson,
    Csv,
}

/// The gateway, with the export route's `format` parameter handled in front of it.
#[derive(Debug, Clone)]
pub struct ExportFormats {
    gateway: Gateway,
}

impl ExportFormats {
    /// `gateway` with export formats.
    pub fn new(gateway: Gateway) -> Self {
        Self { gateway }
    }
}

impl Service<Request<Body>> for ExportFormats {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let mut gateway = self.gateway.clone();
        if request.method() != Method::GET || request.uri().path() != PATH {
            return gateway.call(request);
        }
        Box::pin(async move {
            match take_format(request) {
                Ok((Format::Ndjson, request)) => gateway.call(request).await,
                Ok((Format::Csv, request)) => Ok(match gateway.start_call(request).await {
                    Ok((route, call)) => {
                        let mut response = csv(call);
                        response.extensions_mut().insert(Outcome {
                            route: Some(route),
                            code: Code::Ok,
                        });
                        response
                    }
                    Err(response) => response,
                }),
                Err(response) => Ok(*response),
            }
        })
    }
}

/// The request's format, and the request without the `format` parameter (which is no field
/// of the RPC's request message); a bad format is answered at once.
fn take_format(request: Request<Body>) -> Result<(Format, Request<Body>), Box<Response<Body>>> {
    let (mut parts, body) = request.into_parts();
    let query = parts.uri.query().unwrap_or_default();
    let mut formats = Vec::new();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "format" {
            let value = value.replace('+', " ");
            formats.push(
                percent_encoding::percent_decode_str(&value)
                    .decode_utf8_lossy()
                    .into_owned(),
            );
        } else {
            kept.push(pair);
        }
    }
    let format = match formats.as_slice() {
        [] => Format::Ndjson,
        [format] if format == "ndjson" => Format::Ndjson,
        [format] if format == "csv" => Format::Csv,
        [format] => {
            let description = format!("`{format}` is not an export format; use ndjson or csv");
            return Err(Box::new(bad_format(&parts.headers, description)));
        }
        _ => {
            let description = "give format once".to_owned();
            return Err(Box::new(bad_format(&parts.headers, description)));
        }
    };
    let uri = if kept.is_empty() {
        PATH.to_owned()
    } else {
        format!("{PATH}?{}", kept.join("&"))
    };
    // A URI built from parts of a valid one is valid.
    if let Ok(uri) = uri.parse() {
        parts.uri = uri;
    }
    Ok((format, Request::from_parts(parts, body)))
}

/// The 400 of a bad `format`, shaped as the gateway's own query parameter errors.
fn bad_format(headers: &http::HeaderMap, description: String) -> Response<Body> {
    let mut error = HttpError::bad_request(
        "INVALID_QUERY_PARAMETER",
        "invalid query parameter: format",
        vec![Violation {
            field: "format".into(),
            description,
        }],
    );
    if let Some(id) = headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()) {
        error.add_error_metadata("requestId", id.to_owned());
    }
    let mut response = error.into_response();
    response.extensions_mut().insert(Outcome {
        route: None,
        code: Code::InvalidArgument,
    });
    response
}

/// The CSV response of a started export: the header row, then a row per customer.
fn csv(call: Call) -> Response<Body> {
    let sources = call
        .headers
        .get(EXTERNAL_ID_SOURCES_HEADER)
        .and_then(|value| value.to_str().ok());
    let headers = metadata_headers(&call.headers);
    let writer = CsvWriter::new(CsvWriter::sources(sources));
    let mut first = Vec::with_capacity(CHUNK_BYTES + 1024);
    writer.header(&mut first);
    let chunks = futures_util::stream::unfold(Some((call, writer, first)), |state| async move {
        let (mut call, mut writer, mut out) = state?;
        loop {
            let customer = match call.next().await {
                Ok(Some(bytes)) => pb::Customer::decode(bytes)
                    .map_err(|e| std::io::Error::other(format!("export: {e}"))),
                Ok(None) if out.is_empty() => return None,
                Ok(None) => return Some((Ok(Bytes::from(out)), None)),
                Err(status) => Err(std::io::Error::other(format!(
                    "export failed: {}",
                    status.message()
                ))),
            };
            match customer {
                Ok(customer) => writer.row(&customer, &mut out),
                Err(error) => return Some((Err(error), None)),
            }
            if out.len() >= CHUNK_BYTES {
                let chunk = std::mem::replace(&mut out, Vec::with_capacity(CHUNK_BYTES + 1024));
                return Some((Ok(Bytes::from(chunk)), Some((call, writer, out))));
            }
        }
    });
    let mut response = Response::new(Body::from_stream(chunks));
    let response_headers = response.headers_mut();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8; header=present"),
    );
    response_headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"customers.csv\""),
    );
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    for (name, value) in headers {
        response_headers.append(name, value);
    }
    response
}
