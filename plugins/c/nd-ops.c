/*
 * Preprocessor: every N-D op of the SDK once, for `tests/polyglot.rs`.
 *
 * `transform` runs each N-D wrapper of `tensorlet.h` on `x` (the test passes
 * [[1, -2, 3], [-4, 5, -6]]) and returns every result flattened and joined into one
 * 1-D tensor, in the order of `plugins/python/nd-ops/app.py` and
 * `plugins/js/nd-ops.js`; the test checks the values against ones it computes
 * itself. `fit` learns nothing.
 */
#include <stdlib.h>

#include "tensorlet.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static tl_tensor flat(tl_tensor t) {
    uint32_t n = tl_numel(t);
    return tl_reshape(t, &n, 1);
}

bool exports_tensorlet_ml_preprocess_fit(plugin_string_t *config, tl_tensor x,
                                         exports_tensorlet_ml_preprocess_list_named_tensor_t *ret,
                                         plugin_string_t *err) {
    (void)config;
    tl_begin(x);
    return tl_finish_named(0, NULL, NULL, &ret->ptr, &ret->len, err);
}

bool exports_tensorlet_ml_preprocess_transform(
    plugin_string_t *config, exports_tensorlet_ml_preprocess_list_named_tensor_t *state,
    tl_tensor x, tl_tensor *ret, plugin_string_t *err) {
    (void)config;
    tl_begin(x);
    tl_params_from(state->ptr, state->len);

    uint32_t one[] = {1}, two[] = {2}, three[] = {3}, grid[] = {2, 3}, column[] = {2, 1};
    int64_t order[] = {2, 0};
    tl_tensor i64 = tl_from_i64(two, 1, order, 2);
    size_t n_back;
    int64_t *back = tl_to_i64_list(i64, &n_back);
    if (tl_ok() && (tl_dtype_of(i64) != TL_I64 || n_back != 2 || back[0] != 2 || back[1] != 0)) {
        tl_fail("nd-ops: i64 round trip gave dtype %d and %zu values", (int)tl_dtype_of(i64),
                n_back);
    }
    free(back);

    tl_tensor zeros = tl_zeros(one, 1);
    uint32_t image_shape[] = {1, 1, 2, 3}, seq_shape[] = {1, 2, 3};
    tl_tensor image = tl_reshape(x, image_shape, 4), seq = tl_reshape(x, seq_shape, 3);

    int64_t rows[] = {1, 2}, ids[] = {1, 0, 1}, twice[] = {1, 1}, where[] = {0, 0, 1, 2, 2, 2};
    uint32_t axes[] = {1, 0}, pads[] = {0, 0, 1, 0};
    float counting[] = {1, 2, 3}, taps[] = {1, 2, 3, 4};
    uint32_t kernel1d[] = {1, 2, 2}, kernel2d[] = {1, 1, 1, 2};
    tl_tensor halves[] = {tl_slice(x, 0, 1, 2, 1), tl_slice(x, 0, 0, 1, 1)};
    tl_cross_entropy_options ignore_first = TL_CROSS_ENTROPY_DEFAULT;
    ignore_first.has_ignore_index = true;
    ignore_first.ignore_index = 0;
    ignore_first.reduction = TL_REDUCE_SUM;

    tl_tensor out[] = {
        tl_cast(i64, TL_F32),
        tl_cast(tl_arange(3), TL_F32),
        tl_index_select(x, 1, i64),
        tl_gather(x, 1, tl_from_i64(column, 2, rows, 2)),
        tl_matmul_t(x, x, false, true),
        tl_maximum(x, tl_zeros(three, 1)),
        tl_scalar(x, TENSORLET_ML_TENSOR_SCALAR_OP_MIN, 0.0f),
        tl_binary(x, TENSORLET_ML_TENSOR_BINARY_OP_LT, zeros),
        tl_pow_scalar(x, 2.0f),
        tl_leaky_relu(x, 0.5f),
        tl_clamp(x, -1.0f, 2.0f),
        tl_select(x, tl_binary(x, TENSORLET_ML_TENSOR_BINARY_OP_GT, zeros), tl_fill(one, 1, -1.0f)),
        tl_masked_fill(x, tl_binary(x, TENSORLET_ML_TENSOR_BINARY_OP_LT, zeros), 9.0f),
        tl_cumsum(x, 1, true),
        tl_permute(x, axes, 2),
        tl_slice(x, 1, 0, 3, 2),
        tl_pad(x, pads, 2, 7.0f),
        tl_concat_all(halves, 2, 0),
        tl_broadcast_to(tl_unsqueeze(tl_from_list(three, 1, counting, 3), 0), grid, 2),
        tl_flatten(tl_squeeze(tl_unsqueeze(x, 0), 0), 0, 1),
        tl_embedding(x, tl_from_i64(three, 1, ids, 3)),
        tl_index_add(tl_zeros(grid, 2), 0, tl_from_i64(two, 1, twice, 2), x),
        tl_scatter_add(tl_zeros(grid, 2), 1, tl_from_i64(grid, 2, where, 6), x),
        tl_conv1d(seq, tl_from_list(kernel1d, 3, taps, 4), tl_fill(one, 1, 0.5f),
                  (tl_conv1d_options){0}),
        tl_conv2d(image, tl_fill(kernel2d, 4, 1.0f), TL_NONE,
                  (tl_conv2d_options){.padding = {0, 1}}),
        tl_max_pool2d(image, (tl_pool2d_options){.kernel = {2, 2}, .stride = {1, 1}}),
        tl_avg_pool2d(image, (tl_pool2d_options){.kernel = {1, 3}}),
        tl_global_avg_pool(seq),
        tl_layer_norm(x, 1, tl_fill(three, 1, 2.0f), tl_fill(three, 1, 1.0f), 1e-5f),
        tl_batch_norm(x, tl_fill(three, 1, 2.0f), TL_NONE, tl_zeros(three, 1),
                      tl_fill(three, 1, 1.0f), false, 0.1f, 1e-5f),
        tl_dropout(x, 0.0f, 7),
        tl_sub(tl_gelu(x), tl_gelu(tl_neg(x))),
        tl_activate(x, TENSORLET_ML_TENSOR_ACTIVATION_GELU_TANH),
        tl_silu(x),
        tl_activate(x, TENSORLET_ML_TENSOR_ACTIVATION_SOFTPLUS),
        tl_mse_loss(x, zeros, TL_REDUCE_MEAN),
        tl_l1_loss(x, zeros, TL_REDUCE_SUM),
        tl_huber_loss(x, zeros, 1.0f, TL_REDUCE_MEAN),
        tl_bce_with_logits(x, tl_fill(one, 1, 0.5f), TL_REDUCE_NONE),
        tl_cross_entropy(x, i64, TL_CROSS_ENTROPY_DEFAULT),
        tl_cross_entropy(x, i64, ignore_first),
        tl_binary(x, TENSORLET_ML_TENSOR_BINARY_OP_GE, zeros),
    };
    for (size_t i = 0; i < COUNT(out); i++) {
        out[i] = flat(out[i]);
    }
    return tl_finish(tl_concat_all(out, COUNT(out), 0), ret, err);
}
