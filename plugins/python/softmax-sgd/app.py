"""Trainer: softmax regression that writes its own update, plain gradient descent,
with the gradients computed by the host.

`step` computes the mean cross-entropy of the batch and asks the host for its
gradients with `loss.grad(params)`; the update `p - learning_rate * dp` is the
trainer's own. (A `Model` leaves the update to the host's `[training]` optimizer
instead; a trainer is for updates the host does not offer.)

Config: `learning_rate` (the host adds the pipeline's). Params: `w` [features,
classes] and `b` [classes], both starting at zero, as the Rust `softmax-regression`
model names them, so its forward pass (or any softmax-regression predictor)
predicts with them.
"""

import tensorlet
from tensorlet import Params, StepOutput, Tensor


class SoftmaxSgd(tensorlet.Trainer):
    def init(self, config, spec):
        return Params(w=Tensor.zeros([spec.features, spec.outputs]), b=Tensor.zeros([spec.outputs]))

    def step(self, config, params, x, y, step):
        lr = config.get("learning_rate", 0.1)
        w, b = params["w"], params["b"]
        logits = x @ w + b
        onehot = y.one_hot(w.shape[1])
        loss = -(onehot * logits.log_softmax(1)).sum(1).mean(0, keepdims=True)
        grads = loss.grad(params)  # d loss / d w and d loss / d b, from the host
        return StepOutput(
            Params((name, value - grads[name] * lr) for name, value in params.items()),
            loss.item(),
        )


Train = tensorlet.export_trainer(SoftmaxSgd)
