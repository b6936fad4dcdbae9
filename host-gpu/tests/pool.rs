//! The GPU buffer pool: steady-state op loops reuse buffers instead of creating
//! them, and dropped tensors give their memory back. In its own test binary
//! (its own process) so that no other test touches the shared context's pool.

mod common;

#[cfg(feature = "wgpu")]
#[test]
#[ignore = "needs a GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1"]
fn repeated_ops_reuse_pooled_buffers() {
    use std::sync::Arc;
    use tensorlet_gpu::wgpu_backend::{AdapterPolicy, WgpuBackend};
    use tensorlet_gpu::{BinaryOp, Device, UnaryOp};

    common::gpu();
    let backend = WgpuBackend::open(AdapterPolicy::Any).unwrap();
    let ctx = backend.context().clone();
    let dev = Device::new(Arc::new(backend));
    let step = |dev: &Device| {
        let x = dev.from_vec(&[33, 17], vec![0.5; 33 * 17]).unwrap();
        let w = dev.fill(&[17, 9], 0.25).unwrap();
        let z = dev.matmul(&x, &w).unwrap();
        let a = dev.unary(UnaryOp::Relu, &z).unwrap();
        let s = dev.binary(BinaryOp::Add, &a, &z).unwrap();
        dev.to_vec(&s)
    };
    // Warm up: the first steps create what the loop needs.
    for _ in 0..3 {
        step(&dev);
    }
    let before = ctx.pool_stats();
    for _ in 0..50 {
        assert_eq!(step(&dev)[0], 2.0 * 0.5 * 0.25 * 17.0);
    }
    let after = ctx.pool_stats();
    assert_eq!(
        after.created, before.created,
        "a steady loop of ops created buffers: {before:?} -> {after:?}"
    );
    assert!(after.reused >= before.reused + 50 * 6, "{after:?}");
    // Every tensor of the loop was dropped: nothing is live any more.
    assert_eq!(after.live_bytes, before.live_bytes, "{after:?}");
    assert!(after.free_bytes <= after.cap_bytes);
    ctx.trim_pool();
    assert_eq!(ctx.pool_stats().free_bytes, 0);
}
