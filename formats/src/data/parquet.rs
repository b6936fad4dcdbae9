//! Parquet tables through the Apache Arrow `parquet` crate: only the columns
//! a load needs are read, a record batch at a time, and their types come
//! from the file (integers and floats as numbers, booleans, strings and
//! dictionary-encoded strings such as pandas' categoricals); a null or a
//! NaN is a missing value. Errors name the file, the row (1-based) and the
//! column.

use std::cell::Cell;
use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Once;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    ArrowPrimitiveType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{CellBatch, Cells, Field, Source, data_err};
use crate::{Error, Result};

/// Rows read per record batch.
const BATCH_ROWS: usize = 8192;

/// A Parquet file.
pub(super) struct ParquetSource {
    path: PathBuf,
    header: Vec<String>,
    types: Vec<DataType>,
}

impl ParquetSource {
    /// Opens `path` and reads its schema.
    pub(super) fn open(path: &Path) -> Result<Self> {
        let builder = builder(path)?;
        let fields = builder.schema().fields();
        if fields.is_empty() {
            return Err(data_err(path, None, None, "the file has no columns".into()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            header: fields.iter().map(|f| f.name().clone()).collect(),
            types: fields.iter().map(|f| f.data_type().clone()).collect(),
        })
    }
}

/// A Parquet file as the reader sees it, except that reading at its end is
/// an error rather than 0 bytes: a corrupt page header can declare a list of
/// up to 2³¹ fields, each of which parquet's thrift decoder would otherwise
/// try to read from the end of the file (a 7 KB file then takes minutes).
struct EndIsError(File);

impl parquet::file::reader::Length for EndIsError {
    fn len(&self) -> u64 {
        parquet::file::reader::Length::len(&self.0)
    }
}

impl parquet::file::reader::ChunkReader for EndIsError {
    type T = NoReadPastEnd<<File as parquet::file::reader::ChunkReader>::T>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        self.0.get_read(start).map(NoReadPastEnd)
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        self.0.get_bytes(start, length)
    }
}

/// A reader whose read at the end fails (see [`EndIsError`]).
struct NoReadPastEnd<R>(R);

impl<R: std::io::Read> std::io::Read for NoReadPastEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.read(buf)? {
            0 if !buf.is_empty() => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "a page reads past the end of the file",
            )),
            n => Ok(n),
        }
    }
}

fn builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<EndIsError>> {
    let file = EndIsError(File::open(path).map_err(|e| Error::io(path, e))?);
    decoding(|| ParquetRecordBatchReaderBuilder::try_new(file))
        .map_err(|p| data_err(path, None, None, format!("is malformed: {p}")))?
        .map_err(|e| data_err(path, None, None, format!("cannot be read as Parquet: {e}")))
}

thread_local! {
    /// Whether this thread is inside [`decoding`] (its panics are not printed).
    static DECODING: Cell<bool> = const { Cell::new(false) };
}

/// Runs a step of the `parquet` decoder, with a panic turned into an error
/// naming it: on some malformed files (found by `fuzz/`'s `parquet` target)
/// the decoder asserts where it should return an error, and a bad file must
/// not take the process down. The panic is not printed (the error says it);
/// panics elsewhere are printed as before.
fn decoding<T>(step: impl FnOnce() -> T) -> std::result::Result<T, String> {
    static QUIET: Once = Once::new();
    QUIET.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !DECODING.get() {
                previous(info);
            }
        }));
    });
    DECODING.set(true);
    let result = catch_unwind(AssertUnwindSafe(step));
    DECODING.set(false);
    result.map_err(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        format!("the Parquet decoder gave up ({why}); write the file again with pyarrow or pandas")
    })
}

