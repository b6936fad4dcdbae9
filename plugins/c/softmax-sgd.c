/*
 * Trainer: softmax regression that writes its own update, plain gradient
 * descent, with the gradients computed by the host.
 *
 * `step` computes the mean cross-entropy of the batch and asks the host for its
 * gradients with tl_grad(); the update `p - learning_rate * dp` is the trainer's
 * own. (A model, world `model`, leaves the update to the host's `[training]`
 * optimizer instead; a trainer is for updates the host does not offer.)
 *
 * Config: `learning_rate` (the host adds the pipeline's). Params: `w` [features,
 * classes] and `b` [classes], both starting at zero, as the Rust
 * `softmax-regression` model names them.
 */
#include "tensorlet.h"

static const char *const NAMES[] = {"w", "b"};

bool exports_tensorlet_ml_train_init(plugin_string_t *config,
                                     exports_tensorlet_ml_train_data_spec_t *spec,
                                     exports_tensorlet_ml_train_list_named_tensor_t *ret,
                                     plugin_string_t *err) {
    (void)config;
    tl_begin(TL_NONE);
    uint32_t w[] = {spec->features, spec->outputs}, b[] = {spec->outputs};
    tl_tensor values[] = {tl_zeros(w, 2), tl_zeros(b, 1)};
    return tl_finish_named(2, NAMES, values, &ret->ptr, &ret->len, err);
}

bool exports_tensorlet_ml_train_step(plugin_string_t *config,
                                     exports_tensorlet_ml_train_list_named_tensor_t *params,
                                     tl_tensor x, tl_tensor y, uint64_t step,
                                     exports_tensorlet_ml_train_step_output_t *ret,
                                     plugin_string_t *err) {
    (void)step;
    tl_begin(x);
    tl_adopt(y);
    float lr = (float)tl_config_number(config, "learning_rate", 0.1);
    tl_params p = tl_params_from(params->ptr, params->len);
    tl_tensor w = tl_param(&p, "w"), b = tl_param(&p, "b");

    /* loss = -mean(sum(onehot(y) * log_softmax(x·w + b), 1)) */
    tl_tensor logits = tl_add(tl_matmul(x, w), b);
    tl_tensor onehot = tl_one_hot(y, tl_dim(w, 1));
    tl_tensor loss = tl_neg(tl_mean(tl_sum(tl_mul(onehot, tl_log_softmax(logits, 1)), 1, false), 0, true));

    tl_params grads; /* d loss / d w and d loss / d b, from the host */
    tl_grad(loss, &p, &grads);
    tl_tensor values[] = {
        tl_sub(w, tl_mul_scalar(tl_param(&grads, "w"), lr)),
        tl_sub(b, tl_mul_scalar(tl_param(&grads, "b"), lr)),
    };
    ret->loss = tl_item(loss);
    return tl_finish_named(2, NAMES, values, &ret->params.ptr, &ret->params.len, err);
}
