//! The report: one row per scenario (RPS, p50/p99/max, errors, ratio to its pgbench
//! baseline, server CPU per 1,000 requests, server peak RSS), the issue's targets with
//! pass/fail, as a markdown section for `BENCHMARKS.md` and as JSON for tooling.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::load::Measurement;

/// Which baseline a scenario is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// It is a baseline.
    None,
    /// The prepared primary-key SELECT.
    Select,
    /// The single-row INSERT.
    Insert,
    /// 80% SELECT, 20% INSERT, by time: 1 / (0.8 / select + 0.2 / insert).
    Blend,
}

/// One measured scenario.
#[derive(Debug, Clone)]
pub struct Row {
    /// Short name (`get-grpc`).
    pub name: &'static str,
    /// What was measured.
    pub what: String,
    /// Its baseline.
    pub compare: Compare,
    /// The numbers.
    pub measurement: Measurement,
}

/// Everything about the run that is not a measurement.
#[derive(Debug, Clone)]
pub struct Context {
    /// UTC time of the run.
    pub date: String,
    /// `git describe`-like commit label.
    pub commit: String,
    /// Cores, memory, CPU model.
    pub machine: String,
    /// Free text: PostgreSQL version and where it runs.
    pub postgres: String,
    /// The command line that reproduces the run.
    pub command: String,
    /// Optional note (what changed).
    pub note: String,
    /// Parameters as (name, value).
    pub parameters: Vec<(&'static str, String)>,
    /// Seeded customers.
    pub rows: u64,
    /// Extra facts worth a line (the deep-page walk).
    pub facts: Vec<String>,
}

/// One target of the issue.
#[derive(Debug, Clone)]
pub struct Target {
    /// The measure.
    pub measure: String,
    /// The goal, as text.
    pub goal: &'static str,
    /// What was measured, as text.
    pub value: String,
    /// Met, missed, or not measurable in this run.
    pub pass: Option<bool>,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Row {
    fn p(&self, quantile: f64) -> f64 {
        ms(self.measurement.latency.value_at_quantile(quantile))
    }

    fn max(&self) -> f64 {
        ms(self.measurement.latency.max())
    }

    fn cpu_per_1k(&self) -> Option<f64> {
        let requests = self.measurement.ok + self.measurement.error_count();
        (requests > 0).then_some(())?;
        Some(self.measurement.usage.server_cpu_seconds? * 1000.0 / requests as f64)
    }

    fn generator_cpu_per_1k(&self) -> Option<f64> {
        let requests = self.measurement.ok + self.measurement.error_count();
        (requests > 0).then_some(())?;
        Some(self.measurement.usage.generator_cpu_seconds? * 1000.0 / requests as f64)
    }

    fn peak_rss_mib(&self) -> Option<f64> {
        Some(self.measurement.usage.server_peak_rss_kib? as f64 / 1024.0)
    }
}

/// The full report.
#[derive(Debug, Clone)]
pub struct Report {
    /// Run facts.
    pub context: Context,
    /// Scenarios in run order.
    pub rows: Vec<Row>,
}

impl Report {
    fn find(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|row| row.name == name)
    }

    fn baseline_rps(&self, compare: Compare) -> Option<f64> {
        let select = self.find("pgbench-select").map(|r| r.measurement.rps());
        let insert = self.find("pgbench-insert").map(|r| r.measurement.rps());
        match compare {
            Compare::None => None,
            Compare::Select => select,
            Compare::Insert => insert,
            Compare::Blend => {
                let (select, insert) = (select?, insert?);
                (select > 0.0 && insert > 0.0).then(|| 1.0 / (0.8 / select + 0.2 / insert))
            }
        }
    }

    /// A scenario's throughput over its baseline's.
    pub fn ratio(&self, row: &Row) -> Option<f64> {
        let baseline = self.baseline_rps(row.compare)?;
        (baseline > 0.0).then(|| row.measurement.rps() / baseline)
    }

