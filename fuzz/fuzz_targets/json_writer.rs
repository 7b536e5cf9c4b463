//! The gateway's JSON writers against prost-reflect's serializer as the oracle.
//!
//! For every message type of the API (the first input byte picks one; the rest is its
//! protobuf encoding, as the service would send it):
//! - the general writer (`gateway::json`) writes valid JSON equal, as a JSON value, to
//!   prost-reflect's canonical proto3 JSON (with default values written), wherever
//!   prost-reflect can write the message, and refuses only what prost-reflect refuses;
//! - the wire-level fast path (`gateway::wire`) writes exactly the general writer's bytes,
//!   or declines; and it declines every input the decoder refuses.

#![no_main]

use std::sync::LazyLock;

use customer_api_fuzz::POOL;
use gateway::wire::Plans;
use libfuzzer_sys::fuzz_target;
use prost_reflect::{DynamicMessage, MessageDescriptor, SerializeOptions};

/// The API's messages (and the error status), with their compiled fast-path plans.
static TYPES: LazyLock<(Vec<(MessageDescriptor, usize)>, Plans)> = LazyLock::new(|| {
    let mut plans = Plans::default();
    let types = POOL
        .all_messages()
        .filter(|m| m.package_name() == "customer.v1" || m.full_name() == "google.rpc.Status")
        .filter(|m| !m.is_map_entry())
        .map(|m| {
            let plan = plans.add(&m);
            (m, plan)
        })
        .collect();
    (types, plans)
});

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let (types, plans) = &*TYPES;
    let (descriptor, plan) = &types[usize::from(pick) % types.len()];

    let mut fast = Vec::new();
    let fast = plans.write(*plan, bytes, &mut fast).map(|()| fast);
    let Ok(message) = DynamicMessage::decode(descriptor.clone(), bytes) else {
        assert!(
            fast.is_err(),
            "{}: the fast path wrote bytes the decoder refuses",
            descriptor.full_name()
        );
        return;
    };

    let oracle = message.serialize_with_options(
        serde_json::value::Serializer,
        &SerializeOptions::new().skip_default_fields(false),
    );

    // The writer may refuse only what prost-reflect cannot write either (an `Any` whose type
    // URL names no type of the pool), and then so does the fast path.
    let mut general = Vec::new();
    if let Err(e) = gateway::json::write_message(&message, &mut general) {
        assert!(
            oracle.is_err(),
            "{}: the writer refused what prost-reflect writes: {e}",
            descriptor.full_name()
        );
        assert!(
            fast.is_err(),
            "{}: the fast path wrote what the writer refuses",
            descriptor.full_name()
        );
        return;
    }
    let written: serde_json::Value = serde_json::from_slice(&general).unwrap_or_else(|e| {
        panic!(
            "{}: invalid JSON {:?}: {e}",
            descriptor.full_name(),
            String::from_utf8_lossy(&general)
        )
    });

    if let Ok(fast) = fast {
        assert_eq!(
            String::from_utf8_lossy(&fast),
            String::from_utf8_lossy(&general),
            "{}: the fast path differs from the general writer",
            descriptor.full_name()
        );
    }

    // The oracle refuses what it cannot write canonically (timestamps outside 0001..9999,
    // field mask paths that do not round-trip); the writers answer those anyway. A mask
    // with an empty path has no canonical JSON either (the writer joins it, `","`, where
    // prost-reflect drops it); the service never sends one.
    if has_empty_mask_path(&message) {
        return;
    }
    if let Ok(oracle) = oracle {
        assert_eq!(
            written,
            oracle,
            "{}: the writer differs from prost-reflect",
            descriptor.full_name()
        );
    }
});

/// Whether some `google.protobuf.FieldMask` in `message` has an empty path.
fn has_empty_mask_path(message: &DynamicMessage) -> bool {
    use prost_reflect::{ReflectMessage as _, Value};
    fn value(v: &Value) -> bool {
        match v {
            Value::Message(m) => has_empty_mask_path(m),
            Value::List(items) => items.iter().any(value),
            Value::Map(entries) => entries.values().any(value),
            _ => false,
        }
    }
    if message.descriptor().full_name() == "google.protobuf.FieldMask" {
        if let Some(Value::List(paths)) = message.get_field_by_name("paths").as_deref() {
            return paths.iter().any(|p| p.as_str() == Some(""));
        }
    }
    message.fields().any(|(_, v)| value(v))
}
