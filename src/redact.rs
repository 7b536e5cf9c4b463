//! Masking of personal data in free text: log lines, error messages, metric labels.
//!
//! Customer records hold email addresses, phone numbers and postal addresses. None of them
//! may reach a log line, a trace or an error message in clear: logs are shipped, indexed and
//! kept far longer, and read by far more people, than the database. [`mask_pii`] is the one
//! place that knows what such values look like in text:
//!
//! - **Email addresses** (`local@domain.tld`, also with the `@` percent-encoded as `%40`):
//!   the local part becomes its first character and `***`; the domain stays, it is what an
//!   operator needs to see (`jane.doe@example.com` → `j***@example.com`). A one-character
//!   local part is masked whole (`j@example.com` → `***@example.com`).
//! - **Phone numbers**: `+` (or `%2B`) followed by 7–15 digits (or more), optionally grouped by
//!   single spaces or dashes, and bare runs of 9 or more digits. Only the last two digits are kept,
//!   behind a fixed-width mask that does not reveal the length (`+49 30 123456` →
//!   `+*******56`, `4930123456` → `*******56`).
//! - **API keys** (`cak_<id>_<secret>`): the secret becomes `***`, the id stays. Keys are never
//!   logged on purpose; this catches one a client put where it does not belong (a path, a
//!   field) before it reaches a log line or an error message.
//!
//! What is deliberately left alone, so that logs stay useful: UUIDs and resource names
//! (`customers/0190a7b2-…`), hex ids and any other token that mixes digits with letters,
//! RFC 3339 timestamps (including nanosecond fractions and `+01:00` offsets), durations
//! (`1.234567891s`, `250ms`), decimal numbers, IP addresses and ports, and ANSI colour codes
//! (text logs on a terminal) around masked values. Bare digit runs of 9+ digits that are not
//! part of such a token are masked even when they are not phone numbers (a Unix timestamp in
//! milliseconds, a large byte count): the cost of a false positive is a less precise log line,
//! that of a false negative a leaked phone number.
//!
//! Postal addresses are free text with no recognisable shape; they are protected by never
//! being logged or echoed, not by this scanner.
//!
//! The scanner is hand-written over bytes (no regex engine), runs in one pass per kind, and
//! allocates only when it masks something: text without personal data comes back as
//! [`Cow::Borrowed`].

use std::borrow::Cow;

/// What replaces an email's local part (after its first character).
const EMAIL_MASK: &str = "***";
/// What replaces all but the last two digits of a phone number.
const PHONE_MASK: &str = "*******";
/// Fewest digits after `+` for a phone number (E.164 allows up to 15; longer sequences are
/// masked all the same).
const MIN_PLUS_DIGITS: usize = 7;
/// Fewest digits of a bare run that is masked.
const MIN_BARE_DIGITS: usize = 9;

/// Masks email addresses and phone numbers in `text` (see the [module docs](self)).
///
/// Returns [`Cow::Borrowed`] (no allocation) when there is nothing to mask. Masking is
/// idempotent: masked text passes through unchanged.
///
/// ```
/// use customer_api::redact::mask_pii;
///
/// assert_eq!(mask_pii("to jane.doe@example.com"), "to j***@example.com");
/// assert_eq!(mask_pii("phone=+4930123456"), "phone=+*******56");
/// let id = "customers/0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6e at 2024-05-01T10:00:00.123456789Z";
/// assert!(matches!(mask_pii(id), std::borrow::Cow::Borrowed(_)));
/// ```
pub fn mask_pii(text: &str) -> Cow<'_, str> {
    // One look settles most text (ids, names of things, numbers): the scans start only
    // from an `@`, a `+`, a `%`, a long run of digits or an API key's prefix.
    if !may_hold_pii(text.as_bytes()) {
        return Cow::Borrowed(text);
    }
    // Keys first: a secret's digits could otherwise be taken for a phone number, and the key
    // would no longer be recognised.
    let keys = mask_api_keys(text);
    let emails = and_then(keys, mask_emails);
    and_then(emails, mask_phones)
}

