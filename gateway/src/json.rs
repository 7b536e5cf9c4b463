//! A one-pass writer of canonical proto3 JSON for response messages.
//!
//! prost-reflect's serde serializer is correct but costly on the response path (it re-encodes
//! every Timestamp through a typed message, and the "every field present" shape needed a
//! second pass). This writer walks the descriptors once and writes bytes directly:
//! lowerCamelCase names; scalars, lists and maps always present (defaults written out);
//! fields with presence omitted when unset (see [`omitted_when_unset`]); 64-bit integers
//! as strings; enums by name; bytes as base64; non-finite floats as `"NaN"`/`"Infinity"`;
//! Timestamp, Duration, FieldMask and the wrappers in their special forms. `Struct`, `Value`,
//! `ListValue` and `Any` are rare and delegated to prost-reflect's serializer.
//!
//! ## The one rule for unset fields
//!
//! A field that can be *unset* (a singular message, a oneof member, a proto3 `optional`) is
//! left out of the JSON when unset, never written as `null`; every other field is always
//! written. [`omitted_when_unset`] is that rule: this writer, the wire-level writer
//! ([`crate::wire`]) and the OpenAPI schemas ([`crate::openapi`], whose response schemas
//! list every other field as `required` and allow no `null`) all ask it, so the JSON and the
//! published schema cannot disagree (generated clients reject any difference).

use std::io::Write as _;

use base64::Engine;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MapKey, ReflectMessage, SerializeOptions, Value,
};

/// Nesting beyond this is written by prost-reflect (which has its own recursion handling).
pub(crate) const MAX_DEPTH: usize = 64;

/// Whether the JSON leaves `field` out when it is unset (and never writes it as `null`):
/// fields with presence, i.e. singular messages, oneof members and proto3 `optional` fields.
/// Every other field (scalars, enums, lists, maps) is always written, with its default when
/// unset. The one rule shared by the writers and the OpenAPI schemas.
pub fn omitted_when_unset(field: &FieldDescriptor) -> bool {
    field.containing_oneof().is_some()
        || (!field.is_list() && !field.is_map() && matches!(field.kind(), Kind::Message(_)))
}

/// Appends the JSON of `message` to `out`.
pub fn write_message(message: &DynamicMessage, out: &mut Vec<u8>) -> Result<(), String> {
    write_message_at(message, out, 0)
}

/// [`write_message`] for a message nested `depth` levels deep (the wire-level writer hands
/// the rare well-known types it does not write itself to this).
pub(crate) fn write_message_at(
    message: &DynamicMessage,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), String> {
    let descriptor = message.descriptor();
    let full_name = descriptor.full_name();
    if full_name.starts_with("google.protobuf.") || depth > MAX_DEPTH {
        return write_well_known(message, full_name, out);
    }
    out.push(b'{');
    let mut first = true;
    for field in descriptor.fields() {
        if omitted_when_unset(&field) && !message.has_field(&field) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(field.json_name(), out);
        out.push(b':');
        write_field_at(&field, &message.get_field(&field), out, depth)?;
    }
    out.push(b'}');
    Ok(())
}

/// Appends the JSON of one field's value (for `response_body`).
pub fn write_field(
    field: &FieldDescriptor,
    value: &Value,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    write_field_at(field, value, out, 0)
}

