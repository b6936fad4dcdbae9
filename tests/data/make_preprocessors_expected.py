#!/usr/bin/env python3
"""Makes tests/data/preprocessors.expected.json: what scikit-learn's
SimpleImputer, OneHotEncoder, OrdinalEncoder, MinMaxScaler and RobustScaler
output on small fixed tables, for tests/preprocessors.rs to compare the bundled
preprocessor plugins with.

Each case names the plugin, its config (the pipeline's `config` table as JSON),
the rows it is fitted on, the rows it transforms, and scikit-learn's output
(missing values are `null`). The inputs are exact in f32.

    python3 -m venv /tmp/skl && /tmp/skl/bin/pip install scikit-learn
    /tmp/skl/bin/python tests/data/make_preprocessors_expected.py

Written with scikit-learn 1.9.1 and NumPy 2.4.6.
"""
import json
import pathlib

import numpy as np
import sklearn
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, RobustScaler

nan = float("nan")

# Numeric columns: an outlier and gaps; a constant; ties (0.5 and 3 twice each)
# and a gap; no gap at fit.
NUMERIC_FIT = [
    [1.0, 5.0, 0.5, 10.0],
    [2.0, 5.0, -1.25, 20.0],
    [nan, 5.0, 3.0, 30.0],
    [4.0, 5.0, 3.0, 40.0],
    [100.0, 5.0, nan, 50.0],
    [3.0, 5.0, 0.5, 60.0],
    [2.5, 5.0, 7.75, 70.0],
    [nan, 5.0, -2.0, 80.0],
]
# Gaps in every column (the last had none at fit), values outside the fitted range.
NUMERIC_NEW = [
    [nan, 5.0, nan, 15.0],
    [200.0, 6.0, -3.0, nan],
    [-1.0, 5.0, 1.0, 80.0],
    [2.0, 4.0, 0.5, 0.0],
]
# Category codes: three of them; two that are not contiguous (0 and 3); one.
CODES_FIT = [
    [0.0, 3.0, 1.0],
    [1.0, 0.0, 1.0],
    [2.0, 3.0, 1.0],
    [1.0, 3.0, 1.0],
    [0.0, 0.0, 1.0],
    [2.0, 0.0, 1.0],
    [2.0, 3.0, 1.0],
    [1.0, 3.0, 1.0],
]
# -1 (the host's unknown category), codes never seen (5 in column 1, 0 in column 2).
CODES_NEW = [
    [2.0, 3.0, 1.0],
    [1.0, 0.0, 1.0],
    [-1.0, 3.0, 1.0],
    [0.0, 5.0, 1.0],
    [2.0, 0.0, 0.0],
]
# Codes with gaps: the ordinal encoder keeps them missing.
CODES_GAPS_FIT = [[0.0, 2.0], [nan, 2.0], [2.0, nan], [2.0, 4.0]]
CODES_GAPS_NEW = [[nan, 4.0], [2.0, nan], [1.0, 2.0]]


def case(plugin, config, estimator, fit, new):
    X, Z = np.array(fit, dtype=np.float64), np.array(new, dtype=np.float64)
    out = estimator.fit(X).transform(Z)
    out = np.asarray(out.todense() if hasattr(out, "todense") else out, dtype=np.float64)
    return {
        "plugin": plugin,
        "config": config,
        "fit": fit,
        "transform": new,
        "expected": [[None if np.isnan(v) else float(v) for v in row] for row in out],
    }


def ordinal(**kw):
    return OrdinalEncoder(handle_unknown="use_encoded_value", **kw)


cases = [
    case("imputer", {}, SimpleImputer(), NUMERIC_FIT, NUMERIC_NEW),
    case("imputer", {"strategy": "mean", "add_indicator": True},
         SimpleImputer(strategy="mean", add_indicator=True), NUMERIC_FIT, NUMERIC_NEW),
    case("imputer", {"strategy": "median"}, SimpleImputer(strategy="median"),
         NUMERIC_FIT, NUMERIC_NEW),
    case("imputer", {"strategy": "most_frequent", "add_indicator": True},
         SimpleImputer(strategy="most_frequent", add_indicator=True), NUMERIC_FIT, NUMERIC_NEW),
    case("imputer", {"strategy": "constant", "fill_value": -7.5},
         SimpleImputer(strategy="constant", fill_value=-7.5), NUMERIC_FIT, NUMERIC_NEW),
    case("imputer", {"strategy": "constant"}, SimpleImputer(strategy="constant"),
         NUMERIC_FIT, NUMERIC_NEW),
    case("imputer", {"strategy": "most_frequent"}, SimpleImputer(strategy="most_frequent"),
         CODES_FIT, CODES_NEW),
    case("one-hot", {}, OneHotEncoder(handle_unknown="ignore"), CODES_FIT, CODES_NEW),
    case("one-hot", {"handle_unknown": "ignore"}, OneHotEncoder(handle_unknown="ignore"),
         CODES_FIT, CODES_FIT),
    case("ordinal", {}, ordinal(unknown_value=-1), CODES_FIT, CODES_NEW),
    case("ordinal", {"handle_unknown": "use_encoded_value", "unknown_value": 99},
         ordinal(unknown_value=99), CODES_FIT, CODES_NEW),
    case("ordinal", {}, ordinal(unknown_value=-1), CODES_GAPS_FIT, CODES_GAPS_NEW),
    case("min-max", {}, MinMaxScaler(), NUMERIC_FIT, NUMERIC_NEW),
    case("min-max", {"feature_range": [-1, 2]}, MinMaxScaler(feature_range=(-1, 2)),
         NUMERIC_FIT, NUMERIC_NEW),
    case("robust", {}, RobustScaler(), NUMERIC_FIT, NUMERIC_NEW),
    case("robust", {"quantile_range": [10, 90], "with_centering": False},
         RobustScaler(quantile_range=(10, 90), with_centering=False), NUMERIC_FIT, NUMERIC_NEW),
    case("robust", {"quantile_range": [5.5, 60], "with_scaling": False},
         RobustScaler(quantile_range=(5.5, 60), with_scaling=False), NUMERIC_FIT, NUMERIC_NEW),
    case("robust", {"quantile_range": [5.5, 60]}, RobustScaler(quantile_range=(5.5, 60)),
         NUMERIC_FIT, NUMERIC_NEW),
]


def nulls(rows):
    return [[None if isinstance(v, float) and np.isnan(v) else v for v in r] for r in rows]


for c in cases:
    c["fit"], c["transform"] = nulls(c["fit"]), nulls(c["transform"])

out = pathlib.Path(__file__).resolve().parent / "preprocessors.expected.json"
out.write_text(json.dumps({
    "sklearn": sklearn.__version__,
    "numpy": np.__version__,
    "cases": cases,
}, indent=1) + "\n")
print(f"wrote {len(cases)} cases to {out}")
