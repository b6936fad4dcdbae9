//! Model: a transformer encoder over sequences of token ids. Each row is one
//! sequence, one column per position, holding token ids as numbers (`0` is
//! padding, `1..vocab` are tokens); the forward pass returns one logit per
//! class (or the regression targets) and the host trains it.
//!
//! The ids are cast to i64 and looked up in a token embedding, to which a
//! positional encoding is added (sinusoidal or learned). Then `layers`
//! pre-norm blocks, each `h + attention(layer_norm(h))` followed by
//! `h + mlp(layer_norm(h))`: multi-head scaled dot-product self-attention
//! that never attends to padding (and, with `causal`, never to a later
//! position), and a GELU MLP. A final layer norm, then the sequence is pooled
//! — the mean over its non-padding positions, or a learned CLS token put in
//! front — and a linear head gives the logits.
//!
//! Config (`[model.config]`; an unknown key is an error):
//! - `vocab` (required): rows of the token embedding; ids must be in `0..vocab`.
//! - `dim`: width of the embeddings and of every block, default 32.
//! - `heads`: attention heads, default 4; `dim` must divide by it.
//! - `layers`: encoder blocks, default 2.
//! - `hidden`: width of each block's MLP, default `4 · dim`.
//! - `max_len`: the longest sequence, default the number of features; a
//!   learned positional encoding has this many rows.
//! - `causal`: position `i` attends only to positions `≤ i`, default false.
//! - `dropout`: probability after the embeddings and after each attention and
//!   MLP output, in training, default 0.
//! - `positional`: `"sinusoidal"` (default, no params) or `"learned"`.
//! - `pool`: `"mean"` (default) over the non-padding positions, or `"cls"`: a
//!   learned token in front of the sequence, whose output is pooled (not with
//!   `causal`, where it would see only itself).
//!
//! Params: `embed.tokens` `[vocab, dim]` (normal, std 1); `embed.positions`
//! `[max_len, dim]` (learned only, normal, std 1); `cls` `[dim]` (cls only,
//! normal, std 1); per block `i`: `block{i}.ln1.w`/`.b`, `block{i}.attn.q.w`,
//! `.k.w`, `.v.w`, `.out.w` `[dim, dim]` (Xavier-normal) with biases `.q.b`…
//! `[dim]`, `block{i}.ln2.w`/`.b`, `block{i}.mlp.fc1.w` `[dim, hidden]`
//! (He-normal), `block{i}.mlp.fc2.w` `[hidden, dim]` (Xavier-normal) and their
//! biases; `ln_f.w`/`.b` `[dim]`; `head.w` `[dim, outputs]` (Xavier-normal),
//! `head.b`. Layer-norm weights are ones, biases zeros. The `k`-th random
//! tensor, in this order, is seeded with `derive_seed(spec.seed, k)`.

use serde::Deserialize;
use tensorlet_sdk::{
    BinaryOp, Config, DataSpec, Dtype, Error, Mode, Model, Params, Result, Tensor, derive_seed,
    ensure,
};

struct Transformer;

/// How positions are encoded.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Positional {
    /// `sin`/`cos` of the position at geometric frequencies (no params).
    Sinusoidal,
    /// A learned vector per position, `embed.positions`.
    Learned,
}

/// How the sequence becomes one vector.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Pool {
    /// The mean over the non-padding positions.
    Mean,
    /// The output at a learned token put in front of the sequence.
    Cls,
}

/// `[model.config]`: an unknown key is an error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    vocab: u32,
    #[serde(default = "default_dim")]
    dim: u32,
    #[serde(default = "default_heads")]
    heads: u32,
    #[serde(default = "default_layers")]
    layers: u32,
    #[serde(default)]
    hidden: Option<u32>,
    #[serde(default)]
    max_len: Option<u32>,
    #[serde(default)]
    causal: bool,
    #[serde(default)]
    dropout: f32,
    #[serde(default = "default_positional")]
    positional: Positional,
    #[serde(default = "default_pool")]
    pool: Pool,
}

fn default_dim() -> u32 {
    32
}
fn default_heads() -> u32 {
    4
}
fn default_layers() -> u32 {
    2
}
fn default_positional() -> Positional {
    Positional::Sinusoidal
}
fn default_pool() -> Pool {
    Pool::Mean
}

