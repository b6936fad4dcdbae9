//! The bundled tabular preprocessors (`imputer`, `one-hot`, `ordinal`, `min-max`,
//! `robust`) through the host: fitted on fixed tables, they transform new rows as
//! scikit-learn does (reference outputs in tests/data/preprocessors.expected.json,
//! written by tests/data/make_preprocessors_expected.py); their state is named
//! tensors; bad input and unknown config keys are errors that say what to do.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;
use serde_json::Value;
use tensorlet_runtime::gpu::Tensor;
use tensorlet_runtime::{DataSpec, NamedTensors, Plugin, Runtime, RuntimeConfig, Task};

/// The bundled preprocessors: (name in pipelines, file stem).
const PREPROCESSORS: [(&str, &str); 5] = [
    ("imputer", "imputer"),
    ("one-hot", "one_hot"),
    ("ordinal", "ordinal"),
    ("min-max", "min_max"),
    ("robust", "robust"),
];

struct Host {
    rt: Runtime,
    plugins: HashMap<&'static str, Plugin>,
}

impl Host {
    fn new() -> Host {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let plugins = PREPROCESSORS
            .iter()
            .map(|(name, stem)| (*name, load(&rt, stem)))
            .collect();
        Host { rt, plugins }
    }

    fn plugin(&self, name: &str) -> &Plugin {
        &self.plugins[name]
    }

    /// `rows` as a `[rows, cols]` tensor; `None` is a missing value (NaN).
    fn table(&self, rows: &[Vec<Option<f64>>]) -> Tensor {
        let cols = rows.first().map_or(0, Vec::len);
        let data = rows
            .iter()
            .flatten()
            .map(|v| v.map_or(f32::NAN, |v| v as f32))
            .collect();
        tensor(self.rt.device(), &[rows.len() as u32, cols as u32], data)
    }

    fn fit(&self, name: &str, config: &str, rows: &[Vec<Option<f64>>]) -> NamedTensors {
        self.plugin(name)
            .fit(config, &self.table(rows))
            .unwrap_or_else(|e| panic!("{name} {config}: fit failed: {e}"))
    }

    fn try_transform(
        &self,
        name: &str,
        config: &str,
        state: &NamedTensors,
        rows: &[Vec<Option<f64>>],
    ) -> Result<(Vec<u32>, Vec<f32>), String> {
        let out = self
            .plugin(name)
            .transform(config, state, &self.table(rows))
            .map_err(|e| e.to_string())?;
        Ok((out.shape().to_u32(), self.rt.device().to_vec(&out)))
    }

    /// The error of fitting `name` on `rows`.
    fn fit_error(&self, name: &str, config: &str, rows: &[Vec<Option<f64>>]) -> String {
        match self.plugin(name).fit(config, &self.table(rows)) {
            Ok(_) => panic!("{name} {config}: fit succeeded"),
            Err(e) => e.to_string(),
        }
    }

    /// The state entry `key`, as values.
    fn state(&self, state: &NamedTensors, key: &str) -> Vec<f32> {
        let (_, t) = state
            .iter()
            .find(|(n, _)| n == key)
            .unwrap_or_else(|| panic!("no state entry `{key}`"));
        self.rt.device().to_vec(t)
    }
}

fn rows(values: &[&[f64]]) -> Vec<Vec<Option<f64>>> {
    values
        .iter()
        .map(|r| r.iter().map(|v| (!v.is_nan()).then_some(*v)).collect())
        .collect()
}

