//! The fields of ListCustomers' filter.

use std::borrow::Cow;

use super::{
    EnumField, FieldKind, FieldName, FilterField, IdField, LabelKey, TextField, TimeField,
    field_names,
};
use crate::domain::customer::Status;

/// A field of a customer filter, grouped by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerField {
    /// `name` or `uid`.
    Id(IdField),
    /// `status`.
    Status(StatusField),
    /// `create_time` or `update_time`.
    Time(TimeField),
    /// A text field: names, contact details, company, business id, address parts, labels.
    Text(CustomerText),
}

/// `status`, whose values are the customer [`Status`]es.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusField;

/// The text fields of customers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerText {
    /// `given_name`
    GivenName,
    /// `family_name`
    FamilyName,
    /// `email`
    Email,
    /// `phone`
    Phone,
    /// `company`
    Company,
    /// `business_id`
    BusinessId,
    /// `address.<part>`: one part of the postal address.
    Address(AddressPart),
    /// `labels.<key>`; holds the label key (without the `labels.` prefix).
    Label(String),
    /// `external_ids.<source>`; holds the source (compared with `=` and `!=` only).
    ExternalId(String),
}

/// The filterable parts of a customer's postal address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressPart {
    /// `address.locality`
    Locality,
    /// `address.region`
    Region,
    /// `address.postal_code`
    PostalCode,
    /// `address.country_code`, stored in upper case.
    CountryCode,
}

impl AddressPart {
    /// The key of the part in the stored address document (and after `address.`).
    pub fn key(self) -> &'static str {
        match self {
            AddressPart::Locality => "locality",
            AddressPart::Region => "region",
            AddressPart::PostalCode => "postal_code",
            AddressPart::CountryCode => "country_code",
        }
    }
}

impl FilterField for CustomerField {
    type Id = IdField;
    type Enum = StatusField;
    type Time = TimeField;
    type Text = CustomerText;

    const FIELDS: &'static [Self] = &[
        Self::Id(IdField::Name),
        Self::Id(IdField::Uid),
        Self::Text(CustomerText::GivenName),
        Self::Text(CustomerText::FamilyName),
        Self::Text(CustomerText::Email),
        Self::Text(CustomerText::Phone),
        Self::Status(StatusField),
        Self::Text(CustomerText::Company),
        Self::Text(CustomerText::BusinessId),
        Self::Text(CustomerText::Address(AddressPart::Locality)),
        Self::Text(CustomerText::Address(AddressPart::Region)),
        Self::Text(CustomerText::Address(AddressPart::PostalCode)),
        Self::Text(CustomerText::Address(AddressPart::CountryCode)),
        Self::Time(TimeField::CreateTime),
        Self::Time(TimeField::UpdateTime),
    ];
    const COLLECTION: &'static str = "customers";

    fn label(key: String) -> Option<Self> {
        Some(Self::Text(CustomerText::Label(key)))
    }

    fn external_id(source: String) -> Option<Self> {
        Some(Self::Text(CustomerText::ExternalId(source)))
    }

    fn kind(self) -> FieldKind<Self> {
        match self {
            Self::Id(field) => FieldKind::Id(field),
            Self::Status(field) => FieldKind::Enum(field),
            Self::Time(field) => FieldKind::Time(field),
            Self::Text(field) => FieldKind::Text(field),
        }
    }
}

field_names!(StatusField => "status");

impl EnumField for StatusField {
    type Value = Status;
    const VALUES: &'static [Status] = &[Status::Active, Status::Prospective, Status::Inactive];

    fn value_name(value: Status) -> &'static str {
        match value {
            Status::Active => "ACTIVE",
            Status::Prospective => "PROSPECTIVE",
            Status::Inactive => "INACTIVE",
        }
    }
}

impl FieldName for CustomerText {
    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed(match self {
            CustomerText::GivenName => "given_name",
            CustomerText::FamilyName => "family_name",
            CustomerText::Email => "email",
            CustomerText::Phone => "phone",
            CustomerText::Company => "company",
            CustomerText::BusinessId => "business_id",
            CustomerText::Address(part) => {
                return Cow::Owned(format!("address.{}", part.key()));
            }
            CustomerText::Label(key) => return Cow::Owned(format!("labels.{key}")),
            CustomerText::ExternalId(source) => {
                return Cow::Owned(format!("external_ids.{source}"));
            }
        })
    }
}

impl TextField for CustomerText {
    type Label = LabelKey;

    /// Only labels can be absent.
    fn presence(&self) -> Option<LabelKey> {
        if let CustomerText::Label(key) = self {
            Some(LabelKey(key.clone()))
        } else {
            None
        }
    }

    /// An external id is a key: matched exactly, never by range or substring.
    fn ordered(&self) -> bool {
        !matches!(self, CustomerText::ExternalId(_))
    }

    fn normalise(&self, text: String) -> String {
        match self {
            // Stored in upper case; a lower-case value still matches.
            CustomerText::Address(AddressPart::CountryCode) => text.to_uppercase(),
            CustomerText::GivenName
            | CustomerText::FamilyName
            | CustomerText::Email
            | CustomerText::Phone
            | CustomerText::Company
            | CustomerText::BusinessId
            | CustomerText::Address(
                AddressPart::Locality | AddressPart::Region | AddressPart::PostalCode,
            )
            | CustomerText::Label(_)
            | CustomerText::ExternalId(_) => text,
        }
    }
}
