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
