//! Plugins written in Python, JavaScript and C, built by `plugins/build-polyglot.sh`
//! as ABI 0.2 components, loaded through the same host as the Rust ones and mixed
//! with them in pipelines.
//!
//! Each is the twin of a Rust plugin doing the same host ops in the same order, so
//! the results must match it:
//! - the preprocessor (`standardize`) and the predictors (`softmax-regression`'s
//!   and `mlp`'s forward passes) in the mixed pipelines
//!   `plugins/pipelines/{iris,digits}-polyglot.toml`;
//! - the forward-only models (softmax regression in JavaScript and C, the MLP and
//!   the CNN in Python), trained by the host in
//!   `plugins/pipelines/{iris-js,iris-c,digits-py,digits-cnn-py}.toml` to the same
//!   params and predictions as `iris.toml`, `digits.toml` and `digits-cnn.toml`;
//!   the Python CNN also step for step with batch normalization and dropout, and
//!   the CNN's forward pass in JavaScript and C (predictors over the N-D ops:
//!   convolution, batch normalization, pooling) predicts like the Rust model;
//! - every N-D op wrapper of the Python, JavaScript and C SDKs, run once on a small
//!   input by the `nd-ops` preprocessors, against values computed here;
//! - the trainers that write their own update with the host's gradients
//!   (`softmax-sgd` in each language), step for step the same as the Rust test
//!   trainer `misbehave` in its `grad` mode; a refused gradient reaches the host
//!   as each language's error.
//!
//! Two tests do the same through the CLI: one trains and predicts the model
//! pipelines from local files, the other signs and publishes the components (and
//! the Rust models) with `tensorlet publish` and trains and predicts with
//! pipelines whose every stage is a `ref`.
//!
//! The components are read from `$TENSORLET_POLYGLOT_DIR` (default `plugins/out/`).
//! Every test here needs them, so each is ignored by default (`cargo test … --
//! --ignored` runs them; `.ci/run` builds the components first) and fails,
//! saying how to build them, when run without them. See `docs/testing.md`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{LazyLock, OnceLock};

use common::*;
use tensorlet_runtime::gpu::optim::{LrSchedule, Optimizer, Rule, Schedule};
use tensorlet_runtime::model::{self, Model, Predictions};
use tensorlet_runtime::pipeline::PluginSource;
use tensorlet_runtime::train::PipelinePlugins;
use tensorlet_runtime::{
    Abi, DataSpec, HostTraining, NamedTensors, Pipeline, Plugin, Runtime, RuntimeConfig, Task,
    data, train,
};

/// Python preprocessor, the twin of `standardize`.
const PYTHON_STANDARDIZE: &str = "standardize-py.wasm";
/// Python model, the twin of the `mlp` model.
const PYTHON_MLP: &str = "mlp-model-py.wasm";
/// Python model, the twin of the `cnn` model.
const PYTHON_CNN: &str = "cnn-model-py.wasm";
/// Python trainer asking the host for its gradients.
const PYTHON_SGD: &str = "softmax-sgd-py.wasm";
/// Python preprocessor running every N-D op of the SDK once.
const PYTHON_ND_OPS: &str = "nd-ops-py.wasm";
/// JavaScript predictor, the twin of `softmax-regression`'s forward pass.
const JS_SOFTMAX_REGRESSION: &str = "softmax-regression-js.wasm";
/// JavaScript model, the twin of the `softmax-regression` model.
const JS_MODEL: &str = "softmax-regression-model-js.wasm";
/// JavaScript trainer asking the host for its gradients.
const JS_SGD: &str = "softmax-sgd-js.wasm";
/// JavaScript predictor, the twin of the `cnn` model's forward pass.
const JS_CNN: &str = "cnn-js.wasm";
/// JavaScript preprocessor running every N-D op of the SDK once.
const JS_ND_OPS: &str = "nd-ops-js.wasm";
/// C predictor, the twin of `mlp`'s forward pass.
const C_MLP: &str = "mlp-c.wasm";
/// C model, the twin of the `softmax-regression` model.
const C_MODEL: &str = "softmax-regression-model-c.wasm";
/// C trainer asking the host for its gradients.
const C_SGD: &str = "softmax-sgd-c.wasm";
/// C predictor, the twin of the `cnn` model's forward pass.
const C_CNN: &str = "cnn-c.wasm";
/// C preprocessor running every N-D op of the SDK once.
const C_ND_OPS: &str = "nd-ops-c.wasm";

/// Every component the build script writes, with the world it is built for.
const COMPONENTS: [(&str, &str); 15] = [
    (PYTHON_STANDARDIZE, "preprocessor"),
    (PYTHON_MLP, "model"),
    (PYTHON_CNN, "model"),
    (PYTHON_SGD, "trainer"),
    (PYTHON_ND_OPS, "preprocessor"),
    (JS_SOFTMAX_REGRESSION, "predictor"),
    (JS_MODEL, "model"),
    (JS_SGD, "trainer"),
    (JS_CNN, "predictor"),
    (JS_ND_OPS, "preprocessor"),
    (C_MLP, "predictor"),
    (C_MODEL, "model"),
    (C_SGD, "trainer"),
    (C_CNN, "predictor"),
    (C_ND_OPS, "preprocessor"),
];

fn polyglot_dir() -> PathBuf {
    std::env::var_os("TENSORLET_POLYGLOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/out"))
}

/// One runtime for the whole file, so that each component (the Python ones are
/// 18 MB) is compiled once, when a test first needs it; compiled components are
/// also kept on disk under the cargo target directory for the next run.
struct Polyglot {
    rt: Runtime,
    dir: PathBuf,
    loaded: [OnceLock<Plugin>; COMPONENTS.len()],
}

