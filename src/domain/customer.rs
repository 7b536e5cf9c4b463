//! The customer model and its rules.
//!
//! Data arrives as a [`CustomerInput`] (raw strings, exactly what the client sent, from any
//! transport) and leaves validation as [`CustomerData`] (trimmed, normalised, within limits),
//! or as the complete list of what is wrong. Updates merge the client's input into the
//! stored customer under an update mask (AIP-134, `core::mask`) and validate the merged result, so the
//! same rules hold for create, patch and replace.

use std::{collections::BTreeMap, fmt::Display};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Violations, country, names, stored::Stored};

/// Longest given or family name, in characters (after trimming).
pub const MAX_NAME_CHARS: usize = 200;
/// Longest email address, in characters (RFC 5321 path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Most labels on one customer.
pub const MAX_LABELS: usize = 64;
/// Longest label value, in characters.
pub const MAX_LABEL_VALUE_CHARS: usize = 255;
/// Most address lines.
pub const MAX_ADDRESS_LINES: usize = 5;
/// Longest address line, in characters.
pub const MAX_ADDRESS_LINE_CHARS: usize = 200;
/// Longest locality, region or postal code, in characters.
pub const MAX_ADDRESS_PART_CHARS: usize = 100;
/// Longest business id, in characters.
pub const MAX_BUSINESS_ID_CHARS: usize = 64;
/// Most external ids on one customer.
pub const MAX_EXTERNAL_IDS: usize = 16;
/// Longest external id source, in characters.
pub const MAX_EXTERNAL_SOURCE_CHARS: usize = 64;
/// Longest external id, in characters.
pub const MAX_EXTERNAL_ID_CHARS: usize = 256;
/// What [`is_external_source`] accepts, as a regular expression (for the OpenAPI document).
pub const EXTERNAL_SOURCE_PATTERN: &str = "^[a-z][a-z0-9_]{0,63}$";

/// Lifecycle state of a customer. The discriminants are the proto enum numbers and the
/// values stored in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// A current customer (the default).
    Active = 1,
    /// A potential customer.
    Prospective = 2,
    /// A former customer.
    Inactive = 3,
}

impl Status {
    /// The status for a stored or wire number; `None` for unknown numbers.
    pub fn from_number(number: i32) -> Option<Self> {
        match number {
            1 => Some(Self::Active),
            2 => Some(Self::Prospective),
            3 => Some(Self::Inactive),
            _ => None,
        }
    }

    /// The proto enum number / stored value.
    pub fn number(self) -> i16 {
        self as i16
    }
}

/// A postal address. As input its strings are raw; inside [`CustomerData`] they are validated.
/// `Serialize` only for the request fingerprint of a [`CustomerInput`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PostalAddress {
    /// Street lines.
    pub lines: Vec<String>,
    /// City or town.
    pub locality: String,
    /// State or province.
    pub region: String,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 code, uppercase once validated.
    pub country_code: String,
}

/// The mutable fields of a customer, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerData {
    /// Given name, trimmed, 1-200 characters.
    pub given_name: String,
    /// Family name, trimmed, 1-200 characters.
    pub family_name: String,
    /// Email address as entered (trimmed); unique case-insensitively among live customers.
    pub email: String,
    /// E.164 phone number.
    pub phone: Option<String>,
    /// Postal address.
    pub address: Option<PostalAddress>,
    /// Lifecycle state.
    pub status: Status,
    /// `companies/{company}` reference.
    pub company: Option<String>,
    /// External business registry id.
    pub business_id: Option<String>,
    /// User labels.
    pub labels: BTreeMap<String, String>,
    /// Keys in other systems: source -> id; each pair unique among live customers.
    pub external_ids: BTreeMap<String, String>,
}

/// A stored customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    /// Its id (the `{customer}` of `customers/{customer}`), version and times.
    pub stored: Stored,
    /// The mutable fields.
    pub data: CustomerData,
    /// When a soft-deleted customer is purged for good (AIP-164); `None` while live, or when
    /// purging is off.
    pub expire_time: Option<DateTime<Utc>>,
    /// The customer this one was merged into (MergeCustomers): set on a soft-deleted source
    /// while the merge stands.
    pub merged_into: Option<names::CustomerName>,
}

