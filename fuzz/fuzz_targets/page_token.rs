//! Page-token decoding (`service::page_token`): whatever a client sends as `page_token`, the
//! decoder refuses it or yields a cursor that encodes back to itself; it never panics.
//!
//! Raw text cannot get past the authentication, so besides raw tokens the target builds
//! authentic ones around fuzzed contents: version 1 bodies under their HMAC (the format is
//! public in the module docs) and version 2 plaintexts sealed under the key
//! (`PageTokens::seal_plaintext`, a fuzzing-only hook).

#![no_main]

use std::sync::LazyLock;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use customer_api::{
    db::customers::{Cursor, KeyValue},
    service::page_token::PageTokens,
};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const SECRET: &str = "fuzzing page token secret";

static TOKENS: LazyLock<PageTokens> = LazyLock::new(|| PageTokens::from_secret(SECRET));
static STORED_KEY: LazyLock<PageTokens> = LazyLock::new(|| PageTokens::from_key(&[7; 32]));

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let query = PageTokens::query_fingerprint(&["status = ACTIVE", "family_name desc", "false"]);
    match mode % 4 {
        // Raw text: nothing a client makes up is accepted.
        0 => {
            let Ok(token) = std::str::from_utf8(rest) else {
                return;
            };
            for tokens in [&*TOKENS, &*STORED_KEY] {
                assert!(tokens.decode(token, &query).is_err(), "forged {token:?}");
                assert!(
                    tokens.decode_position(token, &query).is_err(),
                    "forged {token:?}"
                );
            }
        }
        // A version 1 body under its MAC.
        1 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(&Sha256::digest(SECRET.as_bytes()))
                .expect("HMAC takes any key length");
            mac.update(rest);
            let mut bytes = rest.to_vec();
            bytes.extend_from_slice(&mac.finalize().into_bytes()[..16]);
            check_authentic(&URL_SAFE_NO_PAD.encode(bytes), &query);
        }
        // A version 2 plaintext, sealed.
        2 => check_authentic(&TOKENS.seal_plaintext(rest), &query),
        // A genuine token with one byte changed: refused.
        _ => {
            // A name or email as long as the domain allows.
            let text = String::from_utf8_lossy(&rest[..rest.len().min(256)]).into_owned();
            let cursor = Cursor {
                values: vec![KeyValue::Text(text)],
                id: Default::default(),
            };
            let token = TOKENS.encode(&query, &cursor);
            assert_eq!(TOKENS.decode(&token, &query), Ok(cursor));
            let (at, flip) = match rest {
                [a, b, ..] => (usize::from(*a), *b | 1),
                _ => (0, 1),
            };
            let mut bytes = token.into_bytes();
            let at = at % bytes.len();
            bytes[at] ^= flip;
            if let Ok(tampered) = String::from_utf8(bytes) {
                assert!(
                    TOKENS.decode(&tampered, &query).is_err(),
                    "tampered {tampered:?}"
                );
            }
        }
    }
});

/// An authentic token decodes to a cursor or position that encodes back to itself, or is
/// refused; and it is bound to one query.
fn check_authentic(token: &str, query: &[u8]) {
    if let Ok(cursor) = TOKENS.decode(token, query) {
        let again = TOKENS.encode(query, &cursor);
        assert_eq!(TOKENS.decode(&again, query), Ok(cursor));
    }
    if let Ok(position) = TOKENS.decode_position(token, query) {
        let again = TOKENS.encode_position(query, position);
        assert_eq!(TOKENS.decode_position(&again, query), Ok(position));
    }
    // Bound to one query: a token never continues two (the fuzzer can write either
    // fingerprint into a plaintext, so which one is its own choice).
    let other = PageTokens::query_fingerprint(&["another query"]);
    assert!(TOKENS.decode(token, query).is_err() || TOKENS.decode(token, &other).is_err());
    assert!(
        TOKENS.decode_position(token, query).is_err()
            || TOKENS.decode_position(token, &other).is_err()
    );
}
