//! Compiles `proto/` into Rust (prost messages + tonic services) without a system `protoc`:
//! `protox` parses the .proto files in-process, then `tonic-prost-build` generates code from
//! the resulting descriptor set. The encoded descriptor set is also written to `OUT_DIR` for
//! server reflection and the REST gateway, which derive everything from it.

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/customer/v1/customer.proto",
    "proto/customer/v1/customer_service.proto",
    "proto/customer/v1/events.proto",
    "proto/customer/v1/company.proto",
    "proto/customer/v1/note.proto",
    "proto/customer/v1/api_keys.proto",
    "proto/google/longrunning/operations.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    build_info();
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(PROTOS)?;
    // The encoded form keeps custom options (google.api.http, field_behavior), which the
    // prost_types form below drops; reflection and the REST gateway read them.
    std::fs::write(
        out_dir.join("customer_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let fds = compiler.file_descriptor_set();

    tonic_prost_build::configure()
        // Decode failures of request bodies become INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::grpc::codec::Codec")
        .build_transport(false)
        // Deterministic label order on the wire and in JSON.
        .btree_map(".")
        // google.rpc (Status, BadRequest) as tonic's: one type for error details and for
        // the per-row violations of an import.
        .extern_path(".google.rpc", "::tonic_types::pb")
        .extern_path(".google.longrunning", "crate::longrunning")
        .compile_fds(fds)?;

    // google.longrunning on its own (`crate::longrunning`), which the customer.v1 code refers
    // to there: generated code names another package's types by a relative path
    // (`super::super::google::…`), which the flat `crate::pb` module cannot follow. Last, so
    // its file replaces the services-only one the pass above wrote for the extern package.
    let mut longrunning = protox::Compiler::new(["proto"])?;
    longrunning.include_imports(true);
    longrunning.open_files(["proto/google/longrunning/operations.proto"])?;
    tonic_prost_build::configure()
        .codec_path("crate::grpc::codec::Codec")
        .build_transport(false)
        .btree_map(".")
        .extern_path(".google.rpc", "::tonic_types::pb")
        .compile_fds(longrunning.file_descriptor_set())?;

    Ok(())
}

/// `CUSTOMER_API_COMMIT` and `CUSTOMER_API_BUILD_DATE` for `--version` and `build_info`.
///
/// The commit is `GIT_COMMIT` when set (image builds, which have no `.git`), else what git
/// says of the checkout, else `unknown`; a checkout with uncommitted changes is marked
/// `-dirty`. The date is `SOURCE_DATE_EPOCH` when set (reproducible builds), else today
/// (UTC).
fn build_info() {
    println!("cargo:rerun-if-env-changed=GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .filter(|text| !text.is_empty())
    };
    // Rebuilt when HEAD moves (a worktree's .git is a file naming its git dir).
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
    }
    if let Some(refs) = git(&["rev-parse", "--git-path", "refs/heads"]) {
        println!("cargo:rerun-if-changed={refs}");
    }
    let commit = env::var("GIT_COMMIT")
        .ok()
        .filter(|commit| !commit.trim().is_empty())
        .or_else(|| {
            let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some();
            Some(if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            })
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let seconds = env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|epoch| epoch.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs())
        });
    println!("cargo:rustc-env=CUSTOMER_API_COMMIT={}", commit.trim());
    println!(
        "cargo:rustc-env=CUSTOMER_API_BUILD_DATE={}",
        civil_date(seconds / 86_400)
    );
}

/// The `YYYY-MM-DD` of a day counted from 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_date(days: u64) -> String {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
