//! `customer-bench`: the load generator and report of `make bench`.
//!
//! It drives a running `customer-api` (started by `scripts/bench/run.sh` over a seeded
//! database) through every scenario of issue 6 and runs the `pgbench` baselines against the
//! same database in the same run, then prints and files the report:
//!
//! | scenario | request | baseline |
//! |---|---|---|
//! | `pgbench-select` | prepared primary-key SELECT of a random customer | – |
//! | `get-grpc`, `get-grpc-web`, `get-rest` | GetCustomer of a random customer | select |
//! | `get-rest-h2` | the same REST GET over HTTP/2, on gRPC's connections shape | select |
//! | `list-first`, `list-deep` | ListCustomers page 1 / page 1,000 (by page token) | select |
//! | `search` | ListCustomers with `family_name:"…"` | select |
//! | `search-1` | the same searches one at a time (the query's own latency, no queueing) | select |
//! | `duplicates-1` | FindDuplicateCustomers of a random customer, one at a time | select |
//! | `pgbench-insert` | single-row INSERT, one commit each | – |
//! | `create` | CreateCustomer with a request id | insert |
//! | `update` | UpdateCustomer (phone) with the etag and a request id | insert |
//! | `mixed` | 80% GetCustomer, 10% Create, 10% Update | 80/20 blend |
//! | `export` | ExportCustomers of every live customer (gRPC, REST CSV), one at a time | `COPY (SELECT …) TO STDOUT` |
//! | `import` | ImportCustomers of `--import-rows` new customers as a streamed NDJSON file (gRPC) | `COPY … FROM STDIN` into a table of the same shape |
//!
//! With `--requests N` every scenario instead sends exactly N requests after a warm-up of
//! `--warmup-requests`, with optional shell commands right before and after each measured
//! block (`scripts/bench/instructions.sh` zeroes and dumps the server's callgrind counters
//! there), and prints one tab-separated line per scenario instead of the report.
//!
//! Modules: [`load`] (the closed-loop and fixed-count drivers and histograms), [`clients`] (gRPC, gRPC-web,
//! REST), [`scenarios`] (the workers), [`pgbench`] (baselines), [`procfs`] (CPU and memory
//! of the server), [`report`] (markdown, JSON, targets).

mod clients;
mod export;
mod import;
mod load;
mod pgbench;
mod procfs;
mod report;
mod scenarios;

mod pb {
    //! Client stubs generated from `proto/customer/v1` by `build.rs`.
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("customer.v1");
}

mod longrunning {
    //! `google.longrunning` (ImportCustomers' answer).
    #![allow(missing_docs, clippy::all, clippy::pedantic, dead_code)]
    tonic::include_proto!("google.longrunning");
}

