//! Misbehaving plugins are stopped with an error that names the plugin and
//! what happened, and the host carries on serving well-behaved calls.

mod common;

use common::*;
use tensorlet_runtime::gpu::Tensor;
use tensorlet_runtime::train::PipelinePlugins;
use tensorlet_runtime::{DataSpec, PluginFailure, Runtime, RuntimeError, Task};

fn config(mode: &str) -> String {
    format!(r#"{{"mode":"{mode}"}}"#)
}

/// Runs `predict` in `mode` and returns the failure.
fn predict_failure(rt: &Runtime, mode: &str) -> RuntimeError {
    let p = load(rt, "misbehave");
    let dev = rt.device();
    let params = p
        .init(
            "{}",
            DataSpec {
                features: 3,
                outputs: 2,
                task: Task::Classification,
                seed: 1,
            },
        )
        .unwrap();
    let (x, _) = batch(dev, 4, 3, 2);
    p.predict(&config(mode), &params, &x).unwrap_err()
}

/// After any failure, the same runtime still runs a healthy call correctly.
fn still_works(rt: &Runtime) {
    let p = load(rt, "misbehave");
    let dev = rt.device();
    let params = p
        .init(
            "{}",
            DataSpec {
                features: 3,
                outputs: 2,
                task: Task::Classification,
                seed: 1,
            },
        )
        .unwrap();
    let (x, _) = batch(dev, 4, 3, 2);
    let probs = p.predict("{}", &params, &x).unwrap();
    assert_eq!(probs.shape().dims(), &[4, 2]);
    // Zero-initialised softmax regression: every class equally likely.
    for v in dev.to_vec(&probs).unwrap() {
        assert!((v - 0.5).abs() < 1e-6, "{v}");
    }
}

fn plugin_failure(e: &RuntimeError) -> &PluginFailure {
    match e {
        RuntimeError::Plugin {
            plugin, failure, ..
        } => {
            assert_eq!(plugin, "misbehave");
            failure
        }
        other => panic!("expected a plugin failure, got {other}"),
    }
}

#[test]
fn infinite_loop_hits_the_deadline() {
    let rt = tight_runtime();
    let started = std::time::Instant::now();
    let e = predict_failure(&rt, "loop");
    assert!(
        matches!(plugin_failure(&e), PluginFailure::Deadline(_)),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "plugin `misbehave` ran past its deadline of 500ms and was stopped (during predict)"
    );
    // Stopped by the deadline, not by anything slower (a generous bound: not a benchmark).
    assert!(started.elapsed().as_secs() < 20);
    still_works(&rt);
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let rt = tight_runtime();
    let e = predict_failure(&rt, "memory");
    assert!(
        matches!(plugin_failure(&e), PluginFailure::Memory(_)),
        "{e}"
    );
    assert!(
        e.to_string().contains("hit the memory limit of 64 MiB"),
        "{e}"
    );
    still_works(&rt);
}

#[test]
fn hoarding_host_tensors_hits_the_host_tensor_limit() {
    let rt = tight_runtime();
    let e = predict_failure(&rt, "host-memory");
    assert!(
        matches!(plugin_failure(&e), PluginFailure::HostTensorMemory(_)),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("held more than 64 MiB of host tensors and was stopped"),
        "{e}"
    );
    still_works(&rt);
}

#[test]
fn unbounded_recursion_overflows_the_stack() {
    let rt = tight_runtime();
    let e = predict_failure(&rt, "stack");
    assert!(matches!(plugin_failure(&e), PluginFailure::Stack(_)), "{e}");
    assert!(e.to_string().contains("overflowed its stack"), "{e}");
    still_works(&rt);
}

#[test]
fn panic_traps_and_reports_the_panic_message() {
    let rt = tight_runtime();
    let e = predict_failure(&rt, "panic");
    let PluginFailure::Trap { stderr, .. } = plugin_failure(&e) else {
        panic!("expected a trap: {e}");
    };
    assert!(
        stderr.contains("misbehave: predict panics as asked"),
        "{stderr}"
    );
    // The SDK's panic hook (the plugin is built without WASI's standard
    // library) reports where, as the standard library's hook does.
    assert!(stderr.contains("panicked at"), "{stderr}");
    assert!(e.to_string().contains("trapped"), "{e}");
    still_works(&rt);
}

/// The bundled plugins are built for `wasm32-unknown-unknown`: besides
/// tensorlet:ml (and wasi:nn for the ONNX predictor) they import only what
/// the SDK's panic hook writes with, not the WASI command-line world that a
/// `wasm32-wasip2` standard library links, which each per-call instance would
/// pay for.
#[test]
fn bundled_plugins_import_no_wasi_cli_world() {
    let rt = tight_runtime();
    for stem in [
        "standardize",
        "passthrough",
        "softmax_regression",
        "mlp",
        "onnx_predict",
        "imputer",
        "one_hot",
        "ordinal",
        "min_max",
        "robust",
    ] {
        let info = rt.inspect(stem, &plugin_bytes(stem)).unwrap();
        let allowed = |i: &str| {
            i.starts_with("tensorlet:ml/")
                || i.starts_with("wasi:nn/")
                || i.starts_with("wasi:cli/stderr@")
                || i.starts_with("wasi:io/")
        };
        let extra: Vec<&String> = info.imports.iter().filter(|i| !allowed(i)).collect();
        assert!(extra.is_empty(), "{stem} imports {extra:?}");
        assert!(
            info.imports
                .iter()
                .any(|i| i.starts_with("tensorlet:ml/tensor@")),
            "{stem}: {:?}",
            info.imports
        );
        assert!(info.unprovided.is_none(), "{stem}: {:?}", info.unprovided);
    }
}

#[test]
fn plugin_errors_are_reported_as_errors() {
    let rt = tight_runtime();
    let e = predict_failure(&rt, "error");
    assert!(matches!(plugin_failure(&e), PluginFailure::Error(_)), "{e}");
    assert_eq!(
        e.to_string(),
        "plugin `misbehave` returned an error: misbehave: predict fails as asked (during predict)"
    );
    let p = load(&rt, "misbehave");
    let e = p
        .init(
            &config("init-error"),
            DataSpec {
                features: 3,
                outputs: 2,
                task: Task::Classification,
                seed: 1,
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("during init"), "{e}");
    still_works(&rt);
}

#[test]
fn tensor_op_errors_reach_the_plugin_as_results() {
    // The MLP predictor given params of the wrong width gets a shape error from
    // the host's matmul, which it returns; the message names the op and shapes.
    let rt = tight_runtime();
    let p = load(&rt, "mlp");
    let dev = rt.device();
    let params = p
        .init(
            r#"{"hidden":[4]}"#,
            DataSpec {
                features: 3,
                outputs: 2,
                task: Task::Classification,
                seed: 1,
            },
        )
        .unwrap();
    let (x, _) = batch(dev, 2, 5, 2);
    let e = p.predict("{}", &params, &x).unwrap_err();
    assert!(
        matches!(plugin_failure_any(&e), PluginFailure::Error(_)),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("matmul: shapes [2, 5] and [3, 4] are incompatible"),
        "{e}"
    );
}

fn plugin_failure_any(e: &RuntimeError) -> &PluginFailure {
    match e {
        RuntimeError::Plugin { failure, .. } => failure,
        other => panic!("expected a plugin failure, got {other}"),
    }
}

fn misbehaving_pipeline(dir: &std::path::Path, stage: &str, mode: &str) -> std::path::PathBuf {
    let path = |s: &str| plugin_path(s).display().to_string();
    let (pre, tr, pr) = match stage {
        "preprocessor" => ("misbehave", "softmax_regression", "softmax_regression"),
        "trainer" => ("standardize", "misbehave", "softmax_regression"),
        _ => ("standardize", "softmax_regression", "misbehave"),
    };
    let cfg = |s: &str| {
        if s == stage {
            format!("config = {{ mode = \"{mode}\" }}")
        } else {
            String::new()
        }
    };
    let text = format!(
        "[pipeline]\nname = \"bad\"\n\
         [preprocessor]\npath = {:?}\n{}\n\
         [trainer]\npath = {:?}\n{}\n\
         [predictor]\npath = {:?}\n{}\n\
         [training]\nepochs = 2\nbatch_size = 16\nlearning_rate = 0.1\n",
        path(pre),
        cfg("preprocessor"),
        path(tr),
        cfg("trainer"),
        path(pr),
        cfg("predictor"),
    );
    let file = dir.join(format!("{stage}-{mode}.toml"));
    std::fs::write(&file, text).unwrap();
    file
}

fn train_error(rt: &Runtime, stage: &str, mode: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let pipeline =
        tensorlet_runtime::Pipeline::load(&misbehaving_pipeline(dir.path(), stage, mode)).unwrap();
    let data = tensorlet_runtime::data::load_labeled(&data("iris.csv"), None).unwrap();
    let resolve = |s: &tensorlet_runtime::pipeline::PluginSource| match s {
        tensorlet_runtime::pipeline::PluginSource::Path(p) => Ok((
            p.file_stem().unwrap().to_string_lossy().into_owned(),
            std::fs::read(p).unwrap(),
        )),
        other => panic!("unexpected {other:?}"),
    };
    let plugins = PipelinePlugins::load(&pipeline, rt, &unsigned_resolver(resolve)).unwrap();
    tensorlet_runtime::train::train(rt.device(), &plugins, &data, &pipeline.training, 3, &mut ())
        .unwrap_err()
        .to_string()
}

#[test]
fn wrong_output_shapes_and_nans_are_rejected_by_the_host() {
    let rt = tight_runtime();
    let e = train_error(&rt, "predictor", "bad-shape");
    assert_eq!(
        e,
        "plugin `misbehave` returned probabilities of shape [30, 4] for 30 rows; \
         expected [30, 3] (during predict)"
    );
    let e = train_error(&rt, "predictor", "nan");
    assert!(
        e.starts_with("plugin `misbehave` returned a non-finite probability (NaN)"),
        "{e}"
    );
    let e = train_error(&rt, "trainer", "nan");
    assert!(
        e.starts_with("plugin `misbehave` returned a non-finite loss (NaN) at epoch 1"),
        "{e}"
    );
    let e = train_error(&rt, "preprocessor", "bad-shape");
    assert!(
        e.starts_with("plugin `misbehave` returned shape [121, 4] for input [120, 4]"),
        "{e}"
    );
    let e = train_error(&rt, "trainer", "loop");
    assert!(e.contains("ran past its deadline"), "{e}");
    still_works(&rt);
}

#[test]
fn a_plugin_of_the_wrong_kind_is_refused() {
    let rt = tight_runtime();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[pipeline]\nname = \"x\"\n[preprocessor]\npath = {:?}\n[trainer]\npath = {:?}\n\
         [predictor]\npath = {:?}\n",
        plugin_path("mlp").display().to_string(),
        plugin_path("mlp").display().to_string(),
        plugin_path("mlp").display().to_string(),
    );
    let file = dir.path().join("p.toml");
    std::fs::write(&file, text).unwrap();
    let pipeline = tensorlet_runtime::Pipeline::load(&file).unwrap();
    let resolve = |s: &tensorlet_runtime::pipeline::PluginSource| match s {
        tensorlet_runtime::pipeline::PluginSource::Path(p) => {
            Ok(("mlp".to_string(), std::fs::read(p).unwrap()))
        }
        other => panic!("unexpected {other:?}"),
    };
    let e = PipelinePlugins::load(&pipeline, &rt, &unsigned_resolver(resolve))
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        e,
        "plugin `mlp` cannot be loaded: it is named as the pipeline's [preprocessor] but does \
         not export tensorlet:ml/preprocess"
    );
}

