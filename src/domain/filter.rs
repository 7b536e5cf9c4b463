//! Parser for the `filter` request field of list/search RPCs: a subset of
//! [AIP-160](https://google.aip.dev/160) over customer fields ([`parse`]) or
//! company fields ([`parse_for`] with [`Scope::Companies`]).
//!
//! The parser turns the user-supplied filter string into a typed [`Expr`]
//! tree. Field names, operators and values are validated here, so a
//! successfully parsed tree only contains well-typed restrictions
//! (e.g. `status` is always compared with a [`Status`], timestamps are
//! always [`Value::Time`] in UTC). Every failure is reported as a
//! [`FilterError`] carrying the 0-based *character* position where the
//! problem starts, suitable for an `INVALID_ARGUMENT` response.
//!
//! The parser is a hand-written recursive-descent parser working directly
//! on characters. It never panics: input longer than [`MAX_FILTER_LEN`]
//! bytes is rejected up front, and nesting of parentheses and negations is
//! limited to [`MAX_DEPTH`], which bounds the recursion.
//!
//! # Grammar
//!
//! ```text
//! filter      := WS* | expression
//! expression  := sequence ("AND" sequence)*
//! sequence    := factor (factor)*            -- juxtaposition is an implicit AND
//! factor      := term ("OR" term)*
//! term        := ["NOT" | "-"] simple
//! simple      := restriction | "(" expression ")"
//! restriction := field comparator value
//! comparator  := "=" | "!=" | "<" | "<=" | ">" | ">=" | ":"
//! field       := "name" | "uid" | "given_name" | "family_name" | "email"
//!              | "phone" | "status" | "company" | "business_id"
//!              | "address." ("locality" | "region" | "postal_code" | "country_code")
//!              | "create_time" | "update_time"
//!              | "labels." label_key | "labels." quoted_string
//!                -- companies: "name" | "uid" | "display_name" | "domain"
//!                   | "business_id" | "create_time" | "update_time" | "labels." …
//! label_key   := [a-z][a-z0-9_.-]{0,62}
//! value       := quoted_string | bare_word
//! quoted_string := '"' (char | '\"' | '\\' | "\'")* '"'
//!                | "'" (char | '\"' | '\\' | "\'")* "'"
//! bare_word   := any characters up to whitespace or ")"
//! ```
//!
//! As in AIP-160, `OR` binds tighter than `AND` (and than juxtaposition):
//! `a AND b OR c` means `a AND (b OR c)`. Binary operators associate to the
//! left. The keywords `AND`, `OR` and `NOT` are case-sensitive; a bare value
//! may not be one of them (quote it instead). A bare value is read greedily
//! after the comparator, so `create_time > 2024-01-01T00:00:00Z` works
//! without quotes.
//!
//! # Typing
//!
//! * `status`: only `=` and `!=`, with one of `ACTIVE`, `PROSPECTIVE`,
//!   `INACTIVE` (case-sensitive, quoted or bare).
//! * `name` (`customers/{uuid}`, or `companies/{uuid}` in company filters) and
//!   `uid` (the bare UUID): only `=` and `!=`, with a well-formed identifier
//!   ([`Value::Id`]); `name = "customers/A" OR name = "customers/B"` picks several.
//! * `create_time`, `update_time`: `=`, `!=`, `<`, `<=`, `>`, `>=` with an
//!   RFC 3339 timestamp, normalised to UTC.
//! * text fields (`given_name`, `family_name`, `email`, `phone`, `company`,
//!   `business_id`, `address.*`, `display_name`, `domain`, `labels.<key>`): all six
//!   comparisons with a text value (`address.country_code` is compared in upper case, as
//!   it is stored)
//!   of at most 256 characters; `field:"text"` is a case-insensitive
//!   substring match ([`Expr::Contains`], text must be non-empty);
//!   `labels.<key>:*` (bare `*`) tests that the label is present
//!   ([`Expr::Present`]). A quoted `"*"` is an ordinary substring.

use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Maximum accepted length of a filter string, in bytes.
pub const MAX_FILTER_LEN: usize = 2048;

/// Maximum nesting of parentheses and negations (`NOT` / `-`).
pub const MAX_DEPTH: usize = 32;

/// Maximum length of a text value, in characters.
const MAX_TEXT_LEN: usize = 256;

/// Maximum length of a label key, in characters.
const MAX_LABEL_KEY_LEN: usize = 63;

/// Longest piece of user input echoed back in an error message.
const MAX_SNIPPET_LEN: usize = 64;

/// Description of the valid field names, used in error messages.
const VALID_FIELDS: &str = "name, uid, given_name, family_name, email, phone, status, \
                            company, business_id, address.locality, address.region, \
                            address.postal_code, address.country_code, create_time, \
                            update_time, labels.<key>";

/// The valid field names of company filters.
const VALID_COMPANY_FIELDS: &str =
    "name, uid, display_name, domain, business_id, create_time, update_time, labels.<key>";

/// Which resource a filter ranges over: decides the field names it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// ListCustomers.
    Customers,
    /// ListCompanies.
    Companies,
}

impl Scope {
    fn accepts(self, field: &Field) -> bool {
        match self {
            Scope::Customers => !matches!(field, Field::DisplayName | Field::Domain),
            Scope::Companies => matches!(
                field,
                Field::Name
                    | Field::Uid
                    | Field::DisplayName
                    | Field::Domain
                    | Field::BusinessId
                    | Field::Label(_)
                    | Field::CreateTime
                    | Field::UpdateTime
            ),
        }
    }

    fn valid_fields(self) -> &'static str {
        match self {
            Scope::Customers => VALID_FIELDS,
            Scope::Companies => VALID_COMPANY_FIELDS,
        }
    }

    /// The collection of resource names in this scope (`customers/{uuid}`).
    fn collection(self) -> &'static str {
        match self {
            Scope::Customers => "customers",
            Scope::Companies => "companies",
        }
    }
}

/// A customer or company field that can appear on the left-hand side of a restriction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `name`: the resource name (`customers/{uuid}`).
    Name,
    /// `uid`: the bare UUID of the resource.
    Uid,
    /// `given_name`
    GivenName,
    /// `family_name`
    FamilyName,
    /// `email`
    Email,
    /// `phone`
    Phone,
    /// `status`
    Status,
    /// `company`
    Company,
    /// `business_id`
    BusinessId,
    /// `labels.<key>`; holds the label key (without the `labels.` prefix).
    Label(String),
    /// `create_time`
    CreateTime,
    /// `update_time`
    UpdateTime,
    /// `display_name` (companies)
    DisplayName,
    /// `domain` (companies)
    Domain,
    /// `address.<part>` (customers): one part of the postal address.
    Address(AddressPart),
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

