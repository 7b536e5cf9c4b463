//! Customers as CSV (RFC 4180), for exports: `GET /v1/customers:export?format=csv` and
//! `customer-api export --format csv` write the same bytes through this one writer.
//!
//! Columns, in this order (docs/operations.md, "CSV columns"): [`COLUMNS`], then one
//! `external_ids.<source>` column per source the export's snapshot holds (sorted). Nested
//! fields are named by their field path (`address.locality`); `address.lines` joins the
//! lines with a line feed; `labels` is one JSON object (label keys are open-ended per
//! customer, so a column per key could grow without bound); enums are their names, times
//! RFC 3339 in UTC. Unset fields are empty cells.
//!
//! A cell is quoted when it holds a comma, a quote, a CR or an LF, with quotes doubled;
//! rows end with CRLF. Spreadsheets run a cell that starts with `=`, `+`, `-`, `@`, a tab or
//! a CR as a formula (CSV injection), so such a cell gets a leading `'`, which shows the
//! text as it is: a phone number `+358…` reads `'+358…`. Importers strip that one quote.

use std::io::Write as _;

use chrono::{DateTime, SecondsFormat};

use crate::pb;

/// The fixed columns, before the `external_ids.<source>` ones.
pub const COLUMNS: [&str; 20] = [
    "name",
    "uid",
    "given_name",
    "family_name",
    "email",
    "phone",
    "address.lines",
    "address.locality",
    "address.region",
    "address.postal_code",
    "address.country_code",
    "status",
    "company",
    "business_id",
    "labels",
    "etag",
    "create_time",
    "update_time",
    "delete_time",
    "expire_time",
];

/// Prefix of the external id columns.
pub const EXTERNAL_ID_PREFIX: &str = "external_ids.";

/// Writes customers as CSV rows with the columns of one export.
#[derive(Debug, Clone)]
pub struct CsvWriter {
    sources: Vec<String>,
    /// A cell's text before it is escaped (reused: no allocation per cell).
    scratch: Vec<u8>,
}

impl CsvWriter {
    /// A writer whose external id columns are `sources`.
    pub fn new(sources: Vec<String>) -> Self {
        Self {
            sources,
            scratch: Vec::new(),
        }
    }

