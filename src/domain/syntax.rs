//! What the filter and order_by parsers share: their error, positioned by character, and
//! the bounded, PII-masked snippet of user input an error message may echo.

use std::fmt;

/// Longest piece of user input echoed back in an error message.
const MAX_SNIPPET_LEN: usize = 64;

/// Why a filter or order_by string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// The request field that was rejected: `filter` or `order_by`.
    pub subject: &'static str,
    /// 0-based character (not byte) offset in the input where the problem starts.
    pub position: usize,
    /// Human-readable description of the problem.
    pub message: String,
}

impl SyntaxError {
    /// A problem of `subject` at `position`.
    pub fn new(subject: &'static str, position: usize, message: impl Into<String>) -> Self {
        Self {
            subject,
            position,
            message: message.into(),
        }
    }
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} at position {}: {}",
            self.subject, self.position, self.message
        )
    }
}

impl std::error::Error for SyntaxError {}

/// Shortens user input for inclusion in an error message.
pub(crate) fn snippet(s: &str) -> String {
    clip(s, MAX_SNIPPET_LEN)
}

/// Shortens echoed input to `max` characters (`…` marks a cut), with email addresses and
/// phone numbers masked first, so that a cut one is still recognised.
pub(crate) fn clip(text: &str, max: usize) -> String {
    let text = crate::redact::mask_pii(text);
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

#[cfg(test)]
impl SyntaxError {
    /// Asserts that parsing `input` failed at `position` with a message starting with
    /// `message`.
    pub(crate) fn assert_at(&self, input: &str, position: usize, message: &str) {
        assert_eq!(self.position, position, "position for {input:?}: {self}");
        assert!(
            self.message.starts_with(message),
            "message for {input:?}: got {:?}, want prefix {message:?}",
            self.message
        );
    }
}