/// The logit of a masked attention score: far below any real one, but
/// finite, so a row with every key masked is uniform rather than NaN.
const MASKED: f32 = -1e9;
/// Layer norm's ε (PyTorch's default).
const EPS: f32 = 1e-5;
/// Mixed into each dropout site's seed (the host also mixes in the step).
const DROPOUT_SEED: u64 = 0x7472_616e_7366_6f72;

impl Settings {
    fn load(config: &Config) -> Result<Settings> {
        let s: Settings = config.decode()?;
        ensure!(
            s.vocab >= 2,
            "transformer: `vocab` = {} leaves no token besides the padding id 0; it must be \
             at least 2 (one more than the largest token id)",
            s.vocab
        );
        ensure!(s.dim > 0, "transformer: `dim` must be > 0");
        ensure!(s.heads > 0, "transformer: `heads` must be > 0");
        ensure!(
            s.dim.is_multiple_of(s.heads),
            "transformer: `dim` = {} does not divide into `heads` = {} equal heads",
            s.dim,
            s.heads
        );
        ensure!(s.hidden != Some(0), "transformer: `hidden` must be > 0");
        ensure!(s.max_len != Some(0), "transformer: `max_len` must be > 0");
        ensure!(
            (0.0..1.0).contains(&s.dropout),
            "transformer: `dropout` = {} is not in 0..1",
            s.dropout
        );
        ensure!(
            !(s.causal && s.pool == Pool::Cls),
            "transformer: `pool = \"cls\"` cannot be `causal`: the CLS token comes first and \
             would attend only to itself; use `pool = \"mean\"`"
        );
        Ok(s)
    }

    fn hidden(&self) -> u32 {
        self.hidden.unwrap_or(4 * self.dim)
    }

    /// Checks a sequence length against `max_len`.
    fn check_len(&self, len: u32) -> Result<()> {
        if let Some(max) = self.max_len {
            ensure!(
                len <= max,
                "transformer: the rows have {len} positions (features), more than `max_len` = {max}"
            );
        }
        Ok(())
    }
}

/// Xavier (Glorot) normal: std `sqrt(2 / (fan_in + fan_out))`.
fn xavier(shape: [u32; 2], seed: u64) -> Result<Tensor> {
    let std = (2.0 / (shape[0] + shape[1]) as f32).sqrt();
    Tensor::randn(&shape, 0.0, std, seed)
}

/// He (Kaiming) normal: std `sqrt(2 / fan_in)`, for a layer a GELU follows.
fn he(shape: [u32; 2], seed: u64) -> Result<Tensor> {
    let std = (2.0 / shape[0] as f32).sqrt();
    Tensor::randn(&shape, 0.0, std, seed)
}

/// The sinusoidal encoding `[len, dim]`: column `j` is `sin` (even `j`) or
/// `cos` (odd `j`) of `position / 10000^(2⌊j/2⌋ / dim)`.
fn sinusoidal(len: u32, dim: u32) -> Result<Tensor> {
    let mut data = Vec::with_capacity(len as usize * dim as usize);
    for pos in 0..len {
        for j in 0..dim {
            let rate = 10000f64.powf(-f64::from(2 * (j / 2)) / f64::from(dim));
            let angle = f64::from(pos) * rate;
            data.push(if j % 2 == 0 { angle.sin() } else { angle.cos() } as f32);
        }
    }
    Tensor::from_list(&[len, dim], &data)
}

/// `x · w + b` over the last axis of a `[batch, len, in]` tensor.
fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let shape = x.shape();
    let (rows, inner) = (shape[0] * shape[1], shape[2]);
    let y = (&x.reshape(&[rows, inner])?.matmul(w)? + b)?;
    y.reshape(&[shape[0], shape[1], w.dim(1)?])
}

/// Dropout at `site` in training, the identity otherwise.
fn dropout(x: Tensor, s: &Settings, train: bool, site: u64) -> Result<Tensor> {
    if train && s.dropout > 0.0 {
        x.dropout(s.dropout, derive_seed(DROPOUT_SEED, site))
    } else {
        Ok(x)
    }
}

