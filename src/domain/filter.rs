//! One [AIP-160](https://google.aip.dev/160) filter language for every listing: the
//! `filter` of ListCustomers ([`CustomerField`]), ListCompanies ([`CompanyField`]) and
//! ListCustomerEvents ([`EventField`]).
//!
//! [`parse`] turns the user-supplied filter string into a typed [`Expr`] tree over one
//! resource's fields. The grammar is the same for every resource; what differs is the
//! vocabulary, which each resource declares by implementing [`FilterField`]: its field
//! names, the kind of value each field takes and the operators it accepts. Field names,
//! operators and values are validated here, and the tree's types make an ill-typed
//! restriction unrepresentable: a [`Compare`] pairs an identifier field with a [`Uuid`], a
//! time field with a UTC time, an enumerated field (a customer's `status`, an event's
//! `type`) with one of its values and a text field with text; substring matches
//! ([`Expr::Contains`]) name text fields only and presence tests ([`Expr::Present`]) labels
//! only. A kind of field a resource does not have is [`NoField`], which has no values. The
//! storage layer therefore translates every tree without a "cannot happen" case.
//!
//! Every failure is reported as a [`FilterError`] carrying the 0-based *character* position
//! where the problem starts, suitable for an `INVALID_ARGUMENT` response.
//!
//! The parser is a hand-written recursive-descent parser working directly on characters. It
//! never panics: input longer than the resource's [`FilterField::MAX_LEN`] bytes is rejected
//! up front, and nesting of parentheses and negations is limited to [`MAX_DEPTH`], which
//! bounds the recursion.
//!
//! [`Expr::canonical`] renders a tree back as normalised filter text built from the filter
//! names of its fields (never from Rust identifiers), for fingerprints that must survive
//! refactoring.
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
//! field       := customers: "name" | "uid" | "given_name" | "family_name" | "email"
//!                  | "phone" | "status" | "company" | "business_id"
//!                  | "address." ("locality" | "region" | "postal_code" | "country_code")
//!                  | "create_time" | "update_time" | label
//!              | companies: "name" | "uid" | "display_name" | "domain" | "business_id"
//!                  | "create_time" | "update_time" | label
//!              | events: "type" | "event_type" | "actor" | "occur_time"
//! label       := "labels." label_key | "labels." quoted_string
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
//! * Identifier fields ([`IdField`]): `name` (`customers/{uuid}`, or `companies/{uuid}` in
//!   company filters) and `uid` (the bare UUID): only `=` and `!=`, with a well-formed
//!   identifier; `name = "customers/A" OR name = "customers/B"` picks several.
//! * Enumerated fields ([`EnumField`]): only `=` and `!=`, with one of the field's values
//!   (case-sensitive, quoted or bare): a customer's `status` (`ACTIVE`, `PROSPECTIVE`,
//!   `INACTIVE`), an event's `type` (`CustomerRegistered`, `CustomerUpdated` …).
//! * Time fields (`create_time`, `update_time`, an event's `occur_time`): `=`, `!=`, `<`,
//!   `<=`, `>`, `>=` with an RFC 3339 timestamp, normalised to UTC.
//! * Text fields ([`TextField`]): customers' `given_name`, `family_name`, `email`, `phone`,
//!   `company`, `business_id`, `address.*`; companies' `display_name`, `domain`,
//!   `business_id`; and `labels.<key>` of both: all six comparisons with a text value of at
//!   most 256 characters (`address.country_code` is compared in upper case, as it is
//!   stored); `field:"text"` is a case-insensitive substring match ([`Expr::Contains`], text
//!   must be non-empty); `labels.<key>:*` (bare `*`) tests that the label is present
//!   ([`Expr::Present`]). A quoted `"*"` is an ordinary substring. An event's `actor` is a
//!   text field that accepts only `=` and `!=`.

pub mod companies;
pub mod customers;
pub mod events;

use std::{borrow::Cow, fmt, marker::PhantomData};

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use super::syntax::snippet;

pub use companies::{CompanyField, CompanyText};
pub use customers::{AddressPart, CustomerField, CustomerText, StatusField};
pub use events::{ActorField, EventField, EventTypeField, OccurTimeField};

/// Maximum accepted length of a filter string, in bytes (unless a resource sets a lower
/// [`FilterField::MAX_LEN`]).
pub const MAX_FILTER_LEN: usize = 2048;

/// Maximum nesting of parentheses and negations (`NOT` / `-`).
pub const MAX_DEPTH: usize = 32;

/// Maximum length of a text value, in characters.
const MAX_TEXT_LEN: usize = 256;

/// Maximum length of a label key, in characters.
const MAX_LABEL_KEY_LEN: usize = 63;

/// The vocabulary of one resource's filters: implemented by [`CustomerField`],
/// [`CompanyField`] and [`EventField`], the fields a filter over that resource can name.
///
/// A field resolves to one [`FieldKind`], which decides how its value is typed and which
/// operators apply. The associated types are the resource's fields of each kind; a kind the
/// resource does not have is [`NoField`].
pub trait FilterField: Sized + Clone + PartialEq + fmt::Debug + 'static {
    /// Identifier fields (`name`, `uid`), compared with `=`/`!=` to a UUID.
    type Id: IdKind;
    /// Enumerated fields, compared with `=`/`!=` to one of their values.
    type Enum: EnumField;
    /// Time fields, compared with any of the six comparisons to a UTC time.
    type Time: FieldName;
    /// Text fields: compared to text, searched with `:`, and (labels) tested for presence.
    type Text: TextField;

    /// Every field but the labels, in the order an unknown field's error lists them.
    const FIELDS: &'static [Self];
    /// The collection of the resource's names, as in a `name` value
    /// (`customers` for `customers/{uuid}`).
    const COLLECTION: &'static str;
    /// Longest filter accepted, in bytes.
    const MAX_LEN: usize = MAX_FILTER_LEN;

    /// The field called `name` in a filter (case-sensitive), other than `labels.<key>`.
    fn parse(name: &str) -> Option<Self> {
        Self::FIELDS
            .iter()
            .find(|field| Self::clone(field).kind().name() == name)
            .cloned()
    }
    /// The field `labels.<key>` for a valid label key, if the resource has labels.
    fn label(key: String) -> Option<Self>;
    /// The field `external_ids.<source>` for a valid source, if the resource has external
    /// ids (customers).
    fn external_id(source: String) -> Option<Self> {
        let _ = source;
        None
    }
    /// The field's kind, which types its values.
    fn kind(self) -> FieldKind<Self>;

    /// The field names accepted, listed when a filter names an unknown field.
    fn valid_fields() -> String {
        let mut names: Vec<String> = Self::FIELDS
            .iter()
            .map(|field| field.clone().kind().name().into_owned())
            .collect();
        if Self::label(String::from("key")).is_some() {
            names.push("labels.<key>".to_owned());
        }
        if Self::external_id(String::from("source")).is_some() {
            names.push("external_ids.<source>".to_owned());
        }
        names.join(", ")
    }
}

