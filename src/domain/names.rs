//! Resource names (AIP-122) and request ids (AIP-155).
//!
//! A customer's name is `customers/{uuid}`, a company's `companies/{uuid}` and a note's
//! `customers/{uuid}/notes/{uuid}`; the UUIDs are primary keys. Names are parsed once, at the
//! edge of the service layer, so nothing below it handles raw strings.

use std::fmt;

use uuid::Uuid;

use super::FieldViolation;

/// The resource type of customers, as in the proto's `google.api.resource` option.
pub const CUSTOMER_TYPE: &str = "customer.example.com/Customer";
/// The collection prefix of customer names.
const CUSTOMERS: &str = "customers/";
/// The resource type of companies.
pub const COMPANY_TYPE: &str = "customer.example.com/Company";
/// The resource type of notes.
pub const NOTE_TYPE: &str = "customer.example.com/Note";
/// The collection prefix of company names.
const COMPANIES: &str = "companies/";
/// The collection segment of note names under their customer.
const NOTES: &str = "/notes/";
/// The resource type of API keys.
pub const API_KEY_TYPE: &str = "customer.example.com/ApiKey";
/// The collection prefix of API key names.
const API_KEYS: &str = "apiKeys/";

/// A parsed resource name (AIP-122): how it is read, and how a new resource's name is made
/// from its parent's and its id.
pub trait ResourceName: Copy + fmt::Display + Send + Sync + 'static {
    /// The name of the parent a resource is created under (`()` for top-level resources).
    type Parent: ParentName;

    /// Parses a name; `field` names the request field for the violation.
    fn parse(field: &str, text: &str) -> Result<Self, FieldViolation>;

    /// The name of a new resource with `id` under `parent`.
    fn child(parent: Self::Parent, id: Uuid) -> Self;

    /// The resource's own id (the last of its name).
    fn id(&self) -> Uuid;
}

/// The `parent` of a create: a resource name, or nothing (`()`, the empty string).
pub trait ParentName: Copy + Send + Sync + 'static {
    /// Parses the parent; `field` names the request field for the violation.
    fn parse_parent(field: &str, text: &str) -> Result<Self, FieldViolation>;
}

impl ParentName for () {
    fn parse_parent(_: &str, _: &str) -> Result<(), FieldViolation> {
        Ok(())
    }
}

impl ParentName for CustomerName {
    fn parse_parent(field: &str, text: &str) -> Result<Self, FieldViolation> {
        Self::parse(field, text)
    }
}