use std::{
    io::Write,
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::Parser;

use crate::{
    clients::{Grpc, Http1, Http2, Target},
    load::{Counted, Measurement, Plan, Worker},
    pgbench::{Baseline, Pgbench},
    report::{Compare, Context, Report, Row},
    scenarios::{Rng, SEARCH_TERMS},
};

/// Every scenario, in run order.
const SCENARIOS: [&str; 17] = [
    "pgbench-select",
    "get-grpc",
    "get-grpc-web",
    "get-rest",
    "get-rest-h2",
    "list-first",
    "list-deep",
    "search",
    "search-1",
    "duplicates-1",
    "pgbench-insert",
    "create",
    "create-without-request-id",
    "update",
    "mixed",
    "export",
    "import",
];

/// Pages walked by token to reach the deep page.
const DEEP_PAGE: u32 = 1000;
/// Page size of the list scenarios (the service's default).
const PAGE_SIZE: u64 = 50;

/// Load generator and report for customer-api (see `make bench`).
#[derive(Debug, Parser)]
#[command(name = "customer-bench", version, about)]
struct Args {
    /// Address of the running server.
    #[arg(long, default_value = "127.0.0.1:18080")]
    addr: SocketAddr,
    /// Bearer token with customers.read, customers.write and customers.export.
    #[arg(
        long,
        env = "BENCH_TOKEN",
        hide_env_values = true,
        required_unless_present = "print_pgbench_script"
    )]
    token: Option<String>,
    /// Prints a pgbench baseline's script and exits, so that other measurements
    /// (scripts/bench/write-shapes.sh) run exactly this run's baseline.
    #[arg(long, value_enum)]
    print_pgbench_script: Option<Baseline>,
    /// Seeded customers (ids 1..=rows, see scripts/bench/seed.sql).
    #[arg(long, env = "BENCH_ROWS", default_value_t = 100_000)]
    rows: u64,
    /// Measured seconds per scenario.
    #[arg(long, env = "BENCH_DURATION", default_value_t = 10)]
    duration: u64,
    /// Warm-up seconds per scenario (not measured).
    #[arg(long, env = "BENCH_WARMUP", default_value_t = 3)]
    warmup: u64,
    /// Requests in flight (workers; also pgbench clients).
    #[arg(long, env = "BENCH_CONCURRENCY", default_value_t = 32)]
    concurrency: usize,
    /// HTTP/2 connections the gRPC workers share.
    #[arg(long, env = "BENCH_CONNECTIONS", default_value_t = 4)]
    connections: usize,
    /// Runtime threads of the generator (and pgbench `--jobs`).
    #[arg(long, env = "BENCH_THREADS", default_value_t = 2)]
    threads: usize,
    /// Comma-separated scenarios to run (default: all).
    #[arg(long, env = "BENCH_SCENARIOS", value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Process id of the server, for its CPU time and peak RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// `getconf CLK_TCK`.
    #[arg(long, default_value_t = 100)]
    clock_ticks: u64,
    /// URL of the benchmark database (for pgbench).
    #[arg(long, env = "BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// The pgbench executable.
    #[arg(long, default_value = "pgbench")]
    pgbench: PathBuf,
    /// The psql executable (the export scenario's COPY baseline).
    #[arg(long, default_value = "psql")]
    psql: PathBuf,
    /// Customers the import scenario imports.
    #[arg(long, env = "BENCH_IMPORT_ROWS", default_value_t = 100_000)]
    import_rows: u64,
    /// Where pgbench scripts and logs go.
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,
    /// Markdown file the report is appended to.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// JSON file the report is written to.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Commit label for the report.
    #[arg(long, default_value = "unknown")]
    commit: String,
    /// PostgreSQL description for the report.
    #[arg(long, default_value = "unknown")]
    postgres: String,
    /// The command line that reproduces this run, for the report.
    #[arg(long, default_value = "make bench")]
    command: String,
    /// Server settings worth recording (`DB_POOL_SIZE=16 …`).
    #[arg(long, default_value = "")]
    server_settings: String,
    /// A note for the report (what this run is about).
    #[arg(long, env = "BENCH_NOTE", default_value = "")]
    note: String,
    /// Fixed-count mode: each scenario sends exactly this many requests (after
    /// `--warmup-requests`) instead of running for `--duration`; no report, one line per
    /// scenario on stdout: name, requests, seconds, what (tab-separated).
    #[arg(long)]
    requests: Option<u64>,
    /// Fixed-count mode: requests sent before each measured block (not measured).
    #[arg(long, default_value_t = 300)]
    warmup_requests: u64,
    /// Fixed-count mode: a shell command run right before each measured block
    /// (`{scenario}` is replaced by the scenario's name); a failure stops the run.
    #[arg(long)]
    before_block: Option<String>,
    /// Fixed-count mode: a shell command run right after each measured block.
    #[arg(long)]
    after_block: Option<String>,
}

/// How a scenario runs: for a time (the report) or for a number of requests.
enum Mode {
    Timed(Plan),
    Counted {
        warmup: u64,
        requests: u64,
        before: Option<String>,
        after: Option<String>,
    },
}

