//! Packaging and deployment files, checked by machines rather than by eye: compose.yaml
//! against the Compose Specification schema, deploy/kubernetes/ against the Kubernetes
//! schemas (both vendored by PyPI packages `make tools` installs), each cross-checked with the
//! binary's own settings by scripts/check-deploy.py; the Dockerfile's dependency layer against
//! the workspace; the `healthcheck` subcommand the image's HEALTHCHECK runs.

use std::{
    collections::BTreeSet,
    path::Path,
    process::{Command, Output},
};

use clap::CommandFactory;
use customer_api::config::Cli;

use crate::helpers::{Scratch, TestApp, tool};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every environment variable the binary reads through its settings, from its own clap
/// definitions (all subcommands).
fn known_env() -> BTreeSet<String> {
    fn collect(command: &clap::Command, names: &mut BTreeSet<String>) {
        for arg in command.get_arguments() {
            if let Some(env) = arg.get_env() {
                names.insert(env.to_string_lossy().into_owned());
            }
        }
        for sub in command.get_subcommands() {
            collect(sub, names);
        }
    }
    let mut names = BTreeSet::new();
    collect(&Cli::command(), &mut names);
    names
}

fn check_deploy(root: &Path, scratch: &Scratch) -> Output {
    let known = scratch.0.join("known-env.json");
    std::fs::write(&known, serde_json::to_string(&known_env()).unwrap()).unwrap();
    Command::new(tool("target/tools/venv/bin/python"))
        .arg(Path::new(ROOT).join("scripts/check-deploy.py"))
        .arg("--root")
        .arg(root)
        .arg("--known-env")
        .arg(&known)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn compose_and_kubernetes_files_validate_against_their_schemas_and_the_binary() {
    let scratch = Scratch::new("deploy-check");
    let output = check_deploy(Path::new(ROOT), &scratch);
    assert!(
        output.status.success(),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert_eq!(
        text(&output.stdout),
        "check-deploy: compose.yaml and deploy/kubernetes/ are valid\n"
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn the_deploy_checks_catch_schema_errors_typos_and_broken_references() {
    let scratch = Scratch::new("deploy-broken");
    let root = scratch.0.join("repo");
    copy_tree(&Path::new(ROOT).join("deploy"), &root.join("deploy"));
    std::fs::copy(
        Path::new(ROOT).join("compose.yaml"),
        root.join("compose.yaml"),
    )
    .unwrap();
    let k8s = root.join("deploy/kubernetes");
    edit(
        &k8s.join("poddisruptionbudget.yaml"),
        "maxUnavailable: 1",
        "maxUnavaliable: 1",
    );
    edit(&k8s.join("configmap.yaml"), "DB_POOL_SIZE:", "DB_POOL_SIZ:");
    edit(
        &k8s.join("deployment.yaml"),
        "readOnlyRootFilesystem: true",
        "readOnlyRootFilesystem: false",
    );
    edit(
        &k8s.join("deployment.yaml"),
        "path: /readyz",
        "path: /ready",
    );
    edit(
        &k8s.join("deployment.yaml"),
        "terminationGracePeriodSeconds: 35",
        "terminationGracePeriodSeconds: 20",
    );
    edit(
        &k8s.join("kustomization.yaml"),
        "  - service.yaml\n",
        "  - service.yaml\n  - networkpolicy.yaml\n",
    );
    edit(
        &root.join("compose.yaml"),
        "condition: service_completed_successfully",
        "condition: service_finished",
    );

    let output = check_deploy(&root, &scratch);

    assert!(!output.status.success());
    let errors = text(&output.stderr);
    for expected in [
        "compose.yaml: does not validate against the Compose Specification schema",
        "poddisruptionbudget.yaml: PodDisruptionBudget/customer-api (Kubernetes 1.30.0): spec: \
         Additional properties are not allowed ('maxUnavaliable' was unexpected)",
        "environment variable DB_POOL_SIZ is not a setting of customer-api",
        "Deployment/customer-api container customer-api: readOnlyRootFilesystem is not true",
        "Deployment/customer-api container customer-api: readinessProbe should GET /readyz, not /ready",
        "Deployment/customer-api: terminationGracePeriodSeconds 20 does not exceed \
         SHUTDOWN_DELAY + SHUTDOWN_DRAIN_TIMEOUT (25s)",
        "deploy/kubernetes/kustomization.yaml: resource networkpolicy.yaml does not exist",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in:\n{errors}"
        );
    }
}

/// (package, kind, target) of the targets of the workspace whose root manifest is
/// `manifest` that a build of the binary compiles (libraries, binaries, build scripts), and
/// of the explicitly declared integration tests (a missing explicit path is a manifest error).
fn targets(manifest: &Path) -> BTreeSet<(String, String, String)> {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--offline",
            "--no-deps",
            "--format-version",
            "1",
        ])
        .arg("--manifest-path")
        .arg(manifest)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut targets = BTreeSet::new();
    for package in metadata["packages"].as_array().unwrap() {
        for target in package["targets"].as_array().unwrap() {
            for kind in target["kind"].as_array().unwrap() {
                let declared_test = package["name"] == "customer-api" && kind == "test";
                if !declared_test
                    && !["lib", "bin", "custom-build", "proc-macro"]
                        .contains(&kind.as_str().unwrap())
                {
                    continue;
                }
                targets.insert((
                    package["name"].as_str().unwrap().to_owned(),
                    kind.as_str().unwrap().to_owned(),
                    target["name"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    targets
}

/// The `COPY` sources of the Dockerfile's builder stage before `release-build.sh deps`.
fn dependency_layer_copies(dockerfile: &str) -> BTreeSet<String> {
    let mut copies = BTreeSet::new();
    for line in dockerfile.lines() {
        if line.starts_with("RUN scripts/release-build.sh deps") {
            return copies;
        }
        if let Some(rest) = line.strip_prefix("COPY ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            copies.extend(words[..words.len() - 1].iter().map(|w| (*w).to_owned()));
        }
    }
    panic!("the Dockerfile never runs release-build.sh deps")
}

#[test]
fn the_image_dependency_layer_copies_every_manifest_and_stubs_every_target() {
    let root = Path::new(ROOT);
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let mut manifests: BTreeSet<String> = ["Cargo.lock".to_owned()].into();
    for member in ["", "gateway/", "bench/"] {
        manifests.insert(format!("{member}Cargo.toml"));
    }
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(
        workspace.contains(r#"members = [".", "gateway", "bench"]"#),
        "a new workspace member needs its Cargo.toml in the Dockerfile's dependency layer"
    );
    let mut expected = manifests.clone();
    expected.insert("scripts/release-build.sh".into());
    assert_eq!(dependency_layer_copies(&dockerfile), expected);

    let scratch = Scratch::new("skeleton");
    let status = Command::new(root.join("scripts/release-build.sh"))
        .args(["skeleton"])
        .arg(&scratch.0)
        .current_dir(root)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        targets(&scratch.0.join("Cargo.toml")),
        targets(&root.join("Cargo.toml")),
        "the stubs give the skeleton the workspace's targets"
    );
}

#[test]
fn the_image_runs_the_stripped_binary_as_nonroot_with_a_healthcheck() {
    let root = Path::new(ROOT);
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let runtime = dockerfile.split("\nFROM ").last().expect("a runtime stage");
    assert!(runtime.starts_with("gcr.io/distroless/cc-debian12:nonroot\n"));
    assert!(runtime.contains("\nUSER nonroot:nonroot\n"));
    assert!(runtime.contains(r#"CMD ["/usr/local/bin/customer-api", "healthcheck"]"#));
    assert!(dockerfile.contains("RUN scripts/release-build.sh build /out\n"));
    let cargo = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let release = cargo
        .split("[profile.release]\n")
        .nth(1)
        .expect("a release profile");
    let release = release.split("\n[").next().unwrap();
    assert!(
        release.lines().any(|line| line == "strip = true"),
        "{release}"
    );
    let ignored = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    for needed in [
        "src",
        "proto",
        "migrations",
        "gateway",
        "bench",
        "build.rs",
        "Cargo.toml",
        "Cargo.lock",
        "scripts",
    ] {
        assert!(
            !ignored.lines().any(|line| line.trim_matches('/') == needed),
            ".dockerignore leaves {needed} out of the build"
        );
    }
}

/// Runs `customer-api healthcheck` (asynchronously: the server answers on this runtime).
async fn healthcheck(listen_addr: &str, extra: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_customer-api"))
        .arg("healthcheck")
        .args(extra)
        .env_clear()
        .env("LISTEN_ADDR", listen_addr)
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_healthcheck_subcommand_passes_while_ready_and_fails_when_nothing_answers() {
    let mut app = TestApp::spawn().await;
    let addr = app.addr.to_string();
    let wildcard = format!("0.0.0.0:{}", app.addr.port());

    let ready = healthcheck(&addr, &[]).await;
    let on_wildcard = healthcheck(&wildcard, &[]).await;
    let missing = healthcheck(&addr, &["--path", "/no-such-probe"]).await;
    app.stop().await;
    let stopped = healthcheck(&addr, &[]).await;

    assert!(ready.status.success(), "{}", text(&ready.stderr));
    assert!(
        on_wildcard.status.success(),
        "0.0.0.0 is probed on loopback: {}",
        text(&on_wildcard.stderr)
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("/no-such-probe answered 404"),
        "{}",
        text(&missing.stderr)
    );
    assert_eq!(stopped.status.code(), Some(1));
    assert!(
        text(&stopped.stderr).contains(&format!("cannot connect to {addr}")),
        "{}",
        text(&stopped.stderr)
    );
}
