//! Open Inference Protocol (KServe V2) request parsing and response encoding.
//!
//! One crate for everything that reads or writes the protocol's documents:
//! `tensorlet serve` (the runtime's axum server) and the `http-front`
//! component of an exported model (built for `wasm32-wasip2`) both depend on
//! it, so both answer alike.
//!
//! Pure functions over bytes, so every caller mistake is a [`BadRequest`]
//! with a sentence, tested without a server. Supports JSON tensors (flat or
//! nested, row-major) and Triton's binary tensor data extension (a JSON header
//! of `Inference-Header-Content-Length` bytes followed by raw little-endian
//! tensors, `parameters.binary_data_size` per input, `binary_data` per output).

use serde_json::{Map, Value, json};

mod columns;
#[cfg(feature = "grpc")]
pub mod grpc;

/// The one input a tensorlet model takes.
pub const INPUT: &str = "input";
/// Output: class index per row (INT64, `[batch]`).
pub const LABEL: &str = "label";
/// Output: class probabilities (FP32, `[batch, classes]`).
pub const PROBABILITIES: &str = "probabilities";
/// Output: class name per row (BYTES, `[batch]`), for models whose classes
/// have names.
pub const CLASS: &str = "class";
/// Output: predicted targets (FP32, `[batch, targets]`) of a regression
/// model.
pub const PREDICTION: &str = "prediction";

/// Why a request with a missing value got no answer: the model's
/// preprocessing left it missing, so the predictor's output was not finite.
pub const MISSING_NOT_FILLED: &str = "the request has a missing value (null), which this \
     model's preprocessing does not fill in (train it with an imputer), so send a value";

/// What a feature column holds, for the one input per column a model also
/// takes.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnKind {
    /// Numbers: any numeric datatype.
    Numeric,
    /// `BOOL` (or the numbers 0 and 1).
    Boolean,
    /// Strings (`BYTES`) from these categories, sorted; a value's code is its
    /// index here, an unknown value's -1.
    Categorical(Vec<String>),
}

/// One feature column: a named input of shape `[batch]` (or `[batch, 1]`).
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnSpec {
    /// The column's name, which is the input's.
    pub name: String,
    /// What it holds.
    pub kind: ColumnKind,
}

impl ColumnSpec {
    /// The OIP datatype of the column's input.
    pub fn datatype(&self) -> &'static str {
        match self.kind {
            ColumnKind::Numeric => "FP32",
            ColumnKind::Boolean => "BOOL",
            ColumnKind::Categorical(_) => "BYTES",
        }
    }
}

/// What a model answers.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// Class indices and probabilities (and the class names, when named).
    Classes {
        /// How many classes.
        count: usize,
        /// Their names, by index.
        names: Option<Vec<String>>,
    },
    /// Continuous targets.
    Targets {
        /// How many per row.
        count: usize,
    },
}

impl Default for Answer {
    fn default() -> Self {
        Answer::Classes {
            count: 0,
            names: None,
        }
    }
}

impl Answer {
    /// The outputs a request gets when it names none.
    fn outputs(&self) -> &'static [&'static str] {
        match self {
            Answer::Classes { names: None, .. } => &[LABEL, PROBABILITIES],
            Answer::Classes { names: Some(_), .. } => &[LABEL, PROBABILITIES, CLASS],
            Answer::Targets { .. } => &[PREDICTION],
        }
    }
}

/// What a model takes besides the single `input` and what it answers: its
/// feature columns, each of which may come as its own input (as MLServer's
/// pandas codec and tritonclient send them, `BYTES` for strings), and its
/// outputs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelSpec {
    /// The feature columns in the model's order; empty for a model without
    /// a recorded schema (the single `input` only).
    pub columns: Vec<ColumnSpec>,
    /// What it answers.
    pub answer: Answer,
}

impl ModelSpec {
    /// The spec of a saved tensorlet model from its `model.json`: the
    /// `schema` (each column's `name`, `type` and `categories`), the `task`
    /// (classification when absent), `classes` (the number of targets for
    /// regression) and `class_names`. Absent fields give an older model's
    /// spec: the single `input`, classes without names.
    pub fn from_model_json(meta: &Value) -> ModelSpec {
        let columns = meta["schema"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| ColumnSpec {
                name: c["name"].as_str().unwrap_or_default().to_string(),
                kind: match c["type"].as_str() {
                    Some("boolean") => ColumnKind::Boolean,
                    Some("categorical") => {
                        let mut categories: Vec<String> = c["categories"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect();
                        categories.sort();
                        ColumnKind::Categorical(categories)
                    }
                    _ => ColumnKind::Numeric,
                },
            })
            .collect();
        let count = meta["classes"].as_u64().unwrap_or(0) as usize;
        let answer = if meta["task"].as_str() == Some("regression") {
            Answer::Targets { count }
        } else {
            Answer::Classes {
                count,
                names: meta["class_names"].as_array().map(|names| {
                    names
                        .iter()
                        .map(|n| n.as_str().unwrap_or_default().to_string())
                        .collect()
                }),
            }
        };
        ModelSpec { columns, answer }
    }

    /// Whether every column is a number, so that the single `input` tensor
    /// can carry a row.
    pub fn all_numeric(&self) -> bool {
        self.columns
            .iter()
            .all(|c| !matches!(c.kind, ColumnKind::Categorical(_)))
    }
}

/// A caller mistake: answered with 400 and this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

fn bad<T>(message: impl Into<String>) -> Result<T, BadRequest> {
    Err(BadRequest(message.into()))
}

/// What a model accepts.
#[derive(Clone, Copy, Debug)]
pub struct InputSpec {
    /// Features per row.
    pub features: usize,
    /// Largest batch accepted.
    pub max_batch: usize,
}

/// One requested output and whether it goes back as binary data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// `label` or `probabilities`.
    pub name: &'static str,
    /// Raw little-endian bytes after the JSON header instead of JSON data.
    pub binary: bool,
}

/// A parsed, validated inference request.
#[derive(Clone, Debug, PartialEq)]
pub struct InferRequest {
    /// The caller's request id, echoed back.
    pub id: Option<String>,
    /// Rows in the batch.
    pub rows: usize,
    /// Row-major features, converted to f32.
    pub x: Vec<f32>,
    /// Outputs to return, in order.
    pub outputs: Vec<Wanted>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DType {
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
}

impl DType {
    fn parse(s: &str) -> Result<DType, BadRequest> {
        Ok(match s {
            "FP32" => DType::F32,
            "FP64" => DType::F64,
            "INT8" => DType::I8,
            "INT16" => DType::I16,
            "INT32" => DType::I32,
            "INT64" => DType::I64,
            "UINT8" => DType::U8,
            "UINT16" => DType::U16,
            "UINT32" => DType::U32,
            "UINT64" => DType::U64,
            "BOOL" | "FP16" | "BF16" | "BYTES" => {
                return bad(format!(
                    "datatype {s} is not supported for input `{INPUT}`; send FP32, FP64 or an integer type"
                ));
            }
            other => {
                return bad(format!(
                    "unknown datatype `{other}`; the Open Inference Protocol datatypes are BOOL, \
                     UINT8..UINT64, INT8..INT64, FP16, FP32, FP64, BYTES"
                ));
            }
        })
    }

    fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 => 1,
            DType::I16 | DType::U16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
        }
    }

    fn is_integer(self) -> bool {
        !matches!(self, DType::F32 | DType::F64)
    }

    /// Decodes one little-endian element.
    fn decode(self, b: &[u8]) -> f64 {
        match self {
            DType::F32 => f64::from(f32::from_le_bytes(b.try_into().expect("4"))),
            DType::F64 => f64::from_le_bytes(b.try_into().expect("8")),
            DType::I8 => f64::from(b[0] as i8),
            DType::I16 => f64::from(i16::from_le_bytes(b.try_into().expect("2"))),
            DType::I32 => f64::from(i32::from_le_bytes(b.try_into().expect("4"))),
            DType::I64 => i64::from_le_bytes(b.try_into().expect("8")) as f64,
            DType::U8 => f64::from(b[0]),
            DType::U16 => f64::from(u16::from_le_bytes(b.try_into().expect("2"))),
            DType::U32 => f64::from(u32::from_le_bytes(b.try_into().expect("4"))),
            DType::U64 => u64::from_le_bytes(b.try_into().expect("8")) as f64,
        }
    }
}

/// The model metadata answer (`GET /v2/models/{m}`). Inputs: the one FP32
/// `input` of `[-1, features]` for an all-numeric model, else one input per
/// feature column with its datatype (an all-numeric model takes those too;
/// `parameters.columns` lists them). Outputs: the label, the class names
/// when the classes have names, and the probabilities; or a regression
/// model's `prediction`.
pub fn model_metadata(name: &str, version: &str, features: &[String], model: &ModelSpec) -> Value {
    let per_column: Vec<Value> = model
        .columns
        .iter()
        .map(|c| {
            let mut v = json!({ "name": c.name, "datatype": c.datatype(), "shape": [-1] });
            if let ColumnKind::Categorical(categories) = &c.kind {
                v["parameters"] = json!({ "categories": categories });
            }
            v
        })
        .collect();
    let inputs = if model.all_numeric() {
        let mut parameters = json!({ "features": features });
        if !per_column.is_empty() {
            parameters["columns"] = Value::Array(per_column);
        }
        json!([{
            "name": INPUT,
            "datatype": "FP32",
            "shape": [-1, features.len()],
            "parameters": parameters,
        }])
    } else {
        Value::Array(per_column)
    };
    let outputs = match &model.answer {
        Answer::Classes { count, names } => {
            let mut o = vec![
                json!({ "name": LABEL, "datatype": "INT64", "shape": [-1] }),
                json!({
                    "name": PROBABILITIES,
                    "datatype": "FP32",
                    "shape": [-1, count],
                    "parameters": { "classes": names },
                }),
            ];
            if names.is_some() {
                o.push(json!({ "name": CLASS, "datatype": "BYTES", "shape": [-1] }));
            }
            o
        }
        Answer::Targets { count } => vec![json!({
            "name": PREDICTION,
            "datatype": "FP32",
            "shape": [-1, count],
        })],
    };
    json!({
        "name": name,
        "versions": [version],
        "platform": "tensorlet",
        "inputs": inputs,
        "outputs": outputs,
    })
}

/// Splits a body into its JSON header and the binary tail, using the
/// `Inference-Header-Content-Length` header when present.
pub fn split_body<'a>(
    body: &'a [u8],
    header_len: Option<&str>,
) -> Result<(&'a [u8], &'a [u8]), BadRequest> {
    match header_len {
        None => Ok((body, &[])),
        Some(h) => {
            let n: usize = h.trim().parse().map_err(|_| {
                BadRequest(format!(
                    "Inference-Header-Content-Length `{h}` is not a byte count"
                ))
            })?;
            if n > body.len() {
                return bad(format!(
                    "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                    body.len()
                ));
            }
            Ok(body.split_at(n))
        }
    }
}

/// The usual request read in one pass over its bytes: the members are found
/// by a hand-written scanner, and the one input's `data` goes straight into a
/// `Vec<f64>` without building a JSON value for each number. Members other
/// than `data` are parsed by serde_json, one value at a time, into the same
/// maps that [`parse_value`] reads.
mod scan {
    use super::Nesting;
    use serde_json::{Map, Value};

    /// A request's members, its one input's members, and that input's data.
    pub struct Members {
        pub doc: Map<String, Value>,
        pub input: Map<String, Value>,
        /// The input's numbers, and how they nest (`None`: neither flat nor
        /// one array per row, which `parse_value` words).
        pub data: Option<(Vec<f64>, Option<Nesting>)>,
    }

    /// Deepest nesting of `data` arrays read here (serde_json stops at 128).
    const MAX_DEPTH: usize = 64;

    /// The members of a request with exactly one input whose `data` is
    /// numbers in (nested) arrays. `None` for anything else: invalid JSON,
    /// other shapes of request, a key written with escapes, a number outside
    /// the exact fast path of [`number`]. The caller then
    /// parses the request as a JSON value, which says what is wrong.
    pub fn request(b: &[u8]) -> Option<Members> {
        let mut c = Cursor { b, i: 0 };
        let (mut doc, mut input, mut data) = (Map::new(), None, None);
        c.object(
            |c, key| {
                if key == "inputs" {
                    c.byte(b'[')?;
                    let mut members = Map::new();
                    c.object(
                        |c, key| {
                            if key == "data" {
                                let mut v = Vec::with_capacity(c.b.len() / 4);
                                let mut rows = Vec::new();
                                let regular = c.numbers(&mut v, &mut rows)?;
                                let nesting = if rows.is_empty() {
                                    Nesting::Flat
                                } else {
                                    Nesting::Rows(rows)
                                };
                                data = Some((v, regular.then_some(nesting)));
                                Some(None)
                            } else {
                                c.value().map(Some)
                            }
                        },
                        &mut members,
                    )?;
                    input = Some(members);
                    c.byte(b']')?;
                    Some(None)
                } else {
                    c.value().map(Some)
                }
            },
            &mut doc,
        )?;
        c.ws();
        if c.i != b.len() {
            return None;
        }
        Some(Members {
            doc,
            input: input?,
            data,
        })
    }

    struct Cursor<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl<'a> Cursor<'a> {
        fn ws(&mut self) {
            while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
                self.i += 1;
            }
        }

        /// Skips whitespace and then `want`.
        fn byte(&mut self, want: u8) -> Option<()> {
            self.ws();
            (self.b.get(self.i) == Some(&want)).then(|| self.i += 1)
        }

        /// An object: each member's value is read by `member`, which returns
        /// the value to keep in the map, or `None` when it kept the value
        /// itself. Of a key given twice the last value counts, as in a JSON
        /// value.
        fn object(
            &mut self,
            mut member: impl FnMut(&mut Self, &str) -> Option<Option<Value>>,
            map: &mut Map<String, Value>,
        ) -> Option<()> {
            self.byte(b'{')?;
            self.ws();
            if self.b.get(self.i) == Some(&b'}') {
                self.i += 1;
                return Some(());
            }
            loop {
                let key = self.plain_string()?;
                self.byte(b':')?;
                self.ws();
                if let Some(v) = member(self, key)? {
                    map.insert(key.to_owned(), v);
                }
                self.ws();
                match self.b.get(self.i)? {
                    b',' => self.i += 1,
                    b'}' => {
                        self.i += 1;
                        return Some(());
                    }
                    _ => return None,
                }
                self.ws();
            }
        }