/// `text` masked by `mask`, still borrowed if neither masked anything.
fn and_then<'a>(text: Cow<'a, str>, mask: fn(&str) -> Cow<'_, str>) -> Cow<'a, str> {
    match text {
        Cow::Borrowed(text) => mask(text),
        Cow::Owned(masked) => {
            if let Cow::Owned(both) = mask(&masked) {
                return Cow::Owned(both);
            }
            Cow::Owned(masked)
        }
    }
}

/// The prefix of a service-account API key, `cak_<32 hex id>_<secret>`
/// ([`crate::auth::api_keys`]).
const API_KEY_PREFIX: &str = "cak_";

/// API keys: the secret after `cak_<id>_` becomes `***`; the id stays (it names the key, as
/// the caller `api-key:<id>` of the access log does).
fn mask_api_keys(text: &str) -> Cow<'_, str> {
    Rewriter::run(text, text.contains(API_KEY_PREFIX), |b, out| {
        let mut from = 0;
        while let Some(found) = out.text[from..].find(API_KEY_PREFIX) {
            let id_start = from + found + API_KEY_PREFIX.len();
            let id_end = id_start + 32;
            from = id_start;
            if b.len() <= id_end
                || b[id_end] != b'_'
                || !b[id_start..id_end].iter().all(u8::is_ascii_hexdigit)
            {
                continue;
            }
            let secret_end = b[id_end + 1..]
                .iter()
                .position(|&byte| !(byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'))
                .map_or(b.len(), |length| id_end + 1 + length);
            if secret_end > id_end + 1 {
                out.replace(id_end + 1, secret_end).push_str("***");
                from = secret_end;
            }
        }
    })
}

/// [`mask_pii`] for an owned string: returns it as is (no copy) when nothing is masked.
pub fn mask_pii_owned(text: String) -> String {
    match mask_pii(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(masked) => masked,
    }
}

/// Copies `text` into a new string lazily, on the first replacement.
struct Rewriter<'a> {
    text: &'a str,
    out: Option<String>,
    /// Bytes of `text` already copied to (or replaced in) `out`.
    copied: usize,
}

impl<'a> Rewriter<'a> {
    /// `text` as `scan` rewrites it (given its bytes and the rewriter), or borrowed as it is
    /// when it cannot contain what `scan` looks for (`worth` is false).
    fn run(text: &'a str, worth: bool, scan: impl FnOnce(&[u8], &mut Self)) -> Cow<'a, str> {
        if !worth {
            return Cow::Borrowed(text);
        }
        let mut out = Self {
            text,
            out: None,
            copied: 0,
        };
        scan(text.as_bytes(), &mut out);
        out.finish()
    }

    /// Drops `text[start..end]` (both on char boundaries, `start >= copied`) and returns the
    /// buffer to append its replacement to.
    fn replace(&mut self, start: usize, end: usize) -> &mut String {
        let text = self.text;
        let out = self
            .out
            .get_or_insert_with(|| String::with_capacity(text.len() + 8));
        out.push_str(&text[self.copied..start]);
        self.copied = end;
        out
    }

    fn finish(self) -> Cow<'a, str> {
        match self.out {
            None => Cow::Borrowed(self.text),
            Some(mut out) => {
                out.push_str(&self.text[self.copied..]);
                Cow::Owned(out)
            }
        }
    }
}

/// Bytes that may form an email's local part as the scanner sees it (a practical subset of
/// RFC 5322: no quotes, `=`, `/` … so that `email=jane@…` or `"jane@…"` keep their
/// surroundings). Non-ASCII bytes count, so internationalised addresses are masked whole.
fn is_local_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-') || b >= 0x80
}

/// Bytes of a domain label.
fn is_domain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80
}

/// Bytes of a word-like token: an identifier, a number, a UUID.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')
}

/// `%XX` with two hex digits at `i`.
fn is_percent_escape(b: &[u8], i: usize) -> bool {
    b.get(i) == Some(&b'%')
        && b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
        && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
}