impl Polyglot {
    /// The component `file`, compiled and linked.
    fn plugin(&self, file: &str) -> &Plugin {
        let i = COMPONENTS
            .iter()
            .position(|(f, _)| *f == file)
            .unwrap_or_else(|| panic!("{file} is not a polyglot component"));
        self.loaded[i].get_or_init(|| {
            let bytes = std::fs::read(self.dir.join(file)).unwrap();
            load_bytes(&self.rt, file.trim_end_matches(".wasm"), bytes)
                .unwrap_or_else(|e| panic!("{file}: {e}"))
        })
    }
}

static POLYGLOT: LazyLock<Result<Polyglot, String>> = LazyLock::new(|| {
    let dir = polyglot_dir();
    let missing: Vec<&str> = COMPONENTS
        .iter()
        .map(|(f, _)| *f)
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the polyglot plugins {missing:?} are not in {}; build them with \
             `bash plugins/build-polyglot.sh` (see docs/testing.md)",
            dir.display()
        ));
    }
    let rt = Runtime::new(RuntimeConfig {
        cache_dir: Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("polyglot-components")),
        ..RuntimeConfig::default()
    })
    .unwrap();
    Ok(Polyglot {
        rt,
        dir,
        loaded: Default::default(),
    })
});

/// The components; a test run without them fails, saying how to build them.
fn polyglot() -> &'static Polyglot {
    POLYGLOT.as_ref().unwrap_or_else(|why| panic!("{why}"))
}

/// Bundled plugins from build.rs, `path` stages from disk (both let through the
/// registry's audited unsigned path by `unsigned_resolver`).
fn resolve(s: &PluginSource) -> tensorlet_runtime::Result<(String, Vec<u8>)> {
    Ok(match s {
        PluginSource::Bundled(name) => (name.clone(), plugin_bytes(&name.replace('-', "_"))),
        PluginSource::Path(p) => (
            p.file_stem().unwrap().to_string_lossy().into_owned(),
            std::fs::read(p).unwrap(),
        ),
        PluginSource::Registry(r) => panic!("these pipelines use local plugins, not {r}"),
    })
}

/// What a trained pipeline produced: its state, its params and its predictions
/// for every row of the data set, through a saved and reloaded model.
struct Outcome {
    state: Vec<(String, Vec<f32>)>,
    params: Vec<(String, Vec<f32>)>,
    /// The last epoch's validation accuracy.
    val_accuracy: f32,
    /// The kept epoch (whose params are saved) and its validation accuracy.
    kept: (u32, f32),
    predictions: Predictions,
}

fn values(rt: &Runtime, named: &NamedTensors) -> Vec<(String, Vec<f32>)> {
    named
        .iter()
        .map(|(n, t)| (n.clone(), rt.device().to_vec(t).unwrap()))
        .collect()
}

fn run(rt: &Runtime, pipeline: &Pipeline, csv: &str, out: &Path) -> Outcome {
    let ds =
        data::load_labeled(&data(csv), pipeline.data.label.as_ref().map(|l| l.first())).unwrap();
    let plugins = PipelinePlugins::load(pipeline, rt, &unsigned_resolver(resolve)).unwrap();
    let trained = train::train(
        rt.device(),
        &plugins,
        &ds,
        &pipeline.training,
        ds.classes(),
        &mut (),
    )
    .unwrap_or_else(|e| panic!("training {}: {e}", pipeline.pipeline.name));
    model::save(out, rt.device(), pipeline, &plugins, &ds, &trained).unwrap();
    let model = Model::load(rt, out, &unsigned_component).unwrap();
    let predictions = model.predict(rt.device(), ds.x.clone(), ds.rows()).unwrap();
    let kept = trained
        .history
        .iter()
        .find(|m| m.epoch == trained.epoch)
        .and_then(|m| m.val_accuracy)
        .unwrap();
    Outcome {
        kept: (trained.epoch, kept),
        state: values(rt, &trained.state),
        params: values(rt, &trained.params),
        val_accuracy: trained.history.last().unwrap().val_accuracy.unwrap(),
        predictions,
    }
}

fn assert_close(what: &str, got: &[(String, Vec<f32>)], want: &[(String, Vec<f32>)], tol: f32) {
    let names = |v: &[(String, Vec<f32>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(got), names(want), "{what}: names");
    for ((name, g), (_, w)) in got.iter().zip(want) {
        assert_eq!(g.len(), w.len(), "{what} `{name}`: length");
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            assert!((a - b).abs() <= tol, "{what} `{name}`[{i}]: {a} vs {b}");
        }
    }
}

/// Trains the bundled pipeline `bundled` and its twin `plugins/pipelines/<twin>.toml`
/// (the stages in `polyglot_stages` replaced by components from the polyglot
/// directory, everything else the same) on `<bundled>.csv`, and checks that they
/// agree everywhere: fitted state, params, validation accuracy and the predictions
/// of the saved and reloaded models.
fn compare_with_all_rust(bundled: &str, twin: &str, polyglot_stages: &[(&str, &str)]) {
    compare_with_all_rust_on(&format!("{bundled}.csv"), bundled, twin, polyglot_stages);
}

