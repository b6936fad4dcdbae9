"""Model: a multi-layer perceptron with ReLU hidden layers, in Python.

The twin of the Rust `mlp` model: the same parameters, the same initialisation and
the same host ops in the same order, so both train identical parameters. Its
forward pass returns the class logits; the host trains it (the cross-entropy, its
gradients and the `[training]` optimizer) and predicts with their softmax.

Config: `hidden`, the hidden layer widths, default `[64]` (`[]` is softmax
regression). Params: `w0, b0, w1, b1, …`, `wi` [fan_in, fan_out] (He-normal,
seeded with `derive_seed(spec.seed, i)`), `bi` [fan_out] (zeros).
"""

import math

import tensorlet
from tensorlet import Params, Tensor, TensorletError, derive_seed, f32


class Mlp(tensorlet.Model):
    def init(self, config, spec):
        hidden = config.get("hidden", [64])
        if not isinstance(hidden, list) or not all(isinstance(w, int) and w > 0 for w in hidden):
            raise TensorletError(f"mlp: `hidden` must be a list of widths > 0, got {hidden!r}")
        widths = [spec.features, *hidden, spec.outputs]
        params = Params()
        for i, (fan_in, fan_out) in enumerate(zip(widths, widths[1:])):
            std = f32(math.sqrt(f32(2.0 / max(fan_in, 1))))  # He-normal, in f32 as in Rust
            params[f"w{i}"] = Tensor.randn([fan_in, fan_out], 0.0, std, derive_seed(spec.seed, i))
            params[f"b{i}"] = Tensor.zeros([fan_out])
        return params

    def forward(self, config, params, x, mode):
        """relu(x @ w0 + b0), …, then the last layer without ReLU: the logits."""
        layers = 0
        while f"w{layers}" in params:
            layers += 1
        if layers == 0:
            raise TensorletError("mlp: the params have no `w0`; were they made by mlp?")
        a = x
        for i in range(layers):
            z = a @ params[f"w{i}"] + params[f"b{i}"]
            a = z.relu() if i + 1 < layers else z
        return a


# componentize-py exports the class named after the WIT interface (`forward`).
Forward = tensorlet.export_model(Mlp)
