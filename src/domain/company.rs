//! The company model and its rules.
//!
//! Companies group customers (`Customer.company` names one). As with customers, data arrives
//! as a [`CompanyInput`] (raw strings, exactly what the client sent) and leaves validation as
//! [`CompanyData`] (trimmed, normalised, within limits) or as the complete list of what is
//! wrong. Updates merge the input into the stored company under an update mask (AIP-134)
//! and validate the merged result, so create, patch and replace obey the same rules.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    Violations,
    customer::{bounded_text, business_id, clip, labels, optional},
    names::CompanyName,
    stored::Stored,
};

/// Longest display name, in characters (after trimming).
pub const MAX_DISPLAY_NAME_CHARS: usize = 200;
/// Longest domain name, in characters (RFC 1035 without the trailing dot).
pub const MAX_DOMAIN_CHARS: usize = 253;
/// Longest label of a domain name (RFC 1035).
pub const MAX_DOMAIN_LABEL_CHARS: usize = 63;

/// The mutable fields of a company, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyData {
    /// Display name, trimmed, 1-200 characters.
    pub display_name: String,
    /// DNS name, lowercase.
    pub domain: Option<String>,
    /// External business registry id; unique among live companies.
    pub business_id: Option<String>,
    /// User labels.
    pub labels: BTreeMap<String, String>,
}

/// A stored company.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Company {
    /// Its id (the `{company}` of `companies/{company}`), version and times.
    pub stored: Stored,
    /// The mutable fields.
    pub data: CompanyData,
}

impl Company {
    /// The resource name.
    pub fn name(&self) -> CompanyName {
        CompanyName(self.stored.id)
    }
}

/// Company fields exactly as a client sent them, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompanyInput {
    /// Raw display name.
    pub display_name: String,
    /// Raw domain; empty means none.
    pub domain: String,
    /// Raw business id; empty means none.
    pub business_id: String,
    /// Raw labels.
    pub labels: BTreeMap<String, String>,
}

super::input_from!(CompanyData => CompanyInput { display_name, domain, business_id, labels });

impl super::Input for CompanyInput {
    type Data = CompanyData;
    type Field = CompanyField;

    /// Validates and normalises every field; violations are named `{prefix}.{field}`.
    fn check(&self, v: &mut Violations, prefix: &str) -> CompanyData {
        let path = |field| super::customer::Dotted(prefix, field);
        let display_name = bounded_text(
            v,
            path("display_name"),
            &self.display_name,
            MAX_DISPLAY_NAME_CHARS,
            true,
        );
        let domain = optional(&self.domain).and_then(|domain| match dns_name(domain) {
            Ok(normalised) => Some(normalised),
            Err(description) => {
                v.add(path("domain"), description);
                None
            }
        });
        let business_id = business_id(v, path("business_id"), &self.business_id);
        labels(v, path("labels"), &self.labels);
        CompanyData {
            display_name,
            domain,
            business_id,
            labels: self.labels.clone(),
        }
    }

    /// The fields a client set (non-default values): the implied update mask.
    fn present_fields(&self) -> Vec<CompanyField> {
        [
            (!self.display_name.is_empty(), CompanyField::DisplayName),
            (!self.domain.is_empty(), CompanyField::Domain),
            (!self.business_id.is_empty(), CompanyField::BusinessId),
            (!self.labels.is_empty(), CompanyField::Labels),
        ]
        .into_iter()
        .filter_map(|(present, field)| present.then_some(field))
        .collect()
    }
}

/// A DNS name (RFC 1035 as relaxed by RFC 1123), normalised to lowercase without a trailing
/// dot: at least two labels of letters, digits and inner hyphens, each at most 63
/// characters, at most 253 in total, and a top-level label that is not all digits (so an
/// IPv4 address is not a domain). Internationalised names are accepted in their ASCII
/// (`xn--`) form only, so every stored domain has one spelling.
pub fn dns_name(text: &str) -> Result<String, String> {
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    let problem = if !name.is_ascii() {
        Some("must be ASCII: write an internationalised name in its `xn--` (punycode) form")
    } else if name.len() > MAX_DOMAIN_CHARS {
        Some("must be at most 253 characters")
    } else if !name.contains('.') {
        Some("must have at least two labels, e.g. example.com")
    } else if name.split('.').any(|label| {
        label.is_empty()
            || label.len() > MAX_DOMAIN_LABEL_CHARS
            || label.starts_with('-')
            || label.ends_with('-')
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    }) {
        Some(
            "every dot-separated label must be 1 to 63 letters, digits or inner hyphens, \
             e.g. example.com",
        )
    } else if name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        Some("must be a domain name, not an IP address")
    } else {
        None
    };
    match problem {
        None => Ok(name),
        Some(problem) => Err(format!("`{}` is not a DNS name: {problem}", clip(text))),
    }
}