fn expected() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/preprocessors.expected.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn every_preprocessor_matches_scikit_learn() {
    let host = Host::new();
    let expected = expected();
    let cases = expected["cases"].as_array().unwrap();
    let mut covered = std::collections::BTreeSet::new();
    for case in cases {
        let name = case["plugin"].as_str().unwrap();
        let config = case["config"].to_string();
        let table = |key: &str| -> Vec<Vec<Option<f64>>> {
            serde_json::from_value(case[key].clone()).unwrap()
        };
        let want = table("expected");
        let state = host.fit(name, &config, &table("fit"));
        let (shape, got) = host
            .try_transform(name, &config, &state, &table("transform"))
            .unwrap_or_else(|e| panic!("{name} {config}: {e}"));
        assert_eq!(
            shape,
            [want.len() as u32, want[0].len() as u32],
            "{name} {config}: shape"
        );
        for (i, (g, w)) in got.iter().zip(want.iter().flatten()).enumerate() {
            let (r, c) = (i / want[0].len(), i % want[0].len());
            let ok = match w {
                None => g.is_nan(),
                Some(w) => (f64::from(*g) - w).abs() <= 1e-5 * w.abs().max(1.0),
            };
            assert!(
                ok,
                "{name} {config}: row {r} column {c}: {g} vs scikit-learn {w:?}"
            );
        }
        covered.insert(name);
    }
    assert_eq!(covered.len(), PREPROCESSORS.len(), "{covered:?}");
}

