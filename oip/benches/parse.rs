//! How fast an inference request's JSON is read, by each way the crate can
//! read it, on requests of the sizes models are served with.
//!
//! Three ways: the crate's hand-written one-pass scanner (`parse_request`'s
//! path for a well-formed request), serde_json with a `DeserializeSeed` that
//! decodes `data` straight into a `Vec<f32>` (below), and serde_json into a
//! `Value` (the path of a request the scanner hands on). All three must read
//! each request to the same `InferRequest`.
//!
//! `cargo bench -p tensorlet-oip [-- <case>]` (std only: no benchmark
//! framework). Each case runs every path for about `TENSORLET_BENCH_SECS`
//! seconds (default 1) in alternating rounds of ~10 ms and prints the median time per
//! request as a Markdown table.

use std::hint::black_box;
use std::time::{Duration, Instant};
use tensorlet_oip::{BadRequest, InferRequest, InputSpec, paths};

/// The request read by serde_json with a `DeserializeSeed`, then checked as
/// `parse_request` checks it. `None` where a server would fall back to the
/// JSON value parse for its error message (not taken by these requests; an
/// integer datatype with fractional data is one such case).
fn seeded(json: &[u8], spec: InputSpec) -> Option<Result<InferRequest, BadRequest>> {
    let seed::Members { doc, input, data } = seed::request(json)?;
    let numbers = data?;
    let rows = numbers.nesting()?;
    Some(paths::checked(&doc, &input, numbers.x, rows, spec))
}

/// serde_json reading the request: members other than the one input's
/// `data` become JSON values, as the scanner keeps them, and `data` is
/// decoded straight into `f32`s by a `DeserializeSeed`, without a JSON value
/// per number.
mod seed {
    use serde::de::{
        self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
    };
    use serde_json::{Map, Value};
    use std::fmt;

    /// A request's members, its one input's members, and that input's data.
    pub struct Members {
        pub doc: Map<String, Value>,
        pub input: Map<String, Value>,
        pub data: Option<Numbers>,
    }

    /// An input's `data`, read by [`Data`].
    #[derive(Default)]
    pub struct Numbers {
        /// The numbers in text order, as `f32`.
        pub x: Vec<f32>,
        /// Whether any number has a fractional part (as an `f64`).
        pub fractional: bool,
        /// The length of each array at depth 2 (a row).
        rows: Vec<usize>,
        /// Values inside rows.
        in_rows: usize,
        /// Whether an array lies deeper than the rows.
        deeper: bool,
    }

    impl Numbers {
        /// How the numbers nest: `Some(None)` flat, `Some(Some(rows))` one
        /// array per row, `None` neither (the JSON value parse words that).
        pub fn nesting(&self) -> Option<Option<Vec<usize>>> {
            if self.rows.is_empty() {
                return (!self.deeper).then_some(None);
            }
            (!self.deeper && self.in_rows == self.x.len()).then(|| Some(self.rows.clone()))
        }

        fn push(&mut self, v: f64) {
            self.fractional |= v.fract() != 0.0;
            self.x.push(v as f32);
        }
    }

    /// The members of a request with exactly one input whose `data` is
    /// numbers in (nested) arrays. `None` for anything else: invalid JSON,
    /// other shapes of request, data of other values. The caller then parses
    /// the request as a JSON value, which says what is wrong.
    pub fn request(b: &[u8]) -> Option<Members> {
        let mut de = serde_json::Deserializer::from_slice(b);
        // About as many numbers as a body of single digits holds.
        let members = Request {
            capacity: b.len() / 4,
        }
        .deserialize(&mut de)
        .ok()?;
        de.end().ok()?;
        Some(members)
    }

    /// The request object.
    struct Request {
        capacity: usize,
    }

