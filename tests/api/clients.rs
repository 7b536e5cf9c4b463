//! Typed clients generated from the served `/openapi.json` by the generators their users
//! run — openapi-python-client (PyPI) and openapi-typescript + openapi-fetch (npm) — each
//! drive one scenario against a live server: create, get, list every page, patch one field
//! with `If-Match`, a stale etag, delete, and the error details of a bad request and a
//! missing customer (scripts in `tests/clients/`). The generators come from `make tools`
//! (pinned, under `target/tools/`); without them the test fails saying so, it never skips.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value as Json, json};

use crate::helpers::{Scratch, TestApp, tool};

/// What both scripts must report: the same scenario, the same answers.
fn expected() -> Json {
    json!({
        "created": ["Ada", "Alan", "Grace"],
        "got": "ada@example.com",
        "unsetIsAbsent": true,
        "listed": ["Ada", "Alan", "Grace"],
        "pages": 2,
        "patched": {"phone": "+14155550123", "email": "ada@example.com"},
        "staleEtag": [412, "ABORTED"],
        "deleted": true,
        "invalid": [400, "INVALID_ARGUMENT", ["customer.email"]],
        "missing": [404, "NOT_FOUND"],
    })
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs a program with a fixed environment (the tools' own directories first on `PATH`)
/// and returns its standard output; fails with its output unless it succeeds.
pub(crate) async fn run(program: &Path, args: &[&str], dir: &Path, path: &[&Path]) -> String {
    let mut search: Vec<String> = path.iter().map(|p| p.display().to_string()).collect();
    search.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(str::to_owned));
    let output: Output = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", search.join(":"))
        .env("HOME", dir)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{} {args:?} failed ({}):\n{stdout}\n{}",
        program.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The served document, written to `dir/openapi.json`.
async fn served_document(app: &TestApp, dir: &Path) -> PathBuf {
    let (status, _, document) =
        crate::rest::call(app, false, http::Method::GET, "/openapi.json", None, &[]).await;
    assert_eq!(status, 200);
    let path = dir.join("openapi.json");
    std::fs::write(&path, document.to_string()).unwrap();
    path
}

/// Makes `dir` a Node project of ES modules with the tools' node_modules linked in, whose
/// TypeScript `files` tsc compiles strictly (with `options` added to the compiler options).
pub(crate) fn node_project(dir: &Path, files: &[&str], options: Json) {
    std::os::unix::fs::symlink(
        repo("target/tools/node/node_modules"),
        dir.join("node_modules"),
    )
    .unwrap();
    std::fs::write(dir.join("package.json"), r#"{"type": "module"}"#).unwrap();
    let mut compiler = json!({
        "target": "es2022", "module": "nodenext", "moduleResolution": "nodenext",
        "lib": ["es2022", "dom"], "strict": true, "noEmitOnError": true,
    });
    if let (Some(compiler), Json::Object(options)) = (compiler.as_object_mut(), options) {
        compiler.extend(options);
    }
    std::fs::write(
        dir.join("tsconfig.json"),
        json!({"compilerOptions": compiler, "files": files}).to_string(),
    )
    .unwrap();
}

/// The last line of a script's output, as JSON.
pub(crate) fn report(stdout: &str) -> Json {
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_client_generated_by_openapi_python_client_runs_the_scenario() {
    let generator = tool("target/tools/venv/bin/openapi-python-client");
    let python = tool("target/tools/venv/bin/python");
    let venv = repo("target/tools/venv/bin");
    let app = TestApp::spawn().await;
    let scratch = Scratch::new("python");
    let document = served_document(&app, &scratch.0).await;
    std::fs::write(
        scratch.0.join("config.yaml"),
        "package_name_override: customer_api_client\nproject_name_override: customer-api-client\n",
    )
    .unwrap();
    run(
        &generator,
        &[
            "generate",
            "--path",
            &document.display().to_string(),
            "--config",
            "config.yaml",
            "--meta",
            "none",
            "--output-path",
            "customer_api_client",
        ],
        &scratch.0,
        &[&venv],
    )
    .await;

    let stdout = run(
        &python,
        &[
            &repo("tests/clients/python_client.py").display().to_string(),
            &format!("http://{}", app.addr),
            &app.token,
            &scratch.0.display().to_string(),
        ],
        &scratch.0,
        &[&venv],
    )
    .await;

    assert_eq!(report(&stdout), expected());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_typescript_client_from_openapi_typescript_and_openapi_fetch_runs_the_scenario() {
    let node_tools = repo("target/tools/node");
    let generator = tool("target/tools/node/node_modules/.bin/openapi-typescript");
    let tsc = tool("target/tools/node/node_modules/.bin/tsc");
    let node = tool("target/tools/node/node");
    tool("target/tools/node/node_modules/openapi-fetch/package.json");
    let bin = node_tools.join("node_modules/.bin");
    let app = TestApp::spawn().await;
    let scratch = Scratch::new("typescript");
    let document = served_document(&app, &scratch.0).await;
    let dir = &scratch.0;
    run(
        &generator,
        &[&document.display().to_string(), "-o", "schema.d.ts"],
        dir,
        &[&bin],
    )
    .await;
    std::fs::copy(repo("tests/clients/ts_client.ts"), dir.join("ts_client.ts")).unwrap();
    node_project(
        dir,
        &["ts_client.ts"],
        json!({"skipLibCheck": true, "outDir": "out"}),
    );
    // Type-checked first: a PATCH body of one field must compile against the generated types.
    run(&tsc, &["-p", "."], dir, &[&bin]).await;

    let stdout = run(
        &node,
        &[
            "out/ts_client.js",
            &format!("http://{}", app.addr),
            &app.token,
        ],
        dir,
        &[&bin],
    )
    .await;

    assert_eq!(report(&stdout), expected());
}