impl Customer {
    /// What may be said of this customer once it is purged: its name and times, no
    /// personal data. The version is the one after the last change, as for every event.
    pub fn purged(&self) -> Customer {
        let mut purged = self.without_personal_data();
        purged.stored.version += 1;
        purged
    }

    /// This customer with every personal field empty: its name, times and status only.
    pub fn without_personal_data(&self) -> Customer {
        Customer {
            stored: self.stored,
            data: CustomerData {
                given_name: String::new(),
                family_name: String::new(),
                email: String::new(),
                phone: None,
                address: None,
                status: self.data.status,
                company: None,
                business_id: None,
                labels: BTreeMap::new(),
                external_ids: BTreeMap::new(),
            },
            expire_time: self.expire_time,
            merged_into: self.merged_into,
        }
    }

    /// The resource name.
    pub fn name(&self) -> names::CustomerName {
        names::CustomerName(self.stored.id)
    }
}

/// Customer fields exactly as a client sent them, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CustomerInput {
    /// Raw given name.
    pub given_name: String,
    /// Raw family name.
    pub family_name: String,
    /// Raw email.
    pub email: String,
    /// Raw phone; empty means none.
    pub phone: String,
    /// Raw address; `None` means none.
    pub address: Option<PostalAddress>,
    /// Raw status number; 0 means the default (ACTIVE).
    pub status: i32,
    /// Raw company reference; empty means none.
    pub company: String,
    /// Raw business id; empty means none.
    pub business_id: String,
    /// Raw labels.
    pub labels: BTreeMap<String, String>,
    /// Raw external ids (source -> id). Left out of the version-1 fingerprint text when
    /// empty, so that text stays what the release before external ids wrote.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub external_ids: BTreeMap<String, String>,
}

/// The status number.
impl super::Raw<Status> for i32 {
    fn raw(status: &Status) -> Self {
        i32::from(status.number())
    }
}

super::input_from!(CustomerData => CustomerInput {
    given_name, family_name, email, phone, address, status, company, business_id, labels,
    external_ids,
});

impl super::Input for CustomerInput {
    type Data = CustomerData;
    type Field = CustomerField;

    /// Validates and normalises every field. `prefix` is the path of the customer message in
    /// the request (`customer`), so violations name proto field paths like
    /// `customer.address.country_code`.
    fn check(&self, v: &mut Violations, prefix: &str) -> CustomerData {
        let path = |field| Dotted(prefix, field);

        let given_name = person_name(v, path("given_name"), &self.given_name);
        let family_name = person_name(v, path("family_name"), &self.family_name);
        let email = email(v, path("email"), &self.email);
        let phone = optional(&self.phone).and_then(|phone| {
            check(v, path("phone"), is_e164(phone), || {
                "must be an E.164 phone number: `+`, country code and subscriber number, \
                 at most 15 digits, e.g. +14155550123"
                    .into()
            })
            .then(|| phone.to_owned())
        });
        let address = self
            .address
            .as_ref()
            .map(|address| postal_address(v, path("address"), address));
        let status = match self.status {
            0 => Status::Active,
            number => Status::from_number(number).unwrap_or_else(|| {
                v.add(path("status"), format!("unknown status value {number}"));
                Status::Active
            }),
        };
        let company =
            optional(&self.company).and_then(|company| match names::check_company_name(company) {
                Ok(()) => Some(company.to_owned()),
                Err(description) => {
                    v.add(path("company"), description);
                    None
                }
            });
        let business_id = business_id(v, path("business_id"), &self.business_id);
        labels(v, path("labels"), &self.labels);
        external_ids(v, path("external_ids"), &self.external_ids);

        CustomerData {
            given_name,
            family_name,
            email,
            phone,
            address,
            status,
            company,
            business_id,
            labels: self.labels.clone(),
            external_ids: self.external_ids.clone(),
        }
    }

    /// The fields a client set (non-default values): the implied update mask when a request
    /// carries none (AIP-134).
    fn present_fields(&self) -> Vec<CustomerField> {
        let mut fields = Vec::new();
        let mut push = |present: bool, field: CustomerField| {
            if present {
                fields.push(field);
            }
        };
        push(!self.given_name.is_empty(), CustomerField::GivenName);
        push(!self.family_name.is_empty(), CustomerField::FamilyName);
        push(!self.email.is_empty(), CustomerField::Email);
        push(!self.phone.is_empty(), CustomerField::Phone);
        push(self.address.is_some(), CustomerField::Address);
        push(self.status != 0, CustomerField::Status);
        push(!self.company.is_empty(), CustomerField::Company);
        push(!self.business_id.is_empty(), CustomerField::BusinessId);
        push(!self.labels.is_empty(), CustomerField::Labels);
        push(!self.external_ids.is_empty(), CustomerField::ExternalIds);
        fields
    }
}