#[test]
fn garbage_is_not_a_component() {
    let rt = tight_runtime();
    let e = load_bytes(&rt, "junk", b"\0asm\x01\0\0\0garbage".to_vec())
        .err()
        .unwrap();
    assert!(
        e.to_string()
            .starts_with("plugin `junk` cannot be loaded: it is not a valid WebAssembly component"),
        "{e}"
    );
    assert!(!e.to_string().contains("core module"), "{e}");
}

/// A valid core module (say, built for wasm32-unknown-unknown without the
/// component linker) is refused with how to make it a component.
#[test]
fn a_core_module_is_refused_with_how_to_build_a_component() {
    let rt = tight_runtime();
    let e = load_bytes(&rt, "core", b"\0asm\x01\0\0\0".to_vec())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with(
            "plugin `core` cannot be loaded: it is not a valid WebAssembly component: it is a \
             core module"
        ),
        "{e}"
    );
    assert!(e.contains("wasm-component-ld"), "{e}");
}

/// The error a `step` in `mode` returns (a grad request the host refused,
/// passed on by the plugin as its own error).
fn grad_refusal(mode: &str) -> String {
    let rt = tight_runtime();
    let p = load(&rt, "misbehave");
    let spec = DataSpec {
        features: 4,
        outputs: 3,
        task: Task::Classification,
        seed: 1,
    };
    let params = p.init("{}", spec).unwrap();
    let (x, y) = batch(rt.device(), 9, 4, 3);
    let e = p.step(&config(mode), &params, &x, &y, 0).unwrap_err();
    assert!(matches!(plugin_failure(&e), PluginFailure::Error(_)), "{e}");
    let message = e.to_string();
    assert!(
        message.starts_with("plugin `misbehave` returned an error: grad: "),
        "{message}"
    );
    still_works(&rt);
    message
}

