// Trainer: softmax regression that writes its own update, plain gradient
// descent, with the gradients computed by the host.
//
// `step` computes the mean cross-entropy of the batch and asks the host for its
// gradients with `loss.grad(params)`; the update `p - learning_rate * dp` is the
// trainer's own. (A model, `exportModel`, leaves the update to the host's
// `[training]` optimizer instead; a trainer is for updates the host does not offer.)
//
// Config: `learning_rate` (the host adds the pipeline's). Params: `w` [features,
// classes] and `b` [classes], both starting at zero, as the Rust
// `softmax-regression` model names them.

import { Params, Tensor, exportTrainer } from '../../sdk/js/tensorlet.js';

export const train = exportTrainer({
  init(config, spec) {
    return new Params({ w: Tensor.zeros([spec.features, spec.outputs]), b: Tensor.zeros([spec.outputs]) });
  },

  step(config, params, x, y, step) {
    const lr = config.learning_rate ?? 0.1;
    const w = params.get('w');
    const logits = x.matmul(w).add(params.get('b'));
    const onehot = y.oneHot(w.dim(1));
    const loss = onehot.mul(logits.logSoftmax(1)).sum(1).mean(0, true).neg();
    const grads = loss.grad(params); // d loss / d w and d loss / d b, from the host
    const next = new Params();
    for (const name of params.keys()) {
      next.set(name, params.get(name).sub(grads.get(name).mul(lr)));
    }
    return { params: next, loss: loss.item() };
  },
});