    /// The issue's targets, evaluated on this run.
    pub fn targets(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        let rps = |name: &str| self.find(name).map(|r| r.measurement.rps());
        let pct = |value: Option<f64>| {
            value.map_or("not measured".into(), |v| format!("{:.0}%", v * 100.0))
        };

        let grpc_vs_pg = self.find("get-grpc").and_then(|row| self.ratio(row));
        targets.push(Target {
            measure: "GetCustomer gRPC throughput vs pgbench PK SELECT".into(),
            goal: ">= 50%",
            value: pct(grpc_vs_pg),
            pass: grpc_vs_pg.map(|r| r >= 0.5),
        });
        // REST over HTTP/1.1 (a connection per request in flight, as REST clients pool them)
        // and over HTTP/2 (gRPC's own connection shape, the like-for-like comparison).
        for (name, transport) in [("get-rest", "HTTP/1.1"), ("get-rest-h2", "HTTP/2")] {
            let rest_vs_grpc = match (rps(name), rps("get-grpc")) {
                (Some(rest), Some(grpc)) if grpc > 0.0 => Some(rest / grpc),
                _ => None,
            };
            targets.push(Target {
                measure: format!("GetCustomer REST ({transport}) throughput vs gRPC"),
                goal: ">= 85%",
                value: pct(rest_vs_grpc),
                pass: rest_vs_grpc.map(|r| r >= 0.85),
            });
        }
        for (name, transport) in [
            ("get-grpc", "gRPC"),
            ("get-grpc-web", "gRPC-web"),
            ("get-rest", "REST"),
            ("get-rest-h2", "REST over HTTP/2"),
        ] {
            let p99 = self.find(name).map(|row| row.p(0.99));
            targets.push(Target {
                measure: format!("GetCustomer p99 latency ({transport})"),
                goal: "<= 5 ms",
                value: p99.map_or("not measured".into(), |v| format!("{v:.2} ms")),
                pass: p99.map(|v| v <= 5.0),
            });
        }
        let create_vs_pg = self.find("create").and_then(|row| self.ratio(row));
        targets.push(Target {
            measure: "CreateCustomer throughput vs pgbench single-row INSERT".into(),
            goal: ">= 40%",
            value: pct(create_vs_pg),
            pass: create_vs_pg.map(|r| r >= 0.4),
        });
        let deep = match (self.find("list-deep"), self.find("list-first")) {
            (Some(deep), Some(first)) if first.p(0.5) > 0.0 => Some(deep.p(0.5) / first.p(0.5)),
            _ => None,
        };
        targets.push(Target {
            measure: "deep page (page 1,000) vs first page latency, p50".into(),
            goal: "<= 1.5x",
            value: deep.map_or("not measured".into(), |v| format!("{v:.2}x")),
            pass: deep.map(|v| v <= 1.5),
        });
        let search = self.find("search").map(|row| row.p(0.5));
        let alone = self.find("search-1").map_or(String::new(), |row| {
            format!("; one at a time {:.2} ms", row.p(0.5))
        });
        let at_scale = self.context.rows >= 1_000_000;
        targets.push(Target {
            measure: "name contains-search at 1,000,000 customers, p50".into(),
            goal: "<= 20 ms",
            value: match search {
                Some(v) if at_scale => format!("{v:.2} ms{alone}"),
                Some(v) => format!(
                    "{v:.2} ms{alone}, at {} customers (BENCH_ROWS=1000000 to judge)",
                    self.context.rows
                ),
                None => "not measured".into(),
            },
            pass: search.filter(|_| at_scale).map(|v| v <= 20.0),
        });
        let probe = self.find("duplicates-1").map(|row| row.p(0.5));
        targets.push(Target {
            measure: "FindDuplicateCustomers at 1,000,000 customers, one probe, p50".into(),
            goal: "<= 50 ms",
            value: match probe {
                Some(v) if at_scale => format!("{v:.2} ms"),
                Some(v) => format!(
                    "{v:.2} ms, at {} customers (BENCH_ROWS=1000000 to judge)",
                    self.context.rows
                ),
                None => "not measured".into(),
            },
            pass: probe.filter(|_| at_scale).map(|v| v <= 50.0),
        });
        let rss = self
            .rows
            .iter()
            .filter_map(Row::peak_rss_mib)
            .fold(None, |max: Option<f64>, v| {
                Some(max.map_or(v, |m| m.max(v)))
            });
        targets.push(Target {
            measure: "server peak RSS under load".into(),
            goal: "<= 100 MiB",
            value: rss.map_or("not measured".into(), |v| format!("{v:.1} MiB")),
            pass: rss.map(|v| v <= 100.0),
        });
        let errors: u64 = self.rows.iter().map(|r| r.measurement.error_count()).sum();
        targets.push(Target {
            measure: "errors under the default load".into(),
            goal: "0",
            value: errors.to_string(),
            pass: Some(errors == 0),
        });
        targets
    }

