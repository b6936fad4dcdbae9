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
