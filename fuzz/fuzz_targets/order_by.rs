//! The AIP-132 `order_by` parser of customers and companies: never panics, errors point into
//! the input, and the canonical text of the keys parses back to the same keys.

#![no_main]

use customer_api::domain::order_by::{self, CompanyOrder, CustomerOrder, OrderField};
use customer_api_fuzz::assert_positioned;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    check::<CustomerOrder>(input);
    check::<CompanyOrder>(input);
});

fn check<K: OrderField>(input: &str) {
    match order_by::parse::<K>(input) {
        Err(error) => assert_positioned(&error, input),
        Ok(keys) => {
            assert!(!keys.is_empty(), "{input:?} gave no sort key");
            let canonical = order_by::canonical(&keys);
            let again = order_by::parse::<K>(&canonical)
                .unwrap_or_else(|e| panic!("{input:?} -> {canonical:?}: {e}"));
            assert_eq!(again, keys, "{input:?} -> {canonical:?} parses differently");
        }
    }
}
