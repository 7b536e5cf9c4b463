//! Filters as SQL: the typed [`Expr`] of each resource (customers, companies, events) as a
//! boxed diesel condition on its table.
//!
//! One walk ([`condition`]) handles `AND`, `OR` and `NOT`; each resource says, through
//! [`Translate`], what its comparisons, substring matches and presence tests mean in SQL.
//! The filter's types already pair every field with a value of its kind (and give a
//! resource without some kind of field an uninhabited [`NoField`]), so every match here is
//! exhaustive and every tree becomes a real condition: there is no fallback for "cannot
//! happen". Every value is a bind parameter, never SQL text.

use diesel::{
    dsl::not,
    expression::BoxableExpression,
    pg::Pg,
    prelude::*,
    sql_types::{Bool, Text},
};

use super::schema::{companies, customers, events};
use crate::domain::filter::{
    ActorField, CmpOp, CompanyField, CompanyText, Compare, CustomerField, CustomerText, EqOp,
    EventField, EventTypeField, Expr, FilterField, IdField, LabelKey, LabelOf, NoField,
    OccurTimeField, StatusField, TimeField,
};

/// A boolean SQL condition over `table`.
pub type Condition<T> = Box<dyn BoxableExpression<T, Pg, SqlType = Bool>>;

diesel::define_sql_function! {
    /// SQL `lower(text)`.
    fn lower(x: Text) -> Text;
}

/// How one resource's restrictions read in SQL.
pub trait Translate: FilterField {
    /// The table the resource is stored in.
    type Table: 'static;

    /// `field op value`.
    fn compare(compare: &Compare<Self>) -> Condition<Self::Table>;
    /// `field:"text"`, given the LIKE pattern matching the text anywhere, case-insensitively.
    fn contains(field: &Self::Text, pattern: String) -> Condition<Self::Table>;
    /// `field:*`.
    fn present(field: &LabelOf<Self>) -> Condition<Self::Table>;
}

/// The filter as a SQL condition on the resource's table.
pub fn condition<F: Translate>(expr: &Expr<F>) -> Condition<F::Table> {
    match expr {
        Expr::And(left, right) => Box::new(condition(left).and(condition(right))),
        Expr::Or(left, right) => Box::new(condition(left).or(condition(right))),
        Expr::Not(inner) => Box::new(not(condition(inner))),
        Expr::Compare(compare) => F::compare(compare),
        Expr::Contains { field, text } => F::contains(field, format!("%{}%", escape_like(text))),
        Expr::Present { field } => F::present(field),
    }
}

/// The condition of the comparison `op`: `$eq` or `$ne` for equality, `$ordered op $value`
/// for the orderings. One arm runs, so each may move what the others use.
macro_rules! by_op {
    ($op:expr, eq: $eq:expr, ne: $ne:expr, ordered: $ordered:expr, $value:expr) => {{
        let condition: Condition<_> = match $op {
            CmpOp::Eq => Box::new($eq),
            CmpOp::Ne => Box::new($ne),
            CmpOp::Lt => Box::new($ordered.lt($value)),
            CmpOp::Le => Box::new($ordered.le($value)),
            CmpOp::Gt => Box::new($ordered.gt($value)),
            CmpOp::Ge => Box::new($ordered.ge($value)),
        };
        condition
    }};
}

/// `column op value` for each comparison, over any column type.
macro_rules! compare_with {
    ($column:expr, $op:expr, $value:expr) => {{
        let (column, value) = ($column, $value);
        by_op!($op, eq: column.eq(value), ne: column.ne(value), ordered: column, value)
    }};
}

/// `column = value` or `column != value`.
macro_rules! equality {
    ($column:expr, $op:expr, $value:expr) => {{
        let (column, value) = ($column, $value);
        let condition: Condition<_> = match $op {
            EqOp::Eq => Box::new(column.eq(value)),
            EqOp::Ne => Box::new(column.ne(value)),
        };
        condition
    }};
}

/// `nullable_column op value`: equality treats NULL as a value (a customer without a phone
/// satisfies `phone != "+1…"`); ordering comparisons never match NULL.
macro_rules! compare_nullable {
    ($column:expr, $op:expr, $value:expr) => {{
        let (column, value): (_, String) = ($column, $value);
        by_op!(
            $op,
            eq: column.is_not_distinct_from(value),
            ne: column.is_distinct_from(value),
            ordered: column.assume_not_null(),
            value
        )
    }};
}

