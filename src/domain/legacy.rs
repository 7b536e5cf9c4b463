//! The v1 fingerprint text: frozen functions reproducing, from today's typed trees, exactly
//! the text the previous version hashed into page-token fingerprints. That version built it
//! from the Rust `Debug` output of its parsed filter and order_by (`format!("{filter:?}")`),
//! so it named Rust enum variants (`Compare { field: Email, op: Eq, value: Text("a") }`)
//! that have since been renamed or restructured. Tokens it issued stay valid as long as the
//! service can still compute that text, which these functions do without depending on any
//! current Rust name: every variant name is spelled out here, by an exhaustive match, and
//! must never change. New fingerprints should use [`Expr::canonical`] and
//! [`super::order_by::canonical`].
//!
//! The golden tests below were recorded from the previous version's `Debug` output (commit
//! c6e36ea) for inputs covering every field, operator and value kind.

use chrono::{DateTime, SecondsFormat, Utc};

use super::{
    customer::Status,
    event::EventType,
    filter::{
        AddressPart, CmpOp, CompanyField, CompanyText, Compare, CustomerField, CustomerText,
        EnumField, EqOp, EventField, Expr, FilterField, IdField, LabelKey, NoField, StatusField,
        TimeField,
    },
    order_by::{CompanyOrder, CustomerOrder, OrderKey},
};

/// The v1 fingerprint text of a ListCustomers filter: what `format!("{filter:?}")` printed
/// for the previous version's parsed `Option<Expr>`.
pub fn legacy_debug_filter(filter: &Option<Expr<CustomerField>>) -> String {
    legacy_option(filter)
}

/// The v1 fingerprint text of a ListCompanies filter (the previous version parsed company
/// filters into the same tree type as customer filters).
pub fn legacy_debug_company_filter(filter: &Option<Expr<CompanyField>>) -> String {
    legacy_option(filter)
}

/// The v1 fingerprint text of a ListCustomers order_by: what `format!("{order:?}")` printed
/// for the previous version's keys.
pub fn legacy_debug_order(order: &[OrderKey<CustomerOrder>]) -> String {
    legacy_keys(order, |key| match key {
        CustomerOrder::CreateTime => "CreateTime",
        CustomerOrder::UpdateTime => "UpdateTime",
        CustomerOrder::FamilyName => "FamilyName",
        CustomerOrder::GivenName => "GivenName",
        CustomerOrder::Email => "Email",
    })
}

/// The v1 fingerprint text of a ListCompanies order_by.
pub fn legacy_debug_company_order(order: &[OrderKey<CompanyOrder>]) -> String {
    legacy_keys(order, |key| match key {
        CompanyOrder::CreateTime => "CreateTime",
        CompanyOrder::UpdateTime => "UpdateTime",
        CompanyOrder::DisplayName => "DisplayName",
    })
}

/// The v1 fingerprint text of a ListCustomerEvents filter: what `format!("{filter:?}")`
/// printed for the previous version's restriction list (`[]` for no filter).
///
/// The previous language was a conjunction of comparisons only, so a filter using `OR` or
/// `NOT` had no v1 text: it is given its [`Expr::canonical`] text instead, which never
/// starts with `[` and so never equals the v1 text of another filter.
pub fn legacy_debug_event_filter(filter: &Option<Expr<EventField>>) -> String {
    let Some(expr) = filter else {
        return "[]".to_owned();
    };
    let mut items = Vec::new();
    if !event_restrictions(expr, &mut items) {
        return expr.canonical();
    }
    format!("[{}]", items.join(", "))
}