/// A required name read by `parse`, which says what was wrong with it.
fn required<T>(
    field: &str,
    text: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, FieldViolation> {
    let description = if text.is_empty() {
        "is required".to_owned()
    } else {
        match parse(text) {
            Ok(parsed) => return Ok(parsed),
            Err(description) => description,
        }
    };
    Err(FieldViolation {
        field: field.to_owned(),
        description,
    })
}

/// Declares the name type `$name` of a top-level collection: `$prefix{uuid}`, read by
/// `$parse` (the id, or what is wrong with the text), with no parent.
macro_rules! top_level_name {
    ($(#[$doc:meta])* $name:ident($prefix:ident, $parse:ident)) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(pub Uuid);

        impl ResourceName for $name {
            type Parent = ();

            fn parse(field: &str, text: &str) -> Result<Self, FieldViolation> {
                required(field, text, |text| $parse(text).map(Self))
            }

            fn child((): (), id: Uuid) -> Self {
                Self(id)
            }

            fn id(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($prefix)?;
                write_id(self.0, f)
            }
        }
    };
}

top_level_name!(
    /// A parsed `customers/{uuid}` name.
    CustomerName(CUSTOMERS, customer_id)
);

top_level_name!(
    /// A parsed `companies/{uuid}` name.
    CompanyName(COMPANIES, company_id)
);

/// The id of `customers/{id}`.
fn customer_id(text: &str) -> Result<Uuid, String> {
    let id = text.strip_prefix(CUSTOMERS).ok_or_else(|| {
        format!(
            "must be a customer name `customers/{{customer}}`, got `{}`",
            truncate(text)
        )
    })?;
    parse_uuid(id).ok_or_else(|| {
        format!(
            "`{}` is not a customer id: expected a UUID after `customers/`",
            truncate(text)
        )
    })
}

top_level_name!(
    /// A parsed `apiKeys/{uuid}` name.
    ApiKeyName(API_KEYS, api_key_id)
);

/// The id of `companies/{id}`.
fn company_id(text: &str) -> Result<Uuid, String> {
    collection_id(text, COMPANIES, "a company name `companies/{company}`")
}

/// The id of `apiKeys/{id}`.
fn api_key_id(text: &str) -> Result<Uuid, String> {
    collection_id(text, API_KEYS, "an API key name `apiKeys/{api_key}`")
}

/// The UUID after `prefix` in `text`, or what is wrong with it (`what` it must be).
fn collection_id(text: &str, prefix: &str, what: &str) -> Result<Uuid, String> {
    text.strip_prefix(prefix)
        .and_then(parse_uuid)
        .ok_or_else(|| format!("must be {what} with a UUID id, got `{}`", truncate(text)))
}

/// Checks a company reference `companies/{company}` (a UUID, like customer ids).
pub fn check_company_name(text: &str) -> Result<(), String> {
    CompanyName::parse("", text)
        .map(drop)
        .map_err(|violation| violation.description)
}

/// A parsed `customers/{uuid}/notes/{uuid}` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NoteName {
    /// The customer the note belongs to.
    pub customer: CustomerName,
    /// The note's own id.
    pub note: Uuid,
}

impl ResourceName for NoteName {
    type Parent = CustomerName;

    fn parse(field: &str, text: &str) -> Result<Self, FieldViolation> {
        required(field, text, |text| {
            let parsed = text.strip_prefix(CUSTOMERS).and_then(|rest| {
                let (customer, note) = rest.split_once(NOTES)?;
                Some(Self {
                    customer: CustomerName(parse_uuid(customer)?),
                    note: parse_uuid(note)?,
                })
            });
            parsed.ok_or_else(|| {
                format!(
                    "must be a note name `customers/{{customer}}/notes/{{note}}` with UUID ids, got `{}`",
                    truncate(text)
                )
            })
        })
    }

    fn child(customer: CustomerName, note: Uuid) -> Self {
        Self { customer, note }
    }

    fn id(&self) -> Uuid {
        self.note
    }
}

impl fmt::Display for NoteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.customer.fmt(f)?;
        f.write_str(NOTES)?;
        write_id(self.note, f)
    }
}

/// Writes `id` hyphenated in lower case, as its `Display` does, but as one string rather than
/// through a second formatter (every response names its resource: ~0.5k instructions less).
fn write_id(id: Uuid, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()))
}

/// The customer a resource name belongs to: itself for `customers/{id}`, the parent for
/// `customers/{id}/notes/{note}`, none for anything else (companies).
pub fn owning_customer(resource: &str) -> Option<&str> {
    let rest = resource.strip_prefix(CUSTOMERS)?;
    let end = rest.find('/').unwrap_or(rest.len());
    Some(&resource[..CUSTOMERS.len() + end])
}

/// A client-chosen request id: a UUID (AIP-155). Empty means "no idempotency".
pub fn parse_request_id(field: &str, text: &str) -> Result<Option<Uuid>, FieldViolation> {
    if text.is_empty() {
        return Ok(None);
    }
    parse_uuid(text).map(Some).ok_or_else(|| FieldViolation {
        field: field.to_owned(),
        description: format!("must be a UUID, got `{}`", truncate(text)),
    })
}

/// What [`parse_uuid`] accepts, as an ECMA-262 regular expression (for the OpenAPI
/// document: resource ids in paths, request ids).
pub const UUID_PATTERN: &str =
    "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$";

/// Accepts only the canonical hyphenated form, so one id has one spelling.
pub fn parse_uuid(text: &str) -> Option<Uuid> {
    if text.len() != 36 {
        return None;
    }
    Uuid::try_parse(text).ok()
}

