//! Model: a convolutional network over images that arrive as flattened rows
//! (the 8×8 digits are 64 features: one 1×8×8 image per row). Its forward
//! pass returns the class logits; the host trains it.
//!
//! Each conv layer is a 3×3 convolution (padding 1), optionally a batch
//! normalization, a ReLU and a 2×2 max-pool; then the dense head: a hidden
//! ReLU layer, optional dropout, and the output layer.
//!
//! Config (`[model.config]`):
//! - `image`: `[channels, height, width]` of a row, default `[1, 8, 8]`; their
//!   product must be the number of features.
//! - `channels`: output channels of each conv layer, default `[32, 64]`.
//! - `hidden`: width of the dense hidden layer, default 64 (0: none).
//! - `dropout`: probability before the output layer in training, default 0.
//! - `batch_norm`: normalize each conv layer's output, default false.
//!
//! Params: `conv{i}.w` `[out, in, 3, 3]`, `conv{i}.b` `[out]`, with
//! `batch_norm` also `bn{i}.w`, `bn{i}.b` and the running statistics
//! `state.bn{i}.mean`, `state.bn{i}.var` (kept by the host); `fc{j}.w`
//! `[in, out]`, `fc{j}.b` `[out]`. Weights are He-normal, seeded with
//! `derive_seed(spec.seed, layer)`; biases zero.

use serde::Deserialize;
use tensorlet_sdk::{
    BatchNorm, Config, Conv2d, DataSpec, Mode, Model, Params, Pool2d, Result, Tensor, derive_seed,
    ensure,
};

struct Cnn;

/// `[model.config]`: an unknown key is an error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    image: [u32; 3],
    channels: Vec<u32>,
    hidden: u32,
    dropout: f32,
    batch_norm: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            image: [1, 8, 8],
            channels: vec![32, 64],
            hidden: 64,
            dropout: 0.0,
            batch_norm: false,
        }
    }
}

/// The 3×3 kernel of every conv layer.
const KERNEL: u32 = 3;

impl Settings {
    /// Checks the settings against `features` per row and returns the
    /// flattened size after the conv layers.
    fn flat_size(&self, features: u32) -> Result<u32> {
        let [c, h, w] = self.image;
        ensure!(
            u64::from(c) * u64::from(h) * u64::from(w) == u64::from(features),
            "cnn: `image` = {:?} holds {} values, but the rows have {features} features",
            self.image,
            u64::from(c) * u64::from(h) * u64::from(w)
        );
        ensure!(
            !self.channels.is_empty() && !self.channels.contains(&0),
            "cnn: `channels` needs at least one conv layer, each with > 0 channels"
        );
        ensure!(
            (0.0..1.0).contains(&self.dropout),
            "cnn: `dropout` {} is not in 0..1",
            self.dropout
        );
        let (mut h, mut w) = (h, w);
        for _ in &self.channels {
            ensure!(
                h >= 2 && w >= 2,
                "cnn: a {h}×{w} map cannot be pooled 2×2; use fewer `channels` layers for a {:?} image",
                self.image
            );
            (h, w) = (h / 2, w / 2);
        }
        Ok(self.channels.last().expect("checked") * h * w)
    }
}

fn he(shape: &[u32], fan_in: u32, seed: u64) -> Result<Tensor> {
    Tensor::randn(shape, 0.0, (2.0 / fan_in.max(1) as f32).sqrt(), seed)
}

impl Model for Cnn {
    fn init(config: &Config, spec: DataSpec) -> Result<Params> {
        let s: Settings = config.decode()?;
        let flat = s.flat_size(spec.features)?;
        let mut params = Params::new();
        let mut cin = s.image[0];
        let mut layer = 0;
        for (i, &out) in s.channels.iter().enumerate() {
            let fan_in = cin * KERNEL * KERNEL;
            let w = he(
                &[out, cin, KERNEL, KERNEL],
                fan_in,
                derive_seed(spec.seed, layer),
            )?;
            params.insert(format!("conv{i}.w"), w);
            params.insert(format!("conv{i}.b"), Tensor::zeros(&[out])?);
            if s.batch_norm {
                params.insert(format!("bn{i}.w"), Tensor::ones(&[out])?);
                params.insert(format!("bn{i}.b"), Tensor::zeros(&[out])?);
                params.insert(format!("state.bn{i}.mean"), Tensor::zeros(&[out])?);
                params.insert(format!("state.bn{i}.var"), Tensor::ones(&[out])?);
            }
            cin = out;
            layer += 1;
        }
        let mut widths = vec![flat];
        if s.hidden > 0 {
            widths.push(s.hidden);
        }
        widths.push(spec.outputs);
        for (j, w) in widths.windows(2).enumerate() {
            let t = he(&[w[0], w[1]], w[0], derive_seed(spec.seed, layer))?;
            params.insert(format!("fc{j}.w"), t);
            params.insert(format!("fc{j}.b"), Tensor::zeros(&[w[1]])?);
            layer += 1;
        }
        Ok(params)
    }

    fn forward(config: &Config, p: &Params, x: Tensor, mode: Mode) -> Result<Tensor> {
        let s: Settings = config.decode()?;
        let rows = x.dim(0)?;
        s.flat_size(x.dim(1)?)?;
        let train = matches!(mode, Mode::Train);
        let [c, h, w] = s.image;
        let mut a = x.reshape(&[rows, c, h, w])?;
        for i in 0..s.channels.len() {
            let conv = Conv2d::default().padding(KERNEL / 2);
            a = a.conv2d(
                p.get(&format!("conv{i}.w"))?,
                Some(p.get(&format!("conv{i}.b"))?),
                conv,
            )?;
            if s.batch_norm {
                let bn = BatchNorm {
                    weight: Some(p.get(&format!("bn{i}.w"))?),
                    bias: Some(p.get(&format!("bn{i}.b"))?),
                    running_mean: p.get(&format!("state.bn{i}.mean"))?,
                    running_var: p.get(&format!("state.bn{i}.var"))?,
                    momentum: 0.1,
                    eps: 1e-5,
                };
                a = a.batch_norm(&bn, train)?;
            }
            a = a.relu().max_pool2d(Pool2d::new(2))?;
        }
        a = a.flatten(1, 3)?;
        let dense = (0..)
            .take_while(|j| p.contains(&format!("fc{j}.w")))
            .count();
        ensure!(
            dense > 0,
            "cnn: the params have no `fc0.w`; were they made by cnn?"
        );
        for j in 0..dense {
            if j + 1 == dense && train && s.dropout > 0.0 {
                a = a.dropout(s.dropout, 0x0063_6e6e)?;
            }
            let z = (&a.matmul(p.get(&format!("fc{j}.w"))?)? + p.get(&format!("fc{j}.b"))?)?;
            a = if j + 1 < dense { z.relu() } else { z };
        }
        Ok(a)
    }
}

tensorlet_sdk::export_model!(Cnn);
