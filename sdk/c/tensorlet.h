/*
 * tensorlet.h: a small C layer over the wit-bindgen bindings of tensorlet:ml@0.2.0.
 *
 * `componentize-c bindings <wit> <world> <dir>` writes plugin.h / plugin.c for any
 * world (preprocessor, trainer, predictor, learner, model); this header wraps their
 * tensor import so that plugin code reads like the maths:
 *
 *     tl_tensor z = tl_add(tl_matmul(x, w), b);
 *     tl_tensor p = tl_softmax(z, 1);
 *
 * The N-D ops of ABI 0.2 work on any rank: i64 tensors (tl_from_i64, tl_cast),
 * tl_matmul_t, tl_permute / tl_slice / tl_pad / tl_flatten…, tl_gather and
 * tl_embedding, tl_conv2d / tl_max_pool2d / tl_layer_norm / tl_batch_norm /
 * tl_dropout and the losses (tl_cross_entropy, tl_mse_loss…), each
 * differentiable on the host.
 *
 * Two conventions make that safe:
 *
 *  - Sticky errors. A host op that fails (a shape mismatch, say) records the host's
 *    message and returns TL_NONE; every op given TL_NONE returns TL_NONE without
 *    calling the host. Check once, at the end: tl_finish() turns the first error into
 *    the export's `result` error. tl_fail() records an error of your own.
 *  - One arena per call. Every tensor the helpers create, and the inputs adopted with
 *    tl_begin() / tl_adopt() / tl_params_from(), is dropped by tl_finish() except the
 *    tensors it returns; so is every list the helpers hand out (the gradients of
 *    tl_grad()). No tl_free calls in plugin code.
 *
 * Gradients are the host's: tl_grad(loss, &params, &grads) asks the host for
 * d loss / d p of each parameter it watches (those it passed to `step` or, in
 * training mode, to `forward`); tl_watch() watches any other tensor.
 *
 * A call runs in a fresh instance, so nothing here outlives one export call.
 */
#ifndef TENSORLET_H
#define TENSORLET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An owned tensor handle; TL_NONE after an error. */
typedef tensorlet_ml_tensor_own_tensor_t tl_tensor;
#define TL_NONE ((tl_tensor){0})

/* One entry of fitted state or of parameters, as the bindings hand them over. */
typedef tensorlet_ml_tensor_named_tensor_t tl_named_tensor;

/* Named tensors received by an export (borrowed view of the bindings' list). */
typedef struct tl_params {
    const tl_named_tensor *entries;
    size_t len;
} tl_params;

/* ---- the call's arena and errors ---- */

/* Starts an export call: clears the error and the arena, adopts `x` (pass
 * TL_NONE when the export has no tensor argument, as `init`). */
void tl_begin(tl_tensor x);
/* Adopts another tensor argument (a trainer's `y`) into the arena; returns it. */
tl_tensor tl_adopt(tl_tensor t);
/* Views a list<named-tensor> argument and adopts its tensors:
 * `tl_params p = tl_params_from(params->ptr, params->len);` */
tl_params tl_params_from(const tl_named_tensor *entries, size_t len);
/* Whether no error has been recorded in this call. */
bool tl_ok(void);
/* The first error of this call, or NULL. */
const char *tl_error(void);
/* Records an error (printf format) unless one is already recorded. */
void tl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Ends an export that returns a tensor: on success stores `result` in `*ret`
 * and returns true; otherwise stores the error message in `*err` and returns
 * false. Drops every other tensor of the arena. */
bool tl_finish(tl_tensor result, tl_tensor *ret, plugin_string_t *err);
/* Ends an export that returns named tensors (fit, init, a step's params): fills
 * `*out_ptr` / `*out_len` with `n` entries (names copied) and returns true, or
 * sets `*err`. */
bool tl_finish_named(size_t n, const char *const *names, const tl_tensor *values,
                     tl_named_tensor **out_ptr, size_t *out_len, plugin_string_t *err);

/* ---- named tensors ---- */

/* The tensor called `name`, or TL_NONE and an error naming the entries present. */
tl_tensor tl_param(const tl_params *p, const char *name);
/* Whether an entry called `name` exists. */
bool tl_has_param(const tl_params *p, const char *name);

