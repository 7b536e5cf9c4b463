//! Resume tokens of the event stream: any text is refused or names a non-negative position,
//! and a position's token names that position again.

#![no_main]

use customer_api::service::events::{parse_resume_token, resume_token};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(position) = parse_resume_token(text) {
        assert!(position >= 0, "{text:?} -> {position}");
        assert_eq!(parse_resume_token(&resume_token(position)), Some(position));
    }
    // The input's first 8 bytes as a position: every non-negative one round-trips.
    let mut raw = [0_u8; 8];
    let n = data.len().min(8);
    raw[..n].copy_from_slice(&data[..n]);
    let position = i64::from_be_bytes(raw) & i64::MAX;
    assert_eq!(parse_resume_token(&resume_token(position)), Some(position));
});