/// A field an update mask may name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CustomerField {
    /// `given_name`
    GivenName,
    /// `family_name`
    FamilyName,
    /// `email`
    Email,
    /// `phone`
    Phone,
    /// `address` (the whole address)
    Address,
    /// `address.lines`
    AddressLines,
    /// `address.locality`
    AddressLocality,
    /// `address.region`
    AddressRegion,
    /// `address.postal_code`
    AddressPostalCode,
    /// `address.country_code`
    AddressCountryCode,
    /// `status`
    Status,
    /// `company`
    Company,
    /// `business_id`
    BusinessId,
    /// `labels` (all labels)
    Labels,
    /// `labels.<key>` (one label: set it, or remove it when absent from the input)
    Label(String),
    /// `external_ids` (all of them)
    ExternalIds,
    /// `external_ids.<source>` (one source's id: set it, or remove it when absent)
    ExternalId(String),
}

/// An optional business-registry id: at most [`MAX_BUSINESS_ID_CHARS`] letters, digits,
/// `-`, `_`, `.` or `/` (shared by customers and companies).
pub(super) fn business_id(v: &mut Violations, field: impl Display, text: &str) -> Option<String> {
    optional(text).and_then(|id| match check_business_id(id) {
        Ok(()) => Some(id.to_owned()),
        Err(description) => {
            v.add(field, description);
            None
        }
    })
}

/// Checks the shape of an external business registry id (already trimmed, non-empty): at
/// most [`MAX_BUSINESS_ID_CHARS`] ASCII letters, digits, `-`, `_`, `.` or `/`. The error is
/// the description of a field violation.
pub fn check_business_id(id: &str) -> Result<(), String> {
    let ok = id.chars().count() <= MAX_BUSINESS_ID_CHARS
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be at most {MAX_BUSINESS_ID_CHARS} letters, digits, `-`, `_`, `.` or `/`"
        ))
    }
}

/// Validates and normalises a postal address from any source (the same rules as a
/// customer's address); violations are named `{prefix}.lines[0]`, `{prefix}.country_code` ….
pub fn validate_postal_address(
    prefix: &str,
    address: &PostalAddress,
) -> Result<PostalAddress, Violations> {
    let mut v = Violations::new();
    let normalised = postal_address(&mut v, prefix, address);
    v.into_result(normalised)
}

/// Records a violation unless `ok`; returns `ok`.
fn check(
    v: &mut Violations,
    field: impl Display,
    ok: bool,
    description: impl FnOnce() -> String,
) -> bool {
    if !ok {
        v.add(field, description());
    }
    ok
}

/// A trimmed, non-empty value, or `None` for "not set".
pub(crate) fn optional(text: &str) -> Option<&str> {
    let text = text.trim();
    (!text.is_empty()).then_some(text)
}

pub(super) fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// Trimmed text of at most `max` characters without control characters; `required` makes
/// an empty value a violation.
pub(crate) fn bounded_text(
    v: &mut Violations,
    field: impl Display,
    text: &str,
    max: usize,
    required: bool,
) -> String {
    let text = text.trim();
    if text.is_empty() {
        if required {
            v.add(field, "is required");
        }
    } else if text.chars().count() > max {
        v.add(field, format!("must be at most {max} characters"));
    } else if has_control(text) {
        v.add(field, "must not contain control characters");
    }
    text.to_owned()
}

fn person_name(v: &mut Violations, field: impl Display, text: &str) -> String {
    bounded_text(v, field, text, MAX_NAME_CHARS, true)
}

fn email(v: &mut Violations, field: impl Display, text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        v.add(field, "is required");
    } else if text.chars().count() > MAX_EMAIL_CHARS {
        v.add(
            field,
            format!("must be at most {MAX_EMAIL_CHARS} characters"),
        );
    } else if !is_email(text) {
        v.add(field, "is not a valid email address, e.g. jane@example.com");
    }
    text.to_owned()
}

