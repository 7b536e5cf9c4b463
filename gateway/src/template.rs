//! `google.api.http` path templates: parsing, matching and rendering.
//!
//! Grammar (from `google/api/http.proto`):
//!
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb     = ":" LITERAL ;
//! ```
//!
//! A variable without a pattern (`{id}`) matches one segment. `**` matches the rest of the
//! path and may only come last. Matched variable values are percent-decoded; a value
//! captured by a multi-segment pattern keeps its `/` separators (`customers/123`).

use std::fmt;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A fixed path segment.
    Literal(String),
    /// `*`: any one segment.
    Any,
    /// `**`: the rest of the path.
    Rest,
}

/// A variable: the field it fills and the segment range it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// Dotted proto field path, e.g. `customer.name`.
    pub field_path: String,
    /// Index of the variable's first segment in [`PathTemplate::segments`].
    pub start: usize,
    /// One past its last segment.
    pub end: usize,
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    /// The source text, e.g. `/v1/{name=customers/*}:undelete`.
    pub source: String,
    /// Every segment, variables expanded into their patterns.
    pub segments: Vec<Segment>,
    /// Variables over ranges of `segments`.
    pub variables: Vec<Variable>,
    /// The custom verb (`undelete`), if any.
    pub verb: Option<String>,
}

/// A template that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path template `{template}`: {problem}")]
pub struct TemplateError {
    /// The template.
    pub template: String,
    /// What is wrong.
    pub problem: String,
}

/// Values captured by a match: (field path, decoded value).
pub type Captures = Vec<(String, String)>;

/// Most parts of a path [`PathShape`] keeps the bounds of; a longer path is matched by
/// [`PathTemplate::matches`] alone.
const MAX_PARTS: usize = 12;

/// What templates look at in a request's path, taken once per request in one pass over its
/// bytes (the router tries its templates in turn): how many segments it has, its second
/// segment as sent and without a custom verb (`customers` of `/v1/customers:batchGet`), and
/// where each segment lies.
#[derive(Debug, Clone, Copy)]
pub struct PathShape<'p> {
    /// `None` without the leading `/` (no template matches).
    count: Option<usize>,
    second: Option<&'p str>,
    second_without_verb: Option<&'p str>,
    /// What follows the path's last `:`, which a template's verb must be.
    verb: Option<&'p str>,
    /// The path without its leading `/`.
    rest: &'p str,
    /// The path holds a `%`: its segments must be decoded before they compare.
    escaped: bool,
    /// Byte range in `rest` of each of the first [`MAX_PARTS`] segments.
    parts: [(usize, usize); MAX_PARTS],
}

impl<'p> PathShape<'p> {
    /// The shape of `path`.
    pub fn of(path: &'p str) -> Self {
        let mut shape = Self {
            count: None,
            second: None,
            second_without_verb: None,
            verb: None,
            rest: "",
            escaped: false,
            parts: [(0, 0); MAX_PARTS],
        };
        let Some(rest) = path.strip_prefix('/') else {
            return shape;
        };
        shape.rest = rest;
        let (mut slashes, mut start, mut last_colon) = (0, 0, None);
        for (i, &byte) in rest.as_bytes().iter().enumerate() {
            match byte {
                b'/' => {
                    if let Some(part) = shape.parts.get_mut(slashes) {
                        *part = (start, i);
                    }
                    slashes += 1;
                    start = i + 1;
                }
                b':' => last_colon = Some(i),
                b'%' => shape.escaped = true,
                _ => {}
            }
        }
        if let Some(part) = shape.parts.get_mut(slashes) {
            *part = (start, rest.len());
        }
        let count = if rest.is_empty() { 0 } else { slashes + 1 };
        shape.count = Some(count);
        let second = (count >= 2).then(|| &rest[shape.parts[1].0..shape.parts[1].1]);
        shape.second = second;
        // A verb is cut off the last segment only.
        shape.second_without_verb = second.map(|second| match second.rsplit_once(':') {
            Some((before, _)) if count == 2 => before,
            _ => second,
        });
        shape.verb = last_colon.map(|colon| &rest[colon + 1..]);
        shape
    }
}

