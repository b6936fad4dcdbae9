//! The N-D ops, the i64 element type, the new maps and the losses against
//! hand-computed values (some checked against PyTorch in float64), with their
//! error cases. As in `ops.rs`, each test is a module with a `cpu` test and a
//! `gpu` test that runs the same body on the wgpu backend (ignored by
//! default: it needs an adapter).

#![allow(
    clippy::excessive_precision,
    reason = "reference values as PyTorch printed them, in float64"
)]

mod common;

use tensorlet_gpu::autodiff::{CrossEntropy, NormStats, Reduction, Tape, Var};
use tensorlet_gpu::{
    BinaryOp, Conv1d, Conv2d, DType, Device, Pool2d, ReduceOp, ScalarOp, Tensor, TensorError,
    UnaryOp, rng,
};

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

fn ti(dev: &Device, shape: &[u32], data: &[i64]) -> Tensor {
    dev.from_i64(shape, data.to_vec()).unwrap()
}

fn range(dev: &Device, shape: &[u32]) -> Tensor {
    let n: u32 = shape.iter().product();
    t(dev, shape, &(0..n).map(|i| i as f32).collect::<Vec<_>>())
}

/// Within 1e-5 relative (of max(|want|, 1)); NaN matches NaN.
fn close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "length: got {got:?}, want {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = g == w || (g - w).abs() <= 1e-5 * w.abs().max(1.0) || (g.is_nan() && w.is_nan());
        assert!(ok, "element {i}: got {g}, want {w} (all: {got:?})");
    }
}

fn check(dev: &Device, t: &Tensor, shape: &[usize], want: &[f32]) {
    assert_eq!(t.shape().dims(), shape, "shape");
    assert_eq!(t.dtype(), DType::F32);
    close(&dev.to_vec(t), want);
}

fn check_i64(dev: &Device, t: &Tensor, shape: &[usize], want: &[i64]) {
    assert_eq!(t.shape().dims(), shape, "shape");
    assert_eq!(t.dtype(), DType::I64);
    assert_eq!(dev.to_i64_vec(t).unwrap(), want);
}

fn err(r: Result<Tensor, TensorError>) -> String {
    r.unwrap_err().to_string()
}

on_each_backend! {
    fn i64_tensors_round_trip_and_convert(dev) {
        let values = [i64::MIN, -(1 << 53) - 1, -1, 0, 1, (1 << 40) + 3, (1 << 24) + 1,
            (1 << 24) + 3, i64::MAX];
        let a = ti(&dev, &[3, 3], &values);
        assert_eq!(a.dtype(), DType::I64);
        assert_eq!(a.byte_len(), 72);
        assert_eq!(dev.to_i64_vec(&a).unwrap(), values);
        // Rounded to nearest, ties to even, as Rust's `as` rounds.
        let f = dev.to_f32(&a);
        assert_eq!(f.dtype(), DType::F32);
        let want: Vec<f32> = values.iter().map(|&x| x as f32).collect();
        assert_eq!(want[6], 16_777_216.0);
        assert_eq!(want[7], 16_777_220.0);
        assert_eq!(dev.to_vec(&f), want);
        // to_vec of an i64 tensor converts too.
        assert_eq!(dev.to_vec(&a), want);

        let x = t(&dev, &[5], &[3.0, -2.0, 1e10, -9.223_372e18, 0.0]);
        let i = dev.to_i64(&x).unwrap();
        check_i64(&dev, &i, &[5], &[3, -2, 10_000_000_000, i64::MIN, 0]);
        // Already i64: the same tensor.
        check_i64(&dev, &dev.to_i64(&i).unwrap(), &[5], &[3, -2, 10_000_000_000, i64::MIN, 0]);
        assert_eq!(dev.to_i64_vec(&x).unwrap(), [3, -2, 10_000_000_000, i64::MIN, 0]);
        for (bad, shown) in [
            (2.5f32, "2.5"),
            (f32::NAN, "NaN"),
            (f32::INFINITY, "inf"),
            (9.223_372e18, "9223372000000000000"),
        ] {
            assert_eq!(
                err(dev.to_i64(&t(&dev, &[1, 3], &[1.0, 7.0, bad]))),
                format!(
                    "to-i64: element 2 of shape [1, 3] is {shown}, which is not an integer in \
                     the range of i64"
                )
            );
        }
        // The first bad element is the one named.
        assert!(err(dev.to_i64(&t(&dev, &[4], &[0.5, 1.0, 0.25, 2.0]))).contains("element 0"));
        assert_eq!(
            err(dev.from_i64(&[2, 2], vec![1, 2, 3])),
            "from-i64: shape [2, 2] needs 4 elements but 3 were given"
        );
        let empty = dev.to_i64(&dev.fill(&[0, 3], 0.0).unwrap()).unwrap();
        check_i64(&dev, &empty, &[0, 3], &[]);
    }
}

on_each_backend! {
    fn arithmetic_refuses_i64(dev) {
        let i = ti(&dev, &[2], &[1, 2]);
        let f = t(&dev, &[2], &[1.0, 2.0]);
        let want = "needs f32 tensors, got an i64 tensor of shape [2]; convert it with to-f32";
        let cases: Vec<(&str, Result<Tensor, TensorError>)> = vec![
            ("add", dev.binary(BinaryOp::Add, &f, &i)),
            ("maximum", dev.binary(BinaryOp::Maximum, &i, &f)),
            ("relu", dev.unary(UnaryOp::Relu, &i)),
            ("mul-scalar", dev.scalar(ScalarOp::Mul, &i, 2.0)),
            ("reduce-sum", dev.reduce(ReduceOp::Sum, &i, 0, false)),
            ("softmax", dev.softmax(&i, 0, false)),
            ("clamp", dev.clamp(&i, 0.0, 1.0)),
            ("cumsum", dev.cumsum(&i, 0, false)),
            ("where", dev.where_(&f, &i, &f)),
            ("one-hot", dev.one_hot(&i, 3)),
        ];
        for (op, r) in cases {
            let e = r.unwrap_err();
            assert!(matches!(e, TensorError::DType { .. }), "{op}: {e:?}");
            assert_eq!(e.to_string(), format!("{op}: {want}"));
        }
        let m = ti(&dev, &[2, 2], &[1, 2, 3, 4]);
        assert_eq!(
            err(dev.matmul(&m, &m)),
            "matmul: needs f32 tensors, got an i64 tensor of shape [2, 2]; convert it with to-f32"
        );
        let img = ti(&dev, &[1, 1, 2, 2], &[1, 2, 3, 4]);
        assert!(matches!(
            dev.max_pool2d(&img, &Pool2d::new([2, 2])).unwrap_err(),
            TensorError::DType { op: "max-pool2d", .. }
        ));
        // Indices must be i64.
        assert_eq!(
            err(dev.index_select(&f, 0, &f)),
            "index-select: indices must be an i64 tensor, got an f32 tensor of shape [2]; \
             convert it with to-i64"
        );
    }
}

