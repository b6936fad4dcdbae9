/* tensorlet.c: the implementation of tensorlet.h. Compile it with your plugin. */
#include "tensorlet.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the call's arena and errors ---- */

static char error_message[1024];
static bool failed;

static int32_t *arena;
static size_t arena_len, arena_cap;

/* Lists the host returned (gradients): their entries and names are freed by
 * tl_finish(), their tensors are in the arena. */
static tensorlet_ml_tensor_list_named_tensor_t *lists;
static size_t lists_len, lists_cap;

static tl_tensor track(tl_tensor t) {
    if (t.__handle == 0) {
        return t;
    }
    if (arena_len == arena_cap) {
        size_t cap = arena_cap ? arena_cap * 2 : 64;
        int32_t *grown = realloc(arena, cap * sizeof *grown);
        if (!grown) {
            tl_fail("out of memory tracking tensors");
            return t;
        }
        arena = grown;
        arena_cap = cap;
    }
    arena[arena_len++] = t.__handle;
    return t;
}

/* Keeps `list` for release(); false (the list freed) when out of memory. */
static bool keep_list(tensorlet_ml_tensor_list_named_tensor_t list) {
    if (lists_len == lists_cap) {
        size_t cap = lists_cap ? lists_cap * 2 : 8;
        tensorlet_ml_tensor_list_named_tensor_t *grown = realloc(lists, cap * sizeof *grown);
        if (!grown) {
            tl_fail("out of memory tracking lists");
            return false;
        }
        lists = grown;
        lists_cap = cap;
    }
    lists[lists_len++] = list;
    return true;
}

static void free_list_entries(tensorlet_ml_tensor_list_named_tensor_t *list) {
    for (size_t i = 0; i < list->len; i++) {
        plugin_string_free(&list->ptr[i].name);
    }
    free(list->ptr);
    list->ptr = NULL;
    list->len = 0;
}

/* Drops every tracked handle except those in `keep`, and frees the lists. */
static void release(const tl_tensor *keep, size_t n_keep) {
    for (size_t i = 0; i < arena_len; i++) {
        bool kept = false;
        for (size_t k = 0; k < n_keep; k++) {
            kept = kept || keep[k].__handle == arena[i];
        }
        /* The same handle is never tracked twice, except by a careless adopt. */
        for (size_t j = 0; j < i && !kept; j++) {
            kept = arena[j] == arena[i];
        }
        if (!kept) {
            tensorlet_ml_tensor_tensor_drop_own((tl_tensor){arena[i]});
        }
    }
    arena_len = 0;
    for (size_t i = 0; i < lists_len; i++) {
        free_list_entries(&lists[i]);
    }
    lists_len = 0;
}

void tl_begin(tl_tensor x) {
    failed = false;
    error_message[0] = '\0';
    arena_len = 0;
    lists_len = 0;
    track(x);
}

tl_tensor tl_adopt(tl_tensor t) { return track(t); }

tl_params tl_params_from(const tl_named_tensor *entries, size_t len) {
    for (size_t i = 0; i < len; i++) {
        track(entries[i].value);
    }
    return (tl_params){entries, len};
}

bool tl_ok(void) { return !failed; }

const char *tl_error(void) { return failed ? error_message : NULL; }

void tl_fail(const char *fmt, ...) {
    if (failed) {
        return;
    }
    failed = true;
    va_list args;
    va_start(args, fmt);
    vsnprintf(error_message, sizeof error_message, fmt, args);
    va_end(args);
}

bool tl_finish(tl_tensor result, tl_tensor *ret, plugin_string_t *err) {
    if (!failed && result.__handle == 0) {
        tl_fail("the plugin returned no tensor");
    }
    if (failed) {
        release(NULL, 0);
        plugin_string_dup(err, error_message);
        return false;
    }
    release(&result, 1);
    *ret = result;
    return true;
}

bool tl_finish_named(size_t n, const char *const *names, const tl_tensor *values,
                     tl_named_tensor **out_ptr, size_t *out_len, plugin_string_t *err) {
    for (size_t i = 0; i < n && !failed; i++) {
        if (values[i].__handle == 0) {
            tl_fail("no tensor for `%s`", names[i]);
        }
    }
    tl_named_tensor *entries = NULL;
    if (!failed && n > 0) {
        entries = calloc(n, sizeof *entries);
        if (!entries) {
            tl_fail("out of memory returning %zu tensors", n);
        }
    }
    if (failed) {
        release(NULL, 0);
        plugin_string_dup(err, error_message);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        plugin_string_dup(&entries[i].name, names[i]);
        entries[i].value = values[i];
    }
    release(values, n);
    *out_ptr = entries;
    *out_len = n;
    return true;
}

