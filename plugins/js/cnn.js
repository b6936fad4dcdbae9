// Predictor: the forward pass of tensorlet's `cnn` model in eval mode and its
// softmax, in JavaScript: the same host ops as the Rust model, so both give the
// same class probabilities for params the `cnn` model trained.
//
// The layers come from the params: `conv{i}.w` [out, in, k, k] and `conv{i}.b`
// (a k×k convolution with padding k / 2), with `bn{i}.w` a batch normalization
// by the running statistics `state.bn{i}.mean` / `state.bn{i}.var`, then ReLU
// and a 2×2 max-pool; then the dense layers `fc{j}.w` [in, out] and `fc{j}.b`,
// ReLU between them. Each row of `x` is one square image of `conv0.w`'s input
// channels (the 8×8 digits: 64 features, one channel). Predictor config: none.

import { TensorletError, configKeys, exportPredictor } from '../../sdk/js/tensorlet.js';

/** How many `${prefix}${i}.w` there are, counting from 0. */
function count(params, prefix) {
  let n = 0;
  while (params.has(`${prefix}${n}.w`)) n++;
  return n;
}

export const predict = exportPredictor({
  predict(config, params, x) {
    configKeys(config, {});
    const convs = count(params, 'conv');
    const dense = count(params, 'fc');
    if (convs === 0 || dense === 0) {
      throw new TensorletError('cnn: the params have no `conv0.w` or `fc0.w`; were they made by cnn?');
    }
    const [rows, features] = x.shape;
    const channels = params.get('conv0.w').dim(1);
    const side = Math.round(Math.sqrt(features / channels));
    if (channels * side * side !== features) {
      throw new TensorletError(
        `cnn: ${features} features are not ${channels} square channel(s); this predictor takes square images`,
      );
    }
    let a = x.reshape([rows, channels, side, side]);
    for (let i = 0; i < convs; i++) {
      const w = params.get(`conv${i}.w`);
      a = a.conv2d(w, params.get(`conv${i}.b`), { padding: Math.floor(w.dim(2) / 2) });
      if (params.has(`bn${i}.w`)) {
        a = a.batchNorm(params.get(`state.bn${i}.mean`), params.get(`state.bn${i}.var`), {
          weight: params.get(`bn${i}.w`),
          bias: params.get(`bn${i}.b`),
          train: false,
          momentum: 0.1,
          eps: 1e-5,
        });
      }
      a = a.relu().maxPool2d(2);
    }
    a = a.flatten(1, 3);
    for (let j = 0; j < dense; j++) {
      const z = a.matmul(params.get(`fc${j}.w`)).add(params.get(`fc${j}.b`));
      a = j + 1 < dense ? z.relu() : z;
    }
    return a.softmax(1);
  },
});
