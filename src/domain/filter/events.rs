//! The fields of ListCustomerEvents' filter.

use super::{EnumField, FieldKind, FilterField, NoField, TextField, field_names};
use crate::domain::event::EventType;

/// A field of an events filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventField {
    /// `type` (also `event_type`): what happened.
    Type,
    /// `actor`: who did it.
    Actor,
    /// `occur_time`: when.
    OccurTime,
}

/// `type`, whose values are the [`EventType`]s (`CustomerRegistered` …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTypeField;

/// `actor`: text compared with `=` and `!=` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActorField;

/// `occur_time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OccurTimeField;

impl FilterField for EventField {
    type Id = NoField;
    type Enum = EventTypeField;
    type Time = OccurTimeField;
    type Text = ActorField;

    const FIELDS: &'static [Self] = &[Self::Type, Self::Actor, Self::OccurTime];
    /// Events have no identifier field, so no collection.
    const COLLECTION: &'static str = "";
    const MAX_LEN: usize = 1024;

    fn parse(name: &str) -> Option<Self> {
        match name {
            "type" | "event_type" => Some(Self::Type),
            "actor" => Some(Self::Actor),
            "occur_time" => Some(Self::OccurTime),
            _ => None,
        }
    }

    fn label(_: String) -> Option<Self> {
        None
    }

    fn kind(self) -> FieldKind<Self> {
        match self {
            Self::Type => FieldKind::Enum(EventTypeField),
            Self::Actor => FieldKind::Text(ActorField),
            Self::OccurTime => FieldKind::Time(OccurTimeField),
        }
    }
}

field_names!(EventTypeField => "type"; ActorField => "actor"; OccurTimeField => "occur_time");

impl EnumField for EventTypeField {
    type Value = EventType;
    const VALUES: &'static [EventType] = &EventType::ALL;

    fn value_name(value: EventType) -> &'static str {
        value.as_str()
    }
}

impl TextField for ActorField {
    type Label = NoField;

    fn presence(&self) -> Option<NoField> {
        None
    }

    fn ordered(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::domain::filter::{CmpOp, Compare, EqOp, Expr, FilterError, parse};

    type E = EventField;

    fn type_is(op: EqOp, value: EventType) -> Expr<E> {
        Expr::Compare(Compare::Enum {
            field: EventTypeField,
            op,
            value,
        })
    }

    fn actor_is(op: CmpOp, text: &str) -> Expr<E> {
        Expr::Compare(Compare::Text {
            field: ActorField,
            op,
            text: text.to_owned(),
        })
    }

    fn occurred(op: CmpOp, time: &str) -> Expr<E> {
        Expr::Compare(Compare::Time {
            field: OccurTimeField,
            op,
            time: DateTime::parse_from_rfc3339(time)
                .unwrap()
                .with_timezone(&Utc),
        })
    }

    fn and(a: Expr<E>, b: Expr<E>) -> Expr<E> {
        Expr::And(Box::new(a), Box::new(b))
    }

    fn or(a: Expr<E>, b: Expr<E>) -> Expr<E> {
        Expr::Or(Box::new(a), Box::new(b))
    }

    fn err(input: &str) -> FilterError {
        parse::<E>(input).unwrap_err()
    }

    #[test]
    fn filter_parses_conjunctions() {
        assert_eq!(
            parse::<E>(
                r#"type = CustomerUpdated AND actor != "svc" AND occur_time >= "2026-01-02T03:04:05+01:00""#,
            ),
            Ok(Some(and(
                and(
                    type_is(EqOp::Eq, EventType::CustomerUpdated),
                    actor_is(CmpOp::Ne, "svc")
                ),
                occurred(CmpOp::Ge, "2026-01-02T02:04:05Z")
            )))
        );
        assert_eq!(parse::<E>("  "), Ok(None));
        assert_eq!(
            parse::<E>(r#"type="CustomerDeleted""#),
            Ok(Some(type_is(EqOp::Eq, EventType::CustomerDeleted)))
        );
        assert_eq!(
            parse::<E>("event_type != NoteAdded"),
            Ok(Some(type_is(EqOp::Ne, EventType::NoteAdded)))
        );
    }

    #[test]
    fn filter_accepts_the_whole_language() {
        // What the events filter used to reject: OR, single quotes, NOT and parentheses.
        assert_eq!(
            parse::<E>(r#"type = "CustomerRegistered" OR type = 'CustomerDeleted'"#),
            Ok(Some(or(
                type_is(EqOp::Eq, EventType::CustomerRegistered),
                type_is(EqOp::Eq, EventType::CustomerDeleted)
            )))
        );
        assert_eq!(
            parse::<E>(r"NOT (actor = 'it\'s' OR occur_time < 2026-01-01T00:00:00Z)"),
            Ok(Some(Expr::Not(Box::new(or(
                actor_is(CmpOp::Eq, "it's"),
                occurred(CmpOp::Lt, "2026-01-01T00:00:00Z")
            )))))
        );
    }

    #[test]
    fn filter_errors_say_what_is_wrong() {
        for (input, position, expected) in [
            (
                "type = Nope",
                7,
                "invalid type 'Nope'; expected one of CustomerRegistered, CustomerUpdated, \
                 CustomerDeleted, CustomerUndeleted, CustomerPurged, CustomerErased, CustomersMerged, \
                 CustomersUnmerged, CompanyCreated, CompanyUpdated, CompanyDeleted, CompanyUndeleted, NoteAdded, NoteUpdated, \
                 NoteDeleted",
            ),
            (
                "type < CustomerUpdated",
                5,
                "operator '<' is not supported for field 'type'; use = or !=",
            ),
            (
                "event_type:CustomerUpdated",
                10,
                "operator ':' is not supported for field 'type'; use = or !=",
            ),
            (
                "actor >= x",
                6,
                "operator '>=' is not supported for field 'actor'; use = or !=",
            ),
            (
                "actor:*",
                5,
                "operator ':' is not supported for field 'actor'; use = or !=",
            ),
            (
                "color = red",
                0,
                "unknown field 'color'; valid fields are type, actor, occur_time",
            ),
            (
                "labels.tier = gold",
                0,
                "unknown field 'labels.tier'; valid fields are type, actor, occur_time",
            ),
            (
                "name = x",
                0,
                "unknown field 'name'; valid fields are type, actor, occur_time",
            ),
            (
                "occur_time > yesterday",
                13,
                "invalid timestamp 'yesterday'; expected RFC 3339, e.g. 2024-01-01T00:00:00Z",
            ),
            ("type =", 6, "expected a value after '='"),
            (r#"actor = "open"#, 8, "unterminated string"),
        ] {
            assert_eq!(
                err(input),
                FilterError::new("filter", position, expected),
                "{input}"
            );
        }
        assert_eq!(
            err(&"a".repeat(1025)).message,
            "filter is too long (1025 bytes; at most 1024 are allowed)"
        );
    }

    #[test]
    fn canonical_text_of_event_filters() {
        let parsed = parse::<E>(
            r#"event_type = "CustomerRegistered" OR -actor = 'a "b"' occur_time >= 2026-01-02T03:04:05.5+01:00"#,
        )
        .unwrap()
        .unwrap();
        let canonical = parsed.canonical();
        assert_eq!(
            canonical,
            r#"((type = CustomerRegistered OR (NOT actor = "a \"b\"")) AND occur_time >= 2026-01-02T02:04:05.500Z)"#
        );
        assert_eq!(parse::<E>(&canonical), Ok(Some(parsed)));
    }
}
