//! Every op against hand-computed values. Written against a `Device`, so each
//! backend runs the same suite: every test is a module with a `cpu` test (the
//! reference backend) and a `gpu` test (the wgpu backend, on lavapipe where
//! there is no GPU), which is ignored by default as it needs an adapter.

mod common;

use tensorlet_gpu::{
    BinaryOp, Device, Distribution, ReduceOp, ScalarOp, Tensor, TensorError, UnaryOp,
};

/// `mod $name` with a `cpu` test that runs the body on the CPU reference
/// backend and a `gpu` test, ignored by default as it needs an adapter, that
/// runs the same body on the wgpu backend.
macro_rules! on_each_backend {
    (fn $name:ident($dev:ident) $body:block) => {
        mod $name {
            use super::*;

            fn run($dev: Device) $body

            #[test]
            fn cpu() {
                run(Device::cpu());
            }

            #[test]
            #[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
            fn gpu() {
                run(crate::common::gpu());
            }
        }
    };
}

fn t(dev: &Device, shape: &[u32], data: &[f32]) -> Tensor {
    dev.from_vec(shape, data.to_vec()).unwrap()
}

fn close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "length: got {got:?}, want {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= 1e-5 * w.abs().max(1.0) || (g.is_nan() && w.is_nan());
        assert!(ok, "element {i}: got {g}, want {w} (all: {got:?})");
    }
}

fn check(dev: &Device, t: &Tensor, shape: &[usize], want: &[f32]) {
    assert_eq!(t.shape().dims(), shape);
    close(&dev.to_vec(t), want);
}

