"""Writes the benchmark table: N cases (default 1,000,000) with a label, a score and three
subgroup attributes of ~10 levels each. Seeded, so every run builds the same file.

usage: python3 make_data.py OUT.csv [N] [DECIMALS]
DECIMALS (default 3) rounds the score, so ties occur; 0 writes full precision (no ties).
"""
import sys

import numpy as np
import pandas as pd

out = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
decimals = int(sys.argv[3]) if len(sys.argv) > 3 else 3
rng = np.random.default_rng(20070315)
site = rng.integers(0, 10, n)
age = rng.integers(0, 9, n)
maker = rng.integers(0, 10, n)
prev = 0.2 + 0.02 * site
label = (rng.random(n) < prev).astype(np.int8)
# A score with ties (3 decimals) whose quality varies by site.
score = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + label * (1.0 + 0.1 * site) - 0.5)))
pd.DataFrame({
    "label": label,
    "score": np.round(score, decimals) if decimals > 0 else score,
    "site": [f"site{i:02d}" for i in site],
    "age_band": [f"{20 + 10 * a}-{29 + 10 * a}" for a in age],
    "manufacturer": np.array(["Agfa", "Canon", "Carestream", "Fujifilm", "GE", "Hologic", "Konica",
                              "Philips", "Samsung", "Siemens"])[maker],
}).to_csv(out, index=False)
