//! The N-D ops of the GPU backend against the CPU reference on random data
//! and awkward shapes (sizes that are not multiples of any workgroup or tile,
//! size-1 and broadcast dimensions, empty tensors), as `backends.rs` does for
//! the 2-D ops. Data movement and i64 conversions must match bit for bit;
//! arithmetic within 1e-4 relative (of max(|expected|, 1)). Every test needs
//! a GPU adapter (lavapipe will do), so each is ignored by default.

mod common;

use tensorlet_gpu::{
    BinaryOp, Conv2d, DType, Device, DeviceKind, Pool2d, ScalarOp, Storage, Tensor, UnaryOp,
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
    fn f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
    fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32(lo, hi)).collect()
    }
    fn i64s(&mut self, n: usize) -> Vec<i64> {
        (0..n).map(|_| self.next() as i64).collect()
    }
    /// A shape of rank 1..=4 with awkward sizes.
    fn shape(&mut self) -> Vec<usize> {
        let rank = 1 + self.below(4);
        (0..rank)
            .map(|_| self.pick(&[1, 2, 3, 5, 17, 65]))
            .collect()
    }
}

fn pair() -> (Device, Device) {
    let gpu = common::gpu();
    assert_eq!(gpu.info().kind, DeviceKind::Gpu, "{}", gpu.info());
    (Device::cpu(), gpu)
}

fn dims(s: &[usize]) -> Vec<u32> {
    s.iter().map(|&d| d as u32).collect()
}

fn on(dev: &Device, shape: &[usize], data: &[f32]) -> Tensor {
    dev.from_vec(&dims(shape), data.to_vec()).unwrap()
}

fn on_i64(dev: &Device, shape: &[usize], data: &[i64]) -> Tensor {
    dev.from_i64(&dims(shape), data.to_vec()).unwrap()
}

fn close(what: &str, want: &Tensor, got: &Tensor, cpu: &Device, gpu: &Device, rel: f32) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    assert_eq!(got.dtype(), want.dtype(), "{what}: element types");
    let (w, g) = (cpu.to_vec(want), gpu.to_vec(got));
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

/// The same element type, shape and bits.
fn exact(what: &str, want: &Tensor, got: &Tensor, cpu: &Device, gpu: &Device) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    assert_eq!(got.dtype(), want.dtype(), "{what}: element types");
    match want.dtype() {
        DType::I64 => assert_eq!(
            gpu.to_i64_vec(got).unwrap(),
            cpu.to_i64_vec(want).unwrap(),
            "{what}"
        ),
        DType::F32 => {
            let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
            assert_eq!(bits(gpu.to_vec(got)), bits(cpu.to_vec(want)), "{what}");
        }
    }
}

