//! The fields of ListCompanies' filter.

use std::borrow::Cow;

use super::{FieldKind, FieldName, FilterField, IdField, LabelKey, NoField, TextField, TimeField};

/// A field of a company filter, grouped by kind. Companies have no enumerated field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompanyField {
    /// `name` or `uid`.
    Id(IdField),
    /// `create_time` or `update_time`.
    Time(TimeField),
    /// A text field: `display_name`, `domain`, `business_id`, labels.
    Text(CompanyText),
}

/// The text fields of companies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompanyText {
    /// `display_name`
    DisplayName,
    /// `domain` (stored in lower case and compared so).
    Domain,
    /// `business_id`
    BusinessId,
    /// `labels.<key>`; holds the label key (without the `labels.` prefix).
    Label(String),
}

impl FilterField for CompanyField {
    type Id = IdField;
    type Enum = NoField;
    type Time = TimeField;
    type Text = CompanyText;

    const FIELDS: &'static [Self] = &[
        Self::Id(IdField::Name),
        Self::Id(IdField::Uid),
        Self::Text(CompanyText::DisplayName),
        Self::Text(CompanyText::Domain),
        Self::Text(CompanyText::BusinessId),
        Self::Time(TimeField::CreateTime),
        Self::Time(TimeField::UpdateTime),
    ];
    const COLLECTION: &'static str = "companies";

    fn label(key: String) -> Option<Self> {
        Some(Self::Text(CompanyText::Label(key)))
    }

    fn kind(self) -> FieldKind<Self> {
        match self {
            Self::Id(field) => FieldKind::Id(field),
            Self::Time(field) => FieldKind::Time(field),
            Self::Text(field) => FieldKind::Text(field),
        }
    }
}

impl FieldName for CompanyText {
    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed(match self {
            CompanyText::DisplayName => "display_name",
            CompanyText::Domain => "domain",
            CompanyText::BusinessId => "business_id",
            CompanyText::Label(key) => return Cow::Owned(format!("labels.{key}")),
        })
    }
}

impl TextField for CompanyText {
    type Label = LabelKey;

    /// Only labels can be absent.
    fn presence(&self) -> Option<LabelKey> {
        if let CompanyText::Label(key) = self {
            Some(LabelKey(key.clone()))
        } else {
            None
        }
    }
}
