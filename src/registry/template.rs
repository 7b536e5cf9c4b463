//! `BUSINESS_REGISTRY_URL`: an http(s) URL with `{business_id}` where the id goes.

use std::{fmt, str::FromStr};

use http::Uri;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// The placeholder replaced by the (percent-encoded) business id.
pub const PLACEHOLDER: &str = "{business_id}";

/// Everything but RFC 3986 unreserved characters is percent-encoded, so an id can never add
/// a path segment (`/` becomes `%2F`), a query or a fragment.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A validated URL template such as `https://registry.example/v1/companies/{business_id}`
/// or `http://10.0.0.7:8080/lookup?id={business_id}`.
///
/// Rules: `http` or `https`; a host; `{business_id}` at least once, in the path or the query
/// (never in the host); no user name or password in the URL (use `BUSINESS_REGISTRY_TOKEN`).
/// `Debug` and `Display` hide the query string, which may carry an API key.
#[derive(Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    text: String,
    host: String,
}

impl UrlTemplate {
    /// Parses and validates a template (also usable as a clap `value_parser`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let lower = text.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err("the URL must start with http:// or https://".into());
        }
        if !text.contains(PLACEHOLDER) {
            return Err(format!("the URL must contain `{PLACEHOLDER}`"));
        }
        let sample = |id: &str| -> Result<Uri, String> {
            text.replace(PLACEHOLDER, id)
                .parse::<Uri>()
                .map_err(|e| format!("not a valid URL: {e}"))
        };
        let (a, b) = (sample("a")?, sample("b")?);
        match a.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err("the URL must start with http:// or https://".into()),
        }
        let (Some(authority_a), Some(authority_b)) = (a.authority(), b.authority()) else {
            return Err("the URL has no host".into());
        };
        if authority_a != authority_b {
            return Err(format!(
                "`{PLACEHOLDER}` must be in the path or the query, not in the host"
            ));
        }
        if authority_a.as_str().contains('@') {
            return Err(
                "the URL must not carry credentials; use BUSINESS_REGISTRY_TOKEN instead".into(),
            );
        }
        if authority_a.host().is_empty() {
            return Err("the URL has no host".into());
        }
        Ok(Self {
            text: text.to_owned(),
            host: authority_a.host().to_owned(),
        })
    }

    /// The URL for `business_id`, percent-encoded.
    pub fn expand(&self, business_id: &str) -> Result<Uri, String> {
        let encoded = utf8_percent_encode(business_id, ENCODE).to_string();
        self.text
            .replace(PLACEHOLDER, &encoded)
            .parse()
            .map_err(|e| format!("the expanded URL is invalid: {e}"))
    }

    /// The registry's host name (or address), the default `source` of lookups.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The template with its query string hidden, for logs and `Debug`.
    pub fn redacted(&self) -> String {
        match self.text.split_once('?') {
            Some((before, _)) => format!("{before}?<redacted>"),
            None => self.text.clone(),
        }
    }
}

impl FromStr for UrlTemplate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Debug for UrlTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("UrlTemplate")
            .field(&self.redacted())
            .finish()
    }
}

impl fmt::Display for UrlTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_percent_encoded_in_the_path_and_the_query() {
        for (template, host, id, expanded) in [
            (
                "https://registry.example/v1/companies/{business_id}",
                "registry.example",
                "GB/12.3_4-5",
                "https://registry.example/v1/companies/GB%2F12.3_4-5",
            ),
            (
                "http://127.0.0.1:8081/lookup?id={business_id}&fmt=json",
                "127.0.0.1",
                "a b&c",
                "http://127.0.0.1:8081/lookup?id=a%20b%26c&fmt=json",
            ),
        ] {
            let parsed = UrlTemplate::parse(template).expect("valid template");
            assert_eq!(parsed.host(), host);
            assert_eq!(parsed.expand(id).expect("expands").to_string(), expanded);
        }
    }

    #[test]
    fn unusable_templates_are_refused_with_a_reason() {
        for (template, expected) in [
            ("https://registry.example/v1/companies", "must contain"),
            ("HTTPS://registry.example/v1/companies", "must contain"),
            (
                "ftp://registry.example/{business_id}",
                "http:// or https://",
            ),
            ("registry.example/{business_id}", "http:// or https://"),
            ("https://{business_id}.registry.example/", "not in the host"),
            (
                "https://user:pw@registry.example/{business_id}",
                "credentials",
            ),
            (
                "https://registry.example/a b/{business_id}",
                "not a valid URL",
            ),
        ] {
            let error = UrlTemplate::parse(template).expect_err(template);
            assert!(error.contains(expected), "{template}: {error}");
        }
    }

    #[test]
    fn debug_and_display_hide_the_query() {
        let template = UrlTemplate::parse("https://r.example/{business_id}?api_key=s3cret")
            .expect("valid template");
        assert_eq!(
            template.to_string(),
            "https://r.example/{business_id}?<redacted>"
        );
        assert!(!format!("{template:?}").contains("s3cret"));
    }
}
