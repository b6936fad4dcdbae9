//! Numerical gradient checks through the real components. With plain
//! gradient descent (learning rate 1) a step moves every parameter by exactly
//! -dL/dp, and the step's reported loss is L at the parameters passed in, so
//! central differences of that loss must match the update. Three ways to get
//! a gradient are checked: the host's autodiff of a `model` plugin's forward
//! pass (`mlp`, `softmax_regression`), a 0.2 trainer asking the host for its
//! gradients (`misbehave` in mode `grad`), and the hand-written backprop of a
//! 0.1 trainer (`mlp_v01`).

mod common;

use common::*;
use tensorlet_runtime::gpu::Tensor;
use tensorlet_runtime::gpu::optim::{LrSchedule, Optimizer, Rule, Schedule};
use tensorlet_runtime::{DataSpec, HostTraining, NamedTensors, Plugin, Runtime, Task};

/// Plain gradient descent with learning rate `lr`: p' = p - lr·g.
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
        task: tensorlet_runtime::Task::Classification,
    }
}

/// One step of `p` at learning rate `lr`: a host-trained model's `learn`, or
/// the plugin's own `step` (whose config carries the rate).
fn step(
    p: &Plugin,
    config: &str,
    params: &NamedTensors,
    x: &Tensor,
    y: &Tensor,
    lr: f32,
) -> tensorlet_runtime::StepOutput {
    if p.is_model() {
        p.learn(config, params, x, y, 0, &sgd(lr)).unwrap()
    } else {
        let config = config.replace("LR", &lr.to_string());
        p.step(&config, params, x, y, 0).unwrap()
    }
}

fn loss(p: &Plugin, config: &str, params: &NamedTensors, x: &Tensor, y: &Tensor) -> f64 {
    f64::from(step(p, config, params, x, y, 1.0).loss)
}
fn with_entry(
    rt: &Runtime,
    params: &NamedTensors,
    name: &str,
    i: usize,
    delta: f32,
) -> NamedTensors {
    params
        .iter()
        .map(|(n, t)| {
            if n != name {
                return (n.clone(), t.clone());
            }
            let mut v = rt.device().to_vec(t);
            v[i] += delta;
            (
                n.clone(),
                rt.device().from_vec(&t.shape().to_u32(), v).unwrap(),
            )
        })
        .collect()
}

/// Checks every entry of every parameter whose name passes `checked`.
fn check_gradients(stem: &str, config: &str, checked: impl Fn(&str) -> bool) {
    let rt = tight_runtime();
    let p = load(&rt, stem);
    let dev = rt.device();
    let spec = DataSpec {
        features: 4,
        outputs: 3,
        task: Task::Classification,
        seed: 7,
    };
    let mut params = p.init(&config.replace("LR", "1.0"), spec).unwrap();
    // Move a little away from the initial point (zero biases) with small steps,
    // so that biases matter and no pre-activation sits on a ReLU kink.
    let (x0, y0) = batch(dev, 12, 4, 3);
    for _ in 0..3 {
        params = step(&p, config, &params, &x0, &y0, 0.05).params;
    }
    let (x, y) = batch(dev, 9, 4, 3);
    let updated = step(&p, config, &params, &x, &y, 1.0).params;

    let eps = 1e-3f32;
    let mut checked_entries = 0;
    let mut worst = 0.0f64;
    for (name, t) in &params {
        if !checked(name) {
            continue;
        }
        let before = dev.to_vec(t);
        let after = dev.to_vec(&updated.iter().find(|(n, _)| n == name).unwrap().1);
        for i in 0..before.len() {
            let analytic = f64::from(before[i] - after[i]); // lr = 1
            let plus = loss(&p, config, &with_entry(&rt, &params, name, i, eps), &x, &y);
            let minus = loss(&p, config, &with_entry(&rt, &params, name, i, -eps), &x, &y);
            let numeric = (plus - minus) / (2.0 * f64::from(eps));
            let err = (analytic - numeric).abs();
            worst = worst.max(err / numeric.abs().max(1e-2));
            assert!(
                err <= 5e-4 + 1e-2 * numeric.abs(),
                "{stem}: d loss / d {name}[{i}]: backprop {analytic:.6}, numeric {numeric:.6}"
            );
            checked_entries += 1;
        }
    }
    assert!(
        checked_entries >= 15,
        "only {checked_entries} entries checked"
    );
    eprintln!("{stem}: {checked_entries} entries, worst relative error {worst:.2e}");
}

#[test]
fn host_autodiff_of_the_mlp_model_matches_numerical_gradients() {
    check_gradients("mlp", r#"{"hidden":[6,5]}"#, |_| true);
}

#[test]
fn host_autodiff_of_softmax_regression_matches_numerical_gradients() {
    check_gradients("softmax_regression", "{}", |_| true);
}

#[test]
fn host_gradients_asked_for_by_a_trainer_match_numerical_gradients() {
    check_gradients("misbehave", r#"{"mode":"grad","learning_rate":LR}"#, |n| {
        n == "w" || n == "b"
    });
}

#[test]
fn hand_written_0_1_backprop_matches_numerical_gradients() {
    check_gradients(
        "mlp_v01",
        r#"{"hidden":[6,5],"optimizer":"sgd","momentum":0,"learning_rate":LR}"#,
        |n| !n.starts_with("opt."),
    );
}
