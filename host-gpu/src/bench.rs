//! Timing helpers behind `tensorlet bench`: matmul throughput of a [`Device`]
//! and of the sgemm crate the CPU backend is built on, and (for `bench ops`)
//! the throughput of batched products and convolutions.

use std::time::{Duration, Instant};

use crate::{Conv2d, ConvGeometry, Device, DeviceError, Distribution, Tensor, TensorError};

/// How long one measurement ran.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    /// Runs timed (after one untimed warm-up run).
    pub runs: u32,
    /// Mean wall time of one run.
    pub seconds: f64,
}

impl Timing {
    /// Throughput of a square `n`-by-`n` matmul (2n³ flops) at this speed.
    pub fn gflops(&self, n: usize) -> f64 {
        self.rate(2.0 * (n as f64).powi(3))
    }

    /// GFLOP/s of a run that does `flops` floating-point operations.
    pub fn rate(&self, flops: f64) -> f64 {
        flops / self.seconds / 1e9
    }
}

/// One measurement of [`ops`]: an op on operands of the shapes described.
#[derive(Clone, Debug, PartialEq)]
pub struct OpRate {
    /// "batched-matmul", "conv2d", or "sgemm" for the `matrixmultiply` reference.
    pub op: &'static str,
    /// The operands, e.g. `[8, 128, 64] x [8, 64, 128]`.
    pub shapes: String,
    /// Floating-point operations of one run (a multiply-add counts two).
    pub flops: f64,
    /// How long one run took.
    pub timing: Timing,
}

impl OpRate {
    /// Throughput in GFLOP/s.
    pub fn gflops(&self) -> f64 {
        self.timing.rate(self.flops)
    }
}

/// Flops of `batch` products of `[m, k] x [k, n]`.
pub fn batched_matmul_flops(batch: usize, m: usize, k: usize, n: usize) -> f64 {
    2.0 * batch as f64 * m as f64 * k as f64 * n as f64
}

/// Flops of a convolution: a multiply-add per output element per tap of
/// its group's input channels (the bias is not counted).
pub fn conv2d_flops(g: &ConvGeometry) -> f64 {
    2.0 * (g.n * g.o * g.ho * g.wo) as f64 * (g.c / g.groups * g.kh * g.kw) as f64
}

fn uniform(dev: &Device, shape: &[u32], seed: u64) -> Result<Tensor, TensorError> {
    dev.random(
        shape,
        Distribution::Uniform {
            low: -1.0,
            high: 1.0,
        },
        seed,
    )
}

/// `batch` products `[m, k] x [k, n]` of resident tensors on `dev`, as one
/// batched matmul (inputs uploaded once, outputs never read back).
pub fn batched_matmul(
    dev: &Device,
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    min_time: Duration,
) -> Result<OpRate, TensorError> {
    let [b, m32, k32, n32] = [batch, m, k, n].map(|d| d as u32);
    let a = uniform(dev, &[b, m32, k32], 1)?;
    let w = uniform(dev, &[b, k32, n32], 2)?;
    dev.matmul(&a, &w)?;
    let timing = measure(min_time, |runs| {
        for _ in 0..runs {
            drop(dev.matmul(&a, &w));
        }
        synchronized(dev, "batched-matmul")
    })?;
    Ok(OpRate {
        op: "batched-matmul",
        shapes: format!("[{batch}, {m}, {k}] x [{batch}, {k}, {n}]"),
        flops: batched_matmul_flops(batch, m, k, n),
        timing,
    })
}

/// The same products straight through `matrixmultiply::sgemm` (one thread,
/// one product after the other), writing into one preallocated output.
pub fn reference_batched_sgemm(
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    min_time: Duration,
) -> OpRate {
    let a: Vec<f32> = (0..batch * m * k).map(|i| (i % 13) as f32 - 6.0).collect();
    let b: Vec<f32> = (0..batch * k * n).map(|i| (i % 7) as f32 - 3.0).collect();
    let mut c = vec![0.0f32; batch * m * n];
    let timing = measure_infallible(min_time, |runs| {
        for _ in 0..runs {
            for i in 0..batch {
                // SAFETY: product i reads m·k and k·n elements at offsets
                // i·m·k and i·k·n and writes m·n at i·m·n, all inside the
                // vectors, which hold batch times as many.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr().add(i * m * k),
                        k as isize,
                        1,
                        b.as_ptr().add(i * k * n),
                        n as isize,
                        1,
                        0.0,
                        c.as_mut_ptr().add(i * m * n),
                        n as isize,
                        1,
                    );
                }
            }
        }
    });
    OpRate {
        op: "sgemm",
        shapes: format!("{batch} x [{m}, {k}] x [{k}, {n}]"),
        flops: batched_matmul_flops(batch, m, k, n),
        timing,
    }
}