        /// A string without escapes, at the cursor.
        fn plain_string(&mut self) -> Option<&'a str> {
            self.ws();
            if self.b.get(self.i) != Some(&b'"') {
                return None;
            }
            let start = self.i + 1;
            let len = self.b[start..]
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
            if self.b[start + len] != b'"' {
                return None;
            }
            self.i = start + len + 1;
            std::str::from_utf8(&self.b[start..start + len]).ok()
        }

        /// Any JSON value at the cursor: a plain string directly, anything
        /// else through serde_json.
        fn value(&mut self) -> Option<Value> {
            if self.b.get(self.i) == Some(&b'"') {
                let at = self.i;
                if let Some(s) = self.plain_string() {
                    return Some(Value::String(s.to_owned()));
                }
                self.i = at;
            }
            let mut values =
                serde_json::Deserializer::from_slice(&self.b[self.i..]).into_iter::<Value>();
            let v = values.next()?.ok()?;
            self.i += values.byte_offset();
            Some(v)
        }

        /// A number, or numbers in nested arrays, appended in text order;
        /// the length of each array at depth 2 (a row) goes to `rows`.
        /// Returns whether the nesting is regular: flat, or every value in
        /// a row and no array deeper than the rows.
        fn numbers(&mut self, out: &mut Vec<f64>, rows: &mut Vec<usize>) -> Option<bool> {
            let (start, mut in_rows, mut row_start) = (out.len(), 0, 0);
            let mut deeper = false;
            let mut depth = 0;
            loop {
                // A value: open arrays, then a number or an empty array.
                self.ws();
                let mut opened = false;
                while self.b.get(self.i) == Some(&b'[') {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return None;
                    }
                    if depth == 2 {
                        row_start = out.len();
                    }
                    deeper |= depth > 2;
                    opened = true;
                    self.i += 1;
                    self.ws();
                }
                if opened && self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    if depth == 2 {
                        rows.push(0);
                    }
                    depth -= 1;
                } else {
                    let (v, next) = number(self.b, self.i)?;
                    out.push(v);
                    self.i = next;
                }
                // What follows it: closes, then a comma or the end.
                loop {
                    self.ws();
                    if depth == 0 {
                        let flat_or_rows = rows.is_empty() || in_rows == out.len() - start;
                        return Some(!deeper && flat_or_rows);
                    }
                    match self.b.get(self.i)? {
                        b']' => {
                            self.i += 1;
                            if depth == 2 {
                                rows.push(out.len() - row_start);
                                in_rows += out.len() - row_start;
                            }
                            depth -= 1;
                        }
                        b',' => {
                            self.i += 1;
                            break;
                        }
                        _ => return None,
                    }
                }
            }
        }
    }

    /// The numbers of `text`, all of it, as a request's `data` reads them.
    #[cfg(test)]
    pub fn numbers(text: &str) -> Option<Vec<f64>> {
        let mut c = Cursor {
            b: text.as_bytes(),
            i: 0,
        };
        let mut out = Vec::new();
        c.numbers(&mut out, &mut Vec::new())?;
        (c.i == text.len()).then_some(out)
    }

    /// Exact powers of ten, as f64.
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];

    /// The JSON number starting at `b[i]`, and where it ends, exactly as
    /// serde_json reads it. Integers (up to 19 digits) become `u64 as f64`,
    /// negated, as serde_json's integers do; others only when the significand
    /// is at most 2^53 and the power of ten at most 22 either way, where one
    /// correctly rounded multiplication or division gives the correctly
    /// rounded value (Clinger's fast path). `None` for anything else, and for
    /// text that is not a JSON number.
    fn number(b: &[u8], mut i: usize) -> Option<(f64, usize)> {
        let negative = b.get(i) == Some(&b'-');
        i += usize::from(negative);
        let (mut significand, mut digits, mut exp10) = (0u64, 0u32, 0i32);
        let mut integer = true;
        let digit = |i: usize| b.get(i).filter(|c| c.is_ascii_digit()).map(|c| c - b'0');
        // JSON: `0`, or a nonzero digit and more digits.
        let leading_zero = digit(i)? == 0;
        while let Some(d) = digit(i) {
            if digits == 19 {
                return None;
            }
            significand = significand * 10 + u64::from(d);
            digits += 1;
            i += 1;
        }
        if leading_zero && digits > 1 {
            return None;
        }
        if b.get(i) == Some(&b'.') {
            integer = false;
            i += 1;
            digit(i)?;
            while let Some(d) = digit(i) {
                if digits == 19 {
                    return None;
                }
                significand = significand * 10 + u64::from(d);
                digits += 1;
                exp10 -= 1;
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            integer = false;
            i += 1;
            let negative_exp = b.get(i) == Some(&b'-');
            i += usize::from(matches!(b.get(i), Some(b'+' | b'-')));
            digit(i)?;
            let mut e = 0i32;
            while let Some(d) = digit(i) {
                if e > 1000 {
                    return None;
                }
                e = e * 10 + i32::from(d);
                i += 1;
            }
            exp10 += if negative_exp { -e } else { e };
        }
        let magnitude = if integer {
            significand as f64
        } else if significand == 0 {
            0.0
        } else if significand > 1 << 53 || !(-22..=22).contains(&exp10) {
            return None;
        } else if exp10 < 0 {
            significand as f64 / POW10[(-exp10) as usize]
        } else {
            significand as f64 * POW10[exp10 as usize]
        };
        Some((if negative { -magnitude } else { magnitude }, i))
    }
}

fn flatten(v: &Value, out: &mut Vec<f64>, integer: bool) -> Result<(), BadRequest> {
    match v {
        Value::Array(items) => {
            for item in items {
                flatten(item, out, integer)?;
            }
            Ok(())
        }
        Value::Number(n) => {
            let f = n
                .as_f64()
                .ok_or_else(|| BadRequest(format!("`{n}` is not a number")))?;
            if integer && f.fract() != 0.0 {
                return bad(format!("`{n}` is not an integer, as the datatype says"));
            }
            out.push(f);
            Ok(())
        }
        other => bad(format!(
            "input `{INPUT}` data holds `{other}`; only numbers (flat or nested arrays) are accepted"
        )),
    }
}

/// How an input's `data` nests: flat (row-major numbers, or one number), or
/// one array per row.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Nesting {
    Flat,
    /// How many values each row holds.
    Rows(Vec<usize>),
}

/// The nesting of `data` (whose leaves [`flatten`] found to be numbers):
/// numbers beside arrays, or arrays inside rows, are mistakes.
fn nesting(data: &Value) -> Result<Nesting, BadRequest> {
    let Value::Array(items) = data else {
        return Ok(Nesting::Flat);
    };
    let Some(array) = items.iter().position(Value::is_array) else {
        return Ok(Nesting::Flat);
    };
    if let Some(number) = items.iter().position(|v| !v.is_array()) {
        return bad(format!(
            "input `{INPUT}` data mixes numbers and rows: item {number} is a number but item \
             {array} is an array; send the values flat (row-major) or as one array per row"
        ));
    }
    let mut rows = Vec::with_capacity(items.len());
    for (i, row) in items.iter().enumerate() {
        let row = row.as_array().expect("every item is an array");
        if row.iter().any(Value::is_array) {
            return bad(format!(
                "input `{INPUT}` row {i} holds an array; a row is an array of numbers"
            ));
        }
        rows.push(row.len());
    }
    Ok(Nesting::Rows(rows))
}