/// Echoing input back in errors is helpful; echoing megabytes of it, or an email address
/// or phone number (masked first, so a cut one is still recognised), is not.
fn truncate(text: &str) -> String {
    super::syntax::clip(text, 80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_names_round_trip() {
        let id = Uuid::now_v7();
        let name = CustomerName::parse("name", &format!("customers/{id}")).unwrap();
        assert_eq!(name.id(), id);
        assert_eq!(name.to_string(), format!("customers/{id}"));
    }

    #[test]
    fn malformed_customer_names_are_violations_of_the_field() {
        for bad in [
            "",
            "customers/",
            "customers/123",
            "companies/0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6e",
            "customers/0190a7b28c1e7c1a9d2e1f2a3b4c5d6e",
            "customers/0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6e/notes",
        ] {
            let violation = CustomerName::parse("name", bad).unwrap_err();
            assert_eq!(violation.field, "name", "{bad}");
        }
    }

    #[test]
    fn long_input_is_truncated_in_messages() {
        let long = "x".repeat(10_000);
        let violation = CustomerName::parse("name", &long).unwrap_err();
        assert!(violation.description.len() < 200);
    }

    /// `UUID_PATTERN` says what `parse_uuid` accepts (checked here by hand: the pattern is
    /// plain hex groups).
    #[test]
    fn the_uuid_pattern_matches_parse_uuid() {
        let groups: Vec<usize> = UUID_PATTERN
            .trim_matches(['^', '$'])
            .replace("[0-9A-Fa-f]", "hex")
            .split('-')
            .map(|group| {
                assert!(group.starts_with("hex{"), "{group}");
                group[4..group.len() - 1].parse().unwrap()
            })
            .collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        let id = Uuid::new_v4();
        for (text, accepted) in [
            (id.to_string(), true),
            (id.to_string().to_uppercase(), true),
            (id.simple().to_string(), false),
            (id.urn().to_string(), false),
            (id.braced().to_string(), false),
        ] {
            assert_eq!(parse_uuid(&text).is_some(), accepted, "{text}");
            let shaped = text.len() == 36
                && text.split('-').map(str::len).eq([8, 4, 4, 4, 12])
                && text.chars().all(|c| c == '-' || c.is_ascii_hexdigit());
            assert_eq!(shaped, accepted, "{text}");
        }
    }

    #[test]
    fn request_ids_are_optional_uuids() {
        assert_eq!(parse_request_id("request_id", ""), Ok(None));
        let id = Uuid::new_v4();
        assert_eq!(
            parse_request_id("request_id", &id.to_string()),
            Ok(Some(id))
        );
        assert_eq!(
            parse_request_id("request_id", "retry-1").unwrap_err().field,
            "request_id"
        );
    }

    #[test]
    fn company_and_note_names_round_trip() {
        let id = Uuid::now_v7();
        let company = CompanyName::parse("name", &format!("companies/{id}")).unwrap();
        assert_eq!(company.to_string(), format!("companies/{id}"));
        let note_id = Uuid::now_v7();
        let text = format!("customers/{id}/notes/{note_id}");
        let note = NoteName::parse("name", &text).unwrap();
        assert_eq!(note.customer, CustomerName(id));
        assert_eq!(note.id(), note_id);
        assert_eq!(note.to_string(), text);
        assert_eq!(
            owning_customer(&text),
            Some(format!("customers/{id}").as_str())
        );
        assert_eq!(
            owning_customer(&format!("customers/{id}")),
            Some(format!("customers/{id}").as_str())
        );
        assert_eq!(owning_customer(&format!("companies/{id}")), None);
    }

    #[test]
    fn malformed_note_names_are_violations_of_the_field() {
        let id = Uuid::now_v7();
        for bad in [
            String::new(),
            format!("customers/{id}"),
            format!("customers/{id}/notes/"),
            format!("customers/{id}/notes/x"),
            format!("customers/x/notes/{id}"),
            format!("customers/{id}/notes/{id}/more"),
            format!("companies/{id}/notes/{id}"),
        ] {
            assert_eq!(
                NoteName::parse("name", &bad).unwrap_err().field,
                "name",
                "{bad}"
            );
        }
    }

    #[test]
    fn company_references_need_a_uuid() {
        assert!(check_company_name("companies/0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6e").is_ok());
        assert!(check_company_name("companies/acme").is_err());
        assert!(check_company_name("acme").is_err());
    }
}