/// The fields whose presence `field:*` tests (labels) of the filter fields `F`.
pub type LabelOf<F> = <<F as FilterField>::Text as TextField>::Label;

/// A field as a filter writes it.
pub trait FieldName: Clone + PartialEq + Eq + fmt::Debug {
    /// The field's name in a filter: `given_name`, `address.locality`, `labels.tier`.
    fn name(&self) -> Cow<'_, str>;
}

/// Names fields that are written one fixed way: `field_names!(Type { Variant => "name", … })`
/// for an enum, `field_names!(Type => "name")` for a single-field type.
macro_rules! field_names {
    ($($ty:ident $({ $($variant:ident => $name:literal),* $(,)? })? $(=> $single:literal)?);* $(;)?) => {$(
        impl $crate::domain::filter::FieldName for $ty {
            fn name(&self) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed(
                    $(match self { $(Self::$variant => $name),* })?
                    $($single)?
                )
            }
        }
    )*};
}
pub(crate) use field_names;

/// An identifier field: `name` or `uid`.
pub trait IdKind: FieldName {
    /// `true` for `name` (values `{collection}/{uuid}`), `false` for `uid` (a bare UUID).
    fn is_resource_name(&self) -> bool;
}

/// An enumerated field and its values.
pub trait EnumField: FieldName {
    /// The field's values.
    type Value: Copy + PartialEq + Eq + fmt::Debug + 'static;
    /// Every value, in the order error messages list them.
    const VALUES: &'static [Self::Value];
    /// How a value is written in a filter.
    fn value_name(value: Self::Value) -> &'static str;

    /// The value written `text` (case-sensitive).
    fn value(&self, text: &str) -> Option<Self::Value> {
        Self::VALUES
            .iter()
            .copied()
            .find(|value| Self::value_name(*value) == text)
    }

    /// The valid values, for error messages: `ACTIVE, PROSPECTIVE, INACTIVE`.
    fn expected(&self) -> String {
        let names: Vec<&str> = Self::VALUES.iter().map(|v| Self::value_name(*v)).collect();
        names.join(", ")
    }
}

/// A text field.
pub trait TextField: FieldName {
    /// The fields among these whose presence `field:*` tests (labels).
    type Label: FieldName;
    /// The presence test of this field, if `field:*` applies to it (labels).
    fn presence(&self) -> Option<Self::Label>;
    /// Whether `<`, `<=`, `>`, `>=` and `:` apply (otherwise only `=` and `!=`).
    fn ordered(&self) -> bool {
        true
    }
    /// The text compared, from the text written (e.g. upper-cased for a field stored in
    /// upper case).
    fn normalise(&self, text: String) -> String {
        text
    }
}

/// What a field is: the kind decides how the parser types its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldKind<F: FilterField> {
    /// An identifier field.
    Id(F::Id),
    /// An enumerated field.
    Enum(F::Enum),
    /// A time field.
    Time(F::Time),
    /// A text field.
    Text(F::Text),
}

impl<F: FilterField> FieldKind<F> {
    /// The field's name in a filter.
    pub fn name(&self) -> Cow<'_, str> {
        match self {
            FieldKind::Id(field) => field.name(),
            FieldKind::Enum(field) => field.name(),
            FieldKind::Time(field) => field.name(),
            FieldKind::Text(field) => field.name(),
        }
    }
}

/// A kind of field a resource does not have (companies have no enumerated field, events no
/// identifier or label): it has no values, so neither has a restriction on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoField {}

impl FieldName for NoField {
    fn name(&self) -> Cow<'_, str> {
        match *self {}
    }
}

impl IdKind for NoField {
    fn is_resource_name(&self) -> bool {
        match *self {}
    }
}

impl EnumField for NoField {
    type Value = NoField;
    const VALUES: &'static [NoField] = &[];

    fn value_name(value: NoField) -> &'static str {
        match value {}
    }
}

impl TextField for NoField {
    type Label = NoField;

    fn presence(&self) -> Option<NoField> {
        match *self {}
    }
}

/// The identifier fields of customers and companies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdField {
    /// `name`: the resource name (`customers/{uuid}`).
    Name,
    /// `uid`: the bare UUID of the resource.
    Uid,
}

field_names!(IdField { Name => "name", Uid => "uid" });

impl IdKind for IdField {
    fn is_resource_name(&self) -> bool {
        matches!(self, IdField::Name)
    }
}

/// The time fields of customers and companies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeField {
    /// `create_time`
    CreateTime,
    /// `update_time`
    UpdateTime,
}

field_names!(TimeField { CreateTime => "create_time", UpdateTime => "update_time" });

/// `labels.<key>` in a presence test: holds the key (without the `labels.` prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelKey(pub String);

impl FieldName for LabelKey {
    fn name(&self) -> Cow<'_, str> {
        Cow::Owned(format!("labels.{}", self.0))
    }
}

