//! Test plugin: misbehaves on request, so the host's sandbox limits and error handling
//! can be tested. It is a preprocessor, a trainer and a predictor at once.
//!
//! Every call reads `mode` from its own config table:
//! - absent or `"ok"`: behaves: a tiny softmax regression (params `w` `[features,
//!   classes]`, zeros at first, and `b` `[classes]`; `learning_rate` default 0.1) and
//!   an identity preprocessor (no state), so a test can check the host still works.
//!   The trainer also keeps optimizer state, `opt.steps` (`[1]`, the steps taken), and
//!   `predict` fails if it is handed any `opt.` entry: the host must pass a predictor
//!   only the model's parameters;
//! - `"loop"`: never returns;
//! - `"memory"`: allocates and fills 1 MiB blocks until memory runs out;
//! - `"host-memory"`: creates 4 MiB host tensors and holds them, without end;
//! - `"slow"`: busy for 300 ms, then behaves as `"ok"` (for shutdown and overload tests);
//!
//! In `predict`, the config key `only_above` (a number) limits misbehaviour to inputs
//! that hold a value above it, so a model passes a warm-up and fails on some requests.
//! - `"stack"`: recurses until the stack overflows;
//! - `"panic"`: panics, which traps the component;
//! - `"error"`: returns an error whose message contains `misbehave`;
//! - `"bad-shape"`: `predict` returns `[batch, classes + 1]`, `transform` one row too
//!   many, `step` a `w` with an extra column;
//! - `"nan"`: `predict` and `transform` return NaNs, `step` a NaN loss;
//! - `"init-error"`: `init` returns an error; every other call behaves.
//!
//! `step` also has modes that exercise the host's gradients (ABI 0.2):
//! - `"grad"`: behaves as `"ok"`, but takes `w`'s and `b`'s gradients from the host
//!   (`loss.grad(&params)`) instead of writing them out;
//! - `"grad-not-scalar"`: asks for the gradient of the `[batch, classes]` logits;
//! - `"grad-unknown"`: asks for the gradient with respect to `nope`, which is not watched;
//! - `"grad-argmax"`: asks for the gradient of a loss that depends on `w` only through
//!   `argmax`;
//! - `"grad-unrelated"`: asks for the gradient of a loss computed from `x` alone.
//!
//! Each failing grad request is returned as the plugin's own error, so the host's
//! message reaches the test unchanged.
//!
//! `init` honours only `"init-error"`; `fit` honours the modes that never return or
//! fail (`loop`, `memory`, `stack`, `panic`, `error`); `step`, `predict` and
//! `transform` honour them all.

use std::hint::black_box;

use tensorlet_sdk::{
    Config, DataSpec, Params, Predictor, Preprocessor, Result, StepOutput, Tensor, Trainer, bail,
    ensure,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ok,
    Loop,
    Memory,
    HostMemory,
    Slow,
    Stack,
    Panic,
    Error,
    BadShape,
    Nan,
    InitError,
    Grad,
    GradNotScalar,
    GradUnknown,
    GradArgmax,
    GradUnrelated,
}

impl Mode {
    fn of(config: &Config) -> Result<Mode> {
        Ok(match config.str_or("mode", "ok")? {
            "ok" => Mode::Ok,
            "loop" => Mode::Loop,
            "memory" => Mode::Memory,
            "host-memory" => Mode::HostMemory,
            "stack" => Mode::Stack,
            "panic" => Mode::Panic,
            "error" => Mode::Error,
            "bad-shape" => Mode::BadShape,
            "nan" => Mode::Nan,
            "slow" => Mode::Slow,
            "init-error" => Mode::InitError,
            "grad" => Mode::Grad,
            "grad-not-scalar" => Mode::GradNotScalar,
            "grad-unknown" => Mode::GradUnknown,
            "grad-argmax" => Mode::GradArgmax,
            "grad-unrelated" => Mode::GradUnrelated,
            other => bail!(
                "misbehave: unknown mode `{other}` (expected ok, loop, memory, stack, panic, \
                 error, bad-shape, nan, init-error, host-memory, slow, grad, grad-not-scalar, \
                 grad-unknown, grad-argmax or grad-unrelated)"
            ),
        })
    }

