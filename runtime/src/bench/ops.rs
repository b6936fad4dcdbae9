//! `tensorlet bench ops`: GFLOP/s of convolutions and batched matmuls on
//! each device, next to a plain CPU reference (im2col + sgemm for a
//! convolution, sgemm per product for a batched matmul) and, when a Python
//! with PyTorch is given, PyTorch on the CPU with one thread and with all of
//! them, a row at a time as they are measured.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use tensorlet_gpu::{Conv2d, Device, bench};

/// PyTorch's side (`torch.nn.functional.conv2d`, `torch.bmm`).
const TORCH_OPS: &str = include_str!("../../../bench/torch_ops.py");

/// Most floating-point operations of one default op measured on a software
/// GPU (lavapipe does a few GFLOP/s): larger ones are skipped.
pub const SOFTWARE_MAX_FLOPS: f64 = 1e8;

/// One measured op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A `kernel`×`kernel` convolution, stride 1, padding `kernel / 2`, no
    /// bias: input `[n, c, h, w]`, `out` channels.
    Conv2d {
        /// Input `[n, c, h, w]`.
        x: [u32; 4],
        /// Output channels.
        out: u32,
        /// Kernel height and width.
        kernel: u32,
    },
    /// `[b, m, k] x [b, k, n]`.
    BatchedMatmul {
        /// Products.
        b: u32,
        /// Rows of each left operand.
        m: u32,
        /// Inner dimension.
        k: u32,
        /// Columns of each right operand.
        n: u32,
    },
}

/// The ops measured when none are given: the digits CNN's two conv layers
/// at its batch of 32, a CIFAR-sized first layer and a ResNet stage-1 layer
/// at batch 8; attention's two products (4 sequences × 8 heads of 128
/// tokens, head size 64) and a larger batch of square products.
pub const DEFAULT_OPS: &[Op] = &[
    Op::Conv2d {
        x: [32, 1, 8, 8],
        out: 32,
        kernel: 3,
    },
    Op::Conv2d {
        x: [32, 32, 4, 4],
        out: 64,
        kernel: 3,
    },
    Op::Conv2d {
        x: [32, 3, 32, 32],
        out: 32,
        kernel: 3,
    },
    Op::Conv2d {
        x: [8, 64, 56, 56],
        out: 64,
        kernel: 3,
    },
    Op::BatchedMatmul {
        b: 32,
        m: 128,
        k: 64,
        n: 128,
    },
    Op::BatchedMatmul {
        b: 32,
        m: 128,
        k: 128,
        n: 64,
    },
    Op::BatchedMatmul {
        b: 8,
        m: 256,
        k: 256,
        n: 256,
    },
];