/// What running a scenario gave, by mode.
enum Outcome {
    Timed(Measurement),
    Counted(Counted),
}

impl Mode {
    /// Runs one scenario's workers in this mode. In fixed-count mode every request must
    /// succeed: a count that includes failures does not describe the request.
    async fn run<W: Worker>(
        &self,
        name: &str,
        workers: Vec<W>,
        server: Option<u32>,
    ) -> Result<Outcome, String> {
        match self {
            Self::Timed(plan) => Ok(Outcome::Timed(
                load::drive(name, workers, *plan, server).await,
            )),
            Self::Counted {
                warmup,
                requests,
                before,
                after,
            } => {
                let (workers, warm) = load::drive_count(workers, *warmup).await;
                all_succeeded(name, "warm-up", &warm)?;
                hook(before.as_deref(), name).await?;
                let (_, counted) = load::drive_count(workers, *requests).await;
                hook(after.as_deref(), name).await?;
                all_succeeded(name, "measured block", &counted)?;
                Ok(Outcome::Counted(counted))
            }
        }
    }
}

fn all_succeeded(name: &str, block: &str, counted: &Counted) -> Result<(), String> {
    if counted.errors.is_empty() {
        return Ok(());
    }
    let failures: Vec<String> = counted
        .errors
        .iter()
        .map(|(kind, n)| format!("{n} × {kind}"))
        .collect();
    Err(format!("{name}, {block}: {}", failures.join(", ")))
}

