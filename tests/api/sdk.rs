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
    // protoc-gen-es runs with the tools' node.
    let node = root.join("target/tools/node");
    let output = crate::clients::run(
        &buf,
        &["generate", "--output", &dir.display().to_string()],
        root,
        &[&node],
    )
    .await;
    assert_eq!(output, "");
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