/// RFC 5322 syntax (via `email_address`), restricted to what mail systems deliver to in
/// practice: no domain literals, no display names, and a dotted domain.
fn is_email(text: &str) -> bool {
    let options = email_address::Options::default()
        .without_domain_literal()
        .without_display_text();
    email_address::EmailAddress::parse_with_options(text, options)
        .map(|address| {
            let domain = address.domain();
            domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        .unwrap_or(false)
}

/// E.164: `+`, a non-zero leading digit, at most 15 digits in total.
pub(crate) fn is_e164(text: &str) -> bool {
    let Some(digits) = text.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

fn postal_address(
    v: &mut Violations,
    prefix: impl Display + Copy,
    address: &PostalAddress,
) -> PostalAddress {
    let field = |name| Dotted(prefix, name);
    if address.lines.len() > MAX_ADDRESS_LINES {
        v.add(field("lines"), format!("at most {MAX_ADDRESS_LINES} lines"));
    }
    let lines = address
        .lines
        .iter()
        .enumerate()
        .map(|(i, line)| bounded_text(v, Line(prefix, i), line, MAX_ADDRESS_LINE_CHARS, true))
        .collect();
    let part = |v: &mut Violations, name, text: &str| {
        bounded_text(v, field(name), text, MAX_ADDRESS_PART_CHARS, false)
    };
    let locality = part(v, "locality", &address.locality);
    let region = part(v, "region", &address.region);
    let postal_code = part(v, "postal_code", &address.postal_code);
    let country_code = address.country_code.trim().to_ascii_uppercase();
    if country_code.is_empty() {
        v.add(field("country_code"), "is required");
    } else if !country::is_assigned(&country_code) {
        v.add(
            field("country_code"),
            format!(
                "`{}` is not an ISO 3166-1 alpha-2 country code, e.g. DE or US",
                clip(&country_code)
            ),
        );
    }
    PostalAddress {
        lines,
        locality,
        region,
        postal_code,
        country_code,
    }
}

/// Checks user labels: count, key pattern, value length and characters.
pub(super) fn labels(
    v: &mut Violations,
    prefix: impl Display + Copy,
    labels: &BTreeMap<String, String>,
) {
    for (at, key, value) in entries(v, prefix, labels, MAX_LABELS, "labels") {
        if !is_label_key(key) {
            v.add(at, "label keys must match [a-z][a-z0-9_.-]{0,62}");
        }
        if value.chars().count() > MAX_LABEL_VALUE_CHARS {
            v.add(
                at,
                format!("label values must be at most {MAX_LABEL_VALUE_CHARS} characters"),
            );
        } else if has_control(value) {
            v.add(at, "label values must not contain control characters");
        }
    }
}

/// Checks external ids: count, source pattern, id length and characters. Ids are kept as
/// sent (not trimmed): another system's key is matched exactly.
pub(super) fn external_ids(
    v: &mut Violations,
    prefix: impl Display + Copy,
    ids: &BTreeMap<String, String>,
) {
    for (at, source, id) in entries(v, prefix, ids, MAX_EXTERNAL_IDS, "external ids") {
        if !is_external_source(source) {
            v.add(
                at,
                "sources must be lowercase identifiers matching [a-z][a-z0-9_]{0,63}",
            );
        }
        if let Some(problem) = external_id_problem(id) {
            v.add(at, problem);
        }
    }
}

/// The entries of a map field to check, each with its path (`prefix["key"]`, the key
/// clipped), once the count is checked: at most `max` (`what` names the entries).
fn entries<'a, P: Display + Copy + 'a>(
    v: &mut Violations,
    prefix: P,
    map: &'a BTreeMap<String, String>,
    max: usize,
    what: &str,
) -> impl Iterator<Item = (Entry<'a, P>, &'a str, &'a str)> + use<'a, P> {
    if map.len() > max {
        v.add(prefix, format!("at most {max} {what}, got {}", map.len()));
    }
    map.iter()
        .map(move |(key, value)| (Entry(prefix, key), key.as_str(), value.as_str()))
}

/// `{parent}.{name}`: a field's path, written out only when a violation names it, so a
/// valid request formats no paths (they were a dozen `format!`s per CreateCustomer).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dotted<P>(pub P, pub &'static str);

impl<P: Display> Display for Dotted<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// `{address}.lines[{i}]`, written out only when a violation names it.
#[derive(Debug, Clone, Copy)]
struct Line<P>(P, usize);

impl<P: Display> Display for Line<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.lines[{}]", self.0, self.1)
    }
}

/// `{map}["key"]` (the key clipped), written out only when a violation names it.
#[derive(Debug, Clone, Copy)]
struct Entry<'a, P>(P, &'a str);

impl<P: Display> Display for Entry<'_, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[\"{}\"]", self.0, clip(self.1))
    }
}