/// [`compare_with_all_rust`] on the data set `csv`; returns the validation
/// accuracy of the epoch both kept.
fn compare_with_all_rust_on(
    csv: &str,
    bundled: &str,
    twin: &str,
    polyglot_stages: &[(&str, &str)],
) -> f32 {
    let p = polyglot();
    let dir = tempfile::tempdir().unwrap();
    let rust = Pipeline::load(&pipeline(bundled)).unwrap();
    let mut other = Pipeline::load(&pipeline(twin)).unwrap();
    // Same data and training; only where the named stages come from differs.
    assert_eq!((&other.data, &other.training), (&rust.data, &rust.training));
    let mut replaced = Vec::new();
    for (section, stage) in other.stages_mut() {
        let Some(path) = &stage.path else { continue };
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            polyglot_stages.contains(&(section.as_str(), file.as_str())),
            "{twin}: [{section}] is {file}"
        );
        // Re-pointed at $TENSORLET_POLYGLOT_DIR, where the build script wrote it.
        stage.path = Some(p.dir.join(&file));
        replaced.push(section);
    }
    assert_eq!(
        replaced.len(),
        polyglot_stages.len(),
        "{twin}: {replaced:?}"
    );
    // The stages that are not replaced are the bundled pipeline's (its [model]
    // may be the twin's [trainer]).
    if !replaced.iter().any(|s| s == "preprocessor") {
        assert_eq!(other.preprocessor, rust.preprocessor, "{twin}");
    }
    if !replaced.iter().any(|s| s == "model") {
        assert_eq!(other.trainer_stage(), rust.trainer_stage(), "{twin}");
    }
    if let Some(m) = &other.model {
        assert_eq!(m.config, rust.model.as_ref().unwrap().config, "{twin}");
    }

    let want = run(&p.rt, &rust, csv, &dir.path().join("rust"));
    let got = run(&p.rt, &other, csv, &dir.path().join("twin"));

    assert_close("fitted state", &got.state, &want.state, 1e-6);
    assert_close("params", &got.params, &want.params, 1e-6);
    assert_eq!(got.val_accuracy, want.val_accuracy, "{twin}");
    assert_eq!(got.kept, want.kept, "{twin}: kept epoch");
    assert!(
        want.val_accuracy >= 0.95,
        "{bundled}: {}",
        want.val_accuracy
    );
    let (g, w) = (&got.predictions, &want.predictions);
    assert_eq!(g.labels, w.labels, "{twin}: labels");
    for (row, (a, b)) in g.probabilities.iter().zip(&w.probabilities).enumerate() {
        for (c, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5,
                "{twin} row {row} class {c}: {x} vs {y}"
            );
        }
    }
    want.kept.1
}

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn each_polyglot_component_is_an_abi_0_2_component_of_its_world() {
    let p = polyglot();
    for (file, world) in COMPONENTS {
        let pl = p.plugin(file);
        assert_eq!(pl.abi(), Abi::V0_2, "{file}");
        let kinds = (
            pl.is_preprocessor(),
            pl.is_trainer(),
            pl.is_predictor(),
            pl.is_model(),
        );
        let want = match world {
            "preprocessor" => (true, false, false, false),
            "trainer" => (false, true, false, false),
            "predictor" => (false, false, true, false),
            // A model both trains (through the host) and predicts.
            _ => (false, true, true, true),
        };
        assert_eq!(kinds, want, "{file} ({world})");
    }
}

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn python_standardize_fits_and_transforms_like_rust() {
    let p = polyglot();
    let python = p.plugin(PYTHON_STANDARDIZE);
    let rust = load(&p.rt, "standardize");
    let dev = p.rt.device();
    // Column 2 is constant: its std is replaced by 1 so it maps to 0.
    let x = tensor(
        dev,
        &[3, 3],
        vec![1.0, 5.0, 7.0, 2.0, -1.0, 7.0, 6.0, 2.0, 7.0],
    );
    let state = python.fit("{}", &x).unwrap();
    assert_close(
        "state",
        &values(&p.rt, &state),
        &values(&p.rt, &rust.fit("{}", &x).unwrap()),
        0.0,
    );
    let std = dev.to_vec(&state[1].1).unwrap();
    assert_eq!(std[2], 1.0, "constant column");
    let y = dev
        .to_vec(&python.transform("{}", &state, &x).unwrap())
        .unwrap();
    assert_eq!(
        y,
        dev.to_vec(&rust.transform("{}", &state, &x).unwrap())
            .unwrap()
    );
    // Row 2 is [6, 2, 7]: column 0 has mean 3 and population std sqrt(14/3).
    assert!((y[6] - 3.0 / (14.0f32 / 3.0).sqrt()).abs() < 1e-6, "{y:?}");
    assert_eq!(&y[7..9], &[0.0, 0.0], "{y:?}");

    // Errors raised in Python reach the host as the plugin's error message.
    let wrong = tensor(dev, &[1, 2], vec![1.0, 2.0]);
    let e = python
        .transform("{}", &state, &wrong)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("standardize: fitted on [rows, 3]") && e.contains("x of shape [1, 2]"),
        "{e}"
    );
    let e = python
        .transform("{}", &state[..1].to_vec(), &x)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no tensor named `std` (present: `mean`)"), "{e}");
}

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn js_and_c_predictors_report_missing_params_and_host_errors() {
    let p = polyglot();
    let (js, c) = (p.plugin(JS_SOFTMAX_REGRESSION), p.plugin(C_MLP));
    let dev = p.rt.device();
    let x = tensor(dev, &[2, 3], vec![1.0; 6]);
    let e = js
        .predict("{}", &NamedTensors::new(), &x)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no tensor named `w` (present: none)"), "{e}");
    let e = c
        .predict("{}", &NamedTensors::new(), &x)
        .unwrap_err()
        .to_string();
    assert!(e.contains("the params have no `w0`"), "{e}");

    // A host shape error inside the plugin comes back as its error.
    let params: NamedTensors = vec![
        ("w".to_string(), tensor(dev, &[4, 2], vec![0.5; 8])),
        ("b".to_string(), tensor(dev, &[2], vec![0.0; 2])),
    ];
    let e = js.predict("{}", &params, &x).unwrap_err().to_string();
    assert!(e.contains("matmul") && e.contains("[2, 3]"), "{e}");
    let params: NamedTensors = vec![
        ("w0".to_string(), tensor(dev, &[4, 2], vec![0.5; 8])),
        ("b0".to_string(), tensor(dev, &[2], vec![0.0; 2])),
    ];
    let e = c.predict("{}", &params, &x).unwrap_err().to_string();
    assert!(e.contains("matmul") && e.contains("[2, 3]"), "{e}");
}

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn python_preprocessor_rust_model_js_predictor_matches_all_rust_on_iris() {
    compare_with_all_rust(
        "iris",
        "iris-polyglot",
        &[
            ("preprocessor", PYTHON_STANDARDIZE),
            ("predictor", JS_SOFTMAX_REGRESSION),
        ],
    );
}

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn python_preprocessor_rust_model_c_predictor_matches_all_rust_on_digits() {
    compare_with_all_rust(
        "digits",
        "digits-polyglot",
        &[("preprocessor", PYTHON_STANDARDIZE), ("predictor", C_MLP)],
    );
}

