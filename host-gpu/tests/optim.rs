//! The host optimizers against float64 hand computations over several steps
//! (weight decay, Nesterov, clipping that does and does not trigger), the
//! learning-rate schedules at their boundaries, state names, hyper-parameter
//! checks, and bit-identity with the arithmetic of the `mlp` example trainer.

mod common;

use tensorlet_gpu::optim::{LrSchedule, Optimizer, Rule, Schedule};
use tensorlet_gpu::{BinaryOp, Device, ScalarOp, Tensor, UnaryOp};

/// A small deterministic generator for test data (splitmix64).
struct Rand(u64);

impl Rand {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| scale * (2.0 * ((self.next() >> 40) as f32 / (1u64 << 24) as f32) - 1.0))
            .collect()
    }
}

const SHAPES: [&[u32]; 3] = [&[3, 2], &[4], &[1]];
const STEPS: usize = 5;

fn numel(shape: &[u32]) -> usize {
    shape.iter().map(|&d| d as usize).product()
}

/// Initial params and one set of gradients per step; gradients of size
/// about `scale` per element.
fn problem(seed: u64, scale: f32) -> (Vec<Vec<f32>>, Vec<Vec<Vec<f32>>>) {
    let mut r = Rand(seed);
    let params = SHAPES.iter().map(|s| r.vec(numel(s), 1.0)).collect();
    let grads = (0..STEPS)
        .map(|_| SHAPES.iter().map(|s| r.vec(numel(s), scale)).collect())
        .collect();
    (params, grads)
}

fn names() -> Vec<String> {
    vec!["w".into(), "b".into(), "s".into()]
}

/// The f64 update, PyTorch's formulas (clip by global norm, then decay, then
/// the rule); the params after each step and the norm before clipping.
fn reference(
    opt: &Optimizer,
    lrs: &[f32],
    params: &[Vec<f32>],
    grads: &[Vec<Vec<f32>>],
) -> Vec<(Vec<Vec<f64>>, f64)> {
    let wide = |v: &Vec<f32>| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    let mut p: Vec<Vec<f64>> = params.iter().map(wide).collect();
    let zeros = || p.iter().map(|x| vec![0.0; x.len()]).collect::<Vec<_>>();
    let (mut m, mut v, mut buf) = (zeros(), zeros(), zeros());
    let wd = f64::from(opt.weight_decay);
    let mut out = Vec::new();
    for (step, g) in grads.iter().enumerate() {
        let lr = f64::from(lrs[step]);
        let g: Vec<Vec<f64>> = g.iter().map(wide).collect();
        let norm = g.iter().flatten().map(|x| x * x).sum::<f64>().sqrt();
        let scale = opt
            .clip_grad_norm
            .map_or(1.0, |c| (f64::from(c) / norm).min(1.0));
        for i in 0..p.len() {
            for j in 0..p[i].len() {
                let mut gi = g[i][j] * scale;
                let x = &mut p[i][j];
                match opt.rule {
                    Rule::Sgd { momentum, nesterov } => {
                        let mu = f64::from(momentum);
                        gi += wd * *x;
                        if mu == 0.0 {
                            *x -= lr * gi;
                        } else {
                            buf[i][j] = mu * buf[i][j] + gi;
                            let d = if nesterov {
                                gi + mu * buf[i][j]
                            } else {
                                buf[i][j]
                            };
                            *x -= lr * d;
                        }
                    }
                    Rule::Adam { beta1, beta2, eps } | Rule::AdamW { beta1, beta2, eps } => {
                        if matches!(opt.rule, Rule::AdamW { .. }) {
                            *x *= 1.0 - lr * wd;
                        } else {
                            gi += wd * *x;
                        }
                        let (b1, b2, eps) = (f64::from(beta1), f64::from(beta2), f64::from(eps));
                        let t = step as i32 + 1;
                        m[i][j] = b1 * m[i][j] + (1.0 - b1) * gi;
                        v[i][j] = b2 * v[i][j] + (1.0 - b2) * gi * gi;
                        let m_hat = m[i][j] / (1.0 - b1.powi(t));
                        let v_hat = v[i][j] / (1.0 - b2.powi(t));
                        *x -= lr * m_hat / (v_hat.sqrt() + eps);
                    }
                }
            }
        }
        out.push((p.clone(), norm));
    }
    out
}

