//! CSV tables through the `csv` crate: RFC 4180 quoting, any one-byte
//! delimiter, a UTF-8 byte-order mark; errors at the file's line and column.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::{Field, Source, data_err};
use crate::{Error, Result};

/// A CSV file with a header line.
pub(super) struct CsvSource {
    path: PathBuf,
    delimiter: u8,
    header: Vec<String>,
}

impl CsvSource {
    /// Opens `path` and reads its header.
    pub(super) fn open(path: &Path, delimiter: u8) -> Result<Self> {
        let (_, header) = open(path, delimiter)?;
        Ok(Self {
            path: path.to_path_buf(),
            delimiter,
            header,
        })
    }
}

impl Source for CsvSource {
    fn header(&self) -> &[String] {
        &self.header
    }

    fn scan(
        &self,
        columns: &[usize],
        row: &mut dyn FnMut(usize, &[Field<'_>]) -> Result<()>,
    ) -> Result<usize> {
        let (mut reader, _) = open(&self.path, self.delimiter)?;
        let width = self.header.len();
        let mut record = csv::StringRecord::new();
        let mut rows = 0;
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => return Err(csv_err(&self.path, e, width)),
            }
            // A blank line: the csv crate gives one empty field for it.
            if record.len() == 1 && record[0].is_empty() && width > 1 {
                continue;
            }
            let line = record.position().map_or(0, |p| p.line() as usize);
            let fields: Vec<Field> = columns.iter().map(|&c| Field::Text(&record[c])).collect();
            row(line, &fields)?;
            rows += 1;
        }
        Ok(rows)
    }

    fn err_at(&self, line: usize, column: usize, message: String) -> Error {
        data_err(&self.path, Some(line), Some(column + 1), message)
    }

    fn header_err(&self, column: Option<usize>, message: String) -> Error {
        data_err(&self.path, Some(1), column.map(|c| c + 1), message)
    }
}

/// A `--delimiter`: one ASCII character other than a quote or a line break;
/// `\t` for a tab.
pub fn parse_delimiter(text: &str) -> Result<char, String> {
    let c = match text {
        "\\t" | "tab" => '\t',
        _ => {
            let mut chars = text.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => c,
                _ => {
                    return Err(format!(
                        "`{text}` is not one character; give `;`, `|` or `\\t`"
                    ));
                }
            }
        }
    };
    if !c.is_ascii() || matches!(c, '"' | '\n' | '\r') {
        return Err(format!(
            "{c:?} cannot separate fields; give one ASCII character other than a quote or a \
             line break"
        ));
    }
    Ok(c)
}

/// A CSV reader positioned after the header, and the header.
fn open(path: &Path, delimiter: u8) -> Result<(csv::Reader<File>, Vec<String>)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .trim(csv::Trim::All)
        .from_reader(file);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| csv_err(path, e, 0))?
        .iter()
        .map(str::to_string)
        .collect();
    if header.is_empty() || header.iter().all(String::is_empty) {
        return Err(data_err(path, None, None, "the file is empty".into()));
    }
    if header.iter().all(|h| h.parse::<f64>().is_ok()) {
        return Err(data_err(
            path,
            Some(1),
            None,
            "the first line must be a header of column names, but it holds numbers".into(),
        ));
    }
    if let Some(i) = header.iter().position(String::is_empty) {
        return Err(data_err(
            path,
            Some(1),
            Some(i + 1),
            "the header has an empty column name".into(),
        ));
    }
    let mut seen = HashMap::new();
    for (i, h) in header.iter().enumerate() {
        if let Some(first) = seen.insert(h.as_str(), i) {
            return Err(data_err(
                path,
                Some(1),
                Some(i + 1),
                format!(
                    "the header names column `{h}` twice (columns {} and {})",
                    first + 1,
                    i + 1
                ),
            ));
        }
    }
    Ok((reader, header))
}

fn csv_err(path: &Path, e: csv::Error, width: usize) -> Error {
    let line = e.position().map(|p| p.line() as usize);
    match e.kind() {
        csv::ErrorKind::UnequalLengths { len, .. } => data_err(
            path,
            line,
            None,
            format!(
                "expected {width} columns as in the header, found {len} (a field holding the \
                 delimiter must be quoted: \"a,b\")"
            ),
        ),
        csv::ErrorKind::Utf8 { err, .. } => data_err(
            path,
            line,
            Some(err.field() + 1),
            "is not UTF-8 text; save the file as UTF-8".into(),
        ),
        csv::ErrorKind::Io(io) => data_err(path, line, None, io.to_string()),
        _ => data_err(path, line, None, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_delimiter;

    #[test]
    fn delimiters_are_one_ascii_character() {
        assert_eq!(parse_delimiter(";"), Ok(';'));
        assert_eq!(parse_delimiter("\\t"), Ok('\t'));
        assert_eq!(parse_delimiter("tab"), Ok('\t'));
        assert!(
            parse_delimiter(";;")
                .unwrap_err()
                .contains("not one character")
        );
        assert!(
            parse_delimiter("\"")
                .unwrap_err()
                .contains("cannot separate")
        );
        assert!(
            parse_delimiter("é")
                .unwrap_err()
                .contains("cannot separate")
        );
    }
}
