//! Model: a multi-layer perceptron with ReLU hidden layers. Its forward pass
//! returns the class logits; the host trains it (the cross-entropy, its
//! gradients and the `[training]` optimizer, Adam by default) and predicts
//! with their softmax.
//!
//! Config: `hidden`, the hidden layer widths, default `[64]` (`[]` is softmax
//! regression). Params: `w0, b0, w1, b1, …`, `wi` `[fan_in, fan_out]`
//! (He-normal, layer `i` seeded with `derive_seed(spec.seed, i)`) and `bi`
//! `[fan_out]` (zeros).

use tensorlet_sdk::{Config, DataSpec, Mode, Model, Params, Result, Tensor, derive_seed, ensure};

struct Mlp;

/// Whether `name` is `{kind}{i}` (`w0`, `b1`, …), checked without formatting
/// it: a prediction looks up every layer's parameters.
fn is_param(name: &str, kind: char, i: usize) -> bool {
    name.strip_prefix(kind).and_then(|d| d.parse().ok()) == Some(i)
}

/// Parameter `{kind}{i}`; a missing one is named in the error.
fn param(p: &Params, kind: char, i: usize) -> Result<&Tensor> {
    match p.iter().find(|(n, _)| is_param(n, kind, i)) {
        Some((_, t)) => Ok(t),
        None => p.get(&format!("{kind}{i}")),
    }
}

impl Model for Mlp {
    fn init(config: &Config, spec: DataSpec) -> Result<Params> {
        let hidden = config.u32_list_or("hidden", &[64])?;
        ensure!(
            !hidden.contains(&0),
            "mlp: `hidden` widths must be > 0, got {hidden:?}"
        );
        let widths: Vec<u32> = [spec.features]
            .into_iter()
            .chain(hidden)
            .chain([spec.outputs])
            .collect();
        let mut params = Params::new();
        for (i, pair) in widths.windows(2).enumerate() {
            let (fan_in, fan_out) = (pair[0], pair[1]);
            let std = (2.0 / fan_in.max(1) as f32).sqrt(); // He-normal
            let w = Tensor::randn(
                &[fan_in, fan_out],
                0.0,
                std,
                derive_seed(spec.seed, i as u64),
            )?;
            params.insert(format!("w{i}"), w);
            params.insert(format!("b{i}"), Tensor::zeros(&[fan_out])?);
        }
        Ok(params)
    }

    /// `relu(x·w0 + b0)`, …, then the last layer without ReLU: the logits.
    fn forward(_config: &Config, p: &Params, x: Tensor, _mode: Mode) -> Result<Tensor> {
        let layers = (0..)
            .take_while(|&i| p.names().any(|n| is_param(n, 'w', i)))
            .count();
        ensure!(
            layers > 0,
            "mlp: the params have no `w0`; were they made by the mlp model?"
        );
        let mut a = x;
        for i in 0..layers {
            let z = (&a.matmul(param(p, 'w', i)?)? + param(p, 'b', i)?)?;
            a = if i + 1 < layers { z.relu() } else { z };
        }
        Ok(a)
    }
}

tensorlet_sdk::export_model!(Mlp);
