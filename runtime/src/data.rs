//! CSV and JSON data: a header row, numeric columns, the label last (or named).
//!
//! Errors name the file, the line and the column. Fields are separated by
//! commas and may be surrounded by whitespace; quoted fields with embedded
//! commas are not supported.

use std::path::{Path, PathBuf};

use crate::error::{Result, RuntimeError};

/// Rows of features with a class label each.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Where it came from.
    pub path: PathBuf,
    /// Feature column names, in order.
    pub feature_names: Vec<String>,
    /// The label column's name.
    pub label_name: String,
    /// Features, row-major, `rows × feature_names.len()`.
    pub x: Vec<f32>,
    /// Class index of each row.
    pub y: Vec<u32>,
}

impl Dataset {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.y.len()
    }

    /// Number of feature columns.
    pub fn features(&self) -> usize {
        self.feature_names.len()
    }

    /// One more than the largest label.
    pub fn classes(&self) -> u32 {
        self.y.iter().max().map_or(0, |m| m + 1)
    }
}

/// Rows of features without labels (prediction input).
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    /// Column names (`x0`, `x1`, … for JSON input).
    pub names: Vec<String>,
    /// Row-major values.
    pub x: Vec<f32>,
    /// Number of rows.
    pub rows: usize,
}

struct Table {
    header: Vec<String>,
    /// (1-based line number, fields)
    rows: Vec<(usize, Vec<String>)>,
}

fn data_err(
    path: &Path,
    line: Option<usize>,
    column: Option<usize>,
    message: String,
) -> RuntimeError {
    RuntimeError::Data {
        path: path.to_path_buf(),
        line,
        column,
        message,
    }
}

fn read_table(path: &Path) -> Result<Table> {
    let text = std::fs::read_to_string(path).map_err(|e| RuntimeError::io(path, e))?;
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    let Some((hline, hdr)) = lines.next() else {
        return Err(data_err(path, None, None, "the file is empty".into()));
    };
    let split = |l: &str| -> Vec<String> {
        l.split(',')
            .map(|f| f.trim().trim_matches('"').to_string())
            .collect()
    };
    let header = split(hdr);
    if header.iter().all(|h| h.parse::<f64>().is_ok()) {
        return Err(data_err(
            path,
            Some(hline),
            None,
            "the first line must be a header of column names, but it holds numbers".into(),
        ));
    }
    if let Some(i) = header.iter().position(|h| h.is_empty()) {
        return Err(data_err(
            path,
            Some(hline),
            Some(i + 1),
            "the header has an empty column name".into(),
        ));
    }
    let mut rows = Vec::new();
    for (n, l) in lines {
        let fields = split(l);
        if fields.len() != header.len() {
            return Err(data_err(
                path,
                Some(n),
                None,
                format!(
                    "expected {} columns as in the header, found {}",
                    header.len(),
                    fields.len()
                ),
            ));
        }
        rows.push((n, fields));
    }
    if rows.is_empty() {
        return Err(data_err(
            path,
            None,
            None,
            "the file has a header but no data rows".into(),
        ));
    }
    Ok(Table { header, rows })
}

fn number(path: &Path, line: usize, col: usize, name: &str, field: &str) -> Result<f32> {
    match field.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(data_err(
            path,
            Some(line),
            Some(col + 1),
            format!("`{field}` in column `{name}` is not a finite number"),
        )),
        Err(_) => Err(data_err(
            path,
            Some(line),
            Some(col + 1),
            format!("`{field}` in column `{name}` is not a number"),
        )),
    }
}

/// Loads a labelled CSV. The label is the column named `label`, or the last
/// column; labels must be whole numbers ≥ 0 (class indices).
pub fn load_labeled(path: &Path, label: Option<&str>) -> Result<Dataset> {
    let table = read_table(path)?;
    if table.header.len() < 2 {
        return Err(data_err(
            path,
            Some(1),
            None,
            "needs at least one feature column and a label column".into(),
        ));
    }
    let label_col = match label {
        None => table.header.len() - 1,
        Some(name) => table.header.iter().position(|h| h == name).ok_or_else(|| {
            data_err(
                path,
                Some(1),
                None,
                format!(
                    "there is no label column `{name}`; the columns are: {}",
                    table.header.join(", ")
                ),
            )
        })?,
    };
    let mut x = Vec::with_capacity(table.rows.len() * (table.header.len() - 1));
    let mut y = Vec::with_capacity(table.rows.len());
    for (line, fields) in &table.rows {
        for (c, f) in fields.iter().enumerate() {
            let v = number(path, *line, c, &table.header[c], f)?;
            if c == label_col {
                if v < 0.0 || v.fract() != 0.0 || v > u32::MAX as f32 {
                    return Err(data_err(
                        path,
                        Some(*line),
                        Some(c + 1),
                        format!(
                            "label `{f}` in column `{}` is not a class index (a whole number >= 0)",
                            table.header[c]
                        ),
                    ));
                }
                y.push(v as u32);
            } else {
                x.push(v);
            }
        }
    }
    let mut feature_names = table.header.clone();
    let label_name = feature_names.remove(label_col);
    Ok(Dataset {
        path: path.to_path_buf(),
        feature_names,
        label_name,
        x,
        y,
    })
}