/// A data spec with a seed that tests the whole width of a WIT u64 where the
/// language carries it (above 2^53; JavaScript Numbers are exact only below).
fn spec(features: u32, outputs: u32, seed: u64) -> DataSpec {
    DataSpec {
        features,
        outputs,
        task: Task::Classification,
        seed,
    }
}

/// `init` of `plugin` and of the bundled Rust `twin` with the same config and spec.
fn assert_init_like(p: &Polyglot, file: &str, twin: &str, config: &str, spec: DataSpec) {
    let got = p.plugin(file).init(config, spec).unwrap();
    let want = load(&p.rt, twin).init(config, spec).unwrap();
    let shapes =
        |n: &NamedTensors| -> Vec<Vec<u32>> { n.iter().map(|(_, t)| t.shape().to_u32()).collect() };
    assert_eq!(shapes(&got), shapes(&want), "{file} {config}");
    // The same seeded samples, to the bit: the seeds reached the host intact.
    assert_close(
        &format!("{file} init {config}"),
        &values(&p.rt, &got),
        &values(&p.rt, &want),
        0.0,
    );
}

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn models_initialise_exactly_like_their_rust_twins() {
    let p = polyglot();
    let big = 0xDEAD_BEEF_0123_4567; // above 2^53
    // Softmax regression: w [features, classes] ~ N(0, init_std) from spec.seed, b zeros.
    for config in ["{}", r#"{"init_std":0.5}"#] {
        assert_init_like(p, C_MODEL, "softmax_regression", config, spec(5, 3, big));
        assert_init_like(
            p,
            JS_MODEL,
            "softmax_regression",
            config,
            spec(5, 3, (1 << 53) - 1),
        );
    }
    // The MLP: He-normal layers, each seeded with derive_seed(spec.seed, layer).
    for config in ["{}", r#"{"hidden":[6,5]}"#, r#"{"hidden":[]}"#] {
        assert_init_like(p, PYTHON_MLP, "mlp", config, spec(10, 3, big));
    }
    let init = p
        .plugin(PYTHON_MLP)
        .init(r#"{"hidden":[6,5]}"#, spec(10, 3, 1))
        .unwrap();
    let names: Vec<&str> = init.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["w0", "b0", "w1", "b1", "w2", "b2"]);
    let e = p
        .plugin(PYTHON_MLP)
        .init(r#"{"hidden":[6,0]}"#, spec(10, 3, 1))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("mlp: `hidden` must be a list of widths > 0"),
        "{e}"
    );
    // The CNN: He-normal conv and dense layers, each seeded with
    // derive_seed(spec.seed, layer); batch norm's scales, shifts and running
    // statistics; a 4-channel 4×4 image of 64 features.
    for config in [
        "{}",
        r#"{"channels":[4,8],"hidden":0,"batch_norm":true}"#,
        r#"{"image":[4,4,4],"channels":[3],"hidden":5,"dropout":0.5}"#,
    ] {
        assert_init_like(p, PYTHON_CNN, "cnn", config, spec(64, 10, big));
    }
    let init = p
        .plugin(PYTHON_CNN)
        .init(r#"{"channels":[4],"batch_norm":true}"#, spec(64, 10, 1))
        .unwrap();
    let names: Vec<&str> = init.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "conv0.w",
            "conv0.b",
            "bn0.w",
            "bn0.b",
            "state.bn0.mean",
            "state.bn0.var",
            "fc0.w",
            "fc0.b",
            "fc1.w",
            "fc1.b"
        ]
    );
}

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn models_report_missing_params_and_host_errors() {
    let p = polyglot();
    let dev = p.rt.device();
    let x = tensor(dev, &[2, 3], vec![1.0; 6]);
    let none = NamedTensors::new();
    for (file, missing) in [
        (JS_MODEL, "no tensor named `w` (present: none)"),
        (C_MODEL, "no tensor named `w` (present: none)"),
        (PYTHON_MLP, "mlp: the params have no `w0`"),
    ] {
        let e = p
            .plugin(file)
            .predict("{}", &none, &x)
            .unwrap_err()
            .to_string();
        assert!(e.contains(missing), "{file}: {e}");
    }
    // Params for 4 features, x with 3: the host refuses the matmul inside forward.
    for (file, twin) in [
        (JS_MODEL, "softmax_regression"),
        (C_MODEL, "softmax_regression"),
        (PYTHON_MLP, "mlp"),
    ] {
        let params = load(&p.rt, twin).init("{}", spec(4, 2, 0)).unwrap();
        let e = p
            .plugin(file)
            .predict("{}", &params, &x)
            .unwrap_err()
            .to_string();
        assert!(e.contains("matmul") && e.contains("[2, 3]"), "{file}: {e}");
    }
}