impl<'p> PathShape<'p> {
    /// What follows the `:` in the path's last segment, if it has one there (the path's
    /// last `:`, unless a `/` follows it).
    pub fn verb(&self) -> Option<&'p str> {
        self.verb.filter(|verb| !verb.contains('/'))
    }
}

impl PathShape<'_> {
    /// The path's second segment when a template's literal second segment can be compared
    /// with it as it is: sent without a verb and without percent-encoding. `None` otherwise
    /// (and without a second segment): then every template must be tried.
    pub fn second_literal(&self) -> Option<&str> {
        let second = self.second?;
        (self.second_without_verb == Some(second) && !second.contains('%')).then_some(second)
    }
}

impl PathTemplate {
    /// The template's second segment when it is a literal (`customers` of
    /// `/v1/{name=customers/*}`): [`PathTemplate::may_match`] refuses a path whose
    /// [`PathShape::second_literal`] differs from it.
    pub fn second_literal(&self) -> Option<&str> {
        match self.segments.get(1) {
            Some(Segment::Literal(literal)) => Some(literal),
            _ => None,
        }
    }

    /// False when [`PathTemplate::matches`] would not match a path of this shape (a test
    /// that allocates nothing, before it); true does not mean it matches.
    pub fn may_match(&self, shape: &PathShape<'_>) -> bool {
        let Some(count) = shape.count else {
            return false;
        };
        if !self.segments.contains(&Segment::Rest) && count != self.segments.len() {
            return false;
        }
        // `matches` takes the verb after the path's last `:` first.
        if let Some(verb) = &self.verb
            && shape.verb != Some(verb.as_str())
        {
            return false;
        }
        let second = if self.verb.is_some() {
            shape.second_without_verb
        } else {
            shape.second
        };
        match (self.segments.get(1), second) {
            // A percent-encoded segment is decoded by `matches` before it compares.
            (Some(Segment::Literal(literal)), Some(second)) => {
                second.contains('%') || second == literal
            }
            _ => true,
        }
    }

    /// [`PathTemplate::matches`] of the path `shape` was taken of, from the segment bounds
    /// the shape holds: no second pass over the path, nothing allocated but the captures.
    /// Paths with a `%`, very long paths and templates with `**` or a verb holding `/` take
    /// `matches` itself.
    pub fn matches_shape(&self, path: &str, shape: &PathShape<'_>) -> Option<Captures> {
        let count = shape.count?;
        if shape.escaped
            || count > MAX_PARTS
            || self.segments.contains(&Segment::Rest)
            || self.verb.as_ref().is_some_and(|verb| verb.contains('/'))
        {
            return self.matches(path);
        }
        if count != self.segments.len() {
            return None;
        }
        let mut parts = shape.parts;
        if let Some(verb) = &self.verb {
            // The verb follows the path's last `:`; holding no `/`, that `:` is in the last
            // segment, which ends before it.
            if shape.verb != Some(verb.as_str()) {
                return None;
            }
            let last = parts.get_mut(count.checked_sub(1)?)?;
            last.1 = last.1.checked_sub(verb.len() + 1)?;
            if last.1 < last.0 {
                return None;
            }
        }
        let rest = shape.rest;
        for (segment, &(from, to)) in self.segments.iter().zip(&parts) {
            let part = rest.get(from..to)?;
            let fits = match segment {
                Segment::Literal(literal) => part == literal,
                Segment::Any => !part.is_empty(),
                Segment::Rest => false,
            };
            if !fits {
                return None;
            }
        }
        self.variables
            .iter()
            .map(|variable| {
                let from = parts.get(variable.start)?.0;
                let to = parts.get(variable.end.checked_sub(1)?)?.1;
                Some((variable.field_path.clone(), rest.get(from..to)?.to_owned()))
            })
            .collect()
    }

