//! Requests with one input per feature column, as MLServer's pandas codec
//! and tritonclient send a table: each input named after its column, of
//! shape `[batch]` (or `[batch, 1]`), numbers in any numeric datatype,
//! `BOOL` for booleans and `BYTES` for strings, as JSON or as binary tensor
//! data (`BYTES` elements as a 4-byte little-endian length and the bytes).
//! A JSON `null`, and a string such as `""` or `NA`, is a missing value,
//! which reaches the model's preprocessors as NaN.

use serde_json::{Map, Value};

use super::{
    BadRequest, ColumnKind, ColumnSpec, DType, InferRequest, InputSpec, ModelSpec, bad,
    column_names, request_id, wanted_outputs,
};

/// Strings read as a missing value (as the table readers read them).
const MISSING: &[&str] = &["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"];

/// One value of a column's input.
#[derive(Debug, PartialEq)]
enum Cell {
    Missing,
    Number(f64),
    Bool(bool),
    Text(String),
}

/// The datatypes a column's input may have.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Number(DType),
    Bool,
    Bytes,
}

fn kind(name: &str, datatype: &str) -> Result<Kind, BadRequest> {
    match datatype {
        "BOOL" => Ok(Kind::Bool),
        "BYTES" => Ok(Kind::Bytes),
        "FP16" | "BF16" => bad(format!(
            "input `{name}`: datatype {datatype} is not supported; send FP32, FP64 or an integer \
             type"
        )),
        other => match DType::parse(other) {
            Ok(d) => Ok(Kind::Number(d)),
            Err(_) => bad(format!(
                "input `{name}`: unknown datatype `{other}`; the Open Inference Protocol \
                 datatypes are BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64, BYTES"
            )),
        },
    }
}

/// Parses a request whose `inputs` are the model's columns.
pub(super) fn parse(
    doc: &Map<String, Value>,
    inputs: &[Value],
    mut binary: &[u8],
    spec: InputSpec,
    model: &ModelSpec,
) -> Result<InferRequest, BadRequest> {
    let id = request_id(doc)?;
    let columns = &model.columns;
    let mut given: Vec<Option<Vec<f32>>> = vec![None; columns.len()];
    let mut rows: Option<(usize, &str)> = None;
    for input in inputs {
        let Value::Object(input) = input else {
            return bad("each input must be an object with name, shape, datatype and data");
        };
        let Some(name) = input.get("name").and_then(Value::as_str) else {
            return bad(format!(
                "each input needs a `name`: one of the model's columns ({})",
                column_names(model)
            ));
        };
        let Some(c) = columns.iter().position(|c| c.name == name) else {
            return bad(format!(
                "unknown input `{name}`; the model takes one input per column: {}",
                column_names(model)
            ));
        };
        if given[c].is_some() {
            return bad(format!("input `{name}` is given twice"));
        }
        let shape = super::shape_of(input.get("shape"))
            .map_err(|BadRequest(m)| BadRequest(format!("input `{name}`: {m}")))?;
        let n = match shape[..] {
            [n] | [n, 1] => n,
            _ => {
                return bad(format!(
                    "input `{name}` has shape {shape:?}; a column's input is [batch] or [batch, 1]"
                ));
            }
        };
        match rows {
            None => rows = Some((n, name)),
            Some((r, first)) if r != n => {
                return bad(format!(
                    "input `{name}` has {n} rows but input `{first}` has {r}; every column \
                     needs one value per row"
                ));
            }
            Some(_) => {}
        }
        if n > spec.max_batch {
            return bad(format!(
                "the batch has {n} rows; this server accepts at most {}",
                spec.max_batch
            ));
        }
        let Some(datatype) = input.get("datatype").and_then(Value::as_str) else {
            return bad(format!("input `{name}` needs a `datatype`"));
        };
        let k = kind(name, datatype)?;
        let col = &columns[c];
        match (&col.kind, k) {
            (ColumnKind::Numeric, Kind::Bytes | Kind::Bool) => {
                return bad(format!(
                    "input `{name}` is {datatype}, but the model reads column `{name}` as numbers; \
                     send FP32 (or another numeric datatype)"
                ));
            }
            (ColumnKind::Boolean, Kind::Bytes) => {
                return bad(format!(
                    "input `{name}` is BYTES, but the model reads column `{name}` as true/false; \
                     send BOOL"
                ));
            }
            _ => {}
        }
        let cells = match input
            .get("parameters")
            .and_then(|p| p.get("binary_data_size"))
            .and_then(Value::as_u64)
        {
            Some(size) => {
                let size = size as usize;
                if size > binary.len() {
                    return bad(format!(
                        "input `{name}`: binary_data_size is {size} but only {} bytes follow the \
                         JSON header",
                        binary.len()
                    ));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                binary_cells(name, k, mine, n)?
            }
            None => match input.get("data") {
                Some(data) => {
                    let mut cells = Vec::with_capacity(n);
                    json_cells(name, k, data, &mut cells)?;
                    cells
                }
                None => return bad(format!("input `{name}` has no `data`")),
            },
        };
        if cells.len() != n {
            return bad(format!(
                "input `{name}` has {} values; shape {shape:?} needs {n}",
                cells.len()
            ));
        }
        given[c] = Some(
            cells
                .into_iter()
                .enumerate()
                .map(|(row, cell)| encode(col, row, cell))
                .collect::<Result<_, _>>()?,
        );
    }
    let absent: Vec<&str> = columns
        .iter()
        .zip(&given)
        .filter(|(_, g)| g.is_none())
        .map(|(c, _)| c.name.as_str())
        .collect();
    if !absent.is_empty() {
        return bad(format!(
            "the request has no input for column{} {}; the model takes one input per column: {}",
            if absent.len() == 1 { "" } else { "s" },
            absent
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", "),
            column_names(model)
        ));
    }
    if !binary.is_empty() {
        return bad(format!(
            "{} bytes follow the JSON header that no input claims",
            binary.len()
        ));
    }
    let rows = rows.map_or(0, |(r, _)| r);
    if rows == 0 {
        return bad("the batch is empty");
    }
    let given: Vec<Vec<f32>> = given.into_iter().flatten().collect();
    let mut x = Vec::with_capacity(rows * given.len());
    for r in 0..rows {
        x.extend(given.iter().map(|col| col[r]));
    }
    Ok(InferRequest {
        id,
        rows,
        x,
        outputs: wanted_outputs(doc, model)?,
    })
}

