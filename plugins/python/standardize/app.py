"""Preprocessor: scales every feature column to mean 0 and standard deviation 1.

The Python twin of the Rust `standardize` plugin, with the same state and the same
host ops in the same order, so both fit identical statistics. Config: none. State:
`mean` and `std`, both [features], fitted on the training rows (population std; a
column whose std is below 1e-8 gets std 1, so a constant column maps to 0 instead of
dividing by zero). `transform` computes (x - mean) / std.
"""

import tensorlet
from tensorlet import Params, Tensor, TensorletError

# Columns with a smaller std are treated as constant (the f32 value of 1e-8, as in Rust).
MIN_STD = 9.99999993922529e-09


class Standardize(tensorlet.Preprocessor):
    def fit(self, config, x):
        if x.ndim != 2:
            raise TensorletError(f"standardize: x must be [rows, features], got shape {list(x.shape)}")
        rows, features = x.shape
        if rows == 0:
            raise TensorletError("standardize: cannot fit on zero rows")
        mean = x.mean(0)  # [features]
        var = (x - mean).square().mean(0)  # [features]: mean((x - mean)^2)
        # One number per feature: fixing constant columns in Python is clearer than
        # with tensor ops, and this runs once.
        std = [1.0 if s < MIN_STD else s for s in var.sqrt().tolist()]
        return Params(mean=mean, std=Tensor.from_list(std, shape=[features]))

    def transform(self, config, state, x):
        mean, std = state["mean"], state["std"]
        if x.ndim != 2 or x.shape[1:] != mean.shape:
            raise TensorletError(
                f"standardize: fitted on [rows, {mean.shape[0]}] (mean has shape "
                f"{list(mean.shape)}) but got x of shape {list(x.shape)}"
            )
        # [rows, features] - [features] and / [features] broadcast over rows.
        return (x - mean) / std


# componentize-py exports the class named after the WIT interface (`preprocess`).
Preprocess = tensorlet.export_preprocessor(Standardize)