fn tensors(dev: &Device, data: &[Vec<f32>]) -> Vec<Tensor> {
    data.iter()
        .zip(SHAPES)
        .map(|(d, s)| dev.from_vec(s, d.clone()).unwrap())
        .collect()
}

/// Runs `opt` for every step on `dev`: the params after each step and the
/// reported norms.
fn run(
    dev: &Device,
    opt: &Optimizer,
    lrs: &[f32],
    params: &[Vec<f32>],
    grads: &[Vec<Vec<f32>>],
) -> Vec<(Vec<Vec<f32>>, f32)> {
    let mut p: Vec<(String, Tensor)> = names().into_iter().zip(tensors(dev, params)).collect();
    let mut state = opt.init_state(dev, &p).unwrap();
    let mut out = Vec::new();
    for (step, g) in grads.iter().enumerate() {
        let u = opt
            .step(dev, lrs[step], step as u64, &p, &tensors(dev, g), &state)
            .unwrap();
        assert_eq!(u.grad_norm.shape().dims(), [1]);
        let norm = dev.to_vec(&u.grad_norm)[0];
        p = u.params;
        state = u.state;
        out.push((p.iter().map(|(_, t)| dev.to_vec(t)).collect(), norm));
    }
    out
}

fn optimizers() -> Vec<(&'static str, Optimizer)> {
    let adam = Rule::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    let opt = |rule, weight_decay, clip_grad_norm| Optimizer {
        rule,
        weight_decay,
        clip_grad_norm,
    };
    vec![
        (
            "plain sgd",
            opt(
                Rule::Sgd {
                    momentum: 0.0,
                    nesterov: false,
                },
                0.0,
                None,
            ),
        ),
        (
            "sgd with decay",
            opt(
                Rule::Sgd {
                    momentum: 0.0,
                    nesterov: false,
                },
                0.05,
                None,
            ),
        ),
        (
            "sgd momentum, decay, clip that never triggers",
            opt(
                Rule::Sgd {
                    momentum: 0.9,
                    nesterov: false,
                },
                0.01,
                Some(100.0),
            ),
        ),
        (
            "nesterov, decay, clip that triggers",
            opt(
                Rule::Sgd {
                    momentum: 0.8,
                    nesterov: true,
                },
                0.1,
                Some(0.5),
            ),
        ),
        ("adam", opt(adam, 0.0, None)),
        (
            "adam with L2 decay, clip that triggers",
            opt(adam, 0.05, Some(0.3)),
        ),
        (
            "adamw, clip that never triggers",
            opt(
                Rule::AdamW {
                    beta1: 0.8,
                    beta2: 0.99,
                    eps: 1e-6,
                },
                0.1,
                Some(100.0),
            ),
        ),
        (
            "adamw, clip that triggers",
            opt(
                Rule::AdamW {
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                },
                0.2,
                Some(0.4),
            ),
        ),
    ]
}