/* ---- constructors ---- */

tl_tensor tl_from_list(const uint32_t *shape, size_t ndim, const float *data, size_t n);
tl_tensor tl_zeros(const uint32_t *shape, size_t ndim);
tl_tensor tl_fill(const uint32_t *shape, size_t ndim, float value);
tl_tensor tl_randn(const uint32_t *shape, size_t ndim, float mean, float std, uint64_t seed);
tl_tensor tl_rand(const uint32_t *shape, size_t ndim, float low, float high, uint64_t seed);

/* ---- shape and data ---- */

/* Writes up to `max` dimensions into `dims`; returns the number of dimensions
 * (0 for TL_NONE). */
size_t tl_shape(tl_tensor t, uint32_t *dims, size_t max);
/* Size of dimension `axis`, or 0 and an error when there is no such axis. */
uint32_t tl_dim(tl_tensor t, size_t axis);
uint32_t tl_numel(tl_tensor t);
/* Copies the data out (row-major) into a malloc'd array the caller frees;
 * `*n` receives its length. NULL for TL_NONE. */
float *tl_to_list(tl_tensor t, size_t *n);
/* The value of a one-element tensor (a loss), or NaN and an error otherwise. */
float tl_item(tl_tensor t);

/* ---- ops (each returns a new tensor, or TL_NONE after an error) ---- */

tl_tensor tl_matmul(tl_tensor a, tl_tensor b);
tl_tensor tl_transpose(tl_tensor a);
tl_tensor tl_reshape(tl_tensor a, const uint32_t *shape, size_t ndim);
/* Element-wise with NumPy broadcasting. */
tl_tensor tl_add(tl_tensor a, tl_tensor b);
tl_tensor tl_sub(tl_tensor a, tl_tensor b);
tl_tensor tl_mul(tl_tensor a, tl_tensor b);
tl_tensor tl_div(tl_tensor a, tl_tensor b);
tl_tensor tl_add_scalar(tl_tensor a, float v);
tl_tensor tl_mul_scalar(tl_tensor a, float v);
/* Unary maps: TENSORLET_ML_TENSOR_UNARY_OP_RELU, ..._EXP, ... */
tl_tensor tl_map(tl_tensor a, tensorlet_ml_tensor_unary_op_t op);
tl_tensor tl_relu(tl_tensor a);
tl_tensor tl_exp(tl_tensor a);
tl_tensor tl_log(tl_tensor a);
tl_tensor tl_sqrt(tl_tensor a);
tl_tensor tl_square(tl_tensor a);
tl_tensor tl_neg(tl_tensor a);
/* Reductions along `axis`. */
tl_tensor tl_sum(tl_tensor a, uint32_t axis, bool keepdims);
tl_tensor tl_mean(tl_tensor a, uint32_t axis, bool keepdims);
tl_tensor tl_max(tl_tensor a, uint32_t axis, bool keepdims);
tl_tensor tl_min(tl_tensor a, uint32_t axis, bool keepdims);
tl_tensor tl_argmax(tl_tensor a, uint32_t axis, bool keepdims);
tl_tensor tl_softmax(tl_tensor a, uint32_t axis);
tl_tensor tl_log_softmax(tl_tensor a, uint32_t axis);
tl_tensor tl_one_hot(tl_tensor a, uint32_t classes);
tl_tensor tl_slice_rows(tl_tensor a, uint32_t start, uint32_t end);
tl_tensor tl_gather_rows(tl_tensor a, const uint32_t *indices, size_t n);
tl_tensor tl_concat(tl_tensor a, tl_tensor b, uint32_t axis);

/* ---- N-D ops (ABI 0.2): dtypes ----
 *
 * Axes are 0-based; enums are the bindings' constants (TENSORLET_ML_TENSOR_...),
 * with short names below for the common ones. An optional tensor argument
 * (a bias, a layer norm's weight) is TL_NONE for none: after an error every op
 * returns TL_NONE without calling the host, so TL_NONE there never hides one. */

typedef tensorlet_ml_tensor_dtype_t tl_dtype;
#define TL_F32 TENSORLET_ML_TENSOR_DTYPE_F32
#define TL_I64 TENSORLET_ML_TENSOR_DTYPE_I64