impl Field {
    /// The field's name as written in a filter, for error messages.
    fn display_name(&self) -> String {
        match self {
            Field::Name => "name".to_owned(),
            Field::Uid => "uid".to_owned(),
            Field::Address(part) => format!("address.{}", part.key()),
            Field::GivenName => "given_name".to_owned(),
            Field::FamilyName => "family_name".to_owned(),
            Field::Email => "email".to_owned(),
            Field::Phone => "phone".to_owned(),
            Field::Status => "status".to_owned(),
            Field::Company => "company".to_owned(),
            Field::BusinessId => "business_id".to_owned(),
            Field::Label(key) => format!("labels.{}", snippet(key)),
            Field::CreateTime => "create_time".to_owned(),
            Field::UpdateTime => "update_time".to_owned(),
            Field::DisplayName => "display_name".to_owned(),
            Field::Domain => "domain".to_owned(),
        }
    }
}

/// A comparison operator of a [`Expr::Compare`] restriction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// The operator as written in a filter.
    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// A customer status value (`ACTIVE`, `PROSPECTIVE`, `INACTIVE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `ACTIVE`
    Active,
    /// `PROSPECTIVE`
    Prospective,
    /// `INACTIVE`
    Inactive,
}

/// The typed right-hand side of a [`Expr::Compare`] restriction.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A text value (text and label fields), at most 256 characters.
    Text(String),
    /// A status value (the `status` field).
    Status(Status),
    /// A timestamp, normalised to UTC (`create_time`, `update_time`).
    Time(DateTime<Utc>),
    /// A resource identifier (`name`, `uid`).
    Id(Uuid),
}

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Both sub-expressions must hold (`AND` or juxtaposition).
    And(Box<Expr>, Box<Expr>),
    /// Either sub-expression must hold (`OR`).
    Or(Box<Expr>, Box<Expr>),
    /// The sub-expression must not hold (`NOT` or `-`).
    Not(Box<Expr>),
    /// field op value
    Compare {
        /// The field being compared.
        field: Field,
        /// The comparison operator.
        op: CmpOp,
        /// The value, typed according to the field.
        value: Value,
    },
    /// field:"text" — case-insensitive substring match (text fields only)
    Contains {
        /// The text or label field searched.
        field: Field,
        /// The non-empty text to look for.
        text: String,
    },
    /// labels.key:* — the label key is present
    Present {
        /// The label field whose presence is tested (always [`Field::Label`]).
        field: Field,
    },
}

/// Why a filter string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// 0-based character (not byte) offset in the input where the problem starts.
    pub position: usize,
    /// Human-readable description of the problem.
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid filter at position {}: {}",
            self.position, self.message
        )
    }
}

impl std::error::Error for FilterError {}

/// Parses a filter string.
///
/// Returns `Ok(None)` for an empty or all-whitespace filter (no
/// restriction) and `Ok(Some(expr))` for a valid filter. Never panics.
///
/// # Errors
///
/// Returns a [`FilterError`] positioned at the first problem: syntax errors,
/// unknown fields, operators or values that do not fit the field's type,
/// input longer than [`MAX_FILTER_LEN`] bytes, or nesting deeper than
/// [`MAX_DEPTH`].
pub fn parse(input: &str) -> Result<Option<Expr>, FilterError> {
    parse_for(input, Scope::Customers)
}

/// Parses a filter over the fields of `scope`; otherwise exactly like [`parse`].
///
/// # Errors
///
/// As [`parse`]; a field of another resource is an unknown field.
pub fn parse_for(input: &str, scope: Scope) -> Result<Option<Expr>, FilterError> {
    if input.len() > MAX_FILTER_LEN {
        return Err(FilterError {
            position: 0,
            message: format!(
                "filter is too long ({} bytes; at most {MAX_FILTER_LEN} are allowed)",
                input.len()
            ),
        });
    }
    if input.trim().is_empty() {
        return Ok(None);
    }
    let mut parser = Parser {
        chars: input.chars().collect(),
        pos: 0,
        depth: 0,
        scope,
    };
    let expr = parser.expression()?;
    parser.skip_ws();
    match parser.peek() {
        None => Ok(Some(expr)),
        Some(')') => Err(error(parser.pos, "unexpected ')' without a matching '('")),
        Some(c) => Err(error(parser.pos, format!("unexpected '{c}'"))),
    }
}

/// Builds a [`FilterError`].
fn error(position: usize, message: impl Into<String>) -> FilterError {
    FilterError {
        position,
        message: message.into(),
    }
}

/// Shortens user input for inclusion in an error message.
fn snippet(s: &str) -> String {
    // Masked before it is cut, so a clipped email or phone number is still recognised.
    let s = crate::redact::mask_pii(s);
    if s.chars().count() <= MAX_SNIPPET_LEN {
        s.into_owned()
    } else {
        let mut out: String = s.chars().take(MAX_SNIPPET_LEN).collect();
        out.push('…');
        out
    }
}

/// Whether `c` can be part of a field name or keyword.
fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '(' | ')' | '=' | '!' | '<' | '>' | ':' | '"' | '\'')
}

/// Whether `key` is a valid label key: `[a-z][a-z0-9_.-]{0,62}`.
fn is_valid_label_key(key: &str) -> bool {
    let mut chars = key.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    first_ok
        && key.chars().count() <= MAX_LABEL_KEY_LEN
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'))
}

/// The comparator of a restriction, including the `:` (has) operator.
#[derive(Debug, Clone, Copy)]
enum Op {
    Cmp(CmpOp),
    Has,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Cmp(op) => op.symbol(),
            Op::Has => ":",
        }
    }
}

/// A value as written, before typing.
struct RawValue {
    text: String,
    quoted: bool,
}

