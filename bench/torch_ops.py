"""PyTorch's side of `tensorlet bench ops`: the same convolutions and batched
matmuls, timed the same way, on the CPU with a given number of threads.

--ops is a JSON list; each entry is either
  {"op": "conv2d", "x": [n, c, h, w], "w": [o, c, kh, kw], "padding": p}
    (torch.nn.functional.conv2d, stride 1, no bias), or
  {"op": "batched-matmul", "b": b, "m": m, "k": k, "n": n}
    (torch.bmm of [b, m, k] by [b, k, n]).
Inputs are uniform in [-1, 1) and made once; each op runs once untimed, then
in batches of 1, 2, 4, ... runs until a batch takes at least --min-time
seconds, whose mean is the op's time (as tensorlet measures its own).

Prints one JSON object: {"torch", "threads", "seconds" (one per op, in order)}.
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F


def measure(run, min_time):
    run()  # warm-up
    runs = 1
    while True:
        start = time.perf_counter()
        for _ in range(runs):
            run()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time or runs >= 1 << 16:
            return elapsed / runs
        runs *= 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-time", type=float, default=0.5)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    def uniform(*shape):
        return torch.rand(*shape) * 2 - 1

    seconds = []
    with torch.no_grad():
        for op in json.loads(args.ops):
            if op["op"] == "conv2d":
                x, w, p = uniform(*op["x"]), uniform(*op["w"]), op["padding"]
                seconds.append(measure(lambda: F.conv2d(x, w, padding=p), args.min_time))
            elif op["op"] == "batched-matmul":
                a = uniform(op["b"], op["m"], op["k"])
                b = uniform(op["b"], op["k"], op["n"])
                seconds.append(measure(lambda: torch.bmm(a, b), args.min_time))
            else:
                raise SystemExit(f"unknown op {op['op']!r}")

    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seconds": seconds,
    }))


if __name__ == "__main__":
    main()
