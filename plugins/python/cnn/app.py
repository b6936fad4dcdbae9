"""Model: a convolutional network over images that arrive as flattened rows, in Python.

The twin of the Rust `cnn` model (plugins/cnn/src/lib.rs): the same config, the same
parameters, the same initialisation and the same host ops in the same order, so both
train identical parameters. Its forward pass returns the class logits; the host
trains it (the cross-entropy, its gradients and the `[training]` optimizer) and
predicts with their softmax. The 8×8 digits are 64 features: one 1×8×8 image a row.

Each conv layer is a 3×3 convolution (padding 1), optionally a batch normalization,
a ReLU and a 2×2 max-pool; then the dense head: a hidden ReLU layer, optional
dropout, and the output layer.

Config (`[model.config]`):
- `image`: `[channels, height, width]` of a row, default `[1, 8, 8]`; their product
  must be the number of features.
- `channels`: output channels of each conv layer, default `[32, 64]`.
- `hidden`: width of the dense hidden layer, default 64 (0: none).
- `dropout`: probability before the output layer in training, default 0.
- `batch_norm`: normalize each conv layer's output, default false.

Params: `conv{i}.w` `[out, in, 3, 3]`, `conv{i}.b` `[out]`, with `batch_norm` also
`bn{i}.w`, `bn{i}.b` and the running statistics `state.bn{i}.mean`,
`state.bn{i}.var` (kept by the host); `fc{j}.w` `[in, out]`, `fc{j}.b` `[out]`.
Weights are He-normal, seeded with `derive_seed(spec.seed, layer)`; biases zero.
"""

import math

import tensorlet
from tensorlet import Mode, Params, Tensor, TensorletError, config_keys, derive_seed, f32

#: Every config key with its default (an unknown key is an error).
DEFAULTS = {"image": [1, 8, 8], "channels": [32, 64], "hidden": 64, "dropout": 0.0, "batch_norm": False}

#: The 3×3 kernel of every conv layer.
KERNEL = 3

#: The seed of the dropout mask (the host mixes in the training step).
DROPOUT_SEED = 0x636E6E


def _count(value, what):
    """A whole number ≥ 0 (a JSON number), as the Rust twin's `u32` fields take."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise TensorletError(f"cnn: `{what}` must be a whole number >= 0, got {value!r}")
    return value


class Settings:
    """`[model.config]`, read and checked."""

    def __init__(self, config):
        c = config_keys(config, DEFAULTS)
        image = c["image"]
        if not isinstance(image, list) or len(image) != 3:
            raise TensorletError(f"cnn: `image` must be [channels, height, width], got {image!r}")
        self.image = [_count(d, "image") for d in image]
        channels = c["channels"]
        if not isinstance(channels, list):
            raise TensorletError(f"cnn: `channels` must be a list of widths, got {channels!r}")
        self.channels = [_count(d, "channels") for d in channels]
        self.hidden = _count(c["hidden"], "hidden")
        dropout = c["dropout"]
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise TensorletError(f"cnn: `dropout` must be a number, got {dropout!r}")
        self.dropout = f32(dropout)  # the Rust twin reads it as f32
        if not isinstance(c["batch_norm"], bool):
            raise TensorletError(f"cnn: `batch_norm` must be true or false, got {c['batch_norm']!r}")
        self.batch_norm = c["batch_norm"]

    def flat_size(self, features):
        """Checks the settings against `features` per row and returns the flattened
        size after the conv layers."""
        c, h, w = self.image
        if c * h * w != features:
            raise TensorletError(
                f"cnn: `image` = {self.image} holds {c * h * w} values, but the rows have {features} features"
            )
        if not self.channels or 0 in self.channels:
            raise TensorletError("cnn: `channels` needs at least one conv layer, each with > 0 channels")
        if not 0.0 <= self.dropout < 1.0:
            raise TensorletError(f"cnn: `dropout` {self.dropout} is not in 0..1")
        for _ in self.channels:
            if h < 2 or w < 2:
                raise TensorletError(
                    f"cnn: a {h}×{w} map cannot be pooled 2×2; use fewer `channels` layers for a {self.image} image"
                )
            h, w = h // 2, w // 2
        return self.channels[-1] * h * w


def he(shape, fan_in, seed):
    """He-normal: N(0, sqrt(2 / fan_in)), the std computed in f32 as in Rust."""
    std = f32(math.sqrt(f32(2.0 / max(fan_in, 1))))
    return Tensor.randn(shape, 0.0, std, seed)


class Cnn(tensorlet.Model):
    def init(self, config, spec):
        s = Settings(config)
        flat = s.flat_size(spec.features)
        params = Params()
        cin = s.image[0]
        layer = 0
        for i, out in enumerate(s.channels):
            fan_in = cin * KERNEL * KERNEL
            params[f"conv{i}.w"] = he([out, cin, KERNEL, KERNEL], fan_in, derive_seed(spec.seed, layer))
            params[f"conv{i}.b"] = Tensor.zeros([out])
            if s.batch_norm:
                params[f"bn{i}.w"] = Tensor.ones([out])
                params[f"bn{i}.b"] = Tensor.zeros([out])
                params[f"state.bn{i}.mean"] = Tensor.zeros([out])
                params[f"state.bn{i}.var"] = Tensor.ones([out])
            cin = out
            layer += 1
        widths = [flat, *([s.hidden] if s.hidden > 0 else []), spec.outputs]
        for j, (fan_in, fan_out) in enumerate(zip(widths, widths[1:])):
            params[f"fc{j}.w"] = he([fan_in, fan_out], fan_in, derive_seed(spec.seed, layer))
            params[f"fc{j}.b"] = Tensor.zeros([fan_out])
            layer += 1
        return params

    def forward(self, config, params, x, mode):
        """conv → [batch norm] → relu → 2×2 max-pool per layer, flatten, then the
        dense layers (ReLU between them, dropout before the last): the logits."""
        s = Settings(config)
        shape = x.shape
        if len(shape) != 2:
            raise TensorletError(f"cnn: x must be [rows, features], got shape {list(shape)}")
        rows, features = shape
        s.flat_size(features)
        train = mode == Mode.TRAIN
        c, h, w = s.image
        a = x.reshape([rows, c, h, w])
        for i in range(len(s.channels)):
            a = a.conv2d(params[f"conv{i}.w"], params[f"conv{i}.b"], padding=KERNEL // 2)
            if s.batch_norm:
                a = a.batch_norm(
                    params[f"state.bn{i}.mean"],
                    params[f"state.bn{i}.var"],
                    weight=params[f"bn{i}.w"],
                    bias=params[f"bn{i}.b"],
                    train=train,
                    momentum=0.1,
                    eps=1e-5,
                )
            a = a.relu().max_pool2d(2)
        a = a.flatten(1, 3)
        dense = 0
        while f"fc{dense}.w" in params:
            dense += 1
        if dense == 0:
            raise TensorletError("cnn: the params have no `fc0.w`; were they made by cnn?")
        for j in range(dense):
            last = j + 1 == dense
            if last and train and s.dropout > 0.0:
                a = a.dropout(s.dropout, DROPOUT_SEED)
            z = a @ params[f"fc{j}.w"] + params[f"fc{j}.b"]
            a = z if last else z.relu()
        return a


# componentize-py exports the class named after the WIT interface (`forward`).
Forward = tensorlet.export_model(Cnn)
