//! Parser for the `order_by` request field of list/search RPCs, following
//! [AIP-132](https://google.aip.dev/132), generic over the sort keys of one resource:
//! [`CustomerOrder`] (ListCustomers) and [`CompanyOrder`] (ListCompanies).
//!
//! The parser turns the user-supplied ordering into a list of [`OrderKey`]s,
//! most significant first. Every failure is reported as an
//! [`OrderByError`] carrying the 0-based *character* position where the
//! problem starts, suitable for an `INVALID_ARGUMENT` response. The parser
//! never panics. [`canonical`] renders keys back as normalised text (proto field names,
//! explicit directions) for fingerprints.
//!
//! # Grammar
//!
//! ```text
//! order_by  := WS* | item ("," item)*
//! item      := WS* field [WS+ direction] WS*
//! field     := customers: "create_time" | "update_time" | "family_name" | "given_name" | "email"
//!            | companies: "create_time" | "update_time" | "display_name"
//! direction := "asc" | "desc"        -- case-insensitive
//! ```
//!
//! Field names are case-sensitive proto field names. An empty or
//! all-whitespace string yields the default ordering, `create_time`
//! ascending. Each field may appear at most once, at most five keys are
//! allowed, and empty items (`a,,b`, a leading or trailing comma) are
//! rejected.

use std::fmt;

use super::syntax::snippet;

/// Maximum number of sort keys in one `order_by`.
const MAX_KEYS: usize = 5;

/// The sort keys of one resource.
pub trait OrderField: Copy + PartialEq + Eq + fmt::Debug + 'static {
    /// Every key, in the order the error message lists them.
    const ALL: &'static [Self];
    /// The key of the default ordering (`create_time` ascending).
    const DEFAULT: Self;

    /// The proto field name, as written in an `order_by` string.
    fn as_str(self) -> &'static str;

    /// Looks a key up by its proto name (case-sensitive).
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|key| key.as_str() == name)
    }
}

/// Declares one resource's sort keys: the enum, each key's proto field name, and
/// [`OrderField::ALL`] in the order written; the first key is the default.
macro_rules! order_fields {
    ($(#[$meta:meta])* $name:ident { $first:ident => $first_name:literal $(, $key:ident => $key_name:literal)* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            #[doc = concat!("`", $first_name, "`")]
            $first,
            $(#[doc = concat!("`", $key_name, "`")] $key,)*
        }

        impl OrderField for $name {
            const ALL: &'static [Self] = &[Self::$first, $(Self::$key),*];
            const DEFAULT: Self = Self::$first;

            fn as_str(self) -> &'static str {
                match self {
                    Self::$first => $first_name,
                    $(Self::$key => $key_name,)*
                }
            }
        }
    };
}

order_fields! {
    /// A field customers can be ordered by.
    CustomerOrder {
        CreateTime => "create_time",
        UpdateTime => "update_time",
        FamilyName => "family_name",
        GivenName => "given_name",
        Email => "email",
    }
}

order_fields! {
    /// A field companies can be ordered by.
    CompanyOrder {
        CreateTime => "create_time",
        UpdateTime => "update_time",
        DisplayName => "display_name",
    }
}

/// One sort key: a field and its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrderKey<K> {
    /// The field to sort by.
    pub field: K,
    /// `true` for `desc`, `false` for `asc` (the default).
    pub descending: bool,
}

/// Why an `order_by` string was rejected.
pub type OrderByError = super::syntax::SyntaxError;

