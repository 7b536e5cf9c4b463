//! Merging duplicate customers (MergeCustomers, UnmergeCustomers): the field policy, the
//! merged fields, and the record a merge keeps of what it changed.
//!
//! Everything here is pure: [`merged_data`] decides the target's fields from the target and
//! its sources under a [`FieldPolicy`]; [`unmerged_data`] decides what the target gets back
//! when the merge is undone, keeping what was changed on the target since.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    FieldViolation, Violations,
    customer::{CustomerData, MAX_EXTERNAL_IDS, MAX_LABELS},
    names::{CustomerName, NoteName, ResourceName},
};

/// The resource type of merge records (`ResourceInfo`).
pub const MERGE_TYPE: &str = "customer.example.com/CustomerMerge";

/// What MergeCustomers and UnmergeCustomers answer: the target, the sources and the merge
/// record, each as it is after the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeOutcome {
    /// The target.
    pub customer: super::customer::Customer,
    /// The sources, in request order.
    pub sources: Vec<super::customer::Customer>,
    /// The merge record.
    pub merge: Merge,
}

/// Most sources of one merge.
pub const MAX_SOURCES: usize = 10;

/// The fields a [`FieldPolicy`] may take from a source.
pub const CHOOSABLE_FIELDS: [&str; 8] = [
    "given_name",
    "family_name",
    "email",
    "phone",
    "address",
    "status",
    "company",
    "business_id",
];

/// Which source each chosen field of the target comes from; every other field is the
/// target's (the target wins), or, when the target has none, the first source's that has
/// one (`phone`, `address`, `company`, `business_id`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPolicy {
    /// Field path -> source.
    pub choices: BTreeMap<String, CustomerName>,
}

impl FieldPolicy {
    /// The policy of request field `field_policy.choices` (`choices`: path -> source name),
    /// whose sources must be among `sources`.
    pub fn parse(
        choices: &BTreeMap<String, String>,
        sources: &[CustomerName],
    ) -> Result<Self, Violations> {
        let mut violations = Violations::new();
        let mut parsed = BTreeMap::new();
        for (path, source) in choices {
            let field = format!("field_policy.choices[\"{}\"]", super::customer::clip(path));
            if !CHOOSABLE_FIELDS.contains(&path.as_str()) {
                violations.add(
                    field,
                    format!(
                        "is not a field a merge can choose; choose one of {}",
                        CHOOSABLE_FIELDS.join(", ")
                    ),
                );
                continue;
            }
            match CustomerName::parse(&field, source) {
                Ok(name) if sources.contains(&name) => {
                    parsed.insert(path.clone(), name);
                }
                Ok(_) => violations.add(field, "must be one of `sources`"),
                Err(violation) => violations.extend(violation.into()),
            }
        }
        violations.into_result(Self { choices: parsed })
    }
}

