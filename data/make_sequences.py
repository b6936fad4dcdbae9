"""Writes data/sequences.csv: a sequence classification task that needs
attention, for the bundled transformer (plugins/pipelines/sequences-transformer.toml).

Each row is a sequence of 6 to 20 token ids in columns t0..t19, padded with 0
at the end. Every sequence holds token 1 (A) exactly once and token 2 (B)
exactly once, at random distinct positions; the other positions hold tokens
3..15 drawn uniformly. The label is 1 when A comes before B, else 0. Which
tokens a sequence holds never tells its label, only their order does: a model
must relate positions to each other.

Deterministic (SplitMix64 from seed 0), standard library only:

    python3 data/make_sequences.py
"""

from pathlib import Path

ROWS = 4000
POSITIONS = 20
MIN_LEN = 6
A, B = 1, 2
FILLERS = list(range(3, 16))
SEED = 0

MASK = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, n):
        return self.next() % n


def rows():
    rng = SplitMix64(SEED)
    for _ in range(ROWS):
        length = MIN_LEN + rng.below(POSITIONS - MIN_LEN + 1)
        seq = [FILLERS[rng.below(len(FILLERS))] for _ in range(length)]
        a = rng.below(length)
        b = rng.below(length - 1)
        if b >= a:
            b += 1
        seq[a], seq[b] = A, B
        yield seq + [0] * (POSITIONS - length) + [1 if a < b else 0]


def main():
    out = Path(__file__).resolve().parent / "sequences.csv"
    lines = [",".join([f"t{i}" for i in range(POSITIONS)] + ["label"])]
    lines += [",".join(map(str, r)) for r in rows()]
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
