//! Tables as people have them: CSV (RFC 4180 quoting through the `csv`
//! crate, any one-byte delimiter, a UTF-8 byte-order mark) and JSON rows for
//! prediction input.
//!
//! A table is read in two passes. The first infers each column's type —
//! numeric, boolean (`true`/`false`) or categorical (any other text) — and
//! what the label column holds; the second encodes every feature as an f32:
//! a number as itself, a boolean as 0 or 1, a category as its index among
//! the column's categories (sorted, learned from the training data and
//! recorded in the model), and a missing value (an empty field, `NA`, `N/A`,
//! `NaN`, `nan`, `null`, `NULL`, `None`) as NaN. At prediction time a
//! category the training data did not have is encoded as -1.
//!
//! The label decides the task unless `[data] task` declares it: text labels
//! are classes (their names learned from the data, sorted, unless
//! `class_names` orders them); whole numbers ≥ 0 with at most
//! [`MAX_INFERRED_CLASSES`] distinct values are class indices; anything else
//! must be declared, so a continuous target is never trained as hundreds of
//! classes. Errors name the file, the line and the column.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::plugin::Task;

/// The most distinct whole-number labels taken as classes when the pipeline
/// does not declare its task. More than this (or any fraction) needs
/// `[data] task`.
pub const MAX_INFERRED_CLASSES: usize = 50;

/// The fields read as a missing value.
pub const MISSING: &[&str] = &["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"];

/// Whether `field` (trimmed) is a missing value.
pub fn is_missing(field: &str) -> bool {
    MISSING.contains(&field)
}

/// What a column holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ColumnType {
    /// Numbers.
    Numeric,
    /// `true` / `false`, encoded as 1 / 0.
    Boolean,
    /// Text, encoded as the index of its category.
    Categorical {
        /// The categories, sorted; a value's code is its index here.
        categories: Vec<String>,
    },
}

/// One feature column of a table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// The header's name.
    pub name: String,
    /// What it holds.
    #[serde(flatten)]
    pub kind: ColumnType,
    /// Missing values in the training data.
    #[serde(default)]
    pub missing: usize,
}

impl Column {
    /// `numeric`, `boolean` or `categorical`.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            ColumnType::Numeric => "numeric",
            ColumnType::Boolean => "boolean",
            ColumnType::Categorical { .. } => "categorical",
        }
    }
}

/// How to read a labelled table: `[data]` of the pipeline.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    /// The label column; the last column when absent.
    pub label: Option<String>,
    /// What to learn; inferred from the label when absent.
    pub task: Option<Task>,
    /// The feature columns, in this order; all but the label when absent.
    pub features: Option<Vec<String>>,
    /// Columns to leave out.
    pub drop: Vec<String>,
    /// Columns read as categories even when they hold numbers.
    pub categorical: Vec<String>,
    /// The field delimiter (`,` when absent).
    pub delimiter: Option<u8>,
    /// Class names in index order; orders text labels.
    pub class_names: Option<Vec<String>>,
}

/// Rows of features with a label each: a class or a continuous target.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Where it came from.
    pub path: PathBuf,
    /// Feature column names, in order.
    pub feature_names: Vec<String>,
    /// The feature columns' types.
    pub schema: Vec<Column>,
    /// The label column's name.
    pub label_name: String,
    /// What is learned.
    pub task: Task,
    /// Features, row-major, `rows × feature_names.len()`; missing values NaN.
    pub x: Vec<f32>,
    /// Class index of each row (classification; empty for regression).
    pub y: Vec<u32>,
    /// Target of each row (regression; empty for classification).
    pub targets: Vec<f32>,
    /// Class names by index: learned from text labels, or declared.
    pub class_names: Option<Vec<String>>,
}