#[test]
fn a_gradient_of_a_tensor_with_many_elements_is_refused() {
    let m = grad_refusal("grad-not-scalar");
    assert!(m.contains("[9, 3]") && m.contains("one element"), "{m}");
}

#[test]
fn a_gradient_with_respect_to_an_unwatched_name_is_refused() {
    let m = grad_refusal("grad-unknown");
    assert!(
        m.contains("`nope`") && m.contains("w") && m.contains("b"),
        "{m}"
    );
}

#[test]
fn a_gradient_only_through_argmax_is_refused_naming_the_op() {
    let m = grad_refusal("grad-argmax");
    assert!(m.contains("argmax") && m.contains("`w`"), "{m}");
}

#[test]
fn a_gradient_of_a_loss_that_ignores_the_params_is_refused() {
    let m = grad_refusal("grad-unrelated");
    assert!(m.contains("does not depend"), "{m}");
}

/// Plain gradient descent, for the host-trained model tests.
fn sgd() -> tensorlet_runtime::HostTraining {
    use tensorlet_runtime::gpu::optim::{LrSchedule, Optimizer, Rule, Schedule};
    tensorlet_runtime::HostTraining {
        optimizer: Optimizer {
            rule: Rule::Sgd {
                momentum: 0.0,
                nesterov: false,
            },
            weight_decay: 0.0,
            clip_grad_norm: None,
        },
        schedule: LrSchedule {
            base: 0.1,
            schedule: Schedule::Constant,
            warmup_steps: 0,
        },
        task: tensorlet_runtime::Task::Classification,
    }
}