    /// The sources listed in an `export-external-id-sources` value (comma-separated).
    pub fn sources(list: Option<&str>) -> Vec<String> {
        list.unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Appends the header row to `out`.
    pub fn header(&self, out: &mut Vec<u8>) {
        let columns = COLUMNS.iter().map(|c| (*c).to_owned());
        let external = self
            .sources
            .iter()
            .map(|s| format!("{EXTERNAL_ID_PREFIX}{s}"));
        for (i, column) in columns.chain(external).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            cell(out, column.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Appends `customer` as one row to `out`.
    pub fn row(&mut self, customer: &pb::Customer, out: &mut Vec<u8>) {
        let address = customer.address.as_ref();
        let (locality, region, postal_code, country_code) = address.map_or(("", "", "", ""), |a| {
            (
                a.locality.as_str(),
                a.region.as_str(),
                a.postal_code.as_str(),
                a.country_code.as_str(),
            )
        });
        let status = pb::customer::Status::try_from(customer.status)
            .ok()
            .filter(|s| *s != pb::customer::Status::Unspecified)
            .map_or("", |s| s.as_str_name());
        cell(out, customer.name.as_bytes());
        for value in [
            customer.uid.as_str(),
            &customer.given_name,
            &customer.family_name,
            &customer.email,
            &customer.phone,
        ] {
            next(out, value.as_bytes());
        }
        self.scratch.clear();
        if let Some(address) = address {
            for (i, line) in address.lines.iter().enumerate() {
                if i > 0 {
                    self.scratch.push(b'\n');
                }
                self.scratch.extend_from_slice(line.as_bytes());
            }
        }
        next(out, &self.scratch);
        for value in [
            locality,
            region,
            postal_code,
            country_code,
            status,
            &customer.company,
            &customer.business_id,
        ] {
            next(out, value.as_bytes());
        }
        self.scratch.clear();
        if !customer.labels.is_empty() {
            // A BTreeMap: keys sorted, so equal labels give equal cells.
            // Writing into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut self.scratch, &customer.labels);
        }
        next(out, &self.scratch);
        next(out, customer.etag.as_bytes());
        for time in [
            &customer.create_time,
            &customer.update_time,
            &customer.delete_time,
            &customer.expire_time,
        ] {
            self.scratch.clear();
            if let Some(time) = time
                && let Some(time) = u32::try_from(time.nanos)
                    .ok()
                    .and_then(|nanos| DateTime::from_timestamp(time.seconds, nanos))
            {
                let _ = write!(
                    self.scratch,
                    "{}",
                    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
                );
            }
            next(out, &self.scratch);
        }
        for source in &self.sources {
            next(
                out,
                customer
                    .external_ids
                    .get(source)
                    .map_or(&b""[..], String::as_bytes),
            );
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends a separator and the cell `text`.
fn next(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b',');
    cell(out, text);
}

/// Appends `text` as one cell: guarded against formulas, quoted when it must be.
fn cell(out: &mut Vec<u8>, text: &[u8]) {
    let formula = matches!(
        text.first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    );
    let quoted = text
        .iter()
        .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
    if quoted {
        out.push(b'"');
    }
    if formula {
        out.push(b'\'');
    }
    if quoted {
        for (i, part) in text.split(|b| *b == b'"').enumerate() {
            if i > 0 {
                out.extend_from_slice(b"\"\"");
            }
            out.extend_from_slice(part);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each `(value, cell)`: `value` written as one cell reads `cell`.
    fn assert_cells(cases: &[(&str, &str)]) {
        for (value, expected) in cases {
            let mut out = Vec::new();
            cell(&mut out, value.as_bytes());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                *expected,
                "cell of {value:?}"
            );
        }
    }

    #[test]
    fn cells_are_quoted_only_when_they_must_be_with_quotes_doubled() {
        assert_cells(&[
            ("plain text", "plain text"),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("two\nlines", "\"two\nlines\""),
            ("cr\rhere", "\"cr\rhere\""),
            ("", ""),
        ]);
    }

    #[test]
    fn cells_that_a_spreadsheet_would_run_as_formulas_get_a_leading_quote() {
        assert_cells(&[
            ("=1+2", "'=1+2"),
            ("+358401234567", "'+358401234567"),
            ("-5", "'-5"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            (
                "=HYPERLINK(\"x\",\"y\")",
                "\"'=HYPERLINK(\"\"x\"\",\"\"y\"\")\"",
            ),
            ("a=b", "a=b"),
        ]);
    }

    #[test]
    fn a_row_has_every_column_in_header_order() {
        let mut writer = CsvWriter::new(vec!["crm".into(), "erp".into()]);
        let customer = pb::Customer {
            name: "customers/1".into(),
            given_name: "Ada".into(),
            family_name: "Lovelace, Countess".into(),
            email: "ada@example.com".into(),
            address: Some(pb::PostalAddress {
                lines: vec!["1 Main St".into(), "Flat 2".into()],
                locality: "London".into(),
                country_code: "GB".into(),
                ..Default::default()
            }),
            status: pb::customer::Status::Active as i32,
            labels: [("tier".to_owned(), "gold".to_owned())].into(),
            external_ids: [("erp".to_owned(), "9".to_owned())].into(),
            create_time: Some(prost_types::Timestamp {
                seconds: 1_765_000_000,
                nanos: 123_000_000,
            }),
            ..Default::default()
        };
        let mut out = Vec::new();
        writer.header(&mut out);
        writer.row(&customer, &mut out);

        let text = String::from_utf8(out).unwrap();
        let (header, row) = text.split_once("\r\n").unwrap();
        assert_eq!(
            header,
            "name,uid,given_name,family_name,email,phone,address.lines,address.locality,\
             address.region,address.postal_code,address.country_code,status,company,\
             business_id,labels,etag,create_time,update_time,delete_time,expire_time,\
             external_ids.crm,external_ids.erp"
        );
        assert_eq!(
            row,
            "customers/1,,Ada,\"Lovelace, Countess\",ada@example.com,,\"1 Main St\nFlat 2\",\
             London,,,GB,ACTIVE,,,\"{\"\"tier\"\":\"\"gold\"\"}\",,\
             2025-12-06T05:46:40.123Z,,,,,9\r\n"
        );
    }
}
