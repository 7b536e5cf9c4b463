//! Erasure of a customer (EraseCustomer, the right to erasure): why, and the record kept of
//! it. Neither holds personal data: the reason is a closed list and the caller's reference
//! is a short identifier (a ticket id), shaped so that it cannot hold an email address, a
//! postal address or a sentence.

use chrono::{DateTime, Utc};

use super::{FieldViolation, names::CustomerName};

/// Why a customer is erased (`customer.v1.ErasureReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErasureReason {
    /// The person asked for erasure.
    DataSubjectRequest,
    /// The person withdrew the consent the processing relied on.
    ConsentWithdrawn,
    /// The data is no longer needed for its purpose.
    NoLongerNeeded,
    /// The data was processed unlawfully.
    UnlawfulProcessing,
    /// A legal obligation requires the erasure.
    LegalObligation,
}

impl ErasureReason {
    /// Every reason, in proto number order (1, 2, …).
    pub const ALL: [Self; 5] = [
        Self::DataSubjectRequest,
        Self::ConsentWithdrawn,
        Self::NoLongerNeeded,
        Self::UnlawfulProcessing,
        Self::LegalObligation,
    ];

    /// The proto enum number.
    pub fn number(self) -> i32 {
        match self {
            Self::DataSubjectRequest => 1,
            Self::ConsentWithdrawn => 2,
            Self::NoLongerNeeded => 3,
            Self::UnlawfulProcessing => 4,
            Self::LegalObligation => 5,
        }
    }

    /// The proto value name, also what the erasure log stores.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DataSubjectRequest => "DATA_SUBJECT_REQUEST",
            Self::ConsentWithdrawn => "CONSENT_WITHDRAWN",
            Self::NoLongerNeeded => "NO_LONGER_NEEDED",
            Self::UnlawfulProcessing => "UNLAWFUL_PROCESSING",
            Self::LegalObligation => "LEGAL_OBLIGATION",
        }
    }

    /// The reason of proto number `number` in request field `field`; unset (0) and unknown
    /// numbers are refused.
    pub fn from_number(field: &str, number: i32) -> Result<Self, FieldViolation> {
        Self::ALL
            .into_iter()
            .find(|reason| reason.number() == number)
            .ok_or_else(|| FieldViolation {
                field: field.to_owned(),
                description: format!(
                    "is required: one of {}",
                    Self::ALL.map(Self::as_str).join(", ")
                ),
            })
    }

    /// The reason stored as `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == text)
    }
}

/// Longest caller reference.
pub const MAX_REFERENCE_LEN: usize = 64;

/// A caller's reference (`""`: none): 1-64 ASCII letters, digits, `.`, `_`, `:` or `-`.
pub fn parse_reference(field: &str, text: &str) -> Result<Option<String>, FieldViolation> {
    if text.is_empty() {
        return Ok(None);
    }
    let valid = text.len() <= MAX_REFERENCE_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if valid {
        Ok(Some(text.to_owned()))
    } else {
        // The value is not quoted back: it may be the personal data it must not hold.
        Err(FieldViolation {
            field: field.to_owned(),
            description: format!(
                "must be 1-{MAX_REFERENCE_LEN} letters, digits, `.`, `_`, `:` or `-` (a ticket \
                 or case id, never personal data)"
            ),
        })
    }
}

/// The record of one erasure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    /// The erased customer's former name.
    pub customer: CustomerName,
    /// Why.
    pub reason: ErasureReason,
    /// The caller's reference.
    pub reference: Option<String>,
    /// Who.
    pub actor: String,
    /// When.
    pub erase_time: DateTime<Utc>,
    /// Notes deleted.
    pub notes_erased: i64,
    /// Past events scrubbed.
    pub events_scrubbed: i64,
    /// Stored responses cleared.
    pub replays_erased: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_by_number_and_name_and_zero_is_refused() {
        for reason in ErasureReason::ALL {
            assert_eq!(
                ErasureReason::from_number("reason", reason.number()),
                Ok(reason)
            );
            assert_eq!(ErasureReason::parse(reason.as_str()), Some(reason));
        }
        let refused = ErasureReason::from_number("reason", 0).unwrap_err();
        assert_eq!(refused.field, "reason");
        assert_eq!(
            refused.description,
            "is required: one of DATA_SUBJECT_REQUEST, CONSENT_WITHDRAWN, NO_LONGER_NEEDED, \
             UNLAWFUL_PROCESSING, LEGAL_OBLIGATION"
        );
        assert!(ErasureReason::from_number("reason", 6).is_err());
    }

    #[test]
    fn references_are_short_identifiers_never_addresses_or_sentences() {
        assert_eq!(parse_reference("reference", ""), Ok(None));
        assert_eq!(
            parse_reference("reference", "DSR-2026.0042:a_b"),
            Ok(Some("DSR-2026.0042:a_b".to_owned()))
        );
        for bad in [
            "ann@example.com",
            "Ann Smith",
            "Main Street 1",
            &"x".repeat(MAX_REFERENCE_LEN + 1),
            "Zoë",
        ] {
            let refused = parse_reference("reference", bad).unwrap_err();
            assert!(!refused.description.contains(bad), "{bad} quoted back");
        }
    }
}
