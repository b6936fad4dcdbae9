/*
 * Predictor: the forward pass of tensorlet's `cnn` model in eval mode and its
 * softmax, in C: the same host ops as the Rust model, so both give the same class
 * probabilities for params the `cnn` model trained.
 *
 * The layers come from the params: `conv{i}.w` [out, in, k, k] and `conv{i}.b` (a
 * k×k convolution with padding k / 2), with `bn{i}.w` a batch normalization by the
 * running statistics `state.bn{i}.mean` / `state.bn{i}.var`, then ReLU and a 2×2
 * max-pool; then the dense layers `fc{j}.w` [in, out] and `fc{j}.b`, ReLU between
 * them. Each row of `x` is one square image of `conv0.w`'s input channels (the 8×8
 * digits: 64 features, one channel). Optimizer state in the params is ignored.
 * Predictor config: none.
 */
#include <stdio.h>

#include "tensorlet.h"

/* The most layers of each kind this predictor looks for. */
#define MAX_LAYERS 64

/* How many `<prefix><i>.w` there are, counting from 0. */
static size_t count(const tl_params *p, const char *prefix) {
    char name[32];
    size_t n = 0;
    for (; n < MAX_LAYERS; n++) {
        snprintf(name, sizeof name, "%s%zu.w", prefix, n);
        if (!tl_has_param(p, name)) break;
    }
    return n;
}

/* The tensor `<prefix><i><suffix>` of `p` (an error when it is missing). */
static tl_tensor layer(const tl_params *p, const char *prefix, size_t i, const char *suffix) {
    char name[48];
    snprintf(name, sizeof name, "%s%zu%s", prefix, i, suffix);
    return tl_param(p, name);
}

bool exports_tensorlet_ml_predict_predict(plugin_string_t *config,
                                          exports_tensorlet_ml_predict_list_named_tensor_t *params,
                                          tl_tensor x, tl_tensor *ret, plugin_string_t *err) {
    (void)config;
    tl_begin(x);
    tl_params p = tl_params_from(params->ptr, params->len);

    size_t convs = count(&p, "conv"), dense = count(&p, "fc");
    if (convs == 0 || dense == 0) {
        tl_fail("cnn: the params have no `conv0.w` or `fc0.w`; were they made by cnn?");
        return tl_finish(TL_NONE, ret, err);
    }
    uint32_t rows = tl_dim(x, 0), features = tl_dim(x, 1);
    uint32_t channels = tl_dim(tl_param(&p, "conv0.w"), 1);
    uint32_t side = 0;
    while (channels && (side + 1) * (side + 1) * channels <= features) side++;
    if (tl_ok() && (channels == 0 || side * side * channels != features)) {
        tl_fail("cnn: %u features are not %u square channel(s); this predictor takes square "
                "images",
                (unsigned)features, (unsigned)channels);
    }

    uint32_t image[] = {rows, channels, side, side};
    tl_tensor a = tl_reshape(x, image, 4);
    for (size_t i = 0; i < convs; i++) {
        tl_tensor w = layer(&p, "conv", i, ".w");
        uint32_t pad = tl_dim(w, 2) / 2;
        a = tl_conv2d(a, w, layer(&p, "conv", i, ".b"),
                      (tl_conv2d_options){.padding = {pad, pad}});
        char bn[32];
        snprintf(bn, sizeof bn, "bn%zu.w", i);
        if (tl_has_param(&p, bn)) {
            a = tl_batch_norm(a, layer(&p, "bn", i, ".w"), layer(&p, "bn", i, ".b"),
                              layer(&p, "state.bn", i, ".mean"), layer(&p, "state.bn", i, ".var"),
                              false, 0.1f, 1e-5f);
        }
        a = tl_max_pool2d(tl_relu(a), (tl_pool2d_options){.kernel = {2, 2}});
    }
    a = tl_flatten(a, 1, 3);
    for (size_t j = 0; j < dense; j++) {
        tl_tensor z = tl_add(tl_matmul(a, layer(&p, "fc", j, ".w")), layer(&p, "fc", j, ".b"));
        a = j + 1 < dense ? tl_relu(z) : z;
    }
    return tl_finish(tl_softmax(a, 1), ret, err);
}
