//! The registry's JSON response and what it becomes: [`BusinessInfo`].
//!
//! The contract is written up for operators in `docs/business-registry.md`. In short, a
//! `2xx` response carries one JSON object:
//!
//! | field | type | |
//! |---|---|---|
//! | `legal_name` | string, 1–500 characters | required |
//! | `status` | string (see [`RegistrationStatus::from_registry`]) | required |
//! | `business_id` | string | optional; when present it must be the requested id (ASCII case aside) |
//! | `address` | object or `null`: `lines` (array of strings), `locality`, `region`, `postal_code`, `country_code` (ISO 3166-1 alpha-2, required in an address) | optional |
//!
//! Unknown fields are ignored, so the registry may send more. Anything else (not JSON, not
//! an object, a required field missing, a wrong type, a value outside the limits) makes the
//! response malformed. Error descriptions name field paths and never quote values: the
//! response may describe a sole trader, whose name and address are personal data.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::domain::customer::{PostalAddress, validate_postal_address};

/// Longest accepted legal name, in characters.
pub const MAX_LEGAL_NAME_CHARS: usize = 500;
/// Longest accepted registration status string, in characters.
const MAX_STATUS_CHARS: usize = 64;

/// Details of a business, as the registry reported them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessInfo {
    /// The business id (the registry's spelling when it sent one, else the requested id).
    pub business_id: String,
    /// The registered legal name.
    pub legal_name: String,
    /// Registration status, normalised.
    pub registration_status: RegistrationStatus,
    /// The registered address, when the registry has one.
    pub address: Option<PostalAddress>,
    /// Which registry answered: `BUSINESS_REGISTRY_NAME`, else the registry URL's host.
    pub source: String,
    /// When the registry answered (cached answers keep the time of the original fetch).
    pub fetch_time: DateTime<Utc>,
}

/// A business's registration status, normalised from the registry's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegistrationStatus {
    /// Registered and trading.
    Active,
    /// Registered but dormant or suspended.
    Inactive,
    /// In liquidation, administration, receivership or another insolvency procedure.
    InLiquidation,
    /// Dissolved, struck off or otherwise removed from the register.
    Dissolved,
    /// A value this service does not know yet (the lookup still succeeds).
    Unknown,
}

impl RegistrationStatus {
    /// Maps the registry's `status` string, ASCII case-insensitively and with `-` or spaces
    /// read as `_`:
    ///
    /// - `active`, `registered`, `live`, `open`, `good_standing` → [`Self::Active`]
    /// - `inactive`, `dormant`, `suspended` → [`Self::Inactive`]
    /// - `liquidation`, `in_liquidation`, `insolvency`, `administration`, `receivership`
    ///   → [`Self::InLiquidation`]
    /// - `dissolved`, `closed`, `struck_off`, `removed`, `deregistered`, `ceased`
    ///   → [`Self::Dissolved`]
    /// - anything else → [`Self::Unknown`]
    pub fn from_registry(text: &str) -> Self {
        let normalised: String = text
            .trim()
            .chars()
            .map(|c| match c {
                '-' | ' ' => '_',
                c => c.to_ascii_lowercase(),
            })
            .collect();
        match normalised.as_str() {
            "active" | "registered" | "live" | "open" | "good_standing" => Self::Active,
            "inactive" | "dormant" | "suspended" => Self::Inactive,
            "liquidation" | "in_liquidation" | "insolvency" | "administration" | "receivership" => {
                Self::InLiquidation
            }
            "dissolved" | "closed" | "struck_off" | "removed" | "deregistered" | "ceased" => {
                Self::Dissolved
            }
            _ => Self::Unknown,
        }
    }

    /// The UPPER_SNAKE_CASE name (`ACTIVE`, `IN_LIQUIDATION`, …), as a proto enum would
    /// spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Inactive => "INACTIVE",
            Self::InLiquidation => "IN_LIQUIDATION",
            Self::Dissolved => "DISSOLVED",
            Self::Unknown => "UNKNOWN",
        }
    }
}

/// Reads a registry response body for `requested_id`. The error describes what is wrong by
/// field path, without quoting the body.
pub(crate) fn parse(
    body: &[u8],
    requested_id: &str,
    source: &str,
    fetch_time: DateTime<Utc>,
) -> Result<BusinessInfo, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        // serde_json's messages may quote the input; report only where it broke.
        format!(
            "not JSON ({:?} error at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    let Value::Object(object) = value else {
        return Err(format!("expected a JSON object, got {}", kind(&value)));
    };

    let business_id = match optional_string(&object, "business_id")? {
        None => requested_id.to_owned(),
        Some(id) if id.eq_ignore_ascii_case(requested_id) => id.to_owned(),
        Some(_) => return Err("`business_id` is not the requested id".into()),
    };
    let legal_name = optional_string(&object, "legal_name")?
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .ok_or("`legal_name` is missing or empty")?;
    if legal_name.chars().count() > MAX_LEGAL_NAME_CHARS {
        return Err(format!(
            "`legal_name` is longer than {MAX_LEGAL_NAME_CHARS} characters"
        ));
    }
    if legal_name.chars().any(char::is_control) {
        return Err("`legal_name` contains control characters".into());
    }
    let status = optional_string(&object, "status")?
        .filter(|status| !status.trim().is_empty())
        .ok_or("`status` is missing or empty")?;
    if status.chars().count() > MAX_STATUS_CHARS {
        return Err(format!(
            "`status` is longer than {MAX_STATUS_CHARS} characters"
        ));
    }
    let registration_status = RegistrationStatus::from_registry(status);
    if registration_status == RegistrationStatus::Unknown {
        tracing::debug!("the business registry sent a status value this service does not map");
    }
    let address = match object.get("address") {
        None | Some(Value::Null) => None,
        Some(Value::Object(address)) => Some(parse_address(address)?),
        Some(other) => return Err(format!("`address` must be an object, got {}", kind(other))),
    };

    Ok(BusinessInfo {
        business_id,
        legal_name: legal_name.to_owned(),
        registration_status,
        address,
        source: source.to_owned(),
        fetch_time,
    })
}

