//! The GPU backend against the CPU reference on random data and awkward shapes:
//! sizes that are not multiples of any workgroup or tile (1, 3, 17, 63, 65,
//! 129, ...), size-1 and broadcast dimensions, and empty tensors.
//!
//! Arithmetic is compared with a relative tolerance (1e-4 at most, measured
//! against max(|expected|, 1)); ops that only move data must match exactly.
//! Every test here needs a GPU adapter (lavapipe will do), so each is ignored
//! by default; `cargo test … -- --ignored` runs them, as CI does.

mod common;

use tensorlet_gpu::{
    BinaryOp, Device, DeviceKind, Distribution, ReduceOp, ScalarOp, Tensor, UnaryOp,
};

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
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
    /// Uniform in [lo, hi).
    fn f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
    fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32(lo, hi)).collect()
    }
}

const AWKWARD: &[usize] = &[1, 2, 3, 17, 63, 64, 65, 129];

/// The pair of devices: the CPU reference and the GPU.
fn pair() -> (Device, Device) {
    let gpu = common::gpu();
    assert_eq!(gpu.info().kind, DeviceKind::Gpu, "{}", gpu.info());
    (Device::cpu(), gpu)
}

fn on(dev: &Device, shape: &[usize], data: &[f32]) -> Tensor {
    let dims: Vec<u32> = shape.iter().map(|&d| d as u32).collect();
    dev.from_vec(&dims, data.to_vec()).unwrap()
}

/// Same shape, and every element within `rel * max(|want|, 1)`; NaN matches NaN.
fn assert_close(what: &str, want: &Tensor, got: &Tensor, cpu: &Device, gpu: &Device, rel: f32) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    let (w, g) = (cpu.to_vec(want), gpu.to_vec(got));
    assert_eq!(w.len(), g.len(), "{what}: lengths");
    for (i, (&w, &g)) in w.iter().zip(&g).enumerate() {
        let ok = if w.is_nan() || g.is_nan() {
            w.is_nan() && g.is_nan()
        } else if w.is_infinite() {
            w == g
        } else {
            (w - g).abs() <= rel * w.abs().max(1.0)
        };
        assert!(ok, "{what}: element {i}: gpu {g}, cpu {w}");
    }
}

fn assert_exact(what: &str, want: &Tensor, got: &Tensor, cpu: &Device, gpu: &Device) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    let (w, g) = (cpu.to_vec(want), gpu.to_vec(got));
    let (wb, gb): (Vec<u32>, Vec<u32>) = (
        w.iter().map(|x| x.to_bits()).collect(),
        g.iter().map(|x| x.to_bits()).collect(),
    );
    assert!(wb == gb, "{what}: gpu {g:?}\ncpu {w:?}");
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn matmul_on_awkward_sizes() {
    let (cpu, gpu) = pair();
    let mut r = Rand(1);
    let mut cases: Vec<(usize, usize, usize)> = vec![
        (1, 1, 1),
        (0, 3, 4),
        (3, 0, 4),
        (3, 4, 0),
        (64, 64, 64),
        (65, 129, 63),
        (200, 300, 130),
        (1, 500, 1),
        // Large enough for the 128 x 128-tile kernel, with ragged edges.
        (1281, 3, 1665),
        (1290, 33, 1700),
    ];
    for _ in 0..40 {
        cases.push((r.pick(AWKWARD), r.pick(AWKWARD), r.pick(AWKWARD)));
    }
    for (m, k, n) in cases {
        let a = r.vec(m * k, -1.0, 1.0);
        let b = r.vec(k * n, -1.0, 1.0);
        let want = cpu
            .matmul(&on(&cpu, &[m, k], &a), &on(&cpu, &[k, n], &b))
            .unwrap();
        let got = gpu
            .matmul(&on(&gpu, &[m, k], &a), &on(&gpu, &[k, n], &b))
            .unwrap();
        assert_close(
            &format!("matmul {m}x{k}x{n}"),
            &want,
            &got,
            &cpu,
            &gpu,
            1e-4,
        );
    }
}

