//! Rows of an import file (ImportCustomers' `chunk`s, `POST /v1/customers:import`), read
//! incrementally: bytes go in as they arrive, whole rows come out, and only the row being
//! read is held (at most [`MAX_ROW_BYTES`]), so memory stays constant whatever the file.
//!
//! - NDJSON: one customer per line in canonical proto3 JSON (what ExportCustomers writes; a
//!   line `{"result": {...}}`, a REST stream line, is read as its `result`). Blank lines are
//!   skipped. Unknown fields are a problem of the row.
//! - CSV (RFC 4180): a header row naming columns as the CSV export does
//!   ([`crate::convert::csv::COLUMNS`], `external_ids.<source>`); the output-only columns
//!   (`name`, `uid`, `etag`, the times) are ignored, so an export imports as it is. A cell
//!   the export guarded against formula injection (`'=…`, `'+…`) loses that one quote.
//!   `address.lines` splits at line feeds, `labels` is a JSON object, `status` an enum
//!   name. An unknown or repeated column fails the import (nothing of it can be read).
//!
//! A row is numbered by its (first) line in the file, counting from 1 (the CSV header is
//! line 1). A row that cannot be read becomes a row with violations, like an invalid one.

use std::{collections::BTreeMap, sync::LazyLock};

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

use crate::{
    convert::csv::{COLUMNS, EXTERNAL_ID_PREFIX},
    domain::Violations,
    pb,
};

/// The longest row (line, or CSV record) read; a longer one fails the import.
pub const MAX_ROW_BYTES: usize = 1024 * 1024;

/// A row read from the file: its line and the customer, or what is wrong with it.
#[derive(Debug)]
pub struct ParsedRow {
    /// Its (first) line, from 1.
    pub line: i64,
    /// The customer it holds.
    pub customer: Result<pb::Customer, Violations>,
}

/// A problem of the file itself (not of one row): the import cannot go on.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FileError(pub String);

/// The file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Newline-delimited JSON.
    Ndjson,
    /// CSV with a header row.
    Csv,
}

/// Reads rows of one file.
#[derive(Debug)]
pub struct RowReader {
    format: FileFormat,
    /// NDJSON: the line being read. CSV: the cell being read.
    pending: Vec<u8>,
    /// The line being read (from 1).
    line: i64,
    /// The line the current row started on.
    row_line: i64,
    /// CSV state.
    csv: Csv,
}

#[derive(Debug, Default)]
struct Csv {
    /// Inside a quoted cell.
    quoted: bool,
    /// A quote was just read inside a quoted cell (a doubled quote, or its end).
    quote_seen: bool,
    /// The current cell was quoted (so an empty record is not blank).
    cell_was_quoted: bool,
    /// The cells of the current record.
    cells: Vec<String>,
    /// Bytes of the current record so far.
    record_bytes: usize,
    /// A cell of the current record was not UTF-8.
    not_utf8: bool,
    /// The columns, once the header was read.
    columns: Option<Vec<Column>>,
}

/// What a CSV column holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Column {
    Ignored,
    GivenName,
    FamilyName,
    Email,
    Phone,
    AddressLines,
    Locality,
    Region,
    PostalCode,
    CountryCode,
    Status,
    Company,
    BusinessId,
    Labels,
    ExternalId(String),
}

/// `customer.v1.Customer`'s descriptor (for NDJSON rows).
static CUSTOMER: LazyLock<Option<MessageDescriptor>> = LazyLock::new(|| {
    DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET)
        .ok()?
        .get_message_by_name("customer.v1.Customer")
});

impl RowReader {
    /// A reader of a file of `format`.
    pub fn new(format: FileFormat) -> Self {
        Self {
            format,
            pending: Vec::new(),
            line: 1,
            row_line: 1,
            csv: Csv::default(),
        }
    }

