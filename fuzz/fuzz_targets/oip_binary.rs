//! Triton's binary tensor data extension: a JSON header of
//! `Inference-Header-Content-Length` bytes, then raw little-endian tensors.
//! The input's first two bytes give the header length; whatever the bytes,
//! the decoder answers a request or a `BadRequest`, never a panic, and an
//! accepted request holds exactly rows × features values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorlet_oip::{InputSpec, parse_request, split_body};

fuzz_target!(|data: &[u8]| {
    let Some((len, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let header_len = u16::from_le_bytes(*len).to_string();
    let Ok((json, binary)) = split_body(body, Some(&header_len)) else {
        return;
    };
    for features in [1, 4] {
        let spec = InputSpec {
            features,
            max_batch: 64,
        };
        if let Ok(r) = parse_request(json, binary, spec) {
            assert_eq!(r.x.len(), r.rows * features);
            assert!(r.rows <= 64);
        }
    }
});
