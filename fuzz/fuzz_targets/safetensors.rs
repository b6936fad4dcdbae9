//! Parameters and fitted state as safetensors bytes (a model's
//! `params.safetensors`, a run's checkpoints): any bytes give named f32
//! tensors or an error, never a panic; what loads writes back to bytes that
//! load to the same tensors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorlet_gpu::Device;
use tensorlet_gpu::named::{from_safetensors, to_safetensors};

fuzz_target!(|data: &[u8]| {
    let dev = Device::cpu();
    let Ok(named) = from_safetensors(&dev, data) else {
        return;
    };
    let bytes = to_safetensors(&dev, &named).expect("CPU tensors serialise");
    let again = from_safetensors(&dev, &bytes).expect("written bytes load");
    assert_eq!(named.len(), again.len());
    for ((n1, t1), (n2, t2)) in named.iter().zip(&again) {
        assert_eq!(n1, n2);
        assert_eq!(t1.shape(), t2.shape());
        let (v1, v2) = (dev.to_vec(t1).unwrap(), dev.to_vec(t2).unwrap());
        assert!(v1.iter().zip(&v2).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
    assert_eq!(
        to_safetensors(&dev, &again).unwrap(),
        bytes,
        "not deterministic"
    );
});
