//! The one list path: page size → page token → a keyset page of `size + 1` rows → the next
//! token. Every List RPC (customers, companies, notes, events) pages through here; what a
//! resource adds is its filter, its order and its query.
//!
//! A page is bounded by bytes as well as rows: it ends before the row that would take its
//! encoded items past the budget ([`PageTokens::page_bytes`], `MAX_RESPONSE_PAGE_BYTES`),
//! with a next page token, as AIP-158 allows a short page. It always holds at least one row,
//! so paging always advances.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    db::customers::{Cursor, KeyValue},
    domain::{
        Violations,
        filter::{self, Expr, FilterField},
        order_by::{self, OrderField, OrderKey},
    },
    redact::mask_pii_owned,
    service::{
        Error, Result,
        error::reason,
        page_token::{PageTokens, TokenError},
    },
};

/// Default `page_size`.
pub const DEFAULT_PAGE_SIZE: i32 = 50;
/// Largest `page_size`; larger requests are lowered to it.
pub const MAX_PAGE_SIZE: i32 = 1000;
/// Default byte budget of a page's items (`MAX_RESPONSE_PAGE_BYTES`): 2 MiB of protobuf.
pub const DEFAULT_MAX_PAGE_BYTES: usize = 2 * 1024 * 1024;

/// The bytes `message` takes as one element of a response's repeated field: its encoding,
/// its length prefix and its field tag.
pub fn entry_bytes(message: &impl prost::Message) -> usize {
    let length = message.encoded_len();
    1 + prost::encoding::encoded_len_varint(length as u64) + length
}

/// One page of resources, each with where it stands in the order, as their contract
/// messages: each message is built once, and its encoded length is what the page's byte
/// budget counts ([`page`]).
pub fn message_page<R: crate::core::resource::Resource, K: PageKey + Clone>(
    items: impl IntoIterator<Item = (K, R)>,
    paging: &Paging<K>,
    tokens: &PageTokens,
) -> Page<R::Message> {
    let items = items
        .into_iter()
        .map(|(key, item)| (key, item.to_message()))
        .collect();
    let (items, next_page_token) = page(
        items,
        paging,
        tokens,
        |(key, _)| key.clone(),
        |(_, message)| entry_bytes(message),
    );
    Page {
        items: items.into_iter().map(|(_, message)| message).collect(),
        next_page_token,
    }
}

/// A List RPC's request; each resource reads the fields its RPC has (the others are empty).
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    /// The collection's parent: `companies/{id}` for customers, `customers/{id}` or
    /// `customers/-` for notes and events; empty for top-level collections.
    pub parent: String,
    /// Requested page size (0 = default).
    pub page_size: i32,
    /// Token from the previous page.
    pub page_token: String,
    /// AIP-160 filter over the resource's fields.
    pub filter: String,
    /// AIP-132 ordering over the resource's fields.
    pub order_by: String,
    /// Include soft-deleted resources.
    pub show_deleted: bool,
    /// The caller holds `customers.admin`: the events of soft-deleted customers keep their
    /// personal data (others see them redacted).
    pub privileged: bool,
}

/// One page of a List RPC.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items, in the requested order.
    pub items: Vec<T>,
    /// Token for the next page; empty on the last one.
    pub next_page_token: String,
}

/// Where a page starts: what a page token carries.
pub trait PageKey: Sized {
    /// The token for the page after `self`, bound to `query`.
    fn encode(&self, tokens: &PageTokens, query: &[u8]) -> String;
    /// The position in `token`, if this service issued it for `query`.
    fn decode(tokens: &PageTokens, token: &str, query: &[u8]) -> Result<Self, TokenError>;
}

impl PageKey for Cursor {
    fn encode(&self, tokens: &PageTokens, query: &[u8]) -> String {
        tokens.encode(query, self)
    }

    fn decode(tokens: &PageTokens, token: &str, query: &[u8]) -> Result<Self, TokenError> {
        tokens.decode(token, query)
    }
}

/// An event-log position.
impl PageKey for i64 {
    fn encode(&self, tokens: &PageTokens, query: &[u8]) -> String {
        tokens.encode_position(query, *self)
    }

    fn decode(tokens: &PageTokens, token: &str, query: &[u8]) -> Result<Self, TokenError> {
        tokens.decode_position(token, query)
    }
}

/// One page request after validation.
#[derive(Debug, Clone)]
pub struct Paging<K> {
    /// Rows per page.
    pub size: usize,
    /// Start strictly after this position.
    pub after: Option<K>,
    /// What the page's tokens are bound to.
    pub query: Vec<u8>,
}

