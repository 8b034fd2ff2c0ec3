#!/usr/bin/env python3
"""Builds the model bundles of the synthetic stream (`SyntheticEvents`).

Run from the repository root after building weir:
    python3 scripts/make-demo-bundle.py [--weir .build/debug/weir]
Writes
  models/payments-training/{train.csv, model.onnx}: the model `weir demo` (and `make run`) serves, a
    scikit-learn ColumnTransformer (StandardScaler on f0..f7, OneHotEncoder on merchant_category,
    country and channel) -> GradientBoostingClassifier, exported by skl2onnx from a DataFrame (one
    input per column, the categories as strings), packaged into models/payments;
  models/payments-candidate-training/{model.onnx, holdout.csv}: a candidate for the same stream (the
    same features into a LogisticRegression), packaged into models/payments-candidate as 1.1.0, and
    2,000 held-out rows with their labels: the backtest walkthrough's (docs/backtest.md) and tests';
  models/demo-training/{train.csv, model.onnx}: the benchmarks' model, a scikit-learn MLPClassifier
    on the 32 numbers f0..f31, packaged into models/demo.
Both train on rows distributed like the synthetic events. Requires: numpy, pandas, scikit-learn,
skl2onnx, onnx.
"""
import argparse
import os
import subprocess

import numpy as np
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skl2onnx import to_onnx

FEATURES = 32
# The category lists of SyntheticEvents (Sources/WeirWorker/SyntheticEvents.swift), drawn uniformly.
MERCHANT_CATEGORIES = ["5411", "5812", "5999", "4111", "5732", "7995", "4829", "5311"]
COUNTRIES = ["NL", "DE", "FR", "GB", "US", "NG"]
CHANNELS = ["web", "app", "pos"]
PAYMENT_NUMBERS = 8


def payment_rows(rng, rows):
    """Rows distributed like the synthetic events (f0..f7 and the three categories), labelled 1 when
    their risk (f0, f1, f5, three categories, noise) is above its 85th percentile: the frame and labels."""
    import pandas as pd

    scale = np.array([i % 5 + 1 for i in range(PAYMENT_NUMBERS)], dtype=np.float64)
    shift = np.array([i % 3 for i in range(PAYMENT_NUMBERS)], dtype=np.float64)
    x = rng.standard_normal((rows, PAYMENT_NUMBERS)) * scale + shift
    frame = pd.DataFrame({f"f{i}": x[:, i].astype(np.float32) for i in range(PAYMENT_NUMBERS)})
    frame["merchant_category"] = rng.choice(MERCHANT_CATEGORIES, rows)
    frame["country"] = rng.choice(COUNTRIES, rows)
    frame["channel"] = rng.choice(CHANNELS, rows)
    risk = (0.8 * x[:, 0] - 0.5 * x[:, 1] + 0.3 * x[:, 5] + 1.5 * (frame["merchant_category"] == "7995")
            + 1.0 * (frame["country"] == "NG") + 0.7 * (frame["channel"] == "web") + 0.5 * rng.standard_normal(rows))
    return frame, (risk > np.quantile(risk, 0.85)).astype(np.int64)


def fit_and_export(estimator, frame, y, numbers, categories, out):
    """Fits the numbers scaled and the categories one-hot encoded into `estimator`, and writes the
    pipeline's skl2onnx export (one input per column, no ZipMap) to `out`/model.onnx."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    model = make_pipeline(ColumnTransformer([("num", StandardScaler(), numbers),
                                             ("cat", OneHotEncoder(handle_unknown="ignore"), categories)]), estimator)
    model.fit(frame, y)
    onx = to_onnx(model, frame[:1], options={id(model.steps[-1][1]): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    onx.ir_version = 8
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "model.onnx"), "wb") as handle:
        handle.write(onx.SerializeToString())
    return model


def payments(args, rng):
    """The demo's categorical model, packaged into models/payments."""
    from sklearn.ensemble import GradientBoostingClassifier

    rows = args.rows * 2
    frame, y = payment_rows(rng, rows)
    numbers = [f"f{i}" for i in range(PAYMENT_NUMBERS)]
    categories = ["merchant_category", "country", "channel"]
    out = os.path.join("models", "payments-training")
    model = fit_and_export(GradientBoostingClassifier(n_estimators=80, max_depth=3, random_state=0), frame, y, numbers, categories, out)
    with open(os.path.join(out, "train.csv"), "w") as handle:
        handle.write(",".join(numbers + categories + ["label"]) + "\n")
        for row in range(rows):
            cells = [f"{frame[c].iloc[row]:.4f}" for c in numbers] + [str(frame[c].iloc[row]) for c in categories]
            handle.write(",".join(cells) + f",{y[row]}\n")
    print(f"payments: train accuracy {model.score(frame, y):.3f}; positives {y.mean():.3f}")
    subprocess.run([args.weir, "model", "package", "--onnx", os.path.join(out, "model.onnx"),
                    "--train", os.path.join(out, "train.csv"), "--name", "payments", "--version", "1.0.0",
                    "--out", os.path.join("models", "payments")], check=True)
    payments_candidate(args, frame, y, numbers, categories, os.path.join(out, "train.csv"), rng)