/// The values of `data`, flat or one array per row, in order.
fn json_cells(name: &str, k: Kind, data: &Value, out: &mut Vec<Cell>) -> Result<(), BadRequest> {
    match data {
        Value::Array(items) => {
            for item in items {
                json_cells(name, k, item, out)?;
            }
            Ok(())
        }
        Value::Null => {
            out.push(Cell::Missing);
            Ok(())
        }
        Value::Number(v) if k != Kind::Bytes => {
            let f = v.as_f64().unwrap_or(f64::NAN);
            if matches!(k, Kind::Number(d) if d.is_integer()) && f.fract() != 0.0 {
                return bad(format!(
                    "input `{name}`: `{v}` is not an integer, as the datatype says"
                ));
            }
            out.push(Cell::Number(f));
            Ok(())
        }
        Value::Bool(b) if k == Kind::Bool => {
            out.push(Cell::Bool(*b));
            Ok(())
        }
        Value::String(s) if k == Kind::Bytes => {
            out.push(if MISSING.contains(&s.trim()) {
                Cell::Missing
            } else {
                Cell::Text(s.clone())
            });
            Ok(())
        }
        other => bad(format!(
            "input `{name}` data holds `{other}`, which its datatype {} does not",
            match k {
                Kind::Bytes => "BYTES (strings)",
                Kind::Bool => "BOOL (true/false)",
                Kind::Number(_) => "(numbers)",
            }
        )),
    }
}

