//! The `import` scenario (issue 18): ImportCustomers of `--import-rows` new customers (100k
//! by default) as an NDJSON file streamed in 256 KiB chunks over gRPC, timed from the first
//! message to the finished operation, with the server's peak resident set during it; and
//! the floors PostgreSQL sets for the same rows, `COPY … FROM STDIN` (psql, text format) into
//! a table of the same shape (`CREATE TEMP TABLE … (LIKE customers INCLUDING ALL)`: its
//! indexes and constraints, no trigger, no events) and into a bare one (defaults only), as
//! ratios. The file is generated as it is sent
//! (constant memory on the generator's side too).
//!
//! The imported customers stay (their emails and external ids carry the run's nonce): the
//! scenario runs last.

use std::{
    io::Write as _,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use prost::Message as _;
use tokio::io::AsyncWriteExt as _;

use crate::{clients::Grpc, longrunning, pb, procfs};

/// Bytes of the file per message.
const CHUNK_BYTES: usize = 256 * 1024;

/// One timed import.
#[derive(Debug, Clone, Copy)]
pub struct Pass {
    /// Rows sent.
    pub rows: u64,
    /// Customers the operation reports created.
    pub created: i64,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// The server's peak resident set during the import, KiB.
    pub peak_rss_kib: Option<u64>,
}

impl Pass {
    /// Rows per second.
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// NDJSON line `i` of the run `nonce`.
fn line(out: &mut Vec<u8>, nonce: &str, i: u64) {
    let _ = writeln!(
        out,
        r#"{{"givenName":"Bench","familyName":"Import {i}","email":"import-{nonce}-{i}@example.com","phone":"+3584012{:05}","labels":{{"source":"bench"}},"externalIds":{{"bench":"{nonce}-{i}"}}}}"#,
        i % 100_000
    );
}

/// The file's chunks, generated as they are asked for.
fn chunks(nonce: String, rows: u64) -> impl futures_util::Stream<Item = Vec<u8>> + Send {
    futures_util::stream::unfold(0_u64, move |next| {
        let nonce = nonce.clone();
        async move {
            if next >= rows {
                return None;
            }
            let mut out = Vec::with_capacity(CHUNK_BYTES + 512);
            let mut i = next;
            while i < rows && out.len() < CHUNK_BYTES {
                line(&mut out, &nonce, i);
                i += 1;
            }
            Some((out, i))
        }
    })
}

/// ImportCustomers of `rows` customers over gRPC.
pub async fn grpc(
    grpc: &mut Grpc,
    server: Option<u32>,
    rows: u64,
    nonce: &str,
) -> Result<Pass, String> {
    use futures_util::StreamExt as _;
    let _ = procfs::sample(server, true);
    let first = pb::ImportCustomersRequest {
        settings: Some(pb::ImportSettings {
            mode: pb::ImportMode::CreateOnly as i32,
            validate_only: false,
            request_id: String::new(),
            format: pb::ImportFormat::Ndjson as i32,
        }),
        ..Default::default()
    };
    let messages =
        futures_util::stream::iter([first]).chain(chunks(nonce.to_owned(), rows).map(|chunk| {
            pb::ImportCustomersRequest {
                chunk,
                ..Default::default()
            }
        }));
    let started = Instant::now();
    let mut request = grpc.request(messages);
    request.set_timeout(Duration::from_secs(3600));
    let operation = grpc
        .client()
        .import_customers(request)
        .await
        .map_err(|s| crate::clients::grpc_error(&s))?
        .into_inner();
    let elapsed = started.elapsed();
    let created = match operation.result {
        Some(longrunning::operation::Result::Response(any)) => {
            pb::ImportCustomersResponse::decode(any.value.as_slice())
                .map_err(|e| e.to_string())?
                .created
        }
        other => return Err(format!("import: the operation ended with {other:?}")),
    };
    Ok(Pass {
        rows,
        created,
        elapsed,
        peak_rss_kib: server.and_then(procfs::peak_rss_kib),
    })
}

/// `COPY … FROM STDIN` of the same rows into a temporary table shaped like `customers`:
/// with its indexes and constraints (`indexed`: `LIKE customers INCLUDING ALL`, no trigger,
/// no events), or bare (defaults only).
pub async fn copy(
    psql: &Path,
    database_url: &str,
    rows: u64,
    nonce: &str,
    indexed: bool,
) -> Result<Duration, String> {
    let mut child = tokio::process::Command::new(psql)
        .args([
            "--no-psqlrc",
            "--quiet",
            "-v",
            "ON_ERROR_STOP=1",
            database_url,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{}: {e}", psql.display()))?;
    let mut stdin = child.stdin.take().ok_or("psql: no stdin")?;
    let started = Instant::now();
    let like = if indexed { "ALL" } else { "DEFAULTS" };
    stdin
        .write_all(
            format!(
                "CREATE TEMP TABLE import_floor (LIKE customers INCLUDING {like});\n\
                 COPY import_floor (id, given_name, family_name, email, phone, status, labels, \
                 external_ids) FROM STDIN;\n"
            )
            .as_bytes(),
        )
        .await
        .map_err(|e| format!("psql: {e}"))?;
    let mut out = Vec::with_capacity(CHUNK_BYTES + 512);
    for i in 0..rows {
        let _ = writeln!(
            out,
            "{}\tBench\tImport {i}\timport-copy-{nonce}-{i}@example.com\t+3584012{:05}\t1\t{{\"source\": \"bench\"}}\t{{\"bench\": \"copy-{nonce}-{i}\"}}",
            uuid::Uuid::new_v4(),
            i % 100_000
        );
        if out.len() >= CHUNK_BYTES {
            stdin
                .write_all(&out)
                .await
                .map_err(|e| format!("psql: {e}"))?;
            out.clear();
        }
    }
    out.extend_from_slice(b"\\.\n");
    stdin
        .write_all(&out)
        .await
        .map_err(|e| format!("psql: {e}"))?;
    drop(stdin);
    let status = child.wait().await.map_err(|e| format!("psql: {e}"))?;
    if !status.success() {
        return Err(format!("psql COPY FROM failed ({status})"));
    }
    Ok(started.elapsed())
}