on_each_backend! {
    fn permute_any_axes(dev) {
        // a[i][j][k] = 6i + 2j + k, shape [2, 3, 2].
        let a = range(&dev, &[2, 3, 2]);
        // out[k][i][j] = a[i][j][k].
        check(
            &dev,
            &dev.permute(&a, &[2, 0, 1]).unwrap(),
            &[2, 2, 3],
            &[0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 1.0, 3.0, 5.0, 7.0, 9.0, 11.0],
        );
        // out[j][i][k] = a[i][j][k].
        check(
            &dev,
            &dev.permute(&a, &[1, 0, 2]).unwrap(),
            &[3, 2, 2],
            &[0.0, 1.0, 6.0, 7.0, 2.0, 3.0, 8.0, 9.0, 4.0, 5.0, 10.0, 11.0],
        );
        check(&dev, &dev.permute(&a, &[0, 1, 2]).unwrap(), &[2, 3, 2],
            &(0..12).map(|i| i as f32).collect::<Vec<_>>());
        // i64: the words of each element move together.
        let b = ti(&dev, &[2, 2], &[1 << 40, -1, 7, i64::MIN]);
        check_i64(&dev, &dev.permute(&b, &[1, 0]).unwrap(), &[2, 2], &[1 << 40, 7, -1, i64::MIN]);
        check_i64(&dev, &dev.transpose(&b).unwrap(), &[2, 2], &[1 << 40, 7, -1, i64::MIN]);
        assert_eq!(
            err(dev.permute(&a, &[0, 0, 1])),
            "permute: axes [0, 0, 1] are not a permutation of the 3 axes of shape [2, 3, 2]"
        );
        assert!(dev.permute(&a, &[0, 1]).is_err());
        assert!(dev.permute(&a, &[0, 1, 3]).is_err());
    }
}

on_each_backend! {
    fn slice_with_steps(dev) {
        let a = range(&dev, &[2, 5]);
        check(&dev, &dev.slice(&a, 1, 1, 5, 2).unwrap(), &[2, 2], &[1.0, 3.0, 6.0, 8.0]);
        check(&dev, &dev.slice(&a, 1, 0, 5, 3).unwrap(), &[2, 2], &[0.0, 3.0, 5.0, 8.0]);
        check(&dev, &dev.slice(&a, 0, 1, 2, 1).unwrap(), &[1, 5],
            &[5.0, 6.0, 7.0, 8.0, 9.0]);
        check(&dev, &dev.slice(&a, 1, 2, 2, 1).unwrap(), &[2, 0], &[]);
        check(&dev, &dev.slice(&a, 1, 4, 5, 7).unwrap(), &[2, 1], &[4.0, 9.0]);
        let b = ti(&dev, &[5], &[10, -20, 30, -40, 50]);
        check_i64(&dev, &dev.slice(&b, 0, 1, 5, 2).unwrap(), &[2], &[-20, -40]);
        check_i64(&dev, &dev.slice_rows(&b, 3, 5).unwrap(), &[2], &[-40, 50]);
        assert_eq!(err(dev.slice(&a, 1, 0, 5, 0)), "slice: step must be at least 1, got 0");
        assert_eq!(
            err(dev.slice(&a, 1, 2, 6, 1)),
            "slice: range 2..6 is out of range for axis 1 of shape [2, 5] (size 5)"
        );
        assert!(dev.slice(&a, 1, 3, 2, 1).is_err());
        assert!(dev.slice(&a, 2, 0, 1, 1).is_err());
    }
}

on_each_backend! {
    fn concat_many_along_any_axis(dev) {
        let a = range(&dev, &[2, 1]);
        let b = t(&dev, &[2, 2], &[10.0, 11.0, 12.0, 13.0]);
        let c = t(&dev, &[2, 3], &[20.0, 21.0, 22.0, 23.0, 24.0, 25.0]);
        check(
            &dev,
            &dev.concat_many(&[&a, &b, &c], 1).unwrap(),
            &[2, 6],
            &[0.0, 10.0, 11.0, 20.0, 21.0, 22.0, 1.0, 12.0, 13.0, 23.0, 24.0, 25.0],
        );
        let d = t(&dev, &[1, 2], &[7.0, 8.0]);
        check(&dev, &dev.concat_many(&[&d, &b, &d], 0).unwrap(), &[4, 2],
            &[7.0, 8.0, 10.0, 11.0, 12.0, 13.0, 7.0, 8.0]);
        let e = dev.fill(&[2, 0], 0.0).unwrap();
        check(&dev, &dev.concat_many(&[&e, &a, &e], 1).unwrap(), &[2, 1], &[0.0, 1.0]);
        let i = ti(&dev, &[1, 2], &[1, -2]);
        let j = ti(&dev, &[1, 1], &[i64::MAX]);
        check_i64(&dev, &dev.concat_many(&[&i, &j], 1).unwrap(), &[1, 3], &[1, -2, i64::MAX]);
        check_i64(&dev, &dev.concat(&i, &i, 0).unwrap(), &[2, 2], &[1, -2, 1, -2]);
        assert_eq!(
            err(dev.concat_many(&[&d, &i], 0)),
            "concat: tensor 1 is i64 but tensor 0 is f32; all must have one element type"
        );
        assert_eq!(
            err(dev.concat_many(&[&a, &b, &d], 1)),
            "concat: shapes [2, 1] (tensor 0) and [1, 2] (tensor 2) differ outside axis 1"
        );
        assert_eq!(err(dev.concat_many(&[], 0)), "concat: needs at least one tensor");
    }
}