/// A field an update mask of a company may name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CompanyField {
    /// `display_name`
    DisplayName,
    /// `domain`
    Domain,
    /// `business_id`
    BusinessId,
    /// `labels` (all labels)
    Labels,
    /// `labels.<key>` (one label: set it, or remove it when absent from the input)
    Label(String),
}

/// The field paths whose values differ between two states of a company, in field order.
pub fn changed_fields(before: &CompanyData, after: &CompanyData) -> Vec<String> {
    [
        (before.display_name != after.display_name, "display_name"),
        (before.domain != after.domain, "domain"),
        (before.business_id != after.business_id, "business_id"),
        (before.labels != after.labels, "labels"),
    ]
    .into_iter()
    .filter(|(changed, _)| *changed)
    .map(|(_, path)| path.to_owned())
    .collect()
}

#[cfg(test)]
mod tests {
    use crate::domain::Input as _;
    use proptest::prelude::*;

    use super::*;
    use crate::core::mask::Mask;

    fn valid() -> CompanyInput {
        CompanyInput {
            display_name: "  Acme Ltd ".into(),
            domain: "Acme.Example.COM.".into(),
            business_id: "GB-123".into(),
            labels: BTreeMap::from([("tier".into(), "gold".into())]),
        }
    }

    fn fields(violations: Violations) -> Vec<String> {
        violations.into_vec().into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn valid_input_is_trimmed_and_normalised() {
        let data = valid().validate("company").unwrap();
        assert_eq!(data.display_name, "Acme Ltd");
        assert_eq!(data.domain.as_deref(), Some("acme.example.com"));
        assert_eq!(data.business_id.as_deref(), Some("GB-123"));
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let input = CompanyInput {
            display_name: " ".into(),
            domain: "not a domain".into(),
            business_id: "has space".into(),
            labels: BTreeMap::from([("Bad".into(), "x".into())]),
        };
        assert_eq!(
            fields(input.validate("company").unwrap_err()),
            [
                "company.display_name",
                "company.domain",
                "company.business_id",
                "company.labels[\"Bad\"]",
            ]
        );
    }

    #[test]
    fn domains_are_dns_names() {
        for good in [
            "example.com",
            "a.b.c.example.co.uk",
            "xn--bcher-kva.example",
            "1password.com",
            "x-y.io",
        ] {
            assert_eq!(dns_name(good).as_deref(), Ok(good), "{good}");
        }
        assert_eq!(dns_name("EXAMPLE.com.").as_deref(), Ok("example.com"));
        for bad in [
            "localhost",
            "example..com",
            ".example.com",
            "-a.com",
            "a-.com",
            "a_b.com",
            "exa mple.com",
            "bücher.example",
            "192.168.0.1",
            "https://example.com",
            &format!("{}.com", "a".repeat(64)),
            &format!("{}com", "abcdefghi.".repeat(26)),
        ] {
            assert!(dns_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mask_rejects_unknown_and_output_only_paths() {
        let paths: Vec<String> = ["display_name", "uid", "email", "labels.Bad", "etag"]
            .map(String::from)
            .to_vec();
        let (mask, violations) =
            Mask::<CompanyField>::parse("update_mask", &paths, "customer.v1.Company");
        assert_eq!(mask, Mask::Fields(vec![CompanyField::DisplayName]));
        assert_eq!(
            fields(violations),
            [
                "update_mask.paths[1]",
                "update_mask.paths[2]",
                "update_mask.paths[3]"
            ]
        );
    }

    #[test]
    fn masked_fields_are_copied_and_others_kept() {
        let mut target = valid();
        let env = BTreeMap::from([("env".into(), "prod".into())]);
        let source = CompanyInput {
            domain: String::new(),
            labels: env.clone(),
            ..CompanyInput::default()
        };
        let paths = ["domain", "labels.env", "labels.tier"];
        Mask::<CompanyField>::of(&paths, "customer.v1.Company").apply(&mut target, &source);
        let domain = String::new();
        assert_eq!(
            target,
            CompanyInput {
                domain,
                labels: env,
                ..valid()
            }
        );
    }

    #[test]
    fn changed_fields_follow_field_order() {
        let before = valid().validate("company").unwrap();
        let mut after = before.clone();
        after.labels.clear();
        after.display_name = "Acme plc".into();
        assert_eq!(changed_fields(&before, &after), ["display_name", "labels"]);
    }

    proptest! {
        #[test]
        fn validation_never_panics(name in ".{0,300}", domain in ".{0,300}", id in ".{0,80}") {
            let input = CompanyInput { display_name: name, domain, business_id: id, ..CompanyInput::default() };
            let _ = input.validate("company");
        }
    }
}
