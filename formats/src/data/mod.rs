//! Tables as people have them: CSV (RFC 4180 quoting through the `csv`
//! crate, any one-byte delimiter, a UTF-8 byte-order mark), Parquet (through
//! the Apache Arrow `parquet` crate, typed columns) and JSON lines (one
//! object per line); JSON rows for prediction input. The format follows the
//! file name: `.parquet`/`.pq`, `.jsonl`/`.ndjson`, else CSV (a tab for
//! `.tsv`).
//!
//! A table is read in two passes. The first infers each column's type —
//! numeric, boolean (`true`/`false`) or categorical (any other text) — and
//! what the label column holds; the second encodes every feature as an f32:
//! a number as itself, a boolean as 0 or 1, a category as its index among
//! the column's categories (sorted, learned from the training data and
//! recorded in the model), and a missing value (an empty field, `NA`, `N/A`,
//! `NaN`, `nan`, `null`, `NULL`, `None`; a null or NaN in Parquet and JSON)
//! as NaN. At prediction time a category the training data did not have is
//! encoded as -1.
//!
//! The label decides the task unless `[data] task` declares it: text labels
//! are classes (their names learned from the data, sorted, unless
//! `class_names` orders them); whole numbers ≥ 0 with at most
//! [`MAX_INFERRED_CLASSES`] distinct values are class indices; anything else
//! must be declared, so a continuous target is never trained as hundreds of
//! classes. Errors name the file, the line (CSV, JSON lines) or row
//! (Parquet) and the column.

mod csv;
mod jsonl;
mod parquet;

pub use self::csv::parse_delimiter;

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::task::Task;
use crate::{Error, Result};

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
    /// Further target columns after `label`, for a regression with several
    /// targets.
    pub more_targets: Vec<String>,
    /// What to learn; inferred from the label when absent.
    pub task: Option<Task>,
    /// The feature columns, in this order; all but the label when absent.
    pub features: Option<Vec<String>>,
    /// Columns to leave out.
    pub drop: Vec<String>,
    /// Columns read as categories even when they hold numbers.
    pub categorical: Vec<String>,
    /// The CSV field delimiter (`,` when absent, a tab for `.tsv`).
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
    /// The label column's name (regression: the first target's).
    pub label_name: String,
    /// Regression: every target column's name, the label's first;
    /// classification: empty.
    pub target_names: Vec<String>,
    /// What is learned.
    pub task: Task,
    /// Features, row-major, `rows × feature_names.len()`; missing values NaN.
    pub x: Vec<f32>,
    /// Class index of each row (classification; empty for regression).
    pub y: Vec<u32>,
    /// Targets of each row, row-major `rows × target_names.len()`
    /// (regression; empty for classification).
    pub targets: Vec<f32>,
    /// Class names by index: learned from text labels, or declared.
    pub class_names: Option<Vec<String>>,
}

impl Dataset {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        match self.task {
            Task::Classification => self.y.len(),
            Task::Regression => self.targets.len() / self.target_names.len().max(1),
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
            Task::Regression => self.target_names.len().max(1) as u32,
        }
    }

    /// The label of each row as an f32: class index or targets (row-major,
    /// [`Dataset::classes`] per row).
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

fn data_err(path: &Path, line: Option<usize>, column: Option<usize>, message: String) -> Error {
    Error::Data {
        path: path.to_path_buf(),
        line,
        column,
        message,
    }
}

/// A table with columns but no rows.
fn no_rows(path: &Path) -> Error {
    data_err(
        path,
        None,
        None,
        "the file has a header but no data rows".into(),
    )
}

/// One field of a row as a reader gives it: CSV gives text, Parquet and
/// JSON lines give typed values.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Field<'a> {
    /// A null (text fields in [`MISSING`] are missing too).
    Missing,
    Text(&'a str),
    Number(f64),
    Bool(bool),
}

impl<'a> Field<'a> {
    /// The field with text in [`MISSING`] as [`Field::Missing`].
    fn normal(self) -> Field<'a> {
        match self {
            Field::Text(t) if is_missing(t) => Field::Missing,
            f => f,
        }
    }

    /// The field as text: a category's name, a class label.
    fn text(&self) -> Cow<'a, str> {
        match *self {
            Field::Missing => Cow::Borrowed(""),
            Field::Text(t) => Cow::Borrowed(t),
            Field::Number(v) => Cow::Owned(format!("{v}")),
            Field::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
        }
    }

    /// The field as a number, when it is one.
    fn number(&self) -> Option<f64> {
        match *self {
            Field::Number(v) => Some(v),
            Field::Text(t) => t.parse().ok(),
            _ => None,
        }
    }

    /// The field as an f32, when it is a number: text is parsed straight to
    /// f32 (one rounding, as every CSV number has always been read).
    fn number_f32(&self) -> Option<f32> {
        match *self {
            Field::Number(v) => Some(v as f32),
            Field::Text(t) => t.parse().ok(),
            _ => None,
        }
    }

    /// The field as a boolean, when it is one.
    fn boolean(&self) -> Option<bool> {
        match *self {
            Field::Bool(b) => Some(b),
            Field::Text(t) => parse_bool(t),
            _ => None,
        }
    }
}