/// The length of the at sign at `i`: 1 for `@`, 3 for `%40`, 0 for none.
fn at_sign(b: &[u8], i: usize) -> usize {
    match b[i] {
        b'@' => 1,
        b'%' if b.get(i + 1) == Some(&b'4') && b.get(i + 2) == Some(&b'0') => 3,
        _ => 0,
    }
}

/// The length of the plus sign at `i`: 1 for `+`, 3 for `%2B`, 0 for none.
fn plus_sign(b: &[u8], i: usize) -> usize {
    match b[i] {
        b'+' => 1,
        b'%' if b.get(i + 1) == Some(&b'2') && matches!(b.get(i + 2), Some(b'B' | b'b')) => 3,
        _ => 0,
    }
}

/// The end of an ANSI escape sequence starting at `i` (an `ESC`): CSI sequences
/// (`ESC [ params final`) whole, any other escape as the `ESC` alone.
fn skip_escape(b: &[u8], i: usize) -> usize {
    if b.get(i + 1) != Some(&b'[') {
        return i + 1;
    }
    let mut p = i + 2;
    while p < b.len() && (0x20..=0x3f).contains(&b[p]) {
        p += 1;
    }
    if p < b.len() && (0x40..=0x7e).contains(&b[p]) {
        p += 1;
    }
    p
}

/// The end of a domain starting at `start`: two or more dot-separated labels, up to the last
/// label that is a plausible TLD (starts with a letter, at least two characters). A trailing
/// dot (end of a sentence) or label that is no TLD (`a@b.cc.123`) is not part of it.
fn domain_end(b: &[u8], start: usize) -> Option<usize> {
    let mut p = start;
    let mut labels = 0;
    let mut end = None;
    loop {
        let label = p;
        while p < b.len() && is_domain_byte(b[p]) {
            p += 1;
        }
        if p == label {
            return end;
        }
        labels += 1;
        let tld = &b[label..p];
        if labels >= 2 && tld.len() >= 2 && (tld[0].is_ascii_alphabetic() || tld[0] >= 0x80) {
            end = Some(p);
        }
        if b.get(p) == Some(&b'.') && b.get(p + 1).is_some_and(|&c| is_domain_byte(c)) {
            p += 1;
        } else {
            return end;
        }
    }
}

fn mask_emails(text: &str) -> Cow<'_, str> {
    let worth = text.contains('@') || text.contains("%40");
    Rewriter::run(text, worth, |b, out| {
        // Start of the run of local-part bytes that ends at `i`.
        let mut token = 0;
        let mut i = 0;
        while i < b.len() {
            let at = at_sign(b, i);
            if at > 0 {
                let mut local = token;
                while local < i && b[local] == b'.' {
                    local += 1;
                }
                if local < i && domain_end(b, i + at).is_some() {
                    let replacement = out.replace(local, i);
                    let mut chars = text[local..i].chars();
                    if let (Some(first), Some(_)) = (chars.next(), chars.next()) {
                        replacement.push(first);
                    }
                    replacement.push_str(EMAIL_MASK);
                }
                // The domain is scanned like any text: in `a@b.cc@d.ee` it is also the local
                // part of a second address, masked now rather than on a second pass.
                i += at;
                token = i;
            } else if b[i] == 0x1b {
                i = skip_escape(b, i);
                token = i;
            } else if is_percent_escape(b, i) {
                i += 3;
                token = i;
            } else {
                i += 1;
                if !is_local_byte(b[i - 1]) {
                    token = i;
                }
            }
        }
    })
}