/* ---- named tensors ---- */

static bool name_is(const plugin_string_t *s, const char *name) {
    size_t n = strlen(name);
    return s->len == n && memcmp(s->ptr, name, n) == 0;
}

bool tl_has_param(const tl_params *p, const char *name) {
    for (size_t i = 0; i < p->len; i++) {
        if (name_is(&p->entries[i].name, name)) {
            return true;
        }
    }
    return false;
}

tl_tensor tl_param(const tl_params *p, const char *name) {
    for (size_t i = 0; i < p->len; i++) {
        if (name_is(&p->entries[i].name, name)) {
            return p->entries[i].value;
        }
    }
    char present[512] = "";
    size_t used = 0;
    for (size_t i = 0; i < p->len && used + 1 < sizeof present; i++) {
        int w = snprintf(present + used, sizeof present - used, "%s`%.*s`", i ? ", " : "",
                         (int)p->entries[i].name.len, (const char *)p->entries[i].name.ptr);
        used += w > 0 ? (size_t)w : 0;
    }
    tl_fail("no tensor named `%s` (present: %s)", name, p->len ? present : "none");
    return TL_NONE;
}

/* ---- calling the host ---- */

#define BORROW(t) tensorlet_ml_tensor_borrow_tensor(t)

/* Turns a fallible host call's outcome into a tracked tensor or a recorded error. */
static tl_tensor checked(bool ok, tl_tensor out, plugin_string_t *err) {
    if (!ok) {
        if (!failed) {
            tl_fail("%.*s", (int)err->len, (const char *)err->ptr);
        }
        plugin_string_free(err);
        return TL_NONE;
    }
    return track(out);
}

static bool live(tl_tensor a) { return !failed && a.__handle != 0; }

static tensorlet_ml_tensor_shape_t shape_arg(const uint32_t *shape, size_t ndim) {
    return (tensorlet_ml_tensor_shape_t){(uint32_t *)shape, ndim};
}

/* ---- constructors ---- */

