/*
 * Model: softmax (multinomial logistic) regression in C, the twin of the Rust
 * `softmax-regression` model: the same parameters, initialisation and host ops,
 * so both train identical parameters. Its forward pass is the class logits
 * x·w + b; the host trains it (the cross-entropy, its gradients and the
 * `[training]` optimizer) and predicts with their softmax.
 *
 * Config: `init_std` (std of the normal initial weights, default 0.01).
 * Params: `w` [features, classes], `b` [classes].
 */
#include "tensorlet.h"

bool exports_tensorlet_ml_forward_init(plugin_string_t *config,
                                       exports_tensorlet_ml_forward_data_spec_t *spec,
                                       exports_tensorlet_ml_forward_list_named_tensor_t *ret,
                                       plugin_string_t *err) {
    tl_begin(TL_NONE);
    float std = (float)tl_config_number(config, "init_std", 0.01);
    uint32_t w[] = {spec->features, spec->outputs}, b[] = {spec->outputs};
    const char *names[] = {"w", "b"};
    tl_tensor values[] = {tl_randn(w, 2, 0.0f, std, spec->seed), tl_zeros(b, 1)};
    return tl_finish_named(2, names, values, &ret->ptr, &ret->len, err);
}

bool exports_tensorlet_ml_forward_forward(plugin_string_t *config,
                                          exports_tensorlet_ml_forward_list_named_tensor_t *params,
                                          tl_tensor x, exports_tensorlet_ml_forward_mode_t mode,
                                          tl_tensor *ret, plugin_string_t *err) {
    (void)config;
    (void)mode;
    tl_begin(x);
    tl_params p = tl_params_from(params->ptr, params->len);
    /* [batch, features] x [features, classes] + [classes] -> [batch, classes] */
    tl_tensor logits = tl_add(tl_matmul(x, tl_param(&p, "w")), tl_param(&p, "b"));
    return tl_finish(logits, ret, err);
}