/// The target's fields after merging `sources` (in request order) into `target` under
/// `policy`: chosen fields from their source, empty optional fields from the first source
/// that has one, labels and external ids united (the target's value wins for a key both
/// have; then the sources' in order). Refused when the union has more labels or external
/// ids than a customer may hold.
pub fn merged_data(
    target: &CustomerData,
    sources: &[(CustomerName, CustomerData)],
    policy: &FieldPolicy,
) -> Result<CustomerData, FieldViolation> {
    let mut merged = target.clone();
    let chosen = |path: &str| {
        policy
            .choices
            .get(path)
            .and_then(|name| sources.iter().find(|(source, _)| source == name))
            .map(|(_, data)| data)
    };
    if let Some(source) = chosen("given_name") {
        merged.given_name.clone_from(&source.given_name);
    }
    if let Some(source) = chosen("family_name") {
        merged.family_name.clone_from(&source.family_name);
    }
    if let Some(source) = chosen("email") {
        merged.email.clone_from(&source.email);
    }
    if let Some(source) = chosen("status") {
        merged.status = source.status;
    }
    let first = |get: fn(&CustomerData) -> bool| sources.iter().map(|(_, d)| d).find(|d| get(d));
    match chosen("phone") {
        Some(source) => merged.phone.clone_from(&source.phone),
        None if merged.phone.is_none() => {
            merged.phone = first(|d| d.phone.is_some()).and_then(|d| d.phone.clone());
        }
        None => {}
    }
    match chosen("address") {
        Some(source) => merged.address.clone_from(&source.address),
        None if merged.address.is_none() => {
            merged.address = first(|d| d.address.is_some()).and_then(|d| d.address.clone());
        }
        None => {}
    }
    match chosen("company") {
        Some(source) => merged.company.clone_from(&source.company),
        None if merged.company.is_none() => {
            merged.company = first(|d| d.company.is_some()).and_then(|d| d.company.clone());
        }
        None => {}
    }
    match chosen("business_id") {
        Some(source) => merged.business_id.clone_from(&source.business_id),
        None if merged.business_id.is_none() => {
            merged.business_id =
                first(|d| d.business_id.is_some()).and_then(|d| d.business_id.clone());
        }
        None => {}
    }
    for (_, source) in sources {
        for (key, value) in &source.labels {
            merged
                .labels
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
        for (key, value) in &source.external_ids {
            merged
                .external_ids
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
    }
    if merged.labels.len() > MAX_LABELS {
        return Err(FieldViolation {
            field: "sources".into(),
            description: format!(
                "the merged customer would have {} labels, more than {MAX_LABELS}",
                merged.labels.len()
            ),
        });
    }
    if merged.external_ids.len() > MAX_EXTERNAL_IDS {
        return Err(FieldViolation {
            field: "sources".into(),
            description: format!(
                "the merged customer would have {} external ids, more than {MAX_EXTERNAL_IDS}",
                merged.external_ids.len()
            ),
        });
    }
    Ok(merged)
}

/// The target's fields when its merge is undone: `current` with every field the merge
/// changed (`before` → `after`) back at its `before` value — unless it was changed again
/// since, which is kept. Labels and external ids go back key by key: a key the merge added
/// is removed while it still has the merged value.
pub fn unmerged_data(
    current: &CustomerData,
    before: &CustomerData,
    after: &CustomerData,
) -> CustomerData {
    let mut restored = current.clone();
    macro_rules! back {
        ($($field:ident),*) => {$(
            if current.$field == after.$field {
                restored.$field.clone_from(&before.$field);
            }
        )*};
    }
    back!(
        given_name,
        family_name,
        email,
        phone,
        address,
        status,
        company,
        business_id
    );
    let maps = |current: &BTreeMap<String, String>,
                before: &BTreeMap<String, String>,
                after: &BTreeMap<String, String>| {
        let mut restored = current.clone();
        for (key, value) in after {
            if !before.contains_key(key) && current.get(key) == Some(value) {
                restored.remove(key);
            }
        }
        restored
    };
    restored.labels = maps(&current.labels, &before.labels, &after.labels);
    restored.external_ids = maps(
        &current.external_ids,
        &before.external_ids,
        &after.external_ids,
    );
    restored
}

/// A note a merge moved from a source to the target (or an unmerge back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MovedNote {
    /// Its name before the move.
    pub previous: NoteName,
    /// Its name after it.
    pub name: NoteName,
}

/// The record of one merge: its audit, and what an unmerge needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    /// The merge's id (`customers/{target}/merges/{id}`).
    pub id: Uuid,
    /// The customer the sources were merged into.
    pub target: CustomerName,
    /// The merged customers, in request order.
    pub sources: Vec<CustomerName>,
    /// The target's fields the merge changed.
    pub changed_fields: Vec<String>,
    /// The notes moved to the target.
    pub moved_notes: Vec<MovedNote>,
    /// Who merged.
    pub actor: String,
    /// When.
    pub merge_time: DateTime<Utc>,
    /// When it was undone.
    pub unmerge_time: Option<DateTime<Utc>>,
    /// Who undid it.
    pub unmerged_by: Option<String>,
}

impl Merge {
    /// `customers/{target}/merges/{id}`.
    pub fn name(&self) -> String {
        merge_name(self.target, self.id)
    }
}

/// `customers/{target}/merges/{id}`.
pub fn merge_name(target: CustomerName, id: Uuid) -> String {
    format!("{target}/merges/{id}")
}

/// What UnmergeCustomers names: a merge, or a target (its latest merge not undone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeRef {
    /// `customers/{target}/merges/{id}`.
    Merge(CustomerName, Uuid),
    /// `customers/{target}`.
    Target(CustomerName),
}

