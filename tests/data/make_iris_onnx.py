#!/usr/bin/env python3
"""Makes tests/data/iris-logreg.onnx and its reference outputs.

A multinomial logistic regression on Fisher's iris (data/iris.csv), fitted
here with NumPy full-batch gradient descent (deterministic), exported as an
ONNX graph: input "input" [N, 4] (raw cm), Sub(mean) -> Div(std) ->
MatMul(W) -> Add(b) -> Softmax -> output "probabilities" [N, 3].

The reference probabilities for ten rows are computed with NumPy, not with
an ONNX runtime, so the test compares tensorlet's wasi-nn path against an
independent implementation.

    pip install numpy onnx==1.23.2
    python3 tests/data/make_iris_onnx.py
"""
import csv
import json
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

here = pathlib.Path(__file__).resolve().parent
root = here.parent.parent
rows = list(csv.reader(open(root / "data" / "iris.csv")))[1:]
X = np.array([[float(v) for v in r[:4]] for r in rows], dtype=np.float64)
y = np.array([int(r[4]) for r in rows])

mean, std = X.mean(0), X.std(0)
Z = (X - mean) / std
Y = np.eye(3)[y]
W, b = np.zeros((4, 3)), np.zeros(3)
for _ in range(2000):
    logits = Z @ W + b
    logits -= logits.max(1, keepdims=True)
    P = np.exp(logits)
    P /= P.sum(1, keepdims=True)
    G = (P - Y) / len(Z)
    W -= 0.5 * Z.T @ G
    b -= 0.5 * G.sum(0)

f32 = lambda a: np.asarray(a, dtype=np.float32)
inits = [
    numpy_helper.from_array(f32(mean), "mean"),
    numpy_helper.from_array(f32(std), "std"),
    numpy_helper.from_array(f32(W), "W"),
    numpy_helper.from_array(f32(b), "b"),
]
nodes = [
    helper.make_node("Sub", ["input", "mean"], ["centred"]),
    helper.make_node("Div", ["centred", "std"], ["scaled"]),
    helper.make_node("MatMul", ["scaled", "W"], ["xw"]),
    helper.make_node("Add", ["xw", "b"], ["logits"]),
    helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
]
graph = helper.make_graph(
    nodes,
    "iris-logreg",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])],
    [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])],
    inits,
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.producer_name = "tensorlet tests/data/make_iris_onnx.py"
onnx.checker.check_model(model)
onnx.save(model, here / "iris-logreg.onnx")

# Reference outputs in float32 arithmetic, as the model computes them.
pick = [0, 20, 50, 60, 70, 77, 100, 120, 133, 149]
x = f32(X[pick])
logits = ((x - f32(mean)) / f32(std)) @ f32(W) + f32(b)
logits -= logits.max(1, keepdims=True)
p = np.exp(logits)
p /= p.sum(1, keepdims=True)
json.dump(
    {
        "rows": pick,
        "inputs": x.tolist(),
        "probabilities": p.astype(np.float64).tolist(),
        "labels": p.argmax(1).tolist(),
        "truth": y[pick].tolist(),
    },
    open(here / "iris-logreg.expected.json", "w"),
    indent=1,
)
print("accuracy on all rows:", float(((Z @ W + b).argmax(1) == y).mean()))