on_each_backend! {
    fn constructors(dev) {
        let a = t(&dev, &[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        check(&dev, &a, &[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let z = dev.fill(&[3], 0.0).unwrap();
        check(&dev, &z, &[3], &[0.0; 3]);
        let f = dev.fill(&[2, 1], 2.5).unwrap();
        check(&dev, &f, &[2, 1], &[2.5, 2.5]);
        let e = dev.from_vec(&[0, 4], vec![]).unwrap();
        assert_eq!(e.numel(), 0);
        let err = dev.from_vec(&[2, 3], vec![1.0; 5]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "from-list: shape [2, 3] needs 6 elements but 5 were given"
        );
    }
}

on_each_backend! {
    fn random_is_seeded_and_backend_independent(dev) {
        let n = Distribution::Normal {
            mean: 0.0,
            std: 1.0,
        };
        let a = dev.to_vec(&dev.random(&[4, 5], n, 3).unwrap());
        let b = dev.to_vec(&dev.random(&[4, 5], n, 3).unwrap());
        let c = dev.to_vec(&dev.random(&[4, 5], n, 4).unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        let want: Vec<f32> = (0..20)
            .map(|i| tensorlet_gpu::rng::sample(n, 3, i))
            .collect();
        close(&a, &want);
        let u = Distribution::Uniform {
            low: 2.0,
            high: 3.0,
        };
        let v = dev.to_vec(&dev.random(&[100], u, 9).unwrap());
        assert!(v.iter().all(|x| (2.0..3.0).contains(x)));
        assert!(
            dev.random(
                &[2],
                Distribution::Normal {
                    mean: 0.0,
                    std: -1.0
                },
                1
            )
            .is_err()
        );
    }
}

on_each_backend! {
    fn matmul_and_transpose(dev) {
        let a = t(&dev, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = t(&dev, &[3, 2], &[7.0, 8.0, 9.0, 10.0, 11.0, 12.0]);
        // [1 2 3; 4 5 6] x [7 8; 9 10; 11 12] = [58 64; 139 154]
        check(
            &dev,
            &dev.matmul(&a, &b).unwrap(),
            &[2, 2],
            &[58.0, 64.0, 139.0, 154.0],
        );
        check(
            &dev,
            &dev.transpose(&a).unwrap(),
            &[3, 2],
            &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0],
        );
        let err = dev.matmul(&a, &a).unwrap_err();
        assert_eq!(
            err.to_string(),
            "matmul: shapes [2, 3] and [2, 3] are incompatible: inner dimensions 3 and 2 differ"
        );
        assert!(matches!(err, TensorError::Shape { op: "matmul", .. }));
        // k = 0 gives zeros; m = 0 gives an empty result.
        let k0 = dev.matmul(
            &dev.fill(&[2, 0], 0.0).unwrap(),
            &dev.fill(&[0, 3], 0.0).unwrap(),
        );
        check(&dev, &k0.unwrap(), &[2, 3], &[0.0; 6]);
        let m0 = dev.matmul(&dev.fill(&[0, 3], 0.0).unwrap(), &b).unwrap();
        assert_eq!(m0.shape().dims(), &[0, 2]);
        assert!(dev.transpose(&dev.fill(&[2, 2, 2], 0.0).unwrap()).is_err());
    }
}

on_each_backend! {
    fn matmul_matches_a_naive_product_on_awkward_sizes(dev) {
        for &(m, k, n) in &[(1, 1, 1), (17, 33, 5), (64, 1, 65), (3, 129, 7)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 13) as f32 - 6.0).collect();
            let mut want = vec![0.0f32; m * n];
            for i in 0..m {
                for j in 0..n {
                    want[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                }
            }
            let c = dev
                .matmul(
                    &t(&dev, &[m as u32, k as u32], &a),
                    &t(&dev, &[k as u32, n as u32], &b),
                )
                .unwrap();
            check(&dev, &c, &[m, n], &want);
        }
    }
}

/// The CPU backend computes products with a few rows itself (a served
/// request's batch) instead of calling sgemm; training parameter digests need
/// those products to be sgemm's to the bit.
#[test]
fn few_row_products_are_sgemm_to_the_bit() {
    let dev = Device::cpu();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut value = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Mixed signs and magnitudes, so that rounding differs between a
        // fused multiply-add and a separate multiply and add.
        let unit = (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        unit * [0.01, 1.0, 37.0][(seed % 3) as usize]
    };
    let mut fused_vs_separate_differ = false;
    for m in [1usize, 2, 3, 4, 8, 9] {
        for k in [1usize, 2, 4, 7, 64, 255, 256, 257] {
            for n in [1usize, 3, 10, 16, 17, 64] {
                let a: Vec<f32> = (0..m * k).map(|_| value()).collect();
                let b: Vec<f32> = (0..k * n).map(|_| value()).collect();
                let mut want = vec![0.0f32; m * n];
                // SAFETY: row-major m×k, k×n and m×n buffers of exactly those sizes.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        k as isize,
                        1,
                        b.as_ptr(),
                        n as isize,
                        1,
                        0.0,
                        want.as_mut_ptr(),
                        n as isize,
                        1,
                    );
                }
                let got = dev.to_vec(
                    &dev.matmul(
                        &t(&dev, &[m as u32, k as u32], &a),
                        &t(&dev, &[k as u32, n as u32], &b),
                    )
                    .unwrap(),
                );
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{m}x{k} · {k}x{n}");
                let separate: f32 = (0..k).fold(0.0, |acc, p| acc + a[p] * b[p * n]);
                let fused: f32 = (0..k).fold(0.0, |acc, p| a[p].mul_add(b[p * n], acc));
                fused_vs_separate_differ |= separate.to_bits() != fused.to_bits();
            }
        }
    }
    // Otherwise the inputs could not tell the two roundings apart.
    assert!(fused_vs_separate_differ);
}

on_each_backend! {
    fn reshape_shares_and_checks(dev) {
        let a = t(&dev, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        check(
            &dev,
            &dev.reshape(&a, &[3, 2]).unwrap(),
            &[3, 2],
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        );
        let err = dev.reshape(&a, &[4]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "reshape: cannot reshape [2, 3] (6 elements) to [4] (4 elements)"
        );
    }
}

on_each_backend! {
    fn broadcasting_arithmetic(dev) {
        let a = t(&dev, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let row = t(&dev, &[3], &[10.0, 20.0, 30.0]);
        let col = t(&dev, &[2, 1], &[1.0, 2.0]);
        check(
            &dev,
            &dev.binary(BinaryOp::Add, &a, &row).unwrap(),
            &[2, 3],
            &[11.0, 22.0, 33.0, 14.0, 25.0, 36.0],
        );
        // The row on the left, and a row with a leading 1.
        check(
            &dev,
            &dev.binary(BinaryOp::Sub, &row, &a).unwrap(),
            &[2, 3],
            &[9.0, 18.0, 27.0, 6.0, 15.0, 24.0],
        );
        let row2 = t(&dev, &[1, 3], &[1.0, 4.0, 2.0]);
        check(
            &dev,
            &dev.binary(BinaryOp::Div, &a, &row2).unwrap(),
            &[2, 3],
            &[1.0, 0.5, 1.5, 4.0, 1.25, 3.0],
        );
        check(
            &dev,
            &dev.binary(BinaryOp::Sub, &a, &col).unwrap(),
            &[2, 3],
            &[0.0, 1.0, 2.0, 2.0, 3.0, 4.0],
        );
        check(
            &dev,
            &dev.binary(BinaryOp::Mul, &col, &row).unwrap(),
            &[2, 3],
            &[10.0, 20.0, 30.0, 20.0, 40.0, 60.0],
        );
        check(
            &dev,
            &dev.binary(BinaryOp::Div, &a, &a).unwrap(),
            &[2, 3],
            &[1.0; 6],
        );
        let s = t(&dev, &[], &[2.0]);
        check(
            &dev,
            &dev.binary(BinaryOp::Div, &a, &s).unwrap(),
            &[2, 3],
            &[0.5, 1.0, 1.5, 2.0, 2.5, 3.0],
        );
        let err = dev
            .binary(BinaryOp::Add, &a, &t(&dev, &[2], &[1.0, 2.0]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "add: shapes [2, 3] and [2] do not broadcast"
        );
        check(
            &dev,
            &dev.scalar(ScalarOp::Add, &a, 1.0).unwrap(),
            &[2, 3],
            &[2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        );
        check(
            &dev,
            &dev.scalar(ScalarOp::Mul, &a, -2.0).unwrap(),
            &[2, 3],
            &[-2.0, -4.0, -6.0, -8.0, -10.0, -12.0],
        );
        let e = dev
            .binary(BinaryOp::Add, &dev.fill(&[0, 3], 0.0).unwrap(), &row)
            .unwrap();
        assert_eq!(e.shape().dims(), &[0, 3]);
    }
}

on_each_backend! {
    fn unary_maps(dev) {
        let a = t(&dev, &[4], &[-1.0, 0.0, 1.0, 4.0]);
        let cases: &[(UnaryOp, [f32; 4])] = &[
            (UnaryOp::Relu, [0.0, 0.0, 1.0, 4.0]),
            (UnaryOp::ReluMask, [0.0, 0.0, 1.0, 1.0]),
            (UnaryOp::Neg, [1.0, 0.0, -1.0, -4.0]),
            (UnaryOp::Abs, [1.0, 0.0, 1.0, 4.0]),
            (UnaryOp::Square, [1.0, 0.0, 1.0, 16.0]),
            (
                UnaryOp::Sigmoid,
                [0.268_941_43, 0.5, 0.731_058_6, 0.982_013_8],
            ),
            (UnaryOp::Tanh, [-0.761_594_2, 0.0, 0.761_594_2, 0.999_329_3]),
            (UnaryOp::Exp, [0.367_879_44, 1.0, 2.718_281_7, 54.598_15]),
        ];
        for (op, want) in cases {
            check(&dev, &dev.unary(*op, &a).unwrap(), &[4], want);
        }
        let p = t(&dev, &[3], &[1.0, 4.0, 0.25]);
        check(&dev, &dev.unary(UnaryOp::Sqrt, &p).unwrap(), &[3], &[1.0, 2.0, 0.5]);
        check(
            &dev,
            &dev.unary(UnaryOp::Log, &p).unwrap(),
            &[3],
            &[0.0, 1.386_294_4, -1.386_294_4],
        );
    }
}

on_each_backend! {
    fn reductions(dev) {
        let a = t(&dev, &[2, 3], &[1.0, 5.0, 3.0, 4.0, 2.0, 6.0]);
        let r = |op, axis, keep| dev.reduce(op, &a, axis, keep).unwrap();
        check(&dev, &r(ReduceOp::Sum, 0, false), &[3], &[5.0, 7.0, 9.0]);
        check(&dev, &r(ReduceOp::Sum, 1, true), &[2, 1], &[9.0, 12.0]);
        check(&dev, &r(ReduceOp::Mean, 1, false), &[2], &[3.0, 4.0]);
        check(&dev, &r(ReduceOp::Max, 0, true), &[1, 3], &[4.0, 5.0, 6.0]);
        check(&dev, &r(ReduceOp::Min, 1, false), &[2], &[1.0, 2.0]);
        check(&dev, &r(ReduceOp::ArgMax, 1, false), &[2], &[1.0, 2.0]);
        check(&dev, &r(ReduceOp::ArgMax, 0, false), &[3], &[1.0, 0.0, 1.0]);
        // Middle axis of a 3-D tensor.
        let b = t(&dev, &[2, 2, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        check(
            &dev,
            &dev.reduce(ReduceOp::Sum, &b, 1, false).unwrap(),
            &[2, 2],
            &[4.0, 6.0, 12.0, 14.0],
        );
        // Ties pick the first index.
        let tie = t(&dev, &[1, 3], &[2.0, 2.0, 1.0]);
        check(
            &dev,
            &dev.reduce(ReduceOp::ArgMax, &tie, 1, false).unwrap(),
            &[1],
            &[0.0],
        );
        let err = dev.reduce(ReduceOp::Sum, &a, 2, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "reduce-sum: axis 2 is out of range for shape [2, 3] (2 dimensions)"
        );
        let empty = dev.fill(&[2, 0], 0.0).unwrap();
        check(
            &dev,
            &dev.reduce(ReduceOp::Sum, &empty, 1, false).unwrap(),
            &[2],
            &[0.0, 0.0],
        );
        assert!(dev.reduce(ReduceOp::Max, &empty, 1, false).is_err());
    }
}

on_each_backend! {
    fn softmax_and_log_softmax(dev) {
        let a = t(&dev, &[2, 3], &[1.0, 2.0, 3.0, 1000.0, 1000.0, 1000.0]);
        let s = dev.softmax(&a, 1, false).unwrap();
        check(
            &dev,
            &s,
            &[2, 3],
            &[
                0.090_030_57,
                0.244_728_48,
                0.665_240_94,
                1.0 / 3.0,
                1.0 / 3.0,
                1.0 / 3.0,
            ],
        );
        let l = dev.softmax(&a, 1, true).unwrap();
        check(
            &dev,
            &l,
            &[2, 3],
            &[
                -2.407_605_6,
                -1.407_605_6,
                -0.407_605_6,
                -1.098_612_3,
                -1.098_612_3,
                -1.098_612_3,
            ],
        );
        let col = dev
            .softmax(&t(&dev, &[2, 1], &[5.0, 5.0]), 0, false)
            .unwrap();
        check(&dev, &col, &[2, 1], &[0.5, 0.5]);
    }
}

on_each_backend! {
    fn one_hot_rows(dev) {
        let y = t(&dev, &[3], &[2.0, 0.0, 7.0]);
        check(
            &dev,
            &dev.one_hot(&y, 3).unwrap(),
            &[3, 3],
            &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        );
        assert!(dev.one_hot(&dev.fill(&[2, 2], 0.0).unwrap(), 3).is_err());
    }
}

on_each_backend! {
    fn rows_slicing_gathering_and_concat(dev) {
        let a = t(&dev, &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        check(
            &dev,
            &dev.slice_rows(&a, 1, 3).unwrap(),
            &[2, 2],
            &[3.0, 4.0, 5.0, 6.0],
        );
        check(&dev, &dev.slice_rows(&a, 2, 2).unwrap(), &[0, 2], &[]);
        assert_eq!(
            dev.slice_rows(&a, 2, 4).unwrap_err().to_string(),
            "slice-rows: rows 2..4 are out of range for shape [3, 2]"
        );
        check(
            &dev,
            &dev.gather_rows(&a, &[2, 0, 2]).unwrap(),
            &[3, 2],
            &[5.0, 6.0, 1.0, 2.0, 5.0, 6.0],
        );
        assert!(dev.gather_rows(&a, &[3]).is_err());
        let b = t(&dev, &[1, 2], &[7.0, 8.0]);
        check(
            &dev,
            &dev.concat(&a, &b, 0).unwrap(),
            &[4, 2],
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        );
        let c = t(&dev, &[3, 1], &[9.0, 10.0, 11.0]);
        check(
            &dev,
            &dev.concat(&a, &c, 1).unwrap(),
            &[3, 3],
            &[1.0, 2.0, 9.0, 3.0, 4.0, 10.0, 5.0, 6.0, 11.0],
        );
        assert_eq!(
            dev.concat(&a, &b, 1).unwrap_err().to_string(),
            "concat: shapes [3, 2] and [1, 2] differ outside axis 1"
        );
    }
}

on_each_backend! {
    fn scatter_add_rows_sums_repeated_indices(dev) {
        let g = t(&dev, &[4, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.5, 0.25]);
        // Rows 0 and 2 of g go to row 3, row 1 to row 0, row 3 to row 1;
        // row 2 of the result gets nothing.
        check(
            &dev,
            &dev.scatter_add_rows(&g, &[3, 0, 3, 1], 5).unwrap(),
            &[5, 2],
            &[3.0, 4.0, 0.5, 0.25, 0.0, 0.0, 6.0, 8.0, 0.0, 0.0],
        );
        // The reverse of gather: scatter(gather(a, idx), idx) sums a's rows
        // as often as idx names them.
        let a = t(&dev, &[3, 1, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let picked = dev.gather_rows(&a, &[2, 2, 0]).unwrap();
        check(
            &dev,
            &dev.scatter_add_rows(&picked, &[2, 2, 0], 3).unwrap(),
            &[3, 1, 2],
            &[1.0, 2.0, 0.0, 0.0, 10.0, 12.0],
        );
        let none = dev.from_vec(&[0, 3], vec![]).unwrap();
        check(
            &dev,
            &dev.scatter_add_rows(&none, &[], 2).unwrap(),
            &[2, 3],
            &[0.0; 6],
        );
        assert_eq!(
            dev.scatter_add_rows(&g, &[0, 1, 5, 1], 5)
                .unwrap_err()
                .to_string(),
            "scatter-add-rows: row index 5 is out of range for 5 rows"
        );
        assert_eq!(
            dev.scatter_add_rows(&g, &[0, 1], 5)
                .unwrap_err()
                .to_string(),
            "scatter-add-rows: shape [4, 2] has 4 rows but 2 indices were given"
        );
    }
}