/// What each one fits, as named tensors, on a table whose statistics are easy to
/// check by hand.
#[test]
fn fitted_state_is_named_tensors() {
    let host = Host::new();
    let nan = f64::NAN;
    let x = rows(&[
        &[1.0, 4.0, 3.0],
        &[nan, 4.0, 0.0],
        &[5.0, 4.0, 3.0],
        &[2.0, 4.0, 1.0],
    ]);

    let s = host.fit(
        "imputer",
        r#"{"strategy": "median", "add_indicator": true}"#,
        &x,
    );
    assert_eq!(host.state(&s, "fill"), [2.0, 4.0, 2.0]);
    assert_eq!(host.state(&s, "indicator"), [1.0, 0.0, 0.0]);
    let s = host.fit("imputer", r#"{"strategy": "most_frequent"}"#, &x);
    assert_eq!(host.state(&s, "fill"), [1.0, 4.0, 3.0]);
    assert_eq!(host.state(&s, "indicator"), [0.0, 0.0, 0.0]);

    let codes = rows(&[&[2.0, 0.0], &[0.0, 0.0], &[2.0, 0.0], &[5.0, 0.0]]);
    for name in ["one-hot", "ordinal"] {
        let s = host.fit(name, "{}", &codes);
        assert_eq!(host.state(&s, "categories"), [0.0, 2.0, 5.0, 0.0], "{name}");
        assert_eq!(host.state(&s, "sizes"), [3.0, 1.0], "{name}");
    }

    let s = host.fit("min-max", "{}", &x);
    assert_eq!(host.state(&s, "scale"), [0.25, 1.0, 1.0 / 3.0]);
    assert_eq!(host.state(&s, "offset"), [-0.25, -4.0, 0.0]);

    let s = host.fit("robust", "{}", &x);
    assert_eq!(host.state(&s, "center"), [2.0, 4.0, 2.0]);
    // Column 0 is [1, 2, 5]: quartiles 1.5 and 3.5; column 1 is constant.
    assert_eq!(host.state(&s, "scale"), [2.0, 1.0, 2.25]);
}

#[test]
fn constant_columns_do_not_divide_by_zero() {
    let host = Host::new();
    let x = rows(&[&[3.0, 1.0], &[3.0, 2.0], &[3.0, 3.0]]);
    for (name, config, want) in [
        ("min-max", "{}", [0.0f32, 0.0, 0.0]),
        (
            "min-max",
            r#"{"feature_range": [-1, 1]}"#,
            [-1.0, -1.0, -1.0],
        ),
        ("robust", "{}", [0.0, 0.0, 0.0]),
    ] {
        let state = host.fit(name, config, &x);
        let (_, y) = host.try_transform(name, config, &state, &x).unwrap();
        let col0: Vec<f32> = y.iter().step_by(2).copied().collect();
        assert_eq!(col0, want, "{name} {config}: {y:?}");
        assert!(y.iter().all(|v| v.is_finite()), "{name}: {y:?}");
    }
}

#[test]
fn imputed_rows_have_no_gaps_and_indicators_follow_the_columns() {
    let host = Host::new();
    let nan = f64::NAN;
    let fit = rows(&[&[1.0, nan, 7.0], &[3.0, 2.0, nan], &[nan, 4.0, 9.0]]);
    let config = r#"{"add_indicator": true}"#;
    let state = host.fit("imputer", config, &fit);
    let new = rows(&[&[nan, nan, nan], &[5.0, 6.0, 8.0]]);
    let (shape, y) = host.try_transform("imputer", config, &state, &new).unwrap();
    // Three imputed columns, then one indicator per column that had gaps at fit.
    assert_eq!(shape, [2, 6]);
    assert_eq!(
        y,
        [2.0, 3.0, 8.0, 1.0, 1.0, 1.0, 5.0, 6.0, 8.0, 0.0, 0.0, 0.0]
    );
}

#[test]
fn unknown_categories_are_zeros_unknown_values_or_errors() {
    let host = Host::new();
    let nan = f64::NAN;
    let fit = rows(&[&[0.0, 1.0], &[1.0, 1.0], &[2.0, 3.0]]);
    let new = rows(&[&[1.0, 3.0], &[-1.0, 2.0]]);

    let one_hot = host.fit("one-hot", "{}", &fit);
    let (shape, y) = host.try_transform("one-hot", "{}", &one_hot, &new).unwrap();
    assert_eq!(shape, [2, 5]);
    assert_eq!(y, [0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let strict = r#"{"handle_unknown": "error"}"#;
    let e = host
        .try_transform("one-hot", strict, &one_hot, &new)
        .unwrap_err();
    assert!(
        e.contains("one-hot: unknown category code -1 in column 0 (row 1)")
            && e.contains("the codes seen at fit are 0, 1, 2")
            && e.contains("handle_unknown = \"ignore\""),
        "{e}"
    );

    let state = host.fit("ordinal", "{}", &fit);
    let (_, y) = host.try_transform("ordinal", "{}", &state, &new).unwrap();
    assert_eq!(y, [1.0, 1.0, -1.0, -1.0]);
    let e = host
        .try_transform("ordinal", strict, &state, &new)
        .unwrap_err();
    assert!(
        e.contains("ordinal: unknown category code -1 in column 0 (row 1)")
            && e.contains("the codes seen at fit are 0, 1, 2"),
        "{e}"
    );
    let e = host.fit_error("ordinal", r#"{"unknown_value": 1}"#, &fit);
    assert!(
        e.contains("unknown_value = 1 is also the code of a category seen at fit in column 0"),
        "{e}"
    );
    // Only a seen code collides: with the default handling an error is not needed.
    host.fit(
        "ordinal",
        r#"{"handle_unknown": "error", "unknown_value": 1}"#,
        &fit,
    );

    // One-hot needs every value: a gap is an error that says to impute first.
    let gap = rows(&[&[0.0, 1.0], &[nan, 1.0]]);
    for e in [
        host.fit_error("one-hot", "{}", &gap),
        host.try_transform("one-hot", "{}", &one_hot, &gap)
            .unwrap_err(),
    ] {
        assert!(
            e.contains("one-hot: column 0 has a missing value (NaN) in row 1; impute it first"),
            "{e}"
        );
    }
}

#[test]
fn bad_input_and_bad_settings_are_errors_that_say_why() {
    let host = Host::new();
    let nan = f64::NAN;
    let x = rows(&[&[1.0, nan], &[2.0, nan]]);
    for strategy in ["mean", "median", "most_frequent"] {
        let e = host.fit_error("imputer", &format!(r#"{{"strategy": "{strategy}"}}"#), &x);
        assert!(
            e.contains("imputer: column 1 has no value at fit (all 2 rows are missing)")
                && e.contains("strategy = \"constant\""),
            "{e}"
        );
    }
    host.fit("imputer", r#"{"strategy": "constant"}"#, &x);
    for name in ["min-max", "robust"] {
        let e = host.fit_error(name, "{}", &x);
        assert!(e.contains("column 1 has no value at fit"), "{name}: {e}");
    }
    for (name, config, says) in [
        (
            "imputer",
            r#"{"fill_value": 3}"#,
            "`fill_value` is used only with strategy = \"constant\"",
        ),
        (
            "imputer",
            r#"{"strategy": "mode"}"#,
            "config key `strategy`: unknown variant `mode`, expected one of `mean`, `median`, \
             `most_frequent`, `constant`",
        ),
        (
            "min-max",
            r#"{"feature_range": [1, 0]}"#,
            "`feature_range` must be [low, high] with low < high, got [1, 0]",
        ),
        (
            "min-max",
            r#"{"feature_range": [0, 1, 2]}"#,
            "config key `feature_range`: invalid length 3",
        ),
        (
            "robust",
            r#"{"quantile_range": [75, 25]}"#,
            "`quantile_range` must be [q_low, q_high] with 0 <= q_low <= q_high <= 100",
        ),
        (
            "one-hot",
            r#"{"handle_unknown": "use_encoded_value"}"#,
            "unknown variant `use_encoded_value`, expected `ignore` or `error`",
        ),
    ] {
        let e = host.fit_error(name, config, &rows(&[&[1.0], &[2.0]]));
        assert!(e.contains(says), "{name} {config}: {e}");
    }

    // A batch with other columns than the fitted ones.
    let fit = rows(&[&[0.0, 1.0], &[1.0, 2.0]]);
    for (name, _) in PREPROCESSORS {
        let state = host.fit(name, "{}", &fit);
        let e = host
            .try_transform(name, "{}", &state, &rows(&[&[0.0]]))
            .unwrap_err();
        assert!(
            e.contains(&format!(
                "{name}: fitted on [rows, 2] but got x of shape [1, 1]"
            )),
            "{e}"
        );
    }
}

/// Every bundled plugin decodes its config with a declared schema: a misspelled key
/// is an error naming it and the keys the plugin knows.
#[test]
fn unknown_config_keys_are_errors_naming_the_known_ones() {
    let host = Host::new();
    let x = rows(&[&[0.0, 1.0], &[1.0, 2.0]]);
    for (name, known) in [
        ("imputer", "add_indicator, fill_value, strategy"),
        ("one-hot", "handle_unknown"),
        ("ordinal", "handle_unknown, unknown_value"),
        ("min-max", "feature_range"),
        ("robust", "quantile_range, with_centering, with_scaling"),
    ] {
        let e = host.fit_error(name, r#"{"stratgey": "median"}"#, &x);
        assert!(
            e.contains(&format!(
                "unknown config key `stratgey`; the known keys are: {known}"
            )),
            "{name}: {e}"
        );
        // transform checks too, with the state of a good config.
        let state = host.fit(name, "{}", &x);
        let e = host
            .try_transform(name, r#"{"stratgey": 1}"#, &state, &x)
            .unwrap_err();
        assert!(e.contains("unknown config key `stratgey`"), "{name}: {e}");
    }

    let dev = host.rt.device();
    let x = tensor(dev, &[2, 2], vec![0.0, 1.0, 1.0, 2.0]);
    for stem in ["standardize", "passthrough"] {
        let e = load(&host.rt, stem)
            .fit(r#"{"with_mean": false}"#, &x)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown config key `with_mean`; this plugin takes no config keys"),
            "{stem}: {e}"
        );
    }
    let spec = DataSpec {
        features: 2,
        outputs: 3,
        task: Task::Classification,
        seed: 0,
    };
    for (stem, config, says) in [
        (
            "mlp",
            r#"{"hiden": [128]}"#,
            "unknown config key `hiden`; the known keys are: hidden",
        ),
        (
            "softmax_regression",
            r#"{"init_sdt": 0.1}"#,
            "unknown config key `init_sdt`; the known keys are: init_std",
        ),
    ] {
        let e = load(&host.rt, stem)
            .init(config, spec)
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{stem}: {e}");
    }
    let e = load(&host.rt, "onnx_predict")
        .predict(r#"{"grpah": "model"}"#, &vec![], &x)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown config key `grpah`; the known keys are: graph, input, output, softmax"),
        "{e}"
    );
}
