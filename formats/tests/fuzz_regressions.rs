//! The tables that once crashed a reader's fuzz target
//! (`fuzz/regressions/<target>/`, found by `bench/fuzz.sh`), read the ways
//! tensorlet reads a table: each is now an error that names the file, not a
//! panic.

use std::path::Path;

use tensorlet_formats::data::{self, Options};

#[test]
fn tables_that_crashed_a_reader_are_errors_now() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    let mut seen = 0;
    for format in ["csv", "parquet", "jsonl"] {
        let Ok(entries) = std::fs::read_dir(root.join(format)) else {
            continue;
        };
        for entry in entries {
            let input = entry.unwrap().path();
            let file = tempfile::Builder::new()
                .suffix(&format!(".{format}"))
                .tempfile()
                .unwrap();
            std::fs::copy(&input, file.path()).unwrap();
            let named = |e: tensorlet_formats::Error| {
                let text = e.to_string();
                assert!(
                    text.contains(&*file.path().to_string_lossy()),
                    "{}: {text}",
                    input.display()
                );
                text
            };
            let schema = data::schema(file.path(), None).map_err(named);
            let load = data::load(file.path(), &Options::default()).map_err(named);
            assert!(
                schema.is_err() || load.is_err(),
                "{} reads without an error",
                input.display()
            );
            seen += 1;
        }
    }
    assert!(seen > 0, "no regression inputs under {}", root.display());
}

#[test]
fn a_parquet_decoder_panic_is_an_error_that_says_so() {
    let input = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions/parquet/decoder-assert-def-levels.parquet");
    let file = tempfile::Builder::new()
        .suffix(".parquet")
        .tempfile()
        .unwrap();
    std::fs::copy(&input, file.path()).unwrap();
    let e = data::schema(file.path(), None).unwrap_err().to_string();
    assert!(e.contains("is malformed"), "{e}");
    assert!(e.contains("the Parquet decoder gave up"), "{e}");
    // The reader still works for the next file.
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/penguins.parquet");
    assert_eq!(data::schema(&good, None).unwrap().rows, 344);
}
