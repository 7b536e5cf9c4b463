//! The note model and its rules.
//!
//! A note is free text about a customer (`customers/{customer}/notes/{note}`), written by an
//! author (the caller that created it). Its only mutable field is `text`; everything else is
//! assigned by the server. Notes are hard-deleted, and hidden while their customer is
//! soft-deleted (the service layer enforces that).

use serde::Serialize;
use uuid::Uuid;

use super::{
    Violations,
    names::{CustomerName, NoteName},
    stored::Stored,
};

/// Longest note text, in characters (after trimming).
pub const MAX_TEXT_CHARS: usize = 10_000;

/// The mutable fields of a note, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteData {
    /// The text: trimmed, 1 to 10,000 characters, line breaks and tabs allowed.
    pub text: String,
}

/// A stored note (never soft-deleted: its `delete_time` stays `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Its id (the `{note}` of its name), version and times.
    pub stored: Stored,
    /// The customer it belongs to.
    pub customer_id: Uuid,
    /// Who created it.
    pub author: String,
    /// The mutable fields.
    pub data: NoteData,
}

impl Note {
    /// The resource name.
    pub fn name(&self) -> NoteName {
        NoteName {
            customer: CustomerName(self.customer_id),
            note: self.stored.id,
        }
    }
}

/// Note fields exactly as a client sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NoteInput {
    /// Raw text.
    pub text: String,
}

super::input_from!(NoteData => NoteInput { text });

impl super::Input for NoteInput {
    type Data = NoteData;
    type Field = NoteField;

    /// Validates the text; a violation is named `{prefix}.text`.
    fn check(&self, v: &mut Violations, prefix: &str) -> NoteData {
        let field = format!("{prefix}.text");
        let text = self.text.trim();
        if text.is_empty() {
            v.add(
                field,
                if self.text.is_empty() {
                    "is required"
                } else {
                    "must not be blank"
                },
            );
        } else if text.chars().count() > MAX_TEXT_CHARS {
            v.add(
                field,
                format!("must be at most {MAX_TEXT_CHARS} characters"),
            );
        } else if text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            v.add(
                field,
                "must not contain control characters other than line breaks and tabs",
            );
        }
        NoteData {
            text: text.to_owned(),
        }
    }

    fn present_fields(&self) -> Vec<NoteField> {
        if self.text.is_empty() {
            Vec::new()
        } else {
            vec![NoteField::Text]
        }
    }
}

/// A field an update mask of a note may name: only `text` is mutable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoteField {
    /// `text`
    Text,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::mask::Mask;
    use crate::domain::Input as _;

    fn fields(violations: Violations) -> Vec<String> {
        violations.into_vec().into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn text_is_trimmed_and_keeps_line_breaks() {
        let input = NoteInput {
            text: "  Called.\n\tWants a quote. \n".into(),
        };
        assert_eq!(
            input.validate("note").unwrap().text,
            "Called.\n\tWants a quote."
        );
    }

    #[test]
    fn text_limits() {
        let at_limit = NoteInput {
            text: "é".repeat(MAX_TEXT_CHARS),
        };
        assert!(at_limit.validate("note").is_ok());
        for bad in [
            String::new(),
            " \n\t ".into(),
            "é".repeat(MAX_TEXT_CHARS + 1),
            "bell\u{7}".into(),
        ] {
            let input = NoteInput { text: bad };
            assert_eq!(fields(input.validate("note").unwrap_err()), ["note.text"]);
        }
    }

    #[test]
    fn masks_name_text_or_star() {
        let parse = |paths: &[&str]| {
            let paths: Vec<String> = paths.iter().map(|p| (*p).to_owned()).collect();
            let (mask, violations) =
                Mask::<NoteField>::parse("update_mask", &paths, "customer.v1.Note");
            let text = match mask {
                Mask::All => true,
                Mask::Fields(fields) => fields.contains(&NoteField::Text),
            };
            (text, fields(violations))
        };
        assert_eq!(parse(&["text"]), (true, vec![]));
        assert_eq!(parse(&["*"]), (true, vec![]));
        assert_eq!(parse(&["etag"]), (false, vec![]));
        assert_eq!(
            parse(&["author", "title", "text", "text"]),
            (
                true,
                vec![
                    "update_mask.paths[0]".to_owned(),
                    "update_mask.paths[1]".to_owned(),
                    "update_mask.paths[3]".to_owned()
                ]
            )
        );
        assert_eq!(parse(&["*", "text"]).1, ["update_mask.paths"]);
        // Notes have no uid: the proto says so, not a hand-written list.
        let (_, violations) =
            Mask::<NoteField>::parse("update_mask", &["uid".to_owned()], "customer.v1.Note");
        assert_eq!(
            violations.into_vec()[0].description,
            "`uid` is not a field of Note"
        );
    }
}
