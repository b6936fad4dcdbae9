// Predictor: softmax regression, the JavaScript twin of the Rust
// `softmax-regression` predictor.
//
// Params: `w` [features, classes] and `b` [classes], as the Rust softmax-regression
// trainer makes them. Probabilities: softmax(x·w + b) along the class axis.
// Predictor config: none.

import { exportPredictor } from '../../sdk/js/tensorlet.js';

export const predict = exportPredictor({
  predict(config, params, x) {
    // [batch, features] x [features, classes] + [classes] -> [batch, classes]
    return x.matmul(params.get('w')).add(params.get('b')).softmax(1);
  },
});
