//! Pipeline files: any text parses to a pipeline or an error that names the
//! pipeline file, never a panic; an accepted pipeline written back as TOML
//! reads back the same.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tensorlet_formats::Pipeline;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let origin = Path::new("fuzz/pipeline.toml");
    // An empty base leaves `path` stages as written, so they read back the same.
    match Pipeline::parse(text, Path::new(""), origin) {
        Ok(p) => {
            let written = toml::to_string(&p).expect("a pipeline serialises");
            let again = Pipeline::parse(&written, Path::new(""), origin)
                .unwrap_or_else(|e| panic!("{e}\n--- written ---\n{written}"));
            assert_eq!(again, p, "written back:\n{written}");
            let _ = p.data.options();
        }
        Err(e) => assert!(e.to_string().starts_with("pipeline fuzz/pipeline.toml")),
    }
});