/// Parses an `order_by` string over the keys `K` into sort keys, most significant first.
///
/// An empty or all-whitespace input yields the default ordering
/// `[create_time asc]`. Never panics.
///
/// # Errors
///
/// Returns an [`OrderByError`] positioned at the first problem: an unknown
/// or repeated field, an empty item, a direction other than `asc`/`desc`,
/// extra tokens in an item, or more than five keys.
pub fn parse<K: OrderField>(input: &str) -> Result<Vec<OrderKey<K>>, OrderByError> {
    if input.trim().is_empty() {
        return Ok(vec![OrderKey {
            field: K::DEFAULT,
            descending: false,
        }]);
    }
    let mut keys: Vec<OrderKey<K>> = Vec::new();
    // Words of the current item: (start position, text).
    let mut words: Vec<(usize, String)> = Vec::new();
    let mut word: Option<(usize, String)> = None;
    for (pos, c) in input.chars().enumerate() {
        if c == ',' || c.is_whitespace() {
            if let Some(done) = word.take() {
                words.push(done);
            }
            if c == ',' {
                finish_item(&mut keys, &words, pos)?;
                words.clear();
            }
        } else {
            match &mut word {
                Some((_, text)) => text.push(c),
                None => word = Some((pos, c.to_string())),
            }
        }
    }
    if let Some(done) = word.take() {
        words.push(done);
    }
    finish_item(&mut keys, &words, input.chars().count())?;
    Ok(keys)
}