fn write_field_at(
    field: &FieldDescriptor,
    value: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), String> {
    let kind = field.kind();
    match value {
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(&kind, item, out, depth)?;
            }
            out.push(b']');
            Ok(())
        }
        Value::Map(entries) => {
            let value_kind = match &kind {
                Kind::Message(entry) => entry.map_entry_value_field().kind(),
                _ => {
                    return Err(format!(
                        "map field {} without an entry type",
                        field.full_name()
                    ));
                }
            };
            // Sorted keys: deterministic output whatever the map's iteration order.
            let mut keys: Vec<&MapKey> = entries.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let key_text = match key {
                    MapKey::Bool(b) => b.to_string(),
                    MapKey::I32(n) => n.to_string(),
                    MapKey::I64(n) => n.to_string(),
                    MapKey::U32(n) => n.to_string(),
                    MapKey::U64(n) => n.to_string(),
                    MapKey::String(s) => s.clone(),
                };
                write_str(&key_text, out);
                out.push(b':');
                if let Some(value) = entries.get(key) {
                    write_value(&value_kind, value, out, depth)?;
                }
            }
            out.push(b'}');
            Ok(())
        }
        single => write_value(&kind, single, out, depth),
    }
}

fn write_value(kind: &Kind, value: &Value, out: &mut Vec<u8>, depth: usize) -> Result<(), String> {
    match value {
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::I32(n) => write_int(*n, out),
        Value::U32(n) => write_int(*n, out),
        Value::I64(n) => {
            out.push(b'"');
            write_int(*n, out);
            out.push(b'"');
        }
        Value::U64(n) => {
            out.push(b'"');
            write_int(*n, out);
            out.push(b'"');
        }
        Value::F32(f) => write_float(f64::from(*f), out),
        Value::F64(f) => write_float(*f, out),
        Value::String(s) => write_str(s, out),
        Value::Bytes(bytes) => write_base64(bytes, out),
        Value::EnumNumber(number) => match kind {
            Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => {
                out.extend_from_slice(b"null")
            }
            Kind::Enum(e) => match e.get_value(*number) {
                Some(v) => write_str(v.name(), out),
                None => write_int(*number, out),
            },
            _ => write_int(*number, out),
        },
        Value::Message(message) => write_message_at(message, out, depth + 1)?,
        Value::List(_) | Value::Map(_) => return Err("nested list or map value".into()),
    }
    Ok(())
}

pub(crate) fn write_display(value: &impl std::fmt::Display, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{value}");
}

/// Latest second prost-types writes with a four-digit year: 9999-12-31T23:59:59Z.
const LAST_FOUR_DIGIT_SECOND: i64 = 253_402_300_799;