/// One column of a record batch, ready to be read cell by cell.
enum View<'a> {
    /// Numbers as f64; NaN for a null.
    Numbers(Vec<f64>),
    /// A float column without nulls, as stored.
    Floats(&'a [f32]),
    /// A double column without nulls, as stored.
    Doubles(&'a [f64]),
    Bools(&'a arrow_array::BooleanArray),
    Strings(Strings<'a>),
    /// Dictionary-encoded strings: each row's index into `values`.
    Dictionary {
        array: &'a dyn Array,
        keys: Vec<usize>,
        values: Strings<'a>,
    },
    /// A column of nulls only.
    Nulls,
}

enum Strings<'a> {
    Utf8(&'a arrow_array::StringArray),
    Large(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
}

impl Strings<'_> {
    fn of(a: &dyn Array) -> Option<Strings<'_>> {
        match a.data_type() {
            DataType::Utf8 => Some(Strings::Utf8(a.as_string::<i32>())),
            DataType::LargeUtf8 => Some(Strings::Large(a.as_string::<i64>())),
            DataType::Utf8View => Some(Strings::View(a.as_string_view())),
            _ => None,
        }
    }

    fn get(&self, i: usize) -> Field<'_> {
        let (null, text) = match self {
            Strings::Utf8(a) => (a.is_null(i), a.value(i)),
            Strings::Large(a) => (a.is_null(i), a.value(i)),
            Strings::View(a) => (a.is_null(i), a.value(i)),
        };
        if null {
            Field::Missing
        } else {
            Field::Text(text)
        }
    }
}

fn numbers<T: ArrowPrimitiveType>(a: &dyn Array, as_f64: fn(T::Native) -> f64) -> Vec<f64> {
    let p = a.as_primitive::<T>();
    (0..p.len())
        .map(|i| {
            if p.is_null(i) {
                f64::NAN
            } else {
                as_f64(p.value(i))
            }
        })
        .collect()
}

/// Whether tensorlet reads a column of type `t`.
fn supported(t: &DataType) -> bool {
    match t {
        DataType::Float64
        | DataType::Float32
        | DataType::Int64
        | DataType::Int32
        | DataType::Int16
        | DataType::Int8
        | DataType::UInt64
        | DataType::UInt32
        | DataType::UInt16
        | DataType::UInt8
        | DataType::Boolean
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Null => true,
        DataType::Dictionary(_, values) => {
            matches!(
                **values,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            )
        }
        _ => false,
    }
}

fn view(a: &ArrayRef) -> View<'_> {
    let a = a.as_ref();
    match a.data_type() {
        DataType::Float64 if a.null_count() == 0 => {
            View::Doubles(a.as_primitive::<Float64Type>().values())
        }
        DataType::Float32 if a.null_count() == 0 => {
            View::Floats(a.as_primitive::<Float32Type>().values())
        }
        DataType::Float64 => View::Numbers(numbers::<Float64Type>(a, |v| v)),
        DataType::Float32 => View::Numbers(numbers::<Float32Type>(a, f64::from)),
        DataType::Int64 => View::Numbers(numbers::<Int64Type>(a, |v| v as f64)),
        DataType::Int32 => View::Numbers(numbers::<Int32Type>(a, f64::from)),
        DataType::Int16 => View::Numbers(numbers::<Int16Type>(a, f64::from)),
        DataType::Int8 => View::Numbers(numbers::<Int8Type>(a, f64::from)),
        DataType::UInt64 => View::Numbers(numbers::<UInt64Type>(a, |v| v as f64)),
        DataType::UInt32 => View::Numbers(numbers::<UInt32Type>(a, f64::from)),
        DataType::UInt16 => View::Numbers(numbers::<UInt16Type>(a, f64::from)),
        DataType::UInt8 => View::Numbers(numbers::<UInt8Type>(a, f64::from)),
        DataType::Boolean => View::Bools(a.as_boolean()),
        DataType::Dictionary(..) => {
            let d = a.as_any_dictionary();
            match Strings::of(d.values().as_ref()) {
                Some(values) => View::Dictionary {
                    array: a,
                    keys: if d.values().is_empty() {
                        vec![0; a.len()]
                    } else {
                        d.normalized_keys()
                    },
                    values,
                },
                None => View::Nulls,
            }
        }
        _ => match Strings::of(a) {
            Some(s) => View::Strings(s),
            None => View::Nulls,
        },
    }
}

