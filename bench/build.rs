//! Generates the `customer.v1` client stubs from the repository's `proto/` (the same contract
//! the server is built from), without a system `protoc`: protox parses, tonic-prost-build
//! generates. Only the client is generated; the load generator never serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let mut compiler = protox::Compiler::new([&proto])?;
    compiler.include_imports(true);
    compiler.open_files([
        "customer/v1/customer.proto",
        "customer/v1/customer_service.proto",
    ])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        .extern_path(".google.rpc", "::tonic_types::pb")
        .extern_path(".google.longrunning", "crate::longrunning")
        .compile_fds(compiler.file_descriptor_set())?;
    // google.longrunning on its own (`crate::longrunning`), for ImportCustomers; last, so its
    // file replaces the services-only one the pass above wrote.
    let mut longrunning = protox::Compiler::new([&proto])?;
    longrunning.include_imports(true);
    longrunning.open_files(["google/longrunning/operations.proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        .extern_path(".google.rpc", "::tonic_types::pb")
        .compile_fds(longrunning.file_descriptor_set())?;
    Ok(())
}
