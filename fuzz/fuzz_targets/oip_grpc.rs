//! OIP over gRPC: any bytes decode to a `ModelInferRequest` or not (prost),
//! and a decoded request becomes the binary-extension request the server
//! reads ([`as_binary_extension`]) or a `BadRequest`, never a panic; the
//! header is always JSON, and what the server then accepts holds rows ×
//! features values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tensorlet_oip::grpc::{ModelInferRequest, as_binary_extension};
use tensorlet_oip::{InputSpec, parse_request};

fuzz_target!(|data: &[u8]| {
    let Ok(r) = ModelInferRequest::decode(data) else {
        return;
    };
    let Ok((json, binary)) = as_binary_extension(&r) else {
        return;
    };
    serde_json::from_slice::<serde_json::Value>(&json).expect("the header is JSON");
    for features in [1, 4] {
        let spec = InputSpec {
            features,
            max_batch: 64,
        };
        if let Ok(req) = parse_request(&json, &binary, spec) {
            assert_eq!(req.x.len(), req.rows * features);
        }
    }
});
