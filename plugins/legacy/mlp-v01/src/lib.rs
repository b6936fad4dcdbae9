//! Trainer and predictor: a multi-layer perceptron with ReLU hidden layers and a softmax
//! output, trained on the mean cross-entropy with Adam or SGD with momentum.
//!
//! Trainer config:
//! - `hidden`: hidden layer widths, default `[64]` (`[]` is softmax regression);
//! - `optimizer`: `"adam"` (default; `beta1` 0.9, `beta2` 0.999, `eps` 1e-8) or
//!   `"sgd"` (`momentum` 0.9; with 0, the update is exactly `p - lr * dL/dp`);
//! - `learning_rate`: default 0.001 for Adam, 0.01 for SGD (the host always sets it).
//!
//! Params: `w0, b0, w1, b1, …` with `wi` `[fan_in, fan_out]` (He-normal, each layer
//! seeded from `spec.seed` by `derive_seed(seed, i)`) and `bi` `[fan_out]` (zeros); then
//! the optimizer state, zeros at first: `opt.m.<p>` and `opt.v.<p>` (Adam moments) or
//! `opt.momentum.<p>` (SGD velocity, absent when `momentum` is 0). Adam's step count is
//! the host's `step` argument. Predictor config: none; the depth comes from the params.

use tensorlet_sdk::{
    Config, DataSpec, Params, Predictor, Result, StepOutput, Tensor, Trainer, bail, derive_seed,
    ensure,
};

struct Mlp;

fn w(i: usize) -> String {
    format!("w{i}")
}

fn b(i: usize) -> String {
    format!("b{i}")
}

/// Whether `name` is `{kind}{i}` (`w0`, `b12`, …), checked without formatting
/// it: a prediction looks up every layer's parameters.
fn is_param(name: &str, kind: u8, i: usize) -> bool {
    let mut digits = [0u8; 20];
    let (mut at, mut v) = (digits.len(), i);
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    name.as_bytes().split_first() == Some((&kind, &digits[at..]))
}

/// Parameter `{kind}{i}`; a missing one is named in the error.
fn param(params: &Params, kind: u8, i: usize) -> Result<&Tensor> {
    match params.iter().find(|(n, _)| is_param(n, kind, i)) {
        Some((_, t)) => Ok(t),
        None => params.get(&format!("{}{i}", kind as char)),
    }
}

/// Number of layers: how many of `w0, w1, …` there are.
fn depth(params: &Params) -> Result<usize> {
    let n = (0..)
        .take_while(|&i| params.names().any(|n| is_param(n, b'w', i)))
        .count();
    ensure!(
        n > 0,
        "mlp: the params have no `w0`; were they made by the mlp trainer?"
    );
    Ok(n)
}

/// `ai·wi + bi`: `[batch, fan_in] x [fan_in, fan_out] + [fan_out] -> [batch, fan_out]`.
fn layer(params: &Params, i: usize, a: &Tensor) -> Result<Tensor> {
    a.matmul(param(params, b'w', i)?)? + param(params, b'b', i)?
}

/// The input of every layer (`a0 = x`, `a(i+1) = relu(zi)` with `zi = layer i of ai`)
/// and the output logits `z(layers-1)`. `layers` must be at least 1.
fn forward(params: &Params, layers: usize, x: Tensor) -> Result<(Vec<Tensor>, Tensor)> {
    let mut inputs = Vec::with_capacity(layers);
    let mut a = x;
    for i in 0..layers - 1 {
        let next = layer(params, i, &a)?.relu();
        inputs.push(std::mem::replace(&mut a, next));
    }
    let logits = layer(params, layers - 1, &a)?;
    inputs.push(a);
    Ok((inputs, logits))
}

/// The update rule, with this step's learning rate and step number.
struct Optimizer {
    rule: Rule,
    lr: f32,
    step: u64,
}

enum Rule {
    Sgd { momentum: f32 },
    Adam { beta1: f32, beta2: f32, eps: f32 },
}

impl Optimizer {
    fn from_config(config: &Config, step: u64) -> Result<Optimizer> {
        let rule = match config.str_or("optimizer", "adam")? {
            "sgd" => Rule::Sgd {
                momentum: config.f32_or("momentum", 0.9)?,
            },
            "adam" => Rule::Adam {
                beta1: config.f32_or("beta1", 0.9)?,
                beta2: config.f32_or("beta2", 0.999)?,
                eps: config.f32_or("eps", 1e-8)?,
            },
            other => bail!("mlp: unknown optimizer `{other}` (expected \"adam\" or \"sgd\")"),
        };
        let unit = |name: &str, v: f32| {
            ensure!(
                (0.0..1.0).contains(&v),
                "mlp: `{name}` must be in [0, 1), got {v}"
            );
            Ok(())
        };
        let default_lr = match rule {
            Rule::Sgd { momentum } => {
                unit("momentum", momentum)?;
                0.01
            }
            Rule::Adam { beta1, beta2, eps } => {
                unit("beta1", beta1)?;
                unit("beta2", beta2)?;
                ensure!(eps > 0.0, "mlp: `eps` must be > 0, got {eps}");
                0.001
            }
        };
        let lr = config.f32_or("learning_rate", default_lr)?;
        Ok(Optimizer { rule, lr, step })
    }

    /// Adds the initial (zero) state for parameter `name` of `shape` to `state`.
    fn init_state(&self, name: &str, shape: &[u32], state: &mut Params) -> Result<()> {
        match self.rule {
            Rule::Sgd { momentum: 0.0 } => {}
            Rule::Sgd { .. } => {
                state.insert(format!("opt.momentum.{name}"), Tensor::zeros(shape)?);
            }
            Rule::Adam { .. } => {
                state.insert(format!("opt.m.{name}"), Tensor::zeros(shape)?);
                state.insert(format!("opt.v.{name}"), Tensor::zeros(shape)?);
            }
        }
        Ok(())
    }

