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
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
