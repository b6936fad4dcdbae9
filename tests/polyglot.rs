//! Plugins written in Python, JavaScript and C, built by `plugins/build-polyglot.sh`,
//! loaded through the same host as the Rust ones and mixed with them in pipelines.
//!
//! Each is the twin of a Rust plugin (`standardize`, the `softmax-regression`
//! predictor, the `mlp` predictor) doing the same host ops, so the mixed pipelines
//! `plugins/pipelines/{iris,digits}-polyglot.toml` must fit the same state, train the
//! same params and predict what the all-Rust `iris` and `digits` pipelines predict.
//!
//! The last test does the same through the CLI from the registry: it signs and
//! publishes the components (and the Rust trainers) with `tensorlet publish`, and
//! trains and predicts with pipelines whose every stage is a `ref`.
//!
//! The components are read from `$TENSORLET_POLYGLOT_DIR` (default `plugins/out/`).
//! Every test here needs them, so each is ignored by default (`cargo test … --
//! --ignored` runs them; `.ci/run` builds the components first) and fails,
//! saying how to build them, when run without them. See `docs/testing.md`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use common::*;
use tensorlet_runtime::model::{self, Model, Predictions};
use tensorlet_runtime::pipeline::PluginSource;
use tensorlet_runtime::{NamedTensors, Pipeline, Plugin, Runtime, RuntimeConfig, data, train};

/// Python preprocessor, the twin of `standardize`.
const PYTHON_STANDARDIZE: &str = "standardize-py.wasm";
/// JavaScript predictor, the twin of `softmax-regression`'s.
const JS_SOFTMAX_REGRESSION: &str = "softmax-regression-js.wasm";
/// C predictor, the twin of `mlp`'s.
const C_MLP: &str = "mlp-c.wasm";

fn polyglot_dir() -> PathBuf {
    std::env::var_os("TENSORLET_POLYGLOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/out"))
}

/// One runtime for the whole file, so the 18 MB Python component is compiled once.
struct Polyglot {
    rt: Runtime,
    dir: PathBuf,
    python: Plugin,
    js: Plugin,
    c: Plugin,
}

/// The components, loaded once; or why they cannot be.
static POLYGLOT: LazyLock<Result<Polyglot, String>> = LazyLock::new(|| {
    let dir = polyglot_dir();
    let missing: Vec<&str> = [PYTHON_STANDARDIZE, JS_SOFTMAX_REGRESSION, C_MLP]
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the polyglot plugins {missing:?} are not in {}; build them with \
             `bash plugins/build-polyglot.sh` (see docs/testing.md)",
            dir.display()
        ));
    }
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let load = |file: &str| {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        load_bytes(&rt, file.trim_end_matches(".wasm"), bytes)
            .unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    Ok(Polyglot {
        python: load(PYTHON_STANDARDIZE),
        js: load(JS_SOFTMAX_REGRESSION),
        c: load(C_MLP),
        dir,
        rt,
    })
});

/// The components; a test that runs without them fails with how to build them.
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
    let ds = data::load_labeled(&data(csv), pipeline.data.label.as_deref()).unwrap();
    let plugins = pipeline
        .load_plugins(rt, &unsigned_resolver(resolve))
        .unwrap();
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