/// A `Timestamp` as a quoted RFC 3339 string, exactly as `prost_types::Timestamp`'s `Display`
/// writes it (`Z`, and 0, 3, 6 or 9 fraction digits). Timestamps from 1970 to 9999 with
/// normalized nanos, i.e. every real one, are formatted here without the `fmt` machinery;
/// the rest (negative, far future, unnormalized) are left to `Display`.
pub(crate) fn write_timestamp(seconds: i64, nanos: i32, out: &mut Vec<u8>) {
    out.push(b'"');
    if !(0..=LAST_FOUR_DIGIT_SECOND).contains(&seconds) || !(0..1_000_000_000).contains(&nanos) {
        write_display(&prost_types::Timestamp { seconds, nanos }, out);
        out.push(b'"');
        return;
    }
    let days = seconds / 86_400;
    let rest = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut text = [0_u8; 19];
    put_digits(&mut text[0..4], year);
    text[4] = b'-';
    put_digits(&mut text[5..7], month);
    text[7] = b'-';
    put_digits(&mut text[8..10], day);
    text[10] = b'T';
    put_digits(&mut text[11..13], rest / 3600);
    text[13] = b':';
    put_digits(&mut text[14..16], rest / 60 % 60);
    text[16] = b':';
    put_digits(&mut text[17..19], rest % 60);
    out.extend_from_slice(&text);
    let nanos = i64::from(nanos);
    let mut fraction = [b'.', 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let digits = if nanos == 0 {
        0
    } else if nanos % 1_000_000 == 0 {
        put_digits(&mut fraction[1..4], nanos / 1_000_000);
        4
    } else if nanos % 1_000 == 0 {
        put_digits(&mut fraction[1..7], nanos / 1_000);
        7
    } else {
        put_digits(&mut fraction[1..10], nanos);
        10
    };
    out.extend_from_slice(&fraction[..digits]);
    out.extend_from_slice(b"Z\"");
}

/// Writes `value` (non-negative, small enough) as zero-padded decimal filling `into`.
fn put_digits(into: &mut [u8], mut value: i64) {
    for digit in into.iter_mut().rev() {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let d = (value % 10) as u8;
        *digit = b'0' + d;
        value /= 10;
    }
}

/// (year, month, day) of a day count since 1970-01-01 (non-negative): Howard Hinnant's
/// `civil_from_days`. Also the date of the service's access lines.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// An integer in decimal, as `Display` writes it (without the formatting machinery).
pub(crate) fn write_int(value: impl itoa::Integer, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Bytes as a quoted standard base64 string (with padding).
pub(crate) fn write_base64(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    let start = out.len();
    let length = base64::encoded_len(bytes.len(), true).unwrap_or(0);
    out.resize(start + length, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(bytes, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
    out.push(b'"');
}

pub(crate) fn write_float(value: f64, out: &mut Vec<u8>) {
    if value.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if value == f64::INFINITY {
        out.extend_from_slice(b"\"Infinity\"");
    } else if value == f64::NEG_INFINITY {
        out.extend_from_slice(b"\"-Infinity\"");
    } else {
        // serde_json prints the shortest round-tripping form.
        let _ = serde_json::to_writer(&mut *out, &value);
    }
}

/// A JSON string. serde_json escapes only `"`, `\` and control characters, so text without
/// them (names, ids, most values) is copied as it is; the rest goes through serde_json.
pub(crate) fn write_str(text: &str, out: &mut Vec<u8>) {
    if !needs_escape(text.as_bytes()) {
        write_plain(text.as_bytes(), out);
    } else {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// Appends `text`, which needs no escape ([`is_plain`], or UTF-8 that `needs_escape` passed),
/// as a JSON string.
pub(crate) fn write_plain(text: &[u8], out: &mut Vec<u8>) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    out.extend_from_slice(text);
    out.push(b'"');
}

/// Whether some byte of `text` must be escaped in a JSON string (a control character, `"`
/// or `\`).
pub fn needs_escape(text: &[u8]) -> bool {
    any_word(text, word_needs_escape)
}

/// Whether `text` is ASCII that needs no escape in a JSON string: then it is also UTF-8, and
/// is written as it is.
pub fn is_plain(text: &[u8]) -> bool {
    !any_word(text, |word| {
        word_needs_escape(word) | (word & HIGH_BITS != 0)
    })
}

/// `0x01` in every byte of a word.
const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
/// The high bit of every byte of a word.
const HIGH_BITS: u64 = u64::from_ne_bytes([0x80; 8]);

/// Whether some byte of `word` is below 0x20, `"` or `\`, eight at a time: the classic
/// "has a byte less than n" and "has a zero byte" tests, exact about whether such a byte
/// exists (a byte of 0x80 or above never counts as below 0x20).
fn word_needs_escape(word: u64) -> bool {
    let below = |n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH_BITS != 0;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH_BITS != 0;
    below(0x20) | zero(word ^ (ONES * u64::from(b'"'))) | zero(word ^ (ONES * u64::from(b'\\')))
}

/// Whether `hit` holds for some eight bytes of `text`, read a word at a time: the whole words,
/// then the last eight bytes (overlapping bytes already checked is harmless). Text shorter
/// than a word is read into one ([`short_word`]); most strings are short.
fn any_word(text: &[u8], hit: impl Fn(u64) -> bool) -> bool {
    let Some(last) = text.last_chunk::<8>() else {
        return !text.is_empty() && hit(short_word(text));
    };
    text.chunks_exact(8)
        .filter_map(|chunk| chunk.first_chunk::<8>())
        .any(|word| hit(u64::from_ne_bytes(*word)))
        || hit(u64::from_ne_bytes(*last))
}

/// The 1 to 7 bytes of `text` in one word: its first and last halves (overlapping), padded
/// with `a`, which no test hits.
fn short_word(text: &[u8]) -> u64 {
    const PAD: u64 = u64::from_le_bytes([b'a'; 8]);
    let n = text.len();
    let four = |at: usize| {
        text[at..]
            .first_chunk()
            .map_or(0, |b| u64::from(u32::from_le_bytes(*b)))
    };
    let two = |at: usize| {
        text[at..]
            .first_chunk()
            .map_or(0, |b| u64::from(u16::from_le_bytes(*b)))
    };
    match n {
        4.. => four(0) | four(n - 4) << 32,
        2..=3 => two(0) | two(n - 2) << 16 | PAD << 32,
        _ => text.first().map_or(PAD, |&b| u64::from(b) | PAD << 8),
    }
}

fn field_i64(message: &DynamicMessage, name: &str) -> i64 {
    match message.get_field_by_name(name).as_deref() {
        Some(Value::I64(n)) => *n,
        _ => 0,
    }
}

fn field_i32(message: &DynamicMessage, name: &str) -> i32 {
    match message.get_field_by_name(name).as_deref() {
        Some(Value::I32(n)) => *n,
        _ => 0,
    }
}

fn write_well_known(
    message: &DynamicMessage,
    full_name: &str,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    match full_name {
        "google.protobuf.Timestamp" => {
            write_timestamp(
                field_i64(message, "seconds"),
                field_i32(message, "nanos"),
                out,
            );
        }
        "google.protobuf.Duration" => {
            let duration = prost_types::Duration {
                seconds: field_i64(message, "seconds"),
                nanos: field_i32(message, "nanos"),
            };
            out.push(b'"');
            write_display(&duration, out);
            out.push(b'"');
        }
        "google.protobuf.FieldMask" => {
            let paths = match message.get_field_by_name("paths").as_deref() {
                Some(Value::List(paths)) => paths
                    .iter()
                    .filter_map(|p| p.as_str().map(lower_camel))
                    .collect::<Vec<_>>()
                    .join(","),
                _ => String::new(),
            };
            write_str(&paths, out);
        }
        "google.protobuf.Empty" => out.extend_from_slice(b"{}"),
        "google.protobuf.DoubleValue"
        | "google.protobuf.FloatValue"
        | "google.protobuf.Int64Value"
        | "google.protobuf.UInt64Value"
        | "google.protobuf.Int32Value"
        | "google.protobuf.UInt32Value"
        | "google.protobuf.BoolValue"
        | "google.protobuf.StringValue"
        | "google.protobuf.BytesValue" => {
            let descriptor = message.descriptor();
            let field = descriptor
                .get_field_by_name("value")
                .ok_or_else(|| format!("{full_name} without a value field"))?;
            write_value(&field.kind(), &message.get_field(&field), out, 0)?;
        }
        _ => {
            // Struct, Value, ListValue, Any and anything deeper than MAX_DEPTH.
            let json = message
                .serialize_with_options(
                    serde_json::value::Serializer,
                    &SerializeOptions::new().skip_default_fields(false),
                )
                .map_err(|e| e.to_string())?;
            serde_json::to_writer(&mut *out, &json).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// `foo_bar.baz_qux` -> `fooBar.bazQux` (FieldMask JSON form).
pub(crate) fn lower_camel(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut upper = false;
    for c in path.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_tests_agree_with_the_byte_tests_at_every_position() {
        let byte_escape = |b: u8| (b < 0x20) | (b == b'"') | (b == b'\\');
        for length in 1..40 {
            for at in 0..length {
                for b in 0..=u8::MAX {
                    let mut text = vec![b'x'; length];
                    text[at] = b;
                    assert_eq!(
                        needs_escape(&text),
                        byte_escape(b),
                        "{b:#x} at {at}/{length}"
                    );
                    assert_eq!(
                        is_plain(&text),
                        !byte_escape(b) && b < 0x80,
                        "{b:#x} at {at}/{length}"
                    );
                }
            }
        }
        assert!(is_plain(b""));
        assert!(!needs_escape(b""));
        // Several bytes of every kind together (borrows between neighbouring bytes).
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let length = (state >> 59) as usize;
            let text: Vec<u8> = (0..length)
                .map(|i| {
                    let b = (state >> (i % 7 * 8)) as u8;
                    // Mostly near the edges of the tests.
                    [b, b & 0x3f, 0x1f, 0x20, b'"', b'\\', 0x7f, 0x80][(b % 8) as usize]
                })
                .collect();
            assert_eq!(
                needs_escape(&text),
                text.iter().any(|&b| byte_escape(b)),
                "{text:?}"
            );
            assert_eq!(
                is_plain(&text),
                text.iter().all(|&b| !byte_escape(b) && b < 0x80),
                "{text:?}"
            );
        }
    }

    #[test]
    fn field_mask_paths_become_lower_camel() {
        assert_eq!(lower_camel("given_name"), "givenName");
        assert_eq!(lower_camel("address.postal_code"), "address.postalCode");
    }

    #[test]
    fn timestamps_are_written_as_prost_types_displays_them() {
        let mut cases: Vec<(i64, i32)> = vec![
            (0, 0),
            (0, 1),
            (951_782_400, 0),           // 2000-02-29
            (951_868_799, 999_999_999), // 2000-02-29T23:59:59.999999999
            (4_107_542_400, 0),         // 2100-03-01
            (LAST_FOUR_DIGIT_SECOND, 999_000_000),
            (LAST_FOUR_DIGIT_SECOND + 1, 0), // year 10000: Display's `+` form
            (-1, 0),
            (-62_135_596_800, 0),
            (1_700_000_000, -1),
            (1_700_000_000, 1_000_000_000),
            (1_700_000_000, 120_000_000),
            (1_700_000_000, 120_000),
            (1_700_000_000, 120),
            (i64::MAX, i32::MAX),
            (i64::MIN, i32::MIN),
        ];
        // One day a week over sixteen centuries, at pseudo-random times of day.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for day in 0..146_097 * 4 / 7 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            #[allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation)]
            let (second, nanos) = (
                (state % 86_400) as i64,
                (state >> 32) as i32 % 1_000_000_000,
            );
            cases.push((day * 7 * 86_400 + second, nanos.abs()));
        }
        for (seconds, nanos) in cases {
            let mut out = Vec::new();
            write_timestamp(seconds, nanos, &mut out);
            let expected = format!("\"{}\"", prost_types::Timestamp { seconds, nanos });
            assert_eq!(
                String::from_utf8(out).unwrap(),
                expected,
                "{seconds} {nanos}"
            );
        }
    }

    #[test]
    fn floats_follow_proto3_json() {
        let mut out = Vec::new();
        write_float(f64::NAN, &mut out);
        write_float(f64::INFINITY, &mut out);
        write_float(1.5, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "\"NaN\"\"Infinity\"1.5");
    }

    /// A double written and read back (as requests are read) is the same number, to the
    /// last bit: serde_json's default parser was one unit in the last place off for this one
    /// (found by the json_writer fuzz target).
    #[test]
    fn doubles_read_back_exactly() {
        for value in [7.789_171_017_913_027e-143, 0.1, 1e300, 5e-324, f64::MAX] {
            let mut out = Vec::new();
            write_float(value, &mut out);
            let read: f64 = serde_json::from_slice(&out).unwrap();
            assert_eq!(
                read.to_bits(),
                value.to_bits(),
                "{}",
                String::from_utf8_lossy(&out)
            );
        }
    }

    #[test]
    fn strings_are_escaped() {
        let mut out = Vec::new();
        write_str("a\"b\\c\n", &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#""a\"b\\c\n""#);
    }
}