typedef tensorlet_ml_tensor_reduction_t tl_reduction;
#define TL_REDUCE_MEAN TENSORLET_ML_TENSOR_REDUCTION_MEAN
#define TL_REDUCE_SUM TENSORLET_ML_TENSOR_REDUCTION_SUM
#define TL_REDUCE_NONE TENSORLET_ML_TENSOR_REDUCTION_NONE

/* An i64 tensor (class indices, token ids, the indices of tl_gather). */
tl_tensor tl_from_i64(const uint32_t *shape, size_t ndim, const int64_t *data, size_t n);
/* `0, 1, …, n - 1` as an i64 tensor [n]. */
tl_tensor tl_arange(uint32_t n);
/* The element type, TL_F32 or TL_I64 (TL_F32 for TL_NONE). */
tl_dtype tl_dtype_of(tl_tensor t);
/* Copies the data out as integers into a malloc'd array the caller frees; `*n`
 * receives its length. NULL and an error when an f32 element is not an integer. */
int64_t *tl_to_i64_list(tl_tensor t, size_t *n);
/* `t` as `dtype`. No gradient flows through a cast. */
tl_tensor tl_cast(tl_tensor t, tl_dtype dtype);

/* ---- N-D ops: linear algebra and element-wise ---- */

/* Batched matrix product over the last two axes (leading axes broadcast),
 * transposing either operand's last two axes first: tl_matmul_t(q, k, false,
 * true) is q·kᵀ. */
tl_tensor tl_matmul_t(tl_tensor a, tl_tensor b, bool transpose_a, bool transpose_b);
/* An element-wise binary op, TENSORLET_ML_TENSOR_BINARY_OP_..., with broadcasting;
 * the comparisons give 1/0 masks. */
tl_tensor tl_binary(tl_tensor a, tensorlet_ml_tensor_binary_op_t op, tl_tensor b);
tl_tensor tl_maximum(tl_tensor a, tl_tensor b);
tl_tensor tl_minimum(tl_tensor a, tl_tensor b);
/* An op with a scalar on every element, TENSORLET_ML_TENSOR_SCALAR_OP_... */
tl_tensor tl_scalar(tl_tensor a, tensorlet_ml_tensor_scalar_op_t op, float v);
/* aᵛ element-wise. */
tl_tensor tl_pow_scalar(tl_tensor a, float v);
/* a where a > 0, else slope·a. */
tl_tensor tl_leaky_relu(tl_tensor a, float slope);
/* An activation, TENSORLET_ML_TENSOR_ACTIVATION_GELU, ..._GELU_TANH, ..._SILU,
 * ..._SOFTPLUS. */
tl_tensor tl_activate(tl_tensor a, tensorlet_ml_tensor_activation_t op);
tl_tensor tl_gelu(tl_tensor a);
tl_tensor tl_silu(tl_tensor a);
/* Every element limited to low..=high (-INFINITY / INFINITY for no bound). */
tl_tensor tl_clamp(tl_tensor a, float low, float high);
/* a where `mask` is nonzero, `otherwise` elsewhere (all three broadcast). */
tl_tensor tl_select(tl_tensor a, tl_tensor mask, tl_tensor otherwise);
/* `value` where `mask` (broadcast) is nonzero. */
tl_tensor tl_masked_fill(tl_tensor a, tl_tensor mask, float value);
/* Running sums along `axis`, from the end when `reverse`. */
tl_tensor tl_cumsum(tl_tensor a, uint32_t axis, bool reverse);

/* ---- N-D ops: shape ---- */

/* The axes reordered: output axis i is input axis axes[i]. */
tl_tensor tl_permute(tl_tensor a, const uint32_t *axes, size_t n);
/* Elements start..end along `axis`, every `step`-th (step >= 1). */
tl_tensor tl_slice(tl_tensor a, uint32_t axis, uint32_t start, uint32_t end, uint32_t step);
/* The `n` tensors `parts` joined along `axis`. */
tl_tensor tl_concat_all(const tl_tensor *parts, size_t n, uint32_t axis);
/* Padded with `value`: pads[2i], pads[2i + 1] are (before, after) for axis i;
 * one pair per axis (n_pairs is the rank). */
