# customer-api: the two commands are `make run` and `make test`.
#
# PostgreSQL comes from scripts/ensure-postgres.sh: DATABASE_URL if set, else a server on
# 127.0.0.1:5432 if one answers, else a private cluster under target/pg started from the
# installed PostgreSQL binaries (as the `postgres` user when run as root), else a clear
# message saying what to install.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
LISTEN_ADDR ?= 127.0.0.1:8080
BIN := target/debug/customer-api
ENSURE_PG := scripts/ensure-postgres.sh
# NATS with JetStream, found or started like PostgreSQL (NATS_URL, 127.0.0.1:4222, a private
# nats-server): required by the tests, optional for `make run` (without it events are only
# served by the change-stream RPCs).
ENSURE_NATS := scripts/ensure-nats.sh
# Development-only token secret for `make run` (override with JWT_HS256_SECRET).
DEV_JWT_SECRET := dev-only-secret-do-not-use-in-production-0123456789
# Integration tests are I/O bound (a database per test): run more of them than cores.
TEST_THREADS ?= 6
# The test runner (.config/nextest.toml): the machine's cargo-nextest, else one installed
# under target/tools by `make nextest`.
NEXTEST_VERSION := 0.9.143
LOCAL_NEXTEST := target/tools/cargo/bin/cargo-nextest
NEXTEST = $(if $(shell command -v cargo-nextest),cargo-nextest nextest,$(LOCAL_NEXTEST) nextest)
# The offline RustSec advisory-db snapshot `make lint` checks Cargo.lock against (see deny.toml),
# and where scripts/advisory-db.sh keeps the git checkout of it that cargo-deny opens.
ADVISORY_DB ?= ../shared/advisory-db
ADVISORY_DBS ?= target/advisory-dbs
# cargo-deny for the dependency policy, pinned and installed under target/tools by make lint.
CARGO_DENY_VERSION := 0.20.2
CARGO_DENY := target/tools/cargo/bin/cargo-deny
# make fuzz: cargo-fuzz, pinned, installed under target/tools; each target of fuzz/ runs
# FUZZ_SECONDS from the committed seeds (fuzz/corpus/<target>) plus what earlier runs found
# (target/fuzz/corpus/<target>). libFuzzer's instrumentation needs nightly flags:
# RUSTC_BOOTSTRAP=1 lets the stable toolchain take them. No sanitizer by default (the code is
# safe Rust, and ASan halves the executions); FUZZ_SANITIZER=address turns it on (the stable
# toolchain ships its runtime).
CARGO_FUZZ_VERSION := 0.13.2
CARGO_FUZZ := target/tools/cargo/bin/cargo-fuzz
FUZZ_SECONDS ?= 30
FUZZ_SANITIZER ?= none
FUZZ_TARGETS ?= filter order_by rest_transcoder json_writer page_token resume_token jwt_header
FUZZ_FLAGS = --fuzz-dir fuzz --target-dir target/fuzz -s $(FUZZ_SANITIZER) --codegen-units 16

# What the bench targets run, as command:Debian-package (scripts/ensure-tools.sh installs the
# package of any command that is missing).
BENCH_TOOLS := psql:postgresql-client pgbench:postgresql-client curl:curl
BENCH_REST_TOOLS := wrk:wrk h2load:nghttp2-client curl:curl bc:bc valgrind:valgrind callgrind_control:valgrind
BENCH_INSTRUCTIONS_TOOLS := valgrind:valgrind callgrind_control:valgrind callgrind_annotate:valgrind

# Debian packages the tests run: the service behind PgBouncer (tests/api/pgbouncer.rs),
# three replicas behind HAProxy (tests/cluster), and the API console in headless Chromium
# (tests/api/docs.rs, driven by playwright-core from NPM_TOOLS).
TEST_PACKAGES := pgbouncer haproxy chromium

.PHONY: help run stop nextest fuzz test chaos test-tools sdk bench bench-rest bench-instructions bench-write-shapes check-monitoring lint fmt build migrate openapi tools release cluster-test

# Test tools from PyPI, pinned, in a virtualenv of their own (never the system Python):
# check-jsonschema validates compose.yaml against the Compose Specification schema it vendors;
# kubernetes-validate validates deploy/kubernetes/ against the Kubernetes OpenAPI schemas it
# vendors (offline). The deploy tests (tests/api/deploy.rs) run them from this path.
# openapi-python-client generates the typed Python client tests/api/clients.rs drives;
# openapi-spec-validator checks the document against the OpenAPI 3.1 specification.
# grpcio-tools is the protoc (with the Python and gRPC-Python generators built in) behind
# `make sdk`'s Python SDK; grpcio + grpcio-status (and googleapis-common-protos, for the
# google.api/google.rpc modules the SDK imports) run it (tests/api/sdk.rs).
# schemathesis generates requests from the served /openapi.json and checks every response
# against it (tests/api/schemathesis.rs).
TOOLS_VENV := target/tools/venv
PY_TOOLS := check-jsonschema==0.39.0 kubernetes-validate==1.37.0 openapi-python-client==0.29.1 openapi-spec-validator==0.9.0 \
	grpcio==1.85.1 grpcio-tools==1.85.1 grpcio-status==1.85.1 googleapis-common-protos==1.76.0 \
	schemathesis==4.32.5