impl View<'_> {
    fn get(&self, i: usize) -> Field<'_> {
        match self {
            View::Numbers(v) if v[i].is_nan() => Field::Missing,
            View::Numbers(v) => Field::Number(v[i]),
            View::Doubles(v) if v[i].is_nan() => Field::Missing,
            View::Doubles(v) => Field::Number(v[i]),
            View::Floats(v) if v[i].is_nan() => Field::Missing,
            View::Floats(v) => Field::Number(f64::from(v[i])),
            View::Bools(a) if a.is_null(i) => Field::Missing,
            View::Bools(a) => Field::Bool(a.value(i)),
            View::Strings(s) => s.get(i),
            View::Dictionary { array, .. } if array.is_null(i) => Field::Missing,
            View::Dictionary { keys, values, .. } => values.get(keys[i]),
            View::Nulls => Field::Missing,
        }
    }
}

impl Source for ParquetSource {
    fn header(&self) -> &[String] {
        &self.header
    }

    fn scan(
        &self,
        columns: &[usize],
        row: &mut dyn FnMut(usize, &[Field<'_>]) -> Result<()>,
    ) -> Result<usize> {
        self.batches(columns, &mut |rows, n, views| {
            let mut fields = Vec::with_capacity(views.len());
            for i in 0..n {
                fields.clear();
                fields.extend(views.iter().map(|v| v.get(i)));
                row(rows + i + 1, &fields)?;
            }
            Ok(())
        })
    }

    fn scan_batches(&self, columns: &[usize], batch: &mut CellBatch<'_>) -> Option<Result<usize>> {
        Some(self.batches(columns, &mut |rows, n, views| {
            let getters: Vec<Getter<'_>> = views.iter().map(getter).collect();
            let cells: Vec<Cells<'_, '_>> = views
                .iter()
                .zip(&getters)
                .map(|(v, g)| match v {
                    View::Numbers(n) => Cells::Numbers(n),
                    View::Doubles(n) => Cells::Numbers(n),
                    View::Floats(n) => Cells::Floats(n),
                    _ => Cells::Fields(g.as_ref()),
                })
                .collect();
            batch(rows + 1, n, &cells)
        }))
    }

    fn err_at(&self, row: usize, _column: usize, message: String) -> Error {
        data_err(&self.path, None, None, format!("row {row}: {message}"))
    }

    fn header_err(&self, _column: Option<usize>, message: String) -> Error {
        data_err(&self.path, None, None, message)
    }
}

/// What [`ParquetSource::batches`] calls with each record batch: the rows
/// before it, its rows, the views of the columns.
type ViewBatch<'c> = dyn FnMut(usize, usize, &[View<'_>]) -> Result<()> + 'c;

/// A column's fields, one row at a time.
type Getter<'a> = Box<dyn Fn(usize) -> Field<'a> + 'a>;

fn getter<'a>(v: &'a View<'a>) -> Getter<'a> {
    Box::new(move |i| v.get(i))
}

