#!/usr/bin/env python3
"""Golden figures for `weir backtest` and the outcome statistics, from onnxruntime, scikit-learn and scipy.

Run from the repository root:
    python3 scripts/make-backtest-goldens.py
Writes Tests/WeirWorkerTests/Fixtures/backtest-goldens.json:
  "payments": models/payments (current) and models/payments-candidate over
    models/payments-candidate-training/holdout.csv, scored by onnxruntime: each model's accuracy,
    AUC, log loss and expected calibration error (10 equal-width bins of the positive class's
    probability), their agreement on the label, the label confusion, and scipy's two-sample KS
    statistic between the two models' positive-class probabilities;
  "statistics": small vectors with ties, and sklearn's roc_auc_score (binary, and three classes
    one-vs-rest macro) and log_loss on them.
Requires: numpy, pandas, onnxruntime, scikit-learn, scipy.
"""
import json
import os

import numpy as np
import onnxruntime as ort
import pandas as pd
from scipy.stats import ks_2samp
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score


def probabilities(path, frame):
    session = ort.InferenceSession(path)
    feeds = {}
    for spec in session.get_inputs():
        column = frame[spec.name]
        if "string" in spec.type:
            feeds[spec.name] = np.array(column.astype(str).values, dtype=object).reshape(-1, 1)
        else:
            feeds[spec.name] = column.values.astype(np.float32).reshape(-1, 1)
    return session.run(None, feeds)[1]


def ece(p, y, bins=10):
    index = np.clip((p * bins).astype(int), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        chosen = index == b
        if chosen.any():
            total += chosen.mean() * abs(y[chosen].mean() - p[chosen].mean())
    return total


def main():
    frame = pd.read_csv("models/payments-candidate-training/holdout.csv")
    y = frame["label"].values
    out = {"payments": {"rows": int(len(frame))}, "statistics": {}}
    labels = {}
    positive = {}
    for side, path in [("current", "models/payments/model.onnx"), ("candidate", "models/payments-candidate/model.onnx")]:
        probs = probabilities(path, frame).astype(np.float64)
        p = probs[:, 1]
        labels[side] = (p >= 0.5).astype(int)
        positive[side] = p
        out["payments"][f"{side}_accuracy"] = float(accuracy_score(y, labels[side]))
        out["payments"][f"{side}_auc"] = float(roc_auc_score(y, p))
        out["payments"][f"{side}_log_loss"] = float(log_loss(y, probs))
        out["payments"][f"{side}_ece"] = float(ece(p, y))
    out["payments"]["agreement"] = float((labels["current"] == labels["candidate"]).mean())
    out["payments"]["confusion"] = [[int(((labels["current"] == a) & (labels["candidate"] == b)).sum()) for b in (0, 1)] for a in (0, 1)]
    out["payments"]["ks"] = float(ks_2samp(positive["current"], positive["candidate"]).statistic)

    scores = [0.1, 0.4, 0.35, 0.8, 0.4, 0.9, 0.2, 0.4, 0.65, 0.5]
    truth = [0, 0, 1, 1, 1, 1, 0, 0, 1, 0]
    out["statistics"] = {"scores": scores, "truth": truth, "auc": float(roc_auc_score(truth, scores)),
                         "log_loss": float(log_loss(truth, np.column_stack([1 - np.array(scores), scores])))}
    # Three classes, one-vs-rest macro AUC (ties included).
    rng = np.random.default_rng(5)
    raw = rng.random((40, 3))
    raw[5] = raw[6]
    probabilities3 = np.round(raw / raw.sum(axis=1, keepdims=True), 3)
    probabilities3[:, 2] = 1 - probabilities3[:, 0] - probabilities3[:, 1]
    truth3 = rng.integers(0, 3, 40)
    out["statistics"]["multiclass"] = {"scores": probabilities3.tolist(), "truth": truth3.tolist(),
                                       "auc": float(roc_auc_score(truth3, probabilities3, multi_class="ovr", average="macro"))}
    path = os.path.join("Tests", "WeirWorkerTests", "Fixtures", "backtest-goldens.json")
    with open(path, "w") as handle:
        json.dump(out, handle, indent=1, sort_keys=True)
        handle.write("\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