    impl<'de> DeserializeSeed<'de> for Request {
        type Value = Members;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Members, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Request {
        type Value = Members;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an inference request")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
            let (mut doc, mut input) = (Map::new(), None);
            while let Some(key) = map.next_key::<String>()? {
                if key == "inputs" {
                    // Of a key given twice the last value counts, as in a JSON value.
                    input = Some(map.next_value_seed(Inputs {
                        capacity: self.capacity,
                    })?);
                } else {
                    doc.insert(key, map.next_value()?);
                }
            }
            let (input, data) = input.ok_or_else(|| de::Error::missing_field("inputs"))?;
            Ok(Members { doc, input, data })
        }
    }

    /// `inputs`: an array of exactly one input.
    struct Inputs {
        capacity: usize,
    }

    type Input = (Map<String, Value>, Option<Numbers>);

    impl<'de> DeserializeSeed<'de> for Inputs {
        type Value = Input;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Input, D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de> Visitor<'de> for Inputs {
        type Value = Input;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("one input")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Input, A::Error> {
            let input = seq
                .next_element_seed(InputSeed {
                    capacity: self.capacity,
                })?
                .ok_or_else(|| de::Error::invalid_length(0, &self))?;
            if seq.next_element::<IgnoredAny>()?.is_some() {
                return Err(de::Error::invalid_length(2, &self));
            }
            Ok(input)
        }
    }

    /// One input object: `data` through [`Data`], the rest as JSON values.
    struct InputSeed {
        capacity: usize,
    }

    impl<'de> DeserializeSeed<'de> for InputSeed {
        type Value = Input;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Input, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for InputSeed {
        type Value = Input;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an input object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Input, A::Error> {
            let (mut members, mut data) = (Map::new(), None);
            while let Some(key) = map.next_key::<String>()? {
                if key == "data" {
                    let mut numbers = Numbers {
                        x: Vec::with_capacity(self.capacity),
                        ..Numbers::default()
                    };
                    map.next_value_seed(Data {
                        numbers: &mut numbers,
                        depth: 0,
                    })?;
                    data = Some(numbers);
                } else {
                    members.insert(key, map.next_value()?);
                }
            }
            Ok((members, data))
        }
    }

    /// A number, or numbers in nested arrays, at `depth` (0: `data` itself).
    /// serde_json bounds the nesting (128 levels).
    struct Data<'a> {
        numbers: &'a mut Numbers,
        depth: usize,
    }

    impl<'de> DeserializeSeed<'de> for Data<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Data<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("numbers in arrays")
        }
        fn visit_u64<E>(self, v: u64) -> Result<(), E> {
            self.numbers.push(v as f64);
            Ok(())
        }
        fn visit_i64<E>(self, v: i64) -> Result<(), E> {
            self.numbers.push(v as f64);
            Ok(())
        }
        fn visit_f64<E>(self, v: f64) -> Result<(), E> {
            self.numbers.push(v);
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let depth = self.depth + 1;
            let start = self.numbers.x.len();
            self.numbers.deeper |= depth > 2;
            while seq
                .next_element_seed(Data {
                    numbers: &mut *self.numbers,
                    depth,
                })?
                .is_some()
            {}
            if depth == 2 {
                let len = self.numbers.x.len() - start;
                self.numbers.rows.push(len);
                self.numbers.in_rows += len;
            }
            Ok(())
        }
    }
}

