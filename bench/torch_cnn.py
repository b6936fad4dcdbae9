"""The bundled digits CNN in PyTorch, for `tensorlet bench train --cnn`.

The same model and training as plugins/pipelines/digits-cnn.toml: each row's
64 pixels a 1x8x8 image; two conv layers (3x3, padding 1, 32 then 64
channels), each followed by a ReLU and a 2x2 max-pool; the flattened 64x2x2
maps into a hidden ReLU layer of 64 units and the output layer; Adam with lr
0.002, mini-batches of 32. The data, split, initialisation and training loop
are torch_train.py's.

Prints one JSON object: {"torch", "threads", "seconds" (per epoch),
"val_accuracy" (after the last epoch)}.
"""

from torch import nn

from torch_train import arguments, digits, he_init, train


def options(ap):
    ap.add_argument("--image", type=int, nargs=3, default=[1, 8, 8])
    ap.add_argument("--channels", type=int, nargs="+", default=[32, 64])


def main():
    args = arguments(epochs=30, lr=0.002, extra=options)
    xt, yt, xv, yv, classes = digits(args)
    image = [-1, *args.image]
    xt, xv = xt.reshape(image), xv.reshape(image)

    layers, cin, (h, w) = [], args.image[0], args.image[1:]
    for out in args.channels:
        layers += [nn.Conv2d(cin, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        cin, h, w = out, h // 2, w // 2
    layers.append(nn.Flatten())
    widths = [cin * h * w] + ([args.hidden] if args.hidden > 0 else []) + [classes]
    for j in range(len(widths) - 1):
        layers.append(nn.Linear(widths[j], widths[j + 1]))
        if j + 2 < len(widths):
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    he_init(model)
    train(model, args, xt, yt, xv, yv)


if __name__ == "__main__":
    main()