/// What the `nd-ops` preprocessors return for x = [[1, -2, 3], [-4, 5, -6]]: each
/// op's result, flattened, named after the op.
fn nd_ops_expected() -> Vec<(&'static str, Vec<f64>)> {
    let x = [1.0, -2.0, 3.0, -4.0, 5.0, -6.0f64];
    let map = |f: &dyn Fn(f64) -> f64| x.iter().map(|&v| f(v)).collect::<Vec<f64>>();
    let mask = |b: bool| if b { 1.0 } else { 0.0 };
    let softplus = |v: f64| (1.0 + v.exp()).ln();
    let layer_norm: Vec<f64> = x
        .chunks(3)
        .flat_map(|row| {
            let mean = row.iter().sum::<f64>() / 3.0;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 3.0;
            row.iter()
                .map(move |v| 2.0 * (v - mean) / (var + 1e-5).sqrt() + 1.0)
                .collect::<Vec<f64>>()
        })
        .collect();
    // -log softmax(row)[class]
    let nll =
        |row: &[f64], class: usize| row.iter().map(|v| v.exp()).sum::<f64>().ln() - row[class];
    let gelu_tanh = |v: f64| {
        let c = (2.0 / std::f64::consts::PI).sqrt();
        0.5 * v * (1.0 + (c * (v + 0.044715 * v.powi(3))).tanh())
    };
    vec![
        ("cast", vec![2.0, 0.0]),
        ("arange", vec![0.0, 1.0, 2.0]),
        ("index-select", vec![3.0, 1.0, -6.0, -4.0]),
        ("gather", vec![-2.0, -6.0]),
        ("matmul-transposed", vec![14.0, -32.0, -32.0, 77.0]),
        ("maximum", map(&|v| v.max(0.0))),
        ("scalar min", map(&|v| v.min(0.0))),
        ("lt", map(&|v| mask(v < 0.0))),
        ("scalar pow", map(&|v| v * v)),
        ("leaky-relu", map(&|v| if v > 0.0 { v } else { 0.5 * v })),
        ("clamp", map(&|v| v.clamp(-1.0, 2.0))),
        ("select", map(&|v| if v > 0.0 { v } else { -1.0 })),
        ("masked-fill", map(&|v| if v < 0.0 { 9.0 } else { v })),
        ("cumsum", vec![2.0, 1.0, 3.0, -5.0, -1.0, -6.0]),
        ("permute", vec![1.0, -4.0, -2.0, 5.0, 3.0, -6.0]),
        ("slice", vec![1.0, 3.0, -4.0, -6.0]),
        ("pad", vec![7.0, 1.0, -2.0, 3.0, 7.0, -4.0, 5.0, -6.0]),
        ("concat-all", vec![-4.0, 5.0, -6.0, 1.0, -2.0, 3.0]),
        ("broadcast-to", vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0]),
        ("squeeze", x.to_vec()),
        (
            "embedding",
            vec![-4.0, 5.0, -6.0, 1.0, -2.0, 3.0, -4.0, 5.0, -6.0],
        ),
        ("index-add", vec![0.0, 0.0, 0.0, -3.0, 3.0, -3.0]),
        ("scatter-add", vec![-1.0, 3.0, 0.0, 0.0, 0.0, -5.0]),
        ("conv1d", vec![5.5, -4.5]),
        ("conv2d", vec![1.0, -1.0, 1.0, 3.0, -4.0, 1.0, -1.0, -6.0]),
        ("max-pool2d", vec![5.0, 5.0]),
        ("avg-pool2d", vec![2.0 / 3.0, -5.0 / 3.0]),
        ("global-avg-pool", vec![2.0 / 3.0, -5.0 / 3.0]),
        ("layer-norm", layer_norm),
        ("batch-norm", map(&|v| 2.0 * v / (1.0 + 1e-5f64).sqrt())),
        ("dropout", x.to_vec()),
        // gelu(x) - gelu(-x) = x·Φ(x) + x·Φ(-x) = x
        ("gelu", x.to_vec()),
        ("gelu-tanh", map(&gelu_tanh)),
        ("silu", map(&|v| v / (1.0 + (-v).exp()))),
        ("softplus", map(&softplus)),
        ("mse-loss", vec![91.0 / 6.0]),
        ("l1-loss", vec![21.0]),
        ("huber-loss", vec![3.0]),
        ("bce-with-logits", map(&|v| softplus(v) - 0.5 * v)),
        (
            "cross-entropy",
            vec![(nll(&x[..3], 2) + nll(&x[3..], 0)) / 2.0],
        ),
        ("cross-entropy ignore-index", vec![nll(&x[..3], 2)]),
        ("ge", map(&|v| mask(v >= 0.0))),
    ]
}

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn every_nd_op_of_the_python_javascript_and_c_sdks_runs_on_the_host() {
    let p = polyglot();
    let dev = p.rt.device();
    let x = tensor(dev, &[2, 3], vec![1.0, -2.0, 3.0, -4.0, 5.0, -6.0]);
    let want: Vec<(&str, f64)> = nd_ops_expected()
        .into_iter()
        .flat_map(|(op, values)| values.into_iter().map(move |v| (op, v)))
        .collect();
    for file in [PYTHON_ND_OPS, JS_ND_OPS, C_ND_OPS] {
        let plugin = p.plugin(file);
        let state = plugin.fit("{}", &x).unwrap();
        assert!(state.is_empty(), "{file}");
        let got = dev
            .to_vec(&plugin.transform("{}", &state, &x).unwrap())
            .unwrap();
        assert_eq!(got.len(), want.len(), "{file}: {got:?}");
        for (i, (g, (op, w))) in got.iter().zip(&want).enumerate() {
            assert!(
                (f64::from(*g) - w).abs() <= 1e-5 * w.abs().max(1.0),
                "{file} {op} (element {i}): {g} vs {w}"
            );
        }
        // A host refusal inside the wrappers reaches the host as the plugin's
        // error: on [3, 2], index 2 of axis 1 is out of range.
        let wrong = tensor(dev, &[3, 2], vec![1.0; 6]);
        let e = plugin
            .transform("{}", &state, &wrong)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("index-select: index 2 (element 0 of the indices) is out of range"),
            "{file}: {e}"
        );
    }
}

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn javascript_model_trains_like_the_rust_model_on_iris() {
    compare_with_all_rust("iris", "iris-js", &[("model", JS_MODEL)]);
}

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn c_model_trains_like_the_rust_model_on_iris() {
    compare_with_all_rust("iris", "iris-c", &[("model", C_MODEL)]);
}

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn python_preprocessor_and_model_train_like_the_rust_ones_on_digits() {
    compare_with_all_rust(
        "digits",
        "digits-py",
        &[("preprocessor", PYTHON_STANDARDIZE), ("model", PYTHON_MLP)],
    );
}

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn python_cnn_trains_like_the_rust_cnn_on_digits() {
    let accuracy = compare_with_all_rust_on(
        "digits.csv",
        "digits-cnn",
        "digits-cnn-py",
        &[("preprocessor", PYTHON_STANDARDIZE), ("model", PYTHON_CNN)],
    );
    assert!(accuracy >= 0.985, "digits-cnn-py: {accuracy}");
}