/// A comparison operator.
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
    pub fn symbol(self) -> &'static str {
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

/// An equality operator: all that identifier and enumerated fields accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EqOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
}

impl EqOp {
    /// The operator as written in a filter.
    pub fn symbol(self) -> &'static str {
        CmpOp::from(self).symbol()
    }
}

impl From<EqOp> for CmpOp {
    fn from(op: EqOp) -> Self {
        match op {
            EqOp::Eq => CmpOp::Eq,
            EqOp::Ne => CmpOp::Ne,
        }
    }
}

/// A restriction `field op value`, its value typed by the field's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare<F: FilterField> {
    /// `name = "customers/{uuid}"`, `uid != {uuid}`.
    Id {
        /// The identifier field.
        field: F::Id,
        /// `=` or `!=`.
        op: EqOp,
        /// The identified resource's UUID.
        id: Uuid,
    },
    /// `status = ACTIVE`, `type != CustomerDeleted`.
    Enum {
        /// The enumerated field.
        field: F::Enum,
        /// `=` or `!=`.
        op: EqOp,
        /// One of the field's values.
        value: <F::Enum as EnumField>::Value,
    },
    /// `create_time >= 2024-01-01T00:00:00Z`.
    Time {
        /// The time field.
        field: F::Time,
        /// The comparison.
        op: CmpOp,
        /// The time, in UTC.
        time: DateTime<Utc>,
    },
    /// `family_name = "Lovelace"`.
    Text {
        /// The text field.
        field: F::Text,
        /// The comparison.
        op: CmpOp,
        /// The text (at most 256 characters), normalised by the field.
        text: String,
    },
}

/// A parsed filter expression over the fields `F` of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr<F: FilterField> {
    /// Both sub-expressions must hold (`AND` or juxtaposition).
    And(Box<Expr<F>>, Box<Expr<F>>),
    /// Either sub-expression must hold (`OR`).
    Or(Box<Expr<F>>, Box<Expr<F>>),
    /// The sub-expression must not hold (`NOT` or `-`).
    Not(Box<Expr<F>>),
    /// `field op value`.
    Compare(Compare<F>),
    /// `field:"text"`: case-insensitive substring match.
    Contains {
        /// The text field searched.
        field: F::Text,
        /// The non-empty text to look for.
        text: String,
    },
    /// `labels.key:*`: the label is present.
    Present {
        /// The label whose presence is tested.
        field: LabelOf<F>,
    },
}

impl<F: FilterField> Expr<F> {
    /// The expression as normalised filter text, for fingerprints: field names as filters
    /// write them, every `AND`, `OR` and `NOT` parenthesised, text and identifiers
    /// double-quoted with `"` and `\` escaped, times in UTC RFC 3339 (`…Z`, fractional
    /// seconds in groups of three digits), resource names spelled out (`name =
    /// "customers/{uuid}"`). It depends only on the filter language, never on Rust names, and
    /// parses back to the same tree.
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        write_expr(&mut out, self, " AND ", true);
        out
    }
}

/// Writes `expr` as filter text joining `And` operands with `and_sep`; `parenthesise_all`
/// wraps every `AND`/`OR`/`NOT` node, otherwise only those that are operands.
fn write_expr<F: FilterField>(
    out: &mut String,
    expr: &Expr<F>,
    and_sep: &str,
    parenthesise_all: bool,
) {
    let operand = |out: &mut String, e: &Expr<F>| match e {
        Expr::And(..) | Expr::Or(..) | Expr::Not(..) if !parenthesise_all => {
            out.push('(');
            write_expr(out, e, and_sep, parenthesise_all);
            out.push(')');
        }
        _ => write_expr(out, e, and_sep, parenthesise_all),
    };
    let (open, close) = if parenthesise_all {
        ("(", ")")
    } else {
        ("", "")
    };
    match expr {
        Expr::And(left, right) => {
            out.push_str(open);
            operand(out, left);
            out.push_str(and_sep);
            operand(out, right);
            out.push_str(close);
        }
        Expr::Or(left, right) => {
            out.push_str(open);
            operand(out, left);
            out.push_str(" OR ");
            operand(out, right);
            out.push_str(close);
        }
        Expr::Not(inner) => {
            out.push_str(open);
            out.push_str("NOT ");
            operand(out, inner);
            out.push_str(close);
        }
        Expr::Compare(Compare::Id { field, op, id }) => {
            let value = if field.is_resource_name() {
                format!("{}/{id}", F::COLLECTION)
            } else {
                id.to_string()
            };
            write_restriction(out, &field.name(), op.symbol(), &quote(&value));
        }
        Expr::Compare(Compare::Enum { field, op, value }) => {
            let value = <F::Enum as EnumField>::value_name(*value);
            write_restriction(out, &field.name(), op.symbol(), value);
        }
        Expr::Compare(Compare::Time { field, op, time }) => {
            let value = time.to_rfc3339_opts(SecondsFormat::AutoSi, true);
            write_restriction(out, &field.name(), op.symbol(), &value);
        }
        Expr::Compare(Compare::Text { field, op, text }) => {
            write_restriction(out, &field.name(), op.symbol(), &quote(text));
        }
        Expr::Contains { field, text } => {
            out.push_str(&field.name());
            out.push(':');
            out.push_str(&quote(text));
        }
        Expr::Present { field } => {
            out.push_str(&field.name());
            out.push_str(":*");
        }
    }
}

fn write_restriction(out: &mut String, field: &str, op: &str, value: &str) {
    out.push_str(field);
    out.push(' ');
    out.push_str(op);
    out.push(' ');
    out.push_str(value);
}

/// `text` as a double-quoted filter string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Why a filter string was rejected.
pub type FilterError = super::syntax::SyntaxError;

