//! `tensorlet bench matmul`: GFLOP/s of square f32 matmuls on each device
//! and of the sgemm crate the CPU backend calls, written a cell at a time as
//! they are measured, and where the GPU overtakes the CPU.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use tensorlet_gpu::{Device, DeviceKind, bench};

/// The sizes measured when none are given.
pub const DEFAULT_SIZES: &[usize] = &[256, 512, 1024, 2048, 4096];
/// Largest default size on a software GPU: lavapipe does well under 1 GFLOP/s.
pub const SOFTWARE_MAX: usize = 512;

/// What to measure: matrix sizes (given, or the defaults) and the least
/// timed seconds per cell.
#[derive(Clone, Debug)]
pub struct Matmul {
    sizes: Vec<usize>,
    explicit: bool,
    min_time: Duration,
}

impl Matmul {
    /// Checks `min_time` (seconds); `sizes` default to [`DEFAULT_SIZES`].
    pub fn new(sizes: Option<Vec<usize>>, min_time: f64) -> Result<Matmul> {
        anyhow::ensure!(
            min_time > 0.0 && min_time.is_finite(),
            "--min-time must be a positive number of seconds"
        );
        Ok(Matmul {
            explicit: sizes.is_some(),
            sizes: sizes.unwrap_or_else(|| DEFAULT_SIZES.to_vec()),
            min_time: Duration::from_secs_f64(min_time),
        })
    }

    /// Measures each size on each of `devices` and with sgemm, writing the
    /// table to `out` as it goes.
    pub fn run(&self, devices: &[Device], out: &mut dyn Write) -> Result<()> {
        anyhow::ensure!(
            self.sizes.iter().all(|&n| (1..=16384).contains(&n)),
            "--sizes must be between 1 and 16384"
        );
        writeln!(
            out,
            "square f32 matmul, GFLOP/s (2n^3 / mean wall time; inputs resident, warm-up excluded)"
        )?;
        for (i, d) in devices.iter().enumerate() {
            writeln!(out, "  [{i}] {}", d.info())?;
        }
        writeln!(
            out,
            "  [s] matrixmultiply::sgemm called directly (the CPU backend's kernel)"
        )?;
        write!(out, "{:>6}", "n")?;
        for i in 0..devices.len() {
            write!(out, " {:>12}", format!("[{i}]"))?;
        }
        writeln!(out, " {:>12}", "[s]")?;
        let mut crossover: Option<usize> = None;
        for &n in &self.sizes {
            write!(out, "{n:>6}")?;
            let mut cpu_gflops = None;
            for d in devices {
                if d.is_software() && n > SOFTWARE_MAX && !self.explicit {
                    write!(out, " {:>12}", "skipped")?;
                    continue;
                }
                let g = bench::matmul(d, n, self.min_time)?.gflops(n);
                match d.info().kind {
                    DeviceKind::Cpu => cpu_gflops = Some(g),
                    DeviceKind::Gpu => {
                        if crossover.is_none() && cpu_gflops.is_some_and(|c| g > c) {
                            crossover = Some(n);
                        }
                    }
                }
                write!(out, " {g:>12.2}")?;
            }
            let sgemm = bench::reference_sgemm(n, self.min_time).gflops(n);
            writeln!(out, " {sgemm:>12.2}")?;
        }
        if devices.len() > 1 {
            match crossover {
                Some(n) => writeln!(
                    out,
                    "the GPU backend is faster than the CPU backend from n = {n}"
                )?,
                None => writeln!(out, "the CPU backend was faster at every size measured")?,
            }
        }
        if devices.iter().any(Device::is_software) && !self.explicit {
            writeln!(
                out,
                "(software GPU: sizes above {SOFTWARE_MAX} skipped; pass --sizes to force)"
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_row_per_size_with_a_column_per_device_and_sgemm() {
        let m = Matmul::new(Some(vec![4, 8]), 0.001).unwrap();
        let mut out = Vec::new();
        m.run(&[Device::cpu()], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert!(lines[0].starts_with("square f32 matmul, GFLOP/s"), "{text}");
        assert_eq!(lines[1], format!("  [0] {}", Device::cpu().info()));
        assert_eq!(lines[3], format!("{:>6} {:>12} {:>12}", "n", "[0]", "[s]"));
        for (line, n) in lines[4..].iter().zip(["4", "8"]) {
            let cells: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cells[0], n, "{text}");
            assert_eq!(cells.len(), 3, "{text}");
            assert!(
                cells[1..].iter().all(|c| c.parse::<f64>().unwrap() > 0.0),
                "{text}"
            );
        }
    }

    #[test]
    fn times_and_sizes_out_of_range_are_refused() {
        let e = Matmul::new(None, 0.0).unwrap_err().to_string();
        assert_eq!(e, "--min-time must be a positive number of seconds");
        assert!(Matmul::new(None, f64::INFINITY).is_err());
        let m = Matmul::new(None, 1.0).unwrap();
        assert_eq!(m.sizes, DEFAULT_SIZES);
        assert!(!m.explicit);
        let e = Matmul::new(Some(vec![0]), 1.0)
            .unwrap()
            .run(&[], &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert_eq!(e, "--sizes must be between 1 and 16384");
    }
}