tl_tensor tl_pad(tl_tensor a, const uint32_t *pads, size_t n_pairs, float value);
/* Axes start..=end merged into one. */
tl_tensor tl_flatten(tl_tensor a, uint32_t start, uint32_t end);
/* Axis `axis`, which must have size 1, removed. */
tl_tensor tl_squeeze(tl_tensor a, uint32_t axis);
/* A new axis of size 1 at `axis`. */
tl_tensor tl_unsqueeze(tl_tensor a, uint32_t axis);
/* Broadcast to `shape` (NumPy rules). */
tl_tensor tl_broadcast_to(tl_tensor a, const uint32_t *shape, size_t ndim);

/* ---- N-D ops: indexing (indices are i64 tensors: tl_from_i64) ---- */

/* The entries at the 1-D `indices` along `axis`. */
tl_tensor tl_index_select(tl_tensor a, uint32_t axis, tl_tensor indices);
/* Rows of the table [vocab, dim] at `ids` (any shape): ids.shape + [dim]. */
tl_tensor tl_embedding(tl_tensor table, tl_tensor ids);
/* PyTorch's gather along `axis`, `indices` of the same rank. */
tl_tensor tl_gather(tl_tensor a, uint32_t axis, tl_tensor indices);
/* a plus `src` added at `indices` along `axis` (PyTorch's scatter_add). */
tl_tensor tl_scatter_add(tl_tensor a, uint32_t axis, tl_tensor indices, tl_tensor src);
/* a plus the slices of `src` added at the 1-D `indices` (PyTorch's index_add). */
tl_tensor tl_index_add(tl_tensor a, uint32_t axis, tl_tensor indices, tl_tensor src);

/* ---- N-D ops: layers ---- */

/* Options of tl_conv2d, pairs (height, width). A zero stride, dilation or groups
 * means 1, so `(tl_conv2d_options){.padding = {1, 1}}` is a 3x3 "same" conv and
 * `(tl_conv2d_options){0}` is PyTorch's default. */
typedef struct tl_conv2d_options {
    uint32_t stride[2];
    uint32_t padding[2];
    uint32_t dilation[2];
    uint32_t groups;
} tl_conv2d_options;
/* 2-D convolution of NCHW input with weight [out, in / groups, kh, kw] and
 * bias [out] (or TL_NONE). */
tl_tensor tl_conv2d(tl_tensor x, tl_tensor weight, tl_tensor bias, tl_conv2d_options o);
/* Options of tl_conv1d; a zero stride, dilation or groups means 1. */
typedef struct tl_conv1d_options {
    uint32_t stride;
    uint32_t padding;
    uint32_t dilation;
    uint32_t groups;
} tl_conv1d_options;
/* 1-D convolution of [batch, channels, length] with weight [out, in / groups, k]. */
tl_tensor tl_conv1d(tl_tensor x, tl_tensor weight, tl_tensor bias, tl_conv1d_options o);
/* A pooling window, pairs (height, width); a zero stride means the kernel
 * (PyTorch's default): `(tl_pool2d_options){.kernel = {2, 2}}`. */
typedef struct tl_pool2d_options {
    uint32_t kernel[2];
    uint32_t stride[2];
    uint32_t padding[2];
} tl_pool2d_options;
/* Maximum over each window of an NCHW tensor (padding never wins). */
tl_tensor tl_max_pool2d(tl_tensor x, tl_pool2d_options o);
/* Mean over each window of an NCHW tensor (padding counts in the divisor). */
tl_tensor tl_avg_pool2d(tl_tensor x, tl_pool2d_options o);
/* [batch, channels, ...] -> [batch, channels]: the mean over the rest. */
tl_tensor tl_global_avg_pool(tl_tensor x);
/* Normalized over the last `axes` axes, then · weight + bias (each TL_NONE or
 * shaped like those axes). */
