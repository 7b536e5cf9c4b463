#!/usr/bin/env bash
# check-monitoring.sh: the body of `make check-monitoring` (which installs promtool, Debian's
# `prometheus` package, first). promtool checks the alerting rules, runs their unit tests
# (deploy/prometheus/alerts.test.yaml), and parses every query of the Grafana dashboard (as
# recording rules, Grafana's variables replaced by plain values). tests/api/monitoring.rs
# checks the structure and that every metric named exists; this adds PromQL's own parser.
set -euo pipefail
cd "$(dirname "$0")/.."
promtool check rules deploy/prometheus/alerts.yaml
(cd deploy/prometheus && promtool test rules alerts.test.yaml)
queries=$(mktemp --suffix=.yaml)
trap 'rm -f "$queries"' EXIT
python3 - deploy/grafana/customer-api.json >"$queries" <<'PY'
import json, sys
dashboard = json.load(open(sys.argv[1]))
print("groups:\n  - name: dashboard\n    rules:")
for n, panel in enumerate(p for p in dashboard["panels"] if p.get("targets")):
    for target in panel["targets"]:
        expr = (target["expr"].replace("$__rate_interval", "5m")
                .replace("$job", "customer-api").replace("$instance", ".*"))
        print(f"      - record: dashboard:panel{n}:{target['refId'].lower()}")
        print(f"        expr: {json.dumps(expr)}")
PY
promtool check rules "$queries"
