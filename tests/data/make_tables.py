"""Writes the Parquet and JSON-lines copies of data/penguins.csv that the
tests read, as pandas writes them (pyarrow; species, island and sex as
pandas categoricals, so Parquet holds them dictionary-encoded).

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install pandas pyarrow
    /tmp/venv/bin/python tests/data/make_tables.py
"""

from pathlib import Path

import pandas as pd

root = Path(__file__).resolve().parents[2]
df = pd.read_csv(root / "data" / "penguins.csv")
for c in ["species", "island", "sex"]:
    df[c] = df[c].astype("category")
df.to_parquet(root / "tests" / "data" / "penguins.parquet", index=False)
df.to_json(
    root / "tests" / "data" / "penguins.jsonl", orient="records", lines=True
)