on_each_backend! {
    fn pad_with_a_constant(dev) {
        let a = t(&dev, &[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        check(
            &dev,
            &dev.pad(&a, &[[1, 0], [0, 2]], -1.0).unwrap(),
            &[3, 4],
            &[-1.0, -1.0, -1.0, -1.0, 1.0, 2.0, -1.0, -1.0, 3.0, 4.0, -1.0, -1.0],
        );
        check(&dev, &dev.pad(&a, &[[0, 0], [0, 0]], 5.0).unwrap(), &[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let i = ti(&dev, &[2], &[7, 8]);
        check_i64(&dev, &dev.pad(&i, &[[2, 1]], -100.0).unwrap(), &[5], &[-100, -100, 7, 8, -100]);
        let e = dev.fill(&[0], 0.0).unwrap();
        check(&dev, &dev.pad(&e, &[[1, 1]], 3.0).unwrap(), &[2], &[3.0, 3.0]);
        assert_eq!(
            err(dev.pad(&a, &[[1, 1]], 0.0)),
            "pad: needs one [before, after] pair per axis: shape [2, 2] has 2 axes, 1 pairs were \
             given"
        );
        assert_eq!(
            err(dev.pad(&i, &[[1, 1]], 0.5)),
            "pad: an i64 tensor needs an integer value (|v| <= 2^53), got 0.5"
        );
    }
}

on_each_backend! {
    fn reshapes_and_broadcast_to(dev) {
        let a = range(&dev, &[2, 1, 3]);
        check(&dev, &dev.flatten(&a, 1, 2).unwrap(), &[2, 3],
            &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        check(&dev, &dev.flatten(&a, 0, 2).unwrap(), &[6],
            &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        check(&dev, &dev.squeeze(&a, 1).unwrap(), &[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        check(&dev, &dev.unsqueeze(&a, 3).unwrap(), &[2, 1, 3, 1],
            &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let i = ti(&dev, &[3], &[4, 5, 6]);
        check_i64(&dev, &dev.unsqueeze(&i, 0).unwrap(), &[1, 3], &[4, 5, 6]);
        assert_eq!(
            err(dev.squeeze(&a, 2)),
            "squeeze: axis 2 of shape [2, 1, 3] has size 3, not 1"
        );
        assert!(dev.unsqueeze(&a, 4).is_err());
        assert!(dev.flatten(&a, 2, 1).is_err());
        assert!(dev.flatten(&a, 0, 3).is_err());
        let row = t(&dev, &[3], &[1.0, 2.0, 3.0]);
        check(&dev, &dev.broadcast_to(&row, &[2, 3]).unwrap(), &[2, 3],
            &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
        let col = t(&dev, &[2, 1], &[1.0, 2.0]);
        check(&dev, &dev.broadcast_to(&col, &[2, 2, 3]).unwrap(), &[2, 2, 3],
            &[1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
        check_i64(&dev, &dev.broadcast_to(&i, &[2, 3]).unwrap(), &[2, 3], &[4, 5, 6, 4, 5, 6]);
        assert_eq!(
            err(dev.broadcast_to(&row, &[3, 2])),
            "broadcast-to: shape [3] does not broadcast to [3, 2]"
        );
    }
}

on_each_backend! {
    fn index_select_embedding_and_gather(dev) {
        let a = range(&dev, &[2, 3]);
        let idx = ti(&dev, &[2, 2], &[2, 0, 1, 2]);
        // Along axis 1 with 2-D indices: [2, 2, 2].
        check(
            &dev,
            &dev.index_select(&a, 1, &idx).unwrap(),
            &[2, 2, 2],
            &[2.0, 0.0, 1.0, 2.0, 5.0, 3.0, 4.0, 5.0],
        );
        check(&dev, &dev.index_select(&a, 0, &ti(&dev, &[3], &[1, 1, 0])).unwrap(), &[3, 3],
            &[3.0, 4.0, 5.0, 3.0, 4.0, 5.0, 0.0, 1.0, 2.0]);
        let table = t(&dev, &[4, 2], &[0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]);
        check(
            &dev,
            &dev.embedding(&table, &ti(&dev, &[2, 2], &[3, 0, 1, 1])).unwrap(),
            &[2, 2, 2],
            &[3.0, 3.5, 0.0, 0.5, 1.0, 1.5, 1.0, 1.5],
        );
        // An i64 table.
        let ids = ti(&dev, &[3], &[-5, 1 << 33, 9]);
        check_i64(&dev, &dev.index_select(&ids, 0, &ti(&dev, &[2], &[2, 1])).unwrap(), &[2],
            &[9, 1 << 33]);
        // torch.gather's example: out[i][j] = a[i][idx[i][j]].
        let g = t(&dev, &[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        check(&dev, &dev.gather(&g, 1, &ti(&dev, &[2, 2], &[0, 0, 1, 0])).unwrap(), &[2, 2],
            &[1.0, 1.0, 4.0, 3.0]);
        // Along axis 0, indices smaller than the tensor on the other axis.
        check(&dev, &dev.gather(&a, 0, &ti(&dev, &[3, 2], &[1, 0, 0, 1, 1, 1])).unwrap(),
            &[3, 2], &[3.0, 1.0, 0.0, 4.0, 3.0, 4.0]);
        check_i64(&dev, &dev.gather(&ids, 0, &ti(&dev, &[2], &[0, 0])).unwrap(), &[2], &[-5, -5]);
        check_i64(&dev, &dev.gather_rows(&ids, &[2, 0]).unwrap(), &[2], &[9, -5]);
        assert_eq!(
            err(dev.embedding(&table, &ti(&dev, &[3], &[0, 1, 4]))),
            "embedding: index 4 (element 2 of the indices) is out of range for axis 0 of shape \
             [4, 2] (size 4)"
        );
        assert_eq!(
            err(dev.index_select(&a, 1, &ti(&dev, &[2], &[0, -1]))),
            "index-select: index -1 (element 1 of the indices) is out of range for axis 1 of \
             shape [2, 3] (size 3)"
        );
        assert_eq!(
            err(dev.embedding(&range(&dev, &[4]), &ti(&dev, &[1], &[0]))),
            "embedding: needs a 2-D table [rows, dim], got shape [4]"
        );
        assert_eq!(
            err(dev.gather(&a, 1, &ti(&dev, &[2], &[0, 1]))),
            "gather: indices of shape [2] have rank 1 but the tensor (shape [2, 3]) has rank 2"
        );
        assert_eq!(
            err(dev.gather(&a, 1, &ti(&dev, &[3, 1], &[0, 1, 2]))),
            "gather: indices of shape [3, 1] are larger than the tensor (shape [2, 3]) along \
             axis 0, which is not the gathered axis 1"
        );
        assert!(dev.gather(&a, 1, &ti(&dev, &[1, 1], &[3])).is_err());
    }
}

on_each_backend! {
    fn scatter_add_and_index_add_reverse_the_gathers(dev) {
        let src = t(&dev, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let idx = ti(&dev, &[2, 3], &[0, 2, 0, 1, 1, 1]);
        // Row 0: 1 and 3 to column 0, 2 to column 2; row 1: all to column 1.
        check(&dev, &dev.scatter_add(&[2, 4], 1, &idx, &src).unwrap(), &[2, 4],
            &[4.0, 0.0, 2.0, 0.0, 0.0, 15.0, 0.0, 0.0]);
        // Along axis 0 into a larger result.
        check(&dev, &dev.scatter_add(&[3, 3], 0, &ti(&dev, &[2, 3], &[2, 0, 2, 2, 2, 0]), &src)
            .unwrap(), &[3, 3], &[0.0, 2.0, 6.0, 0.0, 0.0, 0.0, 5.0, 5.0, 3.0]);
        // index_add with a repeated index sums the slices.
        let g = t(&dev, &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        check(&dev, &dev.index_add(&[4, 2], 0, &ti(&dev, &[3], &[3, 0, 3]), &g).unwrap(),
            &[4, 2], &[3.0, 4.0, 0.0, 0.0, 0.0, 0.0, 6.0, 8.0]);
        // Along axis 1 with 2-D indices (the reverse of index_select above).
        let h = t(&dev, &[1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
        check(&dev, &dev.index_add(&[1, 3], 1, &ti(&dev, &[2, 2], &[2, 0, 2, 2]), &h).unwrap(),
            &[1, 3], &[2.0, 0.0, 8.0]);
        assert_eq!(
            err(dev.scatter_add(&[2, 4], 1, &ti(&dev, &[2, 2], &[0, 1, 2, 3]), &src)),
            "scatter-add: values of shape [2, 3] and indices of shape [2, 2] differ"
        );
        assert_eq!(
            err(dev.scatter_add(&[2, 2], 1, &idx, &src)),
            "scatter-add: index 2 (element 1 of the indices) is out of range for axis 1 of shape \
             [2, 2] (size 2)"
        );
        assert_eq!(
            err(dev.index_add(&[4, 2], 0, &ti(&dev, &[2], &[0, 1]), &g)),
            "index-add: values of shape [3, 2] do not fit: indices [2] along axis 0 of [4, 2] \
             need values of shape [2, 2]"
        );
    }
}

on_each_backend! {
    fn batched_matmul_broadcasts_batches(dev) {
        // [2, 2, 2] x [2, 1]: each batch times the same column.
        let a = t(&dev, &[2, 2, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        let b = t(&dev, &[2, 1], &[1.0, -1.0]);
        check(&dev, &dev.matmul(&a, &b).unwrap(), &[2, 2, 1], &[-1.0, -1.0, -1.0, -1.0]);
        // [2, 1, 1, 2] x [3, 2, 1]: batches [2, 1] and [3] broadcast to [2, 3].
        let x = t(&dev, &[2, 1, 1, 2], &[1.0, 2.0, 3.0, 4.0]);
        let y = t(&dev, &[3, 2, 1], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        check(&dev, &dev.matmul(&x, &y).unwrap(), &[2, 3, 1, 1],
            &[1.0, 2.0, 3.0, 3.0, 4.0, 7.0]);
        // Transposed operands without copies: aᵀ · b and a · bᵀ.
        let p = t(&dev, &[1, 3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let q = t(&dev, &[3, 1], &[1.0, 0.0, -1.0]);
        check(&dev, &dev.matmul_transposed(&p, true, &q, false).unwrap(), &[1, 2, 1],
            &[-4.0, -4.0]);
        let r = t(&dev, &[2, 2], &[1.0, 1.0, 0.0, 2.0]);
        check(&dev, &dev.matmul_transposed(&p, false, &r, true).unwrap(), &[1, 3, 2],
            &[3.0, 4.0, 7.0, 8.0, 11.0, 12.0]);
        // 2-D with transposes.
        let m = t(&dev, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        check(&dev, &dev.matmul_transposed(&m, true, &m, false).unwrap(), &[3, 3],
            &[17.0, 22.0, 27.0, 22.0, 29.0, 36.0, 27.0, 36.0, 45.0]);
        // Empty batch and empty depth.
        let e = dev.matmul(&dev.fill(&[0, 2, 3], 0.0).unwrap(), &dev.fill(&[3, 2], 1.0).unwrap());
        assert_eq!(e.unwrap().shape().dims(), [0, 2, 2]);
        check(&dev, &dev.matmul(&dev.fill(&[2, 1, 0], 1.0).unwrap(),
            &dev.fill(&[0, 2], 1.0).unwrap()).unwrap(), &[2, 1, 2], &[0.0; 4]);
        assert_eq!(
            err(dev.matmul(&t(&dev, &[3], &[1.0, 2.0, 3.0]), &m)),
            "matmul: needs tensors of at least 2 dimensions ([..., m, k] and [..., k, n]), got \
             shapes [3] and [2, 3]"
        );
        assert_eq!(
            err(dev.matmul(&a, &t(&dev, &[3, 1], &[1.0, 2.0, 3.0]))),
            "matmul: shapes [2, 2, 2] and [3, 1] are incompatible: inner dimensions 2 and 3 differ"
        );
        assert_eq!(
            err(dev.matmul(&a, &dev.fill(&[3, 2, 2], 0.0).unwrap())),
            "matmul: batch dimensions [2] and [3] of shapes [2, 2, 2] and [3, 2, 2] do not \
             broadcast"
        );
    }
}

on_each_backend! {
    fn clamp_where_and_masked_fill(dev) {
        let a = t(&dev, &[5], &[-2.0, -0.5, 0.0, 0.5, 3.0]);
        check(&dev, &dev.clamp(&a, -1.0, 0.5).unwrap(), &[5], &[-1.0, -0.5, 0.0, 0.5, 0.5]);
        assert_eq!(err(dev.clamp(&a, 1.0, 0.0)), "clamp: bounds 1 and 0 need lo <= hi");
        // where: condition [2, 1], a [3], b scalar.
        let cond = t(&dev, &[2, 1], &[1.0, 0.0]);
        let x = t(&dev, &[3], &[1.0, 2.0, 3.0]);
        let y = t(&dev, &[], &[-7.0]);
        check(&dev, &dev.where_(&cond, &x, &y).unwrap(), &[2, 3],
            &[1.0, 2.0, 3.0, -7.0, -7.0, -7.0]);
        // Any non-zero condition is true.
        let c2 = t(&dev, &[3], &[0.5, -1.0, 0.0]);
        check(&dev, &dev.where_(&c2, &x, &y).unwrap(), &[3], &[1.0, 2.0, -7.0]);
        assert_eq!(
            err(dev.where_(&t(&dev, &[2], &[1.0, 0.0]), &x, &y)),
            "where: shapes [2] (condition), [3] and [] do not broadcast"
        );
        // A causal mask: 1 above the diagonal.
        let scores = range(&dev, &[3, 3]);
        let mask = t(&dev, &[3, 3], &[0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        let masked = dev.masked_fill(&scores, &mask, -1e9).unwrap();
        check(&dev, &masked, &[3, 3], &[0.0, -1e9, -1e9, 3.0, 4.0, -1e9, 6.0, 7.0, 8.0]);
        let p = dev.softmax(&masked, 1, false).unwrap();
        let row1 = [1.0 / (1.0 + (-1.0f32).exp()), 0.0];
        let got = dev.to_vec(&p);
        close(&got[..3], &[1.0, 0.0, 0.0]);
        close(&got[4..6], &[row1[0], row1[1]]);
        // A row mask broadcasts over the rows.
        check(&dev, &dev.masked_fill(&scores, &t(&dev, &[3], &[1.0, 0.0, 0.0]), 9.0).unwrap(),
            &[3, 3], &[9.0, 1.0, 2.0, 9.0, 4.0, 5.0, 9.0, 7.0, 8.0]);
        assert_eq!(
            err(dev.masked_fill(&x, &scores, 0.0)),
            "masked-fill: mask of shape [3, 3] does not broadcast to the tensor's shape [3]"
        );
    }
}

on_each_backend! {
    fn activations(dev) {
        let x = t(&dev, &[6], &[-3.0, -1.0, 0.0, 0.5, 2.0, 30.0]);
        // PyTorch, float64.
        let cases: [(UnaryOp, [f32; 6]); 4] = [
            (UnaryOp::Gelu, [-0.004_049_694, -0.158_655_25, 0.0, 0.345_731_23, 1.954_499_7, 30.0]),
            (UnaryOp::GeluTanh,
                [-0.003_637_392, -0.158_808_01, 0.0, 0.345_714_01, 1.954_597_7, 30.0]),
            (UnaryOp::Silu, [-0.142_277_62, -0.268_941_42, 0.0, 0.311_229_66, 1.761_594_2, 30.0]),
            (UnaryOp::Softplus,
                [0.048_587_352, 0.313_261_7, std::f32::consts::LN_2, 0.974_077, 2.126_928, 30.0]),
        ];
        for (op, want) in cases {
            let got = dev.to_vec(&dev.unary(op, &x).unwrap());
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                // erf and exp in f32: a few ulps, absolute near zero.
                assert!((g - w).abs() <= 2e-6 * w.abs().max(1.0), "{op:?}[{i}]: {g} vs {w}");
            }
        }
        // The derivative maps, against central differences of the maps.
        let pts = [-2.5f32, -0.7, 0.0, 0.3, 1.9];
        let xs = t(&dev, &[5], &pts);
        for (op, grad) in [
            (UnaryOp::Gelu, UnaryOp::GeluGrad),
            (UnaryOp::GeluTanh, UnaryOp::GeluTanhGrad),
            (UnaryOp::Silu, UnaryOp::SiluGrad),
        ] {
            let d = dev.to_vec(&dev.unary(grad, &xs).unwrap());
            let h = 1e-2f32;
            let up = dev.to_vec(&dev.unary(op, &t(&dev, &[5], &pts.map(|p| p + h))).unwrap());
            let down = dev.to_vec(&dev.unary(op, &t(&dev, &[5], &pts.map(|p| p - h))).unwrap());
            for i in 0..5 {
                let numeric = (up[i] - down[i]) / (2.0 * h);
                assert!((d[i] - numeric).abs() < 2e-3, "{grad:?}[{i}]: {} vs {numeric}", d[i]);
            }
        }
    }
}

on_each_backend! {
    fn scalar_and_binary_extras(dev) {
        let x = t(&dev, &[5], &[-2.0, -0.5, 0.0, 1.5, 4.0]);
        check(&dev, &dev.scalar(ScalarOp::Pow, &x, 2.0).unwrap(), &[5],
            &[4.0, 0.25, 0.0, 2.25, 16.0]);
        check(&dev, &dev.scalar(ScalarOp::Pow, &x, 3.0).unwrap(), &[5],
            &[-8.0, -0.125, 0.0, 3.375, 64.0]);
        check(&dev, &dev.scalar(ScalarOp::Pow, &x, 0.0).unwrap(), &[5], &[1.0; 5]);
        check(&dev, &dev.scalar(ScalarOp::Pow, &x, 0.5).unwrap(), &[5],
            &[f32::NAN, f32::NAN, 0.0, 1.224_744_9, 2.0]);
        check(&dev, &dev.scalar(ScalarOp::Pow, &x, -1.0).unwrap(), &[5],
            &[-0.5, -2.0, f32::INFINITY, 0.666_666_7, 0.25]);
        check(&dev, &dev.scalar(ScalarOp::Max, &x, 0.0).unwrap(), &[5],
            &[0.0, 0.0, 0.0, 1.5, 4.0]);
        check(&dev, &dev.scalar(ScalarOp::Min, &x, 1.0).unwrap(), &[5],
            &[-2.0, -0.5, 0.0, 1.0, 1.0]);
        check(&dev, &dev.scalar(ScalarOp::LeakyRelu, &x, 0.1).unwrap(), &[5],
            &[-0.2, -0.05, 0.0, 1.5, 4.0]);
        // Broadcasting binary ops: [2, 1] against [3].
        let a = t(&dev, &[2, 1], &[1.0, 2.0]);
        let b = t(&dev, &[3], &[0.5, 1.0, 3.0]);
        let cases: [(BinaryOp, [f32; 6]); 9] = [
            (BinaryOp::Maximum, [1.0, 1.0, 3.0, 2.0, 2.0, 3.0]),
            (BinaryOp::Minimum, [0.5, 1.0, 1.0, 0.5, 1.0, 2.0]),
            (BinaryOp::Pow, [1.0, 1.0, 1.0, std::f32::consts::SQRT_2, 2.0, 8.0]),
            (BinaryOp::Eq, [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]),
            (BinaryOp::Ne, [1.0, 0.0, 1.0, 1.0, 1.0, 1.0]),
            (BinaryOp::Lt, [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]),
            (BinaryOp::Le, [0.0, 1.0, 1.0, 0.0, 0.0, 1.0]),
            (BinaryOp::Gt, [1.0, 0.0, 0.0, 1.0, 1.0, 0.0]),
            (BinaryOp::Ge, [1.0, 1.0, 0.0, 1.0, 1.0, 0.0]),
        ];
        for (op, want) in cases {
            let got = dev.binary(op, &a, &b).unwrap();
            check(&dev, &got, &[2, 3], &want);
        }
        check(&dev, &dev.binary(BinaryOp::Pow, &t(&dev, &[2], &[-2.0, -2.0]),
            &t(&dev, &[2], &[3.0, 2.0])).unwrap(), &[2], &[-8.0, 4.0]);
        assert_eq!(
            err(dev.binary(BinaryOp::Lt, &b, &t(&dev, &[2], &[0.0; 2]))),
            "lt: shapes [3] and [2] do not broadcast"
        );
    }
}

on_each_backend! {
    fn cumsum_both_ways(dev) {
        let a = range(&dev, &[2, 3]);
        check(&dev, &dev.cumsum(&a, 1, false).unwrap(), &[2, 3],
            &[0.0, 1.0, 3.0, 3.0, 7.0, 12.0]);
        check(&dev, &dev.cumsum(&a, 1, true).unwrap(), &[2, 3],
            &[3.0, 3.0, 2.0, 12.0, 9.0, 5.0]);
        check(&dev, &dev.cumsum(&a, 0, false).unwrap(), &[2, 3],
            &[0.0, 1.0, 2.0, 3.0, 5.0, 7.0]);
        check(&dev, &dev.cumsum(&a, 0, true).unwrap(), &[2, 3],
            &[3.0, 5.0, 7.0, 3.0, 4.0, 5.0]);
        assert!(dev.cumsum(&a, 2, false).is_err());
    }
}

on_each_backend! {
    fn dropout_masks_follow_the_generator(dev) {
        let p = 0.3f32;
        let mask = dev.dropout_mask(&[10, 30], p, 77).unwrap();
        let got = dev.to_vec(&mask);
        let scale = 1.0 / (1.0 - p);
        // Element i keeps (times 1/(1-p)) exactly where the uniform sample
        // for element i is at least p: the same on every backend.
        let want: Vec<f32> = (0..300u32)
            .map(|i| if rng::unit(77, 2 * i) >= p { scale } else { 0.0 })
            .collect();
        assert_eq!(got, want);
        let kept = got.iter().filter(|&&x| x > 0.0).count();
        assert!((150..270).contains(&kept), "{kept} of 300 kept");
        assert_ne!(dev.to_vec(&dev.dropout_mask(&[10, 30], p, 78).unwrap()), got);
        let x = dev.fill(&[10, 30], 2.0).unwrap();
        let y = dev.to_vec(&dev.dropout(&x, p, 77).unwrap());
        assert_eq!(y, want.iter().map(|m| 2.0 * m).collect::<Vec<_>>());
        assert_eq!(dev.to_vec(&dev.dropout_mask(&[4], 0.0, 1).unwrap()), vec![1.0; 4]);
        assert_eq!(dev.to_vec(&dev.dropout_mask(&[4], 1.0, 1).unwrap()), vec![0.0; 4]);
        assert_eq!(err(dev.dropout_mask(&[4], 1.5, 1)), "dropout: probability 1.5 is not in 0..=1");
    }
}

on_each_backend! {
    fn conv2d_hand_computed(dev) {
        let x = t(&dev, &[1, 1, 4, 4], &(1..=16).map(|i| i as f32).collect::<Vec<_>>());
        let w = t(&dev, &[1, 1, 2, 2], &[1.0, 2.0, 0.0, -1.0]);
        // y[i][j] = x[i][j] + 2 x[i][j+1] - x[i+1][j+1] (PyTorch's values).
        check(&dev, &dev.conv2d(&x, &w, None, &Conv2d::default()).unwrap(), &[1, 1, 3, 3],
            &[-1.0, 1.0, 3.0, 7.0, 9.0, 11.0, 15.0, 17.0, 19.0]);
        let p = Conv2d { padding: [1, 1], stride: [2, 2], ..Conv2d::default() };
        check(&dev, &dev.conv2d(&x, &w, None, &p).unwrap(), &[1, 1, 3, 3],
            &[-1.0, -3.0, 0.0, 1.0, 9.0, 8.0, 26.0, 44.0, 16.0]);
        let d = Conv2d { dilation: [2, 2], ..Conv2d::default() };
        check(&dev, &dev.conv2d(&x, &w, None, &d).unwrap(), &[1, 1, 2, 2],
            &[-4.0, -2.0, 4.0, 6.0]);
        // Two groups of one channel each (depthwise), with a bias.
        let x2 = t(&dev, &[1, 2, 3, 3], &(1..=18).map(|i| i as f32).collect::<Vec<_>>());
        let wg = t(&dev, &[2, 1, 2, 2], &[1.0, 1.0, 1.0, 1.0, 0.0, 1.0, -1.0, 0.0]);
        let bias = t(&dev, &[2], &[0.5, -1.0]);
        let g = Conv2d { groups: 2, ..Conv2d::default() };
        check(&dev, &dev.conv2d(&x2, &wg, Some(&bias), &g).unwrap(), &[1, 2, 2, 2],
            &[12.5, 16.5, 24.5, 28.5, -3.0, -3.0, -3.0, -3.0]);
        // Two images give each its own output.
        let xx = dev.concat(&x, &dev.scalar(ScalarOp::Mul, &x, -1.0).unwrap(), 0).unwrap();
        let y = dev.to_vec(&dev.conv2d(&xx, &w, None, &Conv2d::default()).unwrap());
        close(&y[9..], &[1.0, -1.0, -3.0, -7.0, -9.0, -11.0, -15.0, -17.0, -19.0]);

        let e = |p: Conv2d, x: &Tensor, w: &Tensor| err(dev.conv2d(x, w, None, &p));
        assert_eq!(
            e(Conv2d { stride: [0, 1], ..Conv2d::default() }, &x, &w),
            "conv2d: stride must be at least 1, got [0, 1]"
        );
        assert_eq!(
            e(Conv2d { dilation: [1, 0], ..Conv2d::default() }, &x, &w),
            "conv2d: dilation must be at least 1, got [1, 0]"
        );
        let big = dev.fill(&[1, 1, 5, 2], 0.0).unwrap();
        assert_eq!(
            e(Conv2d::default(), &x, &big),
            "conv2d: kernel size 5 along height is larger than the padded input (4 + 2·0 = 4)"
        );
        assert_eq!(
            e(Conv2d { dilation: [1, 4], ..Conv2d::default() }, &x, &w),
            "conv2d: kernel size 2 (dilated: 5) along width is larger than the padded input \
             (4 + 2·0 = 4)"
        );
        // Padding makes room: the same kernel fits with one column each side.
        assert!(dev.conv2d(&x, &w, None, &Conv2d { dilation: [1, 4], padding: [0, 1],
            ..Conv2d::default() }).is_ok());
        assert_eq!(
            e(Conv2d { groups: 2, ..Conv2d::default() }, &x, &w),
            "conv2d: 2 groups must divide the input channels (1) and the output channels (1)"
        );
        assert_eq!(
            e(Conv2d::default(), &x2, &w),
            "conv2d: weights of shape [1, 1, 2, 2] take 1 channels per group, but input of shape \
             [1, 2, 3, 3] in 1 group(s) has 2 per group"
        );
        assert_eq!(
            e(Conv2d::default(), &range(&dev, &[4, 4]), &w),
            "conv2d: needs input [batch, channels, height, width], got shape [4, 4]"
        );
        assert_eq!(
            err(dev.conv2d(&x, &w, Some(&bias), &Conv2d::default())),
            "conv2d: bias of shape [2] does not fit 1 output channels"
        );
        assert_eq!(
            e(Conv2d { padding: [1 << 30, 0], ..Conv2d::default() }, &x, &w),
            "conv2d: the padded input (4 + 2·1073741824) or the kernel's span (2) along height \
             is more than 2147483647"
        );
        // No input channels: only the bias; no images: an empty result.
        let none = dev.fill(&[2, 0, 3, 3], 1.0).unwrap();
        check(&dev, &dev.conv2d(&none, &dev.fill(&[2, 0, 2, 2], 1.0).unwrap(), Some(&bias),
            &Conv2d::default()).unwrap(), &[2, 2, 2, 2], &[
            0.5, 0.5, 0.5, 0.5, -1.0, -1.0, -1.0, -1.0, 0.5, 0.5, 0.5, 0.5, -1.0, -1.0, -1.0, -1.0,
        ]);
        let empty = dev.conv2d(&dev.fill(&[0, 1, 4, 4], 1.0).unwrap(), &w, None,
            &Conv2d::default()).unwrap();
        check(&dev, &empty, &[0, 1, 3, 3], &[]);
    }
}

on_each_backend! {
    fn conv1d_hand_computed(dev) {
        let x = t(&dev, &[1, 2, 5], &[1.0, 2.0, 3.0, 4.0, 5.0, 0.0, 1.0, 0.0, -1.0, 2.0]);
        let w = t(&dev, &[1, 2, 3], &[1.0, -1.0, 2.0, 0.5, 0.0, 1.0]);
        let p = Conv1d { padding: 1, stride: 2, ..Conv1d::default() };
        check(&dev, &dev.conv1d(&x, &w, None, &p).unwrap(), &[1, 1, 3], &[4.0, 6.5, -1.5]);
        check(&dev, &dev.conv1d(&x, &w, Some(&t(&dev, &[1], &[1.0])), &Conv1d::default())
            .unwrap(), &[1, 1, 3], &[6.0, 7.5, 12.0]);
        assert_eq!(
            err(dev.conv1d(&x, &dev.fill(&[1, 2, 6], 0.0).unwrap(), None, &Conv1d::default())),
            "conv1d: kernel size 6 along length is larger than the padded input (5 + 2·0 = 5)"
        );
        assert_eq!(
            err(dev.conv1d(&x, &w, None, &Conv1d { stride: 0, ..Conv1d::default() })),
            "conv1d: stride must be at least 1, got [1, 0]"
        );
        assert_eq!(
            err(dev.conv1d(&range(&dev, &[2, 5]), &w, None, &Conv1d::default())),
            "conv1d: needs input [batch, channels, length], got shape [2, 5]"
        );
    }
}

on_each_backend! {
    fn pooling(dev) {
        let x = range(&dev, &[1, 1, 4, 4]);
        let p = Pool2d::new([2, 2]);
        check(&dev, &dev.max_pool2d(&x, &p).unwrap(), &[1, 1, 2, 2], &[5.0, 7.0, 13.0, 15.0]);
        check(&dev, &dev.avg_pool2d(&x, &p).unwrap(), &[1, 1, 2, 2], &[2.5, 4.5, 10.5, 12.5]);
        let q = Pool2d { kernel: [3, 3], stride: [2, 2], padding: [1, 1] };
        let (v, i) = dev.max_pool2d_with_indices(&x, &q).unwrap();
        check(&dev, &v, &[1, 1, 2, 2], &[5.0, 7.0, 13.0, 15.0]);
        check_i64(&dev, &i, &[1, 1, 2, 2], &[5, 7, 13, 15]);
        // Padding counts as zeros: the corner window holds 0, 1, 4, 5 of 9.
        check(&dev, &dev.avg_pool2d(&x, &q).unwrap(), &[1, 1, 2, 2],
            &[10.0 / 9.0, 24.0 / 9.0, 51.0 / 9.0, 10.0]);
        // Ties go to the first element of the window; negatives beat padding.
        let n = t(&dev, &[1, 1, 2, 2], &[-3.0, -1.0, -1.0, -2.0]);
        let (v, i) = dev.max_pool2d_with_indices(&n, &Pool2d { kernel: [2, 2], stride: [1, 1],
            padding: [1, 1] }).unwrap();
        check(&dev, &v, &[1, 1, 3, 3], &[-3.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -2.0]);
        check_i64(&dev, &i, &[1, 1, 3, 3], &[0, 1, 1, 2, 1, 1, 2, 2, 3]);
        let two = t(&dev, &[2, 1, 1, 2], &[1.0, 3.0, -2.0, 6.0]);
        check(&dev, &dev.global_avg_pool(&two).unwrap(), &[2, 1], &[2.0, 2.0]);
        assert_eq!(
            err(dev.max_pool2d(&x, &Pool2d { kernel: [2, 2], stride: [2, 2], padding: [2, 0] })),
            "max-pool2d: padding [2, 0] is more than half the kernel [2, 2]"
        );
        assert_eq!(
            err(dev.avg_pool2d(&x, &Pool2d::new([5, 1]))),
            "avg-pool2d: kernel size 5 along height is larger than the padded input (4 + 2·0 = 4)"
        );
        assert_eq!(
            err(dev.avg_pool2d(&x, &Pool2d { kernel: [2, 2], stride: [1, 0], padding: [0, 0] })),
            "avg-pool2d: stride must be at least 1, got [1, 0]"
        );
        assert_eq!(
            err(dev.global_avg_pool(&range(&dev, &[2, 3]))),
            "global-avg-pool: needs input [batch, channels, positions...] of rank 3 or more, got \
             shape [2, 3]"
        );
    }
}

on_each_backend! {
    fn normalizations(dev) {
        let x = t(&dev, &[2, 3], &[1.0, 2.0, 4.0, -1.0, 0.0, 3.0]);
        let w = t(&dev, &[3], &[1.0, 2.0, 0.5]);
        let b = t(&dev, &[3], &[0.0, 1.0, -1.0]);
        check(&dev, &dev.layer_norm(&x, 1, Some(&w), Some(&b), 1e-5).unwrap(), &[2, 3], &[
            -1.069_041_5, 0.465_479_23, -0.331_849_04, -0.980_578_98, 0.215_536_82,
            -0.313_594_72,
        ]);
        // Over both dimensions, no affine: mean 1.5, and unit variance after.
        let all = dev.to_vec(&dev.layer_norm(&x, 2, None, None, 0.0).unwrap());
        let mean: f32 = all.iter().sum::<f32>() / 6.0;
        let var: f32 = all.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 6.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "{mean} {var}");
        assert_eq!(
            err(dev.layer_norm(&x, 1, Some(&x), None, 1e-5)),
            "layer-norm: weight of shape [2, 3] does not fit: it needs shape [3]"
        );
        assert!(dev.layer_norm(&x, 3, None, None, 1e-5).is_err());
        assert!(dev.layer_norm(&x, 1, None, None, -1.0).is_err());

        // Batch norm over [2, 2, 2] (batch, channel, position).
        let xb = t(&dev, &[2, 2, 2], &[1.0, 2.0, 3.0, 5.0, 0.0, 4.0, -1.0, 1.0]);
        let stats = NormStats::new(&dev, 2).unwrap();
        let (y, next) = dev
            .batch_norm(&xb, Some(&t(&dev, &[2], &[2.0, 1.0])), Some(&t(&dev, &[2], &[0.0, 0.5])),
                &stats, true, 0.1, 1e-5)
            .unwrap();
        check(&dev, &y, &[2, 2, 2], &[
            -1.014_182_8, 0.338_060_93, 0.947_213_1, 1.841_639_4, -2.366_426_5, 3.042_548_4,
            -0.841_639_4, 0.052_786_85,
        ]);
        check(&dev, &next.mean, &[2], &[0.175, 0.2]);
        check(&dev, &next.var, &[2], &[1.191_666_7, 1.566_666_7]);
        let running = NormStats {
            mean: t(&dev, &[2], &[1.0, 2.0]),
            var: t(&dev, &[2], &[4.0, 0.25]),
        };
        let (y, same) = dev.batch_norm(&xb, None, None, &running, false, 0.1, 1e-5).unwrap();
        check(&dev, &y, &[2, 2, 2], &[
            0.0, 0.499_999_38, 1.999_960_0, 5.999_88, -0.499_999_38, 1.499_998_1, -5.999_88,
            -1.999_960_0,
        ]);
        check(&dev, &same.mean, &[2], &[1.0, 2.0]);
        assert_eq!(
            dev.batch_norm(&t(&dev, &[1, 2], &[1.0, 2.0]), None, None, &stats, true, 0.1, 1e-5)
                .unwrap_err()
                .to_string(),
            "batch-norm: training needs more than one value per channel, got shape [1, 2]"
        );
        assert_eq!(
            dev.batch_norm(&xb, None, None, &NormStats::new(&dev, 3).unwrap(), false, 0.1, 1e-5)
                .unwrap_err()
                .to_string(),
            "batch-norm: running mean of shape [3] does not fit 2 channels"
        );
    }
}

fn loss(dev: &Device, f: impl FnOnce(&mut Tape) -> Result<Var, TensorError>) -> Vec<f32> {
    let mut tape = Tape::new(dev.clone());
    dev.to_vec(f(&mut tape).unwrap().value())
}

on_each_backend! {
    fn losses(dev) {
        let c = |t: Tensor| Var::constant(t);
        let logits = c(t(&dev, &[4, 3], &[1.0, 2.0, 0.5, 0.0, -1.0, 3.0, 2.0, 2.0, 2.0,
            0.3, 0.1, -0.2]));
        let labels = c(ti(&dev, &[4], &[1, 2, 0, 2]));
        let weights = t(&dev, &[3], &[1.0, 2.0, 0.5]);
        let ce = |opts: CrossEntropy<'_>, target: &Var| {
            loss(&dev, |tape| tape.cross_entropy_with(&logits, target, &opts))
        };
        // PyTorch, float64.
        close(&ce(CrossEntropy::default(), &labels), &[0.753_701_07]);
        close(&ce(CrossEntropy { weights: Some(&weights), ..Default::default() }, &labels),
            &[0.688_315_37]);
        close(&ce(CrossEntropy { weights: Some(&weights), label_smoothing: 0.2,
            ..Default::default() }, &labels), &[0.920_682_54]);
        let ignored = c(ti(&dev, &[4], &[1, -100, 0, 2]));
        close(&ce(CrossEntropy { ignore_index: Some(-100), label_smoothing: 0.1,
            ..Default::default() }, &ignored), &[1.001_862_4]);
        close(&ce(CrossEntropy { reduction: Reduction::None, ..Default::default() }, &labels),
            &[0.464_368_78, 0.065_883_9, 1.098_612_3, 1.385_939_3]);
        close(&ce(CrossEntropy { reduction: Reduction::Sum, label_smoothing: 0.3,
            ..Default::default() }, &labels), &[3.884_804_3]);
        // f32 class indices work the same.
        close(&ce(CrossEntropy::default(), &c(t(&dev, &[4], &[1.0, 2.0, 0.0, 2.0]))),
            &[0.753_701_07]);
        // Class probabilities.
        let probs = dev.softmax(&t(&dev, &[4, 3], &[0.0, 1.0, 2.0, 1.0, 1.0, 1.0, 3.0, 0.0, 0.0,
            0.0, 0.0, 1.0]), 1, false).unwrap();
        close(&ce(CrossEntropy { weights: Some(&weights), label_smoothing: 0.1,
            ..Default::default() }, &c(probs)), &[1.743_554_4]);
        // Classes along axis 1 of [2, 3, 2].
        let l3 = c(t(&dev, &[2, 3, 2], &[1.0, 0.0, 2.0, 1.0, 0.0, 3.0, 0.5, 0.5, 0.0, -1.0,
            1.0, 2.0]));
        close(&loss(&dev, |tape| tape.cross_entropy_with(&l3, &c(ti(&dev, &[2, 2],
            &[1, 2, 0, 0])), &CrossEntropy::default())), &[0.874_758_24]);

        let ce_err = |target: Var, opts: CrossEntropy<'_>| {
            let mut tape = Tape::new(dev.clone());
            tape.cross_entropy_with(&logits, &target, &opts).unwrap_err().to_string()
        };
        assert_eq!(
            ce_err(c(ti(&dev, &[4], &[1, 3, 0, 2])), CrossEntropy::default()),
            "cross-entropy: target 3 (element 1) is not a class index in 0..3"
        );
        assert_eq!(
            ce_err(c(t(&dev, &[4], &[1.0, 0.5, 0.0, 2.0])), CrossEntropy::default()),
            "cross-entropy: class indices: to-i64: element 1 of shape [4] is 0.5, which is not \
             an integer in the range of i64"
        );
        assert_eq!(
            ce_err(c(ti(&dev, &[3], &[1, 2, 0])), CrossEntropy::default()),
            "cross-entropy: target of shape [3] fits neither class indices (shape [4]) nor class \
             probabilities (shape [4, 3]) for classes along axis 1"
        );
        assert_eq!(
            ce_err(labels.clone(), CrossEntropy { axis: 2, ..Default::default() }),
            "cross-entropy: axis 2 is out of range for shape [4, 3] (2 dimensions)"
        );
        assert_eq!(
            ce_err(labels.clone(), CrossEntropy { label_smoothing: 1.5, ..Default::default() }),
            "cross-entropy: label smoothing 1.5 is not in 0..=1"
        );
        assert_eq!(
            ce_err(labels.clone(), CrossEntropy { weights: Some(&t(&dev, &[2], &[1.0, 1.0])),
                ..Default::default() }),
            "cross-entropy: class weights of shape [2] do not fit 3 classes"
        );

        let z = c(t(&dev, &[4], &[-2.0, 0.0, 0.5, 40.0]));
        let y = c(t(&dev, &[4], &[0.0, 1.0, 0.25, 1.0]));
        close(&loss(&dev, |tape| tape.bce_with_logits(&z, &y, Reduction::Mean)), &[0.417_288_04]);
        close(&loss(&dev, |tape| tape.bce_with_logits(&z, &y, Reduction::None)),
            &[0.126_928_01, std::f32::consts::LN_2, 0.849_077, 0.0]);
        let p = c(t(&dev, &[4], &[1.0, -2.0, 3.0, 0.5]));
        let q = c(t(&dev, &[4], &[0.0, 0.0, 1.0, 2.5]));
        close(&loss(&dev, |tape| tape.mse_loss(&p, &q, Reduction::Mean)), &[3.25]);
        close(&loss(&dev, |tape| tape.l1_loss(&p, &q, Reduction::Mean)), &[1.75]);
        close(&loss(&dev, |tape| tape.huber_loss(&p, &q, 1.5, Reduction::Mean)), &[1.531_25]);
        close(&loss(&dev, |tape| tape.huber_loss(&p, &q, 1.5, Reduction::Sum)), &[6.125]);
        close(&loss(&dev, |tape| tape.mse_loss(&p, &q, Reduction::None)), &[1.0, 4.0, 4.0, 4.0]);
        let mut tape = Tape::new(dev.clone());
        assert_eq!(
            tape.mse_loss(&p, &c(t(&dev, &[3], &[0.0; 3])), Reduction::Mean).unwrap_err()
                .to_string(),
            "mse-loss: prediction of shape [4] and target of shape [3] do not broadcast"
        );
        assert_eq!(
            tape.huber_loss(&p, &q, 0.0, Reduction::Mean).unwrap_err().to_string(),
            "huber-loss: delta 0 must be finite and greater than 0"
        );
    }
}
