#!/usr/bin/env python3
"""Builds the demo model bundle that `weir demo` (and `make run`) serves.

Run from the repository root after building weir:
    python3 scripts/make-demo-bundle.py [--weir .build/debug/weir]
Writes models/demo-training/{train.csv, model.onnx} (a scikit-learn MLPClassifier exported by
skl2onnx with zipmap=False, on 32 features f0..f31 distributed like the synthetic events of
`weir demo`) and then runs `weir model package` into models/demo.
Requires: numpy, scikit-learn, skl2onnx, onnx.
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--weir", default=".build/debug/weir")
    parser.add_argument("--rows", type=int, default=1500)
    args = parser.parse_args()

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