/// `labels.<key> op value` over a `labels` JSONB column: equality by containment (what the
/// labels GIN index answers), ordering on the text value (never matching a missing key).
macro_rules! compare_label {
    ($labels:expr, $key:expr, $op:expr, $value:expr) => {{
        let (key, value): (&String, &String) = ($key, $value);
        by_op!(
            $op,
            eq: $labels.contains(label_object(key, value)),
            ne: not($labels.contains(label_object(key, value))),
            ordered: $labels.retrieve_as_text(key.clone()).assume_not_null(),
            value.clone()
        )
    }};
}

/// `create_time op value` or `update_time op value` on a resource table.
macro_rules! compare_time {
    ($table:ident, $field:expr, $op:expr, $time:expr) => {
        match $field {
            TimeField::CreateTime => compare_with!($table::create_time, $op, $time),
            TimeField::UpdateTime => compare_with!($table::update_time, $op, $time),
        }
    };
}

/// `column:"text"` given the LIKE pattern, for a nullable text column (which NULL never
/// matches).
macro_rules! contains_nullable {
    ($column:expr, $pattern:expr) => {
        Box::new($column.assume_not_null().ilike($pattern))
    };
}

/// `labels.<key>:"text"` given the LIKE pattern, over a `labels` JSONB column.
macro_rules! contains_label {
    ($labels:expr, $key:expr, $pattern:expr) => {
        contains_nullable!($labels.retrieve_as_text($key.clone()), $pattern)
    };
}

/// `{key: value}`, the JSON a label equality is tested by containment with.
fn label_object(key: &str, value: &str) -> serde_json::Value {
    serde_json::json!({ key: value })
}

/// Escapes `%`, `_` and `\` so user text matches literally inside a LIKE pattern.
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

impl Translate for CustomerField {
    type Table = customers::table;

    fn compare(compare: &Compare<Self>) -> Condition<customers::table> {
        match compare {
            Compare::Id {
                field: IdField::Name | IdField::Uid,
                op,
                id,
            } => equality!(customers::id, op, *id),
            Compare::Enum {
                field: StatusField,
                op,
                value,
            } => equality!(customers::status, op, value.number()),
            Compare::Time { field, op, time } => compare_time!(customers, field, op, *time),
            Compare::Text { field, op, text } => match field {
                CustomerText::GivenName => compare_with!(customers::given_name, op, text.clone()),
                CustomerText::FamilyName => {
                    compare_with!(customers::family_name, op, text.clone())
                }
                // Emails are unique case-insensitively, so they also match case-insensitively.
                CustomerText::Email => {
                    compare_with!(lower(customers::email), op, lower(text.clone()))
                }
                CustomerText::Phone => compare_nullable!(customers::phone, op, text.clone()),
                CustomerText::Company => compare_nullable!(customers::company, op, text.clone()),
                CustomerText::BusinessId => {
                    compare_nullable!(customers::business_id, op, text.clone())
                }
                CustomerText::Address(part) => compare_nullable!(
                    customers::address.retrieve_as_text(part.key()),
                    op,
                    text.clone()
                ),
                CustomerText::Label(key) => compare_label!(customers::labels, key, op, text),
                // Containment, answered by the external_ids GIN index; the parser allows
                // `=` and `!=` only.
                CustomerText::ExternalId(source) => match op {
                    CmpOp::Ne => Box::new(not(
                        customers::external_ids.contains(label_object(source, text))
                    )),
                    _ => Box::new(customers::external_ids.contains(label_object(source, text))),
                },
            },
        }
    }

    /// Answered by the trigram indexes.
    fn contains(field: &CustomerText, pattern: String) -> Condition<customers::table> {
        match field {
            CustomerText::GivenName => Box::new(customers::given_name.ilike(pattern)),
            CustomerText::FamilyName => Box::new(customers::family_name.ilike(pattern)),
            CustomerText::Email => Box::new(customers::email.ilike(pattern)),
            CustomerText::Phone => contains_nullable!(customers::phone, pattern),
            CustomerText::Company => contains_nullable!(customers::company, pattern),
            CustomerText::BusinessId => contains_nullable!(customers::business_id, pattern),
            CustomerText::Address(part) => {
                contains_nullable!(customers::address.retrieve_as_text(part.key()), pattern)
            }
            CustomerText::Label(key) => contains_label!(customers::labels, key, pattern),
            // Not reached: the parser refuses `:` on external ids (not ordered).
            CustomerText::ExternalId(source) => {
                contains_label!(customers::external_ids, source, pattern)
            }
        }
    }