    /// The markdown section appended to `BENCHMARKS.md`.
    pub fn markdown(&self) -> String {
        let c = &self.context;
        let mut out = String::new();
        let _ = writeln!(out, "\n## {} · {}\n", c.date, c.commit);
        if !c.note.is_empty() {
            let _ = writeln!(out, "{}\n", c.note);
        }
        let _ = writeln!(out, "- Machine: {}", c.machine);
        let _ = writeln!(out, "- PostgreSQL: {}", c.postgres);
        let parameters: Vec<String> = c
            .parameters
            .iter()
            .map(|(name, value)| format!("{name} {value}"))
            .collect();
        let _ = writeln!(out, "- Parameters: {}", parameters.join(", "));
        let _ = writeln!(out, "- Command: `{}`", c.command);
        for fact in &c.facts {
            let _ = writeln!(out, "- {fact}");
        }
        let _ = writeln!(
            out,
            "\n| scenario | RPS | p50 ms | p99 ms | max ms | errors | vs pgbench | server CPU s / 1k req | server peak RSS MiB | generator CPU s / 1k req | machine busy |"
        );
        let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        for row in &self.rows {
            let m = &row.measurement;
            let ratio = match (row.compare, self.ratio(row)) {
                (Compare::None, _) => "baseline".to_owned(),
                (_, Some(ratio)) => format!("{:.0}%", ratio * 100.0),
                (_, None) => "–".to_owned(),
            };
            let _ = writeln!(
                out,
                "| **{}** {} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {} | {} | {} | {} | {} |",
                row.name,
                row.what,
                m.rps(),
                row.p(0.5),
                row.p(0.99),
                row.max(),
                errors_text(m),
                ratio,
                opt(row.cpu_per_1k(), 3),
                opt(row.peak_rss_mib(), 1),
                opt(row.generator_cpu_per_1k(), 3),
                m.usage
                    .machine_busy
                    .map_or("–".into(), |b| format!("{:.0}%", b * 100.0)),
            );
        }
        let _ = writeln!(out, "\n| target | goal | measured | result |");
        let _ = writeln!(out, "|---|---|---|---|");
        for target in self.targets() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                target.measure,
                target.goal,
                target.value,
                verdict(target.pass)
            );
        }
        out
    }

    /// The JSON document (`target/bench/results.json`).
    pub fn json(&self) -> Value {
        let c = &self.context;
        let scenarios: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let m = &row.measurement;
                json!({
                    "name": row.name,
                    "what": row.what,
                    "rps": m.rps(),
                    "ok": m.ok,
                    "errors": m.errors,
                    "seconds": m.seconds,
                    "latency_ms": {
                        "p50": row.p(0.5),
                        "p90": row.p(0.9),
                        "p99": row.p(0.99),
                        "p999": row.p(0.999),
                        "max": row.max(),
                        "mean": m.latency.mean() / 1000.0,
                    },
                    "baseline": match row.compare {
                        Compare::None => Value::Null,
                        Compare::Select => "pgbench-select".into(),
                        Compare::Insert => "pgbench-insert".into(),
                        Compare::Blend => "pgbench 80% select / 20% insert".into(),
                    },
                    "ratio_to_baseline": self.ratio(row),
                    "server_cpu_seconds": m.usage.server_cpu_seconds,
                    "server_cpu_seconds_per_1k_requests": row.cpu_per_1k(),
                    "server_peak_rss_mib": row.peak_rss_mib(),
                    "generator_cpu_seconds_per_1k_requests": row.generator_cpu_per_1k(),
                    "machine_busy": m.usage.machine_busy,
                })
            })
            .collect();
        let targets: Vec<Value> = self
            .targets()
            .into_iter()
            .map(
                |t| json!({"measure": t.measure, "goal": t.goal, "value": t.value, "pass": t.pass}),
            )
            .collect();
        let parameters: serde_json::Map<String, Value> = c
            .parameters
            .iter()
            .map(|(name, value)| ((*name).to_owned(), Value::String(value.clone())))
            .collect();
        json!({
            "date": c.date,
            "commit": c.commit,
            "machine": c.machine,
            "postgres": c.postgres,
            "command": c.command,
            "note": c.note,
            "rows": c.rows,
            "parameters": parameters,
            "facts": c.facts,
            "scenarios": scenarios,
            "targets": targets,
        })
    }
}

