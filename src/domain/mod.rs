//! The domain: validated customer, company and note data and the request languages
//! (filter, order_by).
//!
//! Everything here is pure: no I/O, no transport, no database. The service layer turns raw input
//! into these types and refuses the request with *every* [`FieldViolation`] at once, so a
//! client fixes all of its mistakes in one round trip.
//!
//! - [`customer`]: the customer model, its raw input form and the validation rules.
//! - [`company`]: the company model (`companies/{uuid}`) and its rules.
//! - [`note`]: the note model (`customers/{uuid}/notes/{uuid}`) and its rules.
//! - [`event`]: domain events, the diff of an update, the parent of an events listing.
//! - [`erasure`]: why a customer is erased and the record kept of it (no personal data).
//! - [`duplicates`]: what a duplicate probe compares, in normal form, and why a candidate matched.
//! - [`names`]: resource names (`customers/{uuid}`, `companies/{uuid}`, notes) and request
//!   ids.
//! - [`filter`] / [`order_by`]: the AIP-160 filter and AIP-132 order_by languages, generic
//!   over each resource's fields (customers, companies, events).
//! - [`legacy`]: the frozen fingerprint text of page tokens issued before the typed
//!   languages (v1).
//! - [`stored`]: what the store keeps of every resource (id, version, times).
//! - [`country`]: the ISO 3166-1 alpha-2 table.

pub mod company;
pub mod country;
pub mod customer;
pub mod duplicates;
pub mod erasure;
pub mod event;
pub mod filter;
pub mod legacy;
pub mod merge;
pub mod names;
pub mod note;
pub mod order_by;
pub mod stored;
pub mod syntax;

/// A resource's fields as a client sent them: validated into its data, and read back from
/// it (what an update merges into).
pub trait Input: Clone + Default + Send + Sync + 'static + for<'a> From<&'a Self::Data> {
    /// The validated fields.
    type Data: Clone + PartialEq + Send + Sync + 'static;
    /// The fields an update mask may name.
    type Field;

    /// Validates and normalises; violations are named `{prefix}.{field}`.
    fn validate(&self, prefix: &str) -> Result<Self::Data, Violations> {
        let mut violations = Violations::new();
        let data = self.check(&mut violations, prefix);
        violations.into_result(data)
    }

    /// The fields normalised, each problem added to `v` (the data is then discarded).
    fn check(&self, v: &mut Violations, prefix: &str) -> Self::Data;

    /// The fields set: the implied mask of an update that names none.
    fn present_fields(&self) -> Vec<Self::Field>;
}

/// A validated field as a client would send it: the pieces of an input read back from its
/// data (`From<&Data>`, declared by [`input_from!`]).
pub trait Raw<T> {
    /// The raw form of `value`.
    fn raw(value: &T) -> Self;
}

impl<T: Clone> Raw<T> for T {
    fn raw(value: &T) -> Self {
        value.clone()
    }
}

/// An optional text: empty when there is none.
impl Raw<Option<String>> for String {
    fn raw(value: &Option<String>) -> Self {
        value.clone().unwrap_or_default()
    }
}

/// `impl From<&$data> for $input`, each listed field of the input the [`Raw`] form of the
/// data's field of that name.
macro_rules! input_from {
    ($data:ident => $input:ident { $($field:ident),* $(,)? }) => {
        impl From<&$data> for $input {
            fn from(data: &$data) -> Self {
                Self {
                    $($field: $crate::domain::Raw::raw(&data.$field),)*
                }
            }
        }
    };
}
pub(crate) use input_from;

/// One invalid field of a request: its proto field path (e.g. `customer.address.country_code`,
/// `customer.labels["Env"]`, `update_mask.paths[1]`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Proto field path of the offending field, relative to the request message.
    pub field: String,
    /// What is wrong, for a human: `must be at most 200 characters`.
    pub description: String,
}

/// Collects every violation of a request before it is refused.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// No violations yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` is invalid. The path is any `Display`, written out here: callers
    /// pass lazy paths (`customer::Dotted` …) so that valid input formats none.
    pub fn add(&mut self, field: impl std::fmt::Display, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.to_string(),
            description: description.into(),
        });
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds every violation of `other`.
    pub fn extend(&mut self, other: Violations) {
        self.0.extend(other.0);
    }

    /// `Ok(value)` when nothing was recorded, else every violation.
    pub fn into_result<T>(self, value: T) -> Result<T, Violations> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    /// The recorded violations, in the order they were found.
    pub fn into_vec(self) -> Vec<FieldViolation> {
        self.0
    }
}

impl From<FieldViolation> for Violations {
    fn from(violation: FieldViolation) -> Self {
        Self(vec![violation])
    }
}