fn parse_address(object: &Map<String, Value>) -> Result<PostalAddress, String> {
    let field = |name: &str| format!("address.{name}");
    let part = |name: &str| -> Result<String, String> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(text)) => Ok(text.clone()),
            Some(other) => Err(format!(
                "`{}` must be a string, got {}",
                field(name),
                kind(other)
            )),
        }
    };
    let lines = match object.get("lines") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(line) => Ok(line.clone()),
                other => Err(format!(
                    "`address.lines[{i}]` must be a string, got {}",
                    kind(other)
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "`address.lines` must be an array, got {}",
                kind(other)
            ));
        }
    };
    let raw = PostalAddress {
        lines,
        locality: part("locality")?,
        region: part("region")?,
        postal_code: part("postal_code")?,
        country_code: part("country_code")?,
    };
    validate_postal_address("address", &raw).map_err(|violations| {
        // The descriptions may quote values (a country code); name only the fields.
        let fields: Vec<String> = violations
            .into_vec()
            .into_iter()
            .map(|v| format!("`{}`", v.field))
            .collect();
        format!("invalid address fields: {}", fields.join(", "))
    })
}

fn optional_string<'a>(
    object: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, String> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(format!("`{name}` must be a string, got {}", kind(other))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: &str) -> Result<BusinessInfo, String> {
        parse(body.as_bytes(), "GB-123", "registry.example", Utc::now())
    }

    #[test]
    fn a_full_response_maps_every_field() {
        let info = read(
            r#"{"business_id":"gb-123","legal_name":" Acme Widgets Ltd ","status":"Struck-Off",
                "address":{"lines":["1 High Street"],"locality":"London","region":"",
                           "postal_code":"EC1A 1BB","country_code":"gb"},"extra":[1,2]}"#,
        )
        .expect("valid");
        assert_eq!(info.business_id, "gb-123");
        assert_eq!(info.legal_name, "Acme Widgets Ltd");
        assert_eq!(info.registration_status, RegistrationStatus::Dissolved);
        let address = info.address.expect("an address");
        assert_eq!(address.lines, ["1 High Street"]);
        assert_eq!(address.country_code, "GB");
        assert_eq!(info.source, "registry.example");
    }

    #[test]
    fn a_minimal_response_is_enough() {
        let info = read(r#"{"legal_name":"Acme","status":"something new","address":null}"#)
            .expect("valid");
        assert_eq!(info.business_id, "GB-123");
        assert_eq!(info.registration_status, RegistrationStatus::Unknown);
        assert_eq!(info.address, None);
    }

    #[test]
    fn wrong_shapes_are_described_without_quoting_values() {
        for (body, expected) in [
            ("<html>Jane Roe</html>", "not JSON"),
            (r#"["Jane Roe"]"#, "expected a JSON object, got an array"),
            (r#"{"status":"active"}"#, "`legal_name` is missing"),
            (
                r#"{"legal_name":"  ","status":"active"}"#,
                "`legal_name` is missing",
            ),
            (
                r#"{"legal_name":42,"status":"active"}"#,
                "`legal_name` must be a string",
            ),
            (r#"{"legal_name":"Jane Roe"}"#, "`status` is missing"),
            (
                r#"{"legal_name":"Jane Roe","status":"active","business_id":"X-9"}"#,
                "not the requested id",
            ),
            (
                r#"{"legal_name":"Jane Roe","status":"active","address":"1 High St"}"#,
                "`address` must be an object",
            ),
            (
                r#"{"legal_name":"Jane Roe","status":"active","address":{"lines":"1 High St","country_code":"GB"}}"#,
                "`address.lines` must be an array",
            ),
            (
                r#"{"legal_name":"Jane Roe","status":"active","address":{"lines":[1],"country_code":"GB"}}"#,
                "`address.lines[0]` must be a string",
            ),
            (
                r#"{"legal_name":"Jane Roe","status":"active","address":{"locality":"Roeville","country_code":"Roeland"}}"#,
                "`address.country_code`",
            ),
            (
                r#"{"legal_name":"Jane\u0007Roe","status":"active"}"#,
                "control characters",
            ),
        ] {
            let error = read(body).expect_err(body);
            assert!(error.contains(expected), "{body}: {error}");
            assert!(
                !error.contains("Roe"),
                "{body}: the error quotes the body: {error}"
            );
        }
        let long = format!(
            r#"{{"legal_name":"{}","status":"active"}}"#,
            "x".repeat(501)
        );
        assert!(
            read(&long)
                .expect_err("too long")
                .contains("longer than 500")
        );
    }

    #[test]
    fn statuses_map_by_the_documented_table() {
        use RegistrationStatus::*;
        for (text, status) in [
            ("ACTIVE", Active),
            ("good standing", Active),
            ("Dormant", Inactive),
            ("in-liquidation", InLiquidation),
            ("receivership", InLiquidation),
            ("dissolved", Dissolved),
            ("deregistered", Dissolved),
            ("", Unknown),
            ("pending", Unknown),
        ] {
            assert_eq!(RegistrationStatus::from_registry(text), status, "{text}");
        }
        assert_eq!(InLiquidation.as_str(), "IN_LIQUIDATION");
    }
}