/// What is wrong with an external id, if anything: 1 to [`MAX_EXTERNAL_ID_CHARS`]
/// characters, none of them control characters.
pub fn external_id_problem(id: &str) -> Option<String> {
    let chars = id.chars().count();
    if chars == 0 || chars > MAX_EXTERNAL_ID_CHARS {
        Some(format!(
            "ids must be 1 to {MAX_EXTERNAL_ID_CHARS} characters"
        ))
    } else if has_control(id) {
        Some("ids must be printable (no control characters)".to_owned())
    } else {
        None
    }
}

/// `[a-z][a-z0-9_]{0,63}`: an external id's source.
pub fn is_external_source(source: &str) -> bool {
    let bytes = source.as_bytes();
    matches!(bytes.first(), Some(b'a'..=b'z'))
        && bytes.len() <= MAX_EXTERNAL_SOURCE_CHARS
        && bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// What [`is_label_key`] accepts, as a regular expression (for the OpenAPI document).
pub const LABEL_KEY_PATTERN: &str = "^[a-z][a-z0-9_.-]{0,62}$";

/// `[a-z][a-z0-9_.-]{0,62}`
pub fn is_label_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    matches!(bytes.first(), Some(b'a'..=b'z'))
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'))
}

/// Shortens echoed input in messages, with email addresses and phone numbers masked (first,
/// so that a cut one is still recognised).
pub(crate) fn clip(text: &str) -> String {
    super::syntax::clip(text, 64)
}

#[cfg(test)]
mod tests {
    use crate::domain::Input as _;
    use proptest::prelude::*;

    use super::*;
    use crate::core::mask::Mask;

    fn valid() -> CustomerInput {
        CustomerInput {
            given_name: "  Ada ".into(),
            family_name: "Lovelace".into(),
            email: "ada@example.com".into(),
            phone: "+441234567890".into(),
            address: Some(PostalAddress {
                lines: vec!["12 St James's Square".into()],
                locality: "London".into(),
                region: String::new(),
                postal_code: "SW1Y 4JH".into(),
                country_code: "gb".into(),
            }),
            status: 2,
            company: String::new(),
            business_id: "GB-123".into(),
            labels: BTreeMap::from([("tier".into(), "gold".into())]),
            external_ids: BTreeMap::from([("crm".into(), "4711".into())]),
        }
    }

    fn fields(violations: Violations) -> Vec<String> {
        violations.into_vec().into_iter().map(|v| v.field).collect()
    }

    /// The fields of `input` that validation rejects.
    fn rejected(input: &CustomerInput) -> Vec<String> {
        fields(input.validate("customer").unwrap_err())
    }

    /// `check` accepts every one of `good` and none of `bad`.
    fn assert_classifies(check: fn(&str) -> bool, good: &[&str], bad: &[&str]) {
        for text in good {
            assert!(check(text), "{text} should pass");
        }
        for text in bad {
            assert!(!check(text), "{text} should fail");
        }
    }

    #[test]
    fn valid_input_is_trimmed_and_normalised() {
        let data = valid().validate("customer").unwrap();
        assert_eq!(data.given_name, "Ada");
        assert_eq!(data.status, Status::Prospective);
        assert_eq!(data.address.unwrap().country_code, "GB");
        assert_eq!(data.phone.as_deref(), Some("+441234567890"));
        assert_eq!(data.company, None);
    }