/// A random shape of rank 0..=4 with awkward sizes, and a random shape that
/// broadcasts against it (dims set to 1, leading dims dropped).
fn broadcast_pair(r: &mut Rand) -> (Vec<usize>, Vec<usize>) {
    let rank = r.below(5);
    let a: Vec<usize> = (0..rank).map(|_| r.pick(&[1, 2, 3, 5, 17, 65])).collect();
    let drop = if rank > 0 { r.below(rank + 1) } else { 0 };
    let b: Vec<usize> = a[drop..]
        .iter()
        .map(|&d| if r.below(3) == 0 { 1 } else { d })
        .collect();
    if r.below(2) == 0 { (a, b) } else { (b, a) }
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn broadcasting_binary_ops() {
    let (cpu, gpu) = pair();
    let mut r = Rand(2);
    let mut cases: Vec<(Vec<usize>, Vec<usize>)> =
        (0..60).map(|_| broadcast_pair(&mut r)).collect();
    cases.extend([
        (vec![0, 3], vec![3]),
        (vec![4, 0], vec![4, 1]),
        (vec![], vec![]),
        (vec![300, 7], vec![300, 1]),
        (vec![2, 1, 3, 1, 2], vec![1, 4, 1, 5, 1]),
        (vec![1, 1, 1], vec![7]),
    ]);
    for (sa, sb) in cases {
        let na: usize = sa.iter().product();
        let nb: usize = sb.iter().product();
        let a = r.vec(na, -2.0, 2.0);
        // Divisors away from zero, so relative error stays meaningful.
        let b: Vec<f32> = r
            .vec(nb, 0.5, 2.0)
            .into_iter()
            .map(|x| if r.below(2) == 0 { x } else { -x })
            .collect();
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
            let want = cpu
                .binary(op, &on(&cpu, &sa, &a), &on(&cpu, &sb, &b))
                .unwrap();
            let got = gpu
                .binary(op, &on(&gpu, &sa, &a), &on(&gpu, &sb, &b))
                .unwrap();
            assert_close(
                &format!("{op:?} {sa:?} {sb:?}"),
                &want,
                &got,
                &cpu,
                &gpu,
                1e-6,
            );
        }
    }
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn unary_and_scalar_maps() {
    let (cpu, gpu) = pair();
    let mut r = Rand(3);
    let ops = [
        UnaryOp::Relu,
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Square,
        UnaryOp::ReluMask,
    ];
    for n in [0, 1, 3, 255, 256, 257, 4099] {
        let mut x = r.vec(n, -6.0, 6.0);
        // Extremes where naive formulas overflow, and exact zeros.
        for (i, v) in [-100.0, 100.0, 0.0, -0.0, 30.0, -30.0]
            .into_iter()
            .enumerate()
        {
            if i < n {
                x[i] = v;
            }
        }
        let positive: Vec<f32> = r.vec(n, 1e-3, 50.0);
        for op in ops {
            let data = if matches!(op, UnaryOp::Log | UnaryOp::Sqrt) {
                &positive
            } else {
                &x
            };
            let want = cpu.unary(op, &on(&cpu, &[n], data)).unwrap();
            let got = gpu.unary(op, &on(&gpu, &[n], data)).unwrap();
            assert_close(&format!("{op:?} n={n}"), &want, &got, &cpu, &gpu, 1e-5);
        }
        for (op, v) in [(ScalarOp::Add, 0.25), (ScalarOp::Mul, -3.5)] {
            let want = cpu.scalar(op, &on(&cpu, &[n], &x), v).unwrap();
            let got = gpu.scalar(op, &on(&gpu, &[n], &x), v).unwrap();
            assert_exact(&format!("{op:?} n={n}"), &want, &got, &cpu, &gpu);
        }
    }
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn reductions_along_every_axis() {
    let (cpu, gpu) = pair();
    let mut r = Rand(4);
    let mut shapes: Vec<Vec<usize>> = vec![
        vec![1],
        vec![1000],
        vec![3, 1000],
        vec![2, 700, 3],
        vec![65, 129],
        vec![1, 1, 1],
        vec![0, 5],
        vec![5, 0, 2],
    ];
    for _ in 0..20 {
        let rank = 1 + r.below(3);
        shapes.push((0..rank).map(|_| r.pick(AWKWARD)).collect());
    }
    let ops = [
        ReduceOp::Sum,
        ReduceOp::Mean,
        ReduceOp::Max,
        ReduceOp::Min,
        ReduceOp::ArgMax,
    ];
    for shape in shapes {
        let n: usize = shape.iter().product();
        // Few distinct values, so argmax meets ties (the first index must win).
        let ties: Vec<f32> = (0..n).map(|_| r.below(4) as f32).collect();
        let smooth = r.vec(n, -1.0, 1.0);
        for axis in 0..shape.len() {
            for op in ops {
                let data = if op == ReduceOp::ArgMax {
                    &ties
                } else {
                    &smooth
                };
                let keep = r.below(2) == 0;
                let want = cpu.reduce(op, &on(&cpu, &shape, data), axis as u32, keep);
                let got = gpu.reduce(op, &on(&gpu, &shape, data), axis as u32, keep);
                let what = format!("{op:?} of {shape:?} along {axis}");
                match (want, got) {
                    (Ok(w), Ok(g)) => assert_close(&what, &w, &g, &cpu, &gpu, 1e-4),
                    (Err(w), Err(g)) => assert_eq!(w, g, "{what}"),
                    (w, g) => panic!("{what}: cpu {w:?}, gpu {g:?}"),
                }
            }
        }
    }
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn softmax_and_log_softmax_along_every_axis() {
    let (cpu, gpu) = pair();
    let mut r = Rand(5);
    let shapes: Vec<Vec<usize>> = vec![
        vec![1],
        vec![4, 1000],
        vec![3, 17],
        vec![65, 10],
        vec![2, 300, 3],
        vec![1, 1],
        vec![0, 4],
        vec![129, 63],
    ];
    for shape in shapes {
        let n: usize = shape.iter().product();
        let mut x = r.vec(n, -8.0, 8.0);
        if n > 2 {
            x[1] = 80.0; // exp would overflow without the max shift
        }
        for axis in 0..shape.len() {
            for log in [false, true] {
                let want = cpu
                    .softmax(&on(&cpu, &shape, &x), axis as u32, log)
                    .unwrap();
                let got = gpu
                    .softmax(&on(&gpu, &shape, &x), axis as u32, log)
                    .unwrap();
                let what = format!("softmax(log={log}) of {shape:?} along {axis}");
                assert_close(&what, &want, &got, &cpu, &gpu, 1e-5);
            }
        }
    }
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn data_movement_is_exact() {
    let (cpu, gpu) = pair();
    let mut r = Rand(6);
    // Transpose.
    for (rows, cols) in [
        (1, 1),
        (17, 63),
        (65, 129),
        (0, 5),
        (300, 1),
        (1, 300),
        (16, 16),
    ] {
        let x = r.vec(rows * cols, -1.0, 1.0);
        let want = cpu.transpose(&on(&cpu, &[rows, cols], &x)).unwrap();
        let got = gpu.transpose(&on(&gpu, &[rows, cols], &x)).unwrap();
        assert_exact(&format!("transpose {rows}x{cols}"), &want, &got, &cpu, &gpu);
    }
    // Row slicing and gathering.
    for shape in [vec![7usize, 3], vec![65, 1], vec![129, 2, 3], vec![5, 0]] {
        let rows = shape[0];
        let x = r.vec(shape.iter().product(), -1.0, 1.0);
        let (a, b) = (on(&cpu, &shape, &x), on(&gpu, &shape, &x));
        for (s, e) in [(0, rows), (1, rows), (rows / 2, rows / 2), (rows - 1, rows)] {
            let (s, e) = (s as u32, e as u32);
            assert_exact(
                &format!("slice {s}..{e} of {shape:?}"),
                &cpu.slice_rows(&a, s, e).unwrap(),
                &gpu.slice_rows(&b, s, e).unwrap(),
                &cpu,
                &gpu,
            );
        }
        let idx: Vec<u32> = (0..2 * rows + 1).map(|_| r.below(rows) as u32).collect();
        for idx in [&idx[..], &[][..]] {
            assert_exact(
                &format!("gather {} rows of {shape:?}", idx.len()),
                &cpu.gather_rows(&a, idx).unwrap(),
                &gpu.gather_rows(&b, idx).unwrap(),
                &cpu,
                &gpu,
            );
        }
    }
    // Scatter-add of rows (gather's gradient): repeated indices sum in index
    // order, on both backends the same additions in the same order.
    for (shape, rows) in [
        (vec![7usize, 3], 5usize),
        (vec![300, 1], 4),
        (vec![129, 2, 3], 200),
        (vec![65, 17], 1),
        (vec![0, 4], 3),
        (vec![3, 0], 2),
    ] {
        let x = r.vec(shape.iter().product(), -1.0, 1.0);
        let idx: Vec<u32> = (0..shape[0]).map(|_| r.below(rows) as u32).collect();
        assert_exact(
            &format!("scatter-add {shape:?} into {rows} rows"),
            &cpu.scatter_add_rows(&on(&cpu, &shape, &x), &idx, rows as u32)
                .unwrap(),
            &gpu.scatter_add_rows(&on(&gpu, &shape, &x), &idx, rows as u32)
                .unwrap(),
            &cpu,
            &gpu,
        );
    }
    // Concatenation along each axis, including empty parts.
    for (sa, sb, axis) in [
        (vec![3usize, 4], vec![2usize, 4], 0u32),
        (vec![3, 4], vec![3, 1], 1),
        (vec![2, 3, 5], vec![2, 17, 5], 1),
        (vec![2, 3, 5], vec![2, 3, 1], 2),
        (vec![0, 3], vec![2, 3], 0),
        (vec![4, 0], vec![4, 3], 1),
        (vec![65], vec![63], 0),
    ] {
        let xa = r.vec(sa.iter().product(), -1.0, 1.0);
        let xb = r.vec(sb.iter().product(), -1.0, 1.0);
        assert_exact(
            &format!("concat {sa:?} {sb:?} along {axis}"),
            &cpu.concat(&on(&cpu, &sa, &xa), &on(&cpu, &sb, &xb), axis)
                .unwrap(),
            &gpu.concat(&on(&gpu, &sa, &xa), &on(&gpu, &sb, &xb), axis)
                .unwrap(),
            &cpu,
            &gpu,
        );
    }
    // One-hot, with labels that are out of range, fractional or NaN.
    let labels = [0.0, 2.0, 9.0, -1.0, 2.5, f32::NAN, 1.0, 3.0];
    for classes in [1, 3, 4, 300] {
        assert_exact(
            &format!("one-hot {classes}"),
            &cpu.one_hot(&on(&cpu, &[8], &labels), classes).unwrap(),
            &gpu.one_hot(&on(&gpu, &[8], &labels), classes).unwrap(),
            &cpu,
            &gpu,
        );
    }
    // Fill.
    for n in [0usize, 1, 257] {
        assert_exact(
            &format!("fill {n}"),
            &cpu.fill(&[n as u32], -1.5).unwrap(),
            &gpu.fill(&[n as u32], -1.5).unwrap(),
            &cpu,
            &gpu,
        );
    }
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn random_fills_match_the_cpu_generator() {
    let (cpu, gpu) = pair();
    for seed in [0u64, 7, (1 << 40) | 3, u64::MAX] {
        for n in [1u32, 257, 5000] {
            let u = Distribution::Uniform {
                low: -2.0,
                high: 3.0,
            };
            let want = cpu.random(&[n], u, seed).unwrap();
            let got = gpu.random(&[n], u, seed).unwrap();
            assert_close(
                &format!("uniform seed {seed}"),
                &want,
                &got,
                &cpu,
                &gpu,
                1e-6,
            );
            let nd = Distribution::Normal {
                mean: 1.0,
                std: 2.0,
            };
            let want = cpu.random(&[n], nd, seed).unwrap();
            let got = gpu.random(&[n], nd, seed).unwrap();
            assert_close(
                &format!("normal seed {seed}"),
                &want,
                &got,
                &cpu,
                &gpu,
                1e-4,
            );
        }
    }
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn a_chain_of_ops_stays_on_the_gpu_and_matches() {
    let (cpu, gpu) = pair();
    let mut r = Rand(7);
    // One MLP training step's worth of ops, as a plugin issues them.
    let x = r.vec(37 * 20, -1.0, 1.0);
    let w = r.vec(20 * 33, -0.5, 0.5);
    let bias = r.vec(33, -0.1, 0.1);
    let labels: Vec<f32> = (0..37).map(|_| r.below(33) as f32).collect();
    let run = |dev: &Device| {
        let x = on(dev, &[37, 20], &x);
        let w = on(dev, &[20, 33], &w);
        let b = on(dev, &[33], &bias);
        let y = dev.one_hot(&on(dev, &[37], &labels), 33).unwrap();
        let z = dev
            .binary(BinaryOp::Add, &dev.matmul(&x, &w).unwrap(), &b)
            .unwrap();
        let h = dev.unary(UnaryOp::Relu, &z).unwrap();
        let p = dev.softmax(&h, 1, false).unwrap();
        let d = dev.binary(BinaryOp::Sub, &p, &y).unwrap();
        let gw = dev.matmul(&dev.transpose(&x).unwrap(), &d).unwrap();
        let gb = dev.reduce(ReduceOp::Sum, &d, 0, false).unwrap();
        let w2 = dev
            .binary(
                BinaryOp::Sub,
                &w,
                &dev.scalar(ScalarOp::Mul, &gw, 0.1).unwrap(),
            )
            .unwrap();
        let flat = dev.reshape(&w2, &[660]).unwrap();
        (flat, gb)
    };
    let (cw, cb) = run(&cpu);
    let (gw, gb) = run(&gpu);
    assert_close("updated weights", &cw, &gw, &cpu, &gpu, 1e-5);
    assert_close("bias gradient", &cb, &gb, &cpu, &gpu, 1e-5);
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn storage_crosses_between_backends() {
    let (cpu, gpu) = pair();
    let a = on(&cpu, &[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let b = on(&gpu, &[2, 2], &[5.0, 6.0, 7.0, 8.0]);
    // A host tensor used on the GPU, and a GPU tensor used on the CPU.
    let g = gpu.matmul(&a, &b).unwrap();
    let c = cpu.matmul(&a, &b).unwrap();
    assert_eq!(gpu.to_vec(&g), vec![19.0, 22.0, 43.0, 50.0]);
    assert_eq!(cpu.to_vec(&c), vec![19.0, 22.0, 43.0, 50.0]);
    assert_eq!(cpu.to_vec(&g), vec![19.0, 22.0, 43.0, 50.0]);
}

#[cfg(feature = "wgpu")]
#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn tensors_past_the_binding_limit_run_on_the_cpu() {
    use std::sync::Arc;
    use tensorlet_gpu::wgpu_backend::{AdapterPolicy, WgpuBackend};
    common::gpu();
    let cpu = Device::cpu();
    // 64 elements at most on the GPU: bigger ops take the CPU path, and their
    // results feed GPU ops again.
    let small = WgpuBackend::open(AdapterPolicy::Any)
        .unwrap()
        .with_max_tensor_bytes(256);
    let gpu = Device::new(Arc::new(small));
    let mut r = Rand(8);
    let x = r.vec(10 * 30, -1.0, 1.0);
    let w = r.vec(30 * 5, -1.0, 1.0);
    let run = |dev: &Device| {
        let h = dev
            .matmul(&on(dev, &[10, 30], &x), &on(dev, &[30, 5], &w))
            .unwrap(); // 300-element input: CPU
        let s = dev.softmax(&h, 1, true).unwrap(); // 50 elements: GPU
        let t = dev.transpose(&on(dev, &[10, 30], &x)).unwrap(); // CPU
        let g = dev.gather_rows(&t, &[3, 0, 29]).unwrap(); // CPU (input too big)
        let idx: Vec<u32> = (0..30).map(|i| (i * 7) % 12).collect();
        let sc = dev.scatter_add_rows(&t, &idx, 12).unwrap(); // CPU (input too big)
        let small = dev.slice_rows(&sc, 0, 3).unwrap(); // 30 elements: GPU
        let sg = dev.scatter_add_rows(&small, &[1, 1, 0], 2).unwrap(); // GPU
        (s, g, sc, sg)
    };
    let (cs, cg, csc, csg) = run(&cpu);
    let (gs, gg, gsc, gsg) = run(&gpu);
    assert_close("softmax after a CPU matmul", &cs, &gs, &cpu, &gpu, 1e-5);
    assert_exact("gather after a CPU transpose", &cg, &gg, &cpu, &gpu);
    assert_exact("scatter-add of a large tensor", &csc, &gsc, &cpu, &gpu);
    assert_exact(
        "scatter-add after a CPU scatter-add",
        &csg,
        &gsg,
        &cpu,
        &gpu,
    );
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn uploads_between_queued_ops_do_not_clobber_their_inputs() {
    let (_, gpu) = pair();
    // Ops are recorded in batches; an input dropped right after its op must
    // not have its buffer refilled by the next upload before the op has run.
    let mut outs = Vec::new();
    for i in 0..200 {
        let x = gpu.from_vec(&[100], vec![i as f32; 100]).unwrap();
        outs.push(gpu.scalar(ScalarOp::Mul, &x, 2.0).unwrap());
    }
    for (i, o) in outs.iter().enumerate() {
        assert_eq!(gpu.to_vec(o), vec![2.0 * i as f32; 100], "op {i}");
    }
}
