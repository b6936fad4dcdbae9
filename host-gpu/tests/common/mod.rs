//! What the op test suites share: the GPU device the GPU tests run on.

#![allow(dead_code, reason = "each test file uses part of this module")]

use tensorlet_gpu::Device;

/// The wgpu device (hardware, else lavapipe). The tests that use it are
/// ignored by default (`cargo test … -- --ignored` runs them, as CI does);
/// run where there is no adapter, they fail with what to install.
pub fn gpu() -> Device {
    #[cfg(feature = "wgpu")]
    {
        Device::open(tensorlet_gpu::Preference::Gpu).unwrap_or_else(|e| {
            panic!("the GPU backend cannot run: {e} (see docs/testing.md in the repository root)")
        })
    }
    #[cfg(not(feature = "wgpu"))]
    {
        panic!("the GPU backend cannot run: built without the `wgpu` feature")
    }
}