    /// Reads `chunk`, appending the rows it completes to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<ParsedRow>) -> Result<(), FileError> {
        match self.format {
            FileFormat::Ndjson => self.push_ndjson(chunk, out),
            FileFormat::Csv => self.push_csv(chunk, out),
        }
    }

    /// Ends the file, appending its last row (if it did not end with a line feed).
    pub fn finish(&mut self, out: &mut Vec<ParsedRow>) -> Result<(), FileError> {
        match self.format {
            FileFormat::Ndjson => {
                if !self.pending.is_empty() {
                    let line = std::mem::take(&mut self.pending);
                    if let Some(row) = ndjson_row(self.line, &line) {
                        out.push(row);
                    }
                }
                Ok(())
            }
            FileFormat::Csv => {
                if self.csv.quoted && !self.csv.quote_seen {
                    return Err(FileError(format!(
                        "the file ends inside a quoted cell that starts on line {}",
                        self.row_line
                    )));
                }
                if !self.pending.is_empty()
                    || !self.csv.cells.is_empty()
                    || self.csv.cell_was_quoted
                {
                    self.end_record(out)?;
                }
                if self.csv.columns.is_none() {
                    return Err(FileError("the CSV file has no header row".into()));
                }
                Ok(())
            }
        }
    }

    fn push_ndjson(&mut self, chunk: &[u8], out: &mut Vec<ParsedRow>) -> Result<(), FileError> {
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            let (line, after) = rest.split_at(end);
            rest = &after[1..];
            let row = if self.pending.is_empty() {
                ndjson_row(self.line, line)
            } else {
                self.pending.extend_from_slice(line);
                let line = std::mem::take(&mut self.pending);
                ndjson_row(self.line, &line)
            };
            out.extend(row);
            self.line += 1;
        }
        self.pending.extend_from_slice(rest);
        if self.pending.len() > MAX_ROW_BYTES {
            return Err(too_long(self.line));
        }
        Ok(())
    }

    fn push_csv(&mut self, chunk: &[u8], out: &mut Vec<ParsedRow>) -> Result<(), FileError> {
        for &byte in chunk {
            let csv = &mut self.csv;
            if csv.quoted {
                if csv.quote_seen {
                    csv.quote_seen = false;
                    if byte == b'"' {
                        self.pending.push(b'"');
                        continue;
                    }
                    csv.quoted = false;
                    // The quoted part ended; fall through to the unquoted handling.
                } else {
                    if byte == b'"' {
                        csv.quote_seen = true;
                    } else {
                        if byte == b'\n' {
                            self.line += 1;
                        }
                        self.pending.push(byte);
                    }
                    continue;
                }
            }
            match byte {
                b'"' if self.pending.is_empty() && !self.csv.cell_was_quoted => {
                    self.csv.quoted = true;
                    self.csv.cell_was_quoted = true;
                }
                b',' => self.end_cell(),
                b'\r' => {}
                b'\n' => {
                    self.end_record(out)?;
                    self.line += 1;
                    self.row_line = self.line;
                }
                _ => self.pending.push(byte),
            }
            if self.csv.record_bytes + self.pending.len() > MAX_ROW_BYTES {
                return Err(too_long(self.row_line));
            }
        }
        Ok(())
    }

    fn end_cell(&mut self) {
        let bytes = std::mem::take(&mut self.pending);
        self.csv.record_bytes += bytes.len() + 1;
        self.csv.cell_was_quoted = false;
        let text = String::from_utf8(bytes).unwrap_or_else(|_| {
            self.csv.not_utf8 = true;
            String::new()
        });
        self.csv.cells.push(text);
    }

    fn end_record(&mut self, out: &mut Vec<ParsedRow>) -> Result<(), FileError> {
        let blank =
            self.pending.is_empty() && self.csv.cells.is_empty() && !self.csv.cell_was_quoted;
        if blank {
            return Ok(());
        }
        self.end_cell();
        let cells = std::mem::take(&mut self.csv.cells);
        let not_utf8 = std::mem::take(&mut self.csv.not_utf8);
        self.csv.record_bytes = 0;
        let line = self.row_line;
        match &self.csv.columns {
            None => {
                if not_utf8 {
                    return Err(FileError("the CSV header row is not UTF-8".into()));
                }
                self.csv.columns = Some(header(&cells)?);
            }
            Some(columns) => {
                let customer = if not_utf8 {
                    let mut violations = Violations::new();
                    violations.add("customer", "the row is not valid UTF-8");
                    Err(violations)
                } else {
                    csv_row(columns, cells)
                };
                out.push(ParsedRow { line, customer });
            }
        }
        Ok(())
    }
}

