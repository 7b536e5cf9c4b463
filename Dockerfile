# syntax=docker/dockerfile:1
#
# customer-api container image: a release build in a Rust builder, then the stripped binary
# alone on a distroless base (glibc + libgcc + CA certificates, no shell, no package
# manager) running as the unprivileged `nonroot` user (uid 65532).
#
#   docker build -t customer-api .
#   docker compose up            # the local stack: PostgreSQL, NATS JetStream, migrations, service
#
# The build steps are scripts/release-build.sh, which `make release` runs the same way outside
# Docker (and checks: stripped, under 25 MB, only glibc/libgcc needed at run time).
# Builder and runtime are both Debian 12, so the binary's glibc symbols match.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /build
# 1. Dependencies, as their own layer: only the manifests, the lock file and the build
#    script; `release-build.sh deps` stubs the workspace's sources and compiles every
#    dependency. This layer is rebuilt only when a manifest or Cargo.lock changes.
COPY Cargo.toml Cargo.lock ./
COPY gateway/Cargo.toml gateway/
COPY bench/Cargo.toml bench/
COPY scripts/release-build.sh scripts/
RUN scripts/release-build.sh deps
# 2. The service itself. The image has no .git: `--build-arg GIT_COMMIT=$(git rev-parse
#    --short=12 HEAD)` names the commit in `--version` and build_info (else `unknown`);
#    build arguments reach RUN steps as environment variables.
ARG GIT_COMMIT=
COPY . .
RUN scripts/release-build.sh build /out

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/customer-api /usr/local/bin/customer-api
USER nonroot:nonroot
# Listen on every interface of the container; one port serves gRPC (h2c), gRPC-web, REST,
# /healthz, /readyz and /metrics.
ENV LISTEN_ADDR=0.0.0.0:8080 \
    LOG_FORMAT=json
EXPOSE 8080
# Distroless has no shell or curl: the binary probes its own /readyz over plain HTTP on
# LISTEN_ADDR (a listener with TLS_CERT needs an orchestrator probe instead, see
# docs/deployment.md).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/customer-api", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/customer-api"]
CMD ["serve"]