/// Runs a `--before-block`/`--after-block` command for `scenario`.
async fn hook(command: Option<&str>, scenario: &str) -> Result<(), String> {
    let Some(command) = command else {
        return Ok(());
    };
    let command = command.replace("{scenario}", scenario);
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .status()
        .await
        .map_err(|e| format!("`{command}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{command}` failed ({status})"))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(baseline) = args.print_pgbench_script {
        print!("{}", baseline.script());
        return ExitCode::SUCCESS;
    }
    procfs::set_clock_ticks(args.clock_ticks);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("customer-bench: runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("\ncustomer-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let selected: Vec<&'static str> = if args.scenarios.is_empty() {
        SCENARIOS.to_vec()
    } else {
        for name in &args.scenarios {
            if !SCENARIOS.contains(&name.as_str()) {
                return Err(format!(
                    "unknown scenario `{name}` (known: {})",
                    SCENARIOS.join(", ")
                ));
            }
        }
        SCENARIOS
            .into_iter()
            .filter(|s| args.scenarios.iter().any(|a| a == s))
            .collect()
    };
    // Present: clap requires it unless the run only prints a script.
    let target = Target::new(args.addr, args.token.as_deref().unwrap_or_default())?;
    wait_until_ready(&target).await?;
    let grpc = Grpc::connect(&target, args.connections).await?;
    let plan = Plan {
        warmup: Duration::from_secs(args.warmup),
        duration: Duration::from_secs(args.duration.max(1)),
    };
    let mode = match args.requests {
        None => Mode::Timed(plan),
        Some(requests) => Mode::Counted {
            warmup: args.warmup_requests,
            requests: requests.max(1),
            before: args.before_block.clone(),
            after: args.after_block.clone(),
        },
    };
    let pgbench = args.database_url.as_ref().map(|url| Pgbench {
        program: args.pgbench.clone(),
        database_url: url.clone(),
        work_dir: args.work_dir.clone(),
        rows: args.rows,
        clients: args.concurrency,
        threads: args.threads,
    });
    let nonce = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let page_size = PAGE_SIZE.min(args.rows.saturating_sub(1) / u64::from(DEEP_PAGE));
    let mut facts = Vec::new();
    let mut rows = Vec::new();
    let mut counted = Vec::new();
    let started = Instant::now();

    for (position, &name) in selected.iter().enumerate() {
        eprintln!(
            "[{}/{}] {name} (elapsed {}s)",
            position + 1,
            selected.len(),
            started.elapsed().as_secs()
        );
        let c = args.concurrency.max(1);
        let pid = args.server_pid;
        let client = |i: usize| grpc[i % grpc.len()].clone();
        let rows_n = args.rows;
        let (what, compare, outcome) = match name {
            "pgbench-select" | "pgbench-insert" if matches!(mode, Mode::Counted { .. }) => {
                eprintln!("  skipped: pgbench runs for a time, not a count");
                continue;
            }
            "pgbench-select" | "pgbench-insert" => {
                let Some(pgbench) = &pgbench else {
                    eprintln!("  skipped: no --database-url for pgbench");
                    continue;
                };
                let (baseline, what) = if name == "pgbench-select" {
                    (Baseline::Select, "prepared PK SELECT")
                } else {
                    (Baseline::Insert, "single-row INSERT, 1 commit each")
                };
                let m = pgbench.run(baseline, plan).await?;
                (what.to_owned(), Compare::None, Outcome::Timed(m))
            }
            "get-grpc" => {
                let workers = (0..c)
                    .map(|i| scenarios::GetGrpc {
                        grpc: client(i),
                        rng: Rng::new(1, i),
                        rows: rows_n,
                    })
                    .collect();
                let m = mode.run(name, workers, pid).await?;
                ("GetCustomer, gRPC".to_owned(), Compare::Select, m)
            }
            "get-grpc-web" => {
                let mut workers = Vec::with_capacity(c);
                for i in 0..c {
                    workers.push(scenarios::GetGrpcWeb {
                        http: Http1::connect(&target).await?,
                        rng: Rng::new(2, i),
                        rows: rows_n,
                    });
                }
                let m = mode.run(name, workers, pid).await?;
                (
                    "GetCustomer, gRPC-web (HTTP/1.1)".to_owned(),
                    Compare::Select,
                    m,
                )
            }
            "get-rest" => {
                let mut workers = Vec::with_capacity(c);
                for i in 0..c {
                    workers.push(scenarios::GetRest {
                        http: Http1::connect(&target).await?,
                        rng: Rng::new(3, i),
                        rows: rows_n,
                    });
                }
                let m = mode.run(name, workers, pid).await?;
                (
                    "GetCustomer, REST (HTTP/1.1)".to_owned(),
                    Compare::Select,
                    m,
                )
            }
            "get-rest-h2" => {
                let connections = Http2::connect(&target, args.connections).await?;
                let workers = (0..c)
                    .map(|i| scenarios::GetRest {
                        http: connections[i % connections.len()].clone(),
                        rng: Rng::new(8, i),
                        rows: rows_n,
                    })
                    .collect();
                let m = mode.run(name, workers, pid).await?;
                (
                    "GetCustomer, REST (HTTP/2, gRPC's connections)".to_owned(),
                    Compare::Select,
                    m,
                )
            }
            "list-first" | "list-deep" => {
                if page_size == 0 {
                    eprintln!("  skipped: too few rows for {DEEP_PAGE} pages");
                    continue;
                }
                let size = i32::try_from(page_size).unwrap_or(50);
                let mut request = scenarios::pb_list(size);
                let what = if name == "list-first" {
                    format!("ListCustomers page 1 ({size} per page)")
                } else {
                    let (token, took) =
                        scenarios::token_of_page(&mut client(0), size, DEEP_PAGE).await?;
                    facts.push(format!(
                        "Deep page: {} pages of {size} walked by page token in {:.2} s ({:.2} ms per page, one at a time)",
                        DEEP_PAGE - 1,
                        took.as_secs_f64(),
                        took.as_secs_f64() * 1000.0 / f64::from(DEEP_PAGE - 1)
                    ));
                    request.page_token = token;
                    format!("ListCustomers page {DEEP_PAGE} by token ({size} per page)")
                };
                let workers = (0..c)
                    .map(|i| scenarios::List {
                        grpc: client(i),
                        requests: vec![request.clone()],
                        next: 0,
                        expect_at_least: page_size as usize,
                    })
                    .collect();
                let m = mode.run(name, workers, pid).await?;
                (what, Compare::Select, m)
            }
            "search" | "search-1" => {
                // At full concurrency a search's latency is mostly queueing for the two
                // cores; one at a time shows what the query itself costs.
                let c = if name == "search" { c } else { 1 };
                let workers = (0..c)
                    .map(|i| scenarios::List {
                        grpc: client(i),
                        requests: scenarios::searches(PAGE_SIZE as i32),
                        next: i,
                        expect_at_least: 1,
                    })
                    .collect();
                let m = mode.run(name, workers, pid).await?;
                (
                    format!(
                        "ListCustomers `family_name:\"…\"` ({} names, 0.1% each), {c} in flight",
                        SEARCH_TERMS.len()
                    ),
                    Compare::Select,
                    m,
                )
            }
            "duplicates-1" => {
                // One probe at a time: the target is one probe's latency.
                let workers = vec![scenarios::Duplicates {
                    grpc: client(0),
                    rng: Rng::new(9, 0),
                    rows: rows_n,
                }];
                let m = mode.run(name, workers, pid).await?;
                (
                    "FindDuplicateCustomers of a random customer, 1 in flight".to_owned(),
                    Compare::Select,
                    m,
                )
            }
            "create" | "create-without-request-id" => {
                let request_id = name == "create";
                let workers = (0..c)
                    .map(|i| scenarios::Create {
                        grpc: client(i),
                        nonce: format!("{nonce}{}", if request_id { "c" } else { "n" }),
                        worker: i,
                        sent: 0,
                        request_id,
                    })
                    .collect();
                let m = mode.run(name, workers, pid).await?;
                let what = if request_id {
                    "CreateCustomer with request_id"
                } else {
                    "CreateCustomer without request_id"
                };
                (what.to_owned(), Compare::Insert, m)
            }
            "update" => {
                let workers = (0..c)
                    .map(|i| scenarios::Update::owned(client(i), 1, rows_n / 2, i, c))
                    .collect();
                let m = mode.run(name, workers, pid).await?;
                (
                    "UpdateCustomer with etag and request_id".to_owned(),
                    Compare::Insert,
                    m,
                )
            }
            "mixed" => {
                let workers = (0..c)
                    .map(|i| scenarios::Mixed {
                        get: scenarios::GetGrpc {
                            grpc: client(i),
                            rng: Rng::new(4, i),
                            rows: rows_n,
                        },
                        create: scenarios::Create {
                            grpc: client(i),
                            nonce: format!("{nonce}m"),
                            worker: i,
                            sent: 0,
                            request_id: true,
                        },
                        update: scenarios::Update::owned(client(i), rows_n / 2 + 1, rows_n, i, c),
                    })
                    .collect();
                let m = mode.run(name, workers, pid).await?;
                (
                    "80% Get / 10% Create / 10% Update, gRPC".to_owned(),
                    Compare::Blend,
                    m,
                )
            }
            "export" => {
                if matches!(mode, Mode::Counted { .. }) {
                    eprintln!("  skipped: an export is one call, not a count of requests");
                    continue;
                }
                let Some(url) = &args.database_url else {
                    eprintln!("  skipped: no --database-url for the COPY baseline");
                    continue;
                };
                facts.push(export_facts(&args.psql, url, &mut client(0), &target, pid).await?);
                continue;
            }
            "import" => {
                if matches!(mode, Mode::Counted { .. }) {
                    eprintln!("  skipped: an import is one call, not a count of requests");
                    continue;
                }
                let Some(url) = &args.database_url else {
                    eprintln!("  skipped: no --database-url for the COPY baseline");
                    continue;
                };
                let nonce = format!("{nonce}i");
                facts.push(
                    import_facts(
                        &args.psql,
                        url,
                        &mut client(0),
                        pid,
                        args.import_rows,
                        &nonce,
                    )
                    .await?,
                );
                continue;
            }
            other => return Err(format!("no driver for {other}")),
        };
        match outcome {
            Outcome::Timed(measurement) => {
                print_line(name, &measurement);
                rows.push(Row {
                    name,
                    what,
                    compare,
                    measurement,
                });
            }
            Outcome::Counted(block) => {
                eprintln!(
                    "  {name:<22} {:>9} requests in {:.1} s",
                    block.sent, block.seconds
                );
                counted.push(format!(
                    "{name}\t{}\t{:.3}\t{what}",
                    block.sent, block.seconds
                ));
            }
        }
    }

    if matches!(mode, Mode::Counted { .. }) {
        for line in counted {
            println!("{line}");
        }
        eprintln!("fixed-count run took {} s", started.elapsed().as_secs());
        return Ok(());
    }

    let report = Report {
        context: context(&args, &selected, page_size, facts),
        rows,
    };
    finish(&args, &report, started.elapsed())
}