impl Dataset {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        match self.task {
            Task::Classification => self.y.len(),
            Task::Regression => self.targets.len(),
        }
    }

    /// Number of feature columns.
    pub fn features(&self) -> usize {
        self.feature_names.len()
    }

    /// Classification: the number of classes (one more than the largest
    /// label, or the class names' count when larger); regression: the number
    /// of targets.
    pub fn classes(&self) -> u32 {
        match self.task {
            Task::Classification => {
                let seen = self.y.iter().max().map_or(0, |m| m + 1);
                let named = self.class_names.as_ref().map_or(0, |n| n.len() as u32);
                seen.max(named)
            }
            Task::Regression => 1,
        }
    }

    /// The label of each row as an f32: class index or target.
    pub fn label_values(&self) -> Vec<f32> {
        match self.task {
            Task::Classification => self.y.iter().map(|&c| c as f32).collect(),
            Task::Regression => self.targets.clone(),
        }
    }

    /// Feature columns holding missing values or categories, which a
    /// preprocessor must turn into finite numbers.
    pub fn needs_encoding(&self) -> impl Iterator<Item = &Column> {
        self.schema
            .iter()
            .filter(|c| c.missing > 0 || matches!(c.kind, ColumnType::Categorical { .. }))
    }
}

/// Rows of features without labels (prediction input).
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    /// Column names (`x0`, `x1`, … for JSON input).
    pub names: Vec<String>,
    /// Row-major values; missing values NaN.
    pub x: Vec<f32>,
    /// Number of rows.
    pub rows: usize,
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

/// A CSV reader positioned after the header, and the header.
fn open_csv(path: &Path, delimiter: u8) -> Result<(csv::Reader<std::fs::File>, Vec<String>)> {
    let file = std::fs::File::open(path).map_err(|e| RuntimeError::io(path, e))?;
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

fn csv_err(path: &Path, e: csv::Error, width: usize) -> RuntimeError {
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

/// Calls `row(line, fields)` for each data row of the CSV after the header.
fn each_row(
    reader: &mut csv::Reader<std::fs::File>,
    path: &Path,
    width: usize,
    mut row: impl FnMut(usize, &csv::StringRecord) -> Result<()>,
) -> Result<usize> {
    let mut record = csv::StringRecord::new();
    let mut rows = 0;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_err(path, e, width)),
        }
        // A blank line: the csv crate gives one empty field for it.
        if record.len() == 1 && record[0].is_empty() && width > 1 {
            continue;
        }
        let line = record.position().map_or(0, |p| p.line() as usize);
        row(line, &record)?;
        rows += 1;
    }
    Ok(rows)
}

/// What the first pass learns about one column.
#[derive(Default)]
struct Seen {
    /// A present value that is not a number, and where.
    text: Option<(usize, String)>,
    /// A present value that is not `true`/`false`.
    not_bool: bool,
    /// Present values.
    present: usize,
    /// Missing values, and the first one's line.
    missing: usize,
    first_missing: Option<usize>,
    /// Distinct values, while few enough to be classes (the label).
    distinct: Option<BTreeSet<String>>,
    /// A number that is not a whole number ≥ 0, and where (the label).
    not_index: Option<(usize, String)>,
}

const DISTINCT_CAP: usize = 1 << 16;

impl Seen {
    fn see(&mut self, line: usize, field: &str, label: bool) {
        if is_missing(field) {
            self.missing += 1;
            self.first_missing.get_or_insert(line);
            return;
        }
        self.present += 1;
        if parse_bool(field).is_none() {
            self.not_bool = true;
        }
        match field.parse::<f64>() {
            Ok(v) => {
                if label && self.not_index.is_none() && !(v >= 0.0 && v.fract() == 0.0 && v < 4e9) {
                    self.not_index = Some((line, field.to_string()));
                }
            }
            Err(_) => {
                if self.text.is_none() {
                    self.text = Some((line, field.to_string()));
                }
            }
        }
        if label && let Some(d) = &mut self.distinct {
            if d.len() >= DISTINCT_CAP {
                self.distinct = None;
            } else if !d.contains(field) {
                d.insert(field.to_string());
            }
        }
    }
}