/// Parses a filter over the fields `F` of one resource.
///
/// Returns `Ok(None)` for an empty or all-whitespace filter (no restriction) and
/// `Ok(Some(expr))` for a valid filter. Never panics.
///
/// # Errors
///
/// Returns a [`FilterError`] positioned at the first problem: syntax errors, unknown fields
/// (including another resource's), operators or values that do not fit the field's type,
/// input longer than [`FilterField::MAX_LEN`] bytes, or nesting deeper than [`MAX_DEPTH`].
pub fn parse<F: FilterField>(input: &str) -> Result<Option<Expr<F>>, FilterError> {
    if input.len() > F::MAX_LEN {
        return Err(error(
            0,
            format!(
                "filter is too long ({} bytes; at most {} are allowed)",
                input.len(),
                F::MAX_LEN
            ),
        ));
    }
    // PostgreSQL stores no NUL in text and no field holds control characters: refused
    // here, with a position, rather than by the database as an internal error.
    if let Some(position) = input
        .chars()
        .position(|c| c.is_control() && !c.is_whitespace())
    {
        return Err(error(
            position,
            "control characters (such as NUL) are not allowed in a filter",
        ));
    }
    if input.trim().is_empty() {
        return Ok(None);
    }
    let mut parser = Parser::<F> {
        chars: input.chars().collect(),
        pos: 0,
        depth: 0,
        resource: PhantomData,
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
    FilterError::new("filter", position, message)
}

/// A field's name for an error message (a label key is user input).
fn display_name(name: &str) -> String {
    match name.strip_prefix("labels.") {
        Some(key) => format!("labels.{}", snippet(key)),
        None => name.to_owned(),
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

/// How [`Parser::infix`] joins two operands (`Expr::And`, `Expr::Or`).
type Combine<F> = fn(Box<Expr<F>>, Box<Expr<F>>) -> Expr<F>;

/// Recursive-descent parser state.
struct Parser<F> {
    chars: Vec<char>,
    pos: usize,
    /// Current nesting of parentheses and negations.
    depth: usize,
    /// The resource whose fields are valid.
    resource: PhantomData<fn() -> F>,
}

impl<F: FilterField> Parser<F> {
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
    fn expression(&mut self) -> Result<Expr<F>, FilterError> {
        self.infix("AND", Self::sequence, Expr::And)
    }

    /// `operand (keyword operand)*`, folded to the left with `combine`.
    fn infix(
        &mut self,
        keyword: &str,
        operand: fn(&mut Self) -> Result<Expr<F>, FilterError>,
        combine: Combine<F>,
    ) -> Result<Expr<F>, FilterError> {
        let mut lhs = operand(self)?;
        loop {
            self.skip_ws();
            if self.keyword() != Some(keyword) {
                return Ok(lhs);
            }
            self.pos += keyword.len();
            let rhs = operand(self)?;
            lhs = combine(Box::new(lhs), Box::new(rhs));
        }
    }

    /// `sequence := factor (factor)*`
    fn sequence(&mut self) -> Result<Expr<F>, FilterError> {
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
    fn factor(&mut self) -> Result<Expr<F>, FilterError> {
        self.infix("OR", Self::term, Expr::Or)
    }

    /// `term := ["NOT" | "-"] simple`
    fn term(&mut self) -> Result<Expr<F>, FilterError> {
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
    fn simple(&mut self) -> Result<Expr<F>, FilterError> {
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
    fn restriction(&mut self) -> Result<Expr<F>, FilterError> {
        let field = self.field()?.kind();
        let name = display_name(&field.name());
        self.skip_ws();
        let op_pos = self.pos;
        let op = self.comparator(&name)?;
        self.skip_ws();
        let value_pos = self.pos;
        let raw = self.value(op)?;
        typed_restriction(field, &name, op, op_pos, raw, value_pos)
    }

    /// Parses and resolves a field name.
    fn field(&mut self) -> Result<F, FilterError> {
        let start = self.pos;
        let end = self.word_end(start);
        let word = self.text(start, end);
        self.pos = end;
        let field = if word == "labels." && matches!(self.peek(), Some('"' | '\'')) {
            let key_pos = self.pos;
            let key = self.quoted()?;
            check_label_key(&key, key_pos)?;
            F::label(key)
        } else if let Some(key) = word.strip_prefix("labels.") {
            check_label_key(key, start + 7)?;
            F::label(key.to_owned())
        } else if let Some(source) = word
            .strip_prefix("external_ids.")
            .filter(|_| F::external_id(String::new()).is_some())
        {
            if !crate::domain::customer::is_external_source(source) {
                return Err(error(
                    start + 13,
                    format!(
                        "invalid external id source '{}': must match [a-z][a-z0-9_]{{0,63}}",
                        snippet(source)
                    ),
                ));
            }
            F::external_id(source.to_owned())
        } else {
            F::parse(&word)
        };
        field.ok_or_else(|| {
            error(
                start,
                format!(
                    "unknown field '{}'; valid fields are {}",
                    snippet(&word),
                    F::valid_fields()
                ),
            )
        })
    }

    /// Parses a comparator after the field called `field`.
    fn comparator(&mut self, field: &str) -> Result<Op, FilterError> {
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
                    format!("expected a comparator (=, !=, <, <=, >, >=, :) after field '{field}'"),
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

/// `=` or `!=`, or the error for another operator on the field called `name`.
fn equality(op: Op, op_pos: usize, name: &str) -> Result<EqOp, FilterError> {
    match op {
        Op::Cmp(CmpOp::Eq) => Ok(EqOp::Eq),
        Op::Cmp(CmpOp::Ne) => Ok(EqOp::Ne),
        Op::Cmp(CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge) | Op::Has => Err(error(
            op_pos,
            format!(
                "operator '{}' is not supported for field '{name}'; use = or !=",
                op.symbol()
            ),
        )),
    }
}

/// Type-checks a restriction on `field` (called `name` in messages) and builds its
/// [`Expr`].
fn typed_restriction<F: FilterField>(
    field: FieldKind<F>,
    name: &str,
    op: Op,
    op_pos: usize,
    raw: RawValue,
    value_pos: usize,
) -> Result<Expr<F>, FilterError> {
    match field {
        FieldKind::Id(field) => {
            let op = equality(op, op_pos, name)?;
            let collection = F::COLLECTION;
            let id = if field.is_resource_name() {
                raw.text
                    .strip_prefix(collection)
                    .and_then(|rest| rest.strip_prefix('/'))
            } else {
                Some(raw.text.as_str())
            };
            // The canonical hyphenated form only, as names are written.
            let id = id.and_then(super::names::parse_uuid).ok_or_else(|| {
                let expected = if field.is_resource_name() {
                    format!("{collection}/{{uuid}}")
                } else {
                    "a UUID".to_owned()
                };
                error(
                    value_pos,
                    format!(
                        "invalid {name} '{}'; expected {expected}",
                        snippet(&raw.text)
                    ),
                )
            })?;
            Ok(Expr::Compare(Compare::Id { field, op, id }))
        }
        FieldKind::Enum(field) => {
            let op = equality(op, op_pos, name)?;
            let value = field.value(&raw.text).ok_or_else(|| {
                error(
                    value_pos,
                    format!(
                        "invalid {name} '{}'; expected one of {}",
                        snippet(&raw.text),
                        field.expected()
                    ),
                )
            })?;
            Ok(Expr::Compare(Compare::Enum { field, op, value }))
        }
        FieldKind::Time(field) => {
            let Op::Cmp(op) = op else {
                return Err(error(
                    op_pos,
                    format!(
                        "operator ':' is not supported for field '{name}'; use =, !=, <, <=, > or >="
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
            Ok(Expr::Compare(Compare::Time {
                field,
                op,
                time: time.with_timezone(&Utc),
            }))
        }
        FieldKind::Text(field) if !field.ordered() => {
            let op = equality(op, op_pos, name)?;
            check_text_len(&raw.text, value_pos)?;
            Ok(Expr::Compare(Compare::Text {
                text: field.normalise(raw.text),
                field,
                op: op.into(),
            }))
        }
        FieldKind::Text(field) => match op {
            Op::Has if !raw.quoted && raw.text == "*" => match field.presence() {
                Some(field) => Ok(Expr::Present { field }),
                None => Err(error(
                    value_pos,
                    format!("presence test ':*' is only supported for labels, not for '{name}'"),
                )),
            },
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
                Ok(Expr::Compare(Compare::Text {
                    text: field.normalise(raw.text),
                    field,
                    op,
                }))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::customer::Status;
    use chrono::TimeZone;
    use proptest::prelude::*;

    /// The unit tests of the grammar run over customer fields.
    type C = CustomerField;

    fn ok(input: &str) -> Expr<C> {
        match parse::<C>(input) {
            Ok(Some(expr)) => expr,
            other => panic!("expected {input:?} to parse, got {other:?}"),
        }
    }

    fn err(input: &str) -> FilterError {
        match parse::<C>(input) {
            Err(e) => e,
            other => panic!("expected {input:?} to fail, got {other:?}"),
        }
    }

    fn text_cmp(field: CustomerText, op: CmpOp, text: &str) -> Expr<C> {
        Expr::Compare(Compare::Text {
            field,
            op,
            text: text.to_owned(),
        })
    }

    fn eq(field: CustomerText, text: &str) -> Expr<C> {
        text_cmp(field, CmpOp::Eq, text)
    }

    fn label(key: &str) -> CustomerText {
        CustomerText::Label(key.to_owned())
    }

    fn status_is(op: EqOp, value: Status) -> Expr<C> {
        Expr::Compare(Compare::Enum {
            field: StatusField,
            op,
            value,
        })
    }

    fn time_is(field: TimeField, op: CmpOp, time: DateTime<Utc>) -> Expr<C> {
        Expr::Compare(Compare::Time { field, op, time })
    }

    fn id_is<F: FilterField<Id = IdField>>(field: IdField, op: EqOp, id: Uuid) -> Expr<F> {
        Expr::Compare(Compare::Id { field, op, id })
    }

    fn present(key: &str) -> Expr<C> {
        Expr::Present {
            field: LabelKey(key.to_owned()),
        }
    }

    fn and<F: FilterField>(a: Expr<F>, b: Expr<F>) -> Expr<F> {
        Expr::And(Box::new(a), Box::new(b))
    }

    fn or<F: FilterField>(a: Expr<F>, b: Expr<F>) -> Expr<F> {
        Expr::Or(Box::new(a), Box::new(b))
    }

    fn not<F: FilterField>(a: Expr<F>) -> Expr<F> {
        Expr::Not(Box::new(a))
    }

    fn time(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn a() -> Expr<C> {
        eq(CustomerText::Email, "a")
    }

    fn b() -> Expr<C> {
        eq(CustomerText::Email, "b")
    }

    fn c() -> Expr<C> {
        eq(CustomerText::Email, "c")
    }

    // ---- successful parses -------------------------------------------

    #[test]
    fn empty_and_whitespace_are_none() {
        assert_eq!(parse::<C>(""), Ok(None));
        assert_eq!(parse::<C>("   \t\n "), Ok(None));
        assert_eq!(parse::<C>("\u{3000}"), Ok(None));
    }

    #[test]
    fn text_fields_all_comparators() {
        let fields = [
            ("given_name", CustomerText::GivenName),
            ("family_name", CustomerText::FamilyName),
            ("email", CustomerText::Email),
            ("phone", CustomerText::Phone),
            ("company", CustomerText::Company),
            ("business_id", CustomerText::BusinessId),
            ("labels.team", label("team")),
        ];
        let ops = ["=", "!=", "<", "<=", ">", ">="].into_iter().zip([
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Lt,
            CmpOp::Le,
            CmpOp::Gt,
            CmpOp::Ge,
        ]);
        for (name, field) in &fields {
            for (sym, op) in ops.clone() {
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
            eq(CustomerText::Email, "ann.lee+tag@example.com")
        );
        assert_eq!(
            ok("phone=+358-40_123:4"),
            eq(CustomerText::Phone, "+358-40_123:4")
        );
        assert_eq!(ok("company = Ö&Co"), eq(CustomerText::Company, "Ö&Co"));
    }

    #[test]
    fn status_values() {
        assert_eq!(ok("status = ACTIVE"), status_is(EqOp::Eq, Status::Active));
        assert_eq!(
            ok("status != \"INACTIVE\""),
            status_is(EqOp::Ne, Status::Inactive)
        );
        assert_eq!(
            ok("status='PROSPECTIVE'"),
            status_is(EqOp::Eq, Status::Prospective)
        );
    }

    #[test]
    fn timestamps_are_normalised_to_utc() {
        assert_eq!(
            ok("create_time > 2024-01-01T00:00:00Z"),
            time_is(TimeField::CreateTime, CmpOp::Gt, time(2024, 1, 1, 0, 0, 0))
        );
        assert_eq!(
            ok("update_time<=2024-03-01T01:30:00+02:00"),
            time_is(
                TimeField::UpdateTime,
                CmpOp::Le,
                time(2024, 2, 29, 23, 30, 0)
            )
        );
        assert_eq!(
            ok("create_time >= \"2023-12-31T20:00:00-05:00\""),
            time_is(TimeField::CreateTime, CmpOp::Ge, time(2024, 1, 1, 1, 0, 0))
        );
        let frac = Utc
            .with_ymd_and_hms(2024, 5, 6, 7, 8, 9)
            .unwrap()
            .checked_add_signed(chrono::Duration::milliseconds(250))
            .unwrap();
        assert_eq!(
            ok("create_time != 2024-05-06T07:08:09.250Z"),
            time_is(TimeField::CreateTime, CmpOp::Ne, frac)
        );
        for (sym, op) in [("=", CmpOp::Eq), ("<", CmpOp::Lt)] {
            assert_eq!(
                ok(&format!("update_time {sym} 2024-01-01T00:00:00Z")),
                time_is(TimeField::UpdateTime, op, time(2024, 1, 1, 0, 0, 0))
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
        assert_eq!(ok("labels.'a.b':*"), present("a.b"));
        let longest = format!("k{}", "x".repeat(62));
        assert_eq!(
            ok(&format!("labels.{longest}=v")),
            eq(CustomerText::Label(longest.clone()), "v")
        );
    }

    #[test]
    fn contains_and_presence() {
        assert_eq!(
            ok("given_name:ann"),
            Expr::Contains {
                field: CustomerText::GivenName,
                text: "ann".to_owned()
            }
        );
        assert_eq!(
            ok("email : \"@example.com\""),
            Expr::Contains {
                field: CustomerText::Email,
                text: "@example.com".to_owned()
            }
        );
        assert_eq!(ok("labels.vip:*"), present("vip"));
        assert_eq!(
            ok("labels.vip:\"*\""),
            Expr::Contains {
                field: label("vip"),
                text: "*".to_owned()
            }
        );
        assert_eq!(ok("labels.vip = *"), eq(label("vip"), "*"));
    }

    #[test]
    fn quoted_strings_with_escapes() {
        assert_eq!(
            ok(r#"family_name = "O\"Brien \\ x""#),
            eq(CustomerText::FamilyName, "O\"Brien \\ x")
        );
        assert_eq!(
            ok(r"family_name = 'it\'s'"),
            eq(CustomerText::FamilyName, "it's")
        );
        assert_eq!(
            ok(r#"company = 'say "hi"'"#),
            eq(CustomerText::Company, "say \"hi\"")
        );
        assert_eq!(
            ok(r#"company = "AND OR NOT ( ) :""#),
            eq(CustomerText::Company, "AND OR NOT ( ) :")
        );
        assert_eq!(ok(r#"company = """#), eq(CustomerText::Company, ""));
        assert_eq!(
            ok("company = \"äö 🎉\""),
            eq(CustomerText::Company, "äö 🎉")
        );
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
        assert_eq!(ok("email = -a"), eq(CustomerText::Email, "-a"));
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
        assert!(parse::<C>(&input).is_ok());
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

    // ---- canonical text ------------------------------------------------

    #[test]
    fn canonical_text_is_pinned() {
        let id = "0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6e";
        for (input, want) in [
            (
                r#"email = "ann@example.com""#,
                r#"email = "ann@example.com""#,
            ),
            ("given_name != x", r#"given_name != "x""#),
            ("status != 'INACTIVE'", "status != INACTIVE"),
            (
                r#"update_time <= "2024-03-01T01:30:00.250+02:00""#,
                "update_time <= 2024-02-29T23:30:00.250Z",
            ),
            (
                "create_time > 2024-01-01T00:00:00Z",
                "create_time > 2024-01-01T00:00:00Z",
            ),
            (
                &format!("name = customers/{id}"),
                &format!(r#"name = "customers/{id}""#),
            ),
            (&format!("uid != {id}"), &format!(r#"uid != "{id}""#)),
            (r#"labels."my-key":*"#, "labels.my-key:*"),
            (
                r#"labels.app.tier:'we"b\\x'"#,
                r#"labels.app.tier:"we\"b\\x""#,
            ),
            (
                r#"address.locality:"San" AND address.country_code = us"#,
                r#"(address.locality:"San" AND address.country_code = "US")"#,
            ),
            (
                "email=a OR email=b AND email=c",
                r#"((email = "a" OR email = "b") AND email = "c")"#,
            ),
            (
                "(email=a AND email=b) OR NOT (email=c)",
                r#"((email = "a" AND email = "b") OR (NOT email = "c"))"#,
            ),
            (
                "email=a email=b -labels.vip:*",
                r#"((email = "a" AND email = "b") AND (NOT labels.vip:*))"#,
            ),
        ] {
            let parsed = ok(input);
            assert_eq!(parsed.canonical(), want, "{input}");
            assert_eq!(parse::<C>(want), Ok(Some(parsed)), "{want}");
        }
        let company = parse::<CompanyField>(&format!(
            r#"display_name:"acme" AND domain = "Acme.com" OR name = "companies/{id}""#
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            company.canonical(),
            format!(
                r#"(display_name:"acme" AND (domain = "Acme.com" OR name = "companies/{id}"))"#
            )
        );
    }

    // ---- errors --------------------------------------------------------

    fn assert_err(input: &str, position: usize, message: &str) {
        err(input).assert_at(input, position, message);
    }

    #[test]
    fn error_unclosed_paren() {
        let e = err("(email = \"x\"");
        assert_eq!(
            e,
            FilterError {
                subject: "filter",
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
             address.postal_code, address.country_code, create_time, update_time, labels.<key>, \
             external_ids.<source>"
        );
        assert_err("email=a and email=b", 8, "unknown field 'and'");
        assert_err("email=a   Email=b", 10, "unknown field 'Email'");
    }

    #[test]
    fn company_filters_accept_company_fields_only() {
        let company = |text: CompanyText, value: &str| {
            Expr::Compare(Compare::Text {
                field: text,
                op: CmpOp::Eq,
                text: value.to_owned(),
            })
        };
        assert_eq!(
            parse::<CompanyField>(r#"display_name:"acme" AND domain = "acme.com""#),
            Ok(Some(and(
                Expr::Contains {
                    field: CompanyText::DisplayName,
                    text: "acme".into()
                },
                company(CompanyText::Domain, "acme.com")
            )))
        );
        assert_eq!(
            parse::<CompanyField>("business_id = x labels.tier:*"),
            Ok(Some(and(
                company(CompanyText::BusinessId, "x"),
                Expr::Present {
                    field: LabelKey("tier".into())
                }
            )))
        );
        let e = parse::<CompanyField>("email = x").unwrap_err();
        assert_eq!(e.position, 0);
        assert_eq!(
            e.message,
            "unknown field 'email'; valid fields are name, uid, display_name, domain, \
             business_id, create_time, update_time, labels.<key>"
        );
        assert_err("display_name = x", 0, "unknown field 'display_name'");
        let id = Uuid::now_v7();
        assert_eq!(
            parse::<CompanyField>(&format!(r#"name = "companies/{id}""#)),
            Ok(Some(id_is(IdField::Name, EqOp::Eq, id)))
        );
        let e = parse::<CompanyField>(&format!(r#"name = "customers/{id}""#)).unwrap_err();
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
        let is = id_is::<C>;
        assert_eq!(
            ok(&format!(
                r#"name = "customers/{id}" OR name = customers/{other}"#
            )),
            or(
                is(IdField::Name, EqOp::Eq, id),
                is(IdField::Name, EqOp::Eq, other)
            )
        );
        assert_eq!(ok(&format!("uid != {id}")), is(IdField::Uid, EqOp::Ne, id));
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
                eq(
                    CustomerText::Address(AddressPart::Locality),
                    "San Francisco"
                ),
                Expr::Contains {
                    field: CustomerText::Address(AddressPart::PostalCode),
                    text: "941".into()
                }
            )
        );
        assert_eq!(
            ok("address.region >= CA"),
            text_cmp(CustomerText::Address(AddressPart::Region), CmpOp::Ge, "CA")
        );
        // Country codes are stored upper case; a lower-case value still matches.
        assert_eq!(
            ok("address.country_code = us"),
            eq(CustomerText::Address(AddressPart::CountryCode), "US")
        );
        assert_err("address.street = x", 0, "unknown field 'address.street'");
        assert_err("address = x", 0, "unknown field 'address'");
    }

    /// Filters that fail, where and why: (filter, position, the start of the message).
    #[rustfmt::skip]
    const ERRORS: &[(&str, usize, &str)] = &[
        // Trailing garbage.
        ("email = x)", 9, "unexpected ')' without a matching '('"),
        ("email = x = y", 10, "unexpected '=', expected a restriction or '('"),
        ("= x", 0, "unexpected '=', expected a restriction or '('"),
        // Unterminated strings and bad escapes.
        ("email = \"abc", 8, "unterminated string"),
        ("email = 'abc\\'", 8, "unterminated string"),
        ("labels.\"abc = x", 7, "unterminated string"),
        (r#"email = "a\nb""#, 10, "invalid escape sequence '\\n'"),
        // Operators and values the status field does not take.
        ("status < ACTIVE", 7, "operator '<' is not supported for field 'status'"),
        ("status:ACTIVE", 6, "operator ':' is not supported for field 'status'"),
        ("status = active", 9, "invalid status 'active'; expected one of ACTIVE, PROSPECTIVE, INACTIVE"),
        // Operators and values the time fields do not take.
        ("create_time : 2024", 12, "operator ':' is not supported for field 'create_time'"),
        ("update_time > yesterday", 14, "invalid timestamp 'yesterday'"),
        ("update_time > 2024-01-01", 14, "invalid timestamp '2024-01-01'"),
        // A comparator or a value missing.
        ("given_name = ", 13, "expected a value after '='"),
        ("(given_name : )", 14, "expected a value after ':'"),
        ("given_name ! x", 11, "expected a comparator"),
        ("(email)", 6, "expected a comparator"),
        ("given_name", 10, "expected a comparator (=, !=, <, <=, >, >=, :) after field 'given_name'"),
        // Keywords out of place.
        ("email=x AND", 11, "unexpected end of filter, expected a restriction or '('"),
        ("email=x OR OR email=y", 11, "unexpected keyword 'OR'"),
        ("AND email=x", 0, "unexpected keyword 'AND'"),
        ("NOT NOT email=x", 4, "unexpected keyword 'NOT'"),
        ("NOT", 3, "unexpected end of filter"),
        ("--email=x", 1, "unexpected '-'"),
        ("email = AND", 8, "expected a value after '=', found keyword 'AND'"),
        ("email == x", 7, "unexpected '=', expected a value after '='"),
        ("()", 1, "unexpected ')', expected a restriction or '('"),
        // Positions count characters, not bytes.
        ("company = \"äöü\" foo = 1", 16, "unknown field 'foo'"),
        ("company = 🎉🎉)", 12, "unexpected ')'"),
    ];

    #[test]
    fn errors_name_their_position_and_cause() {
        for &(input, position, message) in ERRORS {
            assert_err(input, position, message);
        }
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
        assert_eq!(
            ok(&format!("email = \"{max}\"")),
            eq(CustomerText::Email, &max)
        );
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
    fn error_message_snippets_are_bounded() {
        let e = err(&format!("{} = 1", "f".repeat(1000)));
        // The snippet of the field plus the fixed list of valid fields.
        assert!(e.message.len() < 330, "{}", e.message);
    }

    #[test]
    fn external_ids_are_compared_by_equality_only() {
        let external = |op: CmpOp| {
            Expr::Compare(Compare::Text {
                field: CustomerText::ExternalId("crm".into()),
                op,
                text: "4711".into(),
            })
        };
        assert_eq!(ok(r#"external_ids.crm = "4711""#), external(CmpOp::Eq));
        assert_eq!(ok("external_ids.crm != 4711"), external(CmpOp::Ne));
        assert_err("external_ids.crm > 1", 17, "");
        assert_err("external_ids.crm:47", 16, "");
        assert_err(
            "external_ids.CRM = 1",
            13,
            "invalid external id source 'CRM': must match [a-z][a-z0-9_]{0,63}",
        );
        // Companies have no external ids.
        assert!(parse::<CompanyField>("external_ids.crm = 1").is_err());
    }

    // ---- properties ----------------------------------------------------

    /// Renders an expression parenthesising only operands, joining `And` operands with
    /// `and_sep` (`" AND "` or `" "` for implicit juxtaposition).
    fn render_with(expr: &Expr<C>, and_sep: &str) -> String {
        let mut out = String::new();
        write_expr(&mut out, expr, and_sep, false);
        out
    }

    fn arb_text_field() -> impl Strategy<Value = CustomerText> {
        // Every text field but country_code (its values are upper-cased, which a round trip
        // would see), and labels.
        let fixed: Vec<CustomerText> = C::FIELDS
            .iter()
            .filter_map(|field| match field {
                C::Text(CustomerText::Address(AddressPart::CountryCode)) => None,
                C::Text(text) => Some(text.clone()),
                _ => None,
            })
            .collect();
        prop_oneof![
            proptest::sample::select(fixed),
            "[a-z][a-z0-9_.-]{0,12}".prop_map(CustomerText::Label),
        ]
    }

    fn arb_cmp_op() -> impl Strategy<Value = CmpOp> {
        use CmpOp::*;
        proptest::sample::select(vec![Eq, Ne, Lt, Le, Gt, Ge])
    }

    fn arb_time() -> impl Strategy<Value = DateTime<Utc>> {
        // 0001-01-01T00:00:00Z ..= 9999-12-31T23:59:59Z
        (-62_135_596_800i64..=253_402_300_799i64, 0u32..1_000_000_000)
            .prop_map(|(s, n)| DateTime::from_timestamp(s, n).unwrap())
    }

    fn arb_eq_op() -> impl Strategy<Value = EqOp> {
        prop_oneof![Just(EqOp::Eq), Just(EqOp::Ne)]
    }

    fn arb_leaf() -> impl Strategy<Value = Expr<C>> {
        prop_oneof![
            (
                arb_text_field(),
                arb_cmp_op(),
                "\\PC{0,12}|[ \"'\\\\()*:]{0,6}"
            )
                .prop_map(|(field, op, t)| text_cmp(field, op, &t)),
            (
                arb_eq_op(),
                prop_oneof![
                    Just(Status::Active),
                    Just(Status::Prospective),
                    Just(Status::Inactive)
                ]
            )
                .prop_map(|(op, s)| status_is(op, s)),
            (
                prop_oneof![Just(TimeField::CreateTime), Just(TimeField::UpdateTime)],
                arb_cmp_op(),
                arb_time()
            )
                .prop_map(|(field, op, t)| time_is(field, op, t)),
            (
                prop_oneof![Just(IdField::Name), Just(IdField::Uid)],
                arb_eq_op(),
                any::<u128>()
            )
                .prop_map(|(field, op, n)| id_is(field, op, Uuid::from_u128(n))),
            (arb_text_field(), "\\PC{1,12}|[ \"'\\\\()*:]{1,6}")
                .prop_map(|(field, text)| Expr::Contains { field, text }),
            "[a-z][a-z0-9_.-]{0,12}".prop_map(|k| present(&k)),
        ]
    }

    fn arb_expr() -> impl Strategy<Value = Expr<C>> {
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
        if let Err(e) = parse::<C>(input) {
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
                prop_assert!(parse::<C>(&input).is_ok());
            }
        }

        #[test]
        fn canonical_roundtrips(expr in arb_expr()) {
            let canonical = expr.canonical();
            prop_assume!(canonical.len() <= MAX_FILTER_LEN);
            prop_assert_eq!(parse::<C>(&canonical), Ok(Some(expr)), "canonical: {}", canonical);
        }

        #[test]
        fn render_roundtrips(expr in arb_expr()) {
            let rendered = render_with(&expr, " AND ");
            prop_assume!(rendered.len() <= MAX_FILTER_LEN);
            prop_assert_eq!(parse::<C>(&rendered), Ok(Some(expr)), "rendered: {}", rendered);
        }

        #[test]
        fn render_with_juxtaposition_roundtrips(expr in arb_expr()) {
            let rendered = render_with(&expr, " ");
            prop_assume!(rendered.len() <= MAX_FILTER_LEN);
            prop_assert_eq!(parse::<C>(&rendered), Ok(Some(expr)), "rendered: {}", rendered);
        }
    }
}