/// The import scenario: COPY FROM of the rows into a bare table, then ImportCustomers of
/// them, as one line of facts.
async fn import_facts(
    psql: &std::path::Path,
    database_url: &str,
    grpc: &mut Grpc,
    server: Option<u32>,
    rows: u64,
    nonce: &str,
) -> Result<String, String> {
    let bare = import::copy(psql, database_url, rows, &format!("{nonce}b"), false).await?;
    let shaped = import::copy(psql, database_url, rows, &format!("{nonce}s"), true).await?;
    let pass = import::grpc(grpc, server, rows, nonce).await?;
    if u64::try_from(pass.created).ok() != Some(rows) {
        return Err(format!(
            "import: {} of {rows} customers created",
            pass.created
        ));
    }
    let rate = |took: std::time::Duration| rows as f64 / took.as_secs_f64().max(1e-9);
    let line = format!(
        "Import of {rows} customers (NDJSON over gRPC, batches of 1,000 with one event each): \
         {:.2} s = {:.0} rows/s, {:.0}% of `COPY … FROM STDIN` into a table of the same shape \
         (`LIKE customers INCLUDING ALL`: its indexes, no trigger, no events; {:.2} s = {:.0} \
         rows/s), {:.0}% of COPY into a bare one ({:.2} s = {:.0} rows/s); server peak RSS {}",
        pass.elapsed.as_secs_f64(),
        pass.rate(),
        100.0 * pass.rate() / rate(shaped),
        shaped.as_secs_f64(),
        rate(shaped),
        100.0 * pass.rate() / rate(bare),
        bare.as_secs_f64(),
        rate(bare),
        pass.peak_rss_kib
            .map_or("?".into(), |kib| format!("{:.1} MiB", kib as f64 / 1024.0)),
    );
    eprintln!("  {line}");
    Ok(line)
}