impl Op {
    /// The op's name in the table.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv2d { .. } => "conv2d",
            Op::BatchedMatmul { .. } => "batched-matmul",
        }
    }

    /// The weights `[out, c, kernel, kernel]` of a convolution.
    fn weights(x: [u32; 4], out: u32, kernel: u32) -> [u32; 4] {
        [out, x[1], kernel, kernel]
    }

    /// Floating-point operations of one run (a multiply-add counts two).
    pub fn flops(&self) -> f64 {
        match *self {
            Op::Conv2d { x, out, kernel } => {
                let [n, c, h, w] = x.map(f64::from);
                let k = f64::from(kernel);
                2.0 * n * f64::from(out) * h * w * c * k * k
            }
            Op::BatchedMatmul { b, m, k, n } => {
                bench::batched_matmul_flops(b as usize, m as usize, k as usize, n as usize)
            }
        }
    }

    /// Checks the sizes: each at least 1, an odd kernel (padded to keep the
    /// image's size), and at most 2^31 elements in any operand.
    fn check(&self) -> Result<()> {
        let (dims, operands): (Vec<u32>, Vec<u64>) = match *self {
            Op::Conv2d { x, out, kernel } => {
                anyhow::ensure!(
                    kernel % 2 == 1,
                    "{self}: the kernel must be odd (the padding is kernel / 2)"
                );
                let w = Op::weights(x, out, kernel);
                let y = [x[0], out, x[2], x[3]];
                (
                    x.iter().chain(&[out, kernel]).copied().collect(),
                    [x, w, y]
                        .iter()
                        .map(|s| s.iter().map(|&d| u64::from(d)).product())
                        .collect(),
                )
            }
            Op::BatchedMatmul { b, m, k, n } => {
                let [b, m, k, n] = [b, m, k, n].map(u64::from);
                (
                    vec![b as u32, m as u32, k as u32, n as u32],
                    vec![b * m * k, b * k * n, b * m * n],
                )
            }
        };
        anyhow::ensure!(
            dims.iter().all(|&d| d >= 1),
            "{self}: every size must be at least 1"
        );
        anyhow::ensure!(
            operands.iter().all(|&e| e <= 1 << 31),
            "{self}: an operand of more than 2^31 elements"
        );
        Ok(())
    }

    /// The op as PyTorch's script reads it.
    fn to_json(self) -> serde_json::Value {
        match self {
            Op::Conv2d { x, out, kernel } => serde_json::json!({
                "op": "conv2d",
                "x": x,
                "w": Op::weights(x, out, kernel),
                "padding": kernel / 2,
            }),
            Op::BatchedMatmul { b, m, k, n } => serde_json::json!({
                "op": "batched-matmul", "b": b, "m": m, "k": k, "n": n,
            }),
        }
    }

    /// Measures the op on `dev`.
    fn on(&self, dev: &Device, min_time: Duration) -> Result<f64> {
        let rate = match *self {
            Op::Conv2d { x, out, kernel } => {
                let p = kernel / 2;
                let conv = Conv2d {
                    padding: [p, p],
                    ..Conv2d::default()
                };
                bench::conv2d(dev, x, Op::weights(x, out, kernel), &conv, min_time)
            }
            Op::BatchedMatmul { b, m, k, n } => {
                let [b, m, k, n] = [b, m, k, n].map(|d| d as usize);
                bench::batched_matmul(dev, b, m, k, n, min_time)
            }
        }
        .with_context(|| format!("{self} on {}", dev.info()))?;
        Ok(rate.gflops())
    }

    /// Measures the CPU reference.
    fn reference(&self, min_time: Duration) -> f64 {
        match *self {
            Op::Conv2d { x, out, kernel } => bench::reference_conv2d(
                x.map(|d| d as usize),
                Op::weights(x, out, kernel).map(|d| d as usize),
                (kernel / 2) as usize,
                min_time,
            ),
            Op::BatchedMatmul { b, m, k, n } => {
                let [b, m, k, n] = [b, m, k, n].map(|d| d as usize);
                bench::reference_batched_sgemm(b, m, k, n, min_time)
            }
        }
        .gflops()
    }
}

/// The operands' shapes: `[32,1,8,8] * [32,1,3,3] pad 1`, `[8,256,64] x [8,64,256]`.
impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::Conv2d { x, out, kernel } => {
                let [n, c, h, w] = x;
                write!(f, "[{n},{c},{h},{w}] * [{out},{c},{kernel},{kernel}]")?;
                if kernel > 1 {
                    write!(f, " pad {}", kernel / 2)?;
                }
                Ok(())
            }
            Op::BatchedMatmul { b, m, k, n } => write!(f, "[{b},{m},{k}] x [{b},{k},{n}]"),
        }
    }
}

/// The sizes of `AxBx…`.
fn numbers(s: &str) -> Result<Vec<u32>> {
    s.split('x')
        .map(|d| {
            d.trim()
                .parse::<u32>()
                .with_context(|| format!("{s:?}: {d:?} is not a size"))
        })
        .collect()
}

impl Op {
    /// A convolution from `NxCxHxWxO` (3×3 kernel) or `NxCxHxWxOxK`.
    pub fn conv(s: &str) -> Result<Op> {
        match numbers(s)?[..] {
            [n, c, h, w, out] => Ok(Op::Conv2d {
                x: [n, c, h, w],
                out,
                kernel: 3,
            }),
            [n, c, h, w, out, kernel] => Ok(Op::Conv2d {
                x: [n, c, h, w],
                out,
                kernel,
            }),
            _ => anyhow::bail!(
                "--conv {s:?}: expected NxCxHxWxO (input [N, C, H, W], O output channels, \
                 3x3 kernel) or NxCxHxWxOxK"
            ),
        }
    }