    #[test]
    fn unspecified_status_defaults_to_active() {
        let input = CustomerInput {
            status: 0,
            ..valid()
        };
        assert_eq!(input.validate("customer").unwrap().status, Status::Active);
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let mut labels = BTreeMap::from([("Bad Key".to_owned(), "x".to_owned())]);
        labels.insert("ok".into(), "v".repeat(256));
        let input = CustomerInput {
            given_name: "   ".into(),
            family_name: "x".repeat(201),
            email: "not-an-email".into(),
            phone: "0049 30 123".into(),
            address: Some(PostalAddress {
                country_code: "XX".into(),
                ..PostalAddress::default()
            }),
            status: 9,
            company: "acme".into(),
            business_id: "has space".into(),
            labels,
            external_ids: BTreeMap::from([
                ("CRM".to_owned(), "1".to_owned()),
                ("erp".to_owned(), String::new()),
            ]),
        };
        assert_eq!(
            rejected(&input),
            [
                "customer.given_name",
                "customer.family_name",
                "customer.email",
                "customer.phone",
                "customer.address.country_code",
                "customer.status",
                "customer.company",
                "customer.business_id",
                "customer.labels[\"Bad Key\"]",
                "customer.labels[\"ok\"]",
                "customer.external_ids[\"CRM\"]",
                "customer.external_ids[\"erp\"]",
            ]
        );
    }

    #[test]
    fn address_violations_name_the_line_and_part() {
        let input = CustomerInput {
            address: Some(PostalAddress {
                lines: vec![
                    "1 Main St".into(),
                    " ".into(),
                    "ok".into(),
                    "ok".into(),
                    "ok".into(),
                    "x".into(),
                ],
                locality: "L".repeat(MAX_ADDRESS_PART_CHARS + 1),
                region: "bad\u{7}region".into(),
                postal_code: String::new(),
                country_code: "XX".into(),
            }),
            ..valid()
        };
        assert_eq!(
            rejected(&input),
            [
                "customer.address.lines",
                "customer.address.lines[1]",
                "customer.address.locality",
                "customer.address.region",
                "customer.address.country_code",
            ]
        );
    }

    #[test]
    fn lengths_are_limited_in_characters_not_bytes() {
        let at_limit = CustomerInput {
            given_name: "é".repeat(200),
            ..valid()
        };
        assert!(at_limit.validate("customer").is_ok());
        for (input, field) in [
            (
                CustomerInput {
                    given_name: "é".repeat(201),
                    ..valid()
                },
                "customer.given_name",
            ),
            (
                CustomerInput {
                    email: format!("{}@example.com", "a".repeat(250)),
                    ..valid()
                },
                "customer.email",
            ),
        ] {
            assert_eq!(rejected(&input), [field]);
        }
    }

