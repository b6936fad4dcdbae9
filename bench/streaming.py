"""Writes the tables of bench/streaming.sh: `rows` rows of 50 float32
features drawn from N(0, 1) and a binary label from a fixed linear rule with
noise, as Parquet (row groups of 100,000 rows), one block at a time so that
the writer's memory stays small.

Usage: streaming.py <out.parquet> <rows> [seed]
"""

import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FEATURES = 50
BLOCK = 100_000


def main():
    out, rows = sys.argv[1], int(sys.argv[2])
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    rule = np.random.default_rng(12345).normal(size=FEATURES).astype(np.float32)
    rng = np.random.default_rng(seed)
    names = [f"f{i}" for i in range(FEATURES)] + ["label"]
    schema = pa.schema([(n, pa.float32()) for n in names[:-1]] + [("label", pa.int64())])
    with pq.ParquetWriter(out, schema, compression="snappy") as w:
        for start in range(0, rows, BLOCK):
            n = min(BLOCK, rows - start)
            x = rng.normal(size=(n, FEATURES)).astype(np.float32)
            score = x @ rule + rng.normal(scale=2.0, size=n).astype(np.float32)
            y = (score > 0).astype(np.int64)
            cols = [pa.array(x[:, i]) for i in range(FEATURES)] + [pa.array(y)]
            w.write_table(pa.Table.from_arrays(cols, schema=schema), row_group_size=BLOCK)


if __name__ == "__main__":
    main()