/// A convolution of resident tensors on `dev`: input `x` `[n, c, h, w]`,
/// weights `[o, c / groups, kh, kw]`, no bias.
pub fn conv2d(
    dev: &Device,
    x: [u32; 4],
    w: [u32; 4],
    p: &Conv2d,
    min_time: Duration,
) -> Result<OpRate, TensorError> {
    let xt = uniform(dev, &x, 3)?;
    let wt = uniform(dev, &w, 4)?;
    let g = dev.conv2d_geometry(&xt, &wt, p)?;
    let timing = measure(min_time, |runs| {
        for _ in 0..runs {
            drop(dev.conv2d(&xt, &wt, None, p));
        }
        synchronized(dev, "conv2d")
    })?;
    let mut shapes = format!("{x:?} * {w:?}");
    if p != &Conv2d::default() {
        shapes.push_str(&format!(
            ", stride {:?}, padding {:?}, dilation {:?}, groups {}",
            p.stride, p.padding, p.dilation, p.groups
        ));
    }
    Ok(OpRate {
        op: "conv2d",
        shapes,
        flops: conv2d_flops(&g),
        timing,
    })
}

/// The textbook CPU convolution, for comparison with [`conv2d`]: each image
/// unfolded (im2col) into `[c·kh·kw, ho·wo]`, then one
/// `matrixmultiply::sgemm` of the weights `[o, c·kh·kw]` by it, straight
/// into the output (one thread, stride 1, one group, zero padding
/// `padding` on each side, no bias).
pub fn reference_conv2d(
    x: [usize; 4],
    w: [usize; 4],
    padding: usize,
    min_time: Duration,
) -> OpRate {
    let ([n, c, h, wd], [o, _, kh, kw]) = (x, w);
    let (ho, wo) = (
        (h + 2 * padding + 1).saturating_sub(kh),
        (wd + 2 * padding + 1).saturating_sub(kw),
    );
    let (patch, positions) = (c * kh * kw, ho * wo);
    let input: Vec<f32> = (0..n * c * h * wd).map(|i| (i % 13) as f32 - 6.0).collect();
    let weights: Vec<f32> = (0..o * patch).map(|i| (i % 7) as f32 - 3.0).collect();
    let mut cols = vec![0.0f32; patch * positions];
    let mut out = vec![0.0f32; n * o * positions];
    let timing = measure_infallible(min_time, |runs| {
        for _ in 0..runs {
            for image in 0..n {
                let mut row = 0;
                for ci in 0..c {
                    let plane = &input[(image * c + ci) * h * wd..][..h * wd];
                    for i in 0..kh {
                        for j in 0..kw {
                            let dst = &mut cols[row * positions..][..positions];
                            for y in 0..ho {
                                let src = (y + i).checked_sub(padding).filter(|&r| r < h);
                                for x in 0..wo {
                                    let col = (x + j).checked_sub(padding).filter(|&q| q < wd);
                                    dst[y * wo + x] = match (src, col) {
                                        (Some(r), Some(q)) => plane[r * wd + q],
                                        _ => 0.0,
                                    };
                                }
                            }
                            row += 1;
                        }
                    }
                }
                if positions == 0 || o == 0 || patch == 0 {
                    continue;
                }
                // SAFETY: the weights hold o·patch elements, cols
                // patch·positions, and image `image`'s output o·positions
                // from image·o·positions; the row-major strides stay inside.
                unsafe {
                    matrixmultiply::sgemm(
                        o,
                        patch,
                        positions,
                        1.0,
                        weights.as_ptr(),
                        patch as isize,
                        1,
                        cols.as_ptr(),
                        positions as isize,
                        1,
                        0.0,
                        out.as_mut_ptr().add(image * o * positions),
                        positions as isize,
                        1,
                    );
                }
            }
        }
    });
    OpRate {
        op: "conv2d",
        shapes: format!("{x:?} * {w:?}, padding {padding}"),
        flops: 2.0 * (n * o * positions * patch) as f64,
        timing,
    }
}

/// The standard set of `tensorlet bench ops`: batched products of attention
/// and MLP sizes with their `matrixmultiply` reference, and 3×3
/// convolutions of a small CNN, each measured for at least `min_time`.
pub fn ops(dev: &Device, min_time: Duration) -> Result<Vec<OpRate>, TensorError> {
    let mut out = Vec::new();
    for (b, m, k, n) in [
        (16, 128, 64, 128),
        (8, 256, 256, 256),
        (1, 1024, 1024, 1024),
    ] {
        out.push(batched_matmul(dev, b, m, k, n, min_time)?);
        out.push(reference_batched_sgemm(b, m, k, n, min_time));
    }
    let pad = Conv2d {
        padding: [1, 1],
        ..Conv2d::default()
    };
    for (x, w) in [
        ([32, 3, 32, 32], [32, 3, 3, 3]),
        ([32, 32, 32, 32], [64, 32, 3, 3]),
        ([16, 128, 16, 16], [128, 128, 3, 3]),
    ] {
        out.push(conv2d(dev, x, w, &pad, min_time)?);
    }
    Ok(out)
}

