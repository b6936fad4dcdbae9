//! What the table targets share: the bytes become a file of the format's
//! extension (the readers take paths, as `train`, `predict` and `dataset add`
//! give them), read the three ways tensorlet reads a table.

use std::io::Write;

use tensorlet_formats::Error;
use tensorlet_formats::data::{self, Options};

/// Reads `bytes` as a table file ending in `.{extension}`: its schema (as
/// `dataset add`), a training set (as `train`) and prediction input with the
/// schema (as `predict`). Errors must name the file; what loads must hold as
/// many values as its rows and columns say.
pub fn read(bytes: &[u8], extension: &str) {
    let mut file = tempfile::Builder::new()
        .suffix(&format!(".{extension}"))
        .tempfile()
        .expect("a temporary file");
    file.write_all(bytes).expect("written");
    let path = file.path();
    let named = |e: Error| {
        let text = e.to_string();
        assert!(
            text.contains(&*path.to_string_lossy()),
            "an error that does not name the file: {text}"
        );
    };
    let schema = match data::schema(path, None) {
        Ok(s) => Some(s),
        Err(e) => {
            named(e);
            None
        }
    };
    match data::load(path, &Options::default()) {
        Ok(ds) => {
            assert_eq!(ds.x.len(), ds.rows() * ds.features());
            assert_eq!(ds.schema.len(), ds.features());
            if let Some(names) = &ds.class_names {
                assert!(ds.y.iter().all(|&c| (c as usize) < names.len()));
            }
        }
        Err(e) => named(e),
    }
    if let Some(schema) = schema {
        // The features of a model trained on this table: every column but
        // the last (the label).
        let (label, features) = match schema.columns.split_last() {
            Some((label, features)) => (Some(label.name.as_str()), features),
            None => (None, &[][..]),
        };
        match data::load_features(path, label, Some(features), None) {
            Ok(f) => assert_eq!(f.x.len(), f.rows * f.names.len()),
            Err(e) => named(e),
        }
    }
}
