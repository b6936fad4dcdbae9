//! Timing helpers behind `tensorlet bench`: matmul throughput of a [`Device`]
//! and of the sgemm crate the CPU backend is built on.

use std::time::{Duration, Instant};

use crate::{Device, DeviceError, Distribution};

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
        2.0 * (n as f64).powi(3) / self.seconds / 1e9
    }
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
    let timing = measure(min_time, |runs| {
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
        Ok::<(), std::convert::Infallible>(())
    });
    match timing {
        Ok(t) => t,
        Err(never) => match never {},
    }
}
