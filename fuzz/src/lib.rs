//! What the fuzz targets share: the service's descriptors, one async runtime, and the
//! properties every parser must keep whatever its input.

use std::sync::LazyLock;

use customer_api::domain::syntax::SyntaxError;

/// One current-thread runtime for the targets whose code is async (the REST gateway, token
/// verification). Built once: a runtime per input would dominate the run.
pub static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime builds")
});

/// The descriptor pool of the service's proto files (with imports).
pub static POOL: LazyLock<prost_reflect::DescriptorPool> = LazyLock::new(|| {
    prost_reflect::DescriptorPool::decode(customer_api::FILE_DESCRIPTOR_SET)
        .expect("the service's descriptor set decodes")
});

/// A syntax error must point into the input (or at its end): clients underline it.
pub fn assert_positioned(error: &SyntaxError, input: &str) {
    let chars = input.chars().count();
    assert!(
        error.position <= chars,
        "{error} points past the end of {input:?} ({chars} characters)"
    );
    assert!(!error.message.is_empty(), "an empty message for {input:?}");
}
