"""What the PyTorch twins of the bundled digits models share, for `tensorlet bench train`.

`torch_mlp.py` and `torch_cnn.py` build their model between `digits()` and
`train()`: the arguments, the data (the CSV read with the csv module, a
stratified 20 % validation split, columns standardized with the training
split's mean and std, a constant column getting std 1), He-normal weights and
zero biases, and the training loop (the mean cross-entropy, Adam with betas
0.9/0.999 and eps 1e-8, shuffled mini-batches, an epoch's time including the
validation pass, as tensorlet's does). `tensorlet bench train` writes this
file beside the script it runs.
"""

import argparse
import csv
import json
import time

import numpy as np
import torch
from torch import nn


def arguments(epochs, lr, extra=None):
    """The command line (`extra(parser)` adds a model's own options); sets
    PyTorch's threads and seed."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--label", default="digit")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=epochs)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=lr)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    if extra is not None:
        extra(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    return args


def digits(args):
    """(x_train, y_train, x_val, y_val, classes): standardized features as
    float32 tensors of shape [rows, features], labels as int64."""
    rng = np.random.default_rng(args.seed)
    with open(args.data, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    li = header.index(args.label)
    x = np.array([[float(v) for i, v in enumerate(r) if i != li] for r in body], dtype=np.float32)
    y = np.array([int(float(r[li])) for r in body], dtype=np.int64)

    # Stratified split: 20 % of each class held out.
    val_idx = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        val_idx.extend(idx[: round(0.2 * len(idx))])
    val = np.zeros(len(y), dtype=bool)
    val[val_idx] = True
    xt, yt, xv, yv = x[~val], y[~val], x[val], y[val]

    mean = xt.mean(axis=0)
    std = xt.std(axis=0)
    std[std < 1e-8] = 1.0
    xt = torch.from_numpy((xt - mean) / std)
    xv = torch.from_numpy((xv - mean) / std)
    return xt, torch.from_numpy(yt), xv, torch.from_numpy(yv), int(y.max()) + 1


def he_init(model):
    """He-normal (fan in) weights and zero biases for every conv and linear layer."""
    for layer in model.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)


def train(model, args, xt, yt, xv, yv):
    """Trains for `args.epochs` and prints one JSON object: {"torch",
    "threads", "seconds" (per epoch), "val_accuracy" (after the last epoch)}."""
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = nn.CrossEntropyLoss()

    seconds, accuracy = [], float("nan")
    for _ in range(args.epochs):
        start = time.perf_counter()
        model.train()
        for batch in torch.randperm(len(yt)).split(args.batch_size):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xt[batch]), yt[batch])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(xv).argmax(dim=1) == yv).float().mean().item()
        seconds.append(time.perf_counter() - start)

    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seconds": seconds,
        "val_accuracy": accuracy,
    }))