/// Loads prediction input: a CSV with a header, or a JSON array of rows
/// (`[[5.1, 3.5, 1.4, 0.2], …]`) when the file name ends in `.json`. A CSV
/// column named `drop_column` (the model's label) is ignored, so the training
/// file itself can be used as input.
pub fn load_features(path: &Path, drop_column: Option<&str>) -> Result<Features> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        return load_json(path);
    }
    let table = read_table(path)?;
    let skip = drop_column.and_then(|d| table.header.iter().position(|h| h == d));
    let mut x = Vec::new();
    for (line, fields) in &table.rows {
        for (c, f) in fields.iter().enumerate() {
            if Some(c) != skip {
                x.push(number(path, *line, c, &table.header[c], f)?);
            }
        }
    }
    let names = table
        .header
        .iter()
        .enumerate()
        .filter(|(c, _)| Some(*c) != skip)
        .map(|(_, h)| h.clone())
        .collect();
    Ok(Features {
        names,
        x,
        rows: table.rows.len(),
    })
}

fn load_json(path: &Path) -> Result<Features> {
    let text = std::fs::read_to_string(path).map_err(|e| RuntimeError::io(path, e))?;
    let rows: Vec<Vec<serde_json::Value>> = serde_json::from_str(&text).map_err(|e| {
        data_err(
            path,
            Some(e.line()),
            Some(e.column()),
            format!("expected a JSON array of rows of numbers: {e}"),
        )
    })?;
    let width = rows.first().map_or(0, Vec::len);
    if rows.is_empty() || width == 0 {
        return Err(data_err(path, None, None, "no rows to predict".into()));
    }
    let mut x = Vec::with_capacity(rows.len() * width);
    for (r, row) in rows.iter().enumerate() {
        if row.len() != width {
            return Err(data_err(
                path,
                None,
                None,
                format!("row {r} has {} values; row 0 has {width}", row.len()),
            ));
        }
        for (c, v) in row.iter().enumerate() {
            match v.as_f64() {
                Some(f) if f.is_finite() => x.push(f as f32),
                _ => {
                    return Err(data_err(
                        path,
                        None,
                        None,
                        format!("row {r}, value {c}: `{v}` is not a finite number"),
                    ));
                }
            }
        }
    }
    Ok(Features {
        names: (0..width).map(|c| format!("x{c}")).collect(),
        x,
        rows: rows.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &str) -> tempfile::NamedTempFile {
        let f = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
        std::fs::write(f.path(), content).unwrap();
        f
    }

    fn err(content: &str, label: Option<&str>) -> String {
        let f = file(content);
        let e = load_labeled(f.path(), label).unwrap_err().to_string();
        e.strip_prefix(&f.path().display().to_string())
            .unwrap()
            .to_string()
    }

    #[test]
    fn loads_features_and_labels() {
        let f = file("a, b,label\n1,2,0\n\n3,4.5,2\n");
        let d = load_labeled(f.path(), None).unwrap();
        assert_eq!(d.feature_names, ["a", "b"]);
        assert_eq!(d.label_name, "label");
        assert_eq!(d.x, [1.0, 2.0, 3.0, 4.5]);
        assert_eq!(d.y, [0, 2]);
        assert_eq!(d.classes(), 3);
        let named = load_labeled(f.path(), Some("a")).unwrap();
        assert_eq!(named.y, [1, 3]);
        assert_eq!(named.feature_names, ["b", "label"]);
    }

    #[test]
    fn errors_name_line_and_column() {
        assert_eq!(err("", None), ": the file is empty");
        assert_eq!(
            err("a,b\n", None),
            ": the file has a header but no data rows"
        );
        assert_eq!(
            err("a,b,c\n1,2,0\n1,2\n", None),
            ":3: expected 3 columns as in the header, found 2"
        );
        assert_eq!(
            err("a,b,c\n1,x,0\n", None),
            ":2:2: `x` in column `b` is not a number"
        );
        assert_eq!(
            err("a,b,c\n1,inf,0\n", None),
            ":2:2: `inf` in column `b` is not a finite number"
        );
        assert_eq!(
            err("a,b,c\n1,2,1.5\n", None),
            ":2:3: label `1.5` in column `c` is not a class index (a whole number >= 0)"
        );
        assert_eq!(
            err("a,b\n1,2\n", Some("y")),
            ":1: there is no label column `y`; the columns are: a, b"
        );
        assert_eq!(
            err("a\n1\n", None),
            ":1: needs at least one feature column and a label column"
        );
        assert_eq!(
            err("1,2\n3,4\n", None),
            ":1: the first line must be a header of column names, but it holds numbers"
        );
    }

    #[test]
    fn features_drop_the_label_and_read_json() {
        let f = file("a,b,y\n1,2,0\n3,4,1\n");
        let feats = load_features(f.path(), Some("y")).unwrap();
        assert_eq!((feats.rows, feats.x.clone()), (2, vec![1.0, 2.0, 3.0, 4.0]));
        let j = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
        std::fs::write(j.path(), "[[1, 2.5], [3, 4]]").unwrap();
        let feats = load_features(j.path(), None).unwrap();
        assert_eq!(feats.x, [1.0, 2.5, 3.0, 4.0]);
        std::fs::write(j.path(), "[[1, 2], [3]]").unwrap();
        assert!(load_features(j.path(), None).is_err());
    }
}