/// Collects the v1 text of each restriction of the conjunction `expr`; `false` if `expr` is
/// not a conjunction of comparisons.
fn event_restrictions(expr: &Expr<EventField>, items: &mut Vec<String>) -> bool {
    match expr {
        Expr::And(left, right) => {
            event_restrictions(left, items) && event_restrictions(right, items)
        }
        Expr::Or(..) | Expr::Not(..) => false,
        Expr::Compare(Compare::Id { field, .. }) => match *field {},
        Expr::Compare(Compare::Enum {
            field: _,
            op,
            value,
        }) => {
            items.push(format!("Type({}, {})", eq_op(*op), event_type(*value)));
            true
        }
        Expr::Compare(Compare::Text { field: _, op, text }) => {
            items.push(format!("Actor({}, {text:?})", cmp_op(*op)));
            true
        }
        Expr::Compare(Compare::Time {
            field: _,
            op,
            time: at,
        }) => {
            items.push(format!("OccurTime({}, {})", cmp_op(*op), time(at)));
            true
        }
        // The actor accepts only `=` and `!=`, so a substring match is never parsed; it has
        // no v1 text either way.
        Expr::Contains { .. } => false,
        Expr::Present { field } => match *field {},
    }
}

/// A field as the previous version's shared customer/company tree named it: its `Field`
/// variant (`Email`, `Address(Locality)`, `Label("tier")`, `Status`, `Name`, `CreateTime`).
trait LegacyField {
    /// The variant's `Debug` text.
    fn legacy(&self) -> String;
}

/// An enumerated field whose values the previous version's tree held as a `Value` variant.
trait LegacyValue: EnumField {
    /// The value's `Debug` text: `Status(Active)`.
    fn legacy_value(value: Self::Value) -> String;
}

/// A resource whose trees the previous version printed as customer/company filters.
trait LegacyTree:
    FilterField<
        Id: LegacyField,
        Enum: LegacyField + LegacyValue,
        Time: LegacyField,
        Text: LegacyField + super::filter::TextField<Label: LegacyField>,
    >
{
}

impl LegacyTree for CustomerField {}

impl LegacyTree for CompanyField {}

impl LegacyField for CustomerText {
    fn legacy(&self) -> String {
        match self {
            CustomerText::GivenName => "GivenName".to_owned(),
            CustomerText::FamilyName => "FamilyName".to_owned(),
            CustomerText::Email => "Email".to_owned(),
            CustomerText::Phone => "Phone".to_owned(),
            CustomerText::Company => "Company".to_owned(),
            CustomerText::BusinessId => "BusinessId".to_owned(),
            CustomerText::Address(part) => format!("Address({})", address_part(*part)),
            CustomerText::Label(key) => format!("Label({key:?})"),
            // Newer than version 1, so no version-1 token can hold it; spelled like the rest.
            CustomerText::ExternalId(source) => format!("ExternalId({source:?})"),
        }
    }
}

impl LegacyField for CompanyText {
    fn legacy(&self) -> String {
        match self {
            CompanyText::DisplayName => "DisplayName".to_owned(),
            CompanyText::Domain => "Domain".to_owned(),
            CompanyText::BusinessId => "BusinessId".to_owned(),
            CompanyText::Label(key) => format!("Label({key:?})"),
        }
    }
}

impl LegacyField for StatusField {
    fn legacy(&self) -> String {
        "Status".to_owned()
    }
}

impl LegacyValue for StatusField {
    fn legacy_value(value: Status) -> String {
        let status = match value {
            Status::Active => "Active",
            Status::Prospective => "Prospective",
            Status::Inactive => "Inactive",
        };
        format!("Status({status})")
    }
}

impl LegacyField for IdField {
    fn legacy(&self) -> String {
        match self {
            IdField::Name => "Name",
            IdField::Uid => "Uid",
        }
        .to_owned()
    }
}

impl LegacyField for TimeField {
    fn legacy(&self) -> String {
        match self {
            TimeField::CreateTime => "CreateTime",
            TimeField::UpdateTime => "UpdateTime",
        }
        .to_owned()
    }
}

impl LegacyField for LabelKey {
    fn legacy(&self) -> String {
        format!("Label({:?})", self.0)
    }
}

impl LegacyField for NoField {
    fn legacy(&self) -> String {
        match *self {}
    }
}

impl LegacyValue for NoField {
    fn legacy_value(value: NoField) -> String {
        match value {}
    }
}

