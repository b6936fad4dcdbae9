"""Preprocessor: every N-D op of the SDK once, for `tests/polyglot.rs`.

`transform` runs each N-D wrapper of `tensorlet.py` on `x` (the test passes
`[[1, -2, 3], [-4, 5, -6]]`) and returns every result flattened and joined into one
1-D tensor, in the order of `plugins/js/nd-ops.js` and `plugins/c/nd-ops.c`; the test
checks the values against ones it computes itself. `fit` learns nothing.
"""

import tensorlet
from tensorlet import Dtype, Params, Tensor, TensorletError


def flat(t):
    return t.reshape([t.size])


class NdOps(tensorlet.Preprocessor):
    def fit(self, config, x):
        return Params()

    def transform(self, config, state, x):
        i64 = Tensor.from_i64([2, 0])
        if i64.dtype != Dtype.I64 or i64.tolist_i64() != [2, 0]:
            raise TensorletError(f"nd-ops: i64 round trip gave {i64.dtype} {i64.tolist_i64()}")
        zeros = Tensor.zeros([1])
        image = x.reshape([1, 1, 2, 3])
        out = [
            i64.cast("f32"),
            Tensor.arange(3).cast(Dtype.F32),
            x.index_select(1, i64),
            x.gather(1, [[1], [2]]),
            x.matmul_t(x, transpose_rhs=True),
            x.maximum(Tensor.zeros([3])),
            x.minimum(0.0),
            x.lt(0),
            x**2,
            x.leaky_relu(0.5),
            x.clamp(-1, 2),
            x.select(x.gt(0), Tensor.full([1], -1)),
            x.masked_fill(x.lt(0), 9),
            x.cumsum(1, reverse=True),
            x.permute(1, 0),
            x.slice(1, 0, 3, 2),
            x.pad([(0, 0), (1, 0)], 7),
            Tensor.concat_all([x.slice(0, 1, 2), x.slice(0, 0, 1)], 0),
            Tensor.from_list([1, 2, 3]).unsqueeze(0).broadcast_to([2, 3]),
            x.unsqueeze(0).squeeze(0).flatten(0, 1),
            x.embedding([1, 0, 1]),
            Tensor.zeros([2, 3]).index_add(0, [1, 1], x),
            Tensor.zeros([2, 3]).scatter_add(1, [[0, 0, 1], [2, 2, 2]], x),
            x.reshape([1, 2, 3]).conv1d(Tensor.from_list([1, 2, 3, 4], [1, 2, 2]), Tensor.full([1], 0.5)),
            image.conv2d(Tensor.ones([1, 1, 1, 2]), padding=(0, 1)),
            image.max_pool2d(2, stride=1),
            image.avg_pool2d((1, 3)),
            x.reshape([1, 2, 3]).global_avg_pool(),
            x.layer_norm(1, weight=Tensor.full([3], 2), bias=Tensor.full([3], 1), eps=1e-5),
            x.batch_norm(Tensor.zeros([3]), Tensor.ones([3]), weight=Tensor.full([3], 2), train=False),
            x.dropout(0.0, 7),
            x.gelu() - (-x).gelu(),
            x.gelu(approximate="tanh"),
            x.silu(),
            x.softplus(),
            x.mse_loss(zeros),
            x.l1_loss(zeros, reduction="sum"),
            x.huber_loss(zeros, delta=1.0),
            x.bce_with_logits(Tensor.full([1], 0.5), reduction="none"),
            x.cross_entropy(Tensor.from_i64([2, 0])),
            x.cross_entropy(Tensor.from_i64([2, 0]), ignore_index=0, reduction=tensorlet.Reduction.SUM),
            x.binary("ge", zeros),
        ]
        return Tensor.concat_all([flat(t) for t in out], 0)


Preprocess = tensorlet.export_preprocessor(NdOps)