def payments_candidate(args, frame, y, numbers, categories, train_csv, rng):
    """A different model of the same stream (1.1.0), and held-out labelled rows to backtest on."""
    from sklearn.linear_model import LogisticRegression

    out = os.path.join("models", "payments-candidate-training")
    model = fit_and_export(LogisticRegression(max_iter=1000), frame, y, numbers, categories, out)
    # Held-out rows drawn like the training rows, with an id and the label.
    rows = 2000
    held, labels = payment_rows(rng, rows)
    with open(os.path.join(out, "holdout.csv"), "w") as handle:
        handle.write(",".join(["id"] + numbers + categories + ["label"]) + "\n")
        for row in range(rows):
            cells = [f"{held[c].iloc[row]:.4f}" for c in numbers] + [str(held[c].iloc[row]) for c in categories]
            handle.write(f"h{row}," + ",".join(cells) + f",{labels[row]}\n")
    print(f"payments candidate: train accuracy {model.score(frame, y):.3f}; holdout accuracy {model.score(held, labels):.3f}")
    subprocess.run([args.weir, "model", "package", "--onnx", os.path.join(out, "model.onnx"),
                    "--train", train_csv, "--name", "payments", "--version", "1.1.0",
                    "--out", os.path.join("models", "payments-candidate")], check=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--weir", default=".build/debug/weir")
    parser.add_argument("--rows", type=int, default=1500)
    parser.add_argument("--only-payments", action="store_true", help="regenerate the payments bundles only")
    args = parser.parse_args()

    payments(args, np.random.default_rng(23))
    if args.only_payments:
        return
    rng = np.random.default_rng(7)
    scale = np.array([i % 5 + 1 for i in range(FEATURES)], dtype=np.float64)
    shift = np.array([i % 3 for i in range(FEATURES)], dtype=np.float64)
    x = rng.standard_normal((args.rows, FEATURES)) * scale + shift
    risk = 0.8 * x[:, 0] - 0.5 * x[:, 1] + 0.3 * x[:, 5] * np.sign(x[:, 9]) + 0.5 * rng.standard_normal(args.rows)
    y = (risk > np.quantile(risk, 0.85)).astype(np.int64)

    model = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(128, 64), max_iter=600, random_state=0))
    model.fit(x.astype(np.float32), y)
    onx = to_onnx(model, x[:1].astype(np.float32), options={id(model.steps[-1][1]): {"zipmap": False}},
                  target_opset={"": 17, "ai.onnx.ml": 3})
    onx.ir_version = 8

    out = os.path.join("models", "demo-training")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "model.onnx"), "wb") as handle:
        handle.write(onx.SerializeToString())
    header = ",".join([f"f{i}" for i in range(FEATURES)] + ["label"])
    with open(os.path.join(out, "train.csv"), "w") as handle:
        handle.write(header + "\n")
        for row, label in zip(x, y):
            handle.write(",".join(f"{v:.4f}" for v in row) + f",{label}\n")
    print(f"train accuracy {model.score(x.astype(np.float32), y):.3f}; positives {y.mean():.3f}")
    subprocess.run([args.weir, "model", "package", "--onnx", os.path.join(out, "model.onnx"),
                    "--train", os.path.join(out, "train.csv"), "--name", "fraud", "--version", "1.0.0",
                    "--out", os.path.join("models", "demo")], check=True)


if __name__ == "__main__":
    main()