/// Nested data must have the shape it declares: every row `features` long,
/// so that values never shift from one row into another.
fn check_rows(nesting: &Nesting, shape: &[usize], features: usize) -> Result<(), BadRequest> {
    let Nesting::Rows(rows) = nesting else {
        return Ok(());
    };
    match rows.iter().position(|&n| n != features) {
        Some(i) => bad(format!(
            "input `{INPUT}` row {i} has {} values; shape {shape:?} needs {features} in every row",
            rows[i]
        )),
        None => Ok(()),
    }
}

fn shape_of(v: Option<&Value>) -> Result<Vec<usize>, BadRequest> {
    let Some(Value::Array(dims)) = v else {
        return bad(format!("input `{INPUT}` needs a `shape` array"));
    };
    dims.iter()
        .map(|d| {
            d.as_u64().map(|d| d as usize).ok_or_else(|| {
                BadRequest(format!(
                    "shape dimension `{d}` is not a non-negative integer"
                ))
            })
        })
        .collect()
}

fn binary_flag(params: Option<&Value>, key: &str) -> bool {
    params
        .and_then(|p| p.get(key))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Parses and validates a request body against a model's single `input`
/// (a classifier without a recorded schema).
pub fn parse_request(
    json: &[u8],
    binary: &[u8],
    spec: InputSpec,
) -> Result<InferRequest, BadRequest> {
    parse_request_for(json, binary, spec, &ModelSpec::default())
}

/// Parses and validates a request body against a model: its single `input`
/// or one input per feature column, and the outputs `model` answers.
pub fn parse_request_for(
    json: &[u8],
    binary: &[u8],
    spec: InputSpec,
    model: &ModelSpec,
) -> Result<InferRequest, BadRequest> {
    parse_scanned(json, binary, spec, model)
        .unwrap_or_else(|| parse_value(json, binary, spec, model))
}

/// Entry points for the benchmark in `benches/parse.rs`, which measures the
/// scanner against serde_json; not part of the crate's API.
#[doc(hidden)]
pub mod paths {
    use super::*;

    /// The one-pass scanner alone; `None` where it hands the request on.
    pub fn scanned(json: &[u8], spec: InputSpec) -> Option<Result<InferRequest, BadRequest>> {
        parse_scanned(json, &[], spec, &ModelSpec::default())
    }

    /// serde_json into a `Value`, then checked: the path of any request the
    /// scanner hands on.
    pub fn value(json: &[u8], spec: InputSpec) -> Result<InferRequest, BadRequest> {
        parse_value(json, &[], spec, &ModelSpec::default())
    }

    /// The checks of [`parse_request`] on a request read elsewhere: `doc`
    /// and `input` hold the members of the request and of its one input but
    /// `data`, `x` the data's numbers and `rows` the length of each row when
    /// the data is one array per row.
    pub fn checked(
        doc: &Map<String, Value>,
        input: &Map<String, Value>,
        x: Vec<f32>,
        rows: Option<Vec<usize>>,
        spec: InputSpec,
    ) -> Result<InferRequest, BadRequest> {
        let nesting = rows.map_or(Nesting::Flat, Nesting::Rows);
        let model = ModelSpec::default();
        parse_input(doc, input, Data::Parsed(x, nesting), &[], spec, &model)
    }
}

/// The common case, parsed in one pass (see [`scan`]). `None` when the
/// document is anything but a well-formed single-input request with numeric
/// data, so that [`parse_value`] says precisely what is wrong.
fn parse_scanned(
    json: &[u8],
    binary: &[u8],
    spec: InputSpec,
    model: &ModelSpec,
) -> Option<Result<InferRequest, BadRequest>> {
    let scan::Members { doc, input, data } = scan::request(json)?;
    if !model.columns.is_empty() && input.get("name").and_then(Value::as_str) != Some(INPUT) {
        // One column's input: read with the other columns' (see `columns`).
        return None;
    }
    let data = match data {
        Some((v, nesting)) => {
            let integer = input
                .get("datatype")
                .and_then(Value::as_str)
                .map(DType::parse);
            if matches!(integer, Some(Ok(d)) if d.is_integer())
                && v.iter().any(|f| f.fract() != 0.0)
            {
                return None;
            }
            Data::Parsed(v.into_iter().map(|f| f as f32).collect(), nesting?)
        }
        None => Data::Json(None),
    };
    Some(parse_input(&doc, &input, data, binary, spec, model))
}

/// Any request, through a JSON value, with a message for every mistake.
fn parse_value(
    json: &[u8],
    binary: &[u8],
    spec: InputSpec,
    model: &ModelSpec,
) -> Result<InferRequest, BadRequest> {
    let doc: Value = serde_json::from_slice(json)
        .map_err(|e| BadRequest(format!("the request body is not valid JSON: {e}")))?;
    let Value::Object(doc) = doc else {
        return bad("the request body must be a JSON object with an `inputs` array");
    };
    let Some(Value::Array(inputs)) = doc.get("inputs") else {
        return bad("the request needs an `inputs` array");
    };
    let single = match inputs.as_slice() {
        [Value::Object(input)] if input.get("name").and_then(Value::as_str) == Some(INPUT) => {
            Some(input)
        }
        _ => None,
    };
    if let Some(input) = single {
        return parse_input(
            &doc,
            input,
            Data::Json(input.get("data")),
            binary,
            spec,
            model,
        );
    }
    if !model.columns.is_empty() {
        return columns::parse(&doc, inputs, binary, spec, model);
    }
    let [input] = inputs.as_slice() else {
        return bad(format!(
            "the model takes exactly one input, `{INPUT}`, but the request has {}",
            inputs.len()
        ));
    };
    let Value::Object(input) = input else {
        return bad("each input must be an object with name, shape, datatype and data");
    };
    parse_input(
        &doc,
        input,
        Data::Json(input.get("data")),
        binary,
        spec,
        model,
    )
}

/// An input's `data`: as JSON, or already flattened by [`parse_scanned`].
enum Data<'a> {
    Json(Option<&'a Value>),
    Parsed(Vec<f32>, Nesting),
}

/// Checks the request `doc` with its one `input` (whose `data` is `data`)
/// against the model.
fn parse_input(
    doc: &Map<String, Value>,
    input: &Map<String, Value>,
    data: Data<'_>,
    mut binary: &[u8],
    spec: InputSpec,
    model: &ModelSpec,
) -> Result<InferRequest, BadRequest> {
    let id = request_id(doc)?;
    match input.get("name").and_then(Value::as_str) {
        Some(INPUT) if !model.all_numeric() => {
            let text: Vec<&str> = model
                .columns
                .iter()
                .filter(|c| matches!(c.kind, ColumnKind::Categorical(_)))
                .map(|c| c.name.as_str())
                .collect();
            return bad(format!(
                "the model has text columns ({}), which the single `{INPUT}` tensor cannot \
                 carry; send one input per column (BYTES for text): {}",
                text.join(", "),
                column_names(model)
            ));
        }
        Some(INPUT) => {}
        Some(other) if !model.columns.is_empty() => {
            return bad(format!(
                "unknown input `{other}`; the model takes `{INPUT}` or one input per column: {}",
                column_names(model)
            ));
        }
        Some(other) => {
            return bad(format!(
                "unknown input `{other}`; the model's input is `{INPUT}`"
            ));
        }
        None => {
            return bad(format!(
                "input needs a `name` (the model's input is `{INPUT}`)"
            ));
        }
    }
    let shape = shape_of(input.get("shape"))?;
    let [rows, features] = shape[..] else {
        return bad(format!(
            "input `{INPUT}` has shape {shape:?}; expected [batch, {}]",
            spec.features
        ));
    };
    if features != spec.features {
        return bad(format!(
            "input `{INPUT}` has shape {shape:?}; the model takes {} features per row: [batch, {}]",
            spec.features, spec.features
        ));
    }
    if rows == 0 {
        return bad("the batch is empty");
    }
    if rows > spec.max_batch {
        return bad(format!(
            "the batch has {rows} rows; this server accepts at most {}",
            spec.max_batch
        ));
    }
    let dtype = DType::parse(
        input
            .get("datatype")
            .and_then(Value::as_str)
            .ok_or_else(|| BadRequest(format!("input `{INPUT}` needs a `datatype`")))?,
    )?;
    let want = rows * features;
    let binary_size = input
        .get("parameters")
        .and_then(|p| p.get("binary_data_size"))
        .and_then(Value::as_u64);
    let x: Vec<f32> = match (binary_size, data) {
        (Some(n), _) => {
            let n = n as usize;
            if n > binary.len() {
                return bad(format!(
                    "binary_data_size is {n} but only {} bytes follow the JSON header",
                    binary.len()
                ));
            }
            if n != want * dtype.size() {
                return bad(format!(
                    "binary_data_size is {n} bytes; shape {shape:?} of {} needs {}",
                    input["datatype"],
                    want * dtype.size()
                ));
            }
            let (mine, rest) = binary.split_at(n);
            binary = rest;
            mine.chunks_exact(dtype.size())
                .map(|c| dtype.decode(c) as f32)
                .collect()
        }
        (None, Data::Parsed(v, nesting)) => {
            check_rows(&nesting, &shape, features)?;
            v
        }
        (None, Data::Json(Some(data))) => {
            let mut v = Vec::with_capacity(want);
            flatten(data, &mut v, dtype.is_integer())?;
            check_rows(&nesting(data)?, &shape, features)?;
            v.into_iter().map(|f| f as f32).collect()
        }
        (None, Data::Json(None)) => return bad(format!("input `{INPUT}` has no `data`")),
    };
    if !binary.is_empty() {
        return bad(format!(
            "{} bytes follow the JSON header that no input claims",
            binary.len()
        ));
    }
    if x.len() != want {
        return bad(format!(
            "input `{INPUT}` has {} values; shape {shape:?} needs {want}",
            x.len()
        ));
    }
    if let Some(i) = x.iter().position(|f| !f.is_finite()) {
        return bad(format!(
            "input `{INPUT}` value {i} (row {}, column {}) is not a finite number",
            i / features,
            i % features
        ));
    }

    let outputs = wanted_outputs(doc, model)?;
    Ok(InferRequest {
        id,
        rows,
        x,
        outputs,
    })
}

/// The request's `id`, when it has one.
fn request_id(doc: &Map<String, Value>) -> Result<Option<String>, BadRequest> {
    match doc.get("id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => bad(format!("`id` must be a string, got `{other}`")),
    }
}

/// The model's column names, for messages.
fn column_names(model: &ModelSpec) -> String {
    let names: Vec<&str> = model.columns.iter().map(|c| c.name.as_str()).collect();
    names.join(", ")
}

/// The outputs a request asks for (all the model's when it names none),
/// and whether each goes back as binary data.
fn wanted_outputs(doc: &Map<String, Value>, model: &ModelSpec) -> Result<Vec<Wanted>, BadRequest> {
    let all_binary = binary_flag(doc.get("parameters"), "binary_data_output");
    let known = model.answer.outputs();
    match doc.get("outputs") {
        None | Some(Value::Null) => Ok(known
            .iter()
            .map(|&name| Wanted {
                name,
                binary: all_binary,
            })
            .collect()),
        Some(Value::Array(list)) => list
            .iter()
            .map(|o| {
                let name = match o.get("name").and_then(Value::as_str) {
                    Some(n) => match known.iter().find(|&&k| k == n) {
                        Some(&k) => k,
                        None => {
                            let listed: Vec<String> =
                                known.iter().map(|k| format!("`{k}`")).collect();
                            return bad(format!(
                                "unknown output `{n}`; the model's outputs are {}",
                                match listed.as_slice() {
                                    [one] => one.clone(),
                                    [init @ .., last] => format!("{} and {last}", init.join(", ")),
                                    [] => String::new(),
                                }
                            ));
                        }
                    },
                    None => return bad("each requested output needs a `name`"),
                };
                Ok(Wanted {
                    name,
                    binary: all_binary || binary_flag(o.get("parameters"), "binary_data"),
                })
            })
            .collect(),
        Some(other) => bad(format!("`outputs` must be an array, got `{other}`")),
    }
}

/// An encoded response: the JSON document and, when any output is binary,
/// the bytes that follow it (the caller sets `Inference-Header-Content-Length`).
pub struct Encoded {
    /// The JSON header (the whole body when `binary` is empty).
    pub json: Vec<u8>,
    /// Binary output data, in output order.
    pub binary: Vec<u8>,
}

/// What a model predicted for a request's rows.
#[derive(Clone, Copy, Debug)]
pub enum Prediction<'a> {
    /// A classifier's answer.
    Classes {
        /// Class index per row.
        labels: &'a [u32],
        /// Class probabilities per row.
        probabilities: &'a [Vec<f32>],
        /// Class names by index, when the classes have names.
        names: Option<&'a [String]>,
    },
    /// A regression model's targets per row.
    Targets(&'a [Vec<f32>]),
}

/// Encodes a classifier's labels and probabilities (see [`encode_prediction`]).
pub fn encode_response(
    model: &str,
    version: &str,
    req: &InferRequest,
    labels: &[u32],
    probabilities: &[Vec<f32>],
) -> Encoded {
    encode_prediction(
        model,
        version,
        req,
        Prediction::Classes {
            labels,
            probabilities,
            names: None,
        },
    )
}

/// Encodes the outputs of a prediction that the request asked for.
/// Probabilities and targets are written as the shortest decimal that reads
/// back as the same `f32`; in binary, class names are BYTES elements (a
/// 4-byte little-endian length, then the UTF-8 bytes).
pub fn encode_prediction(
    model: &str,
    version: &str,
    req: &InferRequest,
    prediction: Prediction<'_>,
) -> Encoded {
    let none: &[Vec<f32>] = &[];
    let (labels, probabilities, names, targets) = match prediction {
        Prediction::Classes {
            labels,
            probabilities,
            names,
        } => (labels, probabilities, names, none),
        Prediction::Targets(t) => (&[][..], none, None, t),
    };
    let classes = probabilities.first().map_or(0, Vec::len);
    let width = targets.first().map_or(0, Vec::len);
    let mut binary = Vec::new();
    let outputs: Vec<Output<'_>> = req
        .outputs
        .iter()
        .map(|w| {
            let (datatype, shape, data) = match w.name {
                LABEL => ("INT64", vec![labels.len()], OutputData::Labels(labels)),
                CLASS => (
                    "BYTES",
                    vec![labels.len()],
                    OutputData::Names(labels, names.unwrap_or_default()),
                ),
                PREDICTION => (
                    "FP32",
                    vec![targets.len(), width],
                    OutputData::Values(targets),
                ),
                _ => (
                    "FP32",
                    vec![probabilities.len(), classes],
                    OutputData::Values(probabilities),
                ),
            };
            if !w.binary {
                return Output {
                    name: w.name,
                    datatype,
                    shape,
                    parameters: None,
                    data: Some(data),
                };
            }
            let before = binary.len();
            match data {
                OutputData::Labels(l) => {
                    binary.extend(l.iter().flat_map(|&l| i64::from(l).to_le_bytes()));
                }
                OutputData::Names(l, n) => {
                    for &i in l {
                        let name = n.get(i as usize).map_or("", String::as_str);
                        binary.extend((name.len() as u32).to_le_bytes());
                        binary.extend(name.as_bytes());
                    }
                }
                OutputData::Values(p) => {
                    binary.extend(p.iter().flatten().flat_map(|p| p.to_le_bytes()));
                }
            }
            Output {
                name: w.name,
                datatype,
                shape,
                parameters: Some(BinaryParameters {
                    binary_data_size: binary.len() - before,
                }),
                data: None,
            }
        })
        .collect();
    let doc = ResponseDoc {
        model_name: model,
        model_version: version,
        id: req.id.as_deref(),
        outputs,
    };
    // Sized for the usual answer (~16 bytes a probability) so that writing
    // it does not reallocate.
    let values = probabilities.len() * classes + targets.len() * width;
    let mut json = Vec::with_capacity(256 + 16 * (labels.len() + values));
    serde_json::to_writer(&mut json, &doc).expect("response serialises");
    Encoded { json, binary }
}

/// An inference response's JSON, written straight from the prediction.
#[derive(serde::Serialize)]
struct ResponseDoc<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<Output<'a>>,
}