/// A request of `rows` × `features` values like standardized or normalized
/// features (the shortest text of a random `f32`, some zeros and small
/// integers), one array per row.
fn synthetic(rows: usize, features: usize) -> String {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (rows * 31 + features) as u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let data: Vec<String> = (0..rows)
        .map(|_| {
            let row: Vec<String> = (0..features)
                .map(|_| {
                    let v = next();
                    match v % 8 {
                        0 => "0".to_string(),
                        1 => format!("{}", v % 256),
                        _ => format!("{}", (v >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0),
                    }
                })
                .collect();
            format!("[{}]", row.join(","))
        })
        .collect();
    body(rows, features, &data.join(","))
}

/// The request `bench/serve.sh` sends: the first two rows of a bundled data
/// set, as Python's `json.dumps` writes them (`5.1, 3.5, …`).
fn served(csv: &str, features: usize) -> String {
    let path = format!("{}/../data/{csv}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let data: Vec<String> = text
        .lines()
        .skip(1)
        .take(2)
        .map(|line| {
            let row: Vec<String> = line
                .split(',')
                .take(features)
                .map(|v| format!("{:?}", v.parse::<f64>().expect("a number")))
                .collect();
            format!("[{}]", row.join(", "))
        })
        .collect();
    body(2, features, &data.join(", "))
}

fn body(rows: usize, features: usize, data: &str) -> String {
    format!(
        r#"{{"inputs": [{{"name": "input", "shape": [{rows}, {features}], "datatype": "FP32", "data": [{data}]}}]}}"#
    )
}

/// Median time of one call of each of `fs`, over rounds of about 10 ms
/// each. The rounds of the paths alternate, so that other work on the
/// machine slows each of them alike.
fn time(budget: Duration, fs: &[&dyn Fn()]) -> Vec<Duration> {
    let per_round: Vec<u32> = fs
        .iter()
        .map(|f| {
            let mut n = 1u32;
            loop {
                let t = Instant::now();
                for _ in 0..n {
                    f();
                }
                if t.elapsed() >= Duration::from_millis(10) || n >= 1 << 20 {
                    return n;
                }
                n *= 2;
            }
        })
        .collect();
    let mut samples = vec![Vec::new(); fs.len()];
    let start = Instant::now();
    while start.elapsed() < budget || samples[0].len() < 5 {
        for ((f, &n), samples) in fs.iter().zip(&per_round).zip(&mut samples) {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            samples.push(t.elapsed() / n);
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort();
            s[s.len() / 2]
        })
        .collect()
}

fn main() {
    let secs: f64 = std::env::var("TENSORLET_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let budget = Duration::from_secs_f64(secs);
    // `cargo bench` passes `--bench`; a filter picks cases by name.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    println!("| request | body | path | time per request | MB/s |");
    println!("|---|---:|---|---:|---:|");
    let cases = [
        ("iris 2 × 4 (bench/serve.sh)", served("iris.csv", 4), 4, 2),
        (
            "digits 2 × 64 (bench/serve.sh)",
            served("digits.csv", 64),
            64,
            2,
        ),
        ("64 × 64", synthetic(64, 64), 64, 64),
        ("1024 × 784", synthetic(1024, 784), 784, 1024),
    ];
    for (name, body, features, rows) in &cases {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let spec = InputSpec {
            features: *features,
            max_batch: *rows,
        };
        let json = body.as_bytes();
        let want = paths::value(json, spec).expect("the request is valid");
        let parses: [(&str, &dyn Fn() -> _); 3] = [
            ("scanner", &|| {
                paths::scanned(json, spec).map(|r| r.unwrap())
            }),
            ("serde seed", &|| seeded(json, spec).map(|r| r.unwrap())),
            ("serde Value", &|| Some(paths::value(json, spec).unwrap())),
        ];
        for (path, parse) in &parses {
            assert_eq!(
                parse().as_ref(),
                Some(&want),
                "{path} reads {name} differently"
            );
        }
        let runs: Vec<Box<dyn Fn()>> = parses
            .iter()
            .map(|(_, parse)| Box::new(move || drop(black_box(parse()))) as Box<dyn Fn()>)
            .collect();
        let runs: Vec<&dyn Fn()> = runs.iter().map(|f| f.as_ref()).collect();
        for ((path, _), t) in parses.iter().zip(time(budget, &runs)) {
            let mb_s = json.len() as f64 / t.as_secs_f64() / 1e6;
            println!(
                "| {name} | {} | {path} | {} | {mb_s:.0} |",
                size(json.len()),
                duration(t)
            );
        }
    }
}

fn size(bytes: usize) -> String {
    match bytes {
        b if b < 10_000 => format!("{b} B"),
        b if b < 10_000_000 => format!("{:.0} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

fn duration(t: Duration) -> String {
    let ns = t.as_nanos() as f64;
    match ns {
        n if n < 10_000.0 => format!("{n:.0} ns"),
        n if n < 10_000_000.0 => format!("{:.1} µs", n / 1e3),
        n => format!("{:.2} ms", n / 1e6),
    }
}