/// The `n` values of binary tensor data `b`.
fn binary_cells(name: &str, k: Kind, b: &[u8], n: usize) -> Result<Vec<Cell>, BadRequest> {
    match k {
        Kind::Number(d) => {
            if b.len() != n * d.size() {
                return bad(format!(
                    "input `{name}`: binary_data_size is {} bytes; {n} values need {}",
                    b.len(),
                    n * d.size()
                ));
            }
            Ok(b.chunks_exact(d.size())
                .map(|c| Cell::Number(d.decode(c)))
                .collect())
        }
        Kind::Bool => {
            if b.len() != n {
                return bad(format!(
                    "input `{name}`: binary_data_size is {} bytes; {n} BOOL values need {n}",
                    b.len()
                ));
            }
            Ok(b.iter().map(|&v| Cell::Bool(v != 0)).collect())
        }
        Kind::Bytes => {
            let mut cells = Vec::with_capacity(n);
            let mut rest = b;
            while !rest.is_empty() {
                let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                    return bad(format!(
                        "input `{name}`: BYTES element {} is cut short (each is a 4-byte \
                         little-endian length and that many bytes)",
                        cells.len()
                    ));
                };
                let len = u32::from_le_bytes(*len) as usize;
                if len > tail.len() {
                    return bad(format!(
                        "input `{name}`: BYTES element {} says {len} bytes but {} remain",
                        cells.len(),
                        tail.len()
                    ));
                }
                let (text, tail) = tail.split_at(len);
                let Ok(text) = std::str::from_utf8(text) else {
                    return bad(format!(
                        "input `{name}`: BYTES element {} is not UTF-8 text",
                        cells.len()
                    ));
                };
                cells.push(if MISSING.contains(&text.trim()) {
                    Cell::Missing
                } else {
                    Cell::Text(text.to_string())
                });
                rest = tail;
            }
            Ok(cells)
        }
    }
}