impl MergeRef {
    /// Parses request field `field`.
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldViolation> {
        if let Some((target, id)) = text.split_once("/merges/") {
            let target = CustomerName::parse(field, target)?;
            let id = super::names::parse_uuid(id).ok_or_else(|| FieldViolation {
                field: field.to_owned(),
                description: "must be `customers/{customer}/merges/{merge}` with UUID ids".into(),
            })?;
            return Ok(Self::Merge(target, id));
        }
        CustomerName::parse(field, text)
            .map(Self::Target)
            .map_err(|violation| FieldViolation {
                field: violation.field,
                description: format!(
                    "{}; or name a merge, `customers/{{customer}}/merges/{{merge}}`",
                    violation.description
                ),
            })
    }

    /// The target.
    pub fn target(self) -> CustomerName {
        match self {
            Self::Merge(target, _) | Self::Target(target) => target,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::customer::Status;

    fn data(given: &str, email: &str) -> CustomerData {
        CustomerData {
            given_name: given.into(),
            family_name: "Lee".into(),
            email: email.into(),
            phone: None,
            address: None,
            status: Status::Active,
            company: None,
            business_id: None,
            labels: BTreeMap::new(),
            external_ids: BTreeMap::new(),
        }
    }

    #[test]
    fn the_target_wins_fills_its_gaps_and_unites_maps() {
        let a = CustomerName(Uuid::now_v7());
        let b = CustomerName(Uuid::now_v7());
        let mut target = data("Ann", "ann@example.com");
        target.labels.insert("tier".into(), "gold".into());
        let mut first = data("Anne", "anne@example.com");
        first.phone = Some("+4930111".into());
        first.labels.insert("tier".into(), "silver".into());
        first.external_ids.insert("crm".into(), "1".into());
        let mut second = data("Annie", "annie@example.com");
        second.phone = Some("+4930222".into());
        second.external_ids.insert("shop".into(), "2".into());
        let sources = [(a, first), (b, second)];

        let merged = merged_data(&target, &sources, &FieldPolicy::default()).unwrap();
        assert_eq!(merged.given_name, "Ann");
        assert_eq!(merged.phone.as_deref(), Some("+4930111"));
        assert_eq!(merged.labels["tier"], "gold");
        assert_eq!(
            merged.external_ids.keys().collect::<Vec<_>>(),
            ["crm", "shop"]
        );

        let policy = FieldPolicy::parse(
            &BTreeMap::from([
                ("email".to_owned(), b.to_string()),
                ("phone".to_owned(), b.to_string()),
            ]),
            &[a, b],
        )
        .unwrap();
        let chosen = merged_data(&target, &sources, &policy).unwrap();
        assert_eq!(chosen.email, "annie@example.com");
        assert_eq!(chosen.phone.as_deref(), Some("+4930222"));

        let back = unmerged_data(&chosen, &target, &chosen);
        assert_eq!(back, target);
    }

    #[test]
    fn an_unmerge_keeps_what_changed_since() {
        let before = data("Ann", "ann@example.com");
        let mut after = before.clone();
        after.external_ids.insert("crm".into(), "1".into());
        after.phone = Some("+4930111".into());
        let mut current = after.clone();
        current.given_name = "Anna".into();
        current.external_ids.insert("shop".into(), "9".into());
        let back = unmerged_data(&current, &before, &after);
        assert_eq!(back.given_name, "Anna");
        assert_eq!(back.phone, None);
        assert_eq!(back.external_ids.keys().collect::<Vec<_>>(), ["shop"]);
    }

    #[test]
    fn a_policy_names_choosable_fields_and_sources_only() {
        let a = CustomerName(Uuid::now_v7());
        let other = CustomerName(Uuid::now_v7());
        let errors = FieldPolicy::parse(
            &BTreeMap::from([
                ("labels".to_owned(), a.to_string()),
                ("email".to_owned(), other.to_string()),
                ("phone".to_owned(), "x".to_owned()),
            ]),
            &[a],
        )
        .unwrap_err();
        let fields: Vec<String> = errors.into_vec().into_iter().map(|v| v.field).collect();
        assert_eq!(
            fields,
            [
                "field_policy.choices[\"email\"]",
                "field_policy.choices[\"labels\"]",
                "field_policy.choices[\"phone\"]",
            ]
        );
    }
}
