// Model: softmax (multinomial logistic) regression, the JavaScript twin of the
// Rust `softmax-regression` model: the same parameters, initialisation and host
// ops, so both train identical parameters. Its forward pass is the class logits
// x·w + b; the host trains it (the cross-entropy, its gradients and the
// `[training]` optimizer) and predicts with their softmax.
//
// Config: `init_std` (std of the normal initial weights, default 0.01).
// Params: `w` [features, classes], `b` [classes].

import { Params, Tensor, exportModel } from '../../sdk/js/tensorlet.js';

export const forward = exportModel({
  init(config, spec) {
    const std = config.init_std ?? 0.01;
    return new Params({
      w: Tensor.randn([spec.features, spec.outputs], 0, std, spec.seed),
      b: Tensor.zeros([spec.outputs]),
    });
  },

  // [batch, features] x [features, classes] + [classes] -> [batch, classes]
  forward(config, params, x, mode) {
    return x.matmul(params.get('w')).add(params.get('b'));
  },
});
