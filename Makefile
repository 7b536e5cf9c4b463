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
# Integration tests are I/O bound (a database per test): run more of them than cores.
TEST_THREADS ?= 6

.PHONY: help run test lint fmt build migrate openapi

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

build: ## Build the service
	$(CARGO) build --bin customer-api

run: build ## Start the service on LISTEN_ADDR with a working database
	@pg="$$($(ENSURE_PG))" && eval "$$pg"; \
	$(BIN) migrate; \
	addr="$(LISTEN_ADDR)"; \
	echo; \
	echo "customer-api on $$addr (gRPC h2c + gRPC-web; reflection on). Try, in another shell:"; \
	echo "  grpcurl -plaintext $$addr list"; \
	echo "  grpcurl -plaintext -d '{\"customer\":{\"given_name\":\"Ada\",\"family_name\":\"Lovelace\",\"email\":\"ada@example.com\"}}' $$addr customer.v1.CustomerService/CreateCustomer"; \
	echo "  grpcurl -plaintext -d '{\"filter\":\"family_name:\\\"love\\\"\"}' $$addr customer.v1.CustomerService/ListCustomers"; \
	echo "  buf curl --protocol grpc --http2-prior-knowledge -d '{}' http://$$addr/customer.v1.CustomerService/ListCustomers"; \
	echo "  buf curl --protocol grpcweb -d '{}' http://$$addr/customer.v1.CustomerService/ListCustomers"; \
	echo "  curl -s http://$$addr/readyz"; \
	echo; \
	exec env LISTEN_ADDR="$$addr" $(BIN) serve

test: ## Run every test (unit + integration against real PostgreSQL)
	@pg="$$($(ENSURE_PG))" && eval "$$pg"; \
	$(CARGO) test --workspace --all-targets -- --test-threads $(TEST_THREADS)

lint: ## rustfmt check + clippy with -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

openapi: build ## Regenerate openapi/openapi.json from the proto (a test keeps it in sync)
	@mkdir -p openapi
	$(BIN) openapi > openapi/openapi.json

migrate: build ## Create the database if needed and apply migrations
	@pg="$$($(ENSURE_PG))" && eval "$$pg"; $(BIN) migrate