#[test]
fn every_rule_matches_a_float64_hand_computation() {
    rules_match_a_float64_hand_computation(&Device::cpu());
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn every_rule_matches_a_float64_hand_computation_on_the_gpu() {
    rules_match_a_float64_hand_computation(&common::gpu());
}

fn rules_match_a_float64_hand_computation(dev: &Device) {
    let lrs = [0.1f32, 0.05, 0.2, 0.1, 0.01];
    {
        for (k, (what, opt)) in optimizers().into_iter().enumerate() {
            opt.validate().unwrap();
            let (params, grads) = problem(k as u64, 2.0);
            let want = reference(&opt, &lrs, &params, &grads);
            let got = run(dev, &opt, &lrs, &params, &grads);
            for (step, ((wp, wn), (gp, gn))) in want.iter().zip(&got).enumerate() {
                assert!(
                    (f64::from(*gn) - wn).abs() <= 1e-5 * wn.max(1.0),
                    "{what} on {:?}, step {step}: norm {gn}, want {wn}",
                    dev.info()
                );
                for (i, (w, g)) in wp.iter().zip(gp).enumerate() {
                    for (j, (&w, &g)) in w.iter().zip(g).enumerate() {
                        assert!(
                            (f64::from(g) - w).abs() <= 1e-5 * w.abs().max(1.0),
                            "{what} on {:?}, step {step}, param {i}[{j}]: {g}, want {w}",
                            dev.info()
                        );
                    }
                }
            }
            // The clipping cases are meant to clip (or not) at every step.
            if let Some(c) = opt.clip_grad_norm {
                let clipped = want.iter().filter(|(_, n)| *n > f64::from(c)).count();
                assert!(
                    clipped == 0 || clipped == STEPS,
                    "{what}: clipped at {clipped} of {STEPS} steps"
                );
            }
        }
    }
}

#[test]
fn clipping_that_does_not_trigger_leaves_the_bits_alone() {
    let lrs = [0.1f32; STEPS];
    let dev = Device::cpu();
    for (what, opt) in optimizers() {
        let (params, grads) = problem(99, 0.1);
        let loose = Optimizer {
            clip_grad_norm: Some(1e3),
            ..opt
        };
        let none = Optimizer {
            clip_grad_norm: None,
            ..opt
        };
        let bits = |r: Vec<(Vec<Vec<f32>>, f32)>| -> Vec<u32> {
            r.into_iter()
                .flat_map(|(p, n)| {
                    p.into_iter()
                        .flatten()
                        .chain([n])
                        .map(f32::to_bits)
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        assert_eq!(
            bits(run(&dev, &loose, &lrs, &params, &grads)),
            bits(run(&dev, &none, &lrs, &params, &grads)),
            "{what}"
        );
    }
}

/// The `mlp` example trainer's `Optimizer::update`, written with Device ops
/// in the same order as its SDK operators issue them.
fn mlp_update(
    dev: &Device,
    rule: Rule,
    lr: f32,
    step: u64,
    p: &Tensor,
    g: &Tensor,
    state: &mut [Tensor],
) -> Tensor {
    let mul = |t: &Tensor, v: f32| dev.scalar(ScalarOp::Mul, t, v).unwrap();
    let bin = |op, a: &Tensor, b: &Tensor| dev.binary(op, a, b).unwrap();
    match rule {
        // p - &(&g * lr)
        Rule::Sgd { momentum: 0.0, .. } => bin(BinaryOp::Sub, p, &mul(g, lr)),
        // v = (old * momentum) + &g;  p - &(&v * lr)
        Rule::Sgd { momentum, .. } => {
            let v = bin(BinaryOp::Add, &mul(&state[0], momentum), g);
            let p = bin(BinaryOp::Sub, p, &mul(&v, lr));
            state[0] = v;
            p
        }
        Rule::Adam { beta1, beta2, eps } => {
            let m = bin(BinaryOp::Add, &mul(&state[0], beta1), &mul(g, 1.0 - beta1));
            let v = bin(
                BinaryOp::Add,
                &mul(&state[1], beta2),
                &mul(&dev.unary(UnaryOp::Square, g).unwrap(), 1.0 - beta2),
            );
            let t = step as f64 + 1.0;
            let correction1 = (1.0 - f64::from(beta1).powf(t)) as f32;
            let correction2 = (1.0 - f64::from(beta2).powf(t)) as f32;
            let denominator = dev
                .scalar(
                    ScalarOp::Add,
                    &dev.unary(UnaryOp::Sqrt, &mul(&v, 1.0 / correction2))
                        .unwrap(),
                    eps,
                )
                .unwrap();
            let p = bin(
                BinaryOp::Sub,
                p,
                &bin(BinaryOp::Div, &mul(&m, lr / correction1), &denominator),
            );
            state[0] = m;
            state[1] = v;
            p
        }
        Rule::AdamW { .. } => unreachable!("the mlp trainer has no AdamW"),
    }
}

#[test]
fn host_updates_are_the_mlp_trainers_to_the_bit() {
    let dev = Device::cpu();
    let rules = [
        Rule::Sgd {
            momentum: 0.0,
            nesterov: false,
        },
        Rule::Sgd {
            momentum: 0.9,
            nesterov: false,
        },
        Rule::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        },
    ];
    let schedule = LrSchedule {
        base: 0.01,
        schedule: Schedule::Cosine {
            total_steps: 10,
            min_lr: 0.0001,
        },
        warmup_steps: 2,
    };
    for rule in rules {
        let opt = Optimizer {
            rule,
            weight_decay: 0.0,
            clip_grad_norm: None,
        };
        // Params as small as an update, so that any change in how the
        // update is rounded shows in the params' bits.
        let (params, grads) = problem(5, 1.0);
        let params: Vec<Vec<f32>> = params
            .iter()
            .map(|p| p.iter().map(|x| x * 1e-3).collect())
            .collect();
        let mut host: Vec<(String, Tensor)> =
            names().into_iter().zip(tensors(&dev, &params)).collect();
        let mut state = opt.init_state(&dev, &host).unwrap();
        let mut mine = tensors(&dev, &params);
        let per_param = state.len() / host.len();
        let mut mine_state: Vec<Vec<Tensor>> = (0..host.len())
            .map(|i| {
                state[i * per_param..(i + 1) * per_param]
                    .iter()
                    .map(|(_, t)| t.clone())
                    .collect()
            })
            .collect();
        for (step, g) in grads.iter().enumerate() {
            let lr = schedule.lr(step as u64);
            let g = tensors(&dev, g);
            let u = opt.step(&dev, lr, step as u64, &host, &g, &state).unwrap();
            for i in 0..mine.len() {
                mine[i] = mlp_update(
                    &dev,
                    rule,
                    lr,
                    step as u64,
                    &mine[i],
                    &g[i],
                    &mut mine_state[i],
                );
            }
            host = u.params;
            state = u.state;
            for (i, ((name, h), m)) in host.iter().zip(&mine).enumerate() {
                let (h, m) = (dev.to_vec(h), dev.to_vec(m));
                let hb: Vec<u32> = h.iter().map(|x| x.to_bits()).collect();
                let mb: Vec<u32> = m.iter().map(|x| x.to_bits()).collect();
                assert_eq!(hb, mb, "{rule:?} step {step}, `{name}`: {h:?} vs {m:?}");
                for (k, (_, s)) in state[i * per_param..(i + 1) * per_param].iter().enumerate() {
                    assert_eq!(
                        dev.to_vec(s),
                        dev.to_vec(&mine_state[i][k]),
                        "{rule:?} step {step}, state {k} of `{name}`"
                    );
                }
            }
        }
    }
}

#[test]
fn state_is_named_as_trainer_plugins_name_it() {
    let dev = Device::cpu();
    let params: Vec<(String, Tensor)> = vec![
        ("w0".into(), dev.fill(&[2, 3], 1.0).unwrap()),
        ("b0".into(), dev.fill(&[3], 1.0).unwrap()),
    ];
    let state_names = |rule| {
        let opt = Optimizer {
            rule,
            weight_decay: 0.0,
            clip_grad_norm: None,
        };
        let state = opt.init_state(&dev, &params).unwrap();
        for (name, t) in &state {
            assert!(dev.to_vec(t).iter().all(|&x| x == 0.0), "{name}");
        }
        let shapes: Vec<Vec<usize>> = state
            .iter()
            .map(|(_, t)| t.shape().dims().to_vec())
            .collect();
        let grads = vec![
            dev.fill(&[2, 3], 0.5).unwrap(),
            dev.fill(&[3], 0.5).unwrap(),
        ];
        let after = opt.step(&dev, 0.1, 0, &params, &grads, &state).unwrap();
        let names: Vec<String> = state.into_iter().map(|(n, _)| n).collect();
        let again: Vec<String> = after.state.into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names, again,
            "{rule:?}: step keeps init_state's names and order"
        );
        (names, shapes)
    };
    let adam = Rule::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    assert_eq!(
        state_names(adam),
        (
            vec![
                "opt.m.w0".into(),
                "opt.v.w0".into(),
                "opt.m.b0".into(),
                "opt.v.b0".into()
            ],
            vec![vec![2, 3], vec![2, 3], vec![3], vec![3]]
        )
    );
    assert_eq!(
        state_names(Rule::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8
        })
        .0,
        ["opt.m.w0", "opt.v.w0", "opt.m.b0", "opt.v.b0"]
    );
    assert_eq!(
        state_names(Rule::Sgd {
            momentum: 0.5,
            nesterov: true
        })
        .0,
        ["opt.momentum.w0", "opt.momentum.b0"]
    );
    assert!(
        state_names(Rule::Sgd {
            momentum: 0.0,
            nesterov: false
        })
        .0
        .is_empty()
    );

    // A missing or misshapen entry is named.
    let opt = Optimizer {
        rule: adam,
        weight_decay: 0.0,
        clip_grad_norm: None,
    };
    let mut state = opt.init_state(&dev, &params).unwrap();
    let grads = vec![
        dev.fill(&[2, 3], 0.5).unwrap(),
        dev.fill(&[3], 0.5).unwrap(),
    ];
    let v_b0 = state.pop().unwrap();
    assert_eq!(
        opt.step(&dev, 0.1, 0, &params, &grads, &state)
            .unwrap_err()
            .to_string(),
        "optimizer: the optimizer state has no `opt.v.b0`; start from the state init_state returns"
    );
    state.push(("opt.v.b0".into(), dev.fill(&[4], 0.0).unwrap()));
    assert_eq!(
        opt.step(&dev, 0.1, 0, &params, &grads, &state)
            .unwrap_err()
            .to_string(),
        "optimizer: `opt.v.b0` has shape [4] but its parameter has shape [3]"
    );
    state.pop();
    state.push(v_b0);
    assert_eq!(
        opt.step(&dev, 0.1, 0, &params, &grads[..1], &state)
            .unwrap_err()
            .to_string(),
        "optimizer: 1 gradients were given for 2 parameters"
    );
    let wrong = vec![grads[0].clone(), dev.fill(&[1, 3], 0.5).unwrap()];
    assert_eq!(
        opt.step(&dev, 0.1, 0, &params, &wrong, &state)
            .unwrap_err()
            .to_string(),
        "optimizer: the gradient of `b0` has shape [1, 3] but the parameter has shape [3]"
    );
    assert_eq!(
        opt.step(&dev, f32::NAN, 0, &params, &grads, &state)
            .unwrap_err()
            .to_string(),
        "optimizer: the learning rate must be finite and >= 0, got NaN"
    );
}

#[test]
fn validate_names_the_field_and_value() {
    let sgd = |momentum, nesterov| Optimizer {
        rule: Rule::Sgd { momentum, nesterov },
        weight_decay: 0.0,
        clip_grad_norm: None,
    };
    let adam = |beta1, beta2, eps| Optimizer {
        rule: Rule::Adam { beta1, beta2, eps },
        weight_decay: 0.0,
        clip_grad_norm: None,
    };
    let err = |o: Optimizer| o.validate().unwrap_err();
    assert!(sgd(0.0, false).validate().is_ok());
    assert!(sgd(0.99, true).validate().is_ok());
    assert!(adam(0.0, 0.0, 1e-12).validate().is_ok());
    assert_eq!(err(sgd(1.0, false)), "`momentum` must be in [0, 1), got 1");
    assert_eq!(
        err(sgd(-0.1, false)),
        "`momentum` must be in [0, 1), got -0.1"
    );
    assert_eq!(
        err(sgd(0.0, true)),
        "`nesterov` needs `momentum` > 0, got 0"
    );
    assert_eq!(
        err(adam(1.0, 0.9, 1e-8)),
        "`beta1` must be in [0, 1), got 1"
    );
    assert_eq!(
        err(adam(0.9, f32::NAN, 1e-8)),
        "`beta2` must be in [0, 1), got NaN"
    );
    assert_eq!(
        err(adam(0.9, 0.999, 0.0)),
        "`eps` must be finite and > 0, got 0"
    );
    assert_eq!(
        err(Optimizer {
            rule: Rule::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: f32::INFINITY
            },
            weight_decay: 0.0,
            clip_grad_norm: None,
        }),
        "`eps` must be finite and > 0, got inf"
    );
    assert_eq!(
        err(Optimizer {
            weight_decay: -1.0,
            ..sgd(0.0, false)
        }),
        "`weight_decay` must be finite and >= 0, got -1"
    );
    assert_eq!(
        err(Optimizer {
            weight_decay: f32::NAN,
            ..sgd(0.0, false)
        }),
        "`weight_decay` must be finite and >= 0, got NaN"
    );
    assert_eq!(
        err(Optimizer {
            clip_grad_norm: Some(0.0),
            ..sgd(0.0, false)
        }),
        "`clip_grad_norm` must be finite and > 0, got 0"
    );
    // step refuses what validate refuses.
    let dev = Device::cpu();
    assert_eq!(
        sgd(1.5, false)
            .step(&dev, 0.1, 0, &[], &[], &[])
            .unwrap_err()
            .to_string(),
        "optimizer: `momentum` must be in [0, 1), got 1.5"
    );

    let schedule = |base, schedule| LrSchedule {
        base,
        schedule,
        warmup_steps: 0,
    };
    assert!(schedule(0.1, Schedule::Constant).validate().is_ok());
    assert_eq!(
        schedule(-0.1, Schedule::Constant).validate().unwrap_err(),
        "`learning_rate` must be finite and >= 0, got -0.1"
    );
    assert_eq!(
        schedule(
            0.1,
            Schedule::Step {
                every_steps: 0,
                gamma: 0.5
            }
        )
        .validate()
        .unwrap_err(),
        "`every_steps` must be > 0, got 0"
    );
    assert_eq!(
        schedule(
            0.1,
            Schedule::Cosine {
                total_steps: 10,
                min_lr: f32::NAN
            }
        )
        .validate()
        .unwrap_err(),
        "`min_lr` must be finite and >= 0, got NaN"
    );
}