/// The export scenario: COPY, then the gRPC and REST CSV exports, as one line of facts.
async fn export_facts(
    psql: &std::path::Path,
    database_url: &str,
    grpc: &mut Grpc,
    target: &Target,
    server: Option<u32>,
) -> Result<String, String> {
    let copy = export::copy(psql, database_url).await?;
    let over_grpc = export::grpc(grpc, server).await?;
    let csv = export::rest_csv(target, server).await?;
    for pass in [&over_grpc, &csv] {
        if pass.rows != copy.rows {
            return Err(format!(
                "export: {} customers exported, COPY read {}",
                pass.rows, copy.rows
            ));
        }
    }
    let describe = |name: &str, pass: &export::Pass| {
        format!(
            "{name} {:.2} s = {:.0} rows/s, {:.0}% of COPY, server peak RSS {}",
            pass.elapsed.as_secs_f64(),
            pass.rate(),
            100.0 * pass.rate() / copy.rate(),
            pass.peak_rss_kib
                .map_or("?".into(), |kib| format!("{:.1} MiB", kib as f64 / 1024.0)),
        )
    };
    let line = format!(
        "Export of {} customers: `COPY (SELECT …) TO STDOUT` {:.2} s = {:.0} rows/s ({:.0} MiB); {}; {} ({:.0} MiB)",
        copy.rows,
        copy.elapsed.as_secs_f64(),
        copy.rate(),
        copy.bytes as f64 / 1048576.0,
        describe("gRPC", &over_grpc),
        describe("REST CSV", &csv),
        csv.bytes as f64 / 1048576.0,
    );
    eprintln!("  {line}");
    Ok(line)
}