    /// A batched matmul from `BxMxKxN`.
    pub fn matmul(s: &str) -> Result<Op> {
        match numbers(s)?[..] {
            [b, m, k, n] => Ok(Op::BatchedMatmul { b, m, k, n }),
            _ => anyhow::bail!("--bmm {s:?}: expected BxMxKxN ([B, M, K] x [B, K, N])"),
        }
    }
}

/// What to measure: the ops (given, or the defaults), the least timed
/// seconds per cell, and a Python with PyTorch.
#[derive(Clone, Debug)]
pub struct OpsBench {
    ops: Vec<Op>,
    explicit: bool,
    min_time: Duration,
    python: Option<PathBuf>,
}

impl OpsBench {
    /// Checks `min_time` (seconds) and the ops; `ops` default to [`DEFAULT_OPS`].
    pub fn new(ops: Option<Vec<Op>>, min_time: f64, python: Option<PathBuf>) -> Result<OpsBench> {
        anyhow::ensure!(
            min_time > 0.0 && min_time.is_finite(),
            "--min-time must be a positive number of seconds"
        );
        let explicit = ops.is_some();
        let ops = ops.unwrap_or_else(|| DEFAULT_OPS.to_vec());
        for op in &ops {
            op.check()?;
        }
        Ok(OpsBench {
            ops,
            explicit,
            min_time: Duration::from_secs_f64(min_time),
            python,
        })
    }

    /// Measures each op on each of `devices`, the reference and PyTorch,
    /// writing the table to `out` as it goes.
    pub fn run(&self, devices: &[Device], out: &mut dyn Write) -> Result<()> {
        // PyTorch first: a failure to run it should not come after minutes.
        let mut torch = Vec::new();
        if let Some(python) = &self.python {
            let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
            let script = tmp.path().join("torch_ops.py");
            std::fs::write(&script, TORCH_OPS)?;
            let all = std::thread::available_parallelism().map_or(1, |n| n.get());
            let threads = if all == 1 { vec![1] } else { vec![1, all] };
            for t in threads {
                torch.push(torch_ops(python, &script, &self.ops, t, self.min_time)?);
            }
        }
        writeln!(
            out,
            "f32 ops, GFLOP/s (flops / mean wall time; inputs resident, warm-up excluded)"
        )?;
        let mut columns = Vec::new();
        for (i, d) in devices.iter().enumerate() {
            columns.push(format!("[{i}]"));
            writeln!(out, "  [{i}] {}", d.info())?;
        }
        columns.push("[r]".into());
        writeln!(
            out,
            "  [r] reference, one CPU thread: matrixmultiply::sgemm per product; conv2d: \
             im2col + sgemm per image"
        )?;
        for t in &torch {
            let s = if t.threads == 1 { "" } else { "s" };
            let col = format!("[t{}]", t.threads);
            writeln!(
                out,
                "  {col} PyTorch {} on the CPU, {} thread{s}",
                t.version, t.threads
            )?;
            columns.push(col);
        }
        if self.python.is_none() {
            writeln!(
                out,
                "  (PyTorch not measured: pass --python <a python with torch>, see bench/ops.sh)"
            )?;
        }
        write!(out, "{:<15} {:<34} {:>9}", "op", "shapes", "MFLOP")?;
        for c in &columns {
            write!(out, " {c:>9}")?;
        }
        writeln!(out)?;
        let mut skipped = false;
        for (k, op) in self.ops.iter().enumerate() {
            let flops = op.flops();
            write!(
                out,
                "{:<15} {:<34} {:>9.1}",
                op.name(),
                op.to_string(),
                flops / 1e6
            )?;
            for d in devices {
                if d.is_software() && flops > SOFTWARE_MAX_FLOPS && !self.explicit {
                    write!(out, " {:>9}", "skipped")?;
                    skipped = true;
                    continue;
                }
                write!(out, " {:>9.2}", op.on(d, self.min_time)?)?;
            }
            write!(out, " {:>9.2}", op.reference(self.min_time))?;
            for t in &torch {
                write!(out, " {:>9.2}", flops / t.seconds[k] / 1e9)?;
            }
            writeln!(out)?;
        }
        if skipped {
            writeln!(
                out,
                "(software GPU: ops over {:.0} MFLOP skipped; pass --conv or --bmm to force)",
                SOFTWARE_MAX_FLOPS / 1e6
            )?;
        }
        Ok(())
    }
}

