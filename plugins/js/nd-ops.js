// Preprocessor: every N-D op of the SDK once, for `tests/polyglot.rs`.
//
// `transform` runs each N-D wrapper of `tensorlet.js` on `x` (the test passes
// [[1, -2, 3], [-4, 5, -6]]) and returns every result flattened and joined into one
// 1-D tensor, in the order of `plugins/python/nd-ops/app.py` and `plugins/c/nd-ops.c`;
// the test checks the values against ones it computes itself. `fit` learns nothing.

import { Params, Tensor, TensorletError, exportPreprocessor } from '../../sdk/js/tensorlet.js';

const flat = (t) => t.reshape([t.size]);

export const preprocess = exportPreprocessor({
  fit() {
    return new Params();
  },

  transform(config, state, x) {
    const i64 = Tensor.fromI64([2, 0]);
    const back = i64.toI64Array();
    if (i64.dtype !== 'i64' || back.join() !== '2,0') {
      throw new TensorletError(`nd-ops: i64 round trip gave ${i64.dtype} [${back}]`);
    }
    const zeros = Tensor.zeros([1]);
    const image = x.reshape([1, 1, 2, 3]);
    const out = [
      i64.cast('f32'),
      Tensor.arange(3).cast('f32'),
      x.indexSelect(1, i64),
      x.gather(1, [[1], [2]]),
      x.matmulT(x, false, true),
      x.maximum(Tensor.zeros([3])),
      x.minimum(0),
      x.lt(0),
      x.pow(2),
      x.leakyRelu(0.5),
      x.clamp(-1, 2),
      x.select(x.gt(0), Tensor.full([1], -1)),
      x.maskedFill(x.lt(0), 9),
      x.cumsum(1, true),
      x.permute([1, 0]),
      x.slice(1, 0, 3, 2),
      x.pad([[0, 0], [1, 0]], 7),
      Tensor.concatAll([x.slice(0, 1, 2), x.slice(0, 0, 1)], 0),
      Tensor.fromList([1, 2, 3]).unsqueeze(0).broadcastTo([2, 3]),
      x.unsqueeze(0).squeeze(0).flatten(0, 1),
      x.embedding([1, 0, 1]),
      Tensor.zeros([2, 3]).indexAdd(0, [1, 1], x),
      Tensor.zeros([2, 3]).scatterAdd(1, [[0, 0, 1], [2, 2, 2]], x),
      x.reshape([1, 2, 3]).conv1d(Tensor.fromList([1, 2, 3, 4], [1, 2, 2]), Tensor.full([1], 0.5)),
      image.conv2d(Tensor.ones([1, 1, 1, 2]), null, { padding: [0, 1] }),
      image.maxPool2d(2, { stride: 1 }),
      image.avgPool2d([1, 3]),
      x.reshape([1, 2, 3]).globalAvgPool(),
      x.layerNorm(1, { weight: Tensor.full([3], 2), bias: Tensor.full([3], 1), eps: 1e-5 }),
      x.batchNorm(Tensor.zeros([3]), Tensor.ones([3]), { weight: Tensor.full([3], 2), train: false }),
      x.dropout(0, 7),
      x.gelu().sub(x.neg().gelu()),
      x.gelu('tanh'),
      x.silu(),
      x.softplus(),
      x.mseLoss(zeros),
      x.l1Loss(zeros, 'sum'),
      x.huberLoss(zeros, 1),
      x.bceWithLogits(Tensor.full([1], 0.5), 'none'),
      x.crossEntropy(Tensor.fromI64([2, 0])),
      x.crossEntropy(Tensor.fromI64([2, 0]), { ignoreIndex: 0, reduction: 'sum' }),
      x.binary('ge', zeros),
    ];
    return Tensor.concatAll(out.map(flat), 0);
  },
});