/// One host-trained step of `misbehave_model` in `mode`: its failure, or
/// `None` when it succeeded (and the plugin still works after a failure).
fn model_step(mode: &str) -> Option<RuntimeError> {
    let rt = tight_runtime();
    let p = load(&rt, "misbehave_model");
    assert!(p.is_model());
    let spec = DataSpec {
        features: 4,
        outputs: 3,
        task: Task::Classification,
        seed: 1,
    };
    let params = p.init(&config(mode), spec).unwrap();
    let (x, y) = batch(rt.device(), 9, 4, 3);
    let outcome = p.learn(&config(mode), &params, &x, &y, 0, &sgd()).err();
    let ok = p.init("{}", spec).unwrap();
    let out = p.learn("{}", &ok, &x, &y, 0, &sgd()).unwrap();
    assert!(out.loss.is_finite() && out.grad_norm.is_some_and(f32::is_finite));
    let probs = rt
        .device()
        .to_vec(&p.predict("{}", &out.params, &x).unwrap())
        .unwrap();
    for row in probs.chunks(3) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
    }
    outcome
}

#[test]
fn a_model_parameter_that_forward_never_uses_is_named() {
    let e = model_step("unused-param").expect("refused");
    assert!(
        matches!(
            plugin_failure_of(&e, "misbehave_model"),
            PluginFailure::BadOutput(_)
        ),
        "{e}"
    );
    let m = e.to_string();
    assert!(m.contains("does not depend on `unused`"), "{m}");
}