/// PyTorch's times of `ops` with `threads` threads.
struct TorchOps {
    version: String,
    threads: usize,
    seconds: Vec<f64>,
}

fn torch_ops(
    python: &Path,
    script: &Path,
    ops: &[Op],
    threads: usize,
    min_time: Duration,
) -> Result<TorchOps> {
    let spec = serde_json::Value::Array(ops.iter().map(|op| op.to_json()).collect());
    let mut cmd = Command::new(python);
    cmd.arg(script).arg("--ops").arg(spec.to_string()).args([
        "--threads",
        &threads.to_string(),
        "--min-time",
        &min_time.as_secs_f64().to_string(),
    ]);
    let (v, seconds) = super::python_json(cmd, python, "PyTorch's ops", "torch")?;
    anyhow::ensure!(
        seconds.len() == ops.len() && seconds.iter().all(|&s| s > 0.0),
        "PyTorch timed {} of {} ops",
        seconds.len(),
        ops.len()
    );
    Ok(TorchOps {
        version: v["torch"].as_str().unwrap_or("?").to_string(),
        threads,
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_parse_and_print_their_shapes() {
        let c = Op::conv("32x1x8x8x32").unwrap();
        assert_eq!(
            c,
            Op::Conv2d {
                x: [32, 1, 8, 8],
                out: 32,
                kernel: 3
            }
        );
        assert_eq!(c.to_string(), "[32,1,8,8] * [32,1,3,3] pad 1");
        assert_eq!(c.flops(), 2.0 * 32.0 * 32.0 * 64.0 * 9.0);
        assert_eq!(
            Op::conv("1x2x5x5x4x1").unwrap().to_string(),
            "[1,2,5,5] * [4,2,1,1]"
        );
        let m = Op::matmul("16x128x64x128").unwrap();
        assert_eq!(m.to_string(), "[16,128,64] x [16,64,128]");
        assert_eq!(m.flops(), 2.0 * 16.0 * 128.0 * 64.0 * 128.0);
        assert!(Op::conv("1x2x3").is_err());
        assert!(Op::matmul("1x2x3xq").is_err());
        assert_eq!(
            Op::conv("32x1x8x8x32").unwrap().to_json(),
            serde_json::json!({"op": "conv2d", "x": [32, 1, 8, 8], "w": [32, 1, 3, 3], "padding": 1})
        );
    }

    #[test]
    fn a_row_per_op_with_a_column_per_device_and_the_reference() {
        let ops = vec![
            Op::conv("2x3x5x5x4").unwrap(),
            Op::matmul("2x3x4x5").unwrap(),
        ];
        let b = OpsBench::new(Some(ops), 0.001, None).unwrap();
        let mut out = Vec::new();
        b.run(&[Device::cpu()], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 7, "{text}");
        assert!(lines[0].starts_with("f32 ops, GFLOP/s"), "{text}");
        assert_eq!(lines[1], format!("  [0] {}", Device::cpu().info()));
        let head: Vec<&str> = lines[4].split_whitespace().collect();
        assert_eq!(head, ["op", "shapes", "MFLOP", "[0]", "[r]"], "{text}");
        for (line, op) in lines[5..].iter().zip(["conv2d", "batched-matmul"]) {
            assert!(line.starts_with(op), "{text}");
            let cells: Vec<&str> = line.split_whitespace().rev().take(2).collect();
            // A figure (how large depends on the machine), not "skipped".
            assert!(
                cells
                    .iter()
                    .all(|c| c.parse::<f64>().is_ok_and(|g| g >= 0.0)),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_sizes_and_times_are_refused() {
        let e = OpsBench::new(None, 0.0, None).unwrap_err().to_string();
        assert_eq!(e, "--min-time must be a positive number of seconds");
        let e = OpsBench::new(Some(vec![Op::conv("0x1x8x8x4").unwrap()]), 1.0, None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "[0,1,8,8] * [4,1,3,3] pad 1: every size must be at least 1"
        );
        assert!(OpsBench::new(Some(vec![Op::conv("1x1x8x8x4x2").unwrap()]), 1.0, None).is_err());
        let big = Op::matmul("65536x65536x1x1").unwrap();
        assert!(OpsBench::new(Some(vec![big]), 1.0, None).is_err());
        assert_eq!(OpsBench::new(None, 1.0, None).unwrap().ops, DEFAULT_OPS);
    }
}
