"""The Python yardstick of `medgate stats`: pandas read_csv + scikit-learn confusion_matrix +
statsmodels Wilson intervals + a vectorised fast DeLong (Sun & Xu 2014 midranks), overall and
for every level of every subgroup attribute. Prints a small JSON summary.

usage: python3 compare_python.py FILE.csv [threshold] [attribute ...]
"""
import json
import sys

import numpy as np
import pandas as pd
from scipy.stats import norm, rankdata
from sklearn.metrics import confusion_matrix
from statsmodels.stats.proportion import proportion_confint


def fast_delong(y, s):
    pos, neg = s[y == 1], s[y == 0]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        return None
    tx = rankdata(pos)
    ty = rankdata(neg)
    tz = rankdata(np.concatenate([pos, neg]))
    auc = (tz[:m].sum() - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:m] - tx) / n
    v01 = 1.0 - (tz[m:] - ty) / m
    var = (np.var(v10, ddof=1) / m if m > 1 else 0) + (np.var(v01, ddof=1) / n if n > 1 else 0)
    h = norm.ppf(0.975) * np.sqrt(var)
    return auc, max(0.0, auc - h), min(1.0, auc + h)


def metrics(y, s, t):
    tn, fp, fn, tp = confusion_matrix(y, s >= t, labels=[0, 1]).ravel()
    out = {}
    for name, k, n in [("sensitivity", tp, tp + fn), ("specificity", tn, tn + fp),
                       ("ppv", tp, tp + fp), ("npv", tn, tn + fn), ("accuracy", tp + tn, tp + tn + fp + fn)]:
        out[name] = (k / n, *proportion_confint(k, n, method="wilson")) if n else None
    out["auroc"] = fast_delong(y, s)
    return out


path = sys.argv[1]
t = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
attrs = sys.argv[3:] or ["site", "age_band", "manufacturer"]
df = pd.read_csv(path)
y = df["label"].to_numpy()
s = df["score"].to_numpy()
res = {"overall": metrics(y, s, t), "levels": 0}
for a in attrs:
    col = df[a].to_numpy()
    for level in np.unique(col):
        mask = col == level
        metrics(y[mask], s[mask], t)
        res["levels"] += 1
print(json.dumps({"auroc": res["overall"]["auroc"], "levels": res["levels"]}))
