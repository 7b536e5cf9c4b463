//! Integration tests: the real server on 127.0.0.1:0, a fresh PostgreSQL database per test,
//! real clients (tonic over HTTP/2, raw HTTP/1.1 for gRPC-web and probes).
//!
//! One test binary with modules keeps link time down.

// A failed unwrap is a failed test, with the location in the message.
#![allow(clippy::unwrap_used)]

mod abuse;
mod access_log;
mod api_keys;
mod auth;
mod business;
mod capture;
mod clients;
mod cluster;
mod companies;
mod connect;
mod contract;
mod cors;
mod create;
mod data_export;
mod database_tls;
mod delete;
mod deleted_history;
mod deploy;
mod docs;
mod duplicates;
mod erasure;
mod events;
mod export;
mod external_ids;
mod hardening;
mod helpers;
mod import;
mod lifecycle;
mod list;
mod merge;
mod metrics;
mod monitoring;
mod notes;
mod openapi;
mod operations_doc;
mod page_budget;
mod page_tokens;
mod pgbouncer;
mod privacy;
mod proto_module;
mod read;
mod readme;
mod relay;
mod replays;
mod resilience;
mod rest;
mod schema;
mod schemathesis;
mod sdk;
mod secrets;
mod tls;
mod traces;
mod transport;
mod update;
mod upgrade;
mod upsert;
