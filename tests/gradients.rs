//! Numerical gradient checks of the trainers' hand-written backprop, through
//! the real components. With plain gradient descent (learning rate 1) a step
//! moves every parameter by exactly -dL/dp, and the step's reported loss is L
//! at the parameters passed in, so central differences of that loss must
//! match the update.

mod common;

use common::*;
use tensorlet_runtime::gpu::Tensor;
use tensorlet_runtime::{DataSpec, NamedTensors, Plugin, Runtime};

fn loss(p: &Plugin, config: &str, params: &NamedTensors, x: &Tensor, y: &Tensor) -> f64 {
    f64::from(p.step(config, params, x, y, 0).unwrap().loss)
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
        classes: 3,
        seed: 7,
    };
    let mut params = p.init(config, spec).unwrap();
    // Move a little away from the initial point (zero biases) with small steps,
    // so that biases matter and no pre-activation sits on a ReLU kink.
    let warmup = config.replace(r#""learning_rate":1.0"#, r#""learning_rate":0.05"#);
    let (x0, y0) = batch(dev, 12, 4, 3);
    for s in 0..3 {
        params = p.step(&warmup, &params, &x0, &y0, s).unwrap().params;
    }
    let (x, y) = batch(dev, 9, 4, 3);
    let updated = p.step(config, &params, &x, &y, 3).unwrap().params;

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
fn mlp_backprop_matches_numerical_gradients() {
    check_gradients(
        "mlp",
        r#"{"hidden":[6,5],"optimizer":"sgd","momentum":0,"learning_rate":1.0}"#,
        |n| !n.starts_with("opt."),
    );
}

#[test]
fn softmax_regression_gradient_matches_numerical_gradients() {
    check_gradients(
        "softmax_regression",
        r#"{"learning_rate":1.0,"l2":0.01}"#,
        |n| n == "w" || n == "b",
    );
}
