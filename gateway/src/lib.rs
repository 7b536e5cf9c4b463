//! Generic REST/JSON <-> gRPC transcoding driven by `google.api.http` annotations.
//!
//! This crate is the Rust counterpart of grpc-gateway / Envoy's gRPC-JSON transcoder:
//! given a protobuf descriptor set and a set of tonic services, it derives the REST route
//! table from the annotations and serves each route by calling the gRPC method in-process.
//! It knows nothing of customers and never depends on the service crate.
//!
//! - [`template`]: path templates (`/v1/{name=customers/*}:undelete`).
//! - [`routes`]: the route table read from the descriptors.

pub mod routes;
pub mod template;
