//! JSON lines: one object per line (`{"age": 41, "city": "Oslo", …}`, as
//! pandas' `to_json(orient="records", lines=True)` writes). The first
//! object's keys, in their order, are the columns; a later object may leave
//! one out (a missing value) but not add one. Numbers, strings, booleans
//! and `null` are values; a nested array or object is an error.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::{Field, Source, data_err};
use crate::{Error, Result};

/// A JSON-lines file.
pub(super) struct JsonlSource {
    path: PathBuf,
    header: Vec<String>,
    index: HashMap<String, usize>,
}

/// The keys of a JSON object, in the order written.
struct Keys(Vec<String>);

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct KeysVisitor;
        impl<'de> Visitor<'de> for KeysVisitor {
            type Value = Keys;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of column names to values")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.push(k);
                }
                Ok(Keys(keys))
            }
        }
        d.deserialize_map(KeysVisitor)
    }
}

impl JsonlSource {
    /// Opens `path` and reads the columns from its first object.
    pub(super) fn open(path: &Path) -> Result<Self> {
        let mut header = None;
        each_line(path, |line, text| {
            let keys: Keys = serde_json::from_str(text).map_err(|e| {
                data_err(
                    path,
                    Some(line),
                    Some(e.column()),
                    format!("expected a JSON object of column names to values: {e}"),
                )
            })?;
            header = Some((line, keys.0));
            Ok(false)
        })?;
        let Some((line, header)) = header else {
            return Err(data_err(path, None, None, "the file is empty".into()));
        };
        if header.is_empty() {
            return Err(data_err(
                path,
                Some(line),
                None,
                "the first object has no keys, so the table has no columns".into(),
            ));
        }
        let index = header.iter().cloned().zip(0..).collect();
        Ok(Self {
            path: path.to_path_buf(),
            header,
            index,
        })
    }
}

/// Calls `f(line, text)` for each non-blank line until it returns false.
fn each_line(path: &Path, mut f: impl FnMut(usize, &str) -> Result<bool>) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::new(file);
    let mut text = String::new();
    let mut line = 0;
    loop {
        text.clear();
        let n = reader.read_line(&mut text).map_err(|e| {
            data_err(
                path,
                Some(line + 1),
                None,
                format!("cannot be read ({e}); JSON lines must be UTF-8 text"),
            )
        })?;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        let t = text.trim_start_matches('\u{feff}').trim();
        if t.is_empty() {
            continue;
        }
        if !f(line, t)? {
            return Ok(());
        }
    }
}

impl Source for JsonlSource {
    fn header(&self) -> &[String] {
        &self.header
    }

    fn scan(
        &self,
        columns: &[usize],
        row: &mut dyn FnMut(usize, &[Field<'_>]) -> Result<()>,
    ) -> Result<usize> {
        let path = self.path.clone();
        let mut slots: Vec<Option<usize>> = vec![None; self.header.len()];
        for (i, &c) in columns.iter().enumerate() {
            slots[c] = Some(i);
        }
        let mut rows = 0;
        each_line(&path, |line, text| {
            let object: Map<String, Value> = serde_json::from_str(text).map_err(|e| {
                data_err(
                    &path,
                    Some(line),
                    Some(e.column()),
                    format!("expected a JSON object of column names to values: {e}"),
                )
            })?;
            let mut fields = vec![Field::Missing; columns.len()];
            for (key, value) in &object {
                let Some(&c) = self.index.get(key) else {
                    return Err(data_err(
                        &path,
                        Some(line),
                        None,
                        format!(
                            "key `{key}` is not a column (the first object's keys are: {})",
                            self.header.join(", ")
                        ),
                    ));
                };
                let Some(slot) = slots[c] else { continue };
                fields[slot] = match value {
                    Value::Null => Field::Missing,
                    Value::Bool(b) => Field::Bool(*b),
                    Value::Number(n) => Field::Number(n.as_f64().unwrap_or(f64::NAN)),
                    Value::String(s) => Field::Text(s),
                    Value::Array(_) | Value::Object(_) => {
                        return Err(data_err(
                            &path,
                            Some(line),
                            None,
                            format!(
                                "the value of `{key}` is a nested {}; a column holds a number, \
                                 a string, true/false or null",
                                if value.is_array() { "array" } else { "object" }
                            ),
                        ));
                    }
                };
            }
            row(line, &fields)?;
            rows += 1;
            Ok(true)
        })?;
        Ok(rows)
    }

    fn err_at(&self, line: usize, _column: usize, message: String) -> Error {
        data_err(&self.path, Some(line), None, message)
    }

    fn header_err(&self, _column: Option<usize>, message: String) -> Error {
        data_err(&self.path, None, None, message)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Options, Task, load, load_features, schema};

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::Builder::new()
            .suffix(".jsonl")
            .tempfile()
            .unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn objects_in_the_first_lines_key_order() {
        let f = file(
            "{\"size\": 2.5, \"color\": \"red\", \"ok\": true, \"price\": 10}\n\n\
             {\"color\": null, \"size\": 1, \"ok\": false, \"price\": 12.5}\n\
             {\"size\": \"NA\", \"ok\": true, \"price\": 9}\n",
        );
        let opts = Options {
            task: Some(Task::Regression),
            ..Options::default()
        };
        let d = load(f.path(), &opts).unwrap();
        assert_eq!(d.feature_names, ["size", "color", "ok"]);
        assert_eq!(
            d.schema
                .iter()
                .map(|c| (c.type_name(), c.missing))
                .collect::<Vec<_>>(),
            [("numeric", 1), ("categorical", 2), ("boolean", 0)]
        );
        assert_eq!(d.targets, [10.0, 12.5, 9.0]);
        let bits: Vec<String> = d.x.iter().map(|v| format!("{v}")).collect();
        assert_eq!(bits, ["2.5", "0", "1", "1", "NaN", "0", "NaN", "NaN", "1"]);
        let feats = load_features(f.path(), Some("price"), Some(&d.schema), None).unwrap();
        assert_eq!(feats.rows, 3);
        assert_eq!(schema(f.path(), None).unwrap().format, "jsonl");
    }

    #[test]
    fn errors_name_the_line() {
        let err = |text: &str| {
            let f = file(text);
            let e = load(f.path(), &Options::default()).unwrap_err().to_string();
            e.strip_prefix(&f.path().display().to_string())
                .unwrap()
                .to_string()
        };
        assert_eq!(err(""), ": the file is empty");
        assert_eq!(
            err("{\"a\": 1, \"y\": 0}\n{\"a\": 2, \"b\": 3, \"y\": 1}\n"),
            ":2: key `b` is not a column (the first object's keys are: a, y)"
        );
        assert_eq!(
            err("{\"a\": [1, 2], \"y\": 0}\n"),
            ":1: the value of `a` is a nested array; a column holds a number, a string, \
             true/false or null"
        );
        assert!(err("{\"a\": 1, \"y\": 0}\n{\"a\": 1,\n").starts_with(":2:"));
        assert_eq!(
            err("{\"a\": 1, \"y\": 0}\n{\"a\": \"x\", \"y\": 0.5}\n"),
            ":2: label `0.5` in column `y` is not a class index (a whole number >= 0); for a \
             continuous target declare [data] task = \"regression\""
        );
    }
}
