//! Request fingerprints: what tells a retry (same request, same request id) from a reuse of
//! a request id for a different request (AIP-155).
//!
//! Version 2 hashes a canonical protobuf message built from the request's parts (method,
//! caller, resource name, etag, normalised mask paths, and the resource input as canonical
//! protobuf bytes of the contract's message), prefixed with a version byte. Field numbers
//! are the contract, so renaming Rust types cannot change a fingerprint.
//!
//! Version 1 (32 bytes, no prefix) hashed text that came from serde field names and Rust
//! `Debug` output. Request ids stored by that release are still honoured: [`Fingerprint`]
//! carries both and compares a stored fingerprint with the one of its own version.

use std::sync::Arc;

use prost::Message;
use sha2::{Digest, Sha256};

/// Version byte of [`Fingerprint::current`].
const VERSION: u8 = 2;

/// The parts of a write request that decide whether two requests are the same.
#[derive(Clone, PartialEq, Message)]
pub struct Parts {
    /// The RPC, e.g. `UpdateCustomer`.
    #[prost(string, tag = "1")]
    pub method: String,
    /// The caller: a request id is only ever replayed to the caller who first used it.
    #[prost(string, tag = "2")]
    pub actor: String,
    /// The resource (or, for creates, the parent) name as the request spelled it.
    #[prost(string, tag = "3")]
    pub name: String,
    /// The request's etag.
    #[prost(string, tag = "4")]
    pub etag: String,
    /// Normalised update-mask paths.
    #[prost(string, repeated, tag = "5")]
    pub mask: Vec<String>,
    /// The resource input as canonical protobuf bytes of its contract message.
    #[prost(bytes = "vec", tag = "6")]
    pub input: Vec<u8>,
    /// DeleteCompany's `force`.
    #[prost(bool, tag = "7")]
    pub force: bool,
    /// UpdateCustomer's `allow_missing` (unset, and so absent from the bytes, otherwise).
    #[prost(bool, tag = "8")]
    pub allow_missing: bool,
}

/// A request's fingerprint in every version a stored one may have.
#[derive(Debug, Clone)]
pub struct Fingerprint {
    /// Version 2: what new request-id records store.
    pub current: Vec<u8>,
    /// The method, then the text parts of version 1, for records written by earlier
    /// releases: hashed only when such a record turns up ([`Fingerprint::legacy`]), not on
    /// every write.
    legacy_parts: LegacyParts,
}

/// Version 1's text parts after the method: given, or rendered only when a version-1 record
/// turns up (a create's input as JSON cost ~4.7k instructions per write that almost never
/// needs it).
#[derive(Clone)]
enum LegacyParts {
    Given(Vec<String>),
    Deferred(Arc<dyn Fn() -> Vec<String> + Send + Sync>),
}

impl LegacyParts {
    fn parts(&self) -> std::borrow::Cow<'_, [String]> {
        match self {
            Self::Given(parts) => std::borrow::Cow::Borrowed(parts),
            Self::Deferred(render) => std::borrow::Cow::Owned(render()),
        }
    }
}

impl std::fmt::Debug for LegacyParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Given(parts) => f.debug_tuple("Given").field(parts).finish(),
            Self::Deferred(_) => f.write_str("Deferred"),
        }
    }
}

impl Fingerprint {
    /// The fingerprint of `parts`, with `legacy_parts` the version-1 text parts.
    pub fn new(parts: &Parts, legacy_parts: &[&str]) -> Self {
        Self::with_legacy(
            parts,
            LegacyParts::Given(
                std::iter::once(parts.method.as_str())
                    .chain(legacy_parts.iter().copied())
                    .map(str::to_owned)
                    .collect(),
            ),
        )
    }