    /// Acts out the modes that never return or fail, in the call named `call`.
    fn act(self, call: &str) -> Result<()> {
        match self {
            Mode::Loop => spin(),
            Mode::Memory => hoard(),
            Mode::HostMemory => hoard_host_tensors(),
            Mode::Stack => bail!("misbehave: the recursion ended at depth {}", dive(0)),
            Mode::Panic => panic!("misbehave: {call} panics as asked"),
            Mode::Error => bail!("misbehave: {call} fails as asked"),
            Mode::Slow => {
                // Busy for 300 ms of the host's monotonic clock (wasi:clocks, which
                // a plugin built without WASI's standard library can still import),
                // then behaves.
                use wasip2::clocks::monotonic_clock::now;
                let start = now();
                while now() - start < 300_000_000 {
                    black_box(start);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// An infinite loop that the optimizer must keep.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocates 1 MiB blocks filled with a non-zero byte (so every page is touched) and
/// keeps them all, until the allocator fails (an abort: a trap) or the host stops it.
/// Keeps creating 4 MiB host tensors and holding their handles.
fn hoard_host_tensors() -> Result<()> {
    let mut held = Vec::new();
    loop {
        held.push(Tensor::zeros(&[1 << 20])?);
        black_box(&held);
    }
}

fn hoard() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(vec![0xA5; 1 << 20]);
        black_box(&blocks);
    }
}

/// Recursion that is not a tail call (work follows it, on an opaque value), so it cannot
/// become a loop; it would stop only at depth `u64::MAX`.
#[inline(never)]
fn dive(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return depth;
    }
    let below = dive(black_box(depth + 1));
    black_box(below).wrapping_sub(depth)
}

struct Misbehave;

/// The host's refusal of a grad request, returned as this plugin's error; a
/// request the host granted is a failure of the test.
fn refused(r: Result<Params>) -> Result<StepOutput> {
    match r {
        Ok(_) => bail!("misbehave: the host computed a gradient it should have refused"),
        Err(e) => Err(e),
    }
}

/// The trainer's optimizer state: how many steps it has taken.
const STEPS: &str = "opt.steps";

/// `x·w + b` for the tiny softmax regression.
fn logits(params: &Params, x: &Tensor) -> Result<Tensor> {
    x.matmul(params.get("w")?)? + params.get("b")?
}

impl Trainer for Misbehave {
    fn init(config: &Config, spec: DataSpec) -> Result<Params> {
        if Mode::of(config)? == Mode::InitError {
            bail!("misbehave: init fails as asked");
        }
        let w = Tensor::zeros(&[spec.features, spec.outputs])?;
        let b = Tensor::zeros(&[spec.outputs])?;
        Ok(Params::new()
            .with("w", w)
            .with("b", b)
            .with(STEPS, Tensor::zeros(&[1])?))
    }

    fn step(config: &Config, p: Params, x: Tensor, y: Tensor, _step: u64) -> Result<StepOutput> {
        let mode = Mode::of(config)?;
        mode.act("step")?;
        let lr = config.f32_or("learning_rate", 0.1)?;
        let (w, b) = (p.get("w")?, p.get("b")?);
        let batch = x.dim(0)?;
        ensure!(
            y.shape() == [batch],
            "y has shape {:?}, want [{batch}]",
            y.shape()
        );
        // Softmax regression on the mean cross-entropy, without l2.
        let z = logits(&p, &x)?;
        let onehot = y.one_hot(w.dim(1)?)?;
        let loss_t = -(&onehot * &z.log_softmax(1)?)?
            .sum(1, false)?
            .mean(0, true)?;
        let loss = loss_t.item()?;
        let (dw, db) = match mode {
            Mode::Grad => {
                let mut g = loss_t.grad(&p)?;
                (g.take("w")?, g.take("b")?)
            }
            Mode::GradNotScalar => return refused(z.grad(&p)),
            Mode::GradUnknown => return refused(loss_t.grad_of(&["nope"])),
            Mode::GradArgmax => {
                let through_argmax = z.argmax(1, false)?.sum(0, true)?;
                return refused(through_argmax.grad_of(&["w"]));
            }
            Mode::GradUnrelated => {
                let unrelated = x.square().sum(1, false)?.mean(0, true)?;
                return refused(unrelated.grad(&p));
            }
            _ => {
                let dz = (&z.softmax(1)? - &onehot)? * (1.0 / batch as f32);
                (x.t()?.matmul(&dz)?, dz.sum(0, false)?)
            }
        };
        let mut w = (w - &(dw * lr))?;
        let b = (b - &(db * lr))?;
        if mode == Mode::BadShape {
            w = w.concat(&Tensor::zeros(&[w.dim(0)?, 1])?, 1)?;
        }
        let loss = if mode == Mode::Nan { f32::NAN } else { loss };
        let steps = p.get(STEPS)?.add_scalar(1.0);
        Ok(StepOutput::new(
            Params::new().with("w", w).with("b", b).with(STEPS, steps),
            loss,
        ))
    }
}

impl Predictor for Misbehave {
    fn predict(config: &Config, params: &Params, x: Tensor) -> Result<Tensor> {
        // With `only_above`, misbehave only for inputs holding a larger value:
        // a data-dependent bug that a warm-up on ordinary rows does not catch.
        let triggered = match config.get("only_above").and_then(|v| v.as_f64()) {
            Some(limit) => x.to_vec().iter().any(|&v| f64::from(v) > limit),
            None => true,
        };
        let mode = if triggered {
            Mode::of(config)?
        } else {
            Mode::Ok
        };
        mode.act("predict")?;
        if let Some(name) = params.names().find(|n| n.starts_with("opt.")) {
            bail!("misbehave: predict was handed optimizer state `{name}`");
        }
        let probs = logits(params, &x)?.softmax(1)?;
        match mode {
            Mode::BadShape => probs.concat(&Tensor::zeros(&[probs.dim(0)?, 1])?, 1),
            Mode::Nan => Ok(probs * f32::NAN),
            _ => Ok(probs),
        }
    }
}

impl Preprocessor for Misbehave {
    fn fit(config: &Config, _x: Tensor) -> Result<Params> {
        Mode::of(config)?.act("fit")?;
        Ok(Params::new())
    }

    fn transform(config: &Config, _state: &Params, x: Tensor) -> Result<Tensor> {
        let mode = Mode::of(config)?;
        mode.act("transform")?;
        match mode {
            Mode::BadShape => x.concat(&Tensor::zeros(&[1, x.dim(1)?])?, 0),
            Mode::Nan => Ok(x * f32::NAN),
            _ => Ok(x),
        }
    }
}

tensorlet_sdk::export_preprocessor!(Misbehave);
tensorlet_sdk::export_trainer!(Misbehave);
tensorlet_sdk::export_predictor!(Misbehave);