    /// Parses a template.
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let error = |problem: &str| TemplateError {
            template: template.to_owned(),
            problem: problem.to_owned(),
        };
        let rest = template
            .strip_prefix('/')
            .ok_or_else(|| error("must start with `/`"))?;
        // The verb follows the last `:` that is outside braces.
        let mut depth = 0_i32;
        let mut verb_at = None;
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ':' if depth == 0 => verb_at = Some(i),
                _ => {}
            }
        }
        let (path, verb) = match verb_at {
            Some(i) => (&rest[..i], Some(rest[i + 1..].to_owned())),
            None => (rest, None),
        };
        if verb.as_deref() == Some("") {
            return Err(error("empty verb"));
        }

        let mut segments = Vec::new();
        let mut variables = Vec::new();
        for part in split_outside_braces(path) {
            if let Some(inner) = part.strip_prefix('{') {
                let inner = inner
                    .strip_suffix('}')
                    .ok_or_else(|| error("unclosed `{`"))?;
                let (field_path, pattern) = inner.split_once('=').unwrap_or((inner, "*"));
                if field_path.is_empty()
                    || !field_path.split('.').all(|ident| {
                        !ident.is_empty()
                            && ident.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    })
                {
                    return Err(error("bad variable field path"));
                }
                let start = segments.len();
                for piece in pattern.split('/') {
                    segments.push(
                        parse_segment(piece).ok_or_else(|| error("bad segment in variable"))?,
                    );
                }
                variables.push(Variable {
                    field_path: field_path.to_owned(),
                    start,
                    end: segments.len(),
                });
            } else {
                segments.push(parse_segment(part).ok_or_else(|| error("bad segment"))?);
            }
        }
        if segments.iter().rev().skip(1).any(|s| *s == Segment::Rest) {
            return Err(error("`**` must be the last segment"));
        }
        Ok(Self {
            source: template.to_owned(),
            segments,
            variables,
            verb,
        })
    }

    /// Matches a request path (still percent-encoded); returns the variable captures.
    pub fn matches(&self, path: &str) -> Option<Captures> {
        let path = path.strip_prefix('/')?;
        let (path, verb) = match &self.verb {
            Some(verb) => {
                let (path, found) = path.rsplit_once(':')?;
                if found != verb {
                    return None;
                }
                (path, Some(found))
            }
            None => (path, None),
        };
        let _ = verb;
        // Without `**` the segment counts must agree: most templates stop here, before
        // anything is allocated (the router tries templates in turn).
        let count = if path.is_empty() {
            0
        } else {
            path.bytes().filter(|&b| b == b'/').count() + 1
        };
        if !self.segments.contains(&Segment::Rest) && count != self.segments.len() {
            return None;
        }
        // Byte range of each part in `path`.
        let mut parts: Vec<(usize, usize)> = Vec::with_capacity(count);
        if !path.is_empty() {
            let mut start = 0;
            for part in path.split('/') {
                parts.push((start, start + part.len()));
                start += part.len() + 1;
            }
        }
        let part = |index: usize| parts.get(index).map(|&(start, end)| &path[start..end]);
        // Where each template segment's match ends in `parts`.
        let mut ends = Vec::with_capacity(self.segments.len());
        let mut at = 0;
        for segment in &self.segments {
            match segment {
                Segment::Literal(literal) => {
                    let matches = part(at).is_some_and(|part| {
                        if part.contains('%') {
                            decode(part) == *literal
                        } else {
                            part == literal
                        }
                    });
                    if !matches {
                        return None;
                    }
                    at += 1;
                }
                Segment::Any => {
                    if part(at).is_none_or(str::is_empty) {
                        return None;
                    }
                    at += 1;
                }
                Segment::Rest => at = parts.len(),
            }
            ends.push(at);
        }
        if at != parts.len() {
            return None;
        }
        let captures = self
            .variables
            .iter()
            .map(|variable| {
                let from = if variable.start == 0 {
                    0
                } else {
                    ends[variable.start - 1]
                };
                let to = ends[variable.end - 1];
                let value = if from >= to {
                    String::new()
                } else {
                    // The parts with their `/` separators, as they stand in the path...
                    let raw = &path[parts[from].0..parts[to - 1].1];
                    if raw.contains('%') {
                        // ...decoded part by part when escaped (an encoded `/` stays data).
                        (from..to)
                            .filter_map(part)
                            .map(decode)
                            .collect::<Vec<_>>()
                            .join("/")
                    } else {
                        raw.to_owned()
                    }
                };
                (variable.field_path.clone(), value)
            })
            .collect();
        Some(captures)
    }

    /// Renders the path with `values` for the variables (in order), if each value fits its
    /// variable's pattern.
    pub fn render(&self, values: &[&str]) -> Option<String> {
        if values.len() != self.variables.len() {
            return None;
        }
        let mut out = String::new();
        let mut index = 0;
        while index < self.segments.len() {
            if let Some((n, variable)) = self
                .variables
                .iter()
                .enumerate()
                .find(|(_, v)| v.start == index)
            {
                let value_parts: Vec<&str> = values[n].split('/').collect();
                let pattern = &self.segments[variable.start..variable.end];
                let fits = if pattern.last() == Some(&Segment::Rest) {
                    value_parts.len() >= pattern.len() - 1
                } else {
                    value_parts.len() == pattern.len()
                        && pattern
                            .iter()
                            .zip(&value_parts)
                            .all(|(segment, part)| match segment {
                                Segment::Literal(literal) => literal == part,
                                Segment::Any => !part.is_empty(),
                                Segment::Rest => true,
                            })
                };
                if !fits {
                    return None;
                }
                for part in value_parts {
                    out.push('/');
                    out.push_str(&utf8_percent_encode(part, SEGMENT).to_string());
                }
                index = variable.end;
            } else {
                out.push('/');
                match &self.segments[index] {
                    Segment::Literal(literal) => out.push_str(literal),
                    Segment::Any | Segment::Rest => return None,
                }
                index += 1;
            }
        }
        if let Some(verb) = &self.verb {
            out.push(':');
            out.push_str(verb);
        }
        Some(out)
    }

    /// How specific the template is, for ordering overlapping routes: more literal segments
    /// first, then a verb, then fewer wildcards.
    pub fn specificity(&self) -> (usize, bool, usize) {
        let literals = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        (
            literals,
            self.verb.is_some(),
            usize::MAX - self.segments.len(),
        )
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Characters escaped in a rendered path segment.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'?')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}');

