//! Compiles the test-only `tests/proto` API (`testing.v1.LibraryService`) without a system
//! `protoc`: `protox` parses it in-process and `tonic-prost-build` generates the prost
//! messages and tonic service. The encoded descriptor set goes to
//! `OUT_DIR/library_descriptor.bin`; `broken.proto` (annotations the gateway must refuse) only
//! becomes `OUT_DIR/broken_descriptor.bin`, and `kinds.proto` (every kind of field, for the
//! wire-level JSON writer's differential unit tests) only `OUT_DIR/kinds_descriptor.bin`. Only
//! tests use them (through `include!`); the library itself is generic and never refers to them.
//!
//! The descriptor sets are encoded by protox itself (`encode_file_descriptor_set`):
//! `prost_types::FileDescriptorSet::encode_to_vec` would drop the extension options, i.e. the
//! `google.api.http` annotations the gateway routes by.

use std::{env, path::PathBuf};

const TEST_PROTOS: &str = "tests/proto";
/// The repository's vendored googleapis (`google/api`, `google/rpc`).
const REPO_PROTOS: &str = "../proto";

fn compiler(file: &str) -> Result<protox::Compiler, protox::Error> {
    let mut compiler = protox::Compiler::new([TEST_PROTOS, REPO_PROTOS])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_file(format!("{TEST_PROTOS}/{file}"))?;
    Ok(compiler)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={TEST_PROTOS}");
    println!("cargo:rerun-if-changed={REPO_PROTOS}/google");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let library = compiler("testing/v1/library.proto")?;
    std::fs::write(
        out_dir.join("library_descriptor.bin"),
        library.encode_file_descriptor_set(),
    )?;

    // Annotations the gateway must refuse: a descriptor set only, no code.
    std::fs::write(
        out_dir.join("broken_descriptor.bin"),
        compiler("testing/broken/v1/broken.proto")?.encode_file_descriptor_set(),
    )?;

    // Every field kind: a descriptor set only, for `src/wire.rs`'s unit tests.
    std::fs::write(
        out_dir.join("kinds_descriptor.bin"),
        compiler("testing/kinds/v1/kinds.proto")?.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_transport(false)
        .compile_fds(library.file_descriptor_set())?;
    Ok(())
}