impl ParquetSource {
    /// Calls `batch(rows_before, rows, views)` with each record batch's views of
    /// `columns`, in that order. Returns the number of rows.
    fn batches(&self, columns: &[usize], batch: &mut ViewBatch<'_>) -> Result<usize> {
        for &c in columns {
            if !supported(&self.types[c]) {
                return Err(data_err(
                    &self.path,
                    None,
                    None,
                    format!(
                        "column `{}` has type {}, which tensorlet does not read; convert it to \
                         numbers, true/false or strings (a date, for example, to its year, \
                         month and day as numbers)",
                        self.header[c], self.types[c]
                    ),
                ));
            }
        }
        let builder = builder(&self.path)?;
        // The batch holds the selected columns in file order.
        let mut in_file: Vec<usize> = columns.to_vec();
        in_file.sort_unstable();
        in_file.dedup();
        let at: Vec<usize> = columns
            .iter()
            .map(|c| in_file.binary_search(c).unwrap_or(0))
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), in_file.iter().copied());
        let mut reader = builder
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| data_err(&self.path, None, None, format!("cannot be read: {e}")))?;
        let mut rows = 0;
        loop {
            let next = decoding(|| reader.next()).map_err(|p| {
                data_err(
                    &self.path,
                    None,
                    None,
                    format!("is malformed after row {rows}: {p}"),
                )
            })?;
            let Some(got) = next else {
                break;
            };
            let got = got.map_err(|e| {
                data_err(
                    &self.path,
                    None,
                    None,
                    format!("cannot be read after row {rows}: {e}"),
                )
            })?;
            let n = got.num_rows();
            let views: Vec<View> = at.iter().map(|&j| view(got.column(j))).collect();
            batch(rows, n, &views)?;
            rows += n;
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::types::Int8Type;
    use arrow_array::{
        ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int32Array, RecordBatch,
        StringArray, TimestampSecondArray,
    };
    use parquet::arrow::ArrowWriter;

    use super::super::{ColumnType, Options, Task, load, load_features, load_labels, schema};
    use crate::task::Labels;

    fn write(columns: Vec<(&str, ArrayRef)>) -> tempfile::NamedTempFile {
        let f = tempfile::Builder::new()
            .suffix(".parquet")
            .tempfile()
            .unwrap();
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let mut w = ArrowWriter::try_new(f.reopen().unwrap(), batch.schema(), None).unwrap();
        // Two row groups and two batches: rows count on across them.
        w.write(&batch.slice(0, 2)).unwrap();
        w.flush().unwrap();
        w.write(&batch.slice(2, batch.num_rows() - 2)).unwrap();
        w.close().unwrap();
        f
    }

    fn table() -> tempfile::NamedTempFile {
        let island: DictionaryArray<Int8Type> =
            vec![Some("Dream"), Some("Biscoe"), None, Some("Dream")]
                .into_iter()
                .collect();
        write(vec![
            (
                "bill",
                Arc::new(Float64Array::from(vec![
                    Some(39.1),
                    None,
                    Some(f64::NAN),
                    Some(46.5),
                ])) as ArrayRef,
            ),
            (
                "year",
                Arc::new(Int32Array::from(vec![2007, 2008, 2009, 2007])) as ArrayRef,
            ),
            ("island", Arc::new(island) as ArrayRef),
            (
                "male",
                Arc::new(BooleanArray::from(vec![
                    Some(true),
                    Some(false),
                    None,
                    Some(true),
                ])) as ArrayRef,
            ),
            (
                "species",
                Arc::new(StringArray::from(vec![
                    "Adelie",
                    "Gentoo",
                    "Adelie",
                    "Chinstrap",
                ])) as ArrayRef,
            ),
        ])
    }

    /// Every row of a stream, as `load` reads the whole table.
    fn streamed(
        path: &std::path::Path,
        opts: &Options,
        rows: usize,
    ) -> (Vec<u32>, Vec<f32>, Vec<f32>) {
        let stream = super::super::Stream::open(path, opts).unwrap();
        let (mut firsts, mut x, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        stream
            .for_each_chunk(rows, &mut |c| -> crate::Result<()> {
                firsts.push(c.first as u32);
                x.extend_from_slice(c.x);
                labels.extend_from_slice(c.labels);
                Ok(())
            })
            .unwrap();
        (firsts, x, labels)
    }

    #[test]
    fn a_stream_reads_in_chunks_what_load_reads_at_once() {
        let f = table();
        let whole = load(f.path(), &Options::default()).unwrap();
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for rows in [1, 3, 4, 100] {
            let (firsts, x, labels) = streamed(f.path(), &Options::default(), rows);
            assert_eq!(bits(&x), bits(&whole.x), "chunks of {rows}");
            assert_eq!(labels, whole.label_values(), "chunks of {rows}");
            let expected: Vec<u32> = (0..4).step_by(rows).collect();
            assert_eq!(firsts, expected);
        }
        let stream = super::super::Stream::open(f.path(), &Options::default()).unwrap();
        assert_eq!(stream.rows(), 4);
        assert_eq!(stream.classes(), whole.classes());
        assert_eq!(stream.dataset().schema, whole.schema);
        assert_eq!(stream.dataset().class_names, whole.class_names);
        assert!(stream.dataset().x.is_empty());
        // The same table as CSV streams the same rows.
        let csv = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
        std::fs::write(
            csv.path(),
            "bill,year,island,male,species\n39.1,2007,Dream,true,Adelie\n,2008,Biscoe,false,Gentoo\n\
             NaN,2009,,,Adelie\n46.5,2007,Dream,true,Chinstrap\n",
        )
        .unwrap();
        let (_, x, labels) = streamed(csv.path(), &Options::default(), 3);
        assert_eq!(bits(&x), bits(&whole.x));
        assert_eq!(labels, whole.label_values());
        // An error in the callback stops the reading and is returned.
        let mut seen = 0;
        let e = stream
            .for_each_chunk(1, &mut |_| {
                seen += 1;
                Err(crate::Error::Pipeline {
                    path: "p".into(),
                    message: "enough".into(),
                })
            })
            .unwrap_err();
        assert_eq!((seen, e.to_string()), (1, "pipeline p: enough".to_string()));
    }

    #[test]
    fn typed_columns_nulls_and_dictionaries() {
        let f = table();
        let d = load(f.path(), &Options::default()).unwrap();
        assert_eq!(d.feature_names, ["bill", "year", "island", "male"]);
        assert_eq!(
            d.schema.iter().map(|c| c.type_name()).collect::<Vec<_>>(),
            ["numeric", "numeric", "categorical", "boolean"]
        );
        assert_eq!(
            d.schema[2].kind,
            ColumnType::Categorical {
                categories: vec!["Biscoe".into(), "Dream".into()]
            }
        );
        assert_eq!(
            d.schema.iter().map(|c| c.missing).collect::<Vec<_>>(),
            [2, 0, 1, 1]
        );
        let bits: Vec<String> = d.x.iter().map(|v| format!("{v}")).collect();
        assert_eq!(
            bits,
            [
                "39.1", "2007", "1", "1", //
                "NaN", "2008", "0", "0", //
                "NaN", "2009", "NaN", "NaN", //
                "46.5", "2007", "1", "1"
            ]
        );
        assert_eq!(d.task, Task::Classification);
        assert_eq!(
            d.class_names.as_deref().unwrap(),
            ["Adelie", "Chinstrap", "Gentoo"]
        );
        assert_eq!(d.y, [0, 2, 0, 1]);

        // Prediction input in the model's schema, and labels for eval.
        let feats = load_features(f.path(), None, Some(&d.schema), None).unwrap();
        assert_eq!(feats.rows, 4);
        assert_eq!(feats.x[..4], d.x[..4]);
        let labels = load_labels(
            f.path(),
            (&["species".to_string()], Task::Classification),
            d.class_names.as_deref(),
            None,
        )
        .unwrap();
        assert!(matches!(labels, Labels::Classes(y) if y == [0, 2, 0, 1]));

        let s = schema(f.path(), None).unwrap();
        assert_eq!(
            (s.format.as_str(), s.rows, s.columns.len()),
            ("parquet", 4, 5)
        );
        assert_eq!(s.columns[4].type_name(), "categorical");
    }

    #[test]
    fn errors_name_the_row_and_column() {
        let f = table();
        let regression = Options {
            label: Some("species".into()),
            task: Some(Task::Regression),
            ..Options::default()
        };
        let e = load(f.path(), &regression).unwrap_err().to_string();
        assert!(
            e.ends_with(": row 1: label `Adelie` in column `species` is not a number; regression needs numeric targets (declare [data] task = \"classification\" for classes)"),
            "{e}"
        );
        let missing_label = Options {
            label: Some("island".into()),
            ..Options::default()
        };
        let e = load(f.path(), &missing_label).unwrap_err().to_string();
        assert!(
            e.ends_with(": row 3: the label column `island` has a missing value (1 rows in all); drop those rows or fill them in"),
            "{e}"
        );
        let stamps = write(vec![
            (
                "when",
                Arc::new(TimestampSecondArray::from(vec![1, 2, 3])) as ArrayRef,
            ),
            ("y", Arc::new(Int32Array::from(vec![0, 1, 0])) as ArrayRef),
        ]);
        let e = load(stamps.path(), &Options::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("column `when` has type Timestamp(s), which tensorlet does not read")
                || e.contains(
                    "column `when` has type Timestamp(Second, None), which tensorlet does not read"
                ),
            "{e}"
        );
        let not_parquet = tempfile::Builder::new()
            .suffix(".parquet")
            .tempfile()
            .unwrap();
        std::fs::write(not_parquet.path(), "a,b\n1,2\n").unwrap();
        let e = load(not_parquet.path(), &Options::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be read as Parquet"), "{e}");
    }
}