fn errors_text(m: &Measurement) -> String {
    if m.errors.is_empty() {
        return "0".into();
    }
    let kinds: Vec<String> = m.errors.iter().map(|(k, n)| format!("{n} {k}")).collect();
    kinds.join(", ")
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or("–".into(), |v| format!("{v:.decimals$}"))
}

/// `pass`, `FAIL` or `n/a`.
pub fn verdict(pass: Option<bool>) -> &'static str {
    match pass {
        Some(true) => "pass",
        Some(false) => "FAIL",
        None => "n/a",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{load::histogram, procfs::Usage};

    fn row(name: &'static str, compare: Compare, ok: u64, p50_us: u64) -> Row {
        let mut latency = histogram();
        latency.record_n(p50_us, ok).unwrap();
        Row {
            name,
            what: String::new(),
            compare,
            measurement: Measurement {
                ok,
                errors: Default::default(),
                latency,
                seconds: 10.0,
                usage: Usage {
                    server_peak_rss_kib: Some(40 * 1024),
                    ..Usage::default()
                },
            },
        }
    }

    fn report(rows: Vec<Row>) -> Report {
        Report {
            context: Context {
                date: "2026-01-01".into(),
                commit: "abc".into(),
                machine: "2 cores".into(),
                postgres: "15".into(),
                command: "make bench".into(),
                note: String::new(),
                parameters: vec![],
                rows: 100_000,
                facts: vec![],
            },
            rows,
        }
    }

    #[test]
    fn ratios_and_targets_follow_the_issue() {
        let report = report(vec![
            row("pgbench-select", Compare::None, 100_000, 900),
            row("get-grpc", Compare::Select, 60_000, 1_000),
            row("get-rest", Compare::Select, 48_000, 1_200),
            row("get-rest-h2", Compare::Select, 57_000, 1_100),
            row("pgbench-insert", Compare::None, 20_000, 3_000),
            row("create", Compare::Insert, 6_000, 8_000),
            row("list-first", Compare::Select, 1_000, 2_000),
            row("list-deep", Compare::Select, 1_000, 2_400),
            row("mixed", Compare::Blend, 10_000, 1_000),
        ]);
        let get = report.find("get-grpc").unwrap();
        assert!((report.ratio(get).unwrap() - 0.6).abs() < 1e-9);
        let mixed = report.find("mixed").unwrap();
        // 1 / (0.8 / 10,000 + 0.2 / 2,000) = 5,555.6 per second; mixed did 1,000.
        assert!((report.ratio(mixed).unwrap() - 1000.0 / 5555.555).abs() < 1e-3);

        let targets = report.targets();
        let verdicts: Vec<_> = targets.iter().map(|t| t.pass).collect();
        assert_eq!(
            verdicts,
            vec![
                Some(true),  // 60% of pgbench
                Some(false), // REST over HTTP/1.1 80% of gRPC
                Some(true),  // REST over HTTP/2 95% of gRPC
                Some(true),  // gRPC p99 1 ms
                None,        // gRPC-web not measured
                Some(true),  // REST p99 1.2 ms
                Some(true),  // REST over HTTP/2 p99 1.1 ms
                Some(false), // create 30% of pgbench
                Some(true),  // deep page 1.2x
                None,        // search not measured (and not at 1M rows)
                None,        // FindDuplicateCustomers not measured (and not at 1M rows)
                Some(true),  // 40 MiB
                Some(true),  // no errors
            ]
        );
        let markdown = report.markdown();
        assert!(markdown.contains("| **get-grpc**  | 6000 |"), "{markdown}");
        assert!(
            markdown.contains(
                "| GetCustomer REST (HTTP/1.1) throughput vs gRPC | >= 85% | 80% | FAIL |"
            ),
            "{markdown}"
        );
    }
}