fn too_long(line: i64) -> FileError {
    FileError(format!(
        "the row on line {line} is longer than {MAX_ROW_BYTES} bytes"
    ))
}

/// The row of one NDJSON line (`None` for a blank line).
fn ndjson_row(line: i64, text: &[u8]) -> Option<ParsedRow> {
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    if text.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(ParsedRow {
        line,
        customer: ndjson_customer(text),
    })
}

fn ndjson_customer(text: &[u8]) -> Result<pb::Customer, Violations> {
    let unreadable = |problem: String| {
        let mut violations = Violations::new();
        violations.add("customer", problem);
        violations
    };
    let Some(descriptor) = CUSTOMER.as_ref() else {
        return Err(unreadable("the customer schema is unavailable".into()));
    };
    let trimmed = text.trim_ascii_start();
    let message = if trimmed.starts_with(b"{\"result\"") {
        let mut value: serde_json::Value = serde_json::from_slice(text)
            .map_err(|e| unreadable(format!("is not a JSON object: {e}")))?;
        let result = value
            .get_mut("result")
            .map(serde_json::Value::take)
            .unwrap_or_default();
        DynamicMessage::deserialize(descriptor.clone(), result)
    } else {
        let mut deserializer = serde_json::Deserializer::from_slice(text);
        DynamicMessage::deserialize(descriptor.clone(), &mut deserializer).and_then(|message| {
            deserializer.end()?;
            Ok(message)
        })
    }
    .map_err(|e| unreadable(format!("is not a customer in JSON: {e}")))?;
    message
        .transcode_to::<pb::Customer>()
        .map_err(|e| unreadable(format!("is not a customer: {e}")))
}

/// The columns a CSV header names.
fn header(cells: &[String]) -> Result<Vec<Column>, FileError> {
    let mut seen = std::collections::HashSet::new();
    cells
        .iter()
        .map(|cell| {
            let name = cell.trim_start_matches('\u{feff}').trim();
            if !seen.insert(name.to_owned()) {
                return Err(FileError(format!(
                    "the CSV header names the column `{name}` twice"
                )));
            }
            Ok(match name {
                "given_name" => Column::GivenName,
                "family_name" => Column::FamilyName,
                "email" => Column::Email,
                "phone" => Column::Phone,
                "address.lines" => Column::AddressLines,
                "address.locality" => Column::Locality,
                "address.region" => Column::Region,
                "address.postal_code" => Column::PostalCode,
                "address.country_code" => Column::CountryCode,
                "status" => Column::Status,
                "company" => Column::Company,
                "business_id" => Column::BusinessId,
                "labels" => Column::Labels,
                other if COLUMNS.contains(&other) => Column::Ignored,
                other => match other.strip_prefix(EXTERNAL_ID_PREFIX) {
                    Some(source) if !source.is_empty() => Column::ExternalId(source.to_owned()),
                    _ => {
                        return Err(FileError(format!(
                            "the CSV header names an unknown column `{}`; use the columns of \
                             the CSV export",
                            crate::domain::customer::clip(other)
                        )));
                    }
                },
            })
        })
        .collect()
}

/// A cell without the quote the export put in front of a would-be formula.
fn unguarded(mut text: String) -> String {
    let guarded = text.starts_with('\'')
        && matches!(
            text.as_bytes().get(1),
            Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
        );
    if guarded {
        text.remove(0);
    }
    text
}

