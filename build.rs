//! Compiles `proto/` into Rust (prost messages + tonic services) without a system `protoc`:
//! `protox` parses the .proto files in-process, then `tonic-prost-build` generates code from
//! the resulting descriptor set. The encoded descriptor set is also written to `OUT_DIR` for
//! server reflection and the REST gateway, which derive everything from it.

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/customer/v1/customer.proto",
    "proto/customer/v1/customer_service.proto",
    "proto/customer/v1/events.proto",
    "proto/customer/v1/company.proto",
    "proto/customer/v1/note.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(PROTOS)?;
    // The encoded form keeps custom options (google.api.http, field_behavior), which the
    // prost_types form below drops; reflection and the REST gateway read them.
    std::fs::write(
        out_dir.join("customer_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let fds = compiler.file_descriptor_set();

    tonic_prost_build::configure()
        // Decode failures of request bodies become INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::grpc::codec::Codec")
        .build_transport(false)
        // Deterministic label order on the wire and in JSON.
        .btree_map(".")
        .compile_fds(fds)?;
    Ok(())
}
