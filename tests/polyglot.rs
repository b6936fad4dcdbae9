//! Plugins written in Python, JavaScript and C, built by `plugins/build-polyglot.sh`
//! as ABI 0.2 components, loaded through the same host as the Rust ones and mixed
//! with them in pipelines.
//!
//! Each is the twin of a Rust plugin doing the same host ops in the same order, so
//! the results must match it:
//! - the preprocessor (`standardize`) and the predictors (`softmax-regression`'s
//!   and `mlp`'s forward passes) in the mixed pipelines
//!   `plugins/pipelines/{iris,digits}-polyglot.toml`;
//! - the forward-only models (softmax regression in JavaScript and C, the MLP in
//!   Python), trained by the host in `plugins/pipelines/{iris-js,iris-c,digits-py}.toml`
//!   to the same params and predictions as `iris.toml` and `digits.toml`;
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
use tensorlet_runtime::model::{self, Model, Predictions};
use tensorlet_runtime::pipeline::PluginSource;
use tensorlet_runtime::train::PipelinePlugins;
use tensorlet_runtime::{
    Abi, DataSpec, NamedTensors, Pipeline, Plugin, Runtime, RuntimeConfig, Task, data, train,
};

/// Python preprocessor, the twin of `standardize`.
const PYTHON_STANDARDIZE: &str = "standardize-py.wasm";
/// Python model, the twin of the `mlp` model.
const PYTHON_MLP: &str = "mlp-model-py.wasm";
/// Python trainer asking the host for its gradients.
const PYTHON_SGD: &str = "softmax-sgd-py.wasm";
/// JavaScript predictor, the twin of `softmax-regression`'s forward pass.
const JS_SOFTMAX_REGRESSION: &str = "softmax-regression-js.wasm";
/// JavaScript model, the twin of the `softmax-regression` model.
const JS_MODEL: &str = "softmax-regression-model-js.wasm";
/// JavaScript trainer asking the host for its gradients.
const JS_SGD: &str = "softmax-sgd-js.wasm";
/// C predictor, the twin of `mlp`'s forward pass.
const C_MLP: &str = "mlp-c.wasm";
/// C model, the twin of the `softmax-regression` model.
const C_MODEL: &str = "softmax-regression-model-c.wasm";
/// C trainer asking the host for its gradients.
const C_SGD: &str = "softmax-sgd-c.wasm";

/// Every component the build script writes, with the world it is built for.
const COMPONENTS: [(&str, &str); 9] = [
    (PYTHON_STANDARDIZE, "preprocessor"),
    (PYTHON_MLP, "model"),
    (PYTHON_SGD, "trainer"),
    (JS_SOFTMAX_REGRESSION, "predictor"),
    (JS_MODEL, "model"),
    (JS_SGD, "trainer"),
    (C_MLP, "predictor"),
    (C_MODEL, "model"),
    (C_SGD, "trainer"),
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
    val_accuracy: f32,
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
    Outcome {
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

    let csv = format!("{bundled}.csv");
    let want = run(&p.rt, &rust, &csv, &dir.path().join("rust"));
    let got = run(&p.rt, &other, &csv, &dir.path().join("twin"));

    assert_close("fitted state", &got.state, &want.state, 1e-6);
    assert_close("params", &got.params, &want.params, 1e-6);
    assert_eq!(got.val_accuracy, want.val_accuracy, "{twin}");
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
