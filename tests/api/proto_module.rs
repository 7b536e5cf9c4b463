//! The proto module (buf.yaml): `buf lint` (STANDARD, with the justified exceptions) is clean,
//! `buf breaking` finds nothing against the merge base with main, and it does bite on a
//! renamed field. buf is npm @bufbuild/buf from `make tools`.

use std::{path::Path, process::Output};

use crate::helpers::{Scratch, tool};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

async fn buf(args: &[&str]) -> Output {
    let buf = tool("target/tools/node/node_modules/.bin/buf");
    let path = format!(
        "{}:/usr/local/bin:/usr/bin:/bin",
        root().join("target/tools/node").display()
    );
    tokio::process::Command::new(buf)
        .args(args)
        .current_dir(root())
        .env_clear()
        .env("PATH", path)
        .env("HOME", env!("CARGO_TARGET_TMPDIR"))
        .output()
        .await
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `git`'s answer in the repository, trimmed.
fn git(args: &[&str]) -> Option<Vec<u8>> {
    let output = std::process::Command::new("git")
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    output.status.success().then_some(output.stdout)
}

#[tokio::test]
async fn buf_lint_is_clean() {
    let output = buf(&["lint"]).await;
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(text(&output), "");
}

#[tokio::test]
async fn the_protos_are_compatible_with_the_merge_base_and_a_renamed_field_is_not() {
    // The merge base with main (HEAD itself on main), extracted with git archive.
    let base = git(&["merge-base", "HEAD", "main"])
        .or_else(|| git(&["rev-parse", "HEAD"]))
        .unwrap();
    let base = String::from_utf8(base).unwrap().trim().to_owned();
    let scratch = Scratch::new("buf-breaking");
    let tar = git(&["archive", &base, "proto"]).unwrap();
    let tar_path = scratch.0.join("proto.tar");
    std::fs::write(&tar_path, tar).unwrap();
    let status = std::process::Command::new("tar")
        .args(["-xf", "proto.tar"])
        .current_dir(&scratch.0)
        .status()
        .unwrap();
    assert!(status.success());
    let against = scratch.0.join("proto").display().to_string();
    let output = buf(&["breaking", "--against", &against]).await;
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(text(&output), "");

    // The base with a field renamed, checked against the working tree's module: a break.
    let customer = scratch.0.join("proto/customer/v1/customer.proto");
    let proto = std::fs::read_to_string(&customer).unwrap();
    assert!(proto.contains("  string email = "));
    std::fs::write(
        &customer,
        proto.replace("  string email = ", "  string email_address = "),
    )
    .unwrap();
    let output = buf(&[
        "breaking",
        &against,
        "--against",
        &root().join("proto").display().to_string(),
        "--error-format",
        "json",
    ])
    .await;
    assert!(!output.status.success());
    // Only what concerns the renamed field: on a branch that changes other things (adds a
    // field), their differences from the merge base show here too, reversed
    // (FIELD_NO_DELETE for an added field).
    let kinds: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|finding| {
            finding["message"]
                .as_str()
                .is_some_and(|message| message.contains("email"))
        })
        .map(|finding| finding["type"].as_str().unwrap().to_owned())
        .filter(|kind| kind.starts_with("FIELD_"))
        .collect();
    assert_eq!(kinds, ["FIELD_SAME_JSON_NAME", "FIELD_SAME_NAME"]);
}
