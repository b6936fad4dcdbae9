"""The bundled digits CNN in PyTorch, for `tensorlet bench train --cnn`.

The same model and training as plugins/pipelines/digits-cnn.toml: columns
standardized with the training split's mean and population std (a constant
column gets std 1), each row's 64 pixels a 1x8x8 image; two conv layers (3x3,
padding 1, 32 then 64 channels), each followed by a ReLU and a 2x2 max-pool;
the flattened 64x2x2 maps into a hidden ReLU layer of 64 units and the output
layer. He-normal weights (fan in) and zero biases, the mean cross-entropy,
Adam (lr 0.002, betas 0.9/0.999, eps 1e-8), shuffled mini-batches of 32, a
stratified 20 % validation split. An epoch's time includes the validation
pass, as tensorlet's does.

Prints one JSON object: {"torch", "threads", "seconds" (per epoch),
"val_accuracy" (after the last epoch)}.
"""

import argparse
import csv
import json
import time

import numpy as np
import torch
from torch import nn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--label", default="digit")
    ap.add_argument("--image", type=int, nargs=3, default=[1, 8, 8])
    ap.add_argument("--channels", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
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
    image = [-1, *args.image]
    xt = torch.from_numpy((xt - mean) / std).reshape(image)
    xv = torch.from_numpy((xv - mean) / std).reshape(image)
    yt, yv = torch.from_numpy(yt), torch.from_numpy(yv)

    layers, cin, (h, w) = [], args.image[0], args.image[1:]
    for out in args.channels:
        layers += [nn.Conv2d(cin, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        cin, h, w = out, h // 2, w // 2
    layers.append(nn.Flatten())
    widths = [cin * h * w] + ([args.hidden] if args.hidden > 0 else []) + [int(y.max()) + 1]
    for j in range(len(widths) - 1):
        layers.append(nn.Linear(widths[j], widths[j + 1]))
        if j + 2 < len(widths):
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    for layer in model:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
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


if __name__ == "__main__":
    main()