/// The keys as normalised `order_by` text, for fingerprints: proto field names, each with an
/// explicit direction, joined by `", "` (`family_name desc, create_time asc`). It depends
/// only on the field names, never on Rust names, and parses back to the same keys.
pub fn canonical<K: OrderField>(keys: &[OrderKey<K>]) -> String {
    keys.iter()
        .map(|key| {
            let direction = if key.descending { "desc" } else { "asc" };
            format!("{} {direction}", key.field.as_str())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Builds an [`OrderByError`].
fn error(position: usize, message: impl Into<String>) -> OrderByError {
    OrderByError::new("order_by", position, message)
}

/// Validates one comma-separated item and appends its key. `end` is the
/// position of the terminating comma or of the end of input.
fn finish_item<K: OrderField>(
    keys: &mut Vec<OrderKey<K>>,
    words: &[(usize, String)],
    end: usize,
) -> Result<(), OrderByError> {
    let Some((field_pos, name)) = words.first() else {
        return Err(error(end, "empty sort field (check for a stray comma)"));
    };
    let field = K::from_name(name).ok_or_else(|| {
        let valid: Vec<&str> = K::ALL.iter().map(|key| key.as_str()).collect();
        error(
            *field_pos,
            format!(
                "unknown sort field '{}'; valid fields are {}",
                snippet(name),
                valid.join(", ")
            ),
        )
    })?;
    if keys.iter().any(|k| k.field == field) {
        return Err(error(
            *field_pos,
            format!("sort field '{}' is listed more than once", field.as_str()),
        ));
    }
    if keys.len() >= MAX_KEYS {
        return Err(error(
            *field_pos,
            format!("too many sort fields; at most {MAX_KEYS} are allowed"),
        ));
    }
    let descending = match words.get(1) {
        None => false,
        Some((_, dir)) if dir.eq_ignore_ascii_case("asc") => false,
        Some((_, dir)) if dir.eq_ignore_ascii_case("desc") => true,
        Some((pos, dir)) => {
            return Err(error(
                *pos,
                format!(
                    "expected 'asc' or 'desc' after '{}', found '{}'",
                    field.as_str(),
                    snippet(dir)
                ),
            ));
        }
    };
    if let Some((pos, extra)) = words.get(2) {
        return Err(error(
            *pos,
            format!(
                "unexpected '{}'; expected ',' or the end of order_by",
                snippet(extra)
            ),
        ));
    }
    keys.push(OrderKey { field, descending });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The unit tests of the grammar run over customer keys.
    type C = CustomerOrder;

    const ALL: [C; 5] = [
        C::CreateTime,
        C::UpdateTime,
        C::FamilyName,
        C::GivenName,
        C::Email,
    ];

    fn key<K>(field: K, descending: bool) -> OrderKey<K> {
        OrderKey { field, descending }
    }

    /// The keys of (field, descending) pairs.
    fn keys<K: Copy>(pairs: &[(K, bool)]) -> Vec<OrderKey<K>> {
        pairs
            .iter()
            .map(|&(field, descending)| key(field, descending))
            .collect()
    }

    #[test]
    fn company_orderings_use_company_fields() {
        type O = CompanyOrder;
        for (input, expected) in [
            (
                "display_name desc, create_time",
                &[(O::DisplayName, true), (O::CreateTime, false)][..],
            ),
            ("", &[(O::CreateTime, false)]),
        ] {
            assert_eq!(parse::<O>(input), Ok(keys(expected)), "{input:?}");
        }
        let e = parse::<CompanyOrder>("family_name").unwrap_err();
        assert_eq!(
            e.message,
            "unknown sort field 'family_name'; valid fields are create_time, update_time, display_name"
        );
        assert!(parse::<C>("display_name").is_err());
    }

    #[test]
    fn canonical_names_every_direction() {
        assert_eq!(canonical(&parse::<C>("").unwrap()), "create_time asc");
        assert_eq!(
            canonical(&parse::<C>("family_name DESC,given_name, email asc").unwrap()),
            "family_name desc, given_name asc, email asc"
        );
        assert_eq!(
            canonical(&parse::<CompanyOrder>("display_name desc, update_time").unwrap()),
            "display_name desc, update_time asc"
        );
    }

    fn err(input: &str) -> OrderByError {
        match parse::<C>(input) {
            Err(e) => e,
            Ok(keys) => panic!("expected {input:?} to fail, got {keys:?}"),
        }
    }

    fn assert_err(input: &str, position: usize, message: &str) {
        err(input).assert_at(input, position, message);
    }

    #[test]
    fn single_fields() {
        for field in ALL {
            assert_eq!(parse::<C>(field.as_str()), Ok(vec![key(field, false)]));
            assert_eq!(
                parse::<C>(&format!("{} desc", field.as_str())),
                Ok(vec![key(field, true)])
            );
            assert_eq!(
                parse::<C>(&format!("{} asc", field.as_str())),
                Ok(vec![key(field, false)])
            );
        }
    }

    #[test]
    fn as_str_names() {
        let names: Vec<&str> = ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "create_time",
                "update_time",
                "family_name",
                "given_name",
                "email"
            ]
        );
    }

    /// Accepted inputs and their keys: the default when empty, any whitespace, any case of
    /// the direction.
    #[test]
    fn accepted_orderings() {
        let default = &[(C::CreateTime, false)][..];
        for (input, expected) in [
            ("", default),
            ("  \t\n", default),
            (
                "family_name, given_name desc,create_time",
                &[
                    (C::FamilyName, false),
                    (C::GivenName, true),
                    (C::CreateTime, false),
                ],
            ),
            (
                "  email   DESC ,\tupdate_time\nAsc  ",
                &[(C::Email, true), (C::UpdateTime, false)],
            ),
        ] {
            assert_eq!(parse::<C>(input), Ok(keys(expected)), "{input:?}");
        }
    }

    #[test]
    fn five_keys_allowed() {
        let input = "create_time, update_time desc, family_name, given_name, email desc";
        assert_eq!(parse::<C>(input).map(|k| k.len()), Ok(5));
    }

    #[test]
    fn error_unknown_field() {
        let e = err("name desc");
        assert_eq!(
            e,
            OrderByError {
                subject: "order_by",
                position: 0,
                message: "unknown sort field 'name'; valid fields are create_time, \
                          update_time, family_name, given_name, email"
                    .to_owned()
            }
        );
        assert_eq!(
            e.to_string(),
            "invalid order_by at position 0: unknown sort field 'name'; valid fields are \
             create_time, update_time, family_name, given_name, email"
        );
    }

    const SIX_KEYS: &str = "create_time, update_time, family_name, given_name, email, email";

    /// Every rejection: the input, where the problem starts, and how its message begins.
    #[test]
    fn errors_are_positioned() {
        for (input, position, message) in [
            ("email, Create_Time", 7, "unknown sort field 'Create_Time'"),
            ("ä, email", 0, "unknown sort field 'ä'"),
            (
                "email, given_name desc, email desc",
                24,
                "sort field 'email' is listed",
            ),
            ("email,,given_name", 6, "empty sort field"),
            ("email, ,given_name", 7, "empty sort field"),
            (",email", 0, "empty sort field"),
            ("email,", 6, "empty sort field"),
            ("email,  ", 8, "empty sort field"),
            (
                "email descending",
                6,
                "expected 'asc' or 'desc' after 'email', found",
            ),
            (
                "email desc asc",
                11,
                "unexpected 'asc'; expected ',' or the end",
            ),
            ("email desc given_name", 11, "unexpected 'given_name'"),
            // Only five distinct fields exist, so a sixth key is always a repeat; the
            // repeat is reported first.
            (SIX_KEYS, 58, "sort field 'email' is listed more than once"),
            // Positions count characters, not bytes.
            ("email,éé", 6, "unknown sort field 'éé'"),
            ("ää ,email", 0, "unknown sort field"),
            ("email ü", 6, "expected 'asc' or 'desc'"),
        ] {
            assert_err(input, position, message);
        }
    }

    /// Renders keys in canonical form.
    fn render(keys: &[OrderKey<C>]) -> String {
        keys.iter()
            .map(|k| {
                if k.descending {
                    format!("{} desc", k.field.as_str())
                } else {
                    k.field.as_str().to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn arb_keys() -> impl Strategy<Value = Vec<OrderKey<C>>> {
        (
            Just(ALL.to_vec()).prop_shuffle(),
            1usize..=5,
            prop::collection::vec(any::<bool>(), 5),
        )
            .prop_map(|(fields, n, desc)| {
                fields
                    .into_iter()
                    .zip(desc)
                    .take(n)
                    .map(|(field, descending)| OrderKey { field, descending })
                    .collect()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn never_panics_on_arbitrary_strings(input in any::<String>()) {
            if let Err(e) = parse::<C>(&input) {
                prop_assert!(e.position <= input.chars().count());
            }
        }

        #[test]
        fn never_panics_on_token_soup(
            tokens in prop::collection::vec(
                prop_oneof![
                    Just(","), Just(" "), Just("\t"), Just("email"), Just("create_time"),
                    Just("desc"), Just("ASC"), Just("x"), Just("é"),
                ],
                0..40,
            )
        ) {
            let input = tokens.concat();
            match parse::<C>(&input) {
                Ok(keys) => prop_assert!(!keys.is_empty() && keys.len() <= 5),
                Err(e) => prop_assert!(e.position <= input.chars().count()),
            }
        }

        #[test]
        fn render_roundtrips(keys in arb_keys()) {
            prop_assert_eq!(parse::<C>(&render(&keys)), Ok(keys));
        }

        #[test]
        fn canonical_roundtrips(keys in arb_keys()) {
            prop_assert_eq!(parse::<C>(&canonical(&keys)), Ok(keys));
        }

        #[test]
        fn whitespace_and_case_of_direction_do_not_matter(
            keys in arb_keys(),
            ws in prop::collection::vec("[ \t\n]{0,3}", 20),
            upper in any::<bool>(),
            explicit_asc in any::<bool>(),
        ) {
            let mut ws = ws.into_iter().cycle();
            let mut input = String::new();
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    input.push(',');
                }
                input.push_str(&ws.next().unwrap_or_default());
                input.push_str(k.field.as_str());
                let dir = match (k.descending, explicit_asc) {
                    (true, _) => Some("desc"),
                    (false, true) => Some("asc"),
                    (false, false) => None,
                };
                if let Some(dir) = dir {
                    input.push(' ');
                    input.push_str(&ws.next().unwrap_or_default());
                    input.push_str(&if upper { dir.to_uppercase() } else { dir.to_owned() });
                }
                input.push_str(&ws.next().unwrap_or_default());
            }
            prop_assert_eq!(parse::<C>(&input), Ok(keys));
        }
    }
}