/// Plain gradient descent at learning rate `lr`, for `Plugin::learn`.
fn sgd(lr: f32) -> HostTraining {
    HostTraining {
        optimizer: Optimizer {
            rule: Rule::Sgd {
                momentum: 0.0,
                nesterov: false,
            },
            weight_decay: 0.0,
            clip_grad_norm: None,
        },
        schedule: LrSchedule {
            base: lr,
            schedule: Schedule::Constant,
            warmup_steps: 0,
        },
        task: Task::Classification,
    }
}

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn python_cnn_steps_like_the_rust_cnn_and_js_and_c_predict_like_it() {
    let p = polyglot();
    let dev = p.rt.device();
    let rust = load(&p.rt, "cnn");
    let python = p.plugin(PYTHON_CNN);
    // Batch normalization (its running statistics are kept by the host) and
    // dropout (its mask drawn from the step): the paths digits-cnn.toml leaves out.
    let config = r#"{"channels":[4,8],"hidden":16,"batch_norm":true,"dropout":0.25}"#;
    let spec = spec(64, 10, 0xDEAD_BEEF_0123_4567);
    let mut got = python.init(config, spec).unwrap();
    let mut want = rust.init(config, spec).unwrap();
    assert_close("init", &values(&p.rt, &got), &values(&p.rt, &want), 0.0);
    let training = sgd(0.05);
    for step in 0..3u64 {
        let (x, y) = batch(dev, 12 + step as u32, 64, 10);
        let g = python.learn(config, &got, &x, &y, step, &training).unwrap();
        let w = rust.learn(config, &want, &x, &y, step, &training).unwrap();
        assert_eq!(g.loss, w.loss, "step {step}: loss");
        assert_close(
            &format!("step {step}"),
            &values(&p.rt, &g.params),
            &values(&p.rt, &w.params),
            0.0,
        );
        if step == 0 {
            // Not vacuous: without dropout the same step has another loss.
            let plain = config.replace("0.25", "0");
            let without = python.learn(&plain, &got, &x, &y, step, &training).unwrap();
            assert_ne!(without.loss, g.loss, "dropout changed nothing");
        }
        (got, want) = (g.params, w.params);
    }
    // The host updated the running statistics the forward passes named.
    let (_, mean) = values(&p.rt, &got)
        .into_iter()
        .find(|(n, _)| n == "state.bn0.mean")
        .unwrap();
    assert!(mean.iter().any(|v| v.abs() > 1e-4), "{mean:?}");

    // Eval mode: batch norm by the running statistics, no dropout. The Python
    // twin matches exactly; the JavaScript and C forward passes (their own
    // softmax, the same ops before it) to rounding.
    let (x, _) = batch(dev, 7, 64, 10);
    let want = dev
        .to_vec(&rust.predict(config, &got, &x).unwrap())
        .unwrap();
    assert_eq!(want.len(), 70);
    let probs = |file: &str, config: &str| {
        dev.to_vec(&p.plugin(file).predict(config, &got, &x).unwrap())
            .unwrap()
    };
    assert_eq!(probs(PYTHON_CNN, config), want, "python");
    for file in [JS_CNN, C_CNN] {
        let got = probs(file, "{}");
        assert_eq!(got.len(), want.len(), "{file}");
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= 1e-6, "{file} [{i}]: {a} vs {b}");
        }
    }
}

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn cnn_twins_report_config_and_param_errors() {
    let p = polyglot();
    let dev = p.rt.device();
    let rust = load(&p.rt, "cnn");
    let python = p.plugin(PYTHON_CNN);
    let spec = spec(64, 10, 0);
    // Config errors: the Python twin says what the Rust model says.
    for (config, message) in [
        (
            r#"{"chanels":[4]}"#,
            "unknown config key `chanels`; the known keys are: batch_norm, channels, \
             dropout, hidden, image",
        ),
        (
            r#"{"image":[1,4,4]}"#,
            "cnn: `image` = [1, 4, 4] holds 16 values, but the rows have 64 features",
        ),
        (
            r#"{"channels":[2,2,2,2]}"#,
            "cnn: a 1×1 map cannot be pooled 2×2; use fewer `channels` layers for a \
             [1, 8, 8] image",
        ),
        (
            r#"{"channels":[]}"#,
            "cnn: `channels` needs at least one conv layer",
        ),
    ] {
        for (who, plugin) in [("rust", &rust), ("python", python)] {
            let e = plugin.init(config, spec).unwrap_err().to_string();
            assert!(e.contains(message), "{who} {config}: {e}");
        }
    }
    let e = python
        .init(r#"{"image":[1,8]}"#, spec)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cnn: `image` must be [channels, height, width], got [1, 8]"),
        "{e}"
    );

    // Missing params, and rows that are not the image.
    let x = tensor(dev, &[2, 64], vec![0.5; 128]);
    let none = NamedTensors::new();
    let e = python.predict("{}", &none, &x).unwrap_err().to_string();
    assert!(
        e.contains("no tensor named `conv0.w` (present: none)"),
        "{e}"
    );
    for file in [JS_CNN, C_CNN] {
        let e = p
            .plugin(file)
            .predict("{}", &none, &x)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cnn: the params have no `conv0.w` or `fc0.w`"),
            "{file}: {e}"
        );
    }
    let params = rust.init("{}", spec).unwrap();
    let x = tensor(dev, &[2, 60], vec![0.5; 120]);
    let e = python.predict("{}", &params, &x).unwrap_err().to_string();
    assert!(e.contains("but the rows have 60 features"), "{e}");
    for file in [JS_CNN, C_CNN] {
        let e = p
            .plugin(file)
            .predict("{}", &params, &x)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cnn: 60 features are not 1 square channel(s)"),
            "{file}: {e}"
        );
    }
    // A host error inside the N-D wrappers comes back as the plugin's error: a
    // 2×2 image is 1×1 after the first pool, too small for the second.
    let x = tensor(dev, &[2, 4], vec![0.5; 8]);
    for file in [JS_CNN, C_CNN] {
        let e = p
            .plugin(file)
            .predict("{}", &params, &x)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("max-pool2d: kernel size 2 along height is larger than the padded input"),
            "{file}: {e}"
        );
    }
}