fn address_part(part: AddressPart) -> &'static str {
    match part {
        AddressPart::Locality => "Locality",
        AddressPart::Region => "Region",
        AddressPart::PostalCode => "PostalCode",
        AddressPart::CountryCode => "CountryCode",
    }
}

fn cmp_op(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "Eq",
        CmpOp::Ne => "Ne",
        CmpOp::Lt => "Lt",
        CmpOp::Le => "Le",
        CmpOp::Gt => "Gt",
        CmpOp::Ge => "Ge",
    }
}

fn eq_op(op: EqOp) -> &'static str {
    cmp_op(op.into())
}

fn event_type(kind: EventType) -> &'static str {
    match kind {
        EventType::CustomerRegistered => "CustomerRegistered",
        EventType::CustomerUpdated => "CustomerUpdated",
        EventType::CustomerDeleted => "CustomerDeleted",
        EventType::CustomerUndeleted => "CustomerUndeleted",
        EventType::CustomerPurged => "CustomerPurged",
        EventType::CustomerErased => "CustomerErased",
        EventType::CustomersMerged => "CustomersMerged",
        EventType::CustomersUnmerged => "CustomersUnmerged",
        EventType::CompanyCreated => "CompanyCreated",
        EventType::CompanyUpdated => "CompanyUpdated",
        EventType::CompanyDeleted => "CompanyDeleted",
        EventType::CompanyUndeleted => "CompanyUndeleted",
        EventType::NoteAdded => "NoteAdded",
        EventType::NoteUpdated => "NoteUpdated",
        EventType::NoteDeleted => "NoteDeleted",
    }
}

