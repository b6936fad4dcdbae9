/*
 * Predictor: the forward pass of tensorlet's `mlp` plugin, in C.
 *
 * Params: `w0, b0, w1, b1, …` as the Rust `mlp` trainer makes them (`wi` is
 * [fan_in, fan_out], `bi` is [fan_out]); the depth comes from the params, so the
 * softmax-regression trainer's `w`, `b`… would need renaming, but an mlp trained with
 * `hidden = []` is exactly softmax regression. Hidden layers use ReLU; the output is
 * softmax(a·w + b) along the class axis. Optimizer state in the params is ignored.
 * Predictor config: none.
 */
#include <stdio.h>

#include "tensorlet.h"

/* The most layers this predictor looks for. */
#define MAX_LAYERS 64

bool exports_tensorlet_ml_predict_predict(plugin_string_t *config,
                                          exports_tensorlet_ml_predict_list_named_tensor_t *params,
                                          tl_tensor x, tl_tensor *ret, plugin_string_t *err) {
    (void)config;
    tl_begin(x);
    tl_params p = tl_params_from(params->ptr, params->len);

    char w[16], b[16];
    size_t layers = 0;
    for (;; layers++) {
        snprintf(w, sizeof w, "w%zu", layers);
        if (layers == MAX_LAYERS || !tl_has_param(&p, w)) break;
    }
    if (layers == 0) {
        tl_fail("mlp: the params have no `w0`; were they made by the mlp trainer?");
    }

    /* a(i+1) = relu(ai·wi + bi); logits = a(L-1)·w(L-1) + b(L-1) */
    tl_tensor a = x;
    for (size_t i = 0; i < layers; i++) {
        snprintf(w, sizeof w, "w%zu", i);
        snprintf(b, sizeof b, "b%zu", i);
        tl_tensor z = tl_add(tl_matmul(a, tl_param(&p, w)), tl_param(&p, b));
        a = i + 1 < layers ? tl_relu(z) : z;
    }
    return tl_finish(tl_softmax(a, 1), ret, err);
}