/// The three trainers that ask the host for their gradients.
const SGD_TRAINERS: [&str; 3] = [PYTHON_SGD, JS_SGD, C_SGD];

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn trainers_step_with_the_hosts_gradients_like_the_rust_trainer() {
    let p = polyglot();
    let dev = p.rt.device();
    // The Rust trainer doing the same ops (its gradients checked numerically in
    // tests/gradients.rs); it also keeps a step counter, `opt.steps`.
    let rust = load(&p.rt, "misbehave");
    let rust_config = r#"{"mode":"grad","learning_rate":0.5}"#;
    let config = r#"{"learning_rate":0.5}"#;
    let spec = spec(4, 3, 0);
    let wb = |n: &NamedTensors| -> NamedTensors {
        n.iter()
            .filter(|(n, _)| !n.starts_with("opt."))
            .cloned()
            .collect()
    };
    for file in SGD_TRAINERS {
        let trainer = p.plugin(file);
        let mut got = trainer.init(config, spec).unwrap();
        let mut want = rust.init(rust_config, spec).unwrap();
        assert_close(file, &values(&p.rt, &got), &values(&p.rt, &wb(&want)), 0.0);
        let mut losses = Vec::new();
        for step in 0..4 {
            let (x, y) = batch(dev, 9 + step, 4, 3);
            let g = trainer.step(config, &got, &x, &y, u64::from(step)).unwrap();
            let w = rust
                .step(rust_config, &want, &x, &y, u64::from(step))
                .unwrap();
            assert_eq!(g.loss, w.loss, "{file} step {step}: loss");
            assert_close(
                &format!("{file} step {step}"),
                &values(&p.rt, &g.params),
                &values(&p.rt, &wb(&w.params)),
                0.0,
            );
            losses.push(g.loss);
            (got, want) = (g.params, w.params);
        }
        // Not vacuous: the parameters moved and the loss went down.
        assert!(losses[0] > losses[3], "{file}: {losses:?}");
        assert!(
            dev.to_vec(&got[0].1)
                .unwrap()
                .iter()
                .any(|v| v.abs() > 1e-3),
            "{file}"
        );
    }
}

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn a_refused_gradient_reaches_the_host_as_each_languages_error() {
    let p = polyglot();
    let dev = p.rt.device();
    let (x, y) = batch(dev, 6, 4, 3);
    for file in SGD_TRAINERS {
        let trainer = p.plugin(file);
        let mut params = trainer.init("{}", spec(4, 3, 0)).unwrap();
        // The host watches every parameter it passes to `step`; the loss does not
        // depend on this one, so `loss.grad(params)` is refused.
        params.push(("unused".to_string(), tensor(dev, &[2], vec![1.0, 2.0])));
        let e = trainer
            .step("{}", &params, &x, &y, 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("grad: the loss does not depend on `unused`"),
            "{file}: {e}"
        );
    }
}