    /// The updated parameter `name` (value `p`, gradient `g`). Reads its optimizer state
    /// from `old` and puts the new state in `new`.
    fn update(
        &self,
        name: &str,
        p: &Tensor,
        g: Tensor,
        old: &Params,
        new: &mut Params,
    ) -> Result<Tensor> {
        let lr = self.lr;
        match self.rule {
            // p' = p - lr g
            Rule::Sgd { momentum: 0.0 } => p - &(&g * lr),
            // v' = momentum v + g;  p' = p - lr v'
            Rule::Sgd { momentum } => {
                let key = format!("opt.momentum.{name}");
                let v = (&(old.get(&key)? * momentum) + &g)?;
                let p = (p - &(&v * lr))?;
                new.insert(key, v);
                Ok(p)
            }
            // m' = b1 m + (1 - b1) g;  v' = b2 v + (1 - b2) g^2;  t = step + 1
            // p' = p - lr (m' / (1 - b1^t)) / (sqrt(v' / (1 - b2^t)) + eps)
            Rule::Adam { beta1, beta2, eps } => {
                let (m_key, v_key) = (format!("opt.m.{name}"), format!("opt.v.{name}"));
                let m = (&(old.get(&m_key)? * beta1) + &(&g * (1.0 - beta1)))?;
                let v = (&(old.get(&v_key)? * beta2) + &(g.square() * (1.0 - beta2)))?;
                let t = self.step as f64 + 1.0;
                let correction1 = (1.0 - f64::from(beta1).powf(t)) as f32;
                let correction2 = (1.0 - f64::from(beta2).powf(t)) as f32;
                let denominator = (&v * (1.0 / correction2)).sqrt() + eps;
                let p = (p - &((&m * (lr / correction1)) / &denominator)?)?;
                new.insert(m_key, m);
                new.insert(v_key, v);
                Ok(p)
            }
        }
    }
}

impl Trainer for Mlp {
    fn init(config: &Config, spec: DataSpec) -> Result<Params> {
        let optimizer = Optimizer::from_config(config, 0)?;
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

        let (mut params, mut state) = (Params::new(), Params::new());
        for (i, pair) in widths.windows(2).enumerate() {
            let (fan_in, fan_out) = (pair[0], pair[1]);
            // He-normal: std = sqrt(2 / fan_in).
            let std = (2.0 / fan_in.max(1) as f32).sqrt();
            let seed = derive_seed(spec.seed, i as u64);
            params.insert(w(i), Tensor::randn(&[fan_in, fan_out], 0.0, std, seed)?);
            params.insert(b(i), Tensor::zeros(&[fan_out])?);
            optimizer.init_state(&w(i), &[fan_in, fan_out], &mut state)?;
            optimizer.init_state(&b(i), &[fan_out], &mut state)?;
        }
        params.extend(state);
        Ok(params)
    }

    fn step(config: &Config, p: Params, x: Tensor, y: Tensor, step: u64) -> Result<StepOutput> {
        let optimizer = Optimizer::from_config(config, step)?;
        let layers = depth(&p)?;
        let batch = x.dim(0)?;
        ensure!(
            y.shape() == [batch],
            "y has shape {:?}, want [{batch}]",
            y.shape()
        );

        // Forward: L = -1/B sum_i sum_j Y_ij log softmax(Z)_ij, Z = the output logits.
        let (inputs, z) = forward(&p, layers, x)?;
        let onehot = y.one_hot(z.dim(1)?)?; // [B, C]
        let log_likelihood = (&onehot * &z.log_softmax(1)?)?
            .sum(1, false)?
            .mean(0, true)?; // [1]
        let loss = -log_likelihood.item()?;

        // Backward, from the last layer to the first; `delta` is dL/dzi [B, fan_out].
        // dL/dZ = (softmax(Z) - Y) / B
        let mut delta = (&z.softmax(1)? - &onehot)? * (1.0 / batch as f32);
        let mut grads = Vec::with_capacity(layers);
        for i in (0..layers).rev() {
            let a = &inputs[i];
            let dw = a.t()?.matmul(&delta)?; // dL/dwi = aiᵀ·δi   [fan_in, fan_out]
            let db = delta.sum(0, false)?; // dL/dbi = Σ_rows δi [fan_out]
            if i > 0 {
                // δ(i-1) = (δi·wiᵀ) ⊙ relu'(z(i-1)), and relu'(z(i-1)) = [ai > 0]
                delta = (&delta.matmul(&param(&p, b'w', i)?.t()?)? * &a.relu_mask())?;
            }
            grads.push((i, dw, db));
        }

        let (mut params, mut state) = (Params::new(), Params::new());
        for (i, dw, db) in grads.into_iter().rev() {
            for (name, g) in [(w(i), dw), (b(i), db)] {
                let updated = optimizer.update(&name, p.get(&name)?, g, &p, &mut state)?;
                params.insert(name, updated);
            }
        }
        params.extend(state);
        Ok(StepOutput::new(params, loss))
    }
}

impl Predictor for Mlp {
    fn predict(_config: &Config, params: &Params, x: Tensor) -> Result<Tensor> {
        let (_, logits) = forward(params, depth(params)?, x)?;
        logits.softmax(1)
    }
}

tensorlet_sdk::export_trainer!(Mlp);
tensorlet_sdk::export_predictor!(Mlp);
