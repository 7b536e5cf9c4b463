//! Field masks (AIP-134), once for every resource.
//!
//! A resource names its updatable fields with a [`MaskField`] enum; this module parses the
//! paths of an `update_mask` against it and copies masked fields from the request into the
//! stored state. Which paths are *output only* is not written down here: it is read from the
//! `google.api.field_behavior` annotations (OUTPUT_ONLY, IDENTIFIER) of the resource's
//! message in the compiled descriptors, so the proto stays the one place that says it.

use std::{collections::HashMap, sync::OnceLock};

use prost_reflect::{DescriptorPool, Value};

use crate::domain::{Violations, customer::clip};

/// A field an update mask may name.
pub trait MaskField: Clone + PartialEq + std::fmt::Debug + Send + Sync + 'static {
    /// The raw input the field is copied between.
    type Input: Clone;

    /// The field a path names: `None` when the path names no updatable field, `Some(Err)`
    /// when it names one malformed (a bad label key: the description).
    fn parse(path: &str) -> Option<Result<Self, String>>;

    /// Copies this field of `source` into `target`.
    fn apply(&self, target: &mut Self::Input, source: &Self::Input);

    /// The field's proto path (`address.locality`, `labels.env`).
    fn path(&self) -> String;

    /// The field's name in version-1 request fingerprints (frozen: it was the Rust variant
    /// name, which may now change freely).
    fn legacy_name(&self) -> String;
}

/// Which fields an update changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mask<F> {
    /// `*`: replace every mutable field; fields absent from the input are cleared.
    All,
    /// Exactly these fields.
    Fields(Vec<F>),
}

impl<F: MaskField> Mask<F> {
    /// Parses the paths of a `google.protobuf.FieldMask`. `field` is the mask's request path
    /// (`update_mask`), `message` the resource's full proto name. Unknown, duplicate and
    /// output-only paths are violations; the mask of the valid paths is returned beside them
    /// so their values can be checked too.
    pub fn parse(field: &str, paths: &[String], message: &str) -> (Self, Violations) {
        let mut v = Violations::new();
        if paths.iter().any(|p| p == "*") {
            if paths.len() > 1 {
                v.add(
                    format!("{field}.paths"),
                    "`*` replaces every field and must be the only path",
                );
            }
            return (Self::All, v);
        }
        let mut fields = Vec::with_capacity(paths.len());
        for (index, path) in paths.iter().enumerate() {
            let at = format!("{field}.paths[{index}]");
            // The etag is the write's precondition, not a value: naming it changes nothing.
            if path == "etag" {
                continue;
            }
            match F::parse(path) {
                Some(Ok(parsed)) if !fields.contains(&parsed) => fields.push(parsed),
                Some(Ok(_)) => v.add(at, format!("`{}` is listed twice", clip(path))),
                Some(Err(description)) => v.add(at, description),
                None if not_updatable(message).iter().any(|p| p == path) => {
                    v.add(at, format!("`{path}` is output only and cannot be updated"));
                }
                None => v.add(
                    at,
                    format!(
                        "`{}` is not a field of {}",
                        clip(path),
                        message.rsplit('.').next().unwrap_or(message)
                    ),
                ),
            }
        }
        (Self::Fields(fields), v)
    }

    /// Copies the masked fields of `source` into `target`.
    pub fn apply(&self, target: &mut F::Input, source: &F::Input) {
        match self {
            Self::All => *target = source.clone(),
            Self::Fields(fields) => {
                for field in fields {
                    field.apply(target, source);
                }
            }
        }
    }

    /// The mask as version-1 request fingerprints spelled it (the `Debug` output of the
    /// per-resource mask types of that release).
    pub fn legacy_debug(&self) -> String {
        match self {
            Self::All => "All".to_owned(),
            Self::Fields(fields) => {
                let names: Vec<String> = fields.iter().map(MaskField::legacy_name).collect();
                format!("Fields([{}])", names.join(", "))
            }
        }
    }

    /// The normalised paths, for version-2 fingerprints.
    pub fn canonical_paths(&self) -> Vec<String> {
        match self {
            Self::All => vec!["*".to_owned()],
            Self::Fields(fields) => fields.iter().map(MaskField::path).collect(),
        }
    }
}

#[cfg(test)]
impl<F: MaskField> Mask<F> {
    /// The mask of `paths` of the message `message`, every path valid (tests).
    pub fn of(paths: &[&str], message: &str) -> Self {
        let paths: Vec<String> = paths.iter().map(|&path| path.to_owned()).collect();
        let (mask, violations) = Self::parse("update_mask", &paths, message);
        assert!(violations.is_empty(), "{violations:?}");
        mask
    }
}

/// `{map}.<key>` (`labels.tier`, `external_ids.crm`): the key, or the violation of a
/// malformed one (`what` names the key: `label key`); `None` for other paths.
pub fn map_path(
    map: &str,
    path: &str,
    valid: fn(&str) -> bool,
    what: &str,
) -> Option<Result<String, String>> {
    let key = path.strip_prefix(map)?.strip_prefix('.')?;
    Some(if valid(key) {
        Ok(key.to_owned())
    } else {
        Err(format!("`{}`: not a valid {what}", clip(path)))
    })
}