TOOLS_STAMP := $(TOOLS_VENV)/.installed-$(shell printf '%s' '$(PY_TOOLS)' | sha256sum | cut -c1-12)
# Test tools from npm, pinned, in a prefix of their own: openapi-typescript + openapi-fetch are
# the typed TypeScript client tests/api/clients.rs generates and drives (type-checked by tsc);
# playwright-core drives Debian's chromium through the API console (tests/api/docs.rs) and a
# cross-origin page (tests/api/cors.rs); buf (@bufbuild/buf) runs the README walkthrough's gRPC
# lines (tests/api/readme.rs) and `make sdk`. protoc-gen-es generates the TypeScript SDK
# (protobuf-es v2 messages and service descriptors) that @connectrpc/connect-node and
# connect-web drive over the Connect protocol (tests/api/connect.rs); esbuild bundles the
# browser client for Chromium.
TOOLS_NODE := target/tools/node
NPM_TOOLS := openapi-typescript@7.13.0 openapi-fetch@0.17.0 typescript@5.9.3 playwright-core@1.65.1 @bufbuild/buf@1.75.0 \
	@bufbuild/protobuf@2.17.0 @bufbuild/protoc-gen-es@2.17.0 @connectrpc/connect@2.2.0 @connectrpc/connect-node@2.2.0 \
	@connectrpc/connect-web@2.2.0 esbuild@0.28.2
NODE_STAMP := $(TOOLS_NODE)/.installed-$(shell printf '%s' '$(NPM_TOOLS) +node' | sha256sum | cut -c1-12)

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

build: ## Build the service
	$(CARGO) build --bin customer-api

run: build ## Start the service on LISTEN_ADDR with a working database and a dev token
	@pg="$$($(ENSURE_PG))" && eval "$$pg"; \
	if nats="$$($(ENSURE_NATS))"; then eval "$$nats"; \
	else echo "No NATS server: events are served by the RPCs but not published to JetStream."; fi; \
	export JWT_HS256_SECRET="$${JWT_HS256_SECRET:-$(DEV_JWT_SECRET)}"; \
	$(BIN) migrate; \
	token="$$($(BIN) token --scopes 'customers.read customers.write' --ttl 12h --sub developer)"; \
	addr="$(LISTEN_ADDR)"; \
	echo; \
	echo "customer-api on $$addr: gRPC (h2c), gRPC-web, Connect and REST. Authentication is on."; \
	if [ "$$JWT_HS256_SECRET" = "$(DEV_JWT_SECRET)" ]; then \
	  echo "Using the DEVELOPMENT token secret; set JWT_HS256_SECRET (or JWKS_FILE) for anything real."; fi; \
	echo "A token valid for 12 h (customers.read customers.write):"; \
	echo; echo "  export TOKEN=$$token"; echo; \
	echo "Try, in another shell (the README's walkthrough runs as it is with TOKEN set):"; \
	echo "  grpcurl -plaintext $$addr list"; \
	echo "  grpcurl -plaintext -H \"authorization: Bearer \$$TOKEN\" -d '{\"customer\":{\"given_name\":\"Ada\",\"family_name\":\"Lovelace\",\"email\":\"ada@example.com\"}}' $$addr customer.v1.CustomerService/CreateCustomer"; \
	echo "  grpcurl -plaintext -H \"authorization: Bearer \$$TOKEN\" -d '{\"filter\":\"family_name:\\\"love\\\"\"}' $$addr customer.v1.CustomerService/ListCustomers"; \
	echo "  buf curl --protocol grpc --http2-prior-knowledge -H \"authorization: Bearer \$$TOKEN\" -d '{}' http://$$addr/customer.v1.CustomerService/ListCustomers"; \
	echo "  curl -s -H \"authorization: Bearer \$$TOKEN\" http://$$addr/v1/customers"; \
	echo "  curl -s -H \"authorization: Bearer \$$TOKEN\" -H 'content-type: application/json' -d '{}' http://$$addr/customer.v1.CustomerService/ListCustomers"; \
	echo "  curl -s http://$$addr/openapi.json"; \
	echo "API console (Swagger UI; Authorize with the token): http://$$addr/docs"; \
	echo; \
	exec env LISTEN_ADDR="$$addr" $(BIN) serve