#[test]
fn a_model_output_only_through_argmax_is_refused_naming_the_op() {
    let m = model_step("argmax").expect("refused").to_string();
    assert!(m.contains("argmax") && m.contains("`w`"), "{m}");
}

#[test]
fn a_model_output_with_the_wrong_rows_is_refused() {
    let m = model_step("bad-shape").expect("refused").to_string();
    assert!(m.contains("for 9 rows") && m.contains("[10, 3]"), "{m}");
}

#[test]
fn a_model_error_is_reported_as_its_own() {
    let e = model_step("error").expect("refused");
    assert!(
        matches!(plugin_failure_of(&e, "misbehave_model"), PluginFailure::Error(m) if m.contains("misbehave-model: forward fails")),
        "{e}"
    );
    assert!(model_step("ok").is_none());
}

#[test]
fn a_model_may_not_name_a_parameter_as_optimizer_state() {
    let rt = tight_runtime();
    let p = load(&rt, "misbehave_model");
    let spec = DataSpec {
        features: 4,
        outputs: 3,
        task: Task::Classification,
        seed: 1,
    };
    let e = p.init(&config("opt-param"), spec).unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("`opt.x`") && m.contains("host's optimizer state"),
        "{m}"
    );
}

/// Bad arguments to the N-D ops reach the plugin as `result` errors that
/// name the op and the offending values; the plugin returns them as its own
/// error, nothing traps, and the plugin keeps working (`model_step`).
#[test]
fn bad_arguments_to_tensor_ops_are_errors_naming_the_op_and_the_values() {
    let cases: &[(&str, &[&str])] = &[
        ("conv-stride-0", &["conv2d", "stride"]),
        ("conv-kernel-too-large", &["conv2d", "5"]),
        ("conv-rank", &["conv2d", "[4, 4]"]),
        ("pool-too-large", &["max-pool2d", "5"]),
        ("embedding-index", &["embedding", "9"]),
        ("embedding-dtype", &["embedding", "f32"]),
        ("bmm-shape", &["matmul", "[2, 3, 4]", "[2, 5, 6]"]),
        ("permute-axes", &["permute", "[0, 0, 1, 2]"]),
        ("cross-entropy-class", &["cross-entropy", "3"]),
        ("i64-to-list", &["to-i64", "0.5"]),
    ];
    for (probe, words) in cases {
        let e = model_step(&format!("probe:{probe}")).expect("refused");
        let PluginFailure::Error(m) = plugin_failure_of(&e, "misbehave_model") else {
            panic!("{probe}: expected the plugin's error, got {e}");
        };
        assert!(!m.contains("was not refused"), "{probe}: {m}");
        for w in *words {
            assert!(m.contains(w), "{probe}: `{w}` not in: {m}");
        }
    }
}

/// The spec of the `misbehave_model` tests: 4 features, 3 classes.
const MODEL_SPEC: DataSpec = DataSpec {
    features: 4,
    outputs: 3,
    task: Task::Classification,
    seed: 1,
};

fn named<'a>(params: &'a [(String, Tensor)], name: &str) -> &'a Tensor {
    &params.iter().find(|(n, _)| n == name).expect(name).1
}

