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
# The offline RustSec advisory-db snapshot `make lint` checks Cargo.lock against (see deny.toml),
# and where scripts/advisory-db.sh keeps the git checkout of it that cargo-deny opens.
ADVISORY_DB ?= ../shared/advisory-db
ADVISORY_DBS ?= target/advisory-dbs

# What the bench targets run, as command:Debian-package (scripts/ensure-tools.sh installs the
# package of any command that is missing).
BENCH_TOOLS := psql:postgresql-client pgbench:postgresql-client curl:curl
BENCH_REST_TOOLS := wrk:wrk h2load:nghttp2-client curl:curl bc:bc valgrind:valgrind callgrind_control:valgrind
BENCH_INSTRUCTIONS_TOOLS := valgrind:valgrind callgrind_control:valgrind callgrind_annotate:valgrind

.PHONY: help run test bench bench-rest bench-instructions lint fmt build migrate openapi

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
	echo "customer-api on $$addr: gRPC (h2c), gRPC-web and REST. Authentication is on."; \
	if [ "$$JWT_HS256_SECRET" = "$(DEV_JWT_SECRET)" ]; then \
	  echo "Using the DEVELOPMENT token secret; set JWT_HS256_SECRET (or JWKS_FILE) for anything real."; fi; \
	echo "A token valid for 12 h (customers.read customers.write):"; \
	echo; echo "  export TOKEN=$$token"; echo; \
	echo "Try, in another shell:"; \
	echo "  grpcurl -plaintext $$addr list"; \
	echo "  grpcurl -plaintext -H \"authorization: Bearer \$$TOKEN\" -d '{\"customer\":{\"given_name\":\"Ada\",\"family_name\":\"Lovelace\",\"email\":\"ada@example.com\"}}' $$addr customer.v1.CustomerService/CreateCustomer"; \
	echo "  grpcurl -plaintext -H \"authorization: Bearer \$$TOKEN\" -d '{\"filter\":\"family_name:\\\"love\\\"\"}' $$addr customer.v1.CustomerService/ListCustomers"; \
	echo "  buf curl --protocol grpc --http2-prior-knowledge -H \"authorization: Bearer \$$TOKEN\" -d '{}' http://$$addr/customer.v1.CustomerService/ListCustomers"; \
	echo "  curl -s -H \"authorization: Bearer \$$TOKEN\" http://$$addr/v1/customers"; \
	echo "  curl -s http://$$addr/openapi.json"; \
	echo; \
	exec env LISTEN_ADDR="$$addr" $(BIN) serve

test: ## Run every test (unit + integration against real PostgreSQL and NATS JetStream)
	@pg="$$($(ENSURE_PG))" && eval "$$pg"; \
	nats="$$($(ENSURE_NATS))" || exit 1; eval "$$nats"; \
	status=0; $(CARGO) test --workspace --all-targets -- --test-threads $(TEST_THREADS) || status=$$?; \
	scripts/drop-test-databases.sh; exit $$status

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

bench-instructions: ## Server instructions per Get/List/search/Create (callgrind); BENCH_BASE_BIN compares builds
	@scripts/ensure-tools.sh $(BENCH_TOOLS) $(BENCH_INSTRUCTIONS_TOOLS)
	$(CARGO) build --release -p customer-api
	$(CARGO) build --release -p customer-bench
	scripts/bench/instructions.sh

lint: ## rustfmt check, clippy with -D warnings, dependency policy (cargo-deny, offline)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@command -v cargo-deny >/dev/null || { \
		echo "cargo-deny is not installed: installing it with cargo install --locked cargo-deny (several minutes)"; \
		$(CARGO) install --locked cargo-deny; }
	@# cargo metadata --offline needs every package of Cargo.lock (all platforms) on disk.
	$(CARGO) fetch --locked --quiet
	@scripts/advisory-db.sh "$(ADVISORY_DB)" "$(ADVISORY_DBS)"
	DENY_ADVISORY_DBS="$(abspath $(ADVISORY_DBS))" $(CARGO) deny --locked --offline check advisories bans

fmt: ## Format the code
	$(CARGO) fmt --all

openapi: build ## Regenerate openapi/openapi.json from the proto (a test keeps it in sync)
	@mkdir -p openapi
	$(BIN) openapi > openapi/openapi.json

migrate: build ## Create the database if needed and apply migrations
	@pg="$$($(ENSURE_PG))" && eval "$$pg"; $(BIN) migrate