fn parse_bool(field: &str) -> Option<bool> {
    match field {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn column_index(path: &Path, header: &[String], name: &str, what: &str) -> Result<usize> {
    header.iter().position(|h| h == name).ok_or_else(|| {
        data_err(
            path,
            Some(1),
            None,
            format!(
                "there is no {what} column `{name}`; the columns are: {}",
                header.join(", ")
            ),
        )
    })
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

/// The delimiter of `path`: the given one, or a tab for `.tsv`, or a comma.
fn delimiter_for(path: &Path, given: Option<u8>) -> u8 {
    given.unwrap_or_else(|| {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("tsv"))
        {
            b'\t'
        } else {
            b','
        }
    })
}

/// Loads a labelled CSV with the default [`Options`] but for the label
/// column (the last column when `None`).
pub fn load_labeled(path: &Path, label: Option<&str>) -> Result<Dataset> {
    load(
        path,
        &Options {
            label: label.map(str::to_string),
            ..Options::default()
        },
    )
}

/// How the label column is encoded.
enum LabelKind {
    /// Class names; a label's class is its index.
    Names(HashMap<String, u32>),
    /// Whole numbers ≥ 0, the class indices themselves.
    Indices,
    /// Continuous targets.
    Targets,
}

/// Loads a labelled CSV as `opts` says (see the module docs).
pub fn load(path: &Path, opts: &Options) -> Result<Dataset> {
    let delimiter = delimiter_for(path, opts.delimiter);
    let (mut reader, header) = open_csv(path, delimiter)?;
    let width = header.len();
    if width < 2 {
        return Err(data_err(
            path,
            Some(1),
            None,
            "needs at least one feature column and a label column".into(),
        ));
    }
    let label_col = match &opts.label {
        None => width - 1,
        Some(name) => column_index(path, &header, name, "label")?,
    };
    let label_name = header[label_col].clone();
    let mut feats: Vec<usize> = match &opts.features {
        Some(names) => names
            .iter()
            .map(|n| column_index(path, &header, n, "feature"))
            .collect::<Result<_>>()?,
        None => (0..width).filter(|&c| c != label_col).collect(),
    };
    if feats.contains(&label_col) {
        return Err(data_err(
            path,
            Some(1),
            Some(label_col + 1),
            format!(
                "`{label_name}` is the label column and cannot also be a feature; remove it \
                 from [data] features"
            ),
        ));
    }
    for d in &opts.drop {
        let c = column_index(path, &header, d, "`drop`ped")?;
        if c == label_col {
            return Err(data_err(
                path,
                Some(1),
                Some(c + 1),
                format!("`{d}` is the label column and cannot be dropped"),
            ));
        }
        feats.retain(|&f| f != c);
    }
    for name in &opts.categorical {
        let c = column_index(path, &header, name, "categorical")?;
        if !feats.contains(&c) {
            return Err(data_err(
                path,
                Some(1),
                Some(c + 1),
                format!("`{name}` is declared categorical but is not a feature column"),
            ));
        }
    }
    if feats.is_empty() {
        return Err(data_err(
            path,
            Some(1),
            None,
            "no feature columns are left (see [data] features and drop)".into(),
        ));
    }

    // Pass 1: what each column holds.
    let mut seen: Vec<Seen> = (0..width)
        .map(|c| Seen {
            distinct: (c == label_col).then(BTreeSet::new),
            ..Seen::default()
        })
        .collect();
    let rows = each_row(&mut reader, path, width, |line, rec| {
        for &c in feats.iter().chain([&label_col]) {
            seen[c].see(line, &rec[c], c == label_col);
        }
        Ok(())
    })?;
    if rows == 0 {
        return Err(data_err(
            path,
            None,
            None,
            "the file has a header but no data rows".into(),
        ));
    }
    let ls = &seen[label_col];
    if let Some(line) = ls.first_missing {
        return Err(data_err(
            path,
            Some(line),
            Some(label_col + 1),
            format!(
                "the label column `{label_name}` has a missing value ({} rows in all); drop \
                 those rows or fill them in",
                ls.missing
            ),
        ));
    }
    let (task, labels) = label_kind(path, opts, &label_name, label_col, ls)?;
    let mut schema: Vec<Column> = feats
        .iter()
        .map(|&c| {
            let s = &seen[c];
            let name = header[c].clone();
            let kind = if opts.categorical.contains(&name) {
                ColumnType::Categorical { categories: vec![] }
            } else if s.present > 0 && !s.not_bool {
                ColumnType::Boolean
            } else if s.text.is_some() {
                ColumnType::Categorical { categories: vec![] }
            } else {
                ColumnType::Numeric
            };
            Column {
                name,
                kind,
                missing: s.missing,
            }
        })
        .collect();

    // Pass 2: encode. Categories get codes in the order first seen, then
    // are renumbered in sorted order.
    let (mut reader, _) = open_csv(path, delimiter)?;
    let w = feats.len();
    let mut codes: Vec<HashMap<String, u32>> = vec![HashMap::new(); w];
    let mut x = Vec::with_capacity(rows * w);
    let (mut y, mut targets) = (Vec::new(), Vec::new());
    let changed = |line: usize, c: usize| {
        data_err(
            path,
            Some(line),
            Some(c + 1),
            "the file changed while it was read; read it again".into(),
        )
    };
    each_row(&mut reader, path, width, |line, rec| {
        for (j, &c) in feats.iter().enumerate() {
            let f = &rec[c];
            let v = if is_missing(f) {
                f32::NAN
            } else {
                match &schema[j].kind {
                    ColumnType::Numeric => number(path, line, c, &header[c], f)?,
                    ColumnType::Boolean => match parse_bool(f) {
                        Some(b) => f32::from(u8::from(b)),
                        None => return Err(changed(line, c)),
                    },
                    ColumnType::Categorical { .. } => {
                        let m = &mut codes[j];
                        let next = m.len() as u32;
                        *m.entry(f.to_string()).or_insert(next) as f32
                    }
                }
            };
            x.push(v);
        }
        let f = &rec[label_col];
        match &labels {
            LabelKind::Names(names) => match names.get(f) {
                Some(&i) => y.push(i),
                None => {
                    let known: Vec<&str> = opts
                        .class_names
                        .iter()
                        .flatten()
                        .map(String::as_str)
                        .collect();
                    return Err(data_err(
                        path,
                        Some(line),
                        Some(label_col + 1),
                        format!(
                            "label `{f}` in column `{label_name}` is not one of [data] \
                             class_names ({}); add it there",
                            known.join(", ")
                        ),
                    ));
                }
            },
            LabelKind::Indices => match f.parse::<f64>() {
                Ok(v) => y.push(v as u32),
                Err(_) => return Err(changed(line, label_col)),
            },
            LabelKind::Targets => targets.push(number(path, line, label_col, &label_name, f)?),
        }
        Ok(())
    })?;
    for (j, col) in schema.iter_mut().enumerate() {
        if let ColumnType::Categorical { categories } = &mut col.kind {
            let mut sorted: Vec<(&String, u32)> = codes[j].iter().map(|(k, &v)| (k, v)).collect();
            sorted.sort();
            let mut renumber = vec![0f32; sorted.len()];
            for (new, (_, old)) in sorted.iter().enumerate() {
                renumber[*old as usize] = new as f32;
            }
            *categories = sorted.into_iter().map(|(k, _)| k.clone()).collect();
            for v in x.iter_mut().skip(j).step_by(w) {
                if !v.is_nan() {
                    *v = renumber[*v as usize];
                }
            }
        }
    }
    let class_names = match labels {
        LabelKind::Names(names) => {
            let mut by_index = vec![String::new(); names.len()];
            for (n, i) in names {
                by_index[i as usize] = n;
            }
            Some(by_index)
        }
        _ => opts.class_names.clone(),
    };
    Ok(Dataset {
        path: path.to_path_buf(),
        feature_names: schema.iter().map(|c| c.name.clone()).collect(),
        schema,
        label_name,
        task,
        x,
        y,
        targets,
        class_names,
    })
}

/// The task, and how labels are encoded, from `[data]` and the label column.
fn label_kind(
    path: &Path,
    opts: &Options,
    name: &str,
    col: usize,
    seen: &Seen,
) -> Result<(Task, LabelKind)> {
    let at = |line: usize, message: String| data_err(path, Some(line), Some(col + 1), message);
    let names = |distinct: Option<&BTreeSet<String>>| -> Result<LabelKind> {
        let order: Vec<String> = match (&opts.class_names, distinct) {
            (Some(declared), _) => declared.clone(),
            (None, Some(d)) => d.iter().cloned().collect(),
            (None, None) => {
                return Err(data_err(
                    path,
                    Some(1),
                    Some(col + 1),
                    format!(
                        "the label column `{name}` holds more than {DISTINCT_CAP} distinct \
                         values, too many to be classes"
                    ),
                ));
            }
        };
        Ok(LabelKind::Names(
            order.into_iter().zip(0u32..).collect::<HashMap<_, _>>(),
        ))
    };
    match (opts.task, &seen.text) {
        (Some(Task::Regression), Some((line, v))) => Err(at(
            *line,
            format!(
                "label `{v}` in column `{name}` is not a number; regression needs numeric \
                 targets (declare [data] task = \"classification\" for classes)"
            ),
        )),
        (Some(Task::Regression), None) => Ok((Task::Regression, LabelKind::Targets)),
        (_, Some(_)) => Ok((Task::Classification, names(seen.distinct.as_ref())?)),
        (Some(Task::Classification), None) => match &seen.not_index {
            Some((line, v)) => Err(at(
                *line,
                format!(
                    "label `{v}` in column `{name}` is not a class index (a whole number >= 0)"
                ),
            )),
            None => Ok((Task::Classification, LabelKind::Indices)),
        },
        (None, None) => {
            if let Some((line, v)) = &seen.not_index {
                return Err(at(
                    *line,
                    format!(
                        "label `{v}` in column `{name}` is not a class index (a whole number \
                         >= 0); for a continuous target declare [data] task = \"regression\""
                    ),
                ));
            }
            let distinct = seen.distinct.as_ref().map_or(usize::MAX, BTreeSet::len);
            if distinct > MAX_INFERRED_CLASSES {
                let shown = if distinct == usize::MAX {
                    format!("more than {DISTINCT_CAP}")
                } else {
                    distinct.to_string()
                };
                return Err(data_err(
                    path,
                    Some(1),
                    Some(col + 1),
                    format!(
                        "the label column `{name}` holds {shown} distinct whole numbers, more \
                         than the {MAX_INFERRED_CLASSES} taken as classes unless declared; \
                         declare [data] task = \"regression\" for a continuous target, or \
                         task = \"classification\" if they are class indices"
                    ),
                ));
            }
            Ok((Task::Classification, LabelKind::Indices))
        }
    }
}

/// Loads prediction input: a CSV with a header, or a JSON array of rows
/// (`[[5.1, 3.5, 1.4, 0.2], …]`, `null` for a missing value) when the file
/// name ends in `.json`. With a `schema` (a model's), the CSV's columns of
/// those names are read in the schema's order and encoded as in training,
/// other columns (the label) ignored; without one, every column but
/// `drop_column` is read as numbers.
pub fn load_features(
    path: &Path,
    drop_column: Option<&str>,
    schema: Option<&[Column]>,
) -> Result<Features> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        return load_json(path);
    }
    let (mut reader, header) = open_csv(path, delimiter_for(path, None))?;
    let numeric;
    let columns: &[Column] = match schema {
        Some(s) => s,
        None => {
            numeric = header
                .iter()
                .filter(|h| Some(h.as_str()) != drop_column)
                .map(|h| Column {
                    name: h.clone(),
                    kind: ColumnType::Numeric,
                    missing: 0,
                })
                .collect::<Vec<_>>();
            &numeric
        }
    };
    let at: Vec<usize> = columns
        .iter()
        .map(|c| {
            header.iter().position(|h| *h == c.name).ok_or_else(|| {
                data_err(
                    path,
                    Some(1),
                    None,
                    format!(
                        "the model needs column `{}`, and the file has only: {}",
                        c.name,
                        header.join(", ")
                    ),
                )
            })
        })
        .collect::<Result<_>>()?;
    let lookup: Vec<Option<HashMap<&str, u32>>> = columns
        .iter()
        .map(|c| match &c.kind {
            ColumnType::Categorical { categories } => {
                Some(categories.iter().map(String::as_str).zip(0u32..).collect())
            }
            _ => None,
        })
        .collect();
    let mut x = Vec::new();
    let rows = each_row(&mut reader, path, header.len(), |line, rec| {
        for ((col, &c), lookup) in columns.iter().zip(&at).zip(&lookup) {
            x.push(
                encode(&rec[c], col, lookup.as_ref())
                    .map_err(|m| data_err(path, Some(line), Some(c + 1), m))?,
            );
        }
        Ok(())
    })?;
    if rows == 0 {
        return Err(data_err(
            path,
            None,
            None,
            "the file has a header but no data rows".into(),
        ));
    }
    Ok(Features {
        names: columns.iter().map(|c| c.name.clone()).collect(),
        x,
        rows,
    })
}