/// Trains the bundled pipeline `bundled` and its polyglot twin
/// `plugins/pipelines/<bundled>-polyglot.toml` (some stages replaced by components
/// from the polyglot directory) and checks that they agree everywhere.
fn compare_with_all_rust(bundled: &str, polyglot_stages: [(&str, &str); 2]) {
    let p = polyglot();
    let dir = tempfile::tempdir().unwrap();
    let rust = Pipeline::load(&pipeline(bundled)).unwrap();
    let mut mixed = Pipeline::load(&pipeline(&format!("{bundled}-polyglot"))).unwrap();
    // Same data and training; only where the named stages come from differs.
    assert_eq!((&mixed.data, &mixed.training), (&rust.data, &rust.training));
    // The bundled pipeline's [model] is the mixed one's [trainer].
    assert_eq!(mixed.trainer_stage(), rust.trainer_stage());
    for (section, file) in polyglot_stages {
        let stage = match section {
            "preprocessor" => &mut mixed.preprocessor,
            _ => mixed.predictor.as_mut().expect("a [predictor]"),
        };
        let path = stage.path.as_ref().expect("a `path` stage");
        assert_eq!(path.file_name().unwrap(), file, "[{section}]");
        // Re-pointed at $TENSORLET_POLYGLOT_DIR, where the build script wrote it.
        stage.path = Some(p.dir.join(file));
    }

    let csv = format!("{bundled}.csv");
    let want = run(&p.rt, &rust, &csv, &dir.path().join("rust"));
    let got = run(&p.rt, &mixed, &csv, &dir.path().join("mixed"));

    assert_close("fitted state", &got.state, &want.state, 1e-6);
    assert_close("params", &got.params, &want.params, 1e-6);
    assert_eq!(got.val_accuracy, want.val_accuracy, "{bundled}");
    assert!(
        want.val_accuracy >= 0.95,
        "{bundled}: {}",
        want.val_accuracy
    );
    let (g, w) = (&got.predictions, &want.predictions);
    assert_eq!(g.labels, w.labels, "{bundled}: labels");
    for (row, (a, b)) in g.probabilities.iter().zip(&w.probabilities).enumerate() {
        for (c, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5,
                "{bundled} row {row} class {c}: {x} vs {y}"
            );
        }
    }
}

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn each_polyglot_plugin_exports_its_interface() {
    let p = polyglot();
    let kinds = |pl: &Plugin| (pl.is_preprocessor(), pl.is_trainer(), pl.is_predictor());
    assert_eq!(
        kinds(&p.python),
        (true, false, false),
        "Python preprocessor"
    );
    assert_eq!(kinds(&p.js), (false, false, true), "JavaScript predictor");
    assert_eq!(kinds(&p.c), (false, false, true), "C predictor");
}

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn python_standardize_fits_and_transforms_like_rust() {
    let p = polyglot();
    let rust = load(&p.rt, "standardize");
    let dev = p.rt.device();
    // Column 2 is constant: its std is replaced by 1 so it maps to 0.
    let x = tensor(
        dev,
        &[3, 3],
        vec![1.0, 5.0, 7.0, 2.0, -1.0, 7.0, 6.0, 2.0, 7.0],
    );
    let state = p.python.fit("{}", &x).unwrap();
    assert_close(
        "state",
        &values(&p.rt, &state),
        &values(&p.rt, &rust.fit("{}", &x).unwrap()),
        0.0,
    );
    let std = dev.to_vec(&state[1].1).unwrap();
    assert_eq!(std[2], 1.0, "constant column");
    let y = dev
        .to_vec(&p.python.transform("{}", &state, &x).unwrap())
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
    let e = p
        .python
        .transform("{}", &state, &wrong)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("standardize: fitted on [rows, 3]") && e.contains("x of shape [1, 2]"),
        "{e}"
    );
    let e = p
        .python
        .transform("{}", &state[..1].to_vec(), &x)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no tensor named `std` (present: `mean`)"), "{e}");
}

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn js_and_c_predictors_report_missing_params_and_host_errors() {
    let p = polyglot();
    let dev = p.rt.device();
    let x = tensor(dev, &[2, 3], vec![1.0; 6]);
    let e =
        p.js.predict("{}", &NamedTensors::new(), &x)
            .unwrap_err()
            .to_string();
    assert!(e.contains("no tensor named `w` (present: none)"), "{e}");
    let e =
        p.c.predict("{}", &NamedTensors::new(), &x)
            .unwrap_err()
            .to_string();
    assert!(e.contains("the params have no `w0`"), "{e}");

    // A host shape error inside the plugin comes back as its error.
    let params: NamedTensors = vec![
        ("w".to_string(), tensor(dev, &[4, 2], vec![0.5; 8])),
        ("b".to_string(), tensor(dev, &[2], vec![0.0; 2])),
    ];
    let e = p.js.predict("{}", &params, &x).unwrap_err().to_string();
    assert!(e.contains("matmul") && e.contains("[2, 3]"), "{e}");
    let params: NamedTensors = vec![
        ("w0".to_string(), tensor(dev, &[4, 2], vec![0.5; 8])),
        ("b0".to_string(), tensor(dev, &[2], vec![0.0; 2])),
    ];
    let e = p.c.predict("{}", &params, &x).unwrap_err().to_string();
    assert!(e.contains("matmul") && e.contains("[2, 3]"), "{e}");
}

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn python_preprocessor_rust_trainer_js_predictor_matches_all_rust_on_iris() {
    compare_with_all_rust(
        "iris",
        [
            ("preprocessor", PYTHON_STANDARDIZE),
            ("predictor", JS_SOFTMAX_REGRESSION),
        ],
    );
}

#[test]
#[ignore = "needs the polyglot components: bash plugins/build-polyglot.sh"]
fn python_preprocessor_rust_trainer_c_predictor_matches_all_rust_on_digits() {
    compare_with_all_rust(
        "digits",
        [("preprocessor", PYTHON_STANDARDIZE), ("predictor", C_MLP)],
    );
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

        let (got, want) = (json_predictions(&got), json_predictions(&want));
        assert!(!got.is_empty() && got.len() == want.len(), "{name}");
        for (row, ((gl, gp), (wl, wp))) in got.iter().zip(&want).enumerate() {
            assert_eq!(gl, wl, "{name} row {row}: label");
            for (x, y) in gp.iter().zip(wp) {
                assert!((x - y).abs() <= 1e-5, "{name} row {row}: {gp:?} vs {wp:?}");
            }
        }
    }
}
