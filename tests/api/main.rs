//! Integration tests: the real server on 127.0.0.1:0, a fresh PostgreSQL database per test,
//! real clients (tonic over HTTP/2, raw HTTP/1.1 for gRPC-web and probes).
//!
//! One test binary with modules keeps link time down.

// A failed unwrap is a failed test, with the location in the message.
#![allow(clippy::unwrap_used)]

mod auth;
mod business;
mod companies;
mod create;
mod delete;
mod deploy;
mod events;
mod helpers;
mod lifecycle;
mod list;
mod metrics;
mod notes;
mod openapi;
mod page_tokens;
mod privacy;
mod read;
mod relay;
mod resilience;
mod rest;
mod schema;
mod tls;
mod transport;
mod update;
mod upgrade;
