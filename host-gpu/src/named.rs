//! Named tensors as safetensors bytes: how parameters and fitted state are
//! stored (models, run checkpoints). Written sorted by name, so the same
//! tensors give the same bytes; read back as f32 tensors on a device.

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::{Device, DeviceError, Tensor};

/// Serialises named tensors as safetensors, sorted by name (deterministic).
/// Fails when the device that holds them has failed.
pub fn to_safetensors(device: &Device, named: &[(String, Tensor)]) -> Result<Vec<u8>, DeviceError> {
    let data = named
        .iter()
        .map(|(n, t)| {
            let bytes = device
                .to_vec(t)?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            Ok((n.clone(), t.shape().dims().to_vec(), bytes))
        })
        .collect::<Result<Vec<(String, Vec<usize>, Vec<u8>)>, DeviceError>>()?;
    let views = data.iter().map(|(n, shape, bytes)| {
        (
            n.as_str(),
            TensorView::new(Dtype::F32, shape.clone(), bytes).expect("sizes match"),
        )
    });
    Ok(safetensors::serialize(views, None).expect("f32 tensors serialise"))
}

/// Reads safetensors written by [`to_safetensors`], sorted by name.
pub fn from_safetensors(device: &Device, bytes: &[u8]) -> Result<Vec<(String, Tensor)>, String> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut names = st.names();
    names.sort();
    for name in names {
        let view = st.tensor(name).map_err(|e| e.to_string())?;
        if view.dtype() != Dtype::F32 {
            return Err(format!("tensor `{name}` is {:?}, not F32", view.dtype()));
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let shape: Vec<u32> = view.shape().iter().map(|&d| d as u32).collect();
        let t = device.from_vec(&shape, data).map_err(|e| e.to_string())?;
        out.push((name.to_string(), t));
    }
    Ok(out)
}