/// Recursive-descent parser state.
struct Parser {
    chars: Vec<char>,
    pos: usize,
    /// Current nesting of parentheses and negations.
    depth: usize,
    /// The resource whose fields are valid.
    scope: Scope,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, pos: usize) -> Option<char> {
        self.chars.get(pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// End (exclusive) of the word starting at `start`.
    fn word_end(&self, start: usize) -> usize {
        let mut end = start;
        while self.peek_at(end).is_some_and(is_word_char) {
            end += 1;
        }
        end
    }

    /// The characters from `start` to `end` as a string.
    fn text(&self, start: usize, end: usize) -> String {
        self.chars
            .get(start..end)
            .map(|s| s.iter().collect())
            .unwrap_or_default()
    }

    /// The keyword (`AND`, `OR`, `NOT`) at the current position, if the
    /// whole word there is one.
    fn keyword(&self) -> Option<&'static str> {
        let end = self.word_end(self.pos);
        let word = self.chars.get(self.pos..end)?;
        ["AND", "OR", "NOT"]
            .into_iter()
            .find(|kw| kw.chars().eq(word.iter().copied()))
    }

    /// Enters one level of nesting opened at `pos`.
    fn enter(&mut self, pos: usize) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(error(
                pos,
                format!(
                    "filter is nested too deeply (at most {MAX_DEPTH} levels of parentheses and NOT)"
                ),
            ));
        }
        Ok(())
    }

    /// `expression := sequence ("AND" sequence)*`
    fn expression(&mut self) -> Result<Expr, FilterError> {
        let mut lhs = self.sequence()?;
        loop {
            self.skip_ws();
            if self.keyword() != Some("AND") {
                return Ok(lhs);
            }
            self.pos += 3;
            let rhs = self.sequence()?;
            lhs = Expr::And(Box::new(lhs), Box::new(rhs));
        }
    }

    /// `sequence := factor (factor)*`
    fn sequence(&mut self) -> Result<Expr, FilterError> {
        let mut lhs = self.factor()?;
        loop {
            self.skip_ws();
            if matches!(self.peek(), None | Some(')')) || self.keyword() == Some("AND") {
                return Ok(lhs);
            }
            let rhs = self.factor()?;
            lhs = Expr::And(Box::new(lhs), Box::new(rhs));
        }
    }

    /// `factor := term ("OR" term)*`
    fn factor(&mut self) -> Result<Expr, FilterError> {
        let mut lhs = self.term()?;
        loop {
            self.skip_ws();
            if self.keyword() != Some("OR") {
                return Ok(lhs);
            }
            self.pos += 2;
            let rhs = self.term()?;
            lhs = Expr::Or(Box::new(lhs), Box::new(rhs));
        }
    }

    /// `term := ["NOT" | "-"] simple`
    fn term(&mut self) -> Result<Expr, FilterError> {
        self.skip_ws();
        let start = self.pos;
        let negated = if self.peek() == Some('-') {
            self.pos += 1;
            true
        } else if self.keyword() == Some("NOT") {
            self.pos += 3;
            true
        } else {
            false
        };
        if !negated {
            return self.simple();
        }
        self.enter(start)?;
        let inner = self.simple()?;
        self.depth -= 1;
        Ok(Expr::Not(Box::new(inner)))
    }

    /// `simple := restriction | "(" expression ")"`
    fn simple(&mut self) -> Result<Expr, FilterError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            None => Err(error(
                start,
                "unexpected end of filter, expected a restriction or '('",
            )),
            Some('(') => {
                self.enter(start)?;
                self.pos += 1;
                let inner = self.expression()?;
                self.skip_ws();
                if self.peek() != Some(')') {
                    return Err(error(
                        self.pos,
                        format!("expected ')' to close the '(' at position {start}"),
                    ));
                }
                self.pos += 1;
                self.depth -= 1;
                Ok(inner)
            }
            Some(c) if c != '-' && is_word_char(c) => {
                if let Some(kw) = self.keyword() {
                    return Err(error(
                        start,
                        format!("unexpected keyword '{kw}', expected a restriction or '('"),
                    ));
                }
                self.restriction()
            }
            Some(c) => Err(error(
                start,
                format!("unexpected '{c}', expected a restriction or '('"),
            )),
        }
    }

    /// `restriction := field comparator value`, with type checking.
    fn restriction(&mut self) -> Result<Expr, FilterError> {
        let field = self.field()?;
        self.skip_ws();
        let op_pos = self.pos;
        let op = self.comparator(&field)?;
        self.skip_ws();
        let value_pos = self.pos;
        let raw = self.value(op)?;
        typed_restriction(field, op, op_pos, raw, value_pos, self.scope)
    }

    /// Parses and resolves a field name.
    fn field(&mut self) -> Result<Field, FilterError> {
        let start = self.pos;
        let end = self.word_end(start);
        let word = self.text(start, end);
        self.pos = end;
        let field = match word.as_str() {
            "name" => Field::Name,
            "uid" => Field::Uid,
            "address.locality" => Field::Address(AddressPart::Locality),
            "address.region" => Field::Address(AddressPart::Region),
            "address.postal_code" => Field::Address(AddressPart::PostalCode),
            "address.country_code" => Field::Address(AddressPart::CountryCode),
            "given_name" => Field::GivenName,
            "family_name" => Field::FamilyName,
            "email" => Field::Email,
            "phone" => Field::Phone,
            "status" => Field::Status,
            "company" => Field::Company,
            "business_id" => Field::BusinessId,
            "create_time" => Field::CreateTime,
            "update_time" => Field::UpdateTime,
            "display_name" => Field::DisplayName,
            "domain" => Field::Domain,
            "labels." if matches!(self.peek(), Some('"' | '\'')) => {
                let key_pos = self.pos;
                let key = self.quoted()?;
                check_label_key(&key, key_pos)?;
                Field::Label(key)
            }
            _ => match word.strip_prefix("labels.") {
                Some(key) => {
                    check_label_key(key, start + 7)?;
                    Field::Label(key.to_owned())
                }
                None => return Err(self.unknown_field(start, &word)),
            },
        };
        if !self.scope.accepts(&field) {
            return Err(self.unknown_field(start, &word));
        }
        Ok(field)
    }

    fn unknown_field(&self, start: usize, word: &str) -> FilterError {
        error(
            start,
            format!(
                "unknown field '{}'; valid fields are {}",
                snippet(word),
                self.scope.valid_fields()
            ),
        )
    }

    /// Parses a comparator.
    fn comparator(&mut self, field: &Field) -> Result<Op, FilterError> {
        let next = self.peek_at(self.pos + 1);
        let (op, len) = match self.peek() {
            Some('<') if next == Some('=') => (Op::Cmp(CmpOp::Le), 2),
            Some('<') => (Op::Cmp(CmpOp::Lt), 1),
            Some('>') if next == Some('=') => (Op::Cmp(CmpOp::Ge), 2),
            Some('>') => (Op::Cmp(CmpOp::Gt), 1),
            Some('!') if next == Some('=') => (Op::Cmp(CmpOp::Ne), 2),
            Some('=') => (Op::Cmp(CmpOp::Eq), 1),
            Some(':') => (Op::Has, 1),
            _ => {
                return Err(error(
                    self.pos,
                    format!(
                        "expected a comparator (=, !=, <, <=, >, >=, :) after field '{}'",
                        field.display_name()
                    ),
                ));
            }
        };
        self.pos += len;
        Ok(op)
    }

    /// Parses a quoted or bare value.
    fn value(&mut self, op: Op) -> Result<RawValue, FilterError> {
        let start = self.pos;
        match self.peek() {
            None | Some(')') => Err(error(
                start,
                format!("expected a value after '{}'", op.symbol()),
            )),
            Some('"' | '\'') => Ok(RawValue {
                text: self.quoted()?,
                quoted: true,
            }),
            Some(c @ ('=' | '<' | '>')) => Err(error(
                start,
                format!("unexpected '{c}', expected a value after '{}'", op.symbol()),
            )),
            Some(_) => {
                let mut end = start;
                while self
                    .peek_at(end)
                    .is_some_and(|c| !c.is_whitespace() && c != ')')
                {
                    end += 1;
                }
                let text = self.text(start, end);
                if matches!(text.as_str(), "AND" | "OR" | "NOT") {
                    return Err(error(
                        start,
                        format!(
                            "expected a value after '{}', found keyword '{text}' (quote it to use it as a value)",
                            op.symbol()
                        ),
                    ));
                }
                self.pos = end;
                Ok(RawValue {
                    text,
                    quoted: false,
                })
            }
        }
    }

    /// Parses a quoted string starting at the current position (which must
    /// be a `"` or `'`), handling the escapes `\"`, `\'` and `\\`.
    fn quoted(&mut self) -> Result<String, FilterError> {
        let open = self.pos;
        let Some(quote) = self.peek() else {
            return Err(error(open, "expected a quoted string"));
        };
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(error(open, "unterminated string")),
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('\\') => {
                    let escape_pos = self.pos;
                    self.pos += 1;
                    match self.peek() {
                        None => return Err(error(open, "unterminated string")),
                        Some(c @ ('"' | '\'' | '\\')) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        Some(c) => {
                            return Err(error(
                                escape_pos,
                                format!(
                                    "invalid escape sequence '\\{c}' (only \\\", \\' and \\\\ are supported)"
                                ),
                            ));
                        }
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

/// Checks a label key against `[a-z][a-z0-9_.-]{0,62}`.
fn check_label_key(key: &str, position: usize) -> Result<(), FilterError> {
    if is_valid_label_key(key) {
        return Ok(());
    }
    let message = if key.is_empty() {
        "missing label key after 'labels.'".to_owned()
    } else {
        format!(
            "invalid label key '{}': must match [a-z][a-z0-9_.-]{{0,62}}",
            snippet(key)
        )
    };
    Err(error(position, message))
}

/// Checks a text value's length.
fn check_text_len(text: &str, position: usize) -> Result<(), FilterError> {
    let len = text.chars().count();
    if len > MAX_TEXT_LEN {
        return Err(error(
            position,
            format!(
                "text value is too long ({len} characters; at most {MAX_TEXT_LEN} are allowed)"
            ),
        ));
    }
    Ok(())
}

/// Type-checks a restriction and builds its [`Expr`].
fn typed_restriction(
    field: Field,
    op: Op,
    op_pos: usize,
    raw: RawValue,
    value_pos: usize,
    scope: Scope,
) -> Result<Expr, FilterError> {
    match field {
        Field::Name | Field::Uid => {
            let Op::Cmp(op @ (CmpOp::Eq | CmpOp::Ne)) = op else {
                return Err(error(
                    op_pos,
                    format!(
                        "operator '{}' is not supported for field '{}'; use = or !=",
                        op.symbol(),
                        field.display_name()
                    ),
                ));
            };
            let collection = scope.collection();
            let id = match field {
                Field::Name => raw
                    .text
                    .strip_prefix(collection)
                    .and_then(|rest| rest.strip_prefix('/')),
                _ => Some(raw.text.as_str()),
            };
            // The canonical hyphenated form only, as names are written.
            let id = id.and_then(super::names::parse_uuid).ok_or_else(|| {
                let expected = match field {
                    Field::Name => format!("{collection}/{{uuid}}"),
                    _ => "a UUID".to_owned(),
                };
                error(
                    value_pos,
                    format!(
                        "invalid {} '{}'; expected {expected}",
                        field.display_name(),
                        snippet(&raw.text)
                    ),
                )
            })?;
            Ok(Expr::Compare {
                field,
                op,
                value: Value::Id(id),
            })
        }
        Field::Status => {
            let Op::Cmp(op @ (CmpOp::Eq | CmpOp::Ne)) = op else {
                return Err(error(
                    op_pos,
                    format!(
                        "operator '{}' is not supported for field 'status'; use = or !=",
                        op.symbol()
                    ),
                ));
            };
            let status = match raw.text.as_str() {
                "ACTIVE" => Status::Active,
                "PROSPECTIVE" => Status::Prospective,
                "INACTIVE" => Status::Inactive,
                other => {
                    return Err(error(
                        value_pos,
                        format!(
                            "invalid status '{}'; expected one of ACTIVE, PROSPECTIVE, INACTIVE",
                            snippet(other)
                        ),
                    ));
                }
            };
            Ok(Expr::Compare {
                field,
                op,
                value: Value::Status(status),
            })
        }
        Field::CreateTime | Field::UpdateTime => {
            let Op::Cmp(op) = op else {
                return Err(error(
                    op_pos,
                    format!(
                        "operator ':' is not supported for field '{}'; use =, !=, <, <=, > or >=",
                        field.display_name()
                    ),
                ));
            };
            let time = DateTime::parse_from_rfc3339(&raw.text).map_err(|_| {
                error(
                    value_pos,
                    format!(
                        "invalid timestamp '{}'; expected RFC 3339, e.g. 2024-01-01T00:00:00Z",
                        snippet(&raw.text)
                    ),
                )
            })?;
            Ok(Expr::Compare {
                field,
                op,
                value: Value::Time(time.with_timezone(&Utc)),
            })
        }
        Field::GivenName
        | Field::FamilyName
        | Field::Email
        | Field::Phone
        | Field::Company
        | Field::BusinessId
        | Field::DisplayName
        | Field::Domain
        | Field::Address(_)
        | Field::Label(_) => match op {
            Op::Has if !raw.quoted && raw.text == "*" => {
                if matches!(field, Field::Label(_)) {
                    Ok(Expr::Present { field })
                } else {
                    Err(error(
                        value_pos,
                        format!(
                            "presence test ':*' is only supported for labels, not for '{}'",
                            field.display_name()
                        ),
                    ))
                }
            }
            Op::Has => {
                if raw.text.is_empty() {
                    return Err(error(
                        value_pos,
                        "expected non-empty text after ':' (substring match)",
                    ));
                }
                check_text_len(&raw.text, value_pos)?;
                Ok(Expr::Contains {
                    field,
                    text: raw.text,
                })
            }
            Op::Cmp(op) => {
                check_text_len(&raw.text, value_pos)?;
                let text = if field == Field::Address(AddressPart::CountryCode) {
                    raw.text.to_uppercase()
                } else {
                    raw.text
                };
                Ok(Expr::Compare {
                    field,
                    op,
                    value: Value::Text(text),
                })
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{SecondsFormat, TimeZone};
    use proptest::prelude::*;

    fn ok(input: &str) -> Expr {
        match parse(input) {
            Ok(Some(expr)) => expr,
            other => panic!("expected {input:?} to parse, got {other:?}"),
        }
    }

    fn err(input: &str) -> FilterError {
        match parse(input) {
            Err(e) => e,
            other => panic!("expected {input:?} to fail, got {other:?}"),
        }
    }

    fn text_cmp(field: Field, op: CmpOp, text: &str) -> Expr {
        Expr::Compare {
            field,
            op,
            value: Value::Text(text.to_owned()),
        }
    }

    fn eq(field: Field, text: &str) -> Expr {
        text_cmp(field, CmpOp::Eq, text)
    }

    fn label(key: &str) -> Field {
        Field::Label(key.to_owned())
    }

    fn and(a: Expr, b: Expr) -> Expr {
        Expr::And(Box::new(a), Box::new(b))
    }

    fn or(a: Expr, b: Expr) -> Expr {
        Expr::Or(Box::new(a), Box::new(b))
    }

    fn not(a: Expr) -> Expr {
        Expr::Not(Box::new(a))
    }

    fn time(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn a() -> Expr {
        eq(Field::Email, "a")
    }

    fn b() -> Expr {
        eq(Field::Email, "b")
    }

    fn c() -> Expr {
        eq(Field::Email, "c")
    }

    // ---- successful parses -------------------------------------------

    #[test]
    fn empty_and_whitespace_are_none() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("   \t\n "), Ok(None));
        assert_eq!(parse("\u{3000}"), Ok(None));
    }

    #[test]
    fn text_fields_all_comparators() {
        let fields = [
            ("given_name", Field::GivenName),
            ("family_name", Field::FamilyName),
            ("email", Field::Email),
            ("phone", Field::Phone),
            ("company", Field::Company),
            ("business_id", Field::BusinessId),
            ("labels.team", label("team")),
        ];
        let ops = [
            ("=", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            ("<", CmpOp::Lt),
            ("<=", CmpOp::Le),
            (">", CmpOp::Gt),
            (">=", CmpOp::Ge),
        ];
        for (name, field) in &fields {
            for (sym, op) in ops {
                let want = text_cmp(field.clone(), op, "x1");
                assert_eq!(ok(&format!("{name} {sym} x1")), want);
                assert_eq!(ok(&format!("{name}{sym}\"x1\"")), want);
                assert_eq!(ok(&format!("  {name}  {sym}  'x1'  ")), want);
            }
        }
    }

    #[test]
    fn bare_values_keep_punctuation() {
        assert_eq!(
            ok("email = ann.lee+tag@example.com"),
            eq(Field::Email, "ann.lee+tag@example.com")
        );
        assert_eq!(ok("phone=+358-40_123:4"), eq(Field::Phone, "+358-40_123:4"));
        assert_eq!(ok("company = Ö&Co"), eq(Field::Company, "Ö&Co"));
    }

    #[test]
    fn status_values() {
        assert_eq!(
            ok("status = ACTIVE"),
            Expr::Compare {
                field: Field::Status,
                op: CmpOp::Eq,
                value: Value::Status(Status::Active)
            }
        );
        assert_eq!(
            ok("status != \"INACTIVE\""),
            Expr::Compare {
                field: Field::Status,
                op: CmpOp::Ne,
                value: Value::Status(Status::Inactive)
            }
        );
        assert_eq!(
            ok("status='PROSPECTIVE'"),
            Expr::Compare {
                field: Field::Status,
                op: CmpOp::Eq,
                value: Value::Status(Status::Prospective)
            }
        );
    }

    #[test]
    fn timestamps_are_normalised_to_utc() {
        assert_eq!(
            ok("create_time > 2024-01-01T00:00:00Z"),
            Expr::Compare {
                field: Field::CreateTime,
                op: CmpOp::Gt,
                value: Value::Time(time(2024, 1, 1, 0, 0, 0))
            }
        );
        assert_eq!(
            ok("update_time<=2024-03-01T01:30:00+02:00"),
            Expr::Compare {
                field: Field::UpdateTime,
                op: CmpOp::Le,
                value: Value::Time(time(2024, 2, 29, 23, 30, 0))
            }
        );
        assert_eq!(
            ok("create_time >= \"2023-12-31T20:00:00-05:00\""),
            Expr::Compare {
                field: Field::CreateTime,
                op: CmpOp::Ge,
                value: Value::Time(time(2024, 1, 1, 1, 0, 0))
            }
        );
        let frac = Utc
            .with_ymd_and_hms(2024, 5, 6, 7, 8, 9)
            .unwrap()
            .checked_add_signed(chrono::Duration::milliseconds(250))
            .unwrap();
        assert_eq!(
            ok("create_time != 2024-05-06T07:08:09.250Z"),
            Expr::Compare {
                field: Field::CreateTime,
                op: CmpOp::Ne,
                value: Value::Time(frac)
            }
        );
        for (sym, op) in [("=", CmpOp::Eq), ("<", CmpOp::Lt)] {
            assert_eq!(
                ok(&format!("update_time {sym} 2024-01-01T00:00:00Z")),
                Expr::Compare {
                    field: Field::UpdateTime,
                    op,
                    value: Value::Time(time(2024, 1, 1, 0, 0, 0))
                }
            );
        }
    }

    #[test]
    fn labels_with_dotted_and_quoted_keys() {
        assert_eq!(ok("labels.app.tier = web"), eq(label("app.tier"), "web"));
        assert_eq!(
            ok("labels.k8s_io-x.y = \"a b\""),
            eq(label("k8s_io-x.y"), "a b")
        );
        assert_eq!(ok("labels.\"my-key\" = x"), eq(label("my-key"), "x"));
        assert_eq!(
            ok("labels.'a.b':*"),
            Expr::Present {
                field: label("a.b")
            }
        );
        let longest = format!("k{}", "x".repeat(62));
        assert_eq!(
            ok(&format!("labels.{longest}=v")),
            eq(Field::Label(longest.clone()), "v")
        );
    }

    #[test]
    fn contains_and_presence() {
        assert_eq!(
            ok("given_name:ann"),
            Expr::Contains {
                field: Field::GivenName,
                text: "ann".to_owned()
            }
        );
        assert_eq!(
            ok("email : \"@example.com\""),
            Expr::Contains {
                field: Field::Email,
                text: "@example.com".to_owned()
            }
        );
        assert_eq!(
            ok("labels.vip:*"),
            Expr::Present {
                field: label("vip")
            }
        );
        assert_eq!(
            ok("labels.vip:\"*\""),
            Expr::Contains {
                field: label("vip"),
                text: "*".to_owned()
            }
        );
        assert_eq!(
            ok("labels.vip = *"),
            Expr::Compare {
                field: label("vip"),
                op: CmpOp::Eq,
                value: Value::Text("*".to_owned())
            }
        );
    }

    #[test]
    fn quoted_strings_with_escapes() {
        assert_eq!(
            ok(r#"family_name = "O\"Brien \\ x""#),
            eq(Field::FamilyName, "O\"Brien \\ x")
        );
        assert_eq!(ok(r"family_name = 'it\'s'"), eq(Field::FamilyName, "it's"));
        assert_eq!(
            ok(r#"company = 'say "hi"'"#),
            eq(Field::Company, "say \"hi\"")
        );
        assert_eq!(
            ok(r#"company = "AND OR NOT ( ) :""#),
            eq(Field::Company, "AND OR NOT ( ) :")
        );
        assert_eq!(ok(r#"company = """#), eq(Field::Company, ""));
        assert_eq!(ok("company = \"äö 🎉\""), eq(Field::Company, "äö 🎉"));
    }

    #[test]
    fn implicit_and() {
        assert_eq!(ok("email=a email=b"), and(a(), b()));
        assert_eq!(ok("email=a email=b email=c"), and(and(a(), b()), c()));
        assert_eq!(ok("email=\"a\"email=\"b\""), and(a(), b()));
        assert_eq!(ok("(email=a)(email=b)"), and(a(), b()));
    }

    #[test]
    fn explicit_and_or() {
        assert_eq!(ok("email=a AND email=b"), and(a(), b()));
        assert_eq!(ok("email=a OR email=b"), or(a(), b()));
        assert_eq!(ok("email=a OR email=b OR email=c"), or(or(a(), b()), c()));
        assert_eq!(
            ok("email=a AND email=b AND email=c"),
            and(and(a(), b()), c())
        );
    }

    #[test]
    fn negation() {
        assert_eq!(ok("NOT email=a"), not(a()));
        assert_eq!(ok("-email=a"), not(a()));
        assert_eq!(ok("NOT(email=a)"), not(a()));
        assert_eq!(ok("-(email=a OR email=b)"), not(or(a(), b())));
        assert_eq!(ok("NOT email=a OR email=b"), or(not(a()), b()));
        assert_eq!(ok("NOT (NOT email=a)"), not(not(a())));
        assert_eq!(ok("email=a -email=b"), and(a(), not(b())));
        // a leading '-' inside a value is just text
        assert_eq!(ok("email = -a"), eq(Field::Email, "-a"));
    }

    #[test]
    fn or_binds_tighter_than_and() {
        assert_eq!(ok("email=a AND email=b OR email=c"), and(a(), or(b(), c())));
        assert_eq!(ok("email=a OR email=b AND email=c"), and(or(a(), b()), c()));
        assert_eq!(ok("email=a email=b OR email=c"), and(a(), or(b(), c())));
        assert_eq!(ok("email=a OR email=b email=c"), and(or(a(), b()), c()));
    }

    #[test]
    fn parentheses_override_precedence() {
        assert_eq!(
            ok("(email=a AND email=b) OR email=c"),
            or(and(a(), b()), c())
        );
        assert_eq!(ok("((email=a))"), a());
        assert_eq!(
            ok("( email=a OR (email=b AND NOT email=c) )"),
            or(a(), and(b(), not(c())))
        );
    }

    #[test]
    fn maximum_depth_is_accepted() {
        let input = format!("{}email=a{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(ok(&input), a());
        let input = format!(
            "{}email=a{}",
            "-(".repeat(MAX_DEPTH / 2),
            ")".repeat(MAX_DEPTH / 2)
        );
        assert!(parse(&input).is_ok());
    }

    #[test]
    fn maximum_length_is_accepted() {
        let value = "x".repeat(MAX_FILTER_LEN - "email=".len());
        // too long for a text value, but not for the filter length check
        assert!(
            err(&format!("email={value}"))
                .message
                .contains("too long (2042 characters")
        );
        let padded = format!("email=a{}", " ".repeat(MAX_FILTER_LEN - 7));
        assert_eq!(padded.len(), MAX_FILTER_LEN);
        assert_eq!(ok(&padded), a());
    }

    // ---- errors --------------------------------------------------------

    fn assert_err(input: &str, position: usize, message: &str) {
        let e = err(input);
        assert_eq!(e.position, position, "position for {input:?}: {e}");
        assert!(
            e.message.starts_with(message),
            "message for {input:?}: got {:?}, want prefix {message:?}",
            e.message
        );
    }

    #[test]
    fn error_missing_value() {
        assert_err("given_name = ", 13, "expected a value after '='");
        assert_err("(given_name : )", 14, "expected a value after ':'");
    }

    #[test]
    fn error_unclosed_paren() {
        let e = err("(email = \"x\"");
        assert_eq!(
            e,
            FilterError {
                position: 12,
                message: "expected ')' to close the '(' at position 0".to_owned()
            }
        );
        assert_eq!(
            e.to_string(),
            "invalid filter at position 12: expected ')' to close the '(' at position 0"
        );
    }

    #[test]
    fn error_unknown_field() {
        let e = err("foo = 1");
        assert_eq!(e.position, 0);
        assert_eq!(
            e.message,
            "unknown field 'foo'; valid fields are name, uid, given_name, family_name, email, \
             phone, status, company, business_id, address.locality, address.region, \
             address.postal_code, address.country_code, create_time, update_time, labels.<key>"
        );
        assert_err("email=a and email=b", 8, "unknown field 'and'");
        assert_err("email=a   Email=b", 10, "unknown field 'Email'");
    }

    #[test]
    fn company_filters_accept_company_fields_only() {
        assert_eq!(
            parse_for(
                r#"display_name:"acme" AND domain = "acme.com""#,
                Scope::Companies
            ),
            Ok(Some(and(
                Expr::Contains {
                    field: Field::DisplayName,
                    text: "acme".into()
                },
                eq(Field::Domain, "acme.com")
            )))
        );
        assert_eq!(
            parse_for("business_id = x", Scope::Companies),
            Ok(Some(eq(Field::BusinessId, "x")))
        );
        let e = parse_for("email = x", Scope::Companies).unwrap_err();
        assert_eq!(e.position, 0);
        assert_eq!(
            e.message,
            "unknown field 'email'; valid fields are name, uid, display_name, domain, \
             business_id, create_time, update_time, labels.<key>"
        );
        assert_err("display_name = x", 0, "unknown field 'display_name'");
        let id = Uuid::now_v7();
        assert_eq!(
            parse_for(&format!(r#"name = "companies/{id}""#), Scope::Companies),
            Ok(Some(Expr::Compare {
                field: Field::Name,
                op: CmpOp::Eq,
                value: Value::Id(id)
            }))
        );
        let e = parse_for(&format!(r#"name = "customers/{id}""#), Scope::Companies).unwrap_err();
        assert_eq!(e.position, 7);
        assert!(e.message.starts_with("invalid name '"), "{e}");
        assert!(e.message.ends_with("expected companies/{uuid}"), "{e}");
        assert_err(
            "address.locality = x AND display_name = y",
            25,
            "unknown field",
        );
    }

    #[test]
    fn names_and_uids_are_typed_identifiers() {
        let id = Uuid::now_v7();
        let other = Uuid::now_v7();
        let is = |field, op, id| Expr::Compare {
            field,
            op,
            value: Value::Id(id),
        };
        assert_eq!(
            ok(&format!(
                r#"name = "customers/{id}" OR name = customers/{other}"#
            )),
            or(
                is(Field::Name, CmpOp::Eq, id),
                is(Field::Name, CmpOp::Eq, other)
            )
        );
        assert_eq!(ok(&format!("uid != {id}")), is(Field::Uid, CmpOp::Ne, id));
        assert_err(
            &format!("uid > {id}"),
            4,
            "operator '>' is not supported for field 'uid'; use = or !=",
        );
        assert_err(
            "name:x",
            4,
            "operator ':' is not supported for field 'name'",
        );
        assert_err(&format!("name = {id}"), 7, "invalid name '");
        assert_err("uid = 42", 6, "invalid uid '42'; expected a UUID");
        // Only the canonical hyphenated form the service writes.
        assert_err(&format!("uid = {}", id.simple()), 6, "invalid uid");
    }

    #[test]
    fn address_parts_are_text_fields() {
        assert_eq!(
            ok(r#"address.locality = "San Francisco" AND address.postal_code:"941""#),
            and(
                eq(Field::Address(AddressPart::Locality), "San Francisco"),
                Expr::Contains {
                    field: Field::Address(AddressPart::PostalCode),
                    text: "941".into()
                }
            )
        );
        assert_eq!(
            ok("address.region >= CA"),
            text_cmp(Field::Address(AddressPart::Region), CmpOp::Ge, "CA")
        );
        // Country codes are stored upper case; a lower-case value still matches.
        assert_eq!(
            ok("address.country_code = us"),
            eq(Field::Address(AddressPart::CountryCode), "US")
        );
        assert_err("address.street = x", 0, "unknown field 'address.street'");
        assert_err("address = x", 0, "unknown field 'address'");
    }

    #[test]
    fn error_trailing_garbage() {
        assert_err("email = x)", 9, "unexpected ')' without a matching '('");
        assert_err(
            "email = x = y",
            10,
            "unexpected '=', expected a restriction or '('",
        );
        assert_err("= x", 0, "unexpected '=', expected a restriction or '('");
    }

    #[test]
    fn error_unterminated_string() {
        assert_err("email = \"abc", 8, "unterminated string");
        assert_err("email = 'abc\\'", 8, "unterminated string");
        assert_err("labels.\"abc = x", 7, "unterminated string");
    }

    #[test]
    fn error_invalid_escape() {
        assert_err(r#"email = "a\nb""#, 10, "invalid escape sequence '\\n'");
    }

    #[test]
    fn error_too_long() {
        let input = format!("email=a{}", " ".repeat(MAX_FILTER_LEN));
        let e = err(&input);
        assert_eq!(e.position, 0);
        assert_eq!(
            e.message,
            "filter is too long (2055 bytes; at most 2048 are allowed)"
        );
    }

    #[test]
    fn error_too_deep() {
        let n = MAX_DEPTH + 1;
        let input = format!("{}email=a{}", "(".repeat(n), ")".repeat(n));
        assert_err(&input, MAX_DEPTH, "filter is nested too deeply");
        let input = format!("{}email=a", "NOT (".repeat(20));
        // 16 NOT/'(' pairs reach 32; the 17th NOT (at 16 * 5) exceeds it
        assert_err(&input, 16 * 5, "filter is nested too deeply");
        let input = "(".repeat(MAX_FILTER_LEN);
        assert_err(&input, MAX_DEPTH, "filter is nested too deeply");
    }

    #[test]
    fn error_status_typing() {
        assert_err(
            "status < ACTIVE",
            7,
            "operator '<' is not supported for field 'status'",
        );
        assert_err(
            "status:ACTIVE",
            6,
            "operator ':' is not supported for field 'status'",
        );
        assert_err(
            "status = active",
            9,
            "invalid status 'active'; expected one of ACTIVE, PROSPECTIVE, INACTIVE",
        );
    }

    #[test]
    fn error_time_typing() {
        assert_err(
            "create_time : 2024",
            12,
            "operator ':' is not supported for field 'create_time'",
        );
        assert_err(
            "update_time > yesterday",
            14,
            "invalid timestamp 'yesterday'",
        );
        assert_err(
            "update_time > 2024-01-01",
            14,
            "invalid timestamp '2024-01-01'",
        );
    }

    #[test]
    fn error_text_typing() {
        assert_err(
            "given_name:*",
            11,
            "presence test ':*' is only supported for labels",
        );
        assert_err("given_name : \"\"", 13, "expected non-empty text after ':'");
        let long = "x".repeat(MAX_TEXT_LEN + 1);
        assert_err(
            &format!("email = \"{long}\""),
            8,
            "text value is too long (257 characters",
        );
        let max = "é".repeat(MAX_TEXT_LEN);
        assert_eq!(ok(&format!("email = \"{max}\"")), eq(Field::Email, &max));
    }

    #[test]
    fn error_label_keys() {
        assert_err("labels.Foo = x", 7, "invalid label key 'Foo'");
        assert_err("email=a labels.1x = x", 15, "invalid label key '1x'");
        assert_err("labels. = x", 7, "missing label key after 'labels.'");
        assert_err("labels = x", 0, "unknown field 'labels'");
        let too_long = format!("k{}", "x".repeat(63));
        assert_err(&format!("labels.{too_long}=v"), 7, "invalid label key");
        assert_err("labels.\"A\" = x", 7, "invalid label key 'A'");
    }

    #[test]
    fn error_missing_comparator() {
        assert_err(
            "given_name",
            10,
            "expected a comparator (=, !=, <, <=, >, >=, :) after field 'given_name'",
        );
        assert_err("given_name ! x", 11, "expected a comparator");
        assert_err("(email)", 6, "expected a comparator");
    }

    #[test]
    fn error_keywords_out_of_place() {
        assert_err(
            "email=x AND",
            11,
            "unexpected end of filter, expected a restriction or '('",
        );
        assert_err("email=x OR OR email=y", 11, "unexpected keyword 'OR'");
        assert_err("AND email=x", 0, "unexpected keyword 'AND'");
        assert_err("NOT NOT email=x", 4, "unexpected keyword 'NOT'");
        assert_err("NOT", 3, "unexpected end of filter");
        assert_err("--email=x", 1, "unexpected '-'");
        assert_err(
            "email = AND",
            8,
            "expected a value after '=', found keyword 'AND'",
        );
        assert_err(
            "email == x",
            7,
            "unexpected '=', expected a value after '='",
        );
        assert_err("()", 1, "unexpected ')', expected a restriction or '('");
    }

    #[test]
    fn error_positions_count_characters_not_bytes() {
        assert_err("company = \"äöü\" foo = 1", 16, "unknown field 'foo'");
        assert_err("company = 🎉🎉)", 12, "unexpected ')'");
    }

    #[test]
    fn error_message_snippets_are_bounded() {
        let e = err(&format!("{} = 1", "f".repeat(1000)));
        assert!(e.message.len() < 300, "{}", e.message);
    }

    // ---- properties ----------------------------------------------------

    /// Renders an expression in canonical form.
    fn render(expr: &Expr) -> String {
        render_with(expr, " AND ")
    }

    /// Renders an expression, joining `And` operands with `and_sep`
    /// (`" AND "` or `" "` for implicit juxtaposition).
    fn render_with(expr: &Expr, and_sep: &str) -> String {
        let operand = |e: &Expr| match e {
            Expr::And(..) | Expr::Or(..) | Expr::Not(..) => {
                format!("({})", render_with(e, and_sep))
            }
            _ => render_with(e, and_sep),
        };
        match expr {
            Expr::And(l, r) => format!("{}{and_sep}{}", operand(l), operand(r)),
            Expr::Or(l, r) => format!("{} OR {}", operand(l), operand(r)),
            Expr::Not(e) => format!("NOT {}", operand(e)),
            Expr::Compare { field, op, value } => {
                let value = match value {
                    Value::Text(t) => quote(t),
                    Value::Status(Status::Active) => "ACTIVE".to_owned(),
                    Value::Status(Status::Prospective) => "PROSPECTIVE".to_owned(),
                    Value::Status(Status::Inactive) => "INACTIVE".to_owned(),
                    Value::Time(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                    Value::Id(id) => id.to_string(),
                };
                format!("{} {} {value}", render_field(field), op.symbol())
            }
            Expr::Contains { field, text } => format!("{}:{}", render_field(field), quote(text)),
            Expr::Present { field } => format!("{}:*", render_field(field)),
        }
    }

    fn render_field(field: &Field) -> String {
        match field {
            Field::Label(key) => format!("labels.{key}"),
            other => other.display_name(),
        }
    }

    fn quote(text: &str) -> String {
        let mut out = String::from('"');
        for c in text.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        out
    }

    fn arb_text_field() -> impl Strategy<Value = Field> {
        prop_oneof![
            Just(Field::GivenName),
            Just(Field::FamilyName),
            Just(Field::Email),
            Just(Field::Phone),
            Just(Field::Company),
            Just(Field::BusinessId),
            // Not country_code: its values are upper-cased, which a round trip would see.
            Just(Field::Address(AddressPart::Locality)),
            Just(Field::Address(AddressPart::Region)),
            Just(Field::Address(AddressPart::PostalCode)),
            "[a-z][a-z0-9_.-]{0,12}".prop_map(Field::Label),
        ]
    }

    fn arb_cmp_op() -> impl Strategy<Value = CmpOp> {
        prop_oneof![
            Just(CmpOp::Eq),
            Just(CmpOp::Ne),
            Just(CmpOp::Lt),
            Just(CmpOp::Le),
            Just(CmpOp::Gt),
            Just(CmpOp::Ge),
        ]
    }

    fn arb_time() -> impl Strategy<Value = DateTime<Utc>> {
        // 0001-01-01T00:00:00Z ..= 9999-12-31T23:59:59Z
        (-62_135_596_800i64..=253_402_300_799i64, 0u32..1_000_000_000)
            .prop_map(|(s, n)| DateTime::from_timestamp(s, n).unwrap())
    }

    fn arb_leaf() -> impl Strategy<Value = Expr> {
        prop_oneof![
            (
                arb_text_field(),
                arb_cmp_op(),
                "\\PC{0,12}|[ \"'\\\\()*:]{0,6}"
            )
                .prop_map(|(field, op, t)| Expr::Compare {
                    field,
                    op,
                    value: Value::Text(t)
                }),
            (
                prop_oneof![Just(CmpOp::Eq), Just(CmpOp::Ne)],
                prop_oneof![
                    Just(Status::Active),
                    Just(Status::Prospective),
                    Just(Status::Inactive)
                ]
            )
                .prop_map(|(op, s)| Expr::Compare {
                    field: Field::Status,
                    op,
                    value: Value::Status(s)
                }),
            (
                prop_oneof![Just(Field::CreateTime), Just(Field::UpdateTime)],
                arb_cmp_op(),
                arb_time()
            )
                .prop_map(|(field, op, t)| Expr::Compare {
                    field,
                    op,
                    value: Value::Time(t)
                }),
            (arb_text_field(), "\\PC{1,12}|[ \"'\\\\()*:]{1,6}")
                .prop_map(|(field, text)| Expr::Contains { field, text }),
            "[a-z][a-z0-9_.-]{0,12}".prop_map(|k| Expr::Present {
                field: Field::Label(k)
            }),
        ]
    }

    fn arb_expr() -> impl Strategy<Value = Expr> {
        arb_leaf().prop_recursive(5, 24, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(l, r)| and(l, r)),
                (inner.clone(), inner.clone()).prop_map(|(l, r)| or(l, r)),
                inner.prop_map(not),
            ]
        })
    }

    fn token_soup() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            Just("("),
            Just(")"),
            Just("NOT "),
            Just("NOT"),
            Just("-"),
            Just(" AND "),
            Just(" OR "),
            Just(" "),
            Just("given_name"),
            Just("labels."),
            Just("labels.a.b"),
            Just("status"),
            Just("create_time"),
            Just("="),
            Just("!="),
            Just("<="),
            Just(">"),
            Just(":"),
            Just("*"),
            Just("\""),
            Just("'"),
            Just("\\"),
            Just("ACTIVE"),
            Just("2024-01-01T00:00:00+02:00"),
            Just("x"),
            Just("ä🎉"),
        ];
        prop::collection::vec(token, 0..120).prop_map(|v| v.concat())
    }

    /// Parses `input`, checking the invariants every result must satisfy.
    fn check_no_panic(input: &str) {
        if let Err(e) = parse(input) {
            assert!(e.position <= input.chars().count(), "{e} for {input:?}");
            assert!(!e.message.is_empty());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn never_panics_on_arbitrary_strings(input in any::<String>()) {
            check_no_panic(&input);
        }

        #[test]
        fn never_panics_on_printable_unicode(input in "\\PC{0,400}") {
            check_no_panic(&input);
        }

        #[test]
        fn never_panics_on_token_soup(input in token_soup()) {
            check_no_panic(&input);
        }

        #[test]
        fn never_panics_on_deep_nesting(
            open in 0usize..1200,
            close in 0usize..1200,
            neg in any::<bool>(),
        ) {
            let opener = if neg { "-(" } else { "(" };
            let input = format!("{}email=x{}", opener.repeat(open), ")".repeat(close));
            check_no_panic(&input);
            let depth = if neg { open * 2 } else { open };
            if open == close && depth <= MAX_DEPTH {
                prop_assert!(parse(&input).is_ok());
            }
        }

        #[test]
        fn render_roundtrips(expr in arb_expr()) {
            let rendered = render(&expr);
            prop_assume!(rendered.len() <= MAX_FILTER_LEN);
            prop_assert_eq!(parse(&rendered), Ok(Some(expr)), "rendered: {}", rendered);
        }

        #[test]
        fn render_with_juxtaposition_roundtrips(expr in arb_expr()) {
            let rendered = render_with(&expr, " ");
            prop_assume!(rendered.len() <= MAX_FILTER_LEN);
            prop_assert_eq!(parse(&rendered), Ok(Some(expr)), "rendered: {}", rendered);
        }
    }
}