/// A cell as the model's column encodes it: a number as itself, a boolean
/// as 0 or 1, a category as its code (-1 when the model does not know it),
/// a missing value as NaN.
fn encode(col: &ColumnSpec, row: usize, cell: Cell) -> Result<f32, BadRequest> {
    let name = &col.name;
    Ok(match (&col.kind, cell) {
        (_, Cell::Missing) => f32::NAN,
        (ColumnKind::Numeric, Cell::Number(v)) => {
            let f = v as f32;
            if !f.is_finite() {
                return bad(format!(
                    "input `{name}` row {row}: `{v}` is not a finite number"
                ));
            }
            f
        }
        (ColumnKind::Boolean, Cell::Bool(b)) => f32::from(u8::from(b)),
        (ColumnKind::Boolean, Cell::Number(v)) if v == 0.0 || v == 1.0 => v as f32,
        (ColumnKind::Boolean, Cell::Number(v)) => {
            return bad(format!(
                "input `{name}` row {row}: `{v}` is not true/false (or 0/1)"
            ));
        }
        (ColumnKind::Categorical(categories), cell) => {
            let text = match cell {
                Cell::Text(t) => t,
                Cell::Number(v) => format!("{v}"),
                Cell::Bool(b) => b.to_string(),
                Cell::Missing => return Ok(f32::NAN),
            };
            categories.binary_search(&text).map_or(-1.0, |i| i as f32)
        }
        (ColumnKind::Numeric | ColumnKind::Boolean, other) => {
            return bad(format!(
                "input `{name}` row {row}: {other:?} does not fit the column's type"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{
        Answer, CLASS, LABEL, PREDICTION, PROBABILITIES, Prediction, encode_prediction,
        model_metadata, parse_request_for,
    };
    use super::*;

    fn penguins() -> ModelSpec {
        ModelSpec {
            columns: vec![
                ColumnSpec {
                    name: "island".into(),
                    kind: ColumnKind::Categorical(vec!["Biscoe".into(), "Dream".into()]),
                },
                ColumnSpec {
                    name: "bill".into(),
                    kind: ColumnKind::Numeric,
                },
                ColumnSpec {
                    name: "male".into(),
                    kind: ColumnKind::Boolean,
                },
            ],
            answer: Answer::Classes {
                count: 2,
                names: Some(vec!["Adelie".into(), "Gentoo".into()]),
            },
        }
    }

    const SPEC: InputSpec = InputSpec {
        features: 3,
        max_batch: 8,
    };

    fn parse(doc: serde_json::Value, model: &ModelSpec) -> Result<InferRequest, BadRequest> {
        parse_request_for(&serde_json::to_vec(&doc).unwrap(), &[], SPEC, model)
    }

    fn bits(x: &[f32]) -> Vec<String> {
        x.iter().map(|v| format!("{v}")).collect()
    }

    #[test]
    fn one_input_per_column_in_any_order_with_gaps() {
        let model = penguins();
        let req = parse(
            json!({"inputs": [
                {"name": "male", "shape": [3], "datatype": "BOOL", "data": [true, null, false]},
                {"name": "bill", "shape": [3, 1], "datatype": "FP64", "data": [[39.5], [null], [41]]},
                {"name": "island", "shape": [3], "datatype": "BYTES", "data": ["Dream", "Torgersen", "NA"]},
            ]}),
            &model,
        )
        .unwrap();
        assert_eq!(req.rows, 3);
        assert_eq!(
            bits(&req.x),
            ["1", "39.5", "1", "-1", "NaN", "NaN", "NaN", "41", "0"]
        );
        let names: Vec<&str> = req.outputs.iter().map(|w| w.name).collect();
        assert_eq!(names, [LABEL, PROBABILITIES, CLASS]);
    }

    #[test]
    fn tritonclient_binary_bytes_and_bool() {
        let model = penguins();
        let header = json!({"inputs": [
            {"name": "island", "shape": [2, 1], "datatype": "BYTES", "parameters": {"binary_data_size": 19}},
            {"name": "bill", "shape": [2, 1], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
            {"name": "male", "shape": [2, 1], "datatype": "BOOL", "parameters": {"binary_data_size": 2}},
        ], "outputs": [{"name": "class", "parameters": {"binary_data": true}}]});
        let mut bin = Vec::new();
        for s in ["Biscoe", "Dream"] {
            bin.extend((s.len() as u32).to_le_bytes());
            bin.extend(s.as_bytes());
        }
        bin.extend(40.5f32.to_le_bytes());
        bin.extend(38.0f32.to_le_bytes());
        bin.extend([0u8, 1]);
        let json = serde_json::to_vec(&header).unwrap();
        let req = parse_request_for(&json, &bin, SPEC, &model).unwrap();
        assert_eq!(bits(&req.x), ["0", "40.5", "0", "1", "38", "1"]);

        let names = ["Adelie".to_string(), "Gentoo".to_string()];
        let probs = [vec![0.9f32, 0.1], vec![0.2, 0.8]];
        let enc = encode_prediction(
            "m",
            "1",
            &req,
            Prediction::Classes {
                labels: &[0, 1],
                probabilities: &probs,
                names: Some(&names),
            },
        );
        let doc: serde_json::Value = serde_json::from_slice(&enc.json).unwrap();
        assert_eq!(doc["outputs"][0]["datatype"], "BYTES");
        assert_eq!(doc["outputs"][0]["parameters"]["binary_data_size"], 20);
        let mut want = Vec::new();
        for s in names {
            want.extend((s.len() as u32).to_le_bytes());
            want.extend(s.as_bytes());
        }
        assert_eq!(enc.binary, want);

        let short = &bin[..bin.len() - 3];
        let e = parse_request_for(&json, short, SPEC, &model).unwrap_err().0;
        assert!(
            e.contains("binary_data_size is 8 but only 7 bytes follow"),
            "{e}"
        );
    }

    #[test]
    fn mistakes_name_the_input() {
        let model = penguins();
        let err = |doc| parse(doc, &model).unwrap_err().0;
        assert_eq!(
            err(json!({"inputs": [
                {"name": "island", "shape": [1], "datatype": "BYTES", "data": ["Dream"]},
                {"name": "bill", "shape": [1], "datatype": "FP32", "data": [40]},
            ]})),
            "the request has no input for column `male`; the model takes one input per column: \
             island, bill, male"
        );
        assert_eq!(
            err(json!({"inputs": [
                {"name": "bill", "shape": [1], "datatype": "BYTES", "data": ["40"]},
            ]})),
            "input `bill` is BYTES, but the model reads column `bill` as numbers; send FP32 (or \
             another numeric datatype)"
        );
        assert_eq!(
            err(json!({"inputs": [
                {"name": "island", "shape": [2], "datatype": "BYTES", "data": ["Dream", "Biscoe"]},
                {"name": "bill", "shape": [1], "datatype": "FP32", "data": [40]},
            ]})),
            "input `bill` has 1 rows but input `island` has 2; every column needs one value per row"
        );
        assert_eq!(
            err(json!({"inputs": [
                {"name": "beak", "shape": [1], "datatype": "FP32", "data": [1]},
                {"name": "bill", "shape": [1], "datatype": "FP32", "data": [40]},
            ]})),
            "unknown input `beak`; the model takes one input per column: island, bill, male"
        );
        assert_eq!(
            err(json!({"inputs": [
                {"name": "island", "shape": [1], "datatype": "BYTES", "data": [3]},
            ]})),
            "input `island` data holds `3`, which its datatype BYTES (strings) does not"
        );
        assert!(
            err(json!({"inputs": [
                {"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
            ]}))
            .starts_with("the model has text columns (island), which the single `input` tensor")
        );
        assert_eq!(
            err(json!({"inputs": [
                {"name": "island", "shape": [1], "datatype": "BYTES", "data": ["Dream"]},
                {"name": "bill", "shape": [1], "datatype": "FP32", "data": [40]},
                {"name": "male", "shape": [1], "datatype": "BOOL", "data": [true]},
            ], "outputs": [{"name": "prediction"}]})),
            "unknown output `prediction`; the model's outputs are `label`, `probabilities` and \
             `class`"
        );
    }

    #[test]
    fn regression_answers_a_prediction_and_metadata_lists_columns() {
        let numeric = ModelSpec {
            columns: vec![
                ColumnSpec {
                    name: "age".into(),
                    kind: ColumnKind::Numeric,
                },
                ColumnSpec {
                    name: "bmi".into(),
                    kind: ColumnKind::Numeric,
                },
            ],
            answer: Answer::Targets { count: 1 },
        };
        let spec = InputSpec {
            features: 2,
            max_batch: 8,
        };
        // The single `input` and one input per column read alike.
        let single = parse_request_for(
            br#"{"inputs":[{"name":"input","shape":[2,2],"datatype":"FP32","data":[1,2,3,4]}]}"#,
            &[],
            spec,
            &numeric,
        )
        .unwrap();
        let per_column = parse_request_for(
            br#"{"inputs":[{"name":"bmi","shape":[2],"datatype":"FP32","data":[2,4]},{"name":"age","shape":[2],"datatype":"INT64","data":[1,3]}]}"#,
            &[],
            spec,
            &numeric,
        )
        .unwrap();
        assert_eq!(single.x, per_column.x);
        assert_eq!(single.outputs, per_column.outputs);
        assert_eq!(single.outputs[0].name, PREDICTION);
        let enc = encode_prediction(
            "d",
            "1",
            &single,
            Prediction::Targets(&[vec![151.5], vec![75.25]]),
        );
        let doc: serde_json::Value = serde_json::from_slice(&enc.json).unwrap();
        assert_eq!(
            doc["outputs"],
            json!([{"name": "prediction", "datatype": "FP32", "shape": [2, 1], "data": [151.5, 75.25]}])
        );

        let names = ["age".to_string(), "bmi".to_string()];
        let meta = model_metadata("d", "1", &names, &numeric);
        assert_eq!(meta["inputs"][0]["name"], "input");
        assert_eq!(meta["inputs"][0]["parameters"]["columns"][1]["name"], "bmi");
        assert_eq!(
            meta["outputs"],
            json!([{"name": "prediction", "datatype": "FP32", "shape": [-1, 1]}])
        );
        let meta = model_metadata("p", "1", &[], &penguins());
        let inputs: Vec<(&str, &str)> = meta["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["name"].as_str().unwrap(), i["datatype"].as_str().unwrap()))
            .collect();
        assert_eq!(
            inputs,
            [("island", "BYTES"), ("bill", "FP32"), ("male", "BOOL")]
        );
        assert_eq!(meta["outputs"][2]["name"], "class");
    }
}