/// A model's `state.…` params (batch norm's running statistics) are passed in
/// but never trained: the host keeps what `batch-norm` computed in the
/// training step, and `eval` normalizes with them.
#[test]
fn batch_norm_running_statistics_are_kept_by_the_host() {
    let rt = tight_runtime();
    let dev = rt.device();
    let p = load(&rt, "misbehave_model");
    let cfg = config("batch-norm");
    let params = p.init(&cfg, MODEL_SPEC).unwrap();
    let (x, y) = batch(dev, 9, 4, 3);
    let out = p.learn(&cfg, &params, &x, &y, 0, &sgd()).unwrap();
    // momentum 0.1 from mean 0 / var 1: 0.1·batch mean, 0.9 + 0.1·unbiased var.
    let xs = dev.to_vec(&x).unwrap();
    let mean = dev.to_vec(named(&out.params, "state.bn.mean")).unwrap();
    let var = dev.to_vec(named(&out.params, "state.bn.var")).unwrap();
    for c in 0..4 {
        let col: Vec<f64> = xs
            .iter()
            .skip(c)
            .step_by(4)
            .map(|&v| f64::from(v))
            .collect();
        let m = col.iter().sum::<f64>() / 9.0;
        let v = col.iter().map(|a| (a - m).powi(2)).sum::<f64>() / 8.0;
        assert!(
            (f64::from(mean[c]) - 0.1 * m).abs() < 1e-5,
            "mean {c}: {mean:?}"
        );
        assert!(
            (f64::from(var[c]) - (0.9 + 0.1 * v)).abs() < 1e-5,
            "var {c}: {var:?}"
        );
    }
    // The trained params moved; the statistics were not optimized as params.
    assert_ne!(
        dev.to_vec(named(&out.params, "w")).unwrap(),
        dev.to_vec(named(&params, "w")).unwrap()
    );
    assert!(!out.params.iter().any(|(n, _)| n.starts_with("opt.state")));
    // Eval normalizes with the running statistics: a different answer than
    // the initial (0, 1) statistics give, and every row a distribution.
    let kept = dev
        .to_vec(&p.predict(&cfg, &out.params, &x).unwrap())
        .unwrap();
    let mut fresh = out.params.clone();
    for (n, t) in fresh.iter_mut() {
        if n == "state.bn.mean" {
            *t = named(&params, "state.bn.mean").clone();
        }
    }
    let initial = dev.to_vec(&p.predict(&cfg, &fresh, &x).unwrap()).unwrap();
    assert_ne!(kept, initial);
    for row in kept.chunks(3) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
    }
    // Batch norm in train mode outside a training step is refused.
    let e = p.init(&cfg, MODEL_SPEC).and_then(|params| {
        let wrong = params
            .into_iter()
            .map(|(n, t)| (n.replace("state.", "stats."), t))
            .collect::<Vec<_>>();
        p.learn(&cfg, &wrong, &x, &y, 0, &sgd())
    });
    let m = e.unwrap_err().to_string();
    assert!(
        m.contains("state.bn.mean") || m.contains("`state.…`"),
        "{m}"
    );
}

/// Dropout's mask is drawn from its seed mixed with the training step: the
/// same step gives the same update, another step another mask.
#[test]
fn dropout_draws_a_mask_per_training_step() {
    let rt = tight_runtime();
    let dev = rt.device();
    let p = load(&rt, "misbehave_model");
    let cfg = config("dropout");
    let params = p.init(&cfg, MODEL_SPEC).unwrap();
    let (x, y) = batch(dev, 9, 4, 3);
    let w = |step: u64| {
        let out = p.learn(&cfg, &params, &x, &y, step, &sgd()).unwrap();
        dev.to_vec(named(&out.params, "w")).unwrap()
    };
    assert_eq!(w(3), w(3));
    assert_ne!(w(3), w(4));
    let plain = p.learn("{}", &params, &x, &y, 3, &sgd()).unwrap();
    assert_ne!(w(3), dev.to_vec(named(&plain.params, "w")).unwrap());
    // Prediction runs without dropout: the same as the plain model's.
    let a = dev.to_vec(&p.predict(&cfg, &params, &x).unwrap()).unwrap();
    let b = dev.to_vec(&p.predict("{}", &params, &x).unwrap()).unwrap();
    assert_eq!(a, b);
}

fn plugin_failure_of<'a>(e: &'a RuntimeError, name: &str) -> &'a PluginFailure {
    match e {
        RuntimeError::Plugin {
            plugin, failure, ..
        } => {
            assert_eq!(plugin, name);
            failure
        }
        other => panic!("expected a plugin failure, got {other}"),
    }
}
