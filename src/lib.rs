//! # customer-api
//!
//! `customer.v1.CustomerService`: the system of record for customers. One binary serves the
//! Protobuf-defined API four ways on one port (gRPC, gRPC-web, and — through the `gateway`
//! crate — Connect and REST/JSON), over PostgreSQL.
//!
//! ## Layout
//!
//! Data flows one way: transport adapter → service → db, and back.
//!
//! - [`pb`]: code generated from `proto/` by `build.rs` (messages, server trait, client).
//! - [`domain`]: validated types and the filter/order_by languages. Pure, no I/O.
//! - [`service`]: the use cases, one method per RPC: a facade over [`core`], and the error
//!   classification every transport maps from.
//! - [`core`]: the resource-generic write path (validate → idempotent transaction → respond)
//!   and list path, field masks, versioned encodings, and the storage seam.
//! - [`resources`]: customers, companies and notes as declarations over the core, with the
//!   rules only they have.
//! - [`convert`]: domain ⇄ protobuf conversions shared by the adapter and the encodings.
//! - [`db`]: pool, embedded migrations, and every SQL statement and lock, including the
//!   relay's lease; the only module that knows the query builder and the driver.
//! - [`encoding`]: the versioned encodings of stored data (event payloads, idempotent
//!   replays): protobuf with a version byte, golden-tested; older JSON rows still read.
//! - [`grpc`]: the tonic adapter, the error → status mapping, codec and deadline layer.
//! - [`relay`]: the outbox relay publishing events to NATS JetStream as CloudEvents, under a
//!   lease held outside any transaction, in small committed chunks.
//! - [`app`]: the lifecycle: `App::build` (settings, pool, migrations, auth, service,
//!   routes) and `App::run` (serve a caller-bound listener until a shutdown future resolves,
//!   then drain), with the background tasks in one supervised, restartable set.
//! - [`server`]: the HTTP side: routing of every protocol, health, reflection, metrics, the
//!   accept loop with optional TLS.
//! - [`import_bodies`]: `POST /v1/customers:import`, an NDJSON or CSV upload streamed into
//!   ImportCustomers in front of the gateway.
//! - [`docs`]: the landing page `/` and the API console `/docs` (vendored Swagger UI).
//! - [`connections`]: the connection cap, idle and first-byte timeouts, request-body
//!   deadlines.
//! - [`tls`]: optional TLS and mutual TLS on that listener (rustls).
//! - [`auth`]: JWT and API-key authentication, the per-RPC scope table and its layer.
//! - [`registry`]: the business-registry client (cache, retries, circuit breaker) behind
//!   business-info enrichment.
//! - [`http_client`]: the minimal outbound HTTP(S) `GET` used for JWKS and the registry.
//! - [`config`]: flags and environment.
//! - [`healthcheck`]: `customer-api healthcheck`, the image's probe of its own `/readyz`.
//! - [`telemetry`]: logging set-up; every line is masked by [`redact`].
//! - [`metrics`]: Prometheus metrics of every RPC and of the pool, at `GET /metrics`.
//! - [`openapi`]: the published OpenAPI document: the gateway's, plus the domain's limits
//!   (one table), authentication, servers and the open routes.
//! - [`observe`]: request ids and the access log of every request, on every transport.
//! - [`redact`]: masking of email addresses and phone numbers in logs and error messages.

pub mod app;
pub mod auth;
pub mod config;
pub mod connections;
pub mod convert;
pub mod core;
pub mod db;
pub mod docs;
pub mod domain;
pub mod encoding;
pub mod export_cli;
pub mod export_formats;
pub mod grpc;
pub mod healthcheck;
pub mod http_client;
pub mod import_bodies;
pub mod import_cli;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod redact;
pub mod registry;
pub mod relay;
pub mod resources;
pub mod server;
pub mod service;
pub mod telemetry;
pub mod tls;

pub mod pb {
    //! Types and services generated from `proto/customer/v1`.
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("customer.v1");
}

pub mod longrunning {
    //! `google.longrunning` (the subset in `proto/google/longrunning`): long-running
    //! operations (AIP-151), the answer of ImportCustomers.
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("google.longrunning");
}

/// The encoded `FileDescriptorSet` of `proto/` (with imports), for reflection and the
/// REST gateway.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/customer_descriptor.bin"));
