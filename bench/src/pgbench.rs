//! The baselines: `pgbench` running the SQL a request boils down to, against the same
//! database, at the same concurrency, in the same run.
//!
//! - `select`: the primary-key SELECT of GetCustomer (the same columns), as a prepared
//!   statement (`-M prepared`), one random seeded customer per transaction.
//! - `insert`: one single-row INSERT … RETURNING of a customer like the ones CreateCustomer
//!   stores, one commit each.
//!
//! pgbench's own TPS figure is the throughput; latencies come from its per-transaction log
//! (`-l`), fed into the same kind of HDR histogram as the service's.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Stdio,
};

use tokio::{process::Command, time::Instant};

use crate::load::{self, Measurement, Plan};

/// The columns GetCustomer reads (`CustomerRow`).
const COLUMNS: &str = "id, given_name, family_name, email, phone, address, status, company, \
                       business_id, labels, version, create_time, update_time, delete_time";

/// A baseline script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Baseline {
    /// Prepared primary-key SELECT.
    Select,
    /// Single-row INSERT, one commit each.
    Insert,
}

impl Baseline {
    /// The pgbench script (`--print-pgbench-script` prints it for other scripts to run).
    pub fn script(self) -> String {
        match self {
            Self::Select => format!(
                "\\set i random(1, :rows)\n\
                 SELECT {COLUMNS} FROM customers \
                 WHERE id = ('00000000-0000-7000-8000-' || lpad(to_hex(:i::bigint), 12, '0'))::uuid \
                 LIMIT 1;\n"
            ),
            Self::Insert => format!(
                "INSERT INTO customers (id, given_name, family_name, email, phone, address, \
                 status, labels, created_by, updated_by) VALUES (gen_random_uuid(), 'Grace', \
                 'Benchley', 'pgbench.' || gen_random_uuid() || '@example.com', '+15105550100', \
                 '{{\"lines\": [\"1 Load Street\"], \"locality\": \"Oakland\", \"region\": \"CA\", \
                 \"postal_code\": \"94601\", \"country_code\": \"US\"}}', 1, '{{\"tier\": \"gold\"}}', \
                 'pgbench', 'pgbench') RETURNING {COLUMNS};\n"
            ),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Select => "select",
            Self::Insert => "insert",
        }
    }
}

/// How to run pgbench.
#[derive(Debug, Clone)]
pub struct Pgbench {
    /// The executable.
    pub program: PathBuf,
    /// Connection URL of the benchmark database.
    pub database_url: String,
    /// Where scripts and logs go.
    pub work_dir: PathBuf,
    /// Seeded rows.
    pub rows: u64,
    /// Client connections (`-c`).
    pub clients: usize,
    /// Threads (`-j`).
    pub threads: usize,
}

impl Pgbench {
    /// Runs `baseline`: a warm-up run, then the measured run with a transaction log.
    pub async fn run(&self, baseline: Baseline, plan: Plan) -> Result<Measurement, String> {
        let dir = self.work_dir.join(format!("pgbench-{}", baseline.name()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let script = dir.join("script.sql");
        std::fs::write(&script, baseline.script()).map_err(|e| e.to_string())?;

        let label = format!("pgbench-{}", baseline.name());
        let start = Instant::now();
        let measure_from = start + plan.warmup;
        let end = measure_from + plan.duration;
        let runs = async {
            if plan.warmup.as_secs() > 0 {
                self.invoke(&script, plan.warmup.as_secs(), None).await?;
            }
            self.invoke(&script, plan.duration.as_secs().max(1), Some(&dir))
                .await
        };
        let (output, usage) = tokio::join!(
            runs,
            load::watch(&label, start, measure_from, end, None, None)
        );
        let output = output?;
        let tps = parse_number(&output, "tps = ")
            .ok_or_else(|| format!("pgbench printed no tps:\n{output}"))?;
        let failed = parse_number(&output, "number of failed transactions: ").unwrap_or(0.0);

        let mut latency = load::histogram();
        for entry in std::fs::read_dir(&dir).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if is_log(&path) {
                let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
                for micros in text.lines().filter_map(log_latency) {
                    latency.saturating_record(micros.max(1));
                }
            }
        }
        let mut errors = BTreeMap::new();
        if failed > 0.0 {
            errors.insert("pgbench failed transactions".to_owned(), failed as u64);
        }
        let seconds = plan.duration.as_secs().max(1) as f64;
        // pgbench is a child process: this process's CPU time says nothing about it.
        let usage = crate::procfs::Usage {
            generator_cpu_seconds: None,
            ..usage
        };
        Ok(Measurement {
            // pgbench's own figure (it excludes connection set-up) defines the throughput.
            ok: (tps * seconds).round() as u64,
            errors,
            latency,
            seconds,
            usage,
        })
    }

    async fn invoke(
        &self,
        script: &Path,
        seconds: u64,
        log_dir: Option<&Path>,
    ) -> Result<String, String> {
        let mut command = Command::new(&self.program);
        command
            .arg("--no-vacuum")
            .args(["--protocol", "prepared"])
            .args(["--client", &self.clients.to_string()])
            .args(["--jobs", &self.threads.min(self.clients).max(1).to_string()])
            .args(["--time", &seconds.to_string()])
            .args(["--define", &format!("rows={}", self.rows)])
            .arg("--file")
            .arg(script);
        if let Some(dir) = log_dir {
            command
                .arg("--log")
                .arg(format!("--log-prefix={}", dir.join("log").display()));
        }
        let output = command
            .arg(&self.database_url)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("{}: {e}", self.program.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            return Err(format!(
                "pgbench failed ({}):\n{stdout}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(stdout)
    }
}

fn is_log(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with("log."))
}

/// The number after `prefix` on the first line that has it.
fn parse_number(output: &str, prefix: &str) -> Option<f64> {
    output.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(prefix)?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The latency (µs, third field) of a pgbench log line:
/// `client_id transaction_no time script_no time_epoch time_us`. Failed or skipped
/// transactions (non-numeric time) are not latencies.
fn log_latency(line: &str) -> Option<u64> {
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbench_summaries_and_logs_parse() {
        let output = "number of transactions actually processed: 1234\n\
                      number of failed transactions: 0 (0.000%)\n\
                      latency average = 1.234 ms\n\
                      tps = 25926.518305 (without initial connection time)\n";
        assert_eq!(parse_number(output, "tps = "), Some(25926.518305));
        assert_eq!(
            parse_number(output, "number of failed transactions: "),
            Some(0.0)
        );
        assert_eq!(log_latency("3 117 1224 0 1700000000 123456"), Some(1224));
        assert_eq!(log_latency("3 118 failed 0 1700000000 123456"), None);
    }

    #[test]
    fn baseline_scripts_read_what_the_service_reads() {
        assert!(Baseline::Select.script().contains(COLUMNS));
        assert!(Baseline::Insert.script().contains("RETURNING"));
    }
}