#[derive(serde::Serialize)]
struct Output<'a> {
    name: &'static str,
    datatype: &'static str,
    shape: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<OutputData<'a>>,
}

#[derive(serde::Serialize)]
struct BinaryParameters {
    binary_data_size: usize,
}

/// An output's values, flat and row-major.
enum OutputData<'a> {
    Labels(&'a [u32]),
    /// The name of each row's class.
    Names(&'a [u32], &'a [String]),
    Values(&'a [Vec<f32>]),
}

impl serde::Serialize for OutputData<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            OutputData::Labels(l) => s.collect_seq(l.iter()),
            OutputData::Names(l, n) => s.collect_seq(
                l.iter()
                    .map(|&i| n.get(i as usize).map_or("", String::as_str)),
            ),
            OutputData::Values(p) => s.collect_seq(p.iter().flatten()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: InputSpec = InputSpec {
        features: 2,
        max_batch: 4,
    };

    const NUMERIC: ModelSpec = ModelSpec {
        columns: Vec::new(),
        answer: Answer::Classes {
            count: 0,
            names: None,
        },
    };

    fn parse(body: &str) -> Result<InferRequest, BadRequest> {
        parse_request(body.as_bytes(), &[], SPEC)
    }

    fn err(body: &str) -> String {
        parse(body).unwrap_err().0
    }

    #[test]
    fn flat_nested_and_integer_data() {
        let flat = parse(
            r#"{"inputs":[{"name":"input","shape":[2,2],"datatype":"FP32","data":[1,2,3,4]}]}"#,
        )
        .unwrap();
        let nested = parse(
            r#"{"id":"r1","inputs":[{"name":"input","shape":[2,2],"datatype":"INT64","data":[[1,2],[3,4]]}]}"#,
        )
        .unwrap();
        assert_eq!(flat.x, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(nested.x, flat.x);
        assert_eq!(nested.id.as_deref(), Some("r1"));
        assert_eq!(flat.rows, 2);
        assert_eq!(flat.outputs.len(), 2);
    }

    #[test]
    fn caller_mistakes_are_sentences() {
        assert!(err("{").starts_with("the request body is not valid JSON"));
        assert_eq!(
            err("[]"),
            "the request body must be a JSON object with an `inputs` array"
        );
        assert_eq!(
            err(r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}"#),
            "unknown input `x`; the model's input is `input`"
        );
        assert_eq!(
            err(r#"{"inputs":[{"name":"input","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}"#),
            "input `input` has shape [1, 3]; the model takes 2 features per row: [batch, 2]"
        );
        assert_eq!(
            err(r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1]}]}"#),
            "input `input` has 1 values; shape [1, 2] needs 2"
        );
        assert!(
            err(r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FLOAT","data":[1,2]}]}"#)
                .starts_with("unknown datatype `FLOAT`")
        );
        assert!(
            err(r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"BYTES","data":[1,2]}]}"#)
                .starts_with("datatype BYTES is not supported")
        );
        assert_eq!(
            err(
                r#"{"inputs":[{"name":"input","shape":[5,2],"datatype":"FP32","data":[1,2,3,4,5,6,7,8,9,0]}]}"#
            ),
            "the batch has 5 rows; this server accepts at most 4"
        );
        assert!(
            err(r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"INT32","data":[1.5,2]}]}"#)
                .contains("is not an integer")
        );
        assert!(
            err(
                r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP64","data":[1e300,2]}]}"#
            )
            .contains("is not a finite number")
        );
        assert!(
            err(r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":["a",2]}]}"#)
                .contains("only numbers")
        );
        assert!(
            err(r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]}],"outputs":[{"name":"logits"}]}"#)
                .starts_with("unknown output `logits`")
        );
    }

    #[test]
    fn the_scanned_parse_agrees_with_the_json_value_parse() {
        let input = |rest: &str| {
            format!(r#"{{"inputs":[{{"name":"input","shape":[2,2],"datatype":"FP32"{rest}}}]}}"#)
        };
        let docs = [
            input(r#","data":[1,2,3,4]"#),
            input(r#","data":[[1.5,-2],[3e-3,4]]"#),
            input(r#","data":[[[1],[2]],[[3],[4]]]"#),
            input(r#","data":[1,2,3]"#),
            input(r#","data":[1,2,3,1e300]"#),
            input(r#","data":null"#),
            input(r#","data":5"#),
            input(r#","data":[1,"2",3,4]"#),
            input(r#","data":[1,2,3,{}]"#),
            input(r#","data":[1,2],"data":[5,6,7,8]"#),
            input(r#","extra":{"a":[1]},"data":[1,2,3,4]"#),
            input(r#""#),
            r#"{"id":"r1","parameters":{"binary_data_output":true},"inputs":[{"name":"input","shape":[2,2],"datatype":"FP64","data":[1,2,3,4]}],"outputs":[{"name":"label"}]}"#.to_string(),
            r#"{"id":7,"inputs":[{"name":"input","shape":[2,2],"datatype":"FP32","data":[1,2,3,4]}]}"#.to_string(),
            r#"{"inputs":[{"name":"input","shape":[2,2],"datatype":"INT32","data":[1,2,3,4.5]}]}"#.to_string(),
            r#"{"inputs":[{"name":"input","shape":[2,2],"datatype":"INT32","data":[1,2,3,4]}]}"#.to_string(),
            r#"{"inputs":[{"name":"other","shape":[2,2],"datatype":"FP32","data":[1,2,3,4]}]}"#.to_string(),
            r#"{"inputs":[]}"#.to_string(),
            r#"{"inputs":null}"#.to_string(),
            r#"{"inputs":[1]}"#.to_string(),
            r#"{}"#.to_string(),
        ];
        let mut scanned = 0;
        for doc in &docs {
            let by_value = parse_value(doc.as_bytes(), &[], SPEC, &NUMERIC);
            if let Some(t) = parse_scanned(doc.as_bytes(), &[], SPEC, &NUMERIC) {
                assert_eq!(t, by_value, "{doc}");
                scanned += 1;
            }
            assert_eq!(parse(doc), by_value, "{doc}");
        }
        // Well-formed requests take the scanned path; odd `data` does not.
        assert!(scanned >= 10, "{scanned}");
        assert!(parse_scanned(docs[0].as_bytes(), &[], SPEC, &NUMERIC).is_some());
        for odd in [5, 7, 8, 14] {
            assert!(
                parse_scanned(docs[odd].as_bytes(), &[], SPEC, &NUMERIC).is_none(),
                "{}",
                docs[odd]
            );
        }
    }

    /// Nested data must nest as its shape says. Ragged rows whose values
    /// add up to the right count would otherwise shift values from one row
    /// into the next; both parses refuse them with the same sentence.
    #[test]
    fn ragged_or_mixed_nested_data_is_refused_by_both_parses() {
        let doc = |shape: &str, data: &str| {
            format!(
                r#"{{"inputs":[{{"name":"input","shape":{shape},"datatype":"FP32","data":{data}}}]}}"#
            )
        };
        let cases = [
            (
                doc("[2,2]", "[[1,2,3],[4]]"),
                "input `input` row 0 has 3 values; shape [2, 2] needs 2 in every row",
            ),
            (
                doc("[2,2]", "[[1,2],[3]]"),
                "input `input` row 1 has 1 values; shape [2, 2] needs 2 in every row",
            ),
            (
                doc("[3,2]", "[[1,2],[3],[4,5,6]]"),
                "input `input` row 1 has 1 values; shape [3, 2] needs 2 in every row",
            ),
            (
                doc("[2,2]", "[[1,2,3,4]]"),
                "input `input` row 0 has 4 values; shape [2, 2] needs 2 in every row",
            ),
            (
                doc("[2,2]", "[[],[1,2,3,4]]"),
                "input `input` row 0 has 0 values; shape [2, 2] needs 2 in every row",
            ),
            (
                doc("[2,2]", "[[1,2],3,4]"),
                "input `input` data mixes numbers and rows: item 1 is a number but item 0 is an \
                 array; send the values flat (row-major) or as one array per row",
            ),
            (
                doc("[2,2]", "[1,2,[3,4]]"),
                "input `input` data mixes numbers and rows: item 0 is a number but item 2 is an \
                 array; send the values flat (row-major) or as one array per row",
            ),
            (
                doc("[2,2]", "[[1,2],[[3],4]]"),
                "input `input` row 1 holds an array; a row is an array of numbers",
            ),
            (
                doc("[2,2]", "[[[1],[2]],[[3],[4]]]"),
                "input `input` row 0 holds an array; a row is an array of numbers",
            ),
        ];
        for (body, want) in &cases {
            assert_eq!(err(body), *want, "{body}");
            assert_eq!(
                parse_value(body.as_bytes(), &[], SPEC, &NUMERIC)
                    .unwrap_err()
                    .0,
                *want,
                "{body}"
            );
            if let Some(scanned) = parse_scanned(body.as_bytes(), &[], SPEC, &NUMERIC) {
                assert_eq!(scanned.unwrap_err().0, *want, "{body}");
            }
        }
        // Ragged rows are read by the one-pass scan and refused there.
        for (body, _) in &cases[..5] {
            assert!(
                parse_scanned(body.as_bytes(), &[], SPEC, &NUMERIC).is_some(),
                "{body}"
            );
        }
        // Rows of the declared shape, and flat data, still parse both ways.
        for data in ["[[1,2],[3,4]]", "[ [ 1 , 2 ] , [ 3 , 4 ] ]", "[1,2,3,4]"] {
            let body = doc("[2,2]", data);
            let scanned = parse_scanned(body.as_bytes(), &[], SPEC, &NUMERIC)
                .unwrap()
                .unwrap();
            assert_eq!(
                scanned,
                parse_value(body.as_bytes(), &[], SPEC, &NUMERIC).unwrap()
            );
            assert_eq!(scanned.x, [1.0, 2.0, 3.0, 4.0]);
        }
        // With binary data, `data` is not read.
        let header = r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[[1],[2,3]],"parameters":{"binary_data_size":8}}]}"#;
        let bin: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|f| f.to_le_bytes()).collect();
        assert_eq!(
            parse_request(header.as_bytes(), &bin, SPEC).unwrap().x,
            [1.0, 2.0]
        );
    }

    #[test]
    fn binary_tensor_data_extension() {
        let header = r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP64","parameters":{"binary_data_size":16}}],"outputs":[{"name":"probabilities","parameters":{"binary_data":true}}]}"#;
        let mut body = header.as_bytes().to_vec();
        body.extend_from_slice(&1.5f64.to_le_bytes());
        body.extend_from_slice(&(-2.0f64).to_le_bytes());
        let len = header.len().to_string();
        let (json, bin) = split_body(&body, Some(&len)).unwrap();
        let req = parse_request(json, bin, SPEC).unwrap();
        assert_eq!(req.x, vec![1.5, -2.0]);
        assert_eq!(
            req.outputs,
            vec![Wanted {
                name: PROBABILITIES,
                binary: true
            }]
        );

        let enc = encode_response("m", "1", &req, &[1], &[vec![0.25, 0.75]]);
        let doc: Value = serde_json::from_slice(&enc.json).unwrap();
        assert_eq!(doc["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(enc.binary.len(), 8);
        assert_eq!(
            f32::from_le_bytes(enc.binary[4..8].try_into().unwrap()),
            0.75
        );

        let short = &body[..body.len() - 1];
        let (json, bin) = split_body(short, Some(&len)).unwrap();
        assert!(
            parse_request(json, bin, SPEC)
                .unwrap_err()
                .0
                .contains("only 15 bytes follow")
        );
        assert!(split_body(&body, Some("9999")).is_err());
    }

    #[test]
    fn responses_carry_the_shortest_f32_text_and_echo_the_id() {
        let mut req = parse(r#"{"id":"r7","inputs":[{"name":"input","shape":[2,2],"datatype":"FP32","data":[1,2,3,4]}]}"#).unwrap();
        let probs = [vec![0.1f32, 0.9], vec![1.0 / 3.0, 2.0 / 3.0]];
        let enc = encode_response("m", "1", &req, &[1, 1], &probs);
        assert!(enc.binary.is_empty());
        let text = String::from_utf8(enc.json.clone()).unwrap();
        assert!(text.contains("[0.1,0.9,0.33333334,0.6666667]"), "{text}");
        let doc: Value = serde_json::from_slice(&enc.json).unwrap();
        assert_eq!(doc["model_name"], "m");
        assert_eq!(doc["model_version"], "1");
        assert_eq!(doc["id"], "r7");
        assert_eq!(doc["outputs"][0]["name"], "label");
        assert_eq!(doc["outputs"][0]["datatype"], "INT64");
        assert_eq!(doc["outputs"][0]["shape"], json!([2]));
        assert_eq!(doc["outputs"][0]["data"], json!([1, 1]));
        assert_eq!(doc["outputs"][1]["shape"], json!([2, 2]));
        let read: Vec<f32> = serde_json::from_value(doc["outputs"][1]["data"].clone()).unwrap();
        assert_eq!(read, probs.concat());

        req.id = None;
        let doc: Value =
            serde_json::from_slice(&encode_response("m", "1", &req, &[1, 1], &probs).json).unwrap();
        assert!(doc.get("id").is_none(), "{doc}");
    }

    /// serde_json's reading of `text` (`None` where it is not JSON numbers),
    /// as [`parse_value`] reads `data`.
    fn slow_numbers(text: &str) -> Option<Vec<f64>> {
        let v: Value = serde_json::from_str(text).ok()?;
        let mut out = Vec::new();
        flatten(&v, &mut out, false).ok()?;
        Some(out)
    }

    #[test]
    fn the_fast_number_scan_reads_exactly_what_serde_json_reads() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1",
            "-1",
            "5.1",
            "13.0",
            "1e5",
            "1E5",
            "1e-7",
            "-2.5E+3",
            "0.000001",
            "123456789012345678",
            "9999999999999999999",
            "18446744073709551615",
            "9007199254740993",
            "9007199254740993.0",
            "0.1e23",
            "1e22",
            "1e23",
            "4.35",
            "3.4028235e38",
            "1.17549435e-38",
            "0.30000000000000004",
            "100000000000000000000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for _ in 0..20_000 {
            let r = next();
            let x = f64::from_bits(r);
            let text = match r % 6 {
                0 if x.is_finite() => format!("{x}"),
                1 => format!("{}", (r >> 11) as f64 / (1u64 << (r % 40)) as f64),
                2 => format!("{}", f32::from_bits((r >> 32) as u32 & 0x7f7f_ffff)),
                3 => format!("{:e}", (r % 100_000) as f64 / 1000.0),
                4 => format!("-{}", r % 1_000_000_000),
                _ => format!("{}.{:03}", (r >> 20) % 1000, r % 1000),
            };
            texts.push(text);
        }
        let mut fast = 0;
        for t in &texts {
            let slow = slow_numbers(t).unwrap();
            if let Some(v) = scan::numbers(t) {
                fast += 1;
                assert_eq!(v.len(), 1, "{t}");
                assert_eq!(
                    v[0].to_bits(),
                    slow[0].to_bits(),
                    "{t}: {} vs {}",
                    v[0],
                    slow[0]
                );
            }
        }
        assert!(
            fast > texts.len() / 2,
            "only {fast} of {} took the fast path",
            texts.len()
        );

        let nested = "[[1, 2.5 ,-3e2],\n [4,\t5,6.25]]";
        assert_eq!(scan::numbers(nested), slow_numbers(nested));
        for other in [r#"[1, "2"]"#, "[1, null]", "[true]", r#"{"a": 1}"#] {
            assert_eq!(scan::numbers(other), None, "{other}");
        }
    }

    #[test]
    fn the_number_scan_takes_only_json() {
        let valid = [
            "[]",
            "[ ]",
            "[[]]",
            "[[], [1]]",
            "[1,[2,[3]]]",
            " [ 1 , 2 ] ",
            "7",
            "-0.5e-3",
        ];
        for t in valid {
            assert_eq!(scan::numbers(t), slow_numbers(t), "{t}");
            assert!(scan::numbers(t).is_some(), "{t}");
        }
        let invalid = [
            "[1,]",
            "[,1]",
            "[01]",
            "[-01]",
            "[1.]",
            "[.5]",
            "[-]",
            "[1e]",
            "[1e+]",
            "[+1]",
            "[1 2]",
            "[[1]",
            "[1]]",
            "[",
            "]",
            "",
            "[1,,2]",
            "[[1][2]]",
            "[1]x",
            "[0x1]",
            "[Infinity]",
            "[NaN]",
            "[1.5.2]",
            "[--1]",
        ];
        for t in invalid {
            assert_eq!(slow_numbers(t), None, "{t} is not JSON numbers");
            assert_eq!(scan::numbers(t), None, "{t}");
        }
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(scan::numbers(&deep), None, "deeper than the scan goes");
    }

    /// Every request the one-pass scan accepts, mangled by one or two edits,
    /// parses exactly as its JSON value does: the scan never takes a document
    /// that is not JSON, and never reads one differently.
    #[test]
    fn the_scan_agrees_with_the_json_value_parse_on_mangled_requests() {
        let docs = [
            r#"{"inputs":[{"name":"input","shape":[2,2],"datatype":"FP32","data":[[1,2.5],[-3e2,4]]}]}"#,
            r#"{ "id" : "r1" , "inputs" : [ { "name" : "input" , "shape" : [ 2 , 2 ] , "datatype" : "INT64" , "data" : [ 1 , 2 , 3 , 4 ] } ] }"#,
            r#"{"parameters":{"binary_data_output":true},"inputs":[{"datatype":"FP64","shape":[1,2],"name":"input","data":[0.5,1]}],"outputs":[{"name":"label"}]}"#,
        ];
        let edits = b"[]{},:\" 0-.e1\\x";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut scanned = 0;
        for doc in docs {
            assert!(
                parse_scanned(doc.as_bytes(), &[], SPEC, &NUMERIC).is_some(),
                "{doc}"
            );
            for _ in 0..3000 {
                let mut b = doc.as_bytes().to_vec();
                for _ in 0..1 + next(2) {
                    let at = next(b.len());
                    match next(3) {
                        0 => {
                            b.remove(at);
                        }
                        1 => b.insert(at, edits[next(edits.len())]),
                        _ => b[at] = edits[next(edits.len())],
                    }
                }
                let by_value = parse_value(&b, &[], SPEC, &NUMERIC);
                if let Some(t) = parse_scanned(&b, &[], SPEC, &NUMERIC) {
                    scanned += 1;
                    assert_eq!(t, by_value, "{}", String::from_utf8_lossy(&b));
                }
            }
        }
        assert!(
            scanned > 100,
            "only {scanned} mangled requests were scanned"
        );
    }
}
