//! The README's walkthrough runs verbatim: the `sh` block after `<!-- walkthrough -->` is
//! run by bash against a live server, with `buf` from `make tools`, and the `grpcurl list`
//! output the README shows is what reflection lists.

use std::path::Path;

use crate::helpers::{TestApp, tool};

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The body of the first fenced block after `marker`.
fn block_after(text: &str, marker: &str) -> String {
    let rest = &text[text.find(marker).unwrap_or_else(|| panic!("no {marker}"))..];
    let rest = &rest[rest.find("```sh\n").unwrap() + "```sh\n".len()..];
    rest[..rest.find("```").unwrap()].to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_walkthrough_runs_verbatim_against_a_live_server() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    tool("target/tools/node/node_modules/.bin/buf");
    let app = TestApp::spawn().await;
    let script = block_after(&readme(), "<!-- walkthrough -->");
    let path = format!(
        "{}:{}:/usr/local/bin:/usr/bin:/bin",
        root.join("target/tools/node/node_modules/.bin").display(),
        root.join("target/tools/node").display()
    );
    let output = tokio::process::Command::new("bash")
        .args(["-eu", "-o", "pipefail", "-c", &script])
        .env_clear()
        .env("PATH", path)
        .env("HOME", env!("CARGO_TARGET_TMPDIR"))
        .env("ADDR", app.addr.to_string())
        .env("TOKEN", &app.token)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");

    // What the walkthrough printed, in order: services, the customer created, patched over
    // REST, renamed over gRPC, listed twice, deleted, and the service's health.
    let services: Vec<&str> = stdout.lines().take_while(|l| !l.starts_with('{')).collect();
    for expected in [
        r#""givenName":"Grace""#,
        r#""phone":"+14155550123""#,
        r#""givenName": "Amazing Grace""#,
        r#""familyName": "Hopper""#,
        r#""familyName":"Hopper""#,
        r#""deleteTime":"#,
        r#""status": "SERVING""#,
    ] {
        assert!(stdout.contains(expected), "{expected} in {stdout}");
    }

    // The grpcurl block shows the same list reflection gives.
    let grpcurl = block_after(&readme(), "The same with `grpcurl`");
    let shown: Vec<&str> = grpcurl
        .lines()
        .skip_while(|l| *l != "$ grpcurl -plaintext localhost:8080 list")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(shown, services);
}