tl_tensor tl_layer_norm(tl_tensor x, uint32_t axes, tl_tensor weight, tl_tensor bias, float eps);
/* Batch normalization per channel of [batch, channels, ...]; weight and bias are
 * [channels] or TL_NONE. running_mean and running_var are `state.…` params as
 * `forward` received them: in `train` mode the batch's statistics normalize and
 * the host keeps the running ones updated; otherwise the running ones normalize.
 * PyTorch's defaults: momentum 0.1, eps 1e-5. */
tl_tensor tl_batch_norm(tl_tensor x, tl_tensor weight, tl_tensor bias, tl_tensor running_mean,
                        tl_tensor running_var, bool train, float momentum, float eps);
/* Each element zeroed with probability p, the rest scaled by 1/(1 - p); the host
 * mixes `seed` with the training step. Apply it only in train mode. */
tl_tensor tl_dropout(tl_tensor x, float p, uint64_t seed);

/* ---- N-D ops: losses (the first argument holds the predictions or logits) ---- */

/* Options of tl_cross_entropy; TL_CROSS_ENTROPY_DEFAULT is PyTorch's default
 * (class axis 1, no weights, no smoothing, nothing ignored, the mean). */
typedef struct tl_cross_entropy_options {
    uint32_t axis;         /* the class axis of the logits */
    tl_tensor weights;     /* [classes], or TL_NONE */
    float label_smoothing; /* 0..=1 */
    bool has_ignore_index; /* targets equal to ignore_index count for nothing */
    int64_t ignore_index;
    tl_reduction reduction;
} tl_cross_entropy_options;
#define TL_CROSS_ENTROPY_DEFAULT \
    ((tl_cross_entropy_options){.axis = 1, .reduction = TL_REDUCE_MEAN})
/* Cross-entropy of `logits` against class indices (i64, or f32 integers; the
 * logits' shape without the class axis) or probabilities (the logits' shape). */
tl_tensor tl_cross_entropy(tl_tensor logits, tl_tensor target, tl_cross_entropy_options o);
/* Binary cross-entropy of `logits` against probabilities (broadcast). */
tl_tensor tl_bce_with_logits(tl_tensor logits, tl_tensor target, tl_reduction reduction);
/* Squared error against `target` (broadcast). */
tl_tensor tl_mse_loss(tl_tensor pred, tl_tensor target, tl_reduction reduction);
/* Absolute error against `target` (broadcast). */
tl_tensor tl_l1_loss(tl_tensor pred, tl_tensor target, tl_reduction reduction);
/* Huber loss against `target` with threshold delta > 0. */
tl_tensor tl_huber_loss(tl_tensor pred, tl_tensor target, float delta, tl_reduction reduction);

/* ---- gradients (computed by the host) ---- */

/* A watched copy of `t`, named `name`: tl_grad_of() can differentiate with
 * respect to it. An error when `name` is already watched in this call. */
tl_tensor tl_watch(tl_tensor t, const char *name);
/* The gradients of the one-element tensor `loss` with respect to each entry of
 * `params` that the host watches, skipping optimizer state (`opt.…`): `*grads`
 * gets the same names, each gradient with its parameter's shape, valid until
 * tl_finish(). Returns false, with `*grads` empty and the host's refusal recorded
 * as the call's error (the loss does not depend on an entry, or only through an
 * op without a gradient: argmax, one-hot, relu-mask), or after an earlier error. */
bool tl_grad(tl_tensor loss, const tl_params *params, tl_params *grads);
/* As tl_grad(), with respect to the watched tensors `names` (n of them), in that
 * order; every watched tensor when n is 0. */
bool tl_grad_of(tl_tensor loss, const char *const *names, size_t n, tl_params *grads);

/* ---- seeds ---- */

/* An independent seed for stream `stream` from `seed` (SplitMix64), so that each
 * layer's initial weights get their own seed from one data-spec seed: the Rust
 * SDK's derive_seed, bit for bit. */
uint64_t tl_derive_seed(uint64_t seed, uint64_t stream);

/* ---- configuration (the stage's config table as a JSON object) ---- */

/* The top-level number `key` of the JSON object `config`, or `fallback` when the
 * key is absent; records an error when the value is not a number. */
double tl_config_number(const plugin_string_t *config, const char *key, double fallback);

#ifdef __cplusplus
}
#endif

#endif /* TENSORLET_H */