fn csv_row(columns: &[Column], cells: Vec<String>) -> Result<pb::Customer, Violations> {
    let mut violations = Violations::new();
    if cells.len() != columns.len() {
        violations.add(
            "customer",
            format!(
                "the row has {} cells; the header has {} columns",
                cells.len(),
                columns.len()
            ),
        );
        return Err(violations);
    }
    let mut customer = pb::Customer::default();
    let mut address = pb::PostalAddress::default();
    let mut has_address = false;
    for (column, cell) in columns.iter().zip(cells) {
        let cell = unguarded(cell);
        if cell.is_empty() {
            continue;
        }
        match column {
            Column::Ignored => {}
            Column::GivenName => customer.given_name = cell,
            Column::FamilyName => customer.family_name = cell,
            Column::Email => customer.email = cell,
            Column::Phone => customer.phone = cell,
            Column::Company => customer.company = cell,
            Column::BusinessId => customer.business_id = cell,
            Column::AddressLines => {
                has_address = true;
                address.lines = cell.split('\n').map(str::to_owned).collect();
            }
            Column::Locality => (has_address, address.locality) = (true, cell),
            Column::Region => (has_address, address.region) = (true, cell),
            Column::PostalCode => (has_address, address.postal_code) = (true, cell),
            Column::CountryCode => (has_address, address.country_code) = (true, cell),
            Column::Status => match pb::customer::Status::from_str_name(&cell) {
                Some(status) => customer.status = status as i32,
                None => violations.add(
                    "customer.status",
                    format!(
                        "`{}` is not a status; use ACTIVE, INACTIVE or another \
                         customer.v1.Customer.Status name",
                        crate::domain::customer::clip(&cell)
                    ),
                ),
            },
            Column::Labels => match serde_json::from_str::<BTreeMap<String, String>>(&cell) {
                Ok(labels) => customer.labels = labels,
                Err(_) => violations.add(
                    "customer.labels",
                    "must be a JSON object of string values, e.g. {\"tier\":\"gold\"}",
                ),
            },
            Column::ExternalId(source) => {
                customer.external_ids.insert(source.clone(), cell);
            }
        }
    }
    if has_address {
        customer.address = Some(address);
    }
    violations.into_result(customer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(format: FileFormat, chunks: &[&str]) -> Result<Vec<ParsedRow>, FileError> {
        let mut reader = RowReader::new(format);
        let mut out = Vec::new();
        for chunk in chunks {
            reader.push(chunk.as_bytes(), &mut out)?;
        }
        reader.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn ndjson_rows_span_chunks_and_keep_their_line_numbers() {
        let rows = read(
            FileFormat::Ndjson,
            &[
                "{\"givenName\":\"A\"}\n\n{\"given",
                "Name\":\"B\"}\r\n{\"result\":{\"email\":\"c@x.io\"}}\nnot json",
            ],
        )
        .unwrap();
        let lines: Vec<i64> = rows.iter().map(|row| row.line).collect();
        assert_eq!(lines, [1, 3, 4, 5]);
        assert_eq!(rows[0].customer.as_ref().unwrap().given_name, "A");
        assert_eq!(rows[1].customer.as_ref().unwrap().given_name, "B");
        assert_eq!(rows[2].customer.as_ref().unwrap().email, "c@x.io");
        let violations = rows[3].customer.as_ref().unwrap_err().clone().into_vec();
        assert_eq!(violations[0].field, "customer");
    }

    #[test]
    fn csv_rows_map_columns_and_count_lines_of_quoted_cells() {
        let rows = read(
            FileFormat::Csv,
            &[
                "name,given_name,family_name,email,phone,address.lines,address.country_code,\
                 status,labels,external_ids.crm\r\n",
                "customers/x,Ada,\"Love, lace\",ada@example.com,'+358401234567,\"1 Main\nFlat 2\",GB,",
                "ACTIVE,\"{\"\"tier\"\":\"\"gold\"\"}\",4711\r\n,Bob,B,b@x.io,,,,NOPE,,\n",
            ],
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 2);
        let ada = rows[0].customer.as_ref().unwrap();
        assert_eq!(ada.family_name, "Love, lace");
        assert_eq!(ada.phone, "+358401234567");
        assert_eq!(ada.address.as_ref().unwrap().lines, ["1 Main", "Flat 2"]);
        assert_eq!(ada.labels["tier"], "gold");
        assert_eq!(ada.external_ids["crm"], "4711");
        assert_eq!(ada.status, pb::customer::Status::Active as i32);
        assert_eq!(rows[1].line, 4);
        let violations = rows[1].customer.as_ref().unwrap_err().clone().into_vec();
        assert_eq!(violations[0].field, "customer.status");
    }

    #[test]
    fn an_unknown_csv_column_fails_the_file() {
        let error = read(FileFormat::Csv, &["given_name,nickname\n"]).unwrap_err();
        assert!(error.0.contains("`nickname`"), "{error}");
    }
}
