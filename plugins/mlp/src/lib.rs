//! Model: a multi-layer perceptron with ReLU hidden layers. Its forward pass
//! returns the class logits; the host trains it (the cross-entropy, its
//! gradients and the `[training]` optimizer) and predicts with their softmax.
//!
//! Config: `hidden`, the hidden layer widths, default `[64]` (`[]` is softmax
//! regression). Params: `w0, b0, w1, b1, …`, `wi` `[fan_in, fan_out]`
//! (He-normal, seeded with `derive_seed(spec.seed, i)`), `bi` `[fan_out]` (zeros).

use serde::Deserialize;
use tensorlet_sdk::{Config, DataSpec, Mode, Model, Params, Result, Tensor, derive_seed, ensure};

struct Mlp;

/// `[model.config]`: an unknown key is an error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    hidden: Vec<u32>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { hidden: vec![64] }
    }
}

/// Parameter `{kind}{i}` (`w0`, `b1`, …), found without formatting its name:
/// every prediction looks up each layer's parameters.
fn param(p: &Params, kind: char, i: usize) -> Option<&Tensor> {
    let is = |n: &str| n.strip_prefix(kind).and_then(|d| d.parse().ok()) == Some(i);
    p.iter().find(|(n, _)| is(n)).map(|(_, t)| t)
}

impl Model for Mlp {
    fn init(config: &Config, spec: DataSpec) -> Result<Params> {
        let Settings { hidden } = config.decode()?;
        ensure!(!hidden.contains(&0), "mlp: `hidden` widths must be > 0");
        let mut widths = vec![spec.features];
        widths.extend(hidden.into_iter().chain([spec.outputs]));
        let mut params = Params::new();
        for (i, w) in widths.windows(2).enumerate() {
            let std = (2.0 / w[0].max(1) as f32).sqrt(); // He-normal
            let seed = derive_seed(spec.seed, i as u64);
            params.insert(
                format!("w{i}"),
                Tensor::randn(&[w[0], w[1]], 0.0, std, seed)?,
            );
            params.insert(format!("b{i}"), Tensor::zeros(&[w[1]])?);
        }
        Ok(params)
    }

    /// `relu(x·w0 + b0)`, …, then the last layer without ReLU: the logits.
    fn forward(config: &Config, p: &Params, x: Tensor, _mode: Mode) -> Result<Tensor> {
        config.decode::<Settings>()?; // a predictor-only stage's typo is an error too
        let layers = (0..).take_while(|&i| param(p, 'w', i).is_some()).count();
        ensure!(
            layers > 0,
            "mlp: the params have no `w0`; were they made by mlp?"
        );
        let mut a = x;
        for i in 0..layers {
            let b = param(p, 'b', i).ok_or_else(|| format!("mlp: the params have no `b{i}`"))?;
            let z = (&a.matmul(param(p, 'w', i).expect("counted"))? + b)?;
            a = if i + 1 < layers { z.relu() } else { z };
        }
        Ok(a)
    }
}

tensorlet_sdk::export_model!(Mlp);
