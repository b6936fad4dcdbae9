"""Tabular accuracy side by side: tensorlet and scikit-learn on the same splits.

For each data set the rows are split once (scikit-learn's train_test_split,
25 % test, seed 0, stratified for classes) into train.csv and test.csv. tensorlet
trains each pipeline on train.csv and `tensorlet eval` scores it on test.csv;
scikit-learn fits the
equivalent estimator (same hidden widths, Adam, learning rate, batch size and
epochs for the MLPs), after the same standardisation, on train.csv and scores it on
test.csv. Both train on every training row: tensorlet with validation_fraction = 0
and keep = "last". Prints a Markdown table.

Usage: python bench/tabular.py <tensorlet binary> <repository root>
"""

import csv
import json
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, mean_squared_error, r2_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

# Both sides train a fixed number of epochs; scikit-learn warns that it stopped there.
warnings.filterwarnings("ignore", category=ConvergenceWarning)

T, ROOT = sys.argv[1], sys.argv[2]

PIPELINE = """
[pipeline]
name = "{name}"
[data]
label = "{label}"
{task}
[preprocessor]
bundled = "standardize"
[model]
bundled = "mlp"
config = {{ hidden = {hidden} }}
[training]
epochs = {epochs}
batch_size = 32
learning_rate = {lr}
optimizer = "adam"
schedule = "{schedule}"
validation_fraction = 0.0
keep = "last"
"""

# (data set, label, task, [(model, tensorlet hidden, epochs, lr, schedule, scikit-learn estimator)])
CASES = [
    ("diabetes", "progression", "regression", [
        ("linear", "[]", 300, 1.0, "cosine", LinearRegression()),
        ("MLP [32]", "[32]", 200, 0.01, "constant",
         MLPRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.01, batch_size=32,
                      max_iter=200, alpha=0.0, random_state=0)),
    ]),
    ("breast_cancer", "diagnosis", "classification", [
        ("logistic", "[]", 100, 0.01, "constant", LogisticRegression(max_iter=1000)),
        ("MLP [16]", "[16]", 50, 0.01, "constant",
         MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, batch_size=32,
                       max_iter=50, alpha=0.0, random_state=0)),
    ]),
]


def read(name):
    with open(os.path.join(ROOT, "data", f"{name}.csv"), newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def tensorlet(home, *args):
    env = dict(os.environ, TENSORLET_HOME=home)
    out = subprocess.run([T, *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"tensorlet {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


def main():
    print("| data set | model | metric | tensorlet | scikit-learn | difference |")
    print("|---|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        home = os.path.join(tmp, "home")
        for name, label, task, models in CASES:
            header, rows = read(name)
            y = [r[-1] for r in rows]
            train, test = train_test_split(
                rows, test_size=0.25, random_state=0,
                stratify=y if task == "classification" else None)
            tr, te = os.path.join(tmp, f"{name}-train.csv"), os.path.join(tmp, f"{name}-test.csv")
            write(tr, header, train)
            write(te, header, test)
            xtr = np.array([[float(v) for v in r[:-1]] for r in train])
            xte = np.array([[float(v) for v in r[:-1]] for r in test])
            if task == "regression":
                ytr = np.array([float(r[-1]) for r in train])
                yte = np.array([float(r[-1]) for r in test])
            else:
                classes = sorted(set(y))
                ytr = np.array([classes.index(r[-1]) for r in train])
                yte = np.array([classes.index(r[-1]) for r in test])
            for model, hidden, epochs, lr, schedule, est in models:
                toml = os.path.join(tmp, f"{name}.toml")
                with open(toml, "w") as f:
                    f.write(PIPELINE.format(
                        name=name, label=label, hidden=hidden, epochs=epochs, lr=lr,
                        schedule=schedule,
                        task='task = "regression"' if task == "regression" else ""))
                out = os.path.join(tmp, f"{name}-model")
                tensorlet(home, "train", toml, "--data", tr, "--out", out, "--allow-unsigned")
                ev = json.loads(tensorlet(home, "eval", out, "--data", te, "--json",
                                          "--allow-unsigned"))["metrics"]
                sk = make_pipeline(StandardScaler(), est).fit(xtr, ytr)
                if task == "regression":
                    p = sk.predict(xte)
                    ours = [("R²", ev["r2"], r2_score(yte, p)),
                            ("RMSE", ev["rmse"], mean_squared_error(yte, p) ** 0.5)]
                else:
                    prob = sk.predict_proba(xte)[:, 1]
                    ours = [("accuracy", ev["accuracy"], accuracy_score(yte, prob >= 0.5)),
                            ("ROC AUC", ev["auc"], roc_auc_score(yte, prob))]
                for metric, a, b in ours:
                    print(f"| {name} | {model} | {metric} | {a:.4f} | {b:.4f} | {a - b:+.4f} |")


main()