/// One column of a batch of rows from a source that reads columns
/// (Parquet).
enum Cells<'a, 'f> {
    /// Numbers; NaN is a missing value.
    Numbers(&'a [f64]),
    /// Single-precision numbers; NaN is a missing value.
    Floats(&'a [f32]),
    /// Any other column, a field at a time.
    Fields(&'a dyn Fn(usize) -> Field<'f>),
}

impl<'f> Cells<'_, 'f> {
    fn get(&self, i: usize) -> Field<'f> {
        match self {
            Cells::Numbers(v) if v[i].is_nan() => Field::Missing,
            Cells::Numbers(v) => Field::Number(v[i]),
            Cells::Floats(v) if v[i].is_nan() => Field::Missing,
            Cells::Floats(v) => Field::Number(f64::from(v[i])),
            Cells::Fields(f) => f(i),
        }
    }
}

/// What [`Source::scan_batches`] calls with each batch: the first row's
/// position, the number of rows, the columns' cells.
type CellBatch<'c> = dyn FnMut(usize, usize, &[Cells<'_, '_>]) -> Result<()> + 'c;

/// A table a reader can scan, from the first data row, as often as needed.
trait Source {
    /// The column names, in the file's order.
    fn header(&self) -> &[String];
    /// Calls `row(position, fields)` for each data row, with the fields of
    /// `columns` (indices into the header) in that order; the position is
    /// what [`Source::err_at`] takes. Returns the number of rows.
    fn scan(
        &self,
        columns: &[usize],
        row: &mut dyn FnMut(usize, &[Field<'_>]) -> Result<()>,
    ) -> Result<usize>;
    /// Calls `batch(position, rows, cells)` for each batch of rows, with
    /// the cells of `columns` in that order and the position of the batch's
    /// first row (the next rows' are the following numbers); `None` when the
    /// source reads a row at a time (use [`Source::scan`]). Returns the
    /// number of rows.
    fn scan_batches(
        &self,
        _columns: &[usize],
        _batch: &mut CellBatch<'_>,
    ) -> Option<Result<usize>> {
        None
    }
    /// An error at a row's position and a column (an index into the header).
    fn err_at(&self, position: usize, column: usize, message: String) -> Error;
    /// An error about the columns.
    fn header_err(&self, column: Option<usize>, message: String) -> Error;
}

/// The file format of `path`, by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Comma- (or otherwise) separated values.
    Csv,
    /// Apache Parquet.
    Parquet,
    /// One JSON object per line.
    JsonLines,
}

impl Format {
    /// `.parquet`/`.pq` is Parquet, `.jsonl`/`.ndjson` JSON lines, anything
    /// else CSV.
    pub fn of(path: &Path) -> Format {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("parquet" | "pq") => Format::Parquet,
            Some("jsonl" | "ndjson") => Format::JsonLines,
            _ => Format::Csv,
        }
    }

    /// `csv`, `parquet` or `jsonl`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Parquet => "parquet",
            Format::JsonLines => "jsonl",
        }
    }
}

/// Opens a table in the format its name says.
fn open(path: &Path, delimiter: Option<u8>) -> Result<Box<dyn Source>> {
    Ok(match Format::of(path) {
        Format::Parquet => Box::new(parquet::ParquetSource::open(path)?),
        Format::JsonLines => Box::new(jsonl::JsonlSource::open(path)?),
        Format::Csv => Box::new(csv::CsvSource::open(path, delimiter_for(path, delimiter))?),
    })
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
    /// Missing values, and the first one's position.
    missing: usize,
    first_missing: Option<usize>,
    /// Distinct values, while few enough to be classes (the label).
    distinct: Option<BTreeSet<String>>,
    /// A number that is not a whole number ≥ 0, and where (the label).
    not_index: Option<(usize, String)>,
}

const DISTINCT_CAP: usize = 1 << 16;