/// The labels of a table for a trained model: column `label` read as the
/// model's task says, text classes by `class_names` (or class indices), and
/// regression targets as numbers. For `tensorlet eval`.
pub fn load_labels(
    path: &Path,
    label: &str,
    task: Task,
    class_names: Option<&[String]>,
) -> Result<crate::train::Labels> {
    let (mut reader, header) = open_csv(path, delimiter_for(path, None))?;
    let col = column_index(path, &header, label, "label")?;
    let by_name: HashMap<&str, u32> = class_names
        .into_iter()
        .flatten()
        .map(String::as_str)
        .zip(0u32..)
        .collect();
    let classes = class_names.map_or(0, <[String]>::len);
    let (mut y, mut t) = (Vec::new(), Vec::new());
    each_row(&mut reader, path, header.len(), |line, rec| {
        let f = &rec[col];
        let at = |m: String| data_err(path, Some(line), Some(col + 1), m);
        if is_missing(f) {
            return Err(at(format!(
                "the label column `{label}` has a missing value"
            )));
        }
        match task {
            Task::Regression => t.push(number(path, line, col, label, f)?),
            Task::Classification => match by_name.get(f) {
                Some(&i) => y.push(i),
                None => match f.parse::<u32>() {
                    Ok(i) if classes == 0 || (i as usize) < classes => y.push(i),
                    _ => {
                        let known: Vec<&str> = by_name.keys().copied().collect();
                        return Err(at(format!(
                            "label `{f}` in column `{label}` is not a class of the model{}",
                            if known.is_empty() {
                                String::new()
                            } else {
                                let mut k = known;
                                k.sort_by_key(|n| by_name[n]);
                                format!(" ({})", k.join(", "))
                            }
                        )));
                    }
                },
            },
        }
        Ok(())
    })?;
    Ok(match task {
        Task::Classification => crate::train::Labels::Classes(y),
        Task::Regression => crate::train::Labels::Targets(t),
    })
}