tl_tensor tl_from_list(const uint32_t *shape, size_t ndim, const float *data, size_t n) {
    if (failed) return TL_NONE;
    tensorlet_ml_tensor_shape_t s = shape_arg(shape, ndim);
    plugin_list_f32_t d = {(float *)data, n};
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_static_tensor_from_list(&s, &d, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_zeros(const uint32_t *shape, size_t ndim) {
    if (failed) return TL_NONE;
    tensorlet_ml_tensor_shape_t s = shape_arg(shape, ndim);
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_static_tensor_zeros(&s, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_fill(const uint32_t *shape, size_t ndim, float value) {
    if (failed) return TL_NONE;
    tensorlet_ml_tensor_shape_t s = shape_arg(shape, ndim);
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_static_tensor_fill(&s, value, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_randn(const uint32_t *shape, size_t ndim, float mean, float std, uint64_t seed) {
    if (failed) return TL_NONE;
    tensorlet_ml_tensor_shape_t s = shape_arg(shape, ndim);
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_static_tensor_random_normal(&s, mean, std, seed, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_rand(const uint32_t *shape, size_t ndim, float low, float high, uint64_t seed) {
    if (failed) return TL_NONE;
    tensorlet_ml_tensor_shape_t s = shape_arg(shape, ndim);
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_static_tensor_random_uniform(&s, low, high, seed, &out, &err);
    return checked(ok, out, &err);
}

/* ---- shape and data ---- */

size_t tl_shape(tl_tensor t, uint32_t *dims, size_t max) {
    if (t.__handle == 0) return 0;
    tensorlet_ml_tensor_shape_t s;
    tensorlet_ml_tensor_method_tensor_shape(BORROW(t), &s);
    for (size_t i = 0; i < s.len && i < max; i++) {
        dims[i] = s.ptr[i];
    }
    size_t ndim = s.len;
    tensorlet_ml_tensor_shape_free(&s);
    return ndim;
}

uint32_t tl_dim(tl_tensor t, size_t axis) {
    if (!live(t)) return 0;
    uint32_t dims[8];
    size_t ndim = tl_shape(t, dims, 8);
    if (axis >= ndim || axis >= 8) {
        tl_fail("axis %zu is out of range for a tensor with %zu dimensions", axis, ndim);
        return 0;
    }
    return dims[axis];
}

uint32_t tl_numel(tl_tensor t) {
    if (t.__handle == 0) return 0;
    return tensorlet_ml_tensor_method_tensor_numel(BORROW(t));
}

float *tl_to_list(tl_tensor t, size_t *n) {
    *n = 0;
    if (!live(t)) return NULL;
    plugin_list_f32_t out;
    tensorlet_ml_tensor_method_tensor_to_list(BORROW(t), &out);
    *n = out.len;
    return out.ptr;
}

float tl_item(tl_tensor t) {
    size_t n;
    float *data = tl_to_list(t, &n);
    float v = n == 1 ? data[0] : NAN;
    if (data && n != 1) {
        tl_fail("item: the tensor has %zu elements, not one", n);
    }
    free(data);
    return v;
}

/* ---- ops ---- */

#define BINARY(fn, method)                                                              \
    tl_tensor fn(tl_tensor a, tl_tensor b) {                                            \
        if (!live(a) || !live(b)) return TL_NONE;                                       \
        tl_tensor out;                                                                  \
        plugin_string_t err;                                                            \
        bool ok = tensorlet_ml_tensor_method_tensor_##method(BORROW(a), BORROW(b), &out, \
                                                             &err);                     \
        return checked(ok, out, &err);                                                  \
    }

BINARY(tl_matmul, matmul)
BINARY(tl_add, add)
BINARY(tl_sub, sub)
BINARY(tl_mul, mul)
BINARY(tl_div, div)

tl_tensor tl_transpose(tl_tensor a) {
    if (!live(a)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_transpose(BORROW(a), &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_reshape(tl_tensor a, const uint32_t *shape, size_t ndim) {
    if (!live(a)) return TL_NONE;
    tensorlet_ml_tensor_shape_t s = shape_arg(shape, ndim);
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_reshape(BORROW(a), &s, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_add_scalar(tl_tensor a, float v) {
    if (!live(a)) return TL_NONE;
    return track(tensorlet_ml_tensor_method_tensor_add_scalar(BORROW(a), v));
}

tl_tensor tl_mul_scalar(tl_tensor a, float v) {
    if (!live(a)) return TL_NONE;
    return track(tensorlet_ml_tensor_method_tensor_mul_scalar(BORROW(a), v));
}

tl_tensor tl_map(tl_tensor a, tensorlet_ml_tensor_unary_op_t op) {
    if (!live(a)) return TL_NONE;
    return track(tensorlet_ml_tensor_method_tensor_map(BORROW(a), op));
}

tl_tensor tl_relu(tl_tensor a) { return tl_map(a, TENSORLET_ML_TENSOR_UNARY_OP_RELU); }
tl_tensor tl_exp(tl_tensor a) { return tl_map(a, TENSORLET_ML_TENSOR_UNARY_OP_EXP); }
tl_tensor tl_log(tl_tensor a) { return tl_map(a, TENSORLET_ML_TENSOR_UNARY_OP_LOG); }
tl_tensor tl_sqrt(tl_tensor a) { return tl_map(a, TENSORLET_ML_TENSOR_UNARY_OP_SQRT); }
tl_tensor tl_square(tl_tensor a) { return tl_map(a, TENSORLET_ML_TENSOR_UNARY_OP_SQUARE); }
tl_tensor tl_neg(tl_tensor a) { return tl_map(a, TENSORLET_ML_TENSOR_UNARY_OP_NEG); }

static tl_tensor reduce(tl_tensor a, tensorlet_ml_tensor_reduce_op_t op, uint32_t axis,
                        bool keepdims) {
    if (!live(a)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_reduce(BORROW(a), op, axis, keepdims, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_sum(tl_tensor a, uint32_t axis, bool keepdims) {
    return reduce(a, TENSORLET_ML_TENSOR_REDUCE_OP_SUM, axis, keepdims);
}
tl_tensor tl_mean(tl_tensor a, uint32_t axis, bool keepdims) {
    return reduce(a, TENSORLET_ML_TENSOR_REDUCE_OP_MEAN, axis, keepdims);
}
tl_tensor tl_max(tl_tensor a, uint32_t axis, bool keepdims) {
    return reduce(a, TENSORLET_ML_TENSOR_REDUCE_OP_MAX, axis, keepdims);
}
tl_tensor tl_min(tl_tensor a, uint32_t axis, bool keepdims) {
    return reduce(a, TENSORLET_ML_TENSOR_REDUCE_OP_MIN, axis, keepdims);
}

tl_tensor tl_argmax(tl_tensor a, uint32_t axis, bool keepdims) {
    if (!live(a)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_argmax(BORROW(a), axis, keepdims, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_softmax(tl_tensor a, uint32_t axis) {
    if (!live(a)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_softmax(BORROW(a), axis, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_log_softmax(tl_tensor a, uint32_t axis) {
    if (!live(a)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_log_softmax(BORROW(a), axis, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_one_hot(tl_tensor a, uint32_t classes) {
    if (!live(a)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_one_hot(BORROW(a), classes, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_slice_rows(tl_tensor a, uint32_t start, uint32_t end) {
    if (!live(a)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_slice_rows(BORROW(a), start, end, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_gather_rows(tl_tensor a, const uint32_t *indices, size_t n) {
    if (!live(a)) return TL_NONE;
    plugin_list_u32_t idx = {(uint32_t *)indices, n};
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_gather_rows(BORROW(a), &idx, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_concat(tl_tensor a, tl_tensor b, uint32_t axis) {
    if (!live(a) || !live(b)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_concat(BORROW(a), BORROW(b), axis, &out, &err);
    return checked(ok, out, &err);
}

/* ---- N-D ops: dtypes ---- */

/* An optional tensor argument: NULL (none) for TL_NONE, else the borrow in `*slot`. */
static tensorlet_ml_tensor_borrow_tensor_t *maybe(tl_tensor t,
                                                  tensorlet_ml_tensor_borrow_tensor_t *slot) {
    if (t.__handle == 0) return NULL;
    *slot = BORROW(t);
    return slot;
}

/* One number for both, 0 meaning 1 (stride, dilation, groups). */
static uint32_t or_one(uint32_t v) { return v ? v : 1; }

static plugin_tuple2_u32_u32_t pair_of(const uint32_t p[2]) {
    return (plugin_tuple2_u32_u32_t){p[0], p[1]};
}

tl_tensor tl_from_i64(const uint32_t *shape, size_t ndim, const int64_t *data, size_t n) {
    if (failed) return TL_NONE;
    tensorlet_ml_tensor_shape_t s = shape_arg(shape, ndim);
    plugin_list_s64_t d = {(int64_t *)data, n};
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_static_tensor_from_i64_list(&s, &d, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_arange(uint32_t n) {
    if (failed) return TL_NONE;
    int64_t *data = n ? malloc(n * sizeof *data) : NULL;
    if (n && !data) {
        tl_fail("out of memory making arange(%u)", (unsigned)n);
        return TL_NONE;
    }
    for (uint32_t i = 0; i < n; i++) {
        data[i] = i;
    }
    tl_tensor out = tl_from_i64(&n, 1, data, n);
    free(data);
    return out;
}

tl_dtype tl_dtype_of(tl_tensor t) {
    if (t.__handle == 0) return TL_F32;
    return tensorlet_ml_tensor_method_tensor_dtype(BORROW(t));
}

int64_t *tl_to_i64_list(tl_tensor t, size_t *n) {
    *n = 0;
    if (!live(t)) return NULL;
    plugin_list_s64_t out;
    plugin_string_t err;
    if (!tensorlet_ml_tensor_method_tensor_to_i64_list(BORROW(t), &out, &err)) {
        tl_fail("%.*s", (int)err.len, (const char *)err.ptr);
        plugin_string_free(&err);
        return NULL;
    }
    *n = out.len;
    return out.ptr;
}

tl_tensor tl_cast(tl_tensor t, tl_dtype dtype) {
    if (!live(t)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_cast(BORROW(t), dtype, &out, &err);
    return checked(ok, out, &err);
}

/* ---- N-D ops: linear algebra and element-wise ---- */

tl_tensor tl_matmul_t(tl_tensor a, tl_tensor b, bool transpose_a, bool transpose_b) {
    if (!live(a) || !live(b)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_matmul_transposed(BORROW(a), BORROW(b), transpose_a,
                                                                  transpose_b, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_binary(tl_tensor a, tensorlet_ml_tensor_binary_op_t op, tl_tensor b) {
    if (!live(a) || !live(b)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_binary(BORROW(a), op, BORROW(b), &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_maximum(tl_tensor a, tl_tensor b) {
    return tl_binary(a, TENSORLET_ML_TENSOR_BINARY_OP_MAXIMUM, b);
}
tl_tensor tl_minimum(tl_tensor a, tl_tensor b) {
    return tl_binary(a, TENSORLET_ML_TENSOR_BINARY_OP_MINIMUM, b);
}

tl_tensor tl_scalar(tl_tensor a, tensorlet_ml_tensor_scalar_op_t op, float v) {
    if (!live(a)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_scalar(BORROW(a), op, v, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_pow_scalar(tl_tensor a, float v) {
    return tl_scalar(a, TENSORLET_ML_TENSOR_SCALAR_OP_POW, v);
}
tl_tensor tl_leaky_relu(tl_tensor a, float slope) {
    return tl_scalar(a, TENSORLET_ML_TENSOR_SCALAR_OP_LEAKY_RELU, slope);
}

tl_tensor tl_activate(tl_tensor a, tensorlet_ml_tensor_activation_t op) {
    if (!live(a)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_activate(BORROW(a), op, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_gelu(tl_tensor a) { return tl_activate(a, TENSORLET_ML_TENSOR_ACTIVATION_GELU); }
tl_tensor tl_silu(tl_tensor a) { return tl_activate(a, TENSORLET_ML_TENSOR_ACTIVATION_SILU); }

tl_tensor tl_clamp(tl_tensor a, float low, float high) {
    if (!live(a)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_clamp(BORROW(a), low, high, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_select(tl_tensor a, tl_tensor mask, tl_tensor otherwise) {
    if (!live(a) || !live(mask) || !live(otherwise)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_select(BORROW(a), BORROW(mask), BORROW(otherwise),
                                                       &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_masked_fill(tl_tensor a, tl_tensor mask, float value) {
    if (!live(a) || !live(mask)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok =
        tensorlet_ml_tensor_method_tensor_masked_fill(BORROW(a), BORROW(mask), value, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_cumsum(tl_tensor a, uint32_t axis, bool reverse) {
    if (!live(a)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_cumsum(BORROW(a), axis, reverse, &out, &err);
    return checked(ok, out, &err);
}

/* ---- N-D ops: shape ---- */

tl_tensor tl_permute(tl_tensor a, const uint32_t *axes, size_t n) {
    if (!live(a)) return TL_NONE;
    plugin_list_u32_t list = {(uint32_t *)axes, n};
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_permute(BORROW(a), &list, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_slice(tl_tensor a, uint32_t axis, uint32_t start, uint32_t end, uint32_t step) {
    if (!live(a)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok =
        tensorlet_ml_tensor_method_tensor_slice(BORROW(a), axis, start, end, step, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_concat_all(const tl_tensor *parts, size_t n, uint32_t axis) {
    if (failed) return TL_NONE;
    for (size_t i = 0; i < n; i++) {
        if (!live(parts[i])) return TL_NONE;
    }
    tensorlet_ml_tensor_borrow_tensor_t *borrows = n ? calloc(n, sizeof *borrows) : NULL;
    if (n && !borrows) {
        tl_fail("out of memory joining %zu tensors", n);
        return TL_NONE;
    }
    for (size_t i = 0; i < n; i++) {
        borrows[i] = BORROW(parts[i]);
    }
    tensorlet_ml_tensor_list_borrow_tensor_t list = {borrows, n};
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_static_tensor_concat_all(&list, axis, &out, &err);
    free(borrows);
    return checked(ok, out, &err);
}

tl_tensor tl_pad(tl_tensor a, const uint32_t *pads, size_t n_pairs, float value) {
    if (!live(a)) return TL_NONE;
    plugin_tuple2_u32_u32_t *pairs = n_pairs ? calloc(n_pairs, sizeof *pairs) : NULL;
    if (n_pairs && !pairs) {
        tl_fail("out of memory padding %zu axes", n_pairs);
        return TL_NONE;
    }
    for (size_t i = 0; i < n_pairs; i++) {
        pairs[i] = (plugin_tuple2_u32_u32_t){pads[2 * i], pads[2 * i + 1]};
    }
    plugin_list_tuple2_u32_u32_t list = {pairs, n_pairs};
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_pad(BORROW(a), &list, value, &out, &err);
    free(pairs);
    return checked(ok, out, &err);
}

tl_tensor tl_flatten(tl_tensor a, uint32_t start, uint32_t end) {
    if (!live(a)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_flatten(BORROW(a), start, end, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_squeeze(tl_tensor a, uint32_t axis) {
    if (!live(a)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_squeeze(BORROW(a), axis, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_unsqueeze(tl_tensor a, uint32_t axis) {
    if (!live(a)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_unsqueeze(BORROW(a), axis, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_broadcast_to(tl_tensor a, const uint32_t *shape, size_t ndim) {
    if (!live(a)) return TL_NONE;
    tensorlet_ml_tensor_shape_t s = shape_arg(shape, ndim);
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_broadcast_to(BORROW(a), &s, &out, &err);
    return checked(ok, out, &err);
}

/* ---- N-D ops: indexing ---- */

#define INDEXED(fn, method)                                                                 \
    tl_tensor fn(tl_tensor a, uint32_t axis, tl_tensor indices) {                           \
        if (!live(a) || !live(indices)) return TL_NONE;                                     \
        tl_tensor out;                                                                      \
        plugin_string_t err;                                                                \
        bool ok = tensorlet_ml_tensor_method_tensor_##method(BORROW(a), axis, BORROW(indices), \
                                                             &out, &err);                   \
        return checked(ok, out, &err);                                                      \
    }

INDEXED(tl_index_select, index_select)
INDEXED(tl_gather, gather)

tl_tensor tl_embedding(tl_tensor table, tl_tensor ids) {
    if (!live(table) || !live(ids)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_embedding(BORROW(table), BORROW(ids), &out, &err);
    return checked(ok, out, &err);
}

#define ADDED_AT(fn, method)                                                               \
    tl_tensor fn(tl_tensor a, uint32_t axis, tl_tensor indices, tl_tensor src) {           \
        if (!live(a) || !live(indices) || !live(src)) return TL_NONE;                      \
        tl_tensor out;                                                                     \
        plugin_string_t err;                                                               \
        bool ok = tensorlet_ml_tensor_method_tensor_##method(BORROW(a), axis, BORROW(indices), \
                                                             BORROW(src), &out, &err);     \
        return checked(ok, out, &err);                                                     \
    }

ADDED_AT(tl_scatter_add, scatter_add)
ADDED_AT(tl_index_add, index_add)

/* ---- N-D ops: layers ---- */

tl_tensor tl_conv2d(tl_tensor x, tl_tensor weight, tl_tensor bias, tl_conv2d_options o) {
    if (!live(x) || !live(weight)) return TL_NONE;
    tensorlet_ml_tensor_conv2d_options_t options = {
        .stride = {or_one(o.stride[0]), or_one(o.stride[1])},
        .padding = pair_of(o.padding),
        .dilation = {or_one(o.dilation[0]), or_one(o.dilation[1])},
        .groups = or_one(o.groups),
    };
    tensorlet_ml_tensor_borrow_tensor_t b;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_conv2d(BORROW(x), BORROW(weight), maybe(bias, &b),
                                                      &options, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_conv1d(tl_tensor x, tl_tensor weight, tl_tensor bias, tl_conv1d_options o) {
    if (!live(x) || !live(weight)) return TL_NONE;
    tensorlet_ml_tensor_conv1d_options_t options = {
        .stride = or_one(o.stride),
        .padding = o.padding,
        .dilation = or_one(o.dilation),
        .groups = or_one(o.groups),
    };
    tensorlet_ml_tensor_borrow_tensor_t b;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_conv1d(BORROW(x), BORROW(weight), maybe(bias, &b),
                                                      &options, &out, &err);
    return checked(ok, out, &err);
}

static tensorlet_ml_tensor_pool2d_options_t pool_options(tl_pool2d_options o) {
    return (tensorlet_ml_tensor_pool2d_options_t){
        .kernel = pair_of(o.kernel),
        .stride = {o.stride[0] ? o.stride[0] : o.kernel[0],
                   o.stride[1] ? o.stride[1] : o.kernel[1]},
        .padding = pair_of(o.padding),
    };
}

tl_tensor tl_max_pool2d(tl_tensor x, tl_pool2d_options o) {
    if (!live(x)) return TL_NONE;
    tensorlet_ml_tensor_pool2d_options_t options = pool_options(o);
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_max_pool2d(BORROW(x), &options, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_avg_pool2d(tl_tensor x, tl_pool2d_options o) {
    if (!live(x)) return TL_NONE;
    tensorlet_ml_tensor_pool2d_options_t options = pool_options(o);
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_avg_pool2d(BORROW(x), &options, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_global_avg_pool(tl_tensor x) {
    if (!live(x)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_global_avg_pool(BORROW(x), &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_layer_norm(tl_tensor x, uint32_t axes, tl_tensor weight, tl_tensor bias, float eps) {
    if (!live(x)) return TL_NONE;
    tensorlet_ml_tensor_borrow_tensor_t w, b;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_layer_norm(BORROW(x), axes, maybe(weight, &w),
                                                          maybe(bias, &b), eps, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_batch_norm(tl_tensor x, tl_tensor weight, tl_tensor bias, tl_tensor running_mean,
                        tl_tensor running_var, bool train, float momentum, float eps) {
    if (!live(x) || !live(running_mean) || !live(running_var)) return TL_NONE;
    tensorlet_ml_tensor_borrow_tensor_t w, b;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_batch_norm(
        BORROW(x), maybe(weight, &w), maybe(bias, &b), BORROW(running_mean), BORROW(running_var),
        train, momentum, eps, &out, &err);
    return checked(ok, out, &err);
}

tl_tensor tl_dropout(tl_tensor x, float p, uint64_t seed) {
    if (!live(x)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_dropout(BORROW(x), p, seed, &out, &err);
    return checked(ok, out, &err);
}

/* ---- N-D ops: losses ---- */

tl_tensor tl_cross_entropy(tl_tensor logits, tl_tensor target, tl_cross_entropy_options o) {
    if (!live(logits) || !live(target)) return TL_NONE;
    tensorlet_ml_tensor_borrow_tensor_t w;
    int64_t ignore = o.ignore_index;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_cross_entropy(
        BORROW(logits), BORROW(target), o.axis, maybe(o.weights, &w), o.label_smoothing,
        o.has_ignore_index ? &ignore : NULL, o.reduction, &out, &err);
    return checked(ok, out, &err);
}

#define LOSS(fn, method)                                                                   \
    tl_tensor fn(tl_tensor pred, tl_tensor target, tl_reduction reduction) {               \
        if (!live(pred) || !live(target)) return TL_NONE;                                  \
        tl_tensor out;                                                                     \
        plugin_string_t err;                                                               \
        bool ok = tensorlet_ml_tensor_method_tensor_##method(BORROW(pred), BORROW(target), \
                                                             reduction, &out, &err);       \
        return checked(ok, out, &err);                                                     \
    }

LOSS(tl_bce_with_logits, bce_with_logits)
LOSS(tl_mse_loss, mse_loss)
LOSS(tl_l1_loss, l1_loss)

tl_tensor tl_huber_loss(tl_tensor pred, tl_tensor target, float delta, tl_reduction reduction) {
    if (!live(pred) || !live(target)) return TL_NONE;
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_huber_loss(BORROW(pred), BORROW(target), delta,
                                                          reduction, &out, &err);
    return checked(ok, out, &err);
}

/* ---- gradients ---- */

tl_tensor tl_watch(tl_tensor t, const char *name) {
    if (!live(t)) return TL_NONE;
    plugin_string_t n = {(uint8_t *)name, strlen(name)};
    tl_tensor out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_watch(BORROW(t), &n, &out, &err);
    return checked(ok, out, &err);
}

bool tl_grad_of(tl_tensor loss, const char *const *names, size_t n, tl_params *grads) {
    *grads = (tl_params){NULL, 0};
    if (!live(loss)) return false;
    plugin_string_t *wanted = n ? calloc(n, sizeof *wanted) : NULL;
    if (n && !wanted) {
        tl_fail("out of memory asking for %zu gradients", n);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        wanted[i] = (plugin_string_t){(uint8_t *)names[i], strlen(names[i])};
    }
    plugin_list_string_t list = {wanted, n};
    tensorlet_ml_tensor_list_named_tensor_t out;
    plugin_string_t err;
    bool ok = tensorlet_ml_tensor_method_tensor_grad(BORROW(loss), &list, &out, &err);
    free(wanted);
    if (!ok) {
        tl_fail("%.*s", (int)err.len, (const char *)err.ptr);
        plugin_string_free(&err);
        return false;
    }
    for (size_t i = 0; i < out.len; i++) {
        track(out.ptr[i].value);
    }
    if (!keep_list(out)) {
        free_list_entries(&out);
        return false;
    }
    *grads = (tl_params){out.ptr, out.len};
    return true;
}

bool tl_grad(tl_tensor loss, const tl_params *params, tl_params *grads) {
    *grads = (tl_params){NULL, 0};
    if (!live(loss)) return false;
    const char **names = params->len ? calloc(params->len, sizeof *names) : NULL;
    char *text = NULL;
    size_t n = 0, bytes = 0;
    for (size_t i = 0; i < params->len; i++) {
        bytes += params->entries[i].name.len + 1;
    }
    if (params->len && (!names || !(text = malloc(bytes)))) {
        free(names);
        tl_fail("out of memory asking for %zu gradients", params->len);
        return false;
    }
    /* The names of the bindings' strings are not NUL-terminated: copy them. */
    char *at = text;
    for (size_t i = 0; i < params->len; i++) {
        const plugin_string_t *name = &params->entries[i].name;
        if (name->len >= 4 && memcmp(name->ptr, "opt.", 4) == 0) continue;
        memcpy(at, name->ptr, name->len);
        at[name->len] = '\0';
        names[n++] = at;
        at += name->len + 1;
    }
    bool ok = n > 0;
    if (ok) {
        ok = tl_grad_of(loss, names, n, grads);
    } else {
        tl_fail("grad: no parameters to differentiate with respect to (every entry is `opt.…` "
                "state, or there are none)");
    }
    free(names);
    free(text);
    return ok;
}

/* ---- seeds ---- */

uint64_t tl_derive_seed(uint64_t seed, uint64_t stream) {
    uint64_t z = seed + (stream + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ---- configuration: a small reader for the top level of a JSON object ---- */

typedef struct {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) {
        c->p++;
    }
}

/* Skips a string starting at its opening quote; false when unterminated. */
static bool skip_string(cursor *c) {
    for (c->p++; c->p < c->end; c->p++) {
        if (*c->p == '\\') {
            c->p++;
        } else if (*c->p == '"') {
            c->p++;
            return true;
        }
    }
    return false;
}

/* Skips one value (nested objects and arrays included). */
static bool skip_value(cursor *c) {
    int depth = 0;
    do {
        skip_ws(c);
        if (c->p >= c->end) return false;
        char ch = *c->p;
        if (ch == '"') {
            if (!skip_string(c)) return false;
        } else if (ch == '{' || ch == '[') {
            depth++;
            c->p++;
        } else if (ch == '}' || ch == ']') {
            depth--;
            c->p++;
        } else if (ch == ',' || ch == ':') {
            c->p++;
        } else {
            while (c->p < c->end && !strchr(",:]} \t\r\n", *c->p)) c->p++;
        }
    } while (depth > 0);
    return depth == 0;
}

double tl_config_number(const plugin_string_t *config, const char *key, double fallback) {
    cursor c = {(const char *)config->ptr, (const char *)config->ptr + config->len};
    size_t key_len = strlen(key);
    skip_ws(&c);
    if (c.p >= c.end) return fallback; /* an empty config is an empty object */
    if (*c.p != '{') {
        tl_fail("config is not a JSON object");
        return fallback;
    }
    c.p++;
    for (;;) {
        skip_ws(&c);
        if (c.p < c.end && *c.p == '}') return fallback;
        if (c.p >= c.end || *c.p != '"') break;
        const char *name = c.p + 1;
        if (!skip_string(&c)) break;
        bool match = (size_t)(c.p - 1 - name) == key_len && memcmp(name, key, key_len) == 0;
        skip_ws(&c);
        if (c.p >= c.end || *c.p != ':') break;
        c.p++;
        skip_ws(&c);
        if (match) {
            char buf[64];
            size_t n = 0;
            while (c.p + n < c.end && n + 1 < sizeof buf && strchr("+-.0123456789eE", c.p[n])) {
                buf[n] = c.p[n];
                n++;
            }
            buf[n] = '\0';
            char *stop;
            double v = strtod(buf, &stop);
            if (n == 0 || *stop != '\0') {
                tl_fail("config `%s` must be a number", key);
                return fallback;
            }
            return v;
        }
        if (!skip_value(&c)) break;
        skip_ws(&c);
        if (c.p < c.end && *c.p == ',') c.p++;
    }
    tl_fail("config is not valid JSON");
    return fallback;
}
