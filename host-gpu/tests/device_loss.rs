//! A GPU that is lost: reads return a `DeviceError` that names the adapter
//! (no panic), ops after the loss give tensors that carry it, and
//! `Device::recover` gives a working device again. The loss is injected
//! through `Device::lose_device`, which calls wgpu's `Device::destroy`: wgpu
//! then reports the loss as it reports a driver reset, through the
//! device-lost callback.
//!
//! The GPU context is shared by the whole process, so this file is its own
//! test binary, and its GPU test is one test that runs its steps in order.

mod common;

use tensorlet_gpu::autodiff::Tape;
use tensorlet_gpu::{BinaryOp, Conv2d, DType, Device, DeviceError, Pool2d, TensorError, UnaryOp};

fn matrix(dev: &Device) -> tensorlet_gpu::Tensor {
    dev.from_vec(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap()
}

const SQUARED: [f32; 4] = [7.0, 10.0, 15.0, 22.0];

/// Every way of reading `dev` fails with `err`.
fn assert_failed(dev: &Device, t: &tensorlet_gpu::Tensor, err: &DeviceError) {
    assert_eq!(dev.check().as_ref(), Err(err));
    assert_eq!(dev.to_vec(t).as_ref(), Err(err));
    assert_eq!(dev.synchronize().as_ref(), Err(err));
}

/// The device failure of an op that had to read its operands.
fn device_error<T>(r: Result<T, TensorError>) -> Option<DeviceError> {
    match r {
        Err(e @ TensorError::Device { .. }) => e.device_error().cloned(),
        Err(e) => panic!("a lost device should be a device error, got {e}"),
        Ok(_) => panic!("a read on a lost device succeeded"),
    }
}

#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn a_lost_gpu_fails_every_read_and_recovers() {
    let dev = common::gpu();
    let a = matrix(&dev);
    let before = dev.matmul(&a, &a).unwrap();
    assert_eq!(dev.to_vec(&before).unwrap(), SQUARED);
    dev.check().unwrap();

    // Lost at the next wait: the read of work queued before it notices.
    assert!(dev.lose_device(1));
    let queued = dev.matmul(&before, &a).unwrap();
    let err = dev.to_vec(&queued).unwrap_err();
    assert!(err.is_lost(), "{err}");
    assert!(
        dev.info().name.starts_with(err.adapter()),
        "{err} names {}",
        dev.info()
    );
    let msg = err.to_string();
    assert!(msg.contains(&format!("`{}`", err.adapter())), "{msg}");
    assert!(msg.contains("was lost"), "{msg}");
    assert!(msg.contains("--device cpu"), "{msg}");

    // Sticky, for tensors from before the loss and for ops after it, which
    // give tensors that carry the error instead of running.
    assert_failed(&dev, &before, &err);
    let after = dev
        .softmax(
            &dev.binary(BinaryOp::Add, &queued, &matrix(&dev)).unwrap(),
            1,
            false,
        )
        .unwrap();
    assert_eq!(after.shape().dims(), [2, 2]);
    assert_failed(&dev, &after, &err);
    assert_eq!(
        dev.to_vec(&dev.unary(UnaryOp::Relu, &after).unwrap())
            .as_ref(),
        Err(&err)
    );
    // An op that reads its operand to check it says so as a TensorError.
    let mut tape = Tape::new(dev.clone());
    let logits = tape.leaf("w", matrix(&dev)).unwrap();
    let labels = dev.from_vec(&[2], vec![0.0, 1.0]).unwrap();
    match tape.cross_entropy(&logits, &labels) {
        Err(e @ TensorError::Device { .. }) => assert_eq!(e.device_error(), Some(&err)),
        other => panic!("cross-entropy on a lost device: {other:?}"),
    }
    // The CPU backend cannot read the lost tensors either, nor compute on them.
    let cpu = Device::cpu();
    assert_eq!(cpu.to_vec(&before).as_ref(), Err(&err));
    assert_eq!(
        cpu.to_vec(&cpu.unary(UnaryOp::Neg, &before).unwrap())
            .as_ref(),
        Err(&err)
    );
    cpu.check().unwrap();

    // Recovery: a fresh context on the same adapter, for every clone of the
    // device. New tensors compute; those of the lost context stay failed.
    let clone = dev.clone();
    dev.recover().unwrap();
    clone.check().unwrap();
    let fresh = clone.matmul(&matrix(&clone), &matrix(&clone)).unwrap();
    assert_eq!(clone.to_vec(&fresh).unwrap(), SQUARED);
    assert_eq!(dev.to_vec(&before).as_ref(), Err(&err));
    let mixed = dev.binary(BinaryOp::Add, &before, &fresh).unwrap();
    assert_eq!(dev.to_vec(&mixed).as_ref(), Err(&err));
    dev.recover().unwrap(); // a healthy device: nothing to do
    assert_eq!(dev.to_vec(&fresh).unwrap(), SQUARED);

    // Lost at once: the next op already gives the error, without a wait.
    assert!(dev.lose_device(0));
    let err = dev.check().unwrap_err();
    assert!(err.is_lost(), "{err}");
    let t = dev.fill(&[3], 1.0).unwrap();
    assert_failed(&dev, &t, &err);
    dev.recover().unwrap();
    let t = dev.fill(&[3], 1.0).unwrap();
    assert_eq!(dev.to_vec(&t).unwrap(), [1.0; 3]);

    // i64 tensors and the N-D ops: the same, each failed tensor keeping its
    // element type.
    let idx = dev.from_i64(&[2], vec![1, 0]).unwrap();
    let img = dev.fill(&[1, 1, 4, 4], 1.0).unwrap();
    assert_eq!(dev.to_i64_vec(&idx).unwrap(), [1, 0]);
    assert!(dev.lose_device(0));
    let err = dev.check().unwrap_err();
    // Read back: even the host copy of indices made before the loss.
    assert_eq!(dev.to_vec(&idx).as_ref(), Err(&err));
    assert_eq!(device_error(dev.to_i64_vec(&idx)), Some(err.clone()));
    let made = dev.from_i64(&[2], vec![0, 1]).unwrap();
    assert_eq!(made.dtype(), DType::I64);
    assert_eq!(device_error(dev.to_i64_vec(&made)), Some(err.clone()));
    assert_eq!(
        device_error(Device::cpu().to_i64_vec(&made)),
        Some(err.clone())
    );
    // Ops that check their indices on the host cannot read them.
    let x = matrix(&dev);
    assert_eq!(
        device_error(dev.index_select(&x, 0, &idx)),
        Some(err.clone())
    );
    assert_eq!(
        device_error(dev.gather(&x, 1, &dev.from_i64(&[2, 1], vec![0, 1]).unwrap())),
        Some(err.clone())
    );
    // The others give failed tensors of their element types.
    let pool = Pool2d {
        kernel: [2, 2],
        stride: [2, 2],
        padding: [0, 0],
    };
    let (maxima, at) = dev.max_pool2d_with_indices(&img, &pool).unwrap();
    assert_eq!((maxima.dtype(), at.dtype()), (DType::F32, DType::I64));
    assert_failed(&dev, &maxima, &err);
    assert_eq!(dev.to_vec(&at).as_ref(), Err(&err));
    let conv = dev
        .conv2d(
            &img,
            &dev.fill(&[2, 1, 3, 3], 0.5).unwrap(),
            None,
            &Conv2d::default(),
        )
        .unwrap();
    assert_eq!(conv.shape().dims(), [1, 2, 2, 2]);
    assert_failed(&dev, &conv, &err);
    let as_i64 = dev.to_i64(&x).unwrap();
    assert_eq!(as_i64.dtype(), DType::I64);
    assert_eq!(device_error(dev.to_i64_vec(&as_i64)), Some(err.clone()));
    let sums = dev.cumsum(&dev.to_f32(&idx), 0, false).unwrap();
    assert_failed(&dev, &sums, &err);
    dev.recover().unwrap();
    let idx = dev.from_i64(&[2], vec![1, 0]).unwrap();
    let picked = dev.index_select(&matrix(&dev), 0, &idx).unwrap();
    assert_eq!(dev.to_vec(&picked).unwrap(), [3.0, 4.0, 1.0, 2.0]);
}

#[test]
fn the_cpu_has_no_device_to_lose() {
    let cpu = Device::cpu();
    assert!(!cpu.lose_device(0));
    let a = matrix(&cpu);
    assert_eq!(cpu.to_vec(&cpu.matmul(&a, &a).unwrap()).unwrap(), SQUARED);
    cpu.check().unwrap();
    cpu.synchronize().unwrap();
    cpu.recover().unwrap();
    let idx = cpu.from_i64(&[2], vec![1, 0]).unwrap();
    assert_eq!(cpu.to_vec(&idx).unwrap(), [1.0, 0.0]);
    assert_eq!(cpu.to_i64_vec(&idx).unwrap(), [1, 0]);
}