nextest: ## Install cargo-nextest (pinned, under target/tools) when the machine has none
	@command -v cargo-nextest >/dev/null || [ -x $(LOCAL_NEXTEST) ] || { \
		echo "installing cargo-nextest $(NEXTEST_VERSION) into target/tools (once per checkout)"; \
		$(CARGO) install --locked --quiet --root target/tools/cargo cargo-nextest --version $(NEXTEST_VERSION); }

stop: ## Stop the private PostgreSQL and NATS that make run/make test started (target/pg, target/nats)
	@scripts/stop-services.sh

test: test-tools tools nextest ## Run every test (unit + integration against real PostgreSQL and NATS JetStream)
	@pg="$$($(ENSURE_PG))" && eval "$$pg"; \
	nats="$$($(ENSURE_NATS))" || exit 1; eval "$$nats"; \
	status=0; $(NEXTEST) run --workspace --all-targets --test-threads $(TEST_THREADS) || status=$$?; \
	$(CARGO) test --workspace --doc --quiet || status=$$?; \
	scripts/drop-test-databases.sh; exit $$status

chaos: ## Fault injection (tests/chaos): its own PostgreSQL and NATS, faults, checks, a summary table
	$(CARGO) test --test chaos -- --nocapture

fuzz: ## Run each fuzz target (fuzz/) for FUZZ_SECONDS (default 30); fails on a crash, kept in target/fuzz/artifacts
	@[ -x $(CARGO_FUZZ) ] || { \
		echo "installing cargo-fuzz $(CARGO_FUZZ_VERSION) into target/tools (once per checkout)"; \
		$(CARGO) install --locked --quiet --root target/tools/cargo cargo-fuzz --version $(CARGO_FUZZ_VERSION); }
	@# `cargo fuzz run` builds each target (a separate `cargo fuzz build` is not reused by it).
	@failed=""; for t in $(FUZZ_TARGETS); do \
	  mkdir -p target/fuzz/corpus/$$t target/fuzz/artifacts/$$t; \
	  log=target/fuzz/$$t.log; \
	  if RUSTC_BOOTSTRAP=1 $(CARGO_FUZZ) run $(FUZZ_FLAGS) $$t target/fuzz/corpus/$$t fuzz/corpus/$$t -- \
	      -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
	      -artifact_prefix=target/fuzz/artifacts/$$t/ > $$log 2>&1; then \
	    runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $$log); \
	    rate=$$(sed -n 's/^stat::average_exec_per_sec: *//p' $$log); \
	    printf 'fuzz %-16s ok: %s runs in %s s, %s/s\n' $$t "$$runs" $(FUZZ_SECONDS) "$$rate"; \
	  else \
	    echo "fuzz $$t FAILED (log: $$log, input: target/fuzz/artifacts/$$t/):"; tail -n 40 $$log; \
	    failed="$$failed $$t"; \
	  fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: crashes in:$$failed"; exit 1; fi

test-tools: ## Install the Debian packages the tests need (TEST_PACKAGES) when missing
	@missing=""; for package in $(TEST_PACKAGES); do \
	  dpkg -s "$$package" >/dev/null 2>&1 || missing="$$missing $$package"; done; \
	if [ -n "$$missing" ]; then \
	  command -v apt-get >/dev/null || { echo "the tests need:$$missing (install them with your package manager)"; exit 1; }; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  echo "installing Debian packages for the tests:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$sudo apt-get install -y --no-install-recommends $$missing \
	    || { $$sudo apt-get update && $$sudo apt-get install -y --no-install-recommends $$missing; }; \
	fi

bench: ## Release build, seeded PostgreSQL, load + pgbench baselines; report to BENCHMARKS.md
	@scripts/ensure-tools.sh $(BENCH_TOOLS)
	@# Two invocations: built together, feature unification would give the server the client's
	@# tonic features (and rebuild it); apart, each keeps its own and both stay cached.
	$(CARGO) build --release -p customer-api
	$(CARGO) build --release -p customer-bench
	scripts/bench/run.sh

bench-rest: ## REST GET vs gRPC GET with wrk and h2load (issue 3's cross-check), alternating rounds
	@scripts/ensure-tools.sh $(BENCH_TOOLS) $(BENCH_REST_TOOLS)
	$(CARGO) build --release -p customer-api
	scripts/bench/rest-vs-grpc.sh