/// Doubles the number of runs until a batch takes at least `min_time`;
/// `batch(runs)` must finish all its work before it returns.
fn measure<E>(
    min_time: Duration,
    mut batch: impl FnMut(u32) -> Result<(), E>,
) -> Result<Timing, E> {
    batch(1)?; // warm-up: shader compilation, pool, caches
    let mut runs = 1;
    loop {
        let started = Instant::now();
        batch(runs)?;
        let elapsed = started.elapsed();
        if elapsed >= min_time || runs >= 1 << 16 {
            return Ok(Timing {
                runs,
                seconds: elapsed.as_secs_f64() / f64::from(runs),
            });
        }
        runs *= 2;
    }
}

/// [`measure`] of work that cannot fail (the CPU references).
fn measure_infallible(min_time: Duration, mut batch: impl FnMut(u32)) -> Timing {
    let timing = measure(min_time, |runs| {
        batch(runs);
        Ok::<(), std::convert::Infallible>(())
    });
    match timing {
        Ok(t) => t,
        Err(never) => match never {},
    }
}

/// Waits for `dev`; a failed device is `op`'s error.
fn synchronized(dev: &Device, op: &'static str) -> Result<(), TensorError> {
    dev.synchronize()
        .map_err(|error| TensorError::Device { op, error })
}

/// Square `n`-by-`n` matmuls of resident tensors on `dev` (inputs uploaded
/// once, outputs never read back; the device is synchronized after each batch).
/// Fails when the device does.
pub fn matmul(dev: &Device, n: usize, min_time: Duration) -> Result<Timing, DeviceError> {
    let dist = Distribution::Uniform {
        low: -1.0,
        high: 1.0,
    };
    let shape = [n as u32, n as u32];
    let a = dev.random(&shape, dist, 1).expect("valid shape");
    let b = dev.random(&shape, dist, 2).expect("valid shape");
    measure(min_time, |runs| {
        for _ in 0..runs {
            drop(dev.matmul(&a, &b).expect("square shapes"));
        }
        dev.synchronize()
    })
}

/// The same product straight through `matrixmultiply::sgemm` (single thread),
/// writing into one preallocated output.
pub fn reference_sgemm(n: usize, min_time: Duration) -> Timing {
    let a: Vec<f32> = (0..n * n).map(|i| (i % 13) as f32 - 6.0).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 - 3.0).collect();
    let mut c = vec![0.0f32; n * n];
    measure_infallible(min_time, |runs| {
        for _ in 0..runs {
            // SAFETY: a, b and c hold n*n elements each, and the row-major
            // strides (n, 1) stay within them.
            unsafe {
                matrixmultiply::sgemm(
                    n,
                    n,
                    n,
                    1.0,
                    a.as_ptr(),
                    n as isize,
                    1,
                    b.as_ptr(),
                    n as isize,
                    1,
                    0.0,
                    c.as_mut_ptr(),
                    n as isize,
                    1,
                );
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flop_counts() {
        assert_eq!(batched_matmul_flops(3, 2, 5, 7), 420.0);
        let dev = Device::cpu();
        let x = dev.fill(&[2, 4, 6, 5], 0.0).unwrap();
        let w = dev.fill(&[6, 2, 3, 3], 0.0).unwrap();
        let p = Conv2d {
            groups: 2,
            stride: [2, 1],
            padding: [1, 0],
            ..Conv2d::default()
        };
        let g = dev.conv2d_geometry(&x, &w, &p).unwrap();
        // Output [2, 6, 3, 3]; each element: 2 channels x 9 taps.
        assert_eq!((g.ho, g.wo), (3, 3));
        assert_eq!(conv2d_flops(&g), 2.0 * 108.0 * 18.0);

        // The im2col reference counts what conv2d does for the same shapes.
        let x = dev.fill(&[2, 3, 5, 4], 0.0).unwrap();
        let w = dev.fill(&[6, 3, 3, 3], 0.0).unwrap();
        let pad = Conv2d {
            padding: [1, 1],
            ..Conv2d::default()
        };
        let g = dev.conv2d_geometry(&x, &w, &pad).unwrap();
        let r = reference_conv2d([2, 3, 5, 4], [6, 3, 3, 3], 1, Duration::from_micros(1));
        assert_eq!(r.flops, conv2d_flops(&g));
        assert!(r.timing.runs >= 1 && r.timing.seconds > 0.0);
    }
}
