"""The bundled digits MLP in PyTorch, for `tensorlet bench train`.

The same model and training as plugins/pipelines/digits.toml: one hidden ReLU
layer of 64 units, Adam with lr 0.005, mini-batches of 32; the data, split,
initialisation and training loop are torch_train.py's.

Prints one JSON object: {"torch", "threads", "seconds" (per epoch),
"val_accuracy" (after the last epoch)}.
"""

from torch import nn

from torch_train import arguments, digits, he_init, train


def main():
    args = arguments(epochs=20, lr=0.005)
    xt, yt, xv, yv, classes = digits(args)
    model = nn.Sequential(nn.Linear(xt.shape[1], args.hidden), nn.ReLU(), nn.Linear(args.hidden, classes))
    he_init(model)
    train(model, args, xt, yt, xv, yv)


if __name__ == "__main__":
    main()