fn decode(part: &str) -> String {
    percent_decode_str(part).decode_utf8_lossy().into_owned()
}

fn parse_segment(text: &str) -> Option<Segment> {
    match text {
        "" => None,
        "*" => Some(Segment::Any),
        "**" => Some(Segment::Rest),
        literal if literal.contains(['{', '}', '*', '=']) => None,
        literal => Some(Segment::Literal(literal.to_owned())),
    }
}

fn split_outside_braces(path: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0_i32;
    let mut start = 0;
    for (i, c) in path.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            '/' if depth == 0 => {
                parts.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&path[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Templates and paths the matchers are tried on: literals, variables over several
    /// segments, verbs, `**`, more segments than `PathShape` keeps, escapes, empty
    /// segments.
    const TEMPLATES: [&str; 12] = [
        "/v1/{name=customers/*}",
        "/v1/{name=customers/*}:undelete",
        "/v1/customers:batchGet",
        "/v1/customers",
        "/v1/{parent=companies/*}/notes",
        "/v1/{name=companies/*/notes/*}",
        "/v1/{parent=customers/*}/{x=a/*/b}:do",
        "/v1/{name=operations/**}",
        "/v1/{name=**}",
        "/a/b/c/d/e/f/g/h/i/j/k/{x=*}",
        "/a/b/c/d/e/f/g/h/i/j/k/{x=*}/m",
        "/healthz",
    ];

    const PATHS: [&str; 32] = [
        "/v1/customers/abc",
        "/v1/customers/abc:undelete",
        "/v1/customers/:undelete",
        "/v1/customers/abc:",
        "/v1/customers:batchGet",
        "/v1/customers:undelete",
        "/v1/customers",
        "/v1/customers/",
        "/v1//abc",
        "/v1/custom%65rs/abc",
        "/v1/customers/a%2Fb",
        "/v1/custom%65rs:batchGet",
        "/v1/companies/c1/notes",
        "/v1/companies/c1/notes/n1",
        "/v1/companies/c1/notes:x",
        "/v1/customers/c/a/z/b:do",
        "/v1/customers/c/a//b:do",
        "/v1/operations/a/b/c",
        "/v1/operations",
        "/v1/a:b/customers:undelete",
        "/v1/customers/a:b:undelete",
        "/v1/customers/a:undelete/b",
        "/a/b/c/d/e/f/g/h/i/j/k/x",
        "/a/b/c/d/e/f/g/h/i/j/k/x/m",
        "/a/b/c/d/e/f/g/h/i/j/k/x/m/n",
        "/v1",
        "/healthz",
        "/",
        "",
        "v1/customers",
        "//",
        "/é/customers/ü",
    ];

    #[test]
    fn the_shape_test_never_refuses_a_path_the_template_matches() {
        let mut refused = 0;
        for template in TEMPLATES {
            let template = PathTemplate::parse(template).unwrap();
            for path in PATHS {
                let may = template.may_match(&PathShape::of(path));
                if template.matches(path).is_some() {
                    assert!(may, "{} refused {path}", template.source);
                } else if !may {
                    refused += 1;
                }
            }
        }
        // And it refuses most of the rest without matching.
        assert!(refused > TEMPLATES.len() * PATHS.len() / 2, "{refused}");
    }

    #[test]
    fn a_match_from_the_shape_is_the_match_from_the_path() {
        for path in PATHS.iter().filter(|path| path.starts_with('/')) {
            let last_verb = path
                .rsplit('/')
                .next()
                .and_then(|last| last.rsplit_once(':'))
                .map(|(_, verb)| verb);
            assert_eq!(PathShape::of(path).verb(), last_verb, "{path}");
        }
        for template in TEMPLATES {
            let template = PathTemplate::parse(template).unwrap();
            for path in PATHS {
                assert_eq!(
                    template.matches_shape(path, &PathShape::of(path)),
                    template.matches(path),
                    "{} on {path}",
                    template.source
                );
            }
        }
    }

    #[test]
    fn resource_names_are_captured_whole() {
        let template = PathTemplate::parse("/v1/{name=customers/*}").unwrap();
        assert_eq!(
            template.matches("/v1/customers/abc"),
            Some(vec![("name".into(), "customers/abc".into())])
        );
        assert_eq!(template.matches("/v1/customers"), None);
        assert_eq!(template.matches("/v1/customers/abc/notes"), None);
        assert_eq!(template.matches("/v1/companies/abc"), None);
        assert_eq!(template.matches("/v1/customers/"), None);
    }

    #[test]
    fn verbs_and_nested_fields() {
        let undelete = PathTemplate::parse("/v1/{name=customers/*}:undelete").unwrap();
        assert_eq!(undelete.verb.as_deref(), Some("undelete"));
        assert_eq!(
            undelete.matches("/v1/customers/x:undelete"),
            Some(vec![("name".into(), "customers/x".into())])
        );
        assert_eq!(undelete.matches("/v1/customers/x"), None);
        assert_eq!(undelete.matches("/v1/customers/x:delete"), None);

        let batch = PathTemplate::parse("/v1/customers:batchGet").unwrap();
        assert_eq!(batch.matches("/v1/customers:batchGet"), Some(vec![]));

        let update = PathTemplate::parse("/v1/{customer.name=customers/*}").unwrap();
        assert_eq!(update.variables[0].field_path, "customer.name");
    }

    #[test]
    fn simple_variables_rest_and_decoding() {
        let t = PathTemplate::parse("/v1/shelves/{shelf}/books/{book.id=**}").unwrap();
        assert_eq!(
            t.matches("/v1/shelves/a%20b/books/x/y/z"),
            Some(vec![
                ("shelf".into(), "a b".into()),
                ("book.id".into(), "x/y/z".into())
            ])
        );
    }

    #[test]
    fn rendering_inverts_matching() {
        let t = PathTemplate::parse("/v1/{name=customers/*}").unwrap();
        assert_eq!(
            t.render(&["customers/12"]).as_deref(),
            Some("/v1/customers/12")
        );
        assert_eq!(t.render(&["companies/12"]), None);
        assert_eq!(t.render(&["customers/1/2"]), None);
        let v = PathTemplate::parse("/v1/{name=customers/*}:undelete").unwrap();
        assert_eq!(
            v.render(&["customers/a b"]).as_deref(),
            Some("/v1/customers/a%20b:undelete")
        );
    }

    #[test]
    fn bad_templates_are_rejected() {
        for bad in [
            "v1/x",
            "/v1/{name",
            "/v1/{=x}",
            "/v1//x",
            "/v1/**/x",
            "/v1/x:",
            "/v1/{a-b}",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn literals_outrank_wildcards() {
        let literal = PathTemplate::parse("/v1/customers:batchGet").unwrap();
        let wildcard = PathTemplate::parse("/v1/{name=*/*}").unwrap();
        assert!(literal.specificity() > wildcard.specificity());
    }

    #[test]
    fn double_star_matches_zero_or_more_segments() {
        let t = PathTemplate::parse("/v1/files/{path=**}").unwrap();
        assert_eq!(
            t.matches("/v1/files/a/b/c.txt"),
            Some(vec![("path".into(), "a/b/c.txt".into())])
        );
        assert_eq!(
            t.matches("/v1/files"),
            Some(vec![("path".into(), String::new())])
        );
        assert_eq!(t.matches("/v1/other/a"), None);
        assert_eq!(t.render(&["a/b c"]).as_deref(), Some("/v1/files/a/b%20c"));
    }

    #[test]
    fn the_verb_is_split_at_the_last_colon() {
        let watch = PathTemplate::parse("/v1/{parent=shelves/*}/books:watch").unwrap();
        assert_eq!(
            watch.matches("/v1/shelves/a:b/books:watch"),
            Some(vec![("parent".into(), "shelves/a:b".into())])
        );
        assert_eq!(watch.matches("/v1/shelves/a/books"), None);
        assert_eq!(watch.matches("/v1/shelves/a/books:watch:now"), None);
        // A percent-encoded colon is part of the segment, not a verb separator.
        assert_eq!(watch.matches("/v1/shelves/a/books%3Awatch"), None);
        let list = PathTemplate::parse("/v1/{parent=shelves/*}/books").unwrap();
        assert_eq!(list.matches("/v1/shelves/a/books:watch"), None);
    }

    #[test]
    fn literals_are_compared_decoded_and_empty_segments_never_match() {
        let t = PathTemplate::parse("/v1/stats/{id}").unwrap();
        assert_eq!(
            t.matches("/v1/st%61ts/x%2Fy"),
            Some(vec![("id".into(), "x/y".into())])
        );
        assert_eq!(t.matches("/v1/stats/"), None);
        assert_eq!(t.matches("/v1//stats/x"), None);
        assert_eq!(t.matches("v1/stats/x"), None);
    }
}
