//! Golden record of the text the previous version hashed into page-token fingerprints: the
//! `Debug` output of the parsed filter and order_by (recorded from commit c6e36ea).

#[cfg(test)]
mod tests {
    use crate::domain::{
        event::parse_event_filter,
        filter::{self, Scope},
        order_by,
    };

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

    #[test]
    fn customer_filters_print_as_recorded() {
        for (input, want) in CUSTOMER_FILTERS {
            let parsed = filter::parse(input).unwrap();
            assert_eq!(format!("{parsed:?}"), *want, "{input}");
        }
    }

    #[test]
    fn company_filters_print_as_recorded() {
        for (input, want) in COMPANY_FILTERS {
            let parsed = filter::parse_for(input, Scope::Companies).unwrap();
            assert_eq!(format!("{parsed:?}"), *want, "{input}");
        }
    }

    #[test]
    fn orders_print_as_recorded() {
        for (input, want) in CUSTOMER_ORDERS {
            let parsed = order_by::parse(input).unwrap();
            assert_eq!(format!("{parsed:?}"), *want, "{input}");
        }
        for (input, want) in COMPANY_ORDERS {
            let parsed = order_by::parse_company(input).unwrap();
            assert_eq!(format!("{parsed:?}"), *want, "{input}");
        }
    }

    #[test]
    fn event_filters_print_as_recorded() {
        for (input, want) in EVENT_FILTERS {
            let parsed = parse_event_filter(input).unwrap();
            assert_eq!(format!("{parsed:?}"), *want, "{input}");
        }
    }
}
