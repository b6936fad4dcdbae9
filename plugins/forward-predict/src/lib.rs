//! Between the HTTP front of an exported model and a `model` plugin (ABI 0.2,
//! world `model`): exports `tensorlet:ml/predict` as the softmax over classes
//! of the plugin's `forward` in `eval` mode — or, for a regression (the front
//! adds a params entry `tensorlet:regression`, removed here), the outputs as
//! they are — which is what `tensorlet serve` computes for such a plugin.
//! `tensorlet export` composes it in only when the model's predictor is a
//! `model` plugin.

wit_bindgen::generate!({
    path: ["../../wit", "../../wit/export"],
    world: "tensorlet:exported/forward-predictor@0.1.0",
    generate_all,
});

use exports::tensorlet::ml::predict::Guest;
use tensorlet::ml::forward::{self, Mode};
use tensorlet::ml::tensor::{NamedTensor, Tensor};

struct Adapter;

impl Guest for Adapter {
    fn predict(config: String, mut params: Vec<NamedTensor>, x: Tensor) -> Result<Tensor, String> {
        let before = params.len();
        params.retain(|p| p.name != "tensorlet:regression");
        let regression = params.len() < before;
        let outputs = forward::forward(&config, params, x, Mode::Eval)?;
        if outputs.shape().len() != 2 {
            return Err(format!(
                "forward returned shape {:?}; expected [rows, {}]",
                outputs.shape(),
                if regression { "targets" } else { "classes" }
            ));
        }
        if regression {
            Ok(outputs)
        } else {
            outputs.softmax(1)
        }
    }
}

export!(Adapter);