/// One line per finished scenario, so progress shows results as they come.
fn print_line(name: &str, m: &load::Measurement) {
    eprintln!(
        "  {name:<22} {:>9.0} rps  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.1} ms  errors {}",
        m.rps(),
        m.latency.value_at_quantile(0.5) as f64 / 1000.0,
        m.latency.value_at_quantile(0.99) as f64 / 1000.0,
        m.latency.max() as f64 / 1000.0,
        m.error_count()
    );
    for (kind, n) in &m.errors {
        eprintln!("    {n} × {kind}");
    }
}

fn context(args: &Args, selected: &[&str], page_size: u64, facts: Vec<String>) -> Context {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or("? GiB".into(), |kib| {
            format!("{:.1} GiB", kib / 1024.0 / 1024.0)
        });
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mut parameters = vec![
        ("rows", args.rows.to_string()),
        ("concurrency", args.concurrency.to_string()),
        (
            "gRPC and REST-over-HTTP/2 connections",
            args.connections.max(1).to_string(),
        ),
        (
            "gRPC-web/REST HTTP/1.1 connections",
            args.concurrency.to_string(),
        ),
        ("warm-up", format!("{} s", args.warmup)),
        ("measured", format!("{} s per scenario", args.duration)),
        ("generator threads", args.threads.to_string()),
        ("list page size", page_size.to_string()),
    ];
    if !args.server_settings.is_empty() {
        parameters.push(("server", args.server_settings.clone()));
    }
    if selected.len() < SCENARIOS.len() {
        parameters.push(("scenarios", selected.join(",")));
    }
    Context {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        commit: args.commit.clone(),
        machine: format!(
            "{cores} cores ({model}), {memory} RAM, shared by the service, PostgreSQL and the load generator"
        ),
        postgres: args.postgres.clone(),
        command: args.command.clone(),
        note: args.note.clone(),
        parameters,
        rows: args.rows,
        facts,
    }
}

fn finish(args: &Args, report: &Report, took: Duration) -> Result<(), String> {
    let markdown = report.markdown();
    println!("{markdown}");
    if let Some(path) = &args.markdown {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        file.write_all(markdown.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("appended the report to {}", path.display());
    }
    if let Some(path) = &args.json {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(&report.json()).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    eprintln!("\ntargets (issue 6):");
    for target in report.targets() {
        eprintln!(
            "  {:<5} {} {}: {}",
            report::verdict(target.pass),
            target.measure,
            target.goal,
            target.value
        );
    }
    eprintln!("benchmark took {} s", took.as_secs());
    Ok(())
}

/// Polls `/readyz` until the server answers 200 (start-up applies migrations first).
async fn wait_until_ready(target: &Target) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        if let Ok(mut http) = Http1::connect(target).await {
            let request = http::Request::get("/readyz")
                .body(http_body_util::Full::default())
                .map_err(|e| e.to_string())?;
            match http.send(request).await {
                Ok((parts, _)) if parts.status == http::StatusCode::OK => return Ok(()),
                Ok((parts, _)) => last = format!("HTTP {}", parts.status),
                Err(error) => last = error,
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!(
        "the server at {} was not ready within 60 s ({last})",
        target.addr
    ))
}
