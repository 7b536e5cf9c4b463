//! What the store keeps of every resource besides the fields its client chooses: its id,
//! version and times. One record for customers, companies and notes, so the row types, the
//! contract messages and the stored encodings read and write it once.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A resource's server-assigned state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Primary key: the last id of the resource's name.
    pub id: Uuid,
    /// Incremented by every write; the etag and the event sequence derive from it.
    pub version: i64,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Time of the last write.
    pub update_time: DateTime<Utc>,
    /// Soft-deletion time; `None` while live, and always for resources deleted for good.
    pub delete_time: Option<DateTime<Utc>>,
}

impl Stored {
    /// The etag (AIP-154): opaque to clients, changes with every write.
    pub fn etag(&self) -> String {
        etag_of(self.version)
    }

    /// Whether the resource is soft-deleted.
    pub fn is_deleted(&self) -> bool {
        self.delete_time.is_some()
    }
}

/// The etag for a row version. Weak per RFC 9110: it identifies a state, not a byte encoding.
/// Built on every answer, so without the formatting machinery.
pub fn etag_of(version: i64) -> String {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(version);
    let mut etag = String::with_capacity(digits.len() + 4);
    etag.push_str("W/\"");
    etag.push_str(digits);
    etag.push('"');
    etag
}

#[cfg(test)]
mod tests {
    use super::etag_of;

    #[test]
    fn etags_are_weak_and_quote_the_version() {
        assert_eq!(etag_of(1), "W/\"1\"");
        assert_eq!(etag_of(i64::MAX), "W/\"9223372036854775807\"");
    }
}
