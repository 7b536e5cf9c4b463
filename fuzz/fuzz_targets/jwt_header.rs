//! Bearer-token verification (`auth::jwt`): the JOSE header and claims of whatever a client
//! sends are parsed without panicking, and only a token signed with the configured secret,
//! with a subject and an `exp`, is accepted.
//!
//! Raw tokens alone would rarely get past the header, so the target also signs fuzzed header
//! and claims JSON with the HS256 secret: the header parsing (alg, kid, crit, …) and the
//! claims parsing behind the signature check are then reached too.

#![no_main]

use std::sync::LazyLock;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use customer_api::auth::jwt::{JwtSettings, JwtVerifier};
use customer_api_fuzz::RUNTIME;
use futures_util::FutureExt as _;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const SECRET: &str = "fuzzing-secret-0123456789abcdef0123456789";

static VERIFIER: LazyLock<JwtVerifier> = LazyLock::new(|| {
    let settings = JwtSettings {
        hs256_secret: Some(SECRET.into()),
        ..JwtSettings::default()
    };
    RUNTIME
        .block_on(JwtVerifier::new(&settings))
        .expect("an HS256 verifier builds")
        .expect("a secret is configured")
});

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        // The input as the token itself: no signature, so never accepted.
        let Ok(token) = std::str::from_utf8(rest) else {
            return;
        };
        assert!(verify(token).is_err(), "unsigned {token:?} accepted");
        return;
    }
    // `header JSON \0 claims JSON`, signed.
    let (header, claims) = match rest.iter().position(|&b| b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &b"{}"[..]),
    };
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(signing_input.as_bytes());
    let token = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    if let Ok((principal, exp)) = verify(&token) {
        // Accepted: a subject and an expiry, as the verifier promises.
        assert!(!principal.subject.is_empty(), "{token:?} without a subject");
        assert!(exp.is_some(), "{token:?} without exp");
        let header: serde_json::Value =
            serde_json::from_slice(header).expect("an accepted header is JSON");
        assert_eq!(header["alg"], "HS256", "{token:?}");
    }
});

/// Verification never waits on anything with an HS256 secret: it completes in one poll.
fn verify(token: &str) -> Result<(customer_api::auth::Principal, Option<u64>), String> {
    VERIFIER
        .verify_with_expiry(token)
        .now_or_never()
        .expect("HS256 verification does not wait")
        .map_err(|e| e.to_string())
}