    /// The fingerprint of `parts`, whose version-1 text parts (after the method) `render`
    /// writes out only if a version-1 record turns up.
    pub fn deferred(
        parts: &Parts,
        render: impl Fn() -> Vec<String> + Send + Sync + 'static,
    ) -> Self {
        let method = parts.method.clone();
        Self::with_legacy(
            parts,
            LegacyParts::Deferred(Arc::new(move || {
                std::iter::once(method.clone()).chain(render()).collect()
            })),
        )
    }

    fn with_legacy(parts: &Parts, legacy_parts: LegacyParts) -> Self {
        let mut current = Vec::with_capacity(33);
        current.push(VERSION);
        current.extend_from_slice(&Sha256::digest(parts.encode_to_vec()));
        Self {
            current,
            legacy_parts,
        }
    }

    /// Version 1 of this fingerprint.
    pub fn legacy(&self) -> Vec<u8> {
        match self.legacy_parts.parts().split_first() {
            Some((method, parts)) => legacy(method, parts),
            None => legacy("", &[] as &[&str]),
        }
    }

    /// Whether a stored fingerprint names this request.
    pub fn matches(&self, stored: &[u8]) -> bool {
        match stored.first() {
            Some(&VERSION) if stored.len() == self.current.len() => stored == self.current,
            _ => stored == self.legacy(),
        }
    }
}

/// Version 1: SHA-256 over the method and length-prefixed parts.
fn legacy(method: &str, parts: &[impl AsRef<str>]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    for part in parts {
        let part = part.as_ref();
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferred_legacy_parts_hash_as_the_given_ones() {
        let given = Fingerprint::new(&parts(), &["user:ada", "{\"given_name\":\"Ada\"}"]);
        let deferred = Fingerprint::deferred(&parts(), || {
            vec!["user:ada".to_owned(), "{\"given_name\":\"Ada\"}".to_owned()]
        });
        assert_eq!(deferred.legacy(), given.legacy());
        assert!(deferred.matches(&given.legacy()));
        assert!(deferred.matches(&given.current));
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn parts() -> Parts {
        Parts {
            method: "UpdateCustomer".into(),
            actor: "user:ada".into(),
            name: "customers/0190a7c2-0000-7000-8000-000000000001".into(),
            etag: "W/\"3\"".into(),
            mask: vec!["given_name".into(), "labels.env".into()],
            input: vec![0x1a, 0x03, b'A', b'd', b'a'],
            force: false,
            allow_missing: false,
        }
    }

    #[test]
    fn version_2_bytes_are_pinned() {
        let fingerprint = Fingerprint::new(&parts(), &["a", "b"]);
        assert_eq!(
            hex(&parts().encode_to_vec()),
            "0a0e557064617465437573746f6d65721208757365723a6164611a2e637573746f6d6572732f\
             30313930613763322d303030302d373030302d383030302d3030303030303030303030312205\
             572f2233222a0a676976656e5f6e616d652a0a6c6162656c732e656e7632051a03416461"
        );
        assert_eq!(
            hex(&fingerprint.current),
            "02ac2e69c46c04b6cd9beea5c1274be8b79b2d17d8ad714400a60e8b59c4c2b053"
        );
    }

    #[test]
    fn version_1_is_the_frozen_hash() {
        // sha256("DeleteCustomer" ‖ len ‖ "user:ada" ‖ len ‖ "customers/x" ‖ len ‖ ""), as the
        // first releases computed it.
        let fingerprint = Fingerprint::new(
            &Parts {
                method: "DeleteCustomer".into(),
                ..Parts::default()
            },
            &["user:ada", "customers/x", ""],
        );
        assert_eq!(
            hex(&fingerprint.legacy()),
            "2ad32162f69a2cb4cce63a85165dadbae484817346b384071206baed91cc6d6f"
        );
        assert!(fingerprint.matches(&fingerprint.legacy()));
        assert!(fingerprint.matches(&fingerprint.current));
        assert!(!fingerprint.matches(&[2; 33]));
        assert!(!fingerprint.matches(&[]));
    }
}