/// Layer norm over the last axis with params `{name}.w` and `{name}.b`.
fn norm(x: &Tensor, p: &Params, name: &str) -> Result<Tensor> {
    x.layer_norm(
        1,
        Some(p.get(&format!("{name}.w"))?),
        Some(p.get(&format!("{name}.b"))?),
        EPS,
    )
}

/// Multi-head self-attention of `x` (`[batch, len, dim]`); `mask`
/// (`[batch or 1, 1, len, len]`) is nonzero where a query may not attend.
fn attention(x: &Tensor, p: &Params, block: &str, heads: u32, mask: &Tensor) -> Result<Tensor> {
    let shape = x.shape();
    let (batch, len, dim) = (shape[0], shape[1], shape[2]);
    let head_dim = dim / heads;
    let project = |which: &str| -> Result<Tensor> {
        let w = p.get(&format!("{block}.attn.{which}.w"))?;
        let b = p.get(&format!("{block}.attn.{which}.b"))?;
        // [batch, len, dim] -> [batch, heads, len, head_dim]
        linear(x, w, b)?
            .reshape(&[batch, len, heads, head_dim])?
            .permute(&[0, 2, 1, 3])
    };
    let (q, k, v) = (project("q")?, project("k")?, project("v")?);
    let scores = q
        .matmul_t(&k, false, true)?
        .mul_scalar(1.0 / (head_dim as f32).sqrt())
        .masked_fill(mask, MASKED)?;
    let weights = scores.softmax(3)?;
    let out = weights
        .matmul(&v)?
        .permute(&[0, 2, 1, 3])?
        .reshape(&[batch, len, dim])?;
    linear(
        &out,
        p.get(&format!("{block}.attn.out.w"))?,
        p.get(&format!("{block}.attn.out.b"))?,
    )
}

impl Model for Transformer {
    fn init(config: &Config, spec: DataSpec) -> Result<Params> {
        let s = Settings::load(config)?;
        ensure!(
            spec.features > 0,
            "transformer: the rows have no features (positions)"
        );
        s.check_len(spec.features)?;
        let (dim, hidden) = (s.dim, s.hidden());
        let mut seeds = (0..).map(|k| derive_seed(spec.seed, k));
        let mut seed = move || seeds.next().expect("endless");
        let mut p = Params::new();
        p.insert(
            "embed.tokens",
            Tensor::randn(&[s.vocab, dim], 0.0, 1.0, seed())?,
        );
        if s.positional == Positional::Learned {
            let rows = s.max_len.unwrap_or(spec.features);
            p.insert(
                "embed.positions",
                Tensor::randn(&[rows, dim], 0.0, 1.0, seed())?,
            );
        }
        if s.pool == Pool::Cls {
            p.insert("cls", Tensor::randn(&[dim], 0.0, 1.0, seed())?);
        }
        for i in 0..s.layers {
            let b = format!("block{i}");
            p.insert(format!("{b}.ln1.w"), Tensor::ones(&[dim])?);
            p.insert(format!("{b}.ln1.b"), Tensor::zeros(&[dim])?);
            for which in ["q", "k", "v", "out"] {
                p.insert(format!("{b}.attn.{which}.w"), xavier([dim, dim], seed())?);
                p.insert(format!("{b}.attn.{which}.b"), Tensor::zeros(&[dim])?);
            }
            p.insert(format!("{b}.ln2.w"), Tensor::ones(&[dim])?);
            p.insert(format!("{b}.ln2.b"), Tensor::zeros(&[dim])?);
            p.insert(format!("{b}.mlp.fc1.w"), he([dim, hidden], seed())?);
            p.insert(format!("{b}.mlp.fc1.b"), Tensor::zeros(&[hidden])?);
            p.insert(format!("{b}.mlp.fc2.w"), xavier([hidden, dim], seed())?);
            p.insert(format!("{b}.mlp.fc2.b"), Tensor::zeros(&[dim])?);
        }
        p.insert("ln_f.w", Tensor::ones(&[dim])?);
        p.insert("ln_f.b", Tensor::zeros(&[dim])?);
        p.insert("head.w", xavier([dim, spec.outputs], seed())?);
        p.insert("head.b", Tensor::zeros(&[spec.outputs])?);
        Ok(p)
    }