impl Seen {
    fn see(&mut self, at: usize, field: Field<'_>, label: bool) {
        if field == Field::Missing {
            self.missing += 1;
            self.first_missing.get_or_insert(at);
            return;
        }
        self.present += 1;
        if field.boolean().is_none() {
            self.not_bool = true;
        }
        match field.number() {
            Some(v) => {
                if label && self.not_index.is_none() && !(v >= 0.0 && v.fract() == 0.0 && v < 4e9) {
                    self.not_index = Some((at, field.text().into_owned()));
                }
            }
            None => {
                if self.text.is_none() {
                    self.text = Some((at, field.text().into_owned()));
                }
            }
        }
        if label && let Some(d) = &mut self.distinct {
            let t = field.text();
            if d.len() >= DISTINCT_CAP {
                self.distinct = None;
            } else if !d.contains(t.as_ref()) {
                d.insert(t.into_owned());
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

fn column_index(src: &dyn Source, name: &str, what: &str) -> Result<usize> {
    let header = src.header();
    header.iter().position(|h| h == name).ok_or_else(|| {
        src.header_err(
            None,
            format!(
                "there is no {what} column `{name}`; the columns are: {}",
                header.join(", ")
            ),
        )
    })
}

/// A field of a numeric column as a finite f32.
fn number(src: &dyn Source, at: usize, col: usize, field: Field<'_>) -> Result<f32> {
    let name = &src.header()[col];
    match field.number_f32() {
        Some(v) if v.is_finite() => Ok(v),
        Some(_) => Err(src.err_at(
            at,
            col,
            format!(
                "`{}` in column `{name}` is not a finite number",
                field.text()
            ),
        )),
        None => Err(src.err_at(
            at,
            col,
            format!("`{}` in column `{name}` is not a number", field.text()),
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

/// The columns of a table and what each holds, as `dataset add` records
/// them: every column, typed as training would type a feature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableSchema {
    /// `csv`, `parquet` or `jsonl`.
    pub format: String,
    /// Data rows.
    pub rows: usize,
    /// Every column in the file's order; a text column lists the first
    /// [`SCHEMA_CATEGORIES`] distinct values read, sorted.
    pub columns: Vec<Column>,
}

/// The most categories of a column [`schema`] lists.
pub const SCHEMA_CATEGORIES: usize = 100;

/// Reads every column of a table and infers its type: the schema
/// `dataset add` records.
pub fn schema(path: &Path, delimiter: Option<u8>) -> Result<TableSchema> {
    let src = open(path, delimiter)?;
    let width = src.header().len();
    let all: Vec<usize> = (0..width).collect();
    let mut seen: Vec<Seen> = (0..width).map(|_| Seen::default()).collect();
    let mut categories: Vec<BTreeSet<String>> = vec![BTreeSet::new(); width];
    let rows = src.scan(&all, &mut |at, fields| {
        for (c, f) in fields.iter().enumerate() {
            let f = f.normal();
            seen[c].see(at, f, false);
            if f != Field::Missing
                && f.number().is_none()
                && categories[c].len() < SCHEMA_CATEGORIES
            {
                categories[c].insert(f.text().into_owned());
            }
        }
        Ok(())
    })?;
    let columns = src
        .header()
        .iter()
        .zip(seen)
        .zip(categories)
        .map(|((name, s), cats)| Column {
            name: name.clone(),
            kind: inferred_type(&s, false, cats.into_iter().collect()),
            missing: s.missing,
        })
        .collect();
    Ok(TableSchema {
        format: Format::of(path).name().to_string(),
        rows,
        columns,
    })
}

/// A feature column's type from what the first pass saw.
fn inferred_type(s: &Seen, declared_categorical: bool, categories: Vec<String>) -> ColumnType {
    if declared_categorical {
        ColumnType::Categorical { categories }
    } else if s.present > 0 && !s.not_bool {
        ColumnType::Boolean
    } else if s.text.is_some() {
        ColumnType::Categorical { categories }
    } else {
        ColumnType::Numeric
    }
}

/// Loads a labelled table with the default [`Options`] but for the label
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

/// What the first pass over a labelled table learns: the columns read, the
/// task and how labels are encoded, and each feature's type (categories not
/// yet listed).
struct Plan {
    header: Vec<String>,
    /// Feature columns (indices into the header).
    feats: Vec<usize>,
    /// The label, then further targets.
    label_cols: Vec<usize>,
    /// `feats` then `label_cols`: the fields of each scanned row.
    scanned: Vec<usize>,
    label_name: String,
    task: Task,
    labels: LabelKind,
    schema: Vec<Column>,
    rows: usize,
    /// Classification by index: one more than the largest label.
    classes_seen: u32,
}

impl Plan {
    /// Class names by index: learned from text labels, or declared.
    fn class_names(&self, opts: &Options) -> Option<Vec<String>> {
        match &self.labels {
            LabelKind::Names(names) => {
                let mut by_index = vec![String::new(); names.len()];
                for (n, &i) in names {
                    by_index[i as usize] = n.clone();
                }
                Some(by_index)
            }
            _ => opts.class_names.clone(),
        }
    }

    /// The dataset's description with no rows in it.
    fn dataset(&self, path: &Path, opts: &Options) -> Dataset {
        Dataset {
            path: path.to_path_buf(),
            feature_names: self.schema.iter().map(|c| c.name.clone()).collect(),
            schema: self.schema.clone(),
            target_names: match self.task {
                Task::Regression => self
                    .label_cols
                    .iter()
                    .map(|&c| self.header[c].clone())
                    .collect(),
                Task::Classification => Vec::new(),
            },
            label_name: self.label_name.clone(),
            task: self.task,
            x: Vec::new(),
            y: Vec::new(),
            targets: Vec::new(),
            class_names: self.class_names(opts),
        }
    }

    /// Appends the label of a scanned row (its fields after the features):
    /// a class index to `y`, or the targets to `targets`.
    fn push_label(
        &self,
        src: &dyn Source,
        opts: &Options,
        at: usize,
        fields: &[Field<'_>],
        y: &mut Vec<u32>,
        targets: &mut Vec<f32>,
    ) -> Result<()> {
        let w = self.feats.len();
        let label_col = self.label_cols[0];
        let f = fields[w];
        match &self.labels {
            LabelKind::Names(names) => match names.get(f.text().as_ref()) {
                Some(&i) => y.push(i),
                None => {
                    let known: Vec<&str> = opts
                        .class_names
                        .iter()
                        .flatten()
                        .map(String::as_str)
                        .collect();
                    return Err(src.err_at(
                        at,
                        label_col,
                        format!(
                            "label `{}` in column `{}` is not one of [data] class_names ({}); \
                             add it there",
                            f.text(),
                            self.label_name,
                            known.join(", ")
                        ),
                    ));
                }
            },
            LabelKind::Indices => match f.number() {
                Some(v) => y.push(v as u32),
                None => return Err(changed(src, at, label_col)),
            },
            LabelKind::Targets => {
                for (j, &c) in self.label_cols.iter().enumerate() {
                    targets.push(number(src, at, c, fields[w + j])?);
                }
            }
        }
        Ok(())
    }
}

/// The error for a value the first pass did not see.
fn changed(src: &dyn Source, at: usize, c: usize) -> Error {
    src.err_at(
        at,
        c,
        "the file changed while it was read; read it again".into(),
    )
}

/// Loads a labelled table as `opts` says (see the module docs).
pub fn load(path: &Path, opts: &Options) -> Result<Dataset> {
    let opened = open(path, opts.delimiter)?;
    let src = opened.as_ref();
    let plan = plan(src, path, opts)?;
    let (feats, scanned, w, rows) = (&plan.feats, &plan.scanned, plan.feats.len(), plan.rows);
    let mut schema = plan.schema.clone();

    // Pass 2: encode. Categories get codes in the order first seen, then
    // are renumbered in sorted order.
    let mut codes: Vec<HashMap<String, u32>> = vec![HashMap::new(); w];
    let mut x = Vec::with_capacity(rows * w);
    let (mut y, mut targets) = (Vec::new(), Vec::new());
    src.scan(scanned, &mut |at, fields| {
        for (j, &c) in feats.iter().enumerate() {
            let f = fields[j].normal();
            let v = if f == Field::Missing {
                f32::NAN
            } else {
                match &schema[j].kind {
                    ColumnType::Numeric => number(src, at, c, f)?,
                    ColumnType::Boolean => match f.boolean() {
                        Some(b) => f32::from(u8::from(b)),
                        None => return Err(changed(src, at, c)),
                    },
                    ColumnType::Categorical { .. } => {
                        let m = &mut codes[j];
                        let next = m.len() as u32;
                        let t = f.text();
                        match m.get(t.as_ref()) {
                            Some(&code) => code as f32,
                            None => {
                                m.insert(t.into_owned(), next);
                                next as f32
                            }
                        }
                    }
                }
            };
            x.push(v);
        }
        plan.push_label(src, opts, at, fields, &mut y, &mut targets)
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
    Ok(Dataset {
        schema,
        x,
        y,
        targets,
        ..plan.dataset(path, opts)
    })
}

/// A labelled table read in chunks of rows, as often as needed, with memory
/// bounded by the chunk: what training reads when it streams. Opening it
/// reads the table once to learn what each column holds (as [`load`]'s first
/// pass) and, when there are categorical columns, once more for their
/// categories, so that every chunk is encoded exactly as [`load`] would
/// encode those rows.
pub struct Stream {
    src: Box<dyn Source>,
    plan: Plan,
    opts: Options,
    /// Each categorical feature's code by category.
    lookups: Vec<Option<HashMap<String, u32>>>,
    meta: Dataset,
}

/// Consecutive rows of a [`Stream`].
pub struct Chunk<'a> {
    /// The index of the chunk's first row in the table.
    pub first: usize,
    /// Features, row-major; missing values NaN.
    pub x: &'a [f32],
    /// Each row's class index as an f32 (classification) or its targets,
    /// row-major (regression): as [`Dataset::label_values`].
    pub labels: &'a [f32],
}

impl Chunk<'_> {
    /// Rows in the chunk.
    pub fn rows(&self, features: usize) -> usize {
        self.x.len() / features.max(1)
    }
}

impl Stream {
    /// Opens a table as `opts` says and reads what its columns hold.
    pub fn open(path: &Path, opts: &Options) -> Result<Stream> {
        let src = open(path, opts.delimiter)?;
        let mut plan = plan(src.as_ref(), path, opts)?;
        if plan.labels_are_indices() && plan.classes_seen == 0 {
            return Err(src.header_err(
                Some(plan.label_cols[0]),
                format!(
                    "the label column `{}` holds too many distinct values to stream as classes",
                    plan.label_name
                ),
            ));
        }
        // The categories, sorted, before any row is encoded.
        let cats: Vec<usize> = (0..plan.feats.len())
            .filter(|&j| matches!(plan.schema[j].kind, ColumnType::Categorical { .. }))
            .collect();
        let mut lookups = vec![None; plan.feats.len()];
        if !cats.is_empty() {
            let cols: Vec<usize> = cats.iter().map(|&j| plan.feats[j]).collect();
            let mut seen = vec![BTreeSet::new(); cats.len()];
            src.scan(&cols, &mut |_, fields| {
                for (k, f) in fields.iter().enumerate() {
                    let f = f.normal();
                    if f != Field::Missing && !seen[k].contains(f.text().as_ref()) {
                        seen[k].insert(f.text().into_owned());
                    }
                }
                Ok(())
            })?;
            for (&j, set) in cats.iter().zip(seen) {
                let categories: Vec<String> = set.into_iter().collect();
                lookups[j] = Some(categories.iter().cloned().zip(0u32..).collect());
                plan.schema[j].kind = ColumnType::Categorical { categories };
            }
        }
        let meta = plan.dataset(path, opts);
        Ok(Stream {
            src,
            plan,
            opts: opts.clone(),
            lookups,
            meta,
        })
    }

    /// The table's description: names, schema, task, class names; no rows.
    pub fn dataset(&self) -> &Dataset {
        &self.meta
    }

    /// Data rows.
    pub fn rows(&self) -> usize {
        self.plan.rows
    }

    /// As [`Dataset::classes`] for the whole table.
    pub fn classes(&self) -> u32 {
        match self.plan.task {
            Task::Classification => {
                let named = self.meta.class_names.as_ref().map_or(0, |n| n.len() as u32);
                self.plan.classes_seen.max(named)
            }
            Task::Regression => self.plan.label_cols.len() as u32,
        }
    }

    /// Reads the table from the top and calls `f` with each chunk of
    /// `chunk_rows` consecutive rows (the last may be shorter). An error of
    /// `f` stops the reading and is returned.
    pub fn for_each_chunk<E: From<Error>>(
        &self,
        chunk_rows: usize,
        f: &mut dyn FnMut(&Chunk<'_>) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let mut stopped: Option<E> = None;
        let read = self.read_chunks(chunk_rows, &mut |c| {
            f(c).map_err(|e| {
                stopped = Some(e);
                data_err(Path::new(""), None, None, "stopped".into())
            })
        });
        match (read, stopped) {
            (_, Some(e)) => Err(e),
            (r, None) => r.map_err(E::from),
        }
    }

    fn read_chunks(
        &self,
        chunk_rows: usize,
        f: &mut dyn FnMut(&Chunk<'_>) -> Result<()>,
    ) -> Result<()> {
        let src = self.src.as_ref();
        let plan = &self.plan;
        let w = plan.feats.len();
        let mut buf = ChunkBuffer {
            rows: chunk_rows.max(1),
            task: plan.task,
            x: Vec::with_capacity(chunk_rows.max(1) * w),
            y: Vec::new(),
            targets: Vec::new(),
            labels: Vec::new(),
            first: 0,
            held: 0,
        };
        let batched = src.scan_batches(&plan.scanned, &mut |at, rows, cells| {
            // Label fields of a row go after `w` placeholders, as `push_label` reads them.
            let mut fields = vec![Field::Missing; plan.scanned.len()];
            let mut i = 0;
            // Numeric features read straight from their numbers.
            let numeric = |j: usize| plan.schema[j].kind == ColumnType::Numeric;
            let direct: Vec<Direct<'_>> = (0..w)
                .map(|j| match cells[j] {
                    Cells::Numbers(v) if numeric(j) => Direct::Numbers(v),
                    Cells::Floats(v) if numeric(j) => Direct::Floats(v),
                    _ => Direct::No,
                })
                .collect();
            while i < rows {
                let m = (buf.rows - buf.held).min(rows - i);
                for r in i..i + m {
                    for (j, d) in direct.iter().enumerate() {
                        let v = match d {
                            Direct::Floats(v) if v[r].is_finite() => v[r],
                            Direct::Numbers(v) if (v[r] as f32).is_finite() => v[r] as f32,
                            Direct::Floats(v) if v[r].is_nan() => f32::NAN,
                            Direct::Numbers(v) if v[r].is_nan() => f32::NAN,
                            _ => self.encode(src, at + r, j, cells[j].get(r))?,
                        };
                        buf.x.push(v);
                    }
                }
                for r in 0..m {
                    for (k, cells) in cells[w..].iter().enumerate() {
                        fields[w + k] = cells.get(i + r);
                    }
                    let (y, targets) = (&mut buf.y, &mut buf.targets);
                    plan.push_label(src, &self.opts, at + i + r, &fields, y, targets)?;
                }
                buf.held += m;
                i += m;
                if buf.held == buf.rows {
                    buf.flush(f)?;
                }
            }
            Ok(())
        });
        match batched {
            Some(r) => {
                r?;
            }
            None => {
                src.scan(&plan.scanned, &mut |at, fields| {
                    for (j, field) in fields[..w].iter().enumerate() {
                        let v = self.encode(src, at, j, *field)?;
                        buf.x.push(v);
                    }
                    plan.push_label(src, &self.opts, at, fields, &mut buf.y, &mut buf.targets)?;
                    buf.held += 1;
                    if buf.held == buf.rows {
                        buf.flush(f)?;
                    }
                    Ok(())
                })?;
            }
        }
        if buf.held > 0 {
            buf.flush(f)?;
        }
        Ok(())
    }

    /// Feature `j`'s field as training reads it (see [`load`]).
    fn encode(&self, src: &dyn Source, at: usize, j: usize, f: Field<'_>) -> Result<f32> {
        let c = self.plan.feats[j];
        let f = f.normal();
        if f == Field::Missing {
            return Ok(f32::NAN);
        }
        match &self.plan.schema[j].kind {
            ColumnType::Numeric => number(src, at, c, f),
            ColumnType::Boolean => match f.boolean() {
                Some(b) => Ok(f32::from(u8::from(b))),
                None => Err(changed(src, at, c)),
            },
            ColumnType::Categorical { .. } => {
                let lookup = self.lookups[j].as_ref();
                match lookup.and_then(|l| l.get(f.text().as_ref())) {
                    Some(&code) => Ok(code as f32),
                    None => Err(changed(src, at, c)),
                }
            }
        }
    }
}

/// How [`Stream::read_chunks`] reads a numeric feature of a batch.
enum Direct<'a> {
    Numbers(&'a [f64]),
    Floats(&'a [f32]),
    /// Through [`Stream::encode`].
    No,
}

/// The rows of a [`Stream`] being gathered into a chunk.
struct ChunkBuffer {
    /// Rows per chunk.
    rows: usize,
    task: Task,
    x: Vec<f32>,
    y: Vec<u32>,
    targets: Vec<f32>,
    labels: Vec<f32>,
    /// The first row's index in the table.
    first: usize,
    /// Rows held.
    held: usize,
}

impl ChunkBuffer {
    /// Hands the rows held to `f` and starts the next chunk.
    fn flush(&mut self, f: &mut dyn FnMut(&Chunk<'_>) -> Result<()>) -> Result<()> {
        self.labels.clear();
        match self.task {
            Task::Classification => self.labels.extend(self.y.iter().map(|&c| c as f32)),
            Task::Regression => self.labels.extend_from_slice(&self.targets),
        }
        f(&Chunk {
            first: self.first,
            x: &self.x,
            labels: &self.labels,
        })?;
        self.first += self.held;
        self.held = 0;
        self.x.clear();
        self.y.clear();
        self.targets.clear();
        Ok(())
    }
}

impl Plan {
    fn labels_are_indices(&self) -> bool {
        matches!(self.labels, LabelKind::Indices)
    }
}

/// The first pass over a labelled table (see [`Plan`]).
fn plan(src: &dyn Source, path: &Path, opts: &Options) -> Result<Plan> {
    let header = src.header().to_vec();
    let width = header.len();
    if width < 2 {
        return Err(src.header_err(
            None,
            "needs at least one feature column and a label column".into(),
        ));
    }
    let label_col = match &opts.label {
        None => width - 1,
        Some(name) => column_index(src, name, "label")?,
    };
    let label_name = header[label_col].clone();
    // Several targets: the label, then the others (regression only).
    let mut label_cols = vec![label_col];
    for name in &opts.more_targets {
        let c = column_index(src, name, "label")?;
        if label_cols.contains(&c) {
            return Err(src.header_err(Some(c), format!("`{name}` is named twice in [data] label")));
        }
        label_cols.push(c);
    }
    if label_cols.len() > 1 && opts.task == Some(Task::Classification) {
        return Err(src.header_err(
            Some(label_cols[1]),
            "several label columns are several regression targets; declare [data] task = \
             \"regression\", or name one label column for classification"
                .into(),
        ));
    }
    let mut feats: Vec<usize> = match &opts.features {
        Some(names) => names
            .iter()
            .map(|n| column_index(src, n, "feature"))
            .collect::<Result<_>>()?,
        None => (0..width).filter(|c| !label_cols.contains(c)).collect(),
    };
    if let Some(&c) = label_cols.iter().find(|c| feats.contains(c)) {
        return Err(src.header_err(
            Some(c),
            format!(
                "`{}` is a label column and cannot also be a feature; remove it from [data] \
                 features",
                header[c]
            ),
        ));
    }
    for d in &opts.drop {
        let c = column_index(src, d, "`drop`ped")?;
        if label_cols.contains(&c) {
            return Err(src.header_err(
                Some(c),
                format!("`{d}` is a label column and cannot be dropped"),
            ));
        }
        feats.retain(|&f| f != c);
    }
    for name in &opts.categorical {
        let c = column_index(src, name, "categorical")?;
        if !feats.contains(&c) {
            return Err(src.header_err(
                Some(c),
                format!("`{name}` is declared categorical but is not a feature column"),
            ));
        }
    }
    if feats.is_empty() {
        return Err(src.header_err(
            None,
            "no feature columns are left (see [data] features and drop)".into(),
        ));
    }
    // The label columns are the last fields of each scanned row.
    let w = feats.len();
    let mut scanned = feats.clone();
    scanned.extend(&label_cols);

    // Pass 1: what each column holds.
    let mut seen: Vec<Seen> = (0..scanned.len())
        .map(|j| Seen {
            distinct: (j == w).then(BTreeSet::new),
            ..Seen::default()
        })
        .collect();
    let rows = src.scan(&scanned, &mut |at, fields| {
        for (j, f) in fields.iter().enumerate() {
            seen[j].see(at, f.normal(), j >= w);
        }
        Ok(())
    })?;
    if rows == 0 {
        return Err(no_rows(path));
    }
    for (ls, &c) in seen[w..].iter().zip(&label_cols) {
        if let Some(at) = ls.first_missing {
            return Err(src.err_at(
                at,
                c,
                format!(
                    "the label column `{}` has a missing value ({} rows in all); drop those \
                     rows or fill them in",
                    header[c], ls.missing
                ),
            ));
        }
    }
    let several = Options {
        task: Some(Task::Regression),
        ..opts.clone()
    };
    let kind_opts = if label_cols.len() > 1 { &several } else { opts };
    let (task, labels) = label_kind(src, kind_opts, label_col, &seen[w])?;
    for (ls, &c) in seen[w + 1..].iter().zip(&label_cols[1..]) {
        label_kind(src, &several, c, ls)?;
    }
    let schema: Vec<Column> = feats
        .iter()
        .zip(&seen)
        .map(|(&c, s)| {
            let name = header[c].clone();
            Column {
                kind: inferred_type(s, opts.categorical.contains(&name), vec![]),
                name,
                missing: s.missing,
            }
        })
        .collect();

    let classes_seen = match &labels {
        LabelKind::Indices => seen[w]
            .distinct
            .iter()
            .flatten()
            .filter_map(|t| t.parse::<f64>().ok())
            .fold(0u32, |m, v| m.max(v as u32 + 1)),
        _ => 0,
    };
    Ok(Plan {
        header,
        feats,
        label_cols,
        scanned,
        label_name,
        task,
        labels,
        schema,
        rows,
        classes_seen,
    })
}

/// The task, and how labels are encoded, from `[data]` and the label column.
fn label_kind(
    src: &dyn Source,
    opts: &Options,
    col: usize,
    seen: &Seen,
) -> Result<(Task, LabelKind)> {
    let name = &src.header()[col];
    let at = |pos: usize, message: String| src.err_at(pos, col, message);
    let names = |distinct: Option<&BTreeSet<String>>| -> Result<LabelKind> {
        let order: Vec<String> = match (&opts.class_names, distinct) {
            (Some(declared), _) => declared.clone(),
            (None, Some(d)) => d.iter().cloned().collect(),
            (None, None) => {
                return Err(src.header_err(
                    Some(col),
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
        (Some(Task::Regression), Some((pos, v))) => Err(at(
            *pos,
            format!(
                "label `{v}` in column `{name}` is not a number; regression needs numeric \
                 targets (declare [data] task = \"classification\" for classes)"
            ),
        )),
        (Some(Task::Regression), None) => Ok((Task::Regression, LabelKind::Targets)),
        (_, Some(_)) => Ok((Task::Classification, names(seen.distinct.as_ref())?)),
        (Some(Task::Classification), None) => match &seen.not_index {
            Some((pos, v)) => Err(at(
                *pos,
                format!(
                    "label `{v}` in column `{name}` is not a class index (a whole number >= 0)"
                ),
            )),
            None => Ok((Task::Classification, LabelKind::Indices)),
        },
        (None, None) => {
            if let Some((pos, v)) = &seen.not_index {
                return Err(at(
                    *pos,
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
                return Err(src.header_err(
                    Some(col),
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

/// Loads prediction input: a table (CSV, Parquet or JSON lines) with named
/// columns, or a JSON array of rows (`[[5.1, 3.5, 1.4, 0.2], …]`, `null` for
/// a missing value) when the file name ends in `.json`. With a `schema` (a
/// model's), the table's columns of those names are read in the schema's
/// order and encoded as in training, other columns (the label) ignored;
/// without one, every column but `drop_column` is read as numbers. A CSV's
/// delimiter is `delimiter`, else a tab for `.tsv` and a comma otherwise.
pub fn load_features(
    path: &Path,
    drop_column: Option<&str>,
    schema: Option<&[Column]>,
    delimiter: Option<u8>,
) -> Result<Features> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        return load_json(path);
    }
    let opened = open(path, delimiter)?;
    let src = opened.as_ref();
    let header = src.header();
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
                src.header_err(
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
    let lookup: Vec<Option<HashMap<&str, u32>>> = columns.iter().map(lookup_of).collect();
    let mut x = Vec::new();
    let rows = src.scan(&at, &mut |pos, fields| {
        for (((col, &c), lookup), f) in columns.iter().zip(&at).zip(&lookup).zip(fields) {
            x.push(encode_field(*f, col, lookup.as_ref()).map_err(|m| src.err_at(pos, c, m))?);
        }
        Ok(())
    })?;
    if rows == 0 {
        return Err(no_rows(path));
    }
    Ok(Features {
        names: columns.iter().map(|c| c.name.clone()).collect(),
        x,
        rows,
    })
}

/// A categorical column's category → code map; `None` for other columns.
fn lookup_of(col: &Column) -> Option<HashMap<&str, u32>> {
    match &col.kind {
        ColumnType::Categorical { categories } => {
            Some(categories.iter().map(String::as_str).zip(0u32..).collect())
        }
        _ => None,
    }
}

/// The labels of a table for a trained model: the label column read as the
/// model's task says, text classes by `class_names` (or class indices), and
/// regression targets — every column of `labels` — as numbers. For
/// `tensorlet eval`.
pub fn load_labels(
    path: &Path,
    (labels, task): (&[String], Task),
    class_names: Option<&[String]>,
    delimiter: Option<u8>,
) -> Result<crate::task::Labels> {
    let opened = open(path, delimiter)?;
    let src = opened.as_ref();
    let label = labels.first().map_or("", String::as_str);
    let col = column_index(src, label, "label")?;
    if task == Task::Regression && labels.len() > 1 {
        let cols: Vec<usize> = labels
            .iter()
            .map(|l| column_index(src, l, "label"))
            .collect::<Result<_>>()?;
        let mut values = Vec::new();
        src.scan(&cols, &mut |pos, fields| {
            for (f, &c) in fields.iter().zip(&cols) {
                let f = f.normal();
                if f == Field::Missing {
                    let name = &src.header()[c];
                    let m = format!("the label column `{name}` has a missing value");
                    return Err(src.err_at(pos, c, m));
                }
                values.push(number(src, pos, c, f)?);
            }
            Ok(())
        })?;
        return Ok(crate::task::Labels::Targets {
            values,
            width: cols.len(),
        });
    }
    let by_name: HashMap<&str, u32> = class_names
        .into_iter()
        .flatten()
        .map(String::as_str)
        .zip(0u32..)
        .collect();
    let classes = class_names.map_or(0, <[String]>::len);
    let (mut y, mut t) = (Vec::new(), Vec::new());
    src.scan(&[col], &mut |pos, fields| {
        let f = fields[0].normal();
        let at = |m: String| src.err_at(pos, col, m);
        if f == Field::Missing {
            return Err(at(format!(
                "the label column `{label}` has a missing value"
            )));
        }
        match task {
            Task::Regression => t.push(number(src, pos, col, f)?),
            Task::Classification => match by_name.get(f.text().as_ref()) {
                Some(&i) => y.push(i),
                None => match f.number() {
                    Some(i)
                        if i >= 0.0
                            && i.fract() == 0.0
                            && (classes == 0 || (i as usize) < classes) =>
                    {
                        y.push(i as u32)
                    }
                    _ => {
                        let mut known: Vec<&str> = by_name.keys().copied().collect();
                        known.sort_by_key(|n| by_name[n]);
                        return Err(at(format!(
                            "label `{}` in column `{label}` is not a class of the model{}",
                            f.text(),
                            if known.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", known.join(", "))
                            }
                        )));
                    }
                },
            },
        }
        Ok(())
    })?;
    Ok(match task {
        Task::Classification => crate::task::Labels::Classes(y),
        Task::Regression => crate::task::Labels::Targets {
            values: t,
            width: 1,
        },
    })
}

/// One text field of a prediction input as its column was encoded in
/// training: missing → NaN, an unknown category → -1.
pub fn encode(
    field: &str,
    col: &Column,
    lookup: Option<&HashMap<&str, u32>>,
) -> Result<f32, String> {
    encode_field(Field::Text(field.trim()), col, lookup)
}

/// [`encode`] for a field of any reader.
fn encode_field(
    field: Field<'_>,
    col: &Column,
    lookup: Option<&HashMap<&str, u32>>,
) -> Result<f32, String> {
    let field = field.normal();
    if field == Field::Missing {
        return Ok(f32::NAN);
    }
    match &col.kind {
        ColumnType::Numeric => match field.number_f32() {
            Some(v) if v.is_finite() => Ok(v),
            _ => Err(format!(
                "`{}` in column `{}` is not a finite number (the model reads it as numeric)",
                field.text(),
                col.name
            )),
        },
        ColumnType::Boolean => field
            .boolean()
            .map(|b| f32::from(u8::from(b)))
            .ok_or_else(|| {
                format!(
                    "`{}` in column `{}` is not `true` or `false` (the model reads it as \
                     boolean)",
                    field.text(),
                    col.name
                )
            }),
        ColumnType::Categorical { categories } => {
            let t = field.text();
            Ok(match lookup {
                Some(l) => l.get(t.as_ref()).map_or(-1.0, |&i| i as f32),
                None => categories
                    .iter()
                    .position(|c| *c == t)
                    .map_or(-1.0, |i| i as f32),
            })
        }
    }
}

fn load_json(path: &Path) -> Result<Features> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
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
        let feats = load_features(input.path(), Some("y"), Some(&d.schema), None).unwrap();
        assert_eq!(feats.names, ["color", "size"]);
        let bits: Vec<String> = feats.x.iter().map(|v| format!("{v}")).collect();
        assert_eq!(bits, ["0", "3", "-1", "4", "1", "NaN"]);
        let bad = file("color,size\nred,big\n");
        let e = load_features(bad.path(), None, Some(&d.schema), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with(":2:2: `big` in column `size` is not a finite number (the model reads it as numeric)"),
            "{e}"
        );
        let missing = file("size\n1\n");
        let e = load_features(missing.path(), None, Some(&d.schema), None)
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
        let feats = load_features(f.path(), Some("y"), None, None).unwrap();
        assert_eq!((feats.rows, feats.x.clone()), (2, vec![1.0, 2.0, 3.0, 4.0]));
        let j = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
        std::fs::write(j.path(), "[[1, 2.5], [3, null]]").unwrap();
        let feats = load_features(j.path(), None, None, None).unwrap();
        assert_eq!(feats.x[..3], [1.0, 2.5, 3.0]);
        assert!(feats.x[3].is_nan());
        std::fs::write(j.path(), "[[1, 2], [3]]").unwrap();
        assert!(load_features(j.path(), None, None, None).is_err());
    }
}
