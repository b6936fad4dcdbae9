//! What the op test suites share: the devices every test runs on.

#![allow(dead_code, reason = "each test file uses part of this module")]

use tensorlet_gpu::Device;

/// Whether this run is CI, where a missing GPU adapter is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The wgpu device (hardware, else lavapipe). Without an adapter: a loud skip
/// locally, a failure in CI, so GPU tests never pass vacuously there.
pub fn gpu() -> Option<Device> {
    #[cfg(feature = "wgpu")]
    {
        match Device::open(tensorlet_gpu::Preference::Gpu) {
            Ok(d) => Some(d),
            Err(e) if in_ci() => panic!("CI is set but the GPU backend cannot run: {e}"),
            Err(e) => {
                eprintln!("SKIPPED on the GPU backend: {e}");
                None
            }
        }
    }
    #[cfg(not(feature = "wgpu"))]
    {
        eprintln!("SKIPPED on the GPU backend: built without the `wgpu` feature");
        None
    }
}

/// Every backend the suite runs on: the CPU reference, then the GPU.
pub fn devices() -> Vec<Device> {
    let mut v = vec![Device::cpu()];
    v.extend(gpu());
    v
}
