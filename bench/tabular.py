"""Tabular accuracy side by side: tensorlet and scikit-learn on the same splits.

For each data set the rows are split once (scikit-learn's train_test_split,
25 % test, seed 0, stratified for classes) into train.csv and test.csv. tensorlet
trains each pipeline on train.csv and `tensorlet eval` scores it on test.csv;
scikit-learn fits the
equivalent estimator (same hidden widths, Adam, learning rate, batch size and
epochs for the MLPs), after the same standardisation, on train.csv and scores it on
test.csv. Both train on every training row: tensorlet with validation_fraction = 0
and keep = "last". The mixed table (penguins: categories and missing values) runs
plugins/pipelines/penguins.toml's preprocessor chain against the same steps in a
ColumnTransformer. Prints a Markdown table.

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
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import (accuracy_score, f1_score, mean_squared_error, r2_score,
                             roc_auc_score)
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import OneHotEncoder, StandardScaler

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


MISSING = {"", "NA", "NaN", "nan", "null", "NULL", "None", "N/A"}


def penguins(tmp, home):
    """The mixed table: tensorlet's penguins chain against a ColumnTransformer of the
    same steps (impute sex, one-hot island and sex, impute and scale the measurements),
    both with an MLP [16] trained 100 epochs of Adam."""
    header, rows = read("penguins")
    label = header.index("species")
    y = [r[label] for r in rows]
    train, test = train_test_split(rows, test_size=0.25, random_state=0, stratify=y)
    tr, te = os.path.join(tmp, "penguins-train.csv"), os.path.join(tmp, "penguins-test.csv")
    write(tr, header, train)
    write(te, header, test)
    with open(os.path.join(ROOT, "plugins", "pipelines", "penguins.toml")) as f:
        text = f.read()
    text = (text.replace("validation_fraction = 0.2", "validation_fraction = 0.0")
            + 'keep = "last"\n')
    toml = os.path.join(tmp, "penguins.toml")
    with open(toml, "w") as f:
        f.write(text)
    out = os.path.join(tmp, "penguins-model")
    tensorlet(home, "train", toml, "--data", tr, "--out", out, "--allow-unsigned")
    ev = json.loads(tensorlet(home, "eval", out, "--data", te, "--json",
                              "--allow-unsigned"))["metrics"]

    cats, nums = ["island", "sex"], ["bill_length_mm", "bill_depth_mm",
                                     "flipper_length_mm", "body_mass_g"]

    def features(part):
        def cell(r, c, number):
            v = r[header.index(c)]
            if v in MISSING:
                return np.nan
            return float(v) if number else v
        return np.array([[cell(r, c, False) for c in cats] + [cell(r, c, True) for c in nums]
                         for r in part], dtype=object)

    classes = sorted(set(y))
    ytr = np.array([classes.index(r[label]) for r in train])
    yte = np.array([classes.index(r[label]) for r in test])
    prep = ColumnTransformer([
        ("categories", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                     OneHotEncoder(handle_unknown="ignore")), [0, 1]),
        ("measurements", make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()),
         [2, 3, 4, 5]),
    ])
    mlp = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, batch_size=32,
                        max_iter=100, alpha=0.0, random_state=0)
    sk = make_pipeline(prep, mlp).fit(features(train), ytr)
    p = sk.predict(features(test))
    for metric, a, b in [("accuracy", ev["accuracy"], accuracy_score(yte, p)),
                         ("macro-F1", ev["f1_macro"], f1_score(yte, p, average="macro"))]:
        print(f"| penguins (mixed) | MLP [16] | {metric} | {a:.4f} | {b:.4f} | {a - b:+.4f} |")


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
        penguins(tmp, home)


main()
