#!/usr/bin/env python3
"""Writes a synthetic production log of N rows for the `medgate monitor` speed benchmark.

    python3 benches/monitor_make_log.py 10000000 runs/bench-10m.csv

Columns as protocols/demo-monitor.yaml expects; model hash of the demo model; scores from a
Beta mixture; 70% labelled; attributes drawn from the demo set's levels. Seeded (numpy PCG64).
"""
import sys

import numpy as np

n = int(sys.argv[1])
out = sys.argv[2]
rng = np.random.default_rng(20261202)
model = "46049007501d6af38c470d0561371dc412dd0ceca1877d86bf9321606e437905"
label = rng.random(n) < 0.3
score = np.where(label, rng.beta(4, 3, n), rng.beta(2, 5, n))
lab = np.where(rng.random(n) < 0.7, np.where(label, "1", "0"), "")
levels = {
    "sex": ["F", "M"],
    "age_band": ["18-39", "40-64", "65+"],
    "view_position": ["PA", "AP"],
    "manufacturer": ["ImagingDynamicsCompanyLtd", "PhilipsMedicalSystems", "SIEMENS"],
    "site": ["site-A", "site-B", "site-C", "site-D"],
}
ts0 = 1772409600
chunk = 1_000_000
with open(out, "w") as f:
    f.write("timestamp,case_id,score,label,model_sha256," + ",".join(levels) + "\n")
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        idx = np.arange(s, e)
        cols = [np.char.add("", (ts0 + idx * 6).astype(str)),
                np.char.add("B", np.char.zfill(idx.astype(str), 9)),
                np.char.mod("%.6f", score[s:e]), lab[s:e], np.full(e - s, model)]
        for k, v in levels.items():
            cols.append(np.array(v)[rng.integers(0, len(v), e - s)])
        rows = [",".join(r) for r in zip(*cols)]
        f.write("\n".join(rows) + "\n")
