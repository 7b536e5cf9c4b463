//! Duplicate detection (FindDuplicateCustomers): what a probe compares and why a candidate
//! matched. The comparisons themselves run in PostgreSQL (`db::duplicates`), over indexes on
//! the same normal forms as [`normal_email`] computes here.

use std::collections::BTreeMap;

use super::{FieldViolation, Violations, customer::is_e164};

/// Why a candidate may be the same person (`customer.v1.DuplicateReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateReason {
    /// The same email address, compared in its normal form ([`normal_email`]).
    SameEmail,
    /// The same normal local part at another domain.
    SameEmailLocalPart,
    /// The same E.164 phone number.
    SamePhone,
    /// Full names at least [`NAME_SIMILARITY`] alike (trigram similarity).
    SimilarName,
    /// The same company (supporting only: never a reason alone).
    SameCompany,
    /// One of the probe's external ids.
    SameExternalId,
}

impl DuplicateReason {
    /// The proto enum number.
    pub fn number(self) -> i32 {
        match self {
            Self::SameEmail => 1,
            Self::SameEmailLocalPart => 2,
            Self::SamePhone => 3,
            Self::SimilarName => 4,
            Self::SameCompany => 5,
            Self::SameExternalId => 6,
        }
    }
}

/// The trigram similarity (0..1) from which two full names count as alike.
pub const NAME_SIMILARITY: f64 = 0.5;
/// Most candidates one probe can page through: duplicates are a short list or a bad probe.
pub const MAX_CANDIDATES: i64 = 100;

/// The score from which CreateCustomer's `duplicate_policy` counts a candidate as a likely
/// duplicate: a phone, an email or an external id alone, or a name at least 0.83 alike.
pub const LIKELY_DUPLICATE: f64 = 0.5;
/// Most likely duplicates CreateCustomer names.
pub const MAX_CREATE_CANDIDATES: i64 = 10;

/// What CreateCustomer does about likely duplicates (`customer.v1.DuplicatePolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicatePolicy {
    /// Register without looking (the default).
    Allow,
    /// Register, and name the likely duplicates.
    Warn,
    /// Refuse while there are likely duplicates.
    Reject,
}

impl DuplicatePolicy {
    /// The policy of proto number `number` in request field `field`: 0 (unset) is ALLOW,
    /// unknown numbers are refused.
    pub fn from_number(field: &str, number: i32) -> Result<Self, FieldViolation> {
        match number {
            0 | 1 => Ok(Self::Allow),
            2 => Ok(Self::Warn),
            3 => Ok(Self::Reject),
            _ => Err(FieldViolation {
                field: field.to_owned(),
                description: format!("unknown policy {number}: use ALLOW, WARN or REJECT"),
            }),
        }
    }
}

/// What a probe compares, in normal form; empty strings compare with nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    /// [`normal_email`] of the email.
    pub email: String,
    /// Its local part.
    pub local_part: String,
    /// E.164.
    pub phone: String,
    /// `given family`, lowercase.
    pub full_name: String,
    /// `companies/{id}`.
    pub company: String,
    /// Source → id.
    pub external_ids: BTreeMap<String, String>,
}

/// An email address in the form duplicates compare: lowercase, without a `+tag` in the
/// local part (`Ann.Lee+shop@Example.com` → `ann.lee@example.com`). The database indexes the
/// same expression.
pub fn normal_email(email: &str) -> String {
    let lower = email.trim().to_lowercase();
    match lower.split_once('@') {
        Some((local, domain)) => {
            let local = local.split_once('+').map_or(local, |(local, _)| local);
            format!("{local}@{domain}")
        }
        None => lower,
    }
}

impl Probe {
    /// The probe of a customer's values (stored or as a client sent them); `prefix` names
    /// the request field in violations (`customer.`). A probe with nothing to compare, or an
    /// unreadable phone number, is refused.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        prefix: &str,
        given_name: &str,
        family_name: &str,
        email: &str,
        phone: &str,
        company: &str,
        external_ids: &BTreeMap<String, String>,
    ) -> Result<Self, Violations> {
        let mut violations = Violations::new();
        let email = if email.trim().is_empty() {
            String::new()
        } else {
            normal_email(email)
        };
        let local_part = email
            .split_once('@')
            .map(|(local, _)| local.to_owned())
            .unwrap_or_default();
        let phone: String = phone
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
            .collect();
        if !phone.is_empty() && !is_e164(&phone) {
            violations.extend(Violations::from(FieldViolation {
                field: format!("{prefix}phone"),
                description: "must be an E.164 phone number (`+`, country code, number)".into(),
            }));
        }
        let full_name = format!("{} {}", given_name.trim(), family_name.trim())
            .trim()
            .to_lowercase();
        let probe = Self {
            email,
            local_part,
            phone,
            full_name,
            company: company.trim().to_owned(),
            external_ids: external_ids.clone(),
        };
        let comparable = !(probe.email.is_empty()
            && probe.phone.is_empty()
            && probe.full_name.is_empty()
            && probe.external_ids.is_empty());
        if !comparable {
            violations.extend(Violations::from(FieldViolation {
                field: prefix.trim_end_matches('.').to_owned(),
                description: "has nothing to compare: set an email, a phone, a name or an \
                              external id"
                    .into(),
            }));
        }
        violations.into_result(probe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_compare_lowercase_without_a_tag() {
        for (raw, normal) in [
            ("Ann.Lee+shop@Example.COM", "ann.lee@example.com"),
            ("ann@example.com", "ann@example.com"),
            ("no-at-sign", "no-at-sign"),
        ] {
            assert_eq!(normal_email(raw), normal, "{raw}");
        }
    }

    #[test]
    fn a_probe_normalises_and_refuses_what_it_cannot_compare() {
        let probe = Probe::new(
            "customer.",
            " Ann ",
            "Lee",
            "Ann+x@Example.com",
            "+49 30 1234-567",
            "",
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(probe.email, "ann@example.com");
        assert_eq!(probe.local_part, "ann");
        assert_eq!(probe.phone, "+49301234567");
        assert_eq!(probe.full_name, "ann lee");
        let empty = Probe::new("customer.", "", "", "", "", "", &BTreeMap::new()).unwrap_err();
        let fields: Vec<String> = empty.into_vec().into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["customer"]);
        let bad_phone =
            Probe::new("customer.", "Ann", "", "", "call me", "", &BTreeMap::new()).unwrap_err();
        let fields: Vec<String> = bad_phone.into_vec().into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["customer.phone"]);
    }
}
