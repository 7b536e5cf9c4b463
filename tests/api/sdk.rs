//! The SDKs `buf generate` makes from the proto module (buf.gen.yaml, local plugins from
//! `make tools`): the Python one (messages and grpcio stubs) runs the scenario of
//! `tests/clients/grpcio_client.py` over gRPC against a live server. The TypeScript one
//! (protobuf-es + Connect) runs in tests/api/connect.rs.

use std::path::Path;

use serde_json::json;

use crate::helpers::{Scratch, TestApp, tool};

/// Runs `buf generate` with the repository's buf.gen.yaml, writing under `dir` (`dir/gen/ts`,
/// `dir/gen/python`) instead of the checkout.
pub(crate) async fn generate(dir: &Path) {
    let buf = tool("target/tools/node/node_modules/.bin/buf");
    tool("target/tools/node/node_modules/.bin/protoc-gen-es");
    tool("target/tools/venv/bin/python");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // In the checkout (buf.gen.yaml names its plugins by relative paths), with buf's cache in
    // the scratch directory and the tools' node first on PATH for protoc-gen-es.
    let output = tokio::process::Command::new(buf)
        .args(["generate", "--output", &dir.display().to_string()])
        .current_dir(root)
        .env_clear()
        .env(
            "PATH",
            format!(
                "{}:/usr/local/bin:/usr/bin:/bin",
                root.join("target/tools/node").display()
            ),
        )
        .env("HOME", dir)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "buf generate: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for generated in [
        "gen/ts/customer/v1/customer_service_pb.js",
        "gen/ts/customer/v1/customer_service_pb.d.ts",
        "gen/python/customer/v1/customer_service_pb2.py",
        "gen/python/customer/v1/customer_service_pb2.pyi",
        "gen/python/customer/v1/customer_service_pb2_grpc.py",
    ] {
        assert!(dir.join(generated).exists(), "{generated}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_generated_python_sdk_runs_the_scenario_over_grpcio() {
    let python = tool("target/tools/venv/bin/python");
    let app = TestApp::spawn().await;
    let scratch = Scratch::new("python-sdk");
    generate(&scratch.0).await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));

    let stdout = crate::clients::run(
        &python,
        &[
            &root
                .join("tests/clients/grpcio_client.py")
                .display()
                .to_string(),
            &app.addr.to_string(),
            &app.token,
            &scratch.0.join("gen/python").display().to_string(),
        ],
        &scratch.0,
        &[],
    )
    .await;

    assert_eq!(
        crate::clients::report(&stdout),
        json!({
            "created": ["Ada", "Alan", "Grace"],
            "got": "ada",
            "unsetIsAbsent": true,
            "listed": ["Ada", "Alan", "Grace"],
            "pages": 2,
            "updated": {"phone": "+14155550123", "email": "ada"},
            "staleEtag": ["ABORTED", [], true],
            "deleted": true,
            "invalid": ["INVALID_ARGUMENT", ["customer.email"], true],
            "missing": ["NOT_FOUND", [], true],
            "unauthenticated": ["UNAUTHENTICATED", [], true],
            "watched": [[1, ""], [2, "+14155550123"], [3, "+14155550123"]],
            "watchInvalid": ["INVALID_ARGUMENT", ["parent"], true],
        })
    );
}