fn close(got: f32, want: f64) {
    assert!(
        (f64::from(got) - want).abs() <= 2e-7 * want.abs().max(1e-3),
        "{got} vs {want}"
    );
}

#[test]
fn schedules_at_their_boundaries() {
    let warm = LrSchedule {
        base: 0.1,
        schedule: Schedule::Constant,
        warmup_steps: 4,
    };
    for (step, want) in [
        (0, 0.025),
        (1, 0.05),
        (2, 0.075),
        (3, 0.1),
        (4, 0.1),
        (1000, 0.1),
    ] {
        close(warm.lr(step), want);
    }
    assert_eq!(warm.lr(3), 0.1);

    // Decays every 3 steps counted from the end of warm-up.
    let step = LrSchedule {
        base: 1.0,
        schedule: Schedule::Step {
            every_steps: 3,
            gamma: 0.5,
        },
        warmup_steps: 2,
    };
    let want = [
        0.5, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125,
    ];
    for (s, &w) in want.iter().enumerate() {
        assert_eq!(step.lr(s as u64), w, "step schedule at {s}");
    }

    // Cosine from 1.0 at step 2 (end of warm-up) to 0.1 at step 12.
    let cosine = LrSchedule {
        base: 1.0,
        schedule: Schedule::Cosine {
            total_steps: 12,
            min_lr: 0.1,
        },
        warmup_steps: 2,
    };
    close(cosine.lr(0), 0.5);
    close(cosine.lr(1), 1.0);
    close(cosine.lr(2), 1.0);
    close(cosine.lr(7), 0.55); // midpoint
    let cos = |k: f64| 0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * k / 10.0).cos());
    close(cosine.lr(3), cos(1.0));
    close(cosine.lr(11), cos(9.0));
    close(cosine.lr(12), 0.1); // end
    close(cosine.lr(500), 0.1);
    // Monotone down after warm-up.
    for s in 2..13 {
        assert!(cosine.lr(s + 1) <= cosine.lr(s), "at {s}");
    }

    // No warm-up: the schedule starts at the base rate.
    let plain = LrSchedule {
        base: 0.3,
        schedule: Schedule::Cosine {
            total_steps: 4,
            min_lr: 0.0,
        },
        warmup_steps: 0,
    };
    assert_eq!(plain.lr(0), 0.3);
    close(plain.lr(2), 0.15);
    assert_eq!(plain.lr(4), 0.0);
}