check-monitoring: ## promtool: the alert rules, their unit tests and the dashboard's queries (deploy/)
	@scripts/ensure-tools.sh promtool:prometheus python3:python3
	scripts/check-monitoring.sh

bench-instructions: ## Server instructions per Get/List/search/Create (callgrind); BENCH_BASE_BIN compares builds
	@scripts/ensure-tools.sh $(BENCH_TOOLS) $(BENCH_INSTRUCTIONS_TOOLS)
	$(CARGO) build --release -p customer-api
	$(CARGO) build --release -p customer-bench
	scripts/bench/instructions.sh

bench-write-shapes: ## PostgreSQL alone running one CreateCustomer's statements in eight shapes (pgbench)
	@scripts/ensure-tools.sh $(BENCH_TOOLS)
	$(CARGO) build --release -p customer-api
	$(CARGO) build --release -p customer-bench
	scripts/bench/write-shapes.sh

lint: ## rustfmt check, clippy with -D warnings, dependency policy (cargo-deny, offline)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@# cargo-deny, pinned, installed into this checkout (never the user's ~/.cargo) once.
	@[ -x $(CARGO_DENY) ] || { \
		echo "installing cargo-deny $(CARGO_DENY_VERSION) into target/tools (once per checkout, a few minutes)"; \
		$(CARGO) install --locked --quiet --root target/tools/cargo cargo-deny --version $(CARGO_DENY_VERSION); }
	@# cargo metadata --offline needs every package of Cargo.lock (all platforms) on disk.
	$(CARGO) fetch --locked --quiet
	@if [ -d "$(ADVISORY_DB)/crates" ]; then \
		CARGO_DENY=$(CARGO_DENY) scripts/advisory-db.sh "$(ADVISORY_DB)" "$(ADVISORY_DBS)" && \
		DENY_ADVISORY_DBS="$(abspath $(ADVISORY_DBS))" $(CARGO_DENY) --locked --offline check advisories bans; \
	else \
		echo "lint: advisories NOT checked: no RustSec advisory database at $(ADVISORY_DB) (set ADVISORY_DB=/path/to/advisory-db); checking bans only"; \
		$(CARGO_DENY) --locked --offline check bans; \
	fi

fmt: ## Format the code
	$(CARGO) fmt --all

openapi: build ## Regenerate openapi/openapi.json from the proto (a test keeps it in sync)
	@mkdir -p openapi
	$(BIN) openapi > openapi/openapi.json

migrate: build ## Create the database if needed and apply migrations
	@pg="$$($(ENSURE_PG))" && eval "$$pg"; $(BIN) migrate

sdk: tools ## Generate the TypeScript (protobuf-es + Connect) and Python (grpcio) SDKs into gen/ (buf.gen.yaml)
	PATH="$(abspath $(TOOLS_NODE)):$$PATH" $(TOOLS_NODE)/node_modules/.bin/buf generate
	@echo "gen/ts: import gen/ts/customer/v1/customer_service_pb.js with @connectrpc/connect"
	@echo "gen/python: put gen/python on PYTHONPATH (needs grpcio, googleapis-common-protos)"

tools: $(TOOLS_STAMP) $(NODE_STAMP) ## Install the test tools: PyPI into target/tools/venv, npm into target/tools/node

$(TOOLS_STAMP):
	@command -v python3 >/dev/null || { echo "python3 is needed for the manifest validators (Debian: apt-get install python3 python3-venv)"; exit 1; }
	rm -rf $(TOOLS_VENV)
	python3 -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --quiet --disable-pip-version-check $(PY_TOOLS)
	touch $@

$(NODE_STAMP):
	@command -v npm >/dev/null || { echo "node and npm are needed for the TypeScript client test (Debian: apt-get install nodejs npm)"; exit 1; }
	rm -rf $(TOOLS_NODE)
	mkdir -p $(TOOLS_NODE)
	printf '{"name":"customer-api-test-tools","private":true,"type":"module"}\n' > $(TOOLS_NODE)/package.json
	cd $(TOOLS_NODE) && npm install --no-audit --no-fund --silent --save-exact $(NPM_TOOLS)
	ln -sf "$$(command -v node)" $(TOOLS_NODE)/node
	touch $@

release: ## Release build as the Dockerfile does it; checks stripped, < 25 MB; binary in target/dist
	scripts/release-build.sh build target/dist

cluster-test: test-tools ## Only the cluster test (part of make test): 3 replicas behind HAProxy, one killed, one drained
	@pg="$$($(ENSURE_PG))" && eval "$$pg"; \
	nats="$$($(ENSURE_NATS))" || exit 1; eval "$$nats"; \
	status=0; $(CARGO) test --test cluster || status=$$?; \
	scripts/drop-test-databases.sh; exit $$status