/// `+` phone digits from `start`: 7 or more digits, single spaces or dashes between them, not
/// followed by a word character. Returns the end and the last two digits.
fn plus_phone(b: &[u8], start: usize) -> Option<(usize, [u8; 2])> {
    let mut p = start;
    let mut digits = 0;
    let mut last = [0_u8; 2];
    let mut end = start;
    while p < b.len() {
        if b[p].is_ascii_digit() {
            digits += 1;
            last = [last[1], b[p]];
            p += 1;
            end = p;
        } else if digits > 0
            && matches!(b[p], b' ' | b'-')
            && b.get(p + 1).is_some_and(u8::is_ascii_digit)
        {
            p += 1;
        } else {
            break;
        }
    }
    let bounded = !b.get(end).is_some_and(|&c| is_token_byte(c) && c != b'-');
    (digits >= MIN_PLUS_DIGITS && bounded).then_some((end, last))
}

/// Whether the dash-separated groups of `token` contain a UUID (8-4-4-4-12 hex digits).
fn contains_uuid(token: &[u8]) -> bool {
    let groups: Vec<&[u8]> = token.split(|&c| c == b'-').collect();
    groups.windows(5).any(|w| {
        w.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
            && w.iter().all(|g| g.iter().all(u8::is_ascii_hexdigit))
    })
}

fn mask_phones(text: &str) -> Cow<'_, str> {
    Rewriter::run(text, may_hold_phone(text.as_bytes()), scan_phones)
}

/// Whether the phone scan can find anything in `b`: it masks only after a `+` (or `%2B`) or
/// a run of [`MIN_BARE_DIGITS`] digits, so a line with neither (an access line: a time,
/// short numbers, a request id) is passed on after this one cheap look instead of being
/// tokenised.
fn may_hold_phone(b: &[u8]) -> bool {
    look(b, false)
}

/// Whether any mask of [`mask_pii`] can find something in `b`: what [`may_hold_phone`] looks
/// for, an `@` (emails) or an API key's prefix, in the same one pass (every field of every
/// access line is looked at so).
fn may_hold_pii(b: &[u8]) -> bool {
    look(b, true)
}

/// One pass over `b`: true at a `+`, a `%`, a run of [`MIN_BARE_DIGITS`] digits, and, with
/// `emails_and_keys`, at an `@` or an API key's prefix.
fn look(b: &[u8], emails_and_keys: bool) -> bool {
    // The bytes that can start any of those, behind one table lookup: most bytes of most
    // values start none, and pass at a third of the cost of testing each in turn.
    const STARTS: [bool; 256] = {
        let mut table = [false; 256];
        let mut i = 0;
        while i < 256 {
            let b = i as u8;
            table[i] = b.is_ascii_digit() || matches!(b, b'+' | b'%' | b'@' | b'c');
            i += 1;
        }
        table
    };
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if !STARTS[usize::from(c)] {
            i += 1;
            continue;
        }
        match c {
            b'0'..=b'9' => {
                let run = b[i..].iter().take_while(|b| b.is_ascii_digit()).count();
                if run >= MIN_BARE_DIGITS {
                    return true;
                }
                i += run;
            }
            b'+' | b'%' => return true,
            b'@' if emails_and_keys => return true,
            b'c' if emails_and_keys && b[i..].starts_with(API_KEY_PREFIX.as_bytes()) => {
                return true;
            }
            _ => i += 1,
        }
    }
    false
}