/// One entry of a map field (a label, an external id) of a mask: set it from `source`, or
/// remove it when `source` lacks it.
pub fn apply_label(
    target: &mut std::collections::BTreeMap<String, String>,
    source: &std::collections::BTreeMap<String, String>,
    key: &str,
) {
    match source.get(key) {
        Some(value) => {
            target.insert(key.to_owned(), value.clone());
        }
        None => {
            target.remove(key);
        }
    }
}

/// Implements [`MaskField`] for a resource's field enum from one table, so that each field's
/// path is written once. A row is `Variant = "path" => how`, where `how` is the input member
/// copied as a whole (`given_name`) or, in parentheses, a closure `|target, source|` copying
/// the field; `[labels: Label by is_label_key as "label key"]` adds the `labels.{key}`
/// paths of the variant `Label(key)` (keys checked by `is_label_key`), and so on for every
/// map field listed. A variant's version-1 fingerprint name is its Rust name (`GivenName`,
/// `Label("env")`), frozen by the golden tests.
macro_rules! mask_fields {
    (
        $field:ident for $input:ty
        $([$($map:ident: $entry:ident by $valid:path as $what:literal),+])? {
            $($variant:ident = $path:literal => $how:tt,)+
        }
    ) => {
        impl $crate::core::mask::MaskField for $field {
            type Input = $input;

            fn parse(path: &str) -> Option<Result<Self, String>> {
                match path {
                    $($path => Some(Ok(Self::$variant)),)+
                    _ => None $($(.or_else(|| {
                        $crate::core::mask::map_path(stringify!($map), path, $valid, $what)
                            .map(|key| key.map(Self::$entry))
                    }))+)?,
                }
            }

            fn apply(&self, target: &mut $input, source: &$input) {
                match self {
                    $(Self::$variant => $crate::core::mask::mask_fields!(@copy $how, target, source),)+
                    $($(Self::$entry(key) => {
                        $crate::core::mask::apply_label(&mut target.$map, &source.$map, key)
                    })+)?
                }
            }

            fn path(&self) -> String {
                match self {
                    $(Self::$variant => $path.to_owned(),)+
                    $($(Self::$entry(key) => format!("{}.{key}", stringify!($map)),)+)?
                }
            }

            fn legacy_name(&self) -> String {
                match self {
                    $(Self::$variant => stringify!($variant).to_owned(),)+
                    $($(Self::$entry(key) => format!("{}({key:?})", stringify!($entry)),)+)?
                }
            }
        }
    };
    (@copy $member:ident, $target:ident, $source:ident) => {
        $target.$member.clone_from(&$source.$member)
    };
    (@copy ($copy:expr), $target:ident, $source:ident) => {
        ($copy)($target, $source)
    };
}
pub(crate) use mask_fields;

/// `google.api.field_behavior` values a client cannot set: OUTPUT_ONLY and IDENTIFIER.
const NOT_UPDATABLE: [i32; 2] = [3, 8];

/// The top-level fields of `message` (a full proto name) annotated OUTPUT_ONLY or
/// IDENTIFIER in the service's descriptors.
pub fn not_updatable(message: &str) -> &'static [String] {
    static TABLE: OnceLock<HashMap<String, Vec<String>>> = OnceLock::new();
    TABLE
        .get_or_init(|| read_not_updatable(crate::FILE_DESCRIPTOR_SET))
        .get(message)
        .map_or(&[], Vec::as_slice)
}

fn read_not_updatable(descriptors: &[u8]) -> HashMap<String, Vec<String>> {
    let Ok(pool) = DescriptorPool::decode(descriptors) else {
        return HashMap::new();
    };
    let Some(behavior) = pool.get_extension_by_name("google.api.field_behavior") else {
        return HashMap::new();
    };
    pool.all_messages()
        .map(|message| {
            let fields = message
                .fields()
                .filter(|field| {
                    let options = field.options();
                    options.has_extension(&behavior)
                        && matches!(
                            options.get_extension(&behavior).as_ref(),
                            Value::List(values) if values.iter().any(
                                |v| matches!(v, Value::EnumNumber(n) if NOT_UPDATABLE.contains(n))
                            )
                        )
                })
                .map(|field| field.name().to_owned())
                .collect();
            (message.full_name().to_owned(), fields)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_only_paths_come_from_the_proto() {
        assert_eq!(
            not_updatable("customer.v1.Customer"),
            [
                "name",
                "uid",
                "create_time",
                "update_time",
                "delete_time",
                "business_info",
                "expire_time",
                "merged_into"
            ]
        );
        assert_eq!(
            not_updatable("customer.v1.Company"),
            ["name", "uid", "create_time", "update_time", "delete_time"]
        );
        // Notes have no uid: `update_mask=uid` on a note is an unknown field.
        assert_eq!(
            not_updatable("customer.v1.Note"),
            ["name", "author", "create_time", "update_time"]
        );
    }
}