/// One field of a prediction input as its column was encoded in training:
/// missing → NaN, an unknown category → -1.
pub fn encode(
    field: &str,
    col: &Column,
    lookup: Option<&HashMap<&str, u32>>,
) -> Result<f32, String> {
    let field = field.trim();
    if is_missing(field) {
        return Ok(f32::NAN);
    }
    match &col.kind {
        ColumnType::Numeric => match field.parse::<f32>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(format!(
                "`{field}` in column `{}` is not a finite number (the model reads it as numeric)",
                col.name
            )),
        },
        ColumnType::Boolean => parse_bool(field).map(|b| f32::from(u8::from(b))).ok_or_else(|| {
            format!(
                "`{field}` in column `{}` is not `true` or `false` (the model reads it as boolean)",
                col.name
            )
        }),
        ColumnType::Categorical { categories } => Ok(match lookup {
            Some(l) => l.get(field).map_or(-1.0, |&i| i as f32),
            None => categories
                .iter()
                .position(|c| c == field)
                .map_or(-1.0, |i| i as f32),
        }),
    }
}

fn load_json(path: &Path) -> Result<Features> {
    let text = std::fs::read_to_string(path).map_err(|e| RuntimeError::io(path, e))?;
    let rows: Vec<Vec<serde_json::Value>> = serde_json::from_str(&text).map_err(|e| {
        data_err(
            path,
            Some(e.line()),
            Some(e.column()),
            format!("expected a JSON array of rows of numbers (null for a missing value): {e}"),
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
                None if v.is_null() => x.push(f32::NAN),
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

    fn err_with(content: &str, opts: &Options) -> String {
        let f = file(content);
        let e = load(f.path(), opts).unwrap_err().to_string();
        e.strip_prefix(&f.path().display().to_string())
            .unwrap()
            .to_string()
    }

    fn err(content: &str, label: Option<&str>) -> String {
        err_with(
            content,
            &Options {
                label: label.map(str::to_string),
                ..Options::default()
            },
        )
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
        assert_eq!(d.task, Task::Classification);
        let named = load_labeled(f.path(), Some("a")).unwrap();
        assert_eq!(named.y, [1, 3]);
        assert_eq!(named.feature_names, ["b", "label"]);
    }

    #[test]
    fn reads_quotes_delimiters_and_a_bom() {
        let f = file("\u{feff}name,\"x, y\",label\n\"Smith, J\",\"1\",a\n\"O\"\"Neil\",2,b\n");
        let d = load_labeled(f.path(), None).unwrap();
        assert_eq!(d.feature_names, ["name", "x, y"]);
        assert_eq!(d.rows(), 2);
        assert_eq!(
            d.schema[0].kind,
            ColumnType::Categorical {
                categories: vec!["O\"Neil".into(), "Smith, J".into()]
            }
        );
        assert_eq!(d.x, [1.0, 1.0, 0.0, 2.0]);
        let t = file("a;b;y\n1,5;2;0\n");
        let opts = Options {
            delimiter: Some(b';'),
            categorical: vec!["a".into()],
            ..Options::default()
        };
        let d = load(t.path(), &opts).unwrap();
        assert_eq!(d.x, [0.0, 2.0]);
        assert_eq!(d.schema[1].type_name(), "numeric");
    }

    #[test]
    fn string_labels_become_sorted_classes_or_declared_ones() {
        let f = file("x,species\n1,virginica\n2,setosa\n3,versicolor\n4,setosa\n");
        let d = load_labeled(f.path(), None).unwrap();
        assert_eq!(
            d.class_names.as_deref().unwrap(),
            ["setosa", "versicolor", "virginica"]
        );
        assert_eq!(d.y, [2, 0, 1, 0]);
        let declared = Options {
            class_names: Some(vec![
                "virginica".into(),
                "versicolor".into(),
                "setosa".into(),
            ]),
            ..Options::default()
        };
        assert_eq!(load(f.path(), &declared).unwrap().y, [0, 2, 1, 2]);
        let short = Options {
            class_names: Some(vec!["setosa".into(), "versicolor".into()]),
            ..Options::default()
        };
        assert_eq!(
            err_with(
                "x,species\n1,virginica\n2,setosa\n3,versicolor\n4,setosa\n",
                &short
            ),
            ":2:2: label `virginica` in column `species` is not one of [data] class_names \
             (setosa, versicolor); add it there"
        );
    }

    #[test]
    fn a_continuous_target_must_be_declared() {
        let mut csv = String::from("x,target\n");
        for i in 0..60 {
            csv.push_str(&format!("{i},{}\n", 100 + i * 3));
        }
        assert_eq!(
            err(&csv, None),
            ":1:2: the label column `target` holds 60 distinct whole numbers, more than the 50 \
             taken as classes unless declared; declare [data] task = \"regression\" for a \
             continuous target, or task = \"classification\" if they are class indices"
        );
        assert_eq!(
            err("x,y\n1,0.5\n", None),
            ":2:2: label `0.5` in column `y` is not a class index (a whole number >= 0); for a \
             continuous target declare [data] task = \"regression\""
        );
        let f = file(&csv);
        let regression = Options {
            task: Some(Task::Regression),
            ..Options::default()
        };
        let d = load(f.path(), &regression).unwrap();
        assert_eq!(d.task, Task::Regression);
        assert_eq!((d.rows(), d.targets[1], d.classes()), (60, 103.0, 1));
        assert!(d.y.is_empty());
        assert_eq!(
            err_with("x,y\n1,a\n", &regression),
            ":2:2: label `a` in column `y` is not a number; regression needs numeric targets \
             (declare [data] task = \"classification\" for classes)"
        );
    }

    #[test]
    fn missing_values_booleans_and_column_selection() {
        let f = file("a,b,c,flag,y\n1,,x,true,0\nNA,2,,False,1\nnull,NaN,x,TRUE,1\n");
        let d = load_labeled(f.path(), None).unwrap();
        assert_eq!(
            d.schema.iter().map(Column::type_name).collect::<Vec<_>>(),
            ["numeric", "numeric", "categorical", "boolean"]
        );
        assert_eq!(
            d.schema.iter().map(|c| c.missing).collect::<Vec<_>>(),
            [2, 2, 1, 0]
        );
        let bits: Vec<String> = d.x.iter().map(|v| format!("{v}")).collect();
        assert_eq!(
            bits,
            [
                "1", "NaN", "0", "1", "NaN", "2", "NaN", "0", "NaN", "NaN", "0", "1"
            ]
        );
        assert_eq!(
            d.needs_encoding()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        let picked = Options {
            features: Some(vec!["flag".into(), "b".into()]),
            ..Options::default()
        };
        assert_eq!(
            load(f.path(), &picked).unwrap().feature_names,
            ["flag", "b"]
        );
        let dropped = Options {
            drop: vec!["c".into(), "a".into()],
            ..Options::default()
        };
        assert_eq!(
            load(f.path(), &dropped).unwrap().feature_names,
            ["b", "flag"]
        );
        assert_eq!(
            err("a,y\n1,\n", None),
            ":2:2: the label column `y` has a missing value (1 rows in all); drop those rows or \
             fill them in"
        );
        let unknown = Options {
            features: Some(vec!["nope".into()]),
            ..Options::default()
        };
        assert_eq!(
            err_with("a,y\n1,0\n", &unknown),
            ":1: there is no feature column `nope`; the columns are: a, y"
        );
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
            ":3: expected 3 columns as in the header, found 2 (a field holding the delimiter \
             must be quoted: \"a,b\")"
        );
        assert_eq!(
            err("a,b,c\n1,inf,0\n", None),
            ":2:2: `inf` in column `b` is not a finite number"
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
        assert_eq!(
            err("a,a,y\n1,2,0\n", None),
            ":1:2: the header names column `a` twice (columns 1 and 2)"
        );
    }

    #[test]
    fn features_follow_the_model_schema() {
        let train = file("color,size,y\nred,1,0\nblue,2,1\n");
        let d = load_labeled(train.path(), None).unwrap();
        let input = file("size,y,color\n3,0,blue\n4,1,green\nNA,0,red\n");
        let feats = load_features(input.path(), Some("y"), Some(&d.schema)).unwrap();
        assert_eq!(feats.names, ["color", "size"]);
        let bits: Vec<String> = feats.x.iter().map(|v| format!("{v}")).collect();
        assert_eq!(bits, ["0", "3", "-1", "4", "1", "NaN"]);
        let bad = file("color,size\nred,big\n");
        let e = load_features(bad.path(), None, Some(&d.schema))
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with(":2:2: `big` in column `size` is not a finite number (the model reads it as numeric)"),
            "{e}"
        );
        let missing = file("size\n1\n");
        let e = load_features(missing.path(), None, Some(&d.schema))
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("the model needs column `color`, and the file has only: size"),
            "{e}"
        );
    }

    #[test]
    fn features_drop_the_label_and_read_json() {
        let f = file("a,b,y\n1,2,0\n3,4,1\n");
        let feats = load_features(f.path(), Some("y"), None).unwrap();
        assert_eq!((feats.rows, feats.x.clone()), (2, vec![1.0, 2.0, 3.0, 4.0]));
        let j = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
        std::fs::write(j.path(), "[[1, 2.5], [3, null]]").unwrap();
        let feats = load_features(j.path(), None, None).unwrap();
        assert_eq!(feats.x[..3], [1.0, 2.5, 3.0]);
        assert!(feats.x[3].is_nan());
        std::fs::write(j.path(), "[[1, 2], [3]]").unwrap();
        assert!(load_features(j.path(), None, None).is_err());
    }
}