/// The phone scan of [`mask_phones`].
fn scan_phones(b: &[u8], out: &mut Rewriter<'_>) {
    let text = out.text;
    let mut i = 0;
    // End of the last ANSI escape: a boundary, although it ends in a letter (`ESC[0m`).
    let mut escape_end = 0;
    while i < b.len() {
        let plus = plus_sign(b, i);
        // `+` must start a word (`a+1234567` is not a phone number); `%2B` is an encoded
        // `+` and follows whatever was encoded before it (`phone%3D%2B49…`).
        let starts = plus == 3 || i == escape_end || !b[i - 1].is_ascii_alphanumeric();
        if plus > 0
            && starts
            && let Some((end, last)) = plus_phone(b, i + plus)
        {
            let replacement = out.replace(i + plus, end);
            replacement.push_str(PHONE_MASK);
            replacement.extend(last.map(char::from));
            i = end;
            continue;
        }
        if b[i] == 0x1b {
            i = skip_escape(b, i);
            escape_end = i;
            continue;
        }
        if !is_token_byte(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        let mut end = i;
        while end < b.len() && is_token_byte(b[end]) {
            end += 1;
        }
        i = end;
        let token = &b[start..end];
        // Identifiers, hex ids, `123456789ns`, `…T10:00:00.123456789Z`: not phone numbers.
        if token.iter().any(|&c| c.is_ascii_alphabetic() || c == b'_') || contains_uuid(token) {
            continue;
        }
        let mut run = start;
        while run < end {
            if !b[run].is_ascii_digit() {
                run += 1;
                continue;
            }
            let mut run_end = run;
            while run_end < end && b[run_end].is_ascii_digit() {
                run_end += 1;
            }
            // A fraction (`0.123456789`, `…:00.123456789+01:00`) or the integer part of a
            // decimal (`123456789.5`); not digits after any dot (`labels.4930123456`).
            let fraction =
                run == start && start >= 2 && b[start - 1] == b'.' && b[start - 2].is_ascii_digit();
            let decimal = run_end == end
                && b.get(end) == Some(&b'.')
                && b.get(end + 1).is_some_and(u8::is_ascii_digit);
            if run_end - run >= MIN_BARE_DIGITS && !fraction && !decimal {
                let replacement = out.replace(run, run_end);
                replacement.push_str(PHONE_MASK);
                replacement.push_str(&text[run_end - 2..run_end]);
            }
            run = run_end;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn api_key_secrets_are_masked_and_their_ids_kept() {
        let id = "0190a7b28c1e7c1a9d2e1f2a3b4c5d6e";
        let key = format!("cak_{id}_Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MDEyMzQ1Njc4OTAx");
        assert_eq!(
            mask_pii(&format!("x-api-key: {key}, again {key}.")),
            format!("x-api-key: cak_{id}_***, again cak_{id}_***.")
        );
        // Digits in a secret are not taken for a phone number first.
        let digits = format!("cak_{id}_1234567890123456789012345678901234567890123");
        assert_eq!(mask_pii(&digits), format!("cak_{id}_***"));
        for not_a_key in [
            "cak_",
            "cak_short_secret",
            "a cak_ in prose",
            &format!("cak_{id}"),
        ] {
            assert!(
                matches!(mask_pii(not_a_key), Cow::Borrowed(_)),
                "{not_a_key}"
            );
        }
    }

    fn masked(text: &str) -> String {
        mask_pii(text).into_owned()
    }

    fn untouched(text: &str) {
        assert!(
            matches!(mask_pii(text), Cow::Borrowed(_)),
            "{text:?} was changed to {:?}",
            mask_pii(text)
        );
    }

    #[test]
    fn emails_keep_the_first_character_and_the_domain() {
        assert_eq!(masked("jane.doe@example.com"), "j***@example.com");
        assert_eq!(
            masked("email=jane.doe+news@mail.example.co.uk done"),
            "email=j***@mail.example.co.uk done"
        );
        assert_eq!(
            masked(r#"{"email":"ada@example.org"}"#),
            r#"{"email":"a***@example.org"}"#
        );
        assert_eq!(
            masked(r#"filter="email = \"ada@example.org\"""#),
            r#"filter="email = \"a***@example.org\"""#
        );
        assert_eq!(masked("mail ada@example.org."), "mail a***@example.org.");
        assert_eq!(masked("a@b.io"), "***@b.io");
        assert_eq!(masked("<ADA_L@Example.COM>"), "<A***@Example.COM>");
        assert_eq!(masked("jöhn@exämple.de"), "j***@exämple.de");
        assert_eq!(
            masked("x=ada@example.org,y=bob@example.net"),
            "x=a***@example.org,y=b***@example.net"
        );
        assert_eq!(masked("..ada@example.org"), "..a***@example.org");
        assert_eq!(masked("ada@example.org.42"), "a***@example.org.42");
    }

    #[test]
    fn percent_encoded_emails_and_phones_are_masked() {
        assert_eq!(
            masked("filter=email%3D%22jane.doe%40example.com%22"),
            "filter=email%3D%22j***%40example.com%22"
        );
        assert_eq!(
            masked("filter=phone%3D%2B4930123456"),
            "filter=phone%3D%2B*******56"
        );
    }

    #[test]
    fn ansi_colour_codes_around_values_survive() {
        assert_eq!(masked("\x1b[0m+4930123456"), "\x1b[0m+*******56");
        let line = "\x1b[3memail\x1b[0m\x1b[2m=\x1b[0mjane@example.com \x1b[3mphone\x1b[0m\x1b[2m=\x1b[0m4930123456";
        assert_eq!(
            masked(line),
            "\x1b[3memail\x1b[0m\x1b[2m=\x1b[0mj***@example.com \x1b[3mphone\x1b[0m\x1b[2m=\x1b[0m*******56"
        );
    }

    #[test]
    fn not_emails() {
        for text in [
            "postgres://user:secret@localhost:5432/db",
            "tonic@0.14.1",
            "@example.com",
            "a@b",
            "a@b.c",
            "x @ y.com",
            "user@host",
            "50%4",
        ] {
            untouched(text);
        }
    }

    #[test]
    fn the_one_pass_look_is_the_three_looks_it_replaces() {
        for text in [
            "",
            "GET",
            "/customer.v1.CustomerService/GetCustomer",
            "127.0.0.1:54321",
            "0193a0c4-2f4e-7c41-9a51-6f0b8d3e2a10",
            "ada@example.com",
            "call +49 30 1234-5678",
            "phone%3D%2B4930123456",
            "n=030123456789,",
            "12345678",
            "123456789",
            "cak_",
            "ca",
            "xcak_0123",
            "c",
            "grpc-go/1.60 cak",
            "12345678a123456789",
            "a1234567890",
            "ccak_x",
            "%",
            "+",
            "",
        ] {
            let three = text.contains('@')
                || may_hold_phone(text.as_bytes())
                || text.contains(API_KEY_PREFIX);
            assert_eq!(may_hold_pii(text.as_bytes()), three, "{text:?}");
        }
    }

    #[test]
    fn the_phone_scan_is_skipped_only_where_it_could_mask_nothing() {
        // An access line (times, short numbers, a UUID): passed on after the cheap look.
        let line = "2026-12-05T10:25:35.069675Z INFO access: transport=\"rest\" http_status=200 \
                    duration_ms=1.314 request_id=\"0193a0c4-2f4e-7c41-9a51-6f0b8d3e2a10\" \
                    bytes_in=0 bytes_out=449";
        assert!(!may_hold_phone(line.as_bytes()));
        assert!(matches!(mask_phones(line), Cow::Borrowed(_)));
        // Whatever the scan masks, the look lets through.
        for text in [
            "+4930123456",
            "call +49 30 1234-5678 now",
            "n=030123456789,",
            "phone%3D%2B4930123456",
            "lock 7165064541939392817",
            "\u{1b}[3mphone\u{1b}[0m=+4930123456",
        ] {
            assert!(may_hold_phone(text.as_bytes()), "{text}");
            assert!(matches!(mask_phones(text), Cow::Owned(_)), "{text}");
        }
    }

    #[test]
    fn phones_keep_the_last_two_digits() {
        for (text, expected) in [
            ("+4930123456", "+*******56"),
            ("phone=+4930123456", "phone=+*******56"),
            ("call +49 30 1234-5678 now", "call +*******78 now"),
            ("+1-415-555-0123.", "+*******23."),
            (
                r#"phone: Some("+14155550123")"#,
                r#"phone: Some("+*******23")"#,
            ),
            ("4930123456", "*******56"),
            ("n=030123456789,", "n=*******89,"),
            ("1724222920123", "*******23"),
            ("+ 123456789", "+ *******89"),
            ("-123456789", "-*******89"),
            ("labels.4930123456 = x", "labels.*******56 = x"),
            ("v.4930123456", "v.*******56"),
            // More digits than E.164 allows: masked all the same.
            ("+1234567890123456", "+*******56"),
            ("+1234567 123456789", "+*******89"),
            // Any long bare number is indistinguishable from a phone number: masked too.
            ("lock 7165064541939392817", "lock *******17"),
        ] {
            assert_eq!(masked(text), expected, "{text}");
        }
    }

    #[test]
    fn not_phones() {
        for text in [
            "customers/0190a7b2-8c1e-7c1a-9d2e-1f2a3b4c5d6e",
            "00000000-0000-0000-0000-000000000000",
            "customers/01900000-0000-7000-8000-123456789012",
            "2024-05-01T10:00:00Z",
            "2024-05-01T10:00:00.123456789Z",
            "2024-05-01T10:00:00.123456789+01:00",
            "2024-05-01T10:00:00-05:00",
            "1.234567891s",
            "123456789ns",
            "elapsed=123.456789012ms",
            "0.123456789",
            "123456789.5",
            "http://127.0.0.1:50051/customer.v1.CustomerService/GetCustomer",
            "http://[::1]:8080/v1/customers?page_size=1000",
            "10.0.0.1:5432",
            "trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
            "sha=7a21a7f0123456789",
            "12345678",
            "+123456",
            "a+1234567",
            "+4930123456abc",
            "labels.tier_123456789",
            "reference 550e8400-e29b-41d4-a716-446655440000",
            "SELECT pg_advisory_lock(774411)",
        ] {
            untouched(text);
        }
    }

    #[test]
    fn both_kinds_in_one_line() {
        assert_eq!(
            masked("created jane@example.com +4930123456 at 2024-05-01T10:00:00Z"),
            "created j***@example.com +*******56 at 2024-05-01T10:00:00Z"
        );
        assert_eq!(masked("4930123456@example.com"), "4***@example.com");
    }

    #[test]
    fn owned_input_is_returned_without_a_copy_when_clean() {
        let text = String::from("nothing to see");
        let pointer = text.as_ptr();
        let same = mask_pii_owned(text);
        assert_eq!(same.as_ptr(), pointer);
        assert_eq!(mask_pii_owned("ada@example.org".into()), "a***@example.org");
    }

    fn email() -> impl Strategy<Value = String> {
        (
            "[a-zA-Z0-9][a-zA-Z0-9._+-]{0,20}[a-zA-Z0-9]",
            "[a-z]([a-z0-9-]{0,10}[a-z0-9])?",
            prop::collection::vec("[a-z0-9]{1,8}", 0..3),
            "[a-z]{2,6}",
        )
            .prop_map(|(local, first, middle, tld)| {
                let mut domain = first;
                for label in middle {
                    domain.push('.');
                    domain.push_str(&label);
                }
                format!("{local}@{domain}.{tld}")
            })
    }

    fn phone() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\+[1-9][0-9]{6,14}",
            "\\+[1-9][0-9]{1,3}( |-)[0-9]{2,4}( |-)[0-9]{3,7}",
            "[0-9]{9,20}",
        ]
    }

    /// One of `fixed`, or text matching `pattern`, each alternative as likely as the others.
    fn one_of(
        fixed: &'static [&'static str],
        pattern: &'static str,
    ) -> impl Strategy<Value = String> {
        let weight = u32::try_from(fixed.len()).expect("a short list");
        prop_oneof![
            weight => prop::sample::select(fixed).prop_map(str::to_owned),
            1 => pattern,
        ]
    }

    /// Text around a value: separators that logs, JSON and errors put there.
    fn surroundings() -> impl Strategy<Value = (String, String)> {
        let before = one_of(
            &["", " ", "email=", "\"", "\\\"", "(", "\x1b[2m=\x1b[0m"],
            "[a-z ]{0,10}[ =:]",
        );
        let after = one_of(
            &["", " ", "\"", "\\\"", ")", ", ", "."],
            "[ ,;][a-z ]{0,10}",
        );
        (before, after)
    }

    proptest! {
        #[test]
        fn emails_never_survive((before, after) in surroundings(), email in email()) {
            let text = format!("{before}{email}{after}");
            let out = masked(&text);
            prop_assert!(!out.contains(&email), "{text:?} -> {out:?}");
            let (local, domain) = email.split_once('@').unwrap();
            let first = local.chars().next().unwrap();
            let masked_email = format!("{first}***@{domain}");
            prop_assert!(out.contains(&masked_email), "{text:?} -> {out:?}");
            prop_assert!(out.starts_with(&before) && out.ends_with(&after), "{text:?} -> {out:?}");
        }

        #[test]
        fn phones_never_survive((before, after) in surroundings(), phone in phone()) {
            let text = format!("{before}{phone}{after}");
            let out = masked(&text);
            let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
            let out_digits: String = out.chars().filter(char::is_ascii_digit).collect();
            prop_assert!(!out_digits.contains(&digits[..digits.len() - 2]), "{text:?} -> {out:?}");
            prop_assert!(out.contains(&format!("*******{}", &digits[digits.len() - 2..])), "{text:?} -> {out:?}");
        }

        #[test]
        fn masking_is_idempotent(text in ".{0,80}", email in email(), phone in phone()) {
            for input in [text.clone(), format!("{text} {email} {phone}"), format!("{email}{text}{phone}")] {
                let once = masked(&input);
                prop_assert_eq!(masked(&once), once.clone());
            }
        }

        /// Dense in the bytes the scanner cares about, so odd combinations come up often.
        #[test]
        fn odd_text_is_masked_idempotently(text in "[a-c0-9@%.+ _:\\-\x1b\\[m4B2é¡\"]{0,60}") {
            let once = masked(&text);
            prop_assert_eq!(masked(&once), once.clone(), "{:?}", text);
        }

        /// Long digit runs between the separators that decide what is a phone number.
        #[test]
        fn digit_heavy_text_is_masked_idempotently(
            text in "([0-9]{1,12}|[ab@.+ %:_-]|%2B|%40|\\x1b\\[0m|[a-c]{1,3}\\.[a-c]{2}){0,14}",
        ) {
            let once = masked(&text);
            prop_assert_eq!(masked(&once), once.clone(), "{:?}", text);
        }

        #[test]
        fn ids_times_and_addresses_are_left_alone(
            bytes in prop::array::uniform16(any::<u8>()),
            seconds in 0_i64..4_102_444_800,
            nanos in 0_u32..1_000_000_000,
            offset in -14_i32 * 60..=14 * 60,
            millis in 0_u64..100_000_000,
            port in any::<u16>(),
            ip in any::<[u8; 4]>(),
        ) {
            let uuid = uuid::Uuid::from_bytes(bytes);
            let offset = chrono::FixedOffset::east_opt(offset * 60).unwrap();
            let time = chrono::DateTime::from_timestamp(seconds, nanos).unwrap().with_timezone(&offset);
            let duration = std::time::Duration::from_millis(millis) + std::time::Duration::from_nanos(u64::from(nanos));
            let [a, b, c, d] = ip;
            for text in [
                format!("customers/{uuid}"),
                format!("reference {uuid} "),
                uuid.simple().to_string(),
                time.to_rfc3339(),
                time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                format!("{time:?}"),
                format!("{duration:?}"),
                format!("http://{a}.{b}.{c}.{d}:{port}/v1/customers/{uuid}:undelete"),
                format!("[::1]:{port}"),
            ] {
                prop_assert!(matches!(mask_pii(&text), Cow::Borrowed(_)), "{text:?} -> {:?}", mask_pii(&text));
            }
        }

        #[test]
        fn text_without_at_signs_or_digit_runs_is_borrowed(text in "[^@0-9%]{0,200}") {
            prop_assert!(matches!(mask_pii(&text), Cow::Borrowed(_)));
        }
    }
}