    fn forward(config: &Config, p: &Params, x: Tensor, mode: Mode) -> Result<Tensor> {
        let s = Settings::load(config)?;
        let shape = x.shape();
        let [batch, len] = shape[..] else {
            return Err(Error::msg(format!(
                "transformer: x must be [batch, positions], got shape {shape:?}"
            )));
        };
        ensure!(len > 0, "transformer: the rows have no positions");
        s.check_len(len)?;
        let train = mode == Mode::Train;
        let dim = s.dim;

        let ids = x.cast(Dtype::I64).map_err(|e| {
            e.context("transformer: the features must be token ids (whole numbers, 0 = padding)")
        })?;
        let tokens = p.get("embed.tokens")?;
        let mut h = tokens.embedding(&ids).map_err(|e| {
            e.context(format!(
                "transformer: a token id is outside 0..{} (`vocab`)",
                tokens.dim(0).unwrap_or(s.vocab)
            ))
        })?;
        let positions = match s.positional {
            Positional::Sinusoidal => sinusoidal(len, dim)?,
            Positional::Learned => {
                let table = p.get("embed.positions")?;
                let rows = table.dim(0)?;
                ensure!(
                    len <= rows,
                    "transformer: the rows have {len} positions, more than the {rows} the \
                     learned positional encoding was made for (`max_len`)"
                );
                table.slice(0, 0, len)?
            }
        };
        h = (&h + &positions)?;

        // 1 where a position is padding: [batch, len].
        let mut pad = x.binary(BinaryOp::Eq, &Tensor::scalar(0.0)?)?;
        let mut seq = len;
        if s.pool == Pool::Cls {
            let cls = p.get("cls")?.reshape(&[1, 1, dim])?;
            h = Tensor::concat_all(&[&cls.broadcast_to(&[batch, 1, dim])?, &h], 1)?;
            pad = Tensor::concat_all(&[&Tensor::zeros(&[batch, 1])?, &pad], 1)?;
            seq += 1;
        }
        h = dropout(h, &s, train, 0)?;

        // Where a query may not attend: padding keys, and with `causal` later keys.
        let mut mask = pad.reshape(&[batch, 1, 1, seq])?;
        if s.causal {
            let later: Vec<f32> = (0..seq)
                .flat_map(|i| (0..seq).map(move |j| if j > i { 1.0 } else { 0.0 }))
                .collect();
            let later = Tensor::from_list(&[1, 1, seq, seq], &later)?;
            mask = mask.maximum(&later)?;
        }

        for i in 0..s.layers {
            let b = format!("block{i}");
            let a = attention(&norm(&h, p, &format!("{b}.ln1"))?, p, &b, s.heads, &mask)?;
            h = (&h + &dropout(a, &s, train, 1 + 2 * u64::from(i))?)?;
            let m = norm(&h, p, &format!("{b}.ln2"))?;
            let m = linear(
                &m,
                p.get(&format!("{b}.mlp.fc1.w"))?,
                p.get(&format!("{b}.mlp.fc1.b"))?,
            )?
            .gelu()?;
            let m = linear(
                &m,
                p.get(&format!("{b}.mlp.fc2.w"))?,
                p.get(&format!("{b}.mlp.fc2.b"))?,
            )?;
            h = (&h + &dropout(m, &s, train, 2 + 2 * u64::from(i))?)?;
        }
        h = norm(&h, p, "ln_f")?;

        let pooled = match s.pool {
            Pool::Cls => h.slice(1, 0, 1)?.squeeze(1)?,
            Pool::Mean => {
                // 1 where a position is a token: [batch, len, 1].
                let keep = pad.mul_scalar(-1.0).add_scalar(1.0).unsqueeze(2)?;
                let count = keep.sum(1, false)?.clamp(1.0, f32::MAX)?;
                (h * &keep)?.sum(1, false)?.div(&count)?
            }
        };
        &pooled.matmul(p.get("head.w")?)? + p.get("head.b")?
    }
}

tensorlet_sdk::export_model!(Transformer);
