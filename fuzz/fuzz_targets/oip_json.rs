//! The OIP JSON request decoder against serde_json's reading of the same
//! bytes. The one-pass scanner (`paths::scanned`) must read a request to
//! exactly what serde_json into a value (`paths::value`) reads it to, must
//! hand on (not accept) anything serde_json rejects, and no request may
//! panic the full decoder, with or without per-column inputs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorlet_oip::{
    Answer, ColumnKind, ColumnSpec, InputSpec, ModelSpec, parse_request, parse_request_for, paths,
};

fuzz_target!(|json: &[u8]| {
    let valid_json = serde_json::from_slice::<serde_json::Value>(json).is_ok();
    for features in [1, 4] {
        let spec = InputSpec {
            features,
            max_batch: 64,
        };
        let value = paths::value(json, spec);
        if !valid_json {
            assert!(
                value.is_err(),
                "accepted what serde_json rejects: {value:?}"
            );
        }
        if let Some(scanned) = paths::scanned(json, spec) {
            assert_eq!(scanned, value, "the scanner and serde_json disagree");
        }
        let full = parse_request(json, &[], spec);
        assert_eq!(
            full, value,
            "parse_request differs from the serde_json path"
        );
    }
    let columns = ModelSpec {
        columns: vec![
            ColumnSpec {
                name: "x".into(),
                kind: ColumnKind::Numeric,
            },
            ColumnSpec {
                name: "flag".into(),
                kind: ColumnKind::Boolean,
            },
            ColumnSpec {
                name: "color".into(),
                kind: ColumnKind::Categorical(vec!["blue".into(), "red".into()]),
            },
        ],
        answer: Answer::Classes {
            count: 3,
            names: Some(vec!["a".into(), "b".into(), "c".into()]),
        },
    };
    let spec = InputSpec {
        features: 3,
        max_batch: 64,
    };
    if let Ok(r) = parse_request_for(json, &[], spec, &columns) {
        assert!(valid_json);
        assert_eq!(r.x.len(), r.rows * 3, "rows times columns values");
    }
});