    /// Emails follow RFC 5322 with a dotted domain; phones are E.164.
    #[test]
    fn emails_and_phones_are_classified() {
        /// A check, what it accepts and what it refuses.
        type Case = (
            fn(&str) -> bool,
            &'static [&'static str],
            &'static [&'static str],
        );
        let checks: [Case; 2] = [
            (
                is_email,
                &["a@b.co", "first.last+tag@sub.example.org", "x_y@example.io"],
                &[
                    "plain",
                    "@example.com",
                    "a@",
                    "a@localhost",
                    "a@[127.0.0.1]",
                    "a b@c.de",
                    "Jo <jo@x.de>",
                ],
            ),
            (
                is_e164,
                &["+14155550123", "+49301234567", "+12"],
                &[
                    "14155550123",
                    "+0123",
                    "+1 415 555",
                    "+1234567890123456",
                    "+",
                    "+1",
                ],
            ),
        ];
        for (check, good, bad) in checks {
            assert_classifies(check, good, bad);
        }
    }

    #[test]
    fn too_many_labels_is_one_violation() {
        let labels = (0..65).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        let input = CustomerInput { labels, ..valid() };
        assert_eq!(rejected(&input), ["customer.labels"]);
    }

    #[test]
    fn external_ids_are_limited_in_number_source_and_id() {
        let many = (0..17).map(|i| (format!("s{i}"), "1".to_owned())).collect();
        assert_eq!(
            rejected(&CustomerInput {
                external_ids: many,
                ..valid()
            }),
            ["customer.external_ids"]
        );
        for (source, id, ok) in [
            ("crm", "x".repeat(256), true),
            ("crm", "x".repeat(257), false),
            ("crm", "a\nb".to_owned(), false),
            ("crm", " 47 11 ".to_owned(), true),
            ("hub_spot2", "1".to_owned(), true),
            ("2crm", "1".to_owned(), false),
            ("crm-x", "1".to_owned(), false),
        ] {
            let input = CustomerInput {
                external_ids: BTreeMap::from([(source.to_owned(), id.clone())]),
                ..valid()
            };
            assert_eq!(input.validate("customer").is_ok(), ok, "{source}={id:?}");
        }
        assert!(is_external_source(&format!("a{}", "b".repeat(63))));
        assert!(!is_external_source(&format!("a{}", "b".repeat(64))));
    }

    #[test]
    fn label_keys_follow_the_pattern() {
        assert!(is_label_key("a"));
        assert!(is_label_key("team.owner-1_x"));
        assert!(is_label_key(&format!("a{}", "b".repeat(62))));
        assert!(!is_label_key(&format!("a{}", "b".repeat(63))));
        for bad in ["", "1a", "A", "a b", "é", "-a"] {
            assert!(!is_label_key(bad), "{bad}");
        }
    }

    #[test]
    fn update_mask_rejects_unknown_and_output_only_paths() {
        let paths: Vec<String> = [
            "given_name",
            "uid",
            "nickname",
            "labels.Bad",
            "given_name",
            "etag",
        ]
        .map(String::from)
        .to_vec();
        let (mask, violations) =
            Mask::<CustomerField>::parse("update_mask", &paths, "customer.v1.Customer");
        assert_eq!(mask, Mask::Fields(vec![CustomerField::GivenName]));
        let violations = violations.into_vec();
        let got: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            got,
            [
                "update_mask.paths[1]",
                "update_mask.paths[2]",
                "update_mask.paths[3]",
                "update_mask.paths[4]"
            ]
        );
        assert!(violations[0].description.contains("output only"));
    }

    #[test]
    fn star_mask_replaces_everything_and_must_stand_alone() {
        assert_eq!(
            Mask::<CustomerField>::parse("m", &["*".into()], "customer.v1.Customer"),
            (Mask::All, Violations::new())
        );
        assert!(
            !Mask::<CustomerField>::parse(
                "m",
                &["*".into(), "email".into()],
                "customer.v1.Customer"
            )
            .1
            .is_empty()
        );
        let mut target = valid();
        let source = CustomerInput {
            given_name: "Grace".into(),
            ..CustomerInput::default()
        };
        Mask::<CustomerField>::All.apply(&mut target, &source);
        assert_eq!(target, source);
    }

    #[test]
    fn masked_fields_are_copied_and_others_kept() {
        let mut target = valid();
        let env = BTreeMap::from([("env".into(), "prod".into())]);
        let source = CustomerInput {
            email: "new@example.com".into(),
            address: None,
            labels: env.clone(),
            ..CustomerInput::default()
        };
        let paths = ["email", "address.locality", "labels.env", "labels.tier"];
        Mask::<CustomerField>::of(&paths, "customer.v1.Customer").apply(&mut target, &source);
        // A masked part of an address the source leaves out is cleared; the rest is kept.
        let mut address = valid().address;
        address.as_mut().unwrap().locality = String::new();
        let email = source.email;
        assert_eq!(
            target,
            CustomerInput {
                email,
                address,
                labels: env,
                ..valid()
            }
        );
    }

    #[test]
    fn present_fields_are_the_non_default_ones() {
        let input = CustomerInput {
            email: "x@example.com".into(),
            status: 3,
            ..CustomerInput::default()
        };
        assert_eq!(
            input.present_fields(),
            [CustomerField::Email, CustomerField::Status]
        );
    }

    proptest! {
        #[test]
        fn validation_never_panics(
            given in ".{0,300}", family in ".*", email in ".{0,300}", phone in ".{0,20}",
            country in ".{0,4}", status in any::<i32>(), key in ".{0,70}", value in ".{0,300}",
        ) {
            let input = CustomerInput {
                given_name: given, family_name: family, email, phone,
                address: Some(PostalAddress { country_code: country, ..PostalAddress::default() }),
                status, labels: BTreeMap::from([(key, value)]),
                ..CustomerInput::default()
            };
            let _ = input.validate("customer");
        }

        #[test]
        fn valid_data_validates_to_itself(given in "[A-Za-z][A-Za-z ]{0,40}[A-Za-z]") {
            let data = CustomerInput { given_name: given, ..valid() }.validate("customer").unwrap();
            let again = CustomerInput::from(&data).validate("customer").unwrap();
            prop_assert_eq!(data, again);
        }
    }
}