/// A tensor of `shape` with the same random contents on both devices, f32
/// or i64 (the full range) by `dtype`.
fn both(
    r: &mut Rand,
    cpu: &Device,
    gpu: &Device,
    shape: &[usize],
    dtype: DType,
) -> (Tensor, Tensor) {
    let n = shape.iter().product();
    match dtype {
        DType::F32 => {
            let v = r.vec(n, -2.0, 2.0);
            (on(cpu, shape, &v), on(gpu, shape, &v))
        }
        DType::I64 => {
            let v = r.i64s(n);
            (on_i64(cpu, shape, &v), on_i64(gpu, shape, &v))
        }
    }
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn data_movement_is_bit_exact_for_both_types() {
    let (cpu, gpu) = pair();
    let mut r = Rand(11);
    for round in 0..40 {
        let dtype = if round % 2 == 0 {
            DType::F32
        } else {
            DType::I64
        };
        let shape = r.shape();
        let rank = shape.len();
        let (a, b) = both(&mut r, &cpu, &gpu, &shape, dtype);

        let mut axes: Vec<u32> = (0..rank as u32).collect();
        for i in (1..rank).rev() {
            axes.swap(i, r.below(i + 1));
        }
        exact(
            &format!("permute {shape:?} {axes:?}"),
            &cpu.permute(&a, &axes).unwrap(),
            &gpu.permute(&b, &axes).unwrap(),
            &cpu,
            &gpu,
        );

        let axis = r.below(rank);
        let d = shape[axis];
        let start = r.below(d + 1);
        let end = start + r.below(d - start + 1);
        let step = 1 + r.below(3);
        let what = format!("slice {shape:?} axis {axis} {start}..{end} step {step}");
        exact(
            &what,
            &cpu.slice(&a, axis as u32, start as u32, end as u32, step as u32)
                .unwrap(),
            &gpu.slice(&b, axis as u32, start as u32, end as u32, step as u32)
                .unwrap(),
            &cpu,
            &gpu,
        );

        let mut other = shape.clone();
        other[axis] = r.pick(&[0, 1, 2, 7]);
        let (c, e) = both(&mut r, &cpu, &gpu, &other, dtype);
        exact(
            &format!("concat {shape:?} {other:?} {shape:?} along {axis}"),
            &cpu.concat_many(&[&a, &c, &a], axis as u32).unwrap(),
            &gpu.concat_many(&[&b, &e, &b], axis as u32).unwrap(),
            &cpu,
            &gpu,
        );

        let pads: Vec<[u32; 2]> = (0..rank)
            .map(|_| [r.below(3) as u32, r.below(3) as u32])
            .collect();
        exact(
            &format!("pad {shape:?} {pads:?}"),
            &cpu.pad(&a, &pads, -3.0).unwrap(),
            &gpu.pad(&b, &pads, -3.0).unwrap(),
            &cpu,
            &gpu,
        );

        let mut target = vec![r.pick(&[1, 3])];
        target.extend(
            shape
                .iter()
                .map(|&d| if d == 1 { r.pick(&[1, 4]) } else { d }),
        );
        let (sa, sb) = (
            cpu.slice(&a, axis as u32, 0, 1, 1).unwrap(),
            gpu.slice(&b, axis as u32, 0, 1, 1).unwrap(),
        );
        let mut t2 = target.clone();
        t2[axis + 1] = r.pick(&[1, 5]);
        exact(
            &format!("broadcast {:?} to {t2:?}", sa.shape()),
            &cpu.broadcast_to(&sa, &dims(&t2)).unwrap(),
            &gpu.broadcast_to(&sb, &dims(&t2)).unwrap(),
            &cpu,
            &gpu,
        );

        if d > 0 {
            let idx: Vec<i64> = (0..r.below(9)).map(|_| r.below(d) as i64).collect();
            let (ic, ig) = (
                on_i64(&cpu, &[idx.len()], &idx),
                on_i64(&gpu, &[idx.len()], &idx),
            );
            exact(
                &format!("index-select {shape:?} axis {axis} {idx:?}"),
                &cpu.index_select(&a, axis as u32, &ic).unwrap(),
                &gpu.index_select(&b, axis as u32, &ig).unwrap(),
                &cpu,
                &gpu,
            );
            let mut gshape = shape.clone();
            gshape[axis] = r.pick(&[1, 2, 5]);
            for (k, g) in gshape.iter_mut().enumerate() {
                if k != axis {
                    *g = 1 + r.below(*g);
                }
            }
            let n: usize = gshape.iter().product();
            let gi: Vec<i64> = (0..n).map(|_| r.below(d) as i64).collect();
            let (gc, gg) = (on_i64(&cpu, &gshape, &gi), on_i64(&gpu, &gshape, &gi));
            exact(
                &format!("gather {shape:?} axis {axis} by {gshape:?}"),
                &cpu.gather(&a, axis as u32, &gc).unwrap(),
                &gpu.gather(&b, axis as u32, &gg).unwrap(),
                &cpu,
                &gpu,
            );
        }
    }
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn i64_conversions_are_exact() {
    let (cpu, gpu) = pair();
    let mut r = Rand(12);
    // Random 64-bit values, values near powers of two (rounding ties), and
    // small integers.
    let mut v = r.i64s(3000);
    for k in 0..63 {
        for d in [-3i64, -1, 0, 1, 3] {
            v.push((1i64 << k).wrapping_add(d));
            v.push((1i64 << k).wrapping_add(d).wrapping_neg());
        }
    }
    v.extend(-300..300);
    let (a, b) = (on_i64(&cpu, &[v.len()], &v), on_i64(&gpu, &[v.len()], &v));
    exact("i64 to f32", &cpu.to_f32(&a), &gpu.to_f32(&b), &cpu, &gpu);
    // f32 integers back to i64: every f32 integer in range, through the GPU.
    let fl: Vec<f32> = v
        .iter()
        .map(|&x| x as f32)
        .filter(|x| x.abs() < 9.2e18)
        .collect();
    let (c, d) = (on(&cpu, &[fl.len()], &fl), on(&gpu, &[fl.len()], &fl));
    exact(
        "f32 to i64",
        &cpu.to_i64(&c).unwrap(),
        &gpu.to_i64(&d).unwrap(),
        &cpu,
        &gpu,
    );
    let mut bad = fl.clone();
    bad[1234] = 0.5;
    bad[2000] = f32::NAN;
    let e = gpu.to_i64(&on(&gpu, &[bad.len()], &bad)).unwrap_err();
    assert_eq!(e, cpu.to_i64(&on(&cpu, &[bad.len()], &bad)).unwrap_err());
    assert!(e.to_string().contains("element 1234"), "{e}");
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn scatters_match() {
    let (cpu, gpu) = pair();
    let mut r = Rand(13);
    for _ in 0..30 {
        let shape = r.shape();
        let axis = r.below(shape.len());
        let d = shape[axis].max(1);
        let mut out = shape.clone();
        out[axis] = d;
        let mut ishape = shape.clone();
        for (k, s) in ishape.iter_mut().enumerate() {
            *s = if k == axis {
                r.pick(&[1, 3, 9])
            } else {
                1 + r.below(*s)
            };
        }
        let n: usize = ishape.iter().product();
        let idx: Vec<i64> = (0..n).map(|_| r.below(d) as i64).collect();
        let src = r.vec(n, -2.0, 2.0);
        let what = format!("scatter-add {ishape:?} into {out:?} along {axis}");
        close(
            &what,
            &cpu.scatter_add(
                &dims(&out),
                axis as u32,
                &on_i64(&cpu, &ishape, &idx),
                &on(&cpu, &ishape, &src),
            )
            .unwrap(),
            &gpu.scatter_add(
                &dims(&out),
                axis as u32,
                &on_i64(&gpu, &ishape, &idx),
                &on(&gpu, &ishape, &src),
            )
            .unwrap(),
            &cpu,
            &gpu,
            1e-6,
        );

        let m = r.pick(&[0, 1, 4, 70]);
        let idx: Vec<i64> = (0..m).map(|_| r.below(d) as i64).collect();
        let mut sshape = out[..axis].to_vec();
        sshape.push(m);
        sshape.extend_from_slice(&out[axis + 1..]);
        let src = r.vec(sshape.iter().product(), -2.0, 2.0);
        let what = format!("index-add {sshape:?} into {out:?} along {axis}");
        close(
            &what,
            &cpu.index_add(
                &dims(&out),
                axis as u32,
                &on_i64(&cpu, &[m], &idx),
                &on(&cpu, &sshape, &src),
            )
            .unwrap(),
            &gpu.index_add(
                &dims(&out),
                axis as u32,
                &on_i64(&gpu, &[m], &idx),
                &on(&gpu, &sshape, &src),
            )
            .unwrap(),
            &cpu,
            &gpu,
            1e-6,
        );
    }
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn batched_matmul_on_awkward_shapes() {
    let (cpu, gpu) = pair();
    let mut r = Rand(14);
    let sizes = [1usize, 2, 3, 17, 63, 65, 129];
    for _ in 0..30 {
        let (m, k, n) = (r.pick(&sizes), r.pick(&sizes), r.pick(&sizes));
        let batch: Vec<usize> = (0..r.below(3)).map(|_| r.pick(&[1, 2, 3])).collect();
        let skip = r.below(batch.len() + 1);
        let bb: Vec<usize> = batch
            .iter()
            .map(|&d| if r.below(3) == 0 { 1 } else { d })
            .collect::<Vec<_>>()
            .split_off(skip);
        let (ta, tb) = (r.below(2) == 1, r.below(2) == 1);
        let mut sa = batch.clone();
        sa.extend(if ta { [k, m] } else { [m, k] });
        let mut sb = bb.clone();
        sb.extend(if tb { [n, k] } else { [k, n] });
        let (a, b) = (
            r.vec(sa.iter().product(), -1.0, 1.0),
            r.vec(sb.iter().product(), -1.0, 1.0),
        );
        let want = cpu
            .matmul_transposed(&on(&cpu, &sa, &a), ta, &on(&cpu, &sb, &b), tb)
            .unwrap();
        let got = gpu
            .matmul_transposed(&on(&gpu, &sa, &a), ta, &on(&gpu, &sb, &b), tb)
            .unwrap();
        close(
            &format!("matmul {sa:?} (t {ta}) x {sb:?} (t {tb})"),
            &want,
            &got,
            &cpu,
            &gpu,
            1e-4,
        );
    }
}

fn conv_cases(r: &mut Rand) -> Vec<(Vec<usize>, Vec<usize>, Conv2d)> {
    let mut v = vec![
        // With a 24 KiB binding limit, one image's unfolded input (14400
        // bytes) fills the budget: five chunks of one image each.
        (
            vec![5, 4, 10, 10],
            vec![3, 4, 3, 3],
            Conv2d {
                padding: [1, 1],
                ..Conv2d::default()
            },
        ),
        (vec![2, 3, 17, 9], vec![5, 3, 3, 3], Conv2d::default()),
        (
            vec![1, 4, 13, 13],
            vec![4, 1, 3, 3],
            Conv2d {
                groups: 4,
                padding: [1, 1],
                ..Conv2d::default()
            },
        ),
        (
            vec![3, 6, 8, 11],
            vec![4, 3, 2, 5],
            Conv2d {
                groups: 2,
                stride: [2, 3],
                padding: [1, 2],
                dilation: [2, 1],
            },
        ),
        (
            vec![2, 1, 1, 20],
            vec![3, 1, 1, 4],
            Conv2d {
                stride: [1, 2],
                ..Conv2d::default()
            },
        ),
        (vec![1, 65, 5, 5], vec![17, 65, 1, 1], Conv2d::default()),
    ];
    for _ in 0..8 {
        let groups = r.pick(&[1, 1, 2, 3]);
        let c = groups * r.pick(&[1, 2, 3]);
        let o = groups * r.pick(&[1, 2, 5]);
        let (kh, kw) = (r.pick(&[1, 2, 3]), r.pick(&[1, 3, 4]));
        let p = Conv2d {
            stride: [1 + r.below(2) as u32, 1 + r.below(3) as u32],
            padding: [r.below(3) as u32, r.below(2) as u32],
            dilation: [1 + r.below(2) as u32, 1 + r.below(2) as u32],
            groups: groups as u32,
        };
        let h = r.pick(&[5, 7, 9]);
        let w = r.pick(&[6, 10, 17]);
        v.push((
            vec![r.pick(&[1, 2, 3]), c, h, w],
            vec![o, c / groups, kh, kw],
            p,
        ));
    }
    v
}

/// A device whose storage binding is limited to `bytes`: convolutions then
/// unfold a few images at a time, and larger tensors go to the CPU.
fn small_gpu(bytes: u64) -> Device {
    let _ = common::gpu();
    #[cfg(feature = "wgpu")]
    {
        use tensorlet_gpu::wgpu_backend::{AdapterPolicy, WgpuBackend};
        Device::new(std::sync::Arc::new(
            WgpuBackend::open(AdapterPolicy::Any)
                .unwrap()
                .with_max_tensor_bytes(bytes),
        ))
    }
    #[cfg(not(feature = "wgpu"))]
    {
        unreachable!("common::gpu() fails without the wgpu feature ({bytes} bytes)")
    }
}

/// Whether `t` was computed on the GPU (it is in GPU memory).
fn on_gpu(t: &Tensor) -> bool {
    #[cfg(feature = "wgpu")]
    {
        matches!(t.storage(), Storage::Gpu(_) | Storage::GpuI64(_))
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = t;
        false
    }
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn convolutions_and_their_gradients_match() {
    let (cpu, gpu) = pair();
    let chunked = small_gpu(24 << 10);
    let mut r = Rand(15);
    for (xs, ws, p) in conv_cases(&mut r) {
        let x = r.vec(xs.iter().product(), -1.0, 1.0);
        let w = r.vec(ws.iter().product(), -1.0, 1.0);
        let b = r.vec(ws[0], -1.0, 1.0);
        let want = cpu
            .conv2d(
                &on(&cpu, &xs, &x),
                &on(&cpu, &ws, &w),
                Some(&on(&cpu, &[ws[0]], &b)),
                &p,
            )
            .unwrap();
        for dev in [&gpu, &chunked] {
            let got = dev
                .conv2d(
                    &on(dev, &xs, &x),
                    &on(dev, &ws, &w),
                    Some(&on(dev, &[ws[0]], &b)),
                    &p,
                )
                .unwrap();
            close(
                &format!("conv2d {xs:?} {ws:?} {p:?}"),
                &want,
                &got,
                &cpu,
                dev,
                1e-4,
            );
            assert!(on_gpu(&got), "computed on the GPU");
        }
        // The gradients, through the tape.
        let grads = |dev: &Device| {
            let mut tape = tensorlet_gpu::autodiff::Tape::new(dev.clone());
            let xv = tape.leaf("x", on(dev, &xs, &x)).unwrap();
            let wv = tape.leaf("w", on(dev, &ws, &w)).unwrap();
            let y = tape.conv2d(&xv, &wv, None, &p).unwrap();
            let seed: Vec<f32> = (0..y.value().numel())
                .map(|i| ((i * 7) % 5) as f32 - 2.0)
                .collect();
            let weighted = tape
                .binary(
                    BinaryOp::Mul,
                    &y,
                    &tensorlet_gpu::autodiff::Var::constant(
                        dev.from_vec(&y.shape().to_u32(), seed).unwrap(),
                    ),
                )
                .unwrap();
            let flat = tape
                .reshape(&weighted, &[weighted.value().numel() as u32])
                .unwrap();
            let loss = tape
                .reduce(tensorlet_gpu::ReduceOp::Sum, &flat, 0, true)
                .unwrap();
            tape.grad(&loss, &["x", "w"]).unwrap()
        };
        let want = grads(&cpu);
        for dev in [&gpu, &chunked] {
            let got = grads(dev);
            close(
                &format!("conv2d input gradient {xs:?} {ws:?} {p:?}"),
                &want[0],
                &got[0],
                &cpu,
                dev,
                1e-4,
            );
            close(
                &format!("conv2d weight gradient {xs:?} {ws:?} {p:?}"),
                &want[1],
                &got[1],
                &cpu,
                dev,
                1e-4,
            );
        }
    }
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn pooling_matches() {
    let (cpu, gpu) = pair();
    let mut r = Rand(16);
    for _ in 0..20 {
        let k = [r.pick(&[1, 2, 3]), r.pick(&[1, 2, 3])];
        let p = Pool2d {
            kernel: k.map(|v| v as u32),
            stride: [1 + r.below(3) as u32, 1 + r.below(3) as u32],
            padding: k.map(|v| r.below(v / 2 + 1) as u32),
        };
        let xs = [
            r.pick(&[1, 2]),
            r.pick(&[1, 3]),
            r.pick(&[3, 4, 9]),
            r.pick(&[3, 5, 17]),
        ];
        let x = r.vec(xs.iter().product(), -2.0, 2.0);
        let (a, b) = (on(&cpu, &xs, &x), on(&gpu, &xs, &x));
        let (cv, ci) = cpu.max_pool2d_with_indices(&a, &p).unwrap();
        let (gv, gi) = gpu.max_pool2d_with_indices(&b, &p).unwrap();
        exact(&format!("max-pool2d {xs:?} {p:?}"), &cv, &gv, &cpu, &gpu);
        exact(
            &format!("max-pool2d indices {xs:?} {p:?}"),
            &ci,
            &gi,
            &cpu,
            &gpu,
        );
        close(
            &format!("avg-pool2d {xs:?} {p:?}"),
            &cpu.avg_pool2d(&a, &p).unwrap(),
            &gpu.avg_pool2d(&b, &p).unwrap(),
            &cpu,
            &gpu,
            1e-5,
        );
        for (name, f) in [("max", true), ("avg", false)] {
            let grads = |dev: &Device, t: &Tensor| {
                let mut tape = tensorlet_gpu::autodiff::Tape::new(dev.clone());
                let xv = tape.leaf("x", t.clone()).unwrap();
                let y = if f {
                    tape.max_pool2d(&xv, &p)
                } else {
                    tape.avg_pool2d(&xv, &p)
                }
                .unwrap();
                let sq = tape.unary(UnaryOp::Square, &y).unwrap();
                let flat = tape.reshape(&sq, &[sq.value().numel() as u32]).unwrap();
                let loss = tape
                    .reduce(tensorlet_gpu::ReduceOp::Sum, &flat, 0, true)
                    .unwrap();
                tape.grad(&loss, &["x"]).unwrap().remove(0)
            };
            close(
                &format!("{name}-pool2d gradient {xs:?} {p:?}"),
                &grads(&cpu, &a),
                &grads(&gpu, &b),
                &cpu,
                &gpu,
                1e-5,
            );
        }
    }
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn element_wise_extras_match() {
    let (cpu, gpu) = pair();
    let mut r = Rand(17);
    for n in [0usize, 1, 3, 255, 256, 257, 4099] {
        let mut x = r.vec(n, -8.0, 8.0);
        for (i, v) in x.iter_mut().enumerate().take(n.min(4)) {
            *v = [0.0, -30.0, 30.0, 0.5][i];
        }
        let (a, b) = (on(&cpu, &[n], &x), on(&gpu, &[n], &x));
        for op in [
            UnaryOp::Gelu,
            UnaryOp::GeluTanh,
            UnaryOp::Silu,
            UnaryOp::Softplus,
            UnaryOp::GeluGrad,
            UnaryOp::GeluTanhGrad,
            UnaryOp::SiluGrad,
        ] {
            close(
                &format!("{op:?} [{n}]"),
                &cpu.unary(op, &a).unwrap(),
                &gpu.unary(op, &b).unwrap(),
                &cpu,
                &gpu,
                1e-4,
            );
        }
        for (op, v) in [
            (ScalarOp::Pow, 2.0f32),
            (ScalarOp::Pow, 3.0),
            (ScalarOp::Pow, -0.5),
            (ScalarOp::Max, 0.25),
            (ScalarOp::Min, -1.0),
            (ScalarOp::LeakyRelu, 0.01),
        ] {
            close(
                &format!("{op:?} {v} [{n}]"),
                &cpu.scalar(op, &a, v).unwrap(),
                &gpu.scalar(op, &b, v).unwrap(),
                &cpu,
                &gpu,
                1e-4,
            );
        }
        close(
            &format!("clamp [{n}]"),
            &cpu.clamp(&a, -1.5, 2.5).unwrap(),
            &gpu.clamp(&b, -1.5, 2.5).unwrap(),
            &cpu,
            &gpu,
            0.0,
        );
    }
    for _ in 0..30 {
        let sa = r.shape();
        let sb: Vec<usize> = sa
            .iter()
            .map(|&d| if r.below(3) == 0 { 1 } else { d })
            .collect();
        let skip = r.below(sa.len());
        let sc: Vec<usize> = sa[skip..]
            .iter()
            .map(|&d| if r.below(2) == 0 { 1 } else { d })
            .collect();
        let x = r.vec(sa.iter().product(), 0.1, 3.0);
        let mut y = r.vec(sb.iter().product(), -3.0, 3.0);
        // Some equal values, for the comparisons.
        for (i, v) in y.iter_mut().enumerate().step_by(3) {
            *v = x[i % x.len()];
        }
        let c: Vec<f32> = (0..sc.iter().product())
            .map(|i: usize| f32::from(u8::from(i.is_multiple_of(3))))
            .collect();
        let (xa, xb) = (on(&cpu, &sa, &x), on(&gpu, &sa, &x));
        let (ya, yb) = (on(&cpu, &sb, &y), on(&gpu, &sb, &y));
        for op in [
            BinaryOp::Maximum,
            BinaryOp::Minimum,
            BinaryOp::Pow,
            BinaryOp::Eq,
            BinaryOp::Ne,
            BinaryOp::Lt,
            BinaryOp::Le,
            BinaryOp::Gt,
            BinaryOp::Ge,
        ] {
            close(
                &format!("{op:?} {sa:?} {sb:?}"),
                &cpu.binary(op, &xa, &ya).unwrap(),
                &gpu.binary(op, &xb, &yb).unwrap(),
                &cpu,
                &gpu,
                1e-4,
            );
        }
        let (ca, cb) = (on(&cpu, &sc, &c), on(&gpu, &sc, &c));
        exact(
            &format!("where {sc:?} {sa:?} {sb:?}"),
            &cpu.where_(&ca, &xa, &ya).unwrap(),
            &gpu.where_(&cb, &xb, &yb).unwrap(),
            &cpu,
            &gpu,
        );
        let axis = r.below(sa.len()) as u32;
        for reverse in [false, true] {
            close(
                &format!("cumsum {sa:?} along {axis} (reverse {reverse})"),
                &cpu.cumsum(&xa, axis, reverse).unwrap(),
                &gpu.cumsum(&xb, axis, reverse).unwrap(),
                &cpu,
                &gpu,
                1e-5,
            );
        }
    }
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn dropout_masks_are_the_same_on_both_backends() {
    let (cpu, gpu) = pair();
    for (shape, p, seed) in [
        (vec![1000u32, 257], 0.1f32, 1u64),
        (vec![3, 5, 7], 0.5, u64::MAX),
        (vec![65_537], 0.9, 1 << 40),
    ] {
        let want = cpu.dropout_mask(&shape, p, seed).unwrap();
        let got = gpu.dropout_mask(&shape, p, seed).unwrap();
        exact(
            &format!("dropout mask {shape:?} p {p} seed {seed}"),
            &want,
            &got,
            &cpu,
            &gpu,
        );
    }
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn tensors_too_large_for_a_binding_run_on_the_cpu() {
    let cpu = Device::cpu();
    let small = small_gpu(4096);
    let mut r = Rand(18);
    // 2000 elements (8000 bytes) do not fit a 4096-byte binding.
    let x = r.vec(2000, -1.0, 1.0);
    let (a, b) = (on(&cpu, &[40, 50], &x), on(&small, &[40, 50], &x));
    // A resident input whose result does not fit: computed on the CPU.
    let col = r.vec(40, -1.0, 1.0);
    let (c40, g40) = (on(&cpu, &[40, 1], &col), on(&small, &[40, 1], &col));
    assert!(on_gpu(&g40), "a small tensor stays on the GPU");
    let wide = small.broadcast_to(&g40, &[40, 50]).unwrap();
    assert!(
        matches!(wide.storage(), Storage::Host(_)),
        "computed on the CPU"
    );
    exact(
        "broadcast",
        &cpu.broadcast_to(&c40, &[40, 50]).unwrap(),
        &wide,
        &cpu,
        &small,
    );
    let moved = small.permute(&b, &[1, 0]).unwrap();
    exact(
        "permute",
        &cpu.permute(&a, &[1, 0]).unwrap(),
        &moved,
        &cpu,
        &small,
    );
    exact(
        "pad",
        &cpu.pad(&a, &[[1, 1], [0, 2]], 1.0).unwrap(),
        &small.pad(&b, &[[1, 1], [0, 2]], 1.0).unwrap(),
        &cpu,
        &small,
    );
    let ids: Vec<i64> = (0..600).map(|i| (i * 7) % 40).collect();
    exact(
        "embedding",
        &cpu.embedding(&a, &on_i64(&cpu, &[600], &ids)).unwrap(),
        &small.embedding(&b, &on_i64(&small, &[600], &ids)).unwrap(),
        &cpu,
        &small,
    );
    close(
        "cumsum",
        &cpu.cumsum(&a, 0, false).unwrap(),
        &small.cumsum(&b, 0, false).unwrap(),
        &cpu,
        &small,
        1e-5,
    );
    let img = r.vec(2 * 3 * 20 * 20, -1.0, 1.0);
    let w = r.vec(4 * 3 * 3 * 3, -1.0, 1.0);
    let p = Conv2d {
        padding: [1, 1],
        ..Conv2d::default()
    };
    close(
        "conv2d",
        &cpu.conv2d(
            &on(&cpu, &[2, 3, 20, 20], &img),
            &on(&cpu, &[4, 3, 3, 3], &w),
            None,
            &p,
        )
        .unwrap(),
        &small
            .conv2d(
                &on(&small, &[2, 3, 20, 20], &img),
                &on(&small, &[4, 3, 3, 3], &w),
                None,
                &p,
            )
            .unwrap(),
        &cpu,
        &small,
        1e-4,
    );
    let big: Vec<i64> = r.i64s(1000);
    let (c, d) = (on_i64(&cpu, &[1000], &big), on_i64(&small, &[1000], &big));
    exact(
        "i64 slice",
        &cpu.slice(&c, 0, 3, 1000, 7).unwrap(),
        &small.slice(&d, 0, 3, 1000, 7).unwrap(),
        &cpu,
        &small,
    );
}