impl<K> Paging<K> {
    /// Rows to fetch: one more than a page, to know whether another page follows.
    pub fn limit(&self) -> i64 {
        self.size as i64 + 1
    }
}

/// The page size a request asks for: the default for 0, at most [`MAX_PAGE_SIZE`]; a
/// negative one is a violation.
pub fn page_size(violations: &mut Violations, requested: i32) -> usize {
    let size = match requested {
        size if size < 0 => {
            violations.add("page_size", "must not be negative");
            DEFAULT_PAGE_SIZE
        }
        0 => DEFAULT_PAGE_SIZE,
        size => size.min(MAX_PAGE_SIZE),
    };
    size as usize
}

/// A request's `filter`; a problem is added to `violations`.
pub fn filter<F: FilterField>(violations: &mut Violations, text: &str) -> Option<Expr<F>> {
    // The parser masks the input it echoes; masking the whole message as well keeps any
    // future message that quotes the filter (which may name an email) safe too.
    filter::parse::<F>(text).unwrap_or_else(|error| {
        violations.add("filter", mask_pii_owned(error.to_string()));
        None
    })
}

/// A request's `order_by`; a problem is added to `violations`.
pub fn order<K: OrderField>(violations: &mut Violations, text: &str) -> Vec<OrderKey<K>> {
    order_by::parse::<K>(text).unwrap_or_else(|error| {
        violations.add("order_by", mask_pii_owned(error.to_string()));
        Vec::new()
    })
}

/// The paging of a request whose other fields are valid: its token decoded against `query`.
pub fn paging<K: PageKey>(
    tokens: &PageTokens,
    size: usize,
    token: &str,
    query: Vec<u8>,
) -> Result<Paging<K>> {
    let after = match token {
        "" => None,
        token => Some(K::decode(tokens, token, &query).map_err(|e| {
            Error::invalid_field(reason::INVALID_PAGE_TOKEN, "page_token", e.to_string())
        })?),
    };
    Ok(Paging { size, after, query })
}

/// The `(create_time, id)` a page starts after, for lists ordered by creation time alone
/// (notes, API keys); a cursor of any other shape is not a token of theirs.
pub fn time_and_id(after: Option<&Cursor>) -> Result<Option<(DateTime<Utc>, Uuid)>> {
    match after {
        None => Ok(None),
        Some(Cursor { values, id }) => match values.as_slice() {
            [KeyValue::Time(time)] => Ok(Some((*time, *id))),
            _ => Err(Error::invalid_field(
                reason::INVALID_PAGE_TOKEN,
                "page_token",
                "is not a valid page token",
            )),
        },
    }
}

/// A List request over a keyset-paged table (customers, companies), validated: its filter,
/// its order and where its page starts.
#[derive(Debug)]
pub struct Plan<F: FilterField, K> {
    /// Parsed filter, if any.
    pub filter: Option<Expr<F>>,
    /// Ordering keys (the id breaks ties).
    pub order: Vec<OrderKey<K>>,
    /// Include soft-deleted rows.
    pub show_deleted: bool,
    /// Page size, start and token binding.
    pub paging: Paging<Cursor>,
}