/// A time as chrono's `Debug` printed it: RFC 3339 in UTC with `Z`, fractional seconds in
/// groups of three digits only when present.
fn time(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn legacy_option<F: LegacyTree>(filter: &Option<Expr<F>>) -> String {
    match filter {
        None => "None".to_owned(),
        Some(expr) => format!("Some({})", legacy_expr(expr)),
    }
}

fn legacy_expr<F: LegacyTree>(expr: &Expr<F>) -> String {
    match expr {
        Expr::And(left, right) => format!("And({}, {})", legacy_expr(left), legacy_expr(right)),
        Expr::Or(left, right) => format!("Or({}, {})", legacy_expr(left), legacy_expr(right)),
        Expr::Not(inner) => format!("Not({})", legacy_expr(inner)),
        Expr::Compare(Compare::Id { field, op, id }) => format!(
            "Compare {{ field: {}, op: {}, value: Id({id}) }}",
            field.legacy(),
            eq_op(*op)
        ),
        Expr::Compare(Compare::Enum { field, op, value }) => format!(
            "Compare {{ field: {}, op: {}, value: {} }}",
            field.legacy(),
            eq_op(*op),
            F::Enum::legacy_value(*value)
        ),
        Expr::Compare(Compare::Time {
            field,
            op,
            time: at,
        }) => format!(
            "Compare {{ field: {}, op: {}, value: Time({}) }}",
            field.legacy(),
            cmp_op(*op),
            time(at)
        ),
        Expr::Compare(Compare::Text { field, op, text }) => format!(
            "Compare {{ field: {}, op: {}, value: Text({text:?}) }}",
            field.legacy(),
            cmp_op(*op)
        ),
        Expr::Contains { field, text } => {
            format!("Contains {{ field: {}, text: {text:?} }}", field.legacy())
        }
        Expr::Present { field } => format!("Present {{ field: {} }}", field.legacy()),
    }
}

fn legacy_keys<K: Copy>(order: &[OrderKey<K>], name: impl Fn(K) -> &'static str) -> String {
    let keys: Vec<String> = order
        .iter()
        .map(|key| {
            format!(
                "OrderKey {{ field: {}, descending: {} }}",
                name(key.field),
                key.descending
            )
        })
        .collect();
    format!("[{}]", keys.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{filter, order_by};

    /// ListCustomers `filter` → `format!("{filter:?}")` of the parsed `Option<Expr>`.
    const CUSTOMER_FILTERS: &[(&str, &str)] = &[
        ("", r##"None"##),
        (
            "email = \"ann@example.com\"",
            r##"Some(Compare { field: Email, op: Eq, value: Text("ann@example.com") })"##,
        ),
        (
            "given_name != x",
            r##"Some(Compare { field: GivenName, op: Ne, value: Text("x") })"##,
        ),
        (
            "family_name < \"M\"",
            r##"Some(Compare { field: FamilyName, op: Lt, value: Text("M") })"##,
        ),
        (
            "phone <= \"+1555\"",
            r##"Some(Compare { field: Phone, op: Le, value: Text("+1555") })"##,
        ),
        (
            "company > acme",
            r##"Some(Compare { field: Company, op: Gt, value: Text("acme") })"##,
        ),
        (
            "business_id >= 1",
            r##"Some(Compare { field: BusinessId, op: Ge, value: Text("1") })"##,
        ),
        (
            "status = ACTIVE",
            r##"Some(Compare { field: Status, op: Eq, value: Status(Active) })"##,
        ),
        (
            "status != 'INACTIVE'",
            r##"Some(Compare { field: Status, op: Ne, value: Status(Inactive) })"##,
        ),
        (
            "status = PROSPECTIVE",
            r##"Some(Compare { field: Status, op: Eq, value: Status(Prospective) })"##,
        ),
        (
            "create_time > 2024-01-01T00:00:00Z",
            r##"Some(Compare { field: CreateTime, op: Gt, value: Time(2024-01-01T00:00:00Z) })"##,
        ),
        (
            "update_time <= \"2024-03-01T01:30:00.250+02:00\"",
            r##"Some(Compare { field: UpdateTime, op: Le, value: Time(2024-02-29T23:30:00.250Z) })"##,
        ),
        (
            "name = \"customers/0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6e\"",
            r##"Some(Compare { field: Name, op: Eq, value: Id(0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6e) })"##,
        ),
        (
            "uid != 0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6f",
            r##"Some(Compare { field: Uid, op: Ne, value: Id(0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6f) })"##,
        ),
        (
            "labels.tier = gold",
            r##"Some(Compare { field: Label("tier"), op: Eq, value: Text("gold") })"##,
        ),
        (
            "labels.\"my-key\":*",
            r##"Some(Present { field: Label("my-key") })"##,
        ),
        (
            "labels.app.tier:\"we\\\"b\\\\x\"",
            r##"Some(Contains { field: Label("app.tier"), text: "we\"b\\x" })"##,
        ),
        (
            "address.locality:\"San\" AND address.country_code = us",
            r##"Some(And(Contains { field: Address(Locality), text: "San" }, Compare { field: Address(CountryCode), op: Eq, value: Text("US") }))"##,
        ),
        (
            "address.region != CA OR address.postal_code >= 941",
            r##"Some(Or(Compare { field: Address(Region), op: Ne, value: Text("CA") }, Compare { field: Address(PostalCode), op: Ge, value: Text("941") }))"##,
        ),
        (
            "given_name:ann",
            r##"Some(Contains { field: GivenName, text: "ann" })"##,
        ),
        (
            "family_name = 'Ö\\'Brien 🎉'",
            r##"Some(Compare { field: FamilyName, op: Eq, value: Text("Ö'Brien 🎉") })"##,
        ),
        (
            "NOT status = ACTIVE",
            r##"Some(Not(Compare { field: Status, op: Eq, value: Status(Active) }))"##,
        ),
        (
            "-email:x",
            r##"Some(Not(Contains { field: Email, text: "x" }))"##,
        ),
        (
            "email=a OR email=b AND email=c",
            r##"Some(And(Or(Compare { field: Email, op: Eq, value: Text("a") }, Compare { field: Email, op: Eq, value: Text("b") }), Compare { field: Email, op: Eq, value: Text("c") }))"##,
        ),
        (
            "(email=a AND email=b) OR NOT (email=c)",
            r##"Some(Or(And(Compare { field: Email, op: Eq, value: Text("a") }, Compare { field: Email, op: Eq, value: Text("b") }), Not(Compare { field: Email, op: Eq, value: Text("c") })))"##,
        ),
        (
            "email=a email=b -labels.vip:*",
            r##"Some(And(And(Compare { field: Email, op: Eq, value: Text("a") }, Compare { field: Email, op: Eq, value: Text("b") }), Not(Present { field: Label("vip") })))"##,
        ),
        (
            "create_time = 2024-01-01T00:00:00.123456Z OR create_time = 2024-01-01T00:00:00.123456789Z",
            r##"Some(Or(Compare { field: CreateTime, op: Eq, value: Time(2024-01-01T00:00:00.123456Z) }, Compare { field: CreateTime, op: Eq, value: Time(2024-01-01T00:00:00.123456789Z) }))"##,
        ),
        (
            "given_name = \"a\tb\u{301}\\\\\" company:'\\\"'",
            r##"Some(And(Compare { field: GivenName, op: Eq, value: Text("a\tb\u{301}\\") }, Contains { field: Company, text: "\"" }))"##,
        ),
    ];

    /// ListCompanies `filter` → `format!("{filter:?}")`.
    const COMPANY_FILTERS: &[(&str, &str)] = &[
        ("", r##"None"##),
        (
            "display_name:\"acme\" AND domain = \"Acme.com\"",
            r##"Some(And(Contains { field: DisplayName, text: "acme" }, Compare { field: Domain, op: Eq, value: Text("Acme.com") }))"##,
        ),
        (
            "name = \"companies/0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6e\"",
            r##"Some(Compare { field: Name, op: Eq, value: Id(0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6e) })"##,
        ),
        (
            "uid = 0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6f",
            r##"Some(Compare { field: Uid, op: Eq, value: Id(0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6f) })"##,
        ),
        (
            "business_id = x OR labels.tier:*",
            r##"Some(Or(Compare { field: BusinessId, op: Eq, value: Text("x") }, Present { field: Label("tier") }))"##,
        ),
        (
            "create_time >= 2023-12-31T20:00:00-05:00",
            r##"Some(Compare { field: CreateTime, op: Ge, value: Time(2024-01-01T01:00:00Z) })"##,
        ),
        (
            "NOT (update_time < 2024-01-01T00:00:00Z) display_name != 'X'",
            r##"Some(And(Not(Compare { field: UpdateTime, op: Lt, value: Time(2024-01-01T00:00:00Z) }), Compare { field: DisplayName, op: Ne, value: Text("X") }))"##,
        ),
        (
            "labels.region = eu-west domain:acme",
            r##"Some(And(Compare { field: Label("region"), op: Eq, value: Text("eu-west") }, Contains { field: Domain, text: "acme" }))"##,
        ),
    ];

    /// ListCustomers `order_by` → `format!("{order:?}")` of the parsed keys.
    const CUSTOMER_ORDERS: &[(&str, &str)] = &[
        (
            "",
            r##"[OrderKey { field: CreateTime, descending: false }]"##,
        ),
        (
            "create_time",
            r##"[OrderKey { field: CreateTime, descending: false }]"##,
        ),
        (
            "update_time desc",
            r##"[OrderKey { field: UpdateTime, descending: true }]"##,
        ),
        (
            "family_name desc, given_name, email DESC",
            r##"[OrderKey { field: FamilyName, descending: true }, OrderKey { field: GivenName, descending: false }, OrderKey { field: Email, descending: true }]"##,
        ),
        (
            "email asc, create_time desc, update_time",
            r##"[OrderKey { field: Email, descending: false }, OrderKey { field: CreateTime, descending: true }, OrderKey { field: UpdateTime, descending: false }]"##,
        ),
    ];

    /// ListCompanies `order_by` → `format!("{order:?}")`.
    const COMPANY_ORDERS: &[(&str, &str)] = &[
        (
            "",
            r##"[OrderKey { field: CreateTime, descending: false }]"##,
        ),
        (
            "display_name desc, create_time",
            r##"[OrderKey { field: DisplayName, descending: true }, OrderKey { field: CreateTime, descending: false }]"##,
        ),
        (
            "update_time asc, display_name",
            r##"[OrderKey { field: UpdateTime, descending: false }, OrderKey { field: DisplayName, descending: false }]"##,
        ),
    ];

    /// ListCustomerEvents `filter` → `format!("{filter:?}")` of the restriction list.
    const EVENT_FILTERS: &[(&str, &str)] = &[
        ("", r##"[]"##),
        ("type = CustomerUpdated", r##"[Type(Eq, CustomerUpdated)]"##),
        (
            "event_type != \"CustomerDeleted\"",
            r##"[Type(Ne, CustomerDeleted)]"##,
        ),
        ("actor = \"svc\"", r##"[Actor(Eq, "svc")]"##),
        ("actor != x", r##"[Actor(Ne, "x")]"##),
        (
            "occur_time >= \"2026-01-02T03:04:05+01:00\"",
            r##"[OccurTime(Ge, 2026-01-02T02:04:05Z)]"##,
        ),
        (
            "type = NoteAdded AND actor != \"test-user\" AND occur_time < \"2026-01-01T00:00:00.5Z\"",
            r##"[Type(Eq, NoteAdded), Actor(Ne, "test-user"), OccurTime(Lt, 2026-01-01T00:00:00.500Z)]"##,
        ),
        (
            "occur_time = 2026-01-01T00:00:00Z AND occur_time != 2026-01-02T00:00:00Z AND occur_time <= 2026-01-03T00:00:00Z AND occur_time > 2026-01-04T00:00:00Z",
            r##"[OccurTime(Eq, 2026-01-01T00:00:00Z), OccurTime(Ne, 2026-01-02T00:00:00Z), OccurTime(Le, 2026-01-03T00:00:00Z), OccurTime(Gt, 2026-01-04T00:00:00Z)]"##,
        ),
    ];

    /// Checks that `legacy(parse(input))` is the recorded text for every case.
    fn check<T>(cases: &[(&str, &str)], parse: impl Fn(&str) -> T, legacy: impl Fn(&T) -> String) {
        for (input, want) in cases {
            assert_eq!(legacy(&parse(input)), *want, "{input}");
        }
    }

    #[test]
    fn filters_print_as_recorded() {
        check(
            CUSTOMER_FILTERS,
            |input| filter::parse::<CustomerField>(input).unwrap(),
            legacy_debug_filter,
        );
        check(
            COMPANY_FILTERS,
            |input| filter::parse::<CompanyField>(input).unwrap(),
            legacy_debug_company_filter,
        );
        check(
            EVENT_FILTERS,
            |input| filter::parse::<EventField>(input).unwrap(),
            legacy_debug_event_filter,
        );
    }

    #[test]
    fn orders_print_as_recorded() {
        check(
            CUSTOMER_ORDERS,
            |input| order_by::parse::<CustomerOrder>(input).unwrap(),
            |keys| legacy_debug_order(keys),
        );
        check(
            COMPANY_ORDERS,
            |input| order_by::parse::<CompanyOrder>(input).unwrap(),
            |keys| legacy_debug_company_order(keys),
        );
    }

    #[test]
    fn event_filters_the_previous_language_could_not_express_get_their_canonical_text() {
        for (input, want) in [
            (
                "type = CustomerRegistered OR type = 'CustomerDeleted'",
                "(type = CustomerRegistered OR type = CustomerDeleted)",
            ),
            ("NOT actor = x", r#"(NOT actor = "x")"#),
            (
                "actor = x AND (NOT actor = y)",
                r#"(actor = "x" AND (NOT actor = "y"))"#,
            ),
        ] {
            let parsed = filter::parse::<EventField>(input).unwrap();
            assert_eq!(legacy_debug_event_filter(&parsed), want, "{input}");
        }
        // Grouping a conjunction differently does not change its meaning or its v1 text.
        let grouped = filter::parse::<EventField>("actor = x AND (type = NoteAdded actor != y)");
        assert_eq!(
            legacy_debug_event_filter(&grouped.unwrap()),
            r#"[Actor(Eq, "x"), Type(Eq, NoteAdded), Actor(Ne, "y")]"#
        );
    }
}
