//! Integration tests (placeholder while the harness lands).
fn main() {}
