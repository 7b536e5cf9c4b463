#!/usr/bin/env python3
"""check-deploy.py: validate compose.yaml and the kustomize base under deploy/kubernetes/.

Run with the tools virtualenv `make tools` installs (target/tools/venv/bin/python); the deploy
tests (tests/api/deploy.rs) run it, once on the repository and once on broken copies.

    check-deploy.py [--root DIR] [--known-env FILE]

Schemas, from PyPI packages that vendor them (no network needed):
- compose.yaml: the Compose Specification schema vendored by check-jsonschema
  (`--builtin-schema vendor.compose-spec`).
- Kubernetes: every document of every resource kustomization.yaml lists (and of
  secret.example.yaml) against the strict OpenAPI schemas of kubernetes-validate, for the
  oldest and the newest Kubernetes version in KUBERNETES_VERSIONS.

What kustomize would refuse, checked without kustomize: unknown kustomization fields, a listed
resource that does not exist, a resource file that is not listed (other than the examples),
two resources with the same kind and name, an image without an `images:` entry.

And what a schema cannot see (the cross-references a typo breaks silently):
- every environment variable set for the binary is one of its settings (`--known-env`: a JSON
  list of names, from the binary's own clap definitions), `NAME_FILE` for a known `NAME`;
- each *_FILE path lies in a mounted secret (Kubernetes) or a declared secret (Compose);
- selectors of the Service, PodDisruptionBudget and topology spread match the pod labels, the
  HPA targets the Deployment, probes use the named container port and the real routes;
- every container runs as non-root, read-only root filesystem, all capabilities dropped, no
  privilege escalation;
- the grace period (terminationGracePeriodSeconds, stop_grace_period) exceeds SHUTDOWN_DELAY
  plus SHUTDOWN_DRAIN_TIMEOUT.

Exit status 0 when everything holds; otherwise 1, one line per problem on stderr.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
KUSTOMIZATION_FIELDS = {
    "apiVersion", "kind", "resources", "components", "namespace", "namePrefix", "nameSuffix",
    "labels", "commonLabels", "commonAnnotations", "images", "patches", "replicas",
    "configMapGenerator", "secretGenerator", "generatorOptions",
}
# Resource files in deploy/kubernetes/ that are deliberately not in the base.
EXAMPLES = {"secret.example.yaml"}
# Routes the service really serves (src/server.rs).
LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
# Settings the binary takes from the environment outside clap.
EXTRA_ENV = {"RUST_LOG"}
# Background tasks get this long to stop after cancellation (src/app.rs TASK_STOP_GRACE).
TASK_STOP_GRACE_SECONDS = 5

problems: list[str] = []


def problem(where: str, message: str) -> None:
    problems.append(f"{where}: {message}")


def seconds(text: str) -> float:
    """A duration as the binary parses it (500ms, 2s, 5m, 24h, 30d; a bare number is seconds)."""
    match = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h|d)?\s*", str(text))
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    number, unit = int(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def compose_duration(text: str) -> float:
    """A Compose duration (`1m30s`, `15s`, `500ms`)."""
    total, rest = 0.0, str(text)
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", rest):
        total += float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def load_all(path: Path) -> list[dict]:
    with path.open() as file:
        return [doc for doc in yaml.safe_load_all(file) if doc is not None]


def check_env_names(where: str, names, known: set[str] | None) -> None:
    if known is None:
        return
    for name in names:
        base = name[: -len("_FILE")] if name.endswith("_FILE") else None
        if name in known or name in EXTRA_ENV or (base is not None and base in known):
            continue
        problem(where, f"environment variable {name} is not a setting of customer-api")


# ------------------------------------------------------------------------------------------
# Kubernetes


def pod_specs(resource: dict):
    """(where, pod spec, pod template labels) of a workload."""
    kind, name = resource.get("kind"), resource.get("metadata", {}).get("name")
    if kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        template = resource.get("spec", {}).get("template", {})
        yield f"{kind}/{name}", template.get("spec", {}), template.get("metadata", {}).get("labels", {})


def selects(selector: dict, labels: dict) -> bool:
    match = selector.get("matchLabels", selector)
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def check_container_security(where: str, pod: dict, container: dict) -> None:
    pod_context = pod.get("securityContext", {})
    context = container.get("securityContext", {})
    if not (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")):
        problem(where, "runAsNonRoot is not set")
    if context.get("readOnlyRootFilesystem") is not True:
        problem(where, "readOnlyRootFilesystem is not true")
    if context.get("allowPrivilegeEscalation") is not False:
        problem(where, "allowPrivilegeEscalation is not false")
    if "ALL" not in (context.get("capabilities", {}).get("drop") or []):
        problem(where, "capabilities do not drop ALL")
    resources = container.get("resources", {})
    if not resources.get("requests") or not resources.get("limits", {}).get("memory"):
        problem(where, "resources need requests and a memory limit")


def container_env(container: dict, config_maps: dict[str, dict]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source.get("configMapRef", {}).get("name")
        if name is not None:
            if name not in config_maps:
                raise KeyError(name)
            env.update({k: str(v) for k, v in config_maps[name].get("data", {}).items()})
    for variable in container.get("env", []):
        env[variable["name"]] = str(variable.get("value", ""))
    return env


def check_workload(where: str, pod: dict, labels: dict, config_maps, known, is_server: bool):
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for container in pod.get("containers", []):
        cwhere = f"{where} container {container.get('name')}"
        check_container_security(cwhere, pod, container)
        try:
            env = container_env(container, config_maps)
        except KeyError as missing:
            problem(cwhere, f"envFrom names ConfigMap {missing} that the base does not contain")
            continue
        check_env_names(cwhere, env, known)
        secret_mounts = [
            m["mountPath"].rstrip("/") + "/"
            for m in container.get("volumeMounts", [])
            if "secret" in volumes.get(m["name"], {}) or "projected" in volumes.get(m["name"], {})
        ]
        for name, value in env.items():
            if name.endswith("_FILE") and not any(value.startswith(p) for p in secret_mounts):
                problem(cwhere, f"{name}={value} is not in a mounted secret volume")
        for mount in container.get("volumeMounts", []):
            if mount["name"] not in volumes:
                problem(cwhere, f"volumeMount {mount['name']} has no volume")
        if not is_server:
            continue
        ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
        for probe_name, path in (
            ("startupProbe", LIVENESS_PATH),
            ("livenessProbe", LIVENESS_PATH),
            ("readinessProbe", READINESS_PATH),
        ):
            probe = container.get(probe_name)
            if probe is None:
                problem(cwhere, f"no {probe_name}")
                continue
            get = probe.get("httpGet", {})
            if get.get("path") != path:
                problem(cwhere, f"{probe_name} should GET {path}, not {get.get('path')}")
            if get.get("port") not in ports and get.get("port") not in ports.values():
                problem(cwhere, f"{probe_name} port {get.get('port')} is not a container port")
        listen = env.get("LISTEN_ADDR", "127.0.0.1:8080")
        if not listen.startswith("0.0.0.0:") and not listen.startswith("[::]:"):
            problem(cwhere, f"LISTEN_ADDR={listen} is not reachable from outside the pod")
        elif int(listen.rsplit(":", 1)[1]) not in ports.values():
            problem(cwhere, f"LISTEN_ADDR={listen} is not a declared container port")
        grace = pod.get("terminationGracePeriodSeconds", 30)
        try:
            needed = seconds(env.get("SHUTDOWN_DELAY", "0s")) + max(
                seconds(env.get("SHUTDOWN_DRAIN_TIMEOUT", "10s")), TASK_STOP_GRACE_SECONDS
            )
        except ValueError as error:
            problem(cwhere, str(error))
            continue
        if grace <= needed:
            problem(
                where,
                f"terminationGracePeriodSeconds {grace} does not exceed SHUTDOWN_DELAY + "
                f"SHUTDOWN_DRAIN_TIMEOUT ({needed:g}s)",
            )


def check_kubernetes(root: Path, known: set[str] | None) -> None:
    base = root / "deploy" / "kubernetes"
    kustomization_path = base / "kustomization.yaml"
    if not kustomization_path.is_file():
        problem(str(kustomization_path), "missing")
        return
    kustomization = yaml.safe_load(kustomization_path.read_text())
    where = "deploy/kubernetes/kustomization.yaml"
    if kustomization.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or kustomization.get(
        "kind"
    ) != "Kustomization":
        problem(where, "not a kustomize.config.k8s.io/v1beta1 Kustomization")
    for field in sorted(set(kustomization) - KUSTOMIZATION_FIELDS):
        problem(where, f"unknown field {field}")
    listed = kustomization.get("resources", [])
    resources: list[tuple[str, dict]] = []
    for entry in listed:
        path = base / entry
        if not path.is_file():
            problem(where, f"resource {entry} does not exist")
            continue
        resources.extend((entry, doc) for doc in load_all(path))
    on_disk = {p.name for p in base.glob("*.yaml")} | {p.name for p in base.glob("*.yml")}
    for name in sorted(on_disk - set(listed) - EXAMPLES - {"kustomization.yaml"}):
        problem(where, f"{name} is in deploy/kubernetes/ but not listed in resources")
    examples = [(name, doc) for name in sorted(EXAMPLES & on_disk) for doc in load_all(base / name)]

    seen = set()
    for entry, doc in resources + examples:
        key = (doc.get("kind"), doc.get("metadata", {}).get("name"))
        if (entry, doc) in resources and key in seen:
            problem(entry, f"{key[0]}/{key[1]} is defined twice")
        seen.add(key)
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(p) for p in error.path)
                problem(entry, f"{key[0]}/{key[1]} (Kubernetes {version}): {path}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError:
                problem(entry, f"{key[0]}/{key[1]}: no schema for Kubernetes {version}")

    by_kind: dict[str, dict[str, dict]] = {}
    for _, doc in resources:
        by_kind.setdefault(doc.get("kind"), {})[doc.get("metadata", {}).get("name")] = doc
    config_maps = by_kind.get("ConfigMap", {})
    image_names = {image.get("name") for image in kustomization.get("images", [])}
    deployments = by_kind.get("Deployment", {})
    if len(deployments) != 1:
        problem(where, f"expected one Deployment, found {len(deployments)}")
        return
    (deployment_name, deployment), = deployments.items()
    pod_labels = deployment["spec"]["template"]["metadata"].get("labels", {})
    if not selects(deployment["spec"]["selector"], pod_labels):
        problem(f"Deployment/{deployment_name}", "selector does not match its pod labels")
    if "replicas" in deployment["spec"] and by_kind.get("HorizontalPodAutoscaler"):
        problem(f"Deployment/{deployment_name}", "sets replicas although an HPA owns them")
    service_accounts = by_kind.get("ServiceAccount", {})
    for _, doc in resources:
        for pwhere, pod, labels in pod_specs(doc):
            is_server = doc.get("kind") == "Deployment"
            check_workload(pwhere, pod, labels, config_maps, known, is_server)
            for container in pod.get("containers", []):
                if container.get("image") not in image_names:
                    problem(pwhere, f"image {container.get('image')} has no `images:` entry")
            account = pod.get("serviceAccountName")
            if account is not None and account not in service_accounts:
                problem(pwhere, f"serviceAccountName {account} is not in the base")
            for volume in pod.get("volumes", []):
                secret = volume.get("secret", {}).get("secretName")
                example_secrets = {d["metadata"]["name"] for _, d in examples if d.get("kind") == "Secret"}
                if secret is not None and secret not in example_secrets:
                    problem(pwhere, f"mounts Secret {secret}, which secret.example.yaml does not describe")
            for spread in pod.get("topologySpreadConstraints", []):
                if not selects(spread.get("labelSelector", {}), labels):
                    problem(pwhere, "a topologySpreadConstraint selects other pods")

    services = by_kind.get("Service", {})
    if not services:
        problem(where, "no Service")
    container_ports = {
        p.get("name") for c in deployment["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])
    }
    for name, service in services.items():
        if not selects(service["spec"].get("selector", {}), pod_labels):
            problem(f"Service/{name}", "selector does not match the Deployment's pods")
        protocols = {port.get("appProtocol") for port in service["spec"].get("ports", [])}
        for wanted in ("kubernetes.io/h2c", "http"):
            if wanted not in protocols:
                problem(f"Service/{name}", f"no port with appProtocol {wanted}")
        for port in service["spec"].get("ports", []):
            if port.get("targetPort") not in container_ports:
                problem(f"Service/{name}", f"targetPort {port.get('targetPort')} is not a container port")
    for name, budget in by_kind.get("PodDisruptionBudget", {}).items():
        if not selects(budget["spec"].get("selector", {}), pod_labels):
            problem(f"PodDisruptionBudget/{name}", "selector does not match the Deployment's pods")
    if not by_kind.get("PodDisruptionBudget"):
        problem(where, "no PodDisruptionBudget")
    for name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
        target = hpa["spec"]["scaleTargetRef"]
        if (target.get("kind"), target.get("name")) != ("Deployment", deployment_name):
            problem(f"HorizontalPodAutoscaler/{name}", "does not target the Deployment")
        if hpa["spec"].get("minReplicas", 1) < 2:
            problem(f"HorizontalPodAutoscaler/{name}", "minReplicas below 2 leaves no replica during a drain")
    if not by_kind.get("HorizontalPodAutoscaler"):
        problem(where, "no HorizontalPodAutoscaler")
    jobs = by_kind.get("Job", {})
    if not any(
        c.get("args") == ["migrate"] for j in jobs.values() for c in j["spec"]["template"]["spec"]["containers"]
    ):
        problem(where, "no Job running `customer-api migrate`")


# ------------------------------------------------------------------------------------------
# Compose


def check_compose(root: Path, known: set[str] | None) -> None:
    path = root / "compose.yaml"
    where = "compose.yaml"
    if not path.is_file():
        problem(where, "missing")
        return
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        problem(where, "does not validate against the Compose Specification schema:\n" + result.stdout + result.stderr)
        return
    compose = yaml.safe_load(path.read_text())
    services = compose.get("services", {})
    secrets = compose.get("secrets", {})
    for name, secret in secrets.items():
        source = secret.get("file")
        if source is not None and not (root / source).is_file():
            problem(where, f"secret {name}: file {source} does not exist")
    ours = {n: s for n, s in services.items() if s.get("image", "").startswith("customer-api")}
    commands = {tuple(s.get("command", [])) for s in ours.values()}
    for wanted in (("serve",), ("migrate",)):
        if wanted not in commands:
            problem(where, f"no customer-api service runs {' '.join(wanted)}")
    for name, service in ours.items():
        swhere = f"compose.yaml service {name}"
        env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
        check_env_names(swhere, env, known)
        mounted = {f"/run/secrets/{s if isinstance(s, str) else s.get('target', s.get('source'))}" for s in service.get("secrets", [])}
        for secret in service.get("secrets", []):
            source = secret if isinstance(secret, str) else secret.get("source")
            if source not in secrets:
                problem(swhere, f"secret {source} is not declared")
        for variable, value in env.items():
            if variable.endswith("_FILE") and value not in mounted:
                problem(swhere, f"{variable}={value} is not one of its secrets")
            if variable.endswith("_FILE") is False and variable in {"DATABASE_URL", "JWT_HS256_SECRET", "PAGE_TOKEN_KEY", "BUSINESS_REGISTRY_TOKEN"}:
                problem(swhere, f"{variable} is a secret: pass it as {variable}_FILE")
        if service.get("read_only") is not True:
            problem(swhere, "read_only is not true")
        if "ALL" not in (service.get("cap_drop") or []):
            problem(swhere, "cap_drop does not include ALL")
        if service.get("command") == ["serve"]:
            check = service.get("healthcheck", {}).get("test", [])
            if "healthcheck" not in check:
                problem(swhere, "healthcheck does not run `customer-api healthcheck`")
            depends = service.get("depends_on", {})
            migrations = [n for n, s in ours.items() if s.get("command") == ["migrate"]]
            for migration in migrations:
                condition = depends.get(migration, {}).get("condition") if isinstance(depends, dict) else None
                if condition != "service_completed_successfully":
                    problem(swhere, f"does not wait for {migration} to complete successfully")
            grace = compose_duration(service.get("stop_grace_period", "10s"))
            try:
                needed = seconds(env.get("SHUTDOWN_DELAY", "0s")) + seconds(env.get("SHUTDOWN_DRAIN_TIMEOUT", "10s"))
            except ValueError as error:
                problem(swhere, str(error))
                continue
            if grace <= needed:
                problem(swhere, f"stop_grace_period {grace:g}s does not exceed the drain ({needed:g}s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--known-env", type=Path, help="JSON list of the binary's environment variables")
    args = parser.parse_args()
    known = set(json.loads(args.known_env.read_text())) if args.known_env else None
    check_compose(args.root, known)
    check_kubernetes(args.root, known)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(f"check-deploy: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("check-deploy: compose.yaml and deploy/kubernetes/ are valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