/// Runs the `tensorlet` binary with its own `TENSORLET_HOME`; returns stdout.
fn tensorlet(home: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tensorlet"))
        .args(args)
        .env("TENSORLET_HOME", home)
        .env_remove("TENSORLET_DEVICE")
        .env_remove("TENSORLET_KEY")
        .output()
        .expect("run tensorlet");
    assert!(
        out.status.success(),
        "tensorlet {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `tensorlet predict --json` output: (label, probabilities) per row.
fn json_predictions(stdout: &str) -> Vec<(u64, Vec<f64>)> {
    let rows: serde_json::Value = serde_json::from_str(stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let probs = r["probabilities"].as_array().unwrap();
            (
                r["label"].as_u64().unwrap(),
                probs.iter().map(|p| p.as_f64().unwrap()).collect(),
            )
        })
        .collect()
}

/// Checks that two `predict --json` outputs agree: labels exactly, probabilities
/// within 1e-5.
fn assert_same_predictions(name: &str, got: &str, want: &str) {
    let (got, want) = (json_predictions(got), json_predictions(want));
    assert!(!got.is_empty() && got.len() == want.len(), "{name}");
    for (row, ((gl, gp), (wl, wp))) in got.iter().zip(&want).enumerate() {
        assert_eq!(gl, wl, "{name} row {row}: label");
        for (x, y) in gp.iter().zip(wp) {
            assert!((x - y).abs() <= 1e-5, "{name} row {row}: {gp:?} vs {wp:?}");
        }
    }
}

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn model_pipelines_train_and_predict_through_the_cli_like_the_rust_ones() {
    let p = polyglot();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    for (bundled, twin, files) in [
        ("iris", "iris-js", &[JS_MODEL][..]),
        ("iris", "iris-c", &[C_MODEL][..]),
        ("digits", "digits-py", &[PYTHON_STANDARDIZE, PYTHON_MLP][..]),
    ] {
        // The pipeline as committed, its `../out/` paths pointed at the build.
        let mut toml = std::fs::read_to_string(pipeline(twin)).unwrap();
        for file in files {
            let path = format!("path = \"../out/{file}\"");
            assert!(toml.contains(&path), "{path} not in {twin}.toml");
            toml = toml.replace(&path, &format!("path = {:?}", s(&p.dir.join(file))));
        }
        let toml_path = h.join(format!("{twin}.toml"));
        std::fs::write(&toml_path, toml).unwrap();

        let csv = s(&data(&format!("{bundled}.csv")));
        let mut predictions = Vec::new();
        for (name, toml) in [(twin, s(&toml_path)), (bundled, s(&pipeline(bundled)))] {
            let out = s(&h.join(name));
            let trained = tensorlet(
                h,
                &[
                    "train",
                    &toml,
                    "--data",
                    &csv,
                    "--out",
                    &out,
                    "--allow-unsigned",
                ],
            );
            assert!(
                trained.contains(&format!("model saved to {out}")),
                "{trained}"
            );
            let params = trained
                .lines()
                .find(|l| l.starts_with("params sha256:"))
                .unwrap_or_else(|| panic!("no params digest in {trained}"))
                .to_string();
            let args = [
                "predict",
                &out,
                "--input",
                &csv,
                "--json",
                "--allow-unsigned",
            ];
            predictions.push((params, tensorlet(h, &args)));
        }
        // The same parameters, to the bit, and the same predictions.
        assert_eq!(predictions[0].0, predictions[1].0, "{twin}");
        assert_same_predictions(twin, &predictions[0].1, &predictions[1].1);
    }
}

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn signed_polyglot_plugins_run_from_the_registry_like_the_all_rust_pipelines() {
    let p = polyglot();
    let home = tempfile::tempdir().unwrap();
    let (h, work) = (home.path(), home.path().join("work"));
    std::fs::create_dir_all(&work).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();

    // A key, trusted for the namespace the plugins are published in.
    let keygen = tensorlet(h, &["keygen", "polyglot"]);
    let public = keygen
        .lines()
        .find(|l| l.starts_with("ed25519:"))
        .unwrap_or_else(|| panic!("no public key in {keygen}"));
    tensorlet(h, &["trust", "add", public, "--namespace", "polyglot"]);

    // The Python, JavaScript and C plugins and the Rust trainers, signed and published.
    for (file, name, kind) in [
        (
            p.dir.join(PYTHON_STANDARDIZE),
            "standardize-py",
            "preprocessor",
        ),
        (
            plugin_path("softmax_regression"),
            "softmax-regression",
            "trainer",
        ),
        (plugin_path("mlp"), "mlp", "trainer"),
        (
            p.dir.join(JS_SOFTMAX_REGRESSION),
            "softmax-regression-js",
            "predictor",
        ),
        (p.dir.join(C_MLP), "mlp-c", "predictor"),
    ] {
        let args = [
            "publish",
            &s(&file),
            "--name",
            &format!("polyglot/{name}"),
            "--version",
            "1.0.0",
            "--kind",
            kind,
            "--key",
            "polyglot",
        ];
        let out = tensorlet(h, &args);
        assert!(
            out.contains(&format!("published polyglot/{name}@1.0.0")),
            "{out}"
        );
    }

    // <name>-polyglot.toml with every stage a registry reference, trained and
    // served from the signed artifacts (no --allow-unsigned), against the
    // all-Rust <name>.toml run from local files.
    for (name, stages) in [
        (
            "iris",
            [
                ("standardize-py", "path = \"../out/standardize-py.wasm\""),
                ("softmax-regression", "bundled = \"softmax-regression\""),
                (
                    "softmax-regression-js",
                    "path = \"../out/softmax-regression-js.wasm\"",
                ),
            ],
        ),
        (
            "digits",
            [
                ("standardize-py", "path = \"../out/standardize-py.wasm\""),
                ("mlp", "bundled = \"mlp\""),
                ("mlp-c", "path = \"../out/mlp-c.wasm\""),
            ],
        ),
    ] {
        let mut toml = std::fs::read_to_string(pipeline(&format!("{name}-polyglot"))).unwrap();
        for (artifact, source) in stages {
            assert!(
                toml.contains(source),
                "{source} not in {name}-polyglot.toml"
            );
            toml = toml.replace(source, &format!("ref = \"polyglot/{artifact}@1.0.0\""));
        }
        let refs = work.join(format!("{name}-refs.toml"));
        std::fs::write(&refs, toml).unwrap();

        let csv = s(&data(&format!("{name}.csv")));
        let mixed = s(&work.join(format!("{name}-mixed")));
        tensorlet(h, &["train", &s(&refs), "--data", &csv, "--out", &mixed]);
        let got = tensorlet(h, &["predict", &mixed, "--input", &csv, "--json"]);
        let meta = std::fs::read(Path::new(&mixed).join("model.json")).unwrap();
        let meta: serde_json::Value = serde_json::from_slice(&meta).unwrap();
        for (stage, (artifact, _)) in ["preprocessor", "trainer", "predictor"].iter().zip(stages) {
            let want = format!("polyglot/{artifact}@1.0.0");
            assert_eq!(
                meta["plugins"][stage]["name"],
                want.as_str(),
                "{name} {stage}"
            );
        }

        let rust = s(&work.join(format!("{name}-rust")));
        let unsigned = "--allow-unsigned";
        let toml = s(&pipeline(name));
        tensorlet(
            h,
            &["train", &toml, "--data", &csv, "--out", &rust, unsigned],
        );
        let want = tensorlet(h, &["predict", &rust, "--input", &csv, "--json", unsigned]);

        assert_same_predictions(name, &got, &want);
    }
}