impl<F: FilterField, K> Plan<F, K> {
    /// The page query the storage layer runs.
    pub fn query(&self) -> crate::db::keyset::ListQuery<'_, F, K> {
        crate::db::keyset::ListQuery {
            filter: self.filter.as_ref(),
            order: &self.order,
            show_deleted: self.show_deleted,
            after: self.paging.after.as_ref(),
            limit: self.paging.limit(),
        }
    }

    /// The fetched `rows` as a page of items: one page of them, each made an item by `item`
    /// and answered as its contract message, and the token of the next page, where `cursor`
    /// says where a row stands in the order.
    pub fn finish<R, T: crate::core::resource::Resource>(
        &self,
        rows: Vec<R>,
        tokens: &PageTokens,
        cursor: impl Fn(&R, &[OrderKey<K>]) -> Cursor,
        mut item: impl FnMut(R) -> Result<T>,
    ) -> Result<Page<T::Message>> {
        let items = rows
            .into_iter()
            .map(|row| Ok((cursor(&row, &self.order), item(row)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(message_page(items, &self.paging, tokens))
    }
}

/// Validates a keyset List `request` whose other fields added their problems to
/// `violations`; `fingerprint` binds its tokens to the query (the filter, the order and
/// `show_deleted`: a token is only good for the query that issued it).
pub fn plan<F: FilterField, K: OrderField>(
    tokens: &PageTokens,
    request: &ListRequest,
    mut violations: Violations,
    fingerprint: impl FnOnce(&Option<Expr<F>>, &[OrderKey<K>], &str) -> Vec<u8>,
) -> Result<Plan<F, K>> {
    let size = page_size(&mut violations, request.page_size);
    let filter = self::filter::<F>(&mut violations, &request.filter);
    let order = self::order::<K>(&mut violations, &request.order_by);
    violations.into_result(())?;
    let deleted = if request.show_deleted {
        "deleted"
    } else {
        "live"
    };
    let query = fingerprint(&filter, &order, deleted);
    Ok(Plan {
        paging: paging(tokens, size, &request.page_token, query)?,
        filter,
        order,
        show_deleted: request.show_deleted,
    })
}

/// One page of `rows` (fetched with [`Paging::limit`]) and the token of the next, empty on
/// the last page: at most `paging.size` rows, and no more than fit in the byte budget of
/// `tokens` by `bytes` (but always the first).
pub fn page<T, K: PageKey>(
    mut rows: Vec<T>,
    paging: &Paging<K>,
    tokens: &PageTokens,
    key: impl Fn(&T) -> K,
    bytes: impl Fn(&T) -> usize,
) -> (Vec<T>, String) {
    let budget = tokens.page_bytes();
    let mut used = 0_usize;
    let fit = rows
        .iter()
        .take(paging.size)
        .position(|row| {
            used = used.saturating_add(bytes(row));
            used > budget
        })
        .map_or(paging.size, |over| over.max(1));
    let more = rows.len() > fit;
    rows.truncate(fit);
    let next = match rows.last() {
        Some(last) if more => key(last).encode(tokens, &paging.query),
        _ => String::new(),
    };
    (rows, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> PageTokens {
        PageTokens::from_secret("list tests")
    }

    #[test]
    fn page_sizes_default_cap_and_refuse_negatives() {
        let mut violations = Violations::new();
        assert_eq!(page_size(&mut violations, 0), 50);
        assert_eq!(page_size(&mut violations, 7), 7);
        assert_eq!(page_size(&mut violations, 5000), 1000);
        assert!(violations.is_empty());
        assert_eq!(page_size(&mut violations, -1), 50);
        assert_eq!(violations.into_vec()[0].field, "page_size");
    }

    #[test]
    fn a_full_page_gets_a_token_that_resumes_after_its_last_row() {
        let tokens = tokens();
        let first: Paging<i64> = paging(&tokens, 2, "", b"q".to_vec()).unwrap();
        assert_eq!(first.limit(), 3);
        let (rows, next) = page(vec![10_i64, 11, 12], &first, &tokens, |row| *row, |_| 1);
        assert_eq!(rows, [10, 11]);
        let second: Paging<i64> = paging(&tokens, 2, &next, b"q".to_vec()).unwrap();
        assert_eq!(second.after, Some(11));
        let (rows, next) = page(vec![12_i64], &second, &tokens, |row| *row, |_| 1);
        assert_eq!((rows, next), (vec![12], String::new()));
    }

    #[test]
    fn a_page_ends_before_the_row_that_would_pass_the_byte_budget() {
        let tokens = tokens().with_page_bytes(100);
        let first: Paging<i64> = paging(&tokens, 10, "", b"q".to_vec()).unwrap();
        // Rows of 40 bytes: two fit in 100, the third would pass it.
        let (rows, next) = page(vec![1_i64, 2, 3, 4], &first, &tokens, |row| *row, |_| 40);
        assert_eq!(rows, [1, 2]);
        let second: Paging<i64> = paging(&tokens, 10, &next, b"q".to_vec()).unwrap();
        assert_eq!(second.after, Some(2));
        // A row larger than the whole budget still makes a page of its own.
        let (rows, next) = page(vec![3_i64, 4], &second, &tokens, |row| *row, |_| 500);
        assert_eq!(rows, [3]);
        assert!(!next.is_empty());
        // Rows that fit exactly end the list without a token.
        let (rows, next) = page(vec![3_i64, 4], &second, &tokens, |row| *row, |_| 50);
        assert_eq!((rows, next), (vec![3, 4], String::new()));
    }

    #[test]
    fn a_token_of_another_query_or_a_forged_one_is_invalid_argument() {
        let tokens = tokens();
        let first: Paging<i64> = paging(&tokens, 1, "", b"q".to_vec()).unwrap();
        let (_, next) = page(vec![1_i64, 2], &first, &tokens, |row| *row, |_| 1);
        for (token, query) in [
            (next.as_str(), b"other".to_vec()),
            ("garbage", b"q".to_vec()),
        ] {
            let error = paging::<i64>(&tokens, 1, token, query).unwrap_err();
            assert!(
                matches!(error, Error::InvalidArgument { reason, .. } if reason == reason::INVALID_PAGE_TOKEN)
            );
        }
    }
}
