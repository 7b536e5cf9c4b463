//! The `export` scenario (issue 18): ExportCustomers of every live customer, over gRPC and
//! as REST CSV, against the floor PostgreSQL itself sets, `COPY (SELECT …) TO STDOUT` of the
//! same rows in the same order (psql, its output read and counted like the export's), with
//! the server's peak resident set during each export.
//!
//! The export is one long streaming call, not a request rate: the scenario reports rows per
//! second and the ratio to COPY as facts of the run rather than as a row of the table.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;

use crate::{
    clients::{Grpc, Target},
    pb, procfs,
};

/// The columns and order the service's export reads (`db::customers::list`'s walk).
const COPY_QUERY: &str = "COPY (SELECT id, given_name, family_name, email, phone, address, \
     status, company, business_id, labels, version, create_time, update_time, delete_time, \
     created_by, updated_by, external_ids FROM customers WHERE delete_time IS NULL \
     ORDER BY create_time, id) TO STDOUT";

/// One timed pass over every live customer.
#[derive(Debug, Clone, Copy)]
pub struct Pass {
    /// Rows (customers) received.
    pub rows: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Wall-clock time, first request to last byte.
    pub elapsed: Duration,
    /// The server's peak resident set during the pass, KiB.
    pub peak_rss_kib: Option<u64>,
}

impl Pass {
    /// Rows per second.
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `COPY (SELECT …) TO STDOUT` of the rows the export reads, through `psql`.
pub async fn copy(psql: &Path, database_url: &str) -> Result<Pass, String> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(psql)
        .args([
            "--no-psqlrc",
            "--quiet",
            "--command",
            COPY_QUERY,
            database_url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{}: {e}", psql.display()))?;
    let mut stdout = child.stdout.take().ok_or("psql: no stdout")?;
    let (mut rows, mut bytes) = (0_u64, 0_u64);
    let mut buffer = vec![0_u8; 64 * 1024];
    loop {
        let n = stdout
            .read(&mut buffer)
            .await
            .map_err(|e| format!("psql: {e}"))?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        // COPY's text format escapes newlines inside values: one line per row.
        rows += buffer[..n].iter().filter(|b| **b == b'\n').count() as u64;
    }
    let status = child.wait().await.map_err(|e| format!("psql: {e}"))?;
    if !status.success() {
        return Err(format!("psql COPY failed ({status})"));
    }
    Ok(Pass {
        rows,
        bytes,
        elapsed: started.elapsed(),
        peak_rss_kib: None,
    })
}

/// ExportCustomers over gRPC, every message decoded.
pub async fn grpc(grpc: &mut Grpc, server: Option<u32>) -> Result<Pass, String> {
    let _ = procfs::sample(server, true);
    let started = Instant::now();
    let mut request = grpc.request(pb::ExportCustomersRequest::default());
    // A million customers take longer than the per-call deadline of the other scenarios.
    request.set_timeout(Duration::from_secs(3600));
    let mut stream = grpc
        .client()
        .export_customers(request)
        .await
        .map_err(|s| crate::clients::grpc_error(&s))?
        .into_inner();
    let (mut rows, mut bytes) = (0_u64, 0_u64);
    while let Some(customer) = stream
        .message()
        .await
        .map_err(|s| crate::clients::grpc_error(&s))?
    {
        rows += 1;
        bytes += prost::Message::encoded_len(&customer) as u64;
    }
    Ok(Pass {
        rows,
        bytes,
        elapsed: started.elapsed(),
        peak_rss_kib: server.and_then(procfs::peak_rss_kib),
    })
}

/// `GET /v1/customers:export?format=csv` over HTTP/1.1, the body read and its rows counted.
pub async fn rest_csv(target: &Target, server: Option<u32>) -> Result<Pass, String> {
    let _ = procfs::sample(server, true);
    let started = Instant::now();
    let stream = tokio::net::TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect to {}: {e}", target.addr))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
    tokio::spawn(connection);
    let request = http::Request::get("/v1/customers:export?format=csv")
        .header(http::header::HOST, target.addr.to_string())
        .header(http::header::AUTHORIZATION, target.authorization.clone())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("export: {e}"))?;
    if response.status() != http::StatusCode::OK {
        return Err(format!("export: http {}", response.status().as_u16()));
    }
    let mut body = response.into_body();
    let (mut lines, mut bytes, mut after_cr) = (0_u64, 0_u64, false);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("export body: {e}"))?;
        if let Some(data) = frame.data_ref() {
            bytes += data.len() as u64;
            // Rows end with CRLF (a LF alone is inside a quoted cell), which a chunk may split.
            if after_cr && data.first() == Some(&b'\n') {
                lines += 1;
            }
            lines += data.windows(2).filter(|w| w == b"\r\n").count() as u64;
            after_cr = data.last() == Some(&b'\r');
        }
    }
    Ok(Pass {
        // The header row is not a customer.
        rows: lines.saturating_sub(1),
        bytes,
        elapsed: started.elapsed(),
        peak_rss_kib: server.and_then(procfs::peak_rss_kib),
    })
}
