//! The AIP-160 filter parser of every resource: never panics, errors point into the input,
//! and a parsed filter's canonical text (what page-token fingerprints hash) parses back to
//! the same tree.

#![no_main]

use customer_api::domain::filter::{
    self, CompanyField, CustomerField, EventField, FilterField, MAX_DEPTH,
};
use customer_api_fuzz::assert_positioned;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    check::<CustomerField>(input);
    check::<CompanyField>(input);
    check::<EventField>(input);
});

fn check<F: FilterField>(input: &str) {
    match filter::parse::<F>(input) {
        Err(error) => assert_positioned(&error, input),
        Ok(None) => assert!(input.trim().is_empty(), "{input:?} parsed to no filter"),
        Ok(Some(expr)) => {
            let canonical = expr.canonical();
            match filter::parse::<F>(&canonical) {
                Ok(Some(again)) => {
                    assert_eq!(again, expr, "{input:?} -> {canonical:?} parses differently");
                    assert_eq!(again.canonical(), canonical, "canonical text is not stable");
                }
                // The canonical text spells every value out and parenthesises every node,
                // so it may exceed the length or nesting limits the input kept within.
                Err(error)
                    if canonical.len() > F::MAX_LEN
                        || error
                            .message
                            .contains(&format!("at most {MAX_DEPTH} levels")) => {}
                other => panic!("{input:?} -> canonical {canonical:?} -> {other:?}"),
            }
        }
    }
}