    fn present(field: &LabelKey) -> Condition<customers::table> {
        Box::new(customers::labels.has_key(field.0.clone()))
    }
}

impl Translate for CompanyField {
    type Table = companies::table;

    fn compare(compare: &Compare<Self>) -> Condition<companies::table> {
        match compare {
            Compare::Id {
                field: IdField::Name | IdField::Uid,
                op,
                id,
            } => equality!(companies::id, op, *id),
            Compare::Enum { field, .. } => match *field {},
            Compare::Time { field, op, time } => compare_time!(companies, field, op, *time),
            Compare::Text { field, op, text } => match field {
                CompanyText::DisplayName => {
                    compare_with!(companies::display_name, op, text.clone())
                }
                // Domains are stored in lowercase; compare the way they are stored.
                CompanyText::Domain => {
                    compare_nullable!(companies::domain, op, text.to_ascii_lowercase())
                }
                CompanyText::BusinessId => {
                    compare_nullable!(companies::business_id, op, text.clone())
                }
                CompanyText::Label(key) => compare_label!(companies::labels, key, op, text),
            },
        }
    }

    fn contains(field: &CompanyText, pattern: String) -> Condition<companies::table> {
        match field {
            CompanyText::DisplayName => Box::new(companies::display_name.ilike(pattern)),
            CompanyText::Domain => contains_nullable!(companies::domain, pattern),
            CompanyText::BusinessId => contains_nullable!(companies::business_id, pattern),
            CompanyText::Label(key) => contains_label!(companies::labels, key, pattern),
        }
    }

    fn present(field: &LabelKey) -> Condition<companies::table> {
        Box::new(companies::labels.has_key(field.0.clone()))
    }
}

impl Translate for EventField {
    type Table = events::table;

    fn compare(compare: &Compare<Self>) -> Condition<events::table> {
        match compare {
            Compare::Id { field, .. } => match *field {},
            Compare::Enum {
                field: EventTypeField,
                op,
                value,
            } => equality!(events::event_type, op, value.as_str()),
            Compare::Time {
                field: OccurTimeField,
                op,
                time,
            } => compare_with!(events::occur_time, op, *time),
            Compare::Text {
                field: ActorField,
                op,
                text,
            } => compare_with!(events::actor, op, text.clone()),
        }
    }

    /// The filter language accepts only `=` and `!=` on the actor, but the substring match
    /// has a meaning all the same.
    fn contains(_: &ActorField, pattern: String) -> Condition<events::table> {
        Box::new(events::actor.ilike(pattern))
    }

    fn present(field: &NoField) -> Condition<events::table> {
        match *field {}
    }
}

#[cfg(test)]
mod tests {
    use diesel::debug_query;

    use super::*;
    use crate::domain::filter::parse;

    #[test]
    fn like_metacharacters_are_escaped() {
        assert_eq!(escape_like(r"50%_a\b"), r"50\%\_a\\b");
    }

    /// The SQL of `filter` over `F`'s table, binds included.
    fn sql<F: Translate>(filter: &str) -> String
    where
        F::Table: diesel::Table + diesel::query_builder::AsQuery + 'static,
    {
        let expr = parse::<F>(filter).unwrap().unwrap();
        debug_query::<Pg, _>(&condition(&expr)).to_string()
    }

    #[test]
    fn every_resource_filter_becomes_bound_sql() {
        assert_eq!(
            sql::<CustomerField>(r#"status != INACTIVE AND (email = "A@x.io" OR -labels.vip:*)"#),
            r#"(("customers"."status" != $1) AND ((lower("customers"."email") = lower($2)) OR  NOT (("customers"."labels" ? $3)))) -- binds: [3, "A@x.io", "vip"]"#
        );
        assert_eq!(
            sql::<CompanyField>(r#"domain = "ACME.com" OR display_name:"50%""#),
            r#"(("companies"."domain" IS NOT DISTINCT FROM $1) OR ("companies"."display_name" ILIKE $2)) -- binds: ["acme.com", "%50\\%%"]"#
        );
        assert_eq!(
            sql::<EventField>(
                "type = CustomerRegistered OR type != 'CustomerDeleted' AND actor = svc"
            ),
            r#"((("events"."event_type" = $1) OR ("events"."event_type" != $2)) AND ("events"."actor" = $3)) -- binds: ["CustomerRegistered", "CustomerDeleted", "svc"]"#
        );
    }
}
