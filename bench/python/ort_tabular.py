#!/usr/bin/env python3
"""Benchmark peer for Weir's tabular models: times onnxruntime on every model of the tabular zoo
(Tests/WeirModelTests/Fixtures/tabular, written by scripts/make-tabular-models.py) on the zoo's
held-out rows, fed as each model's inputs want them (per-column string and float arrays), one thread,
all graph optimizations, best of repeated runs.

usage: ort_tabular.py ZOO_DIR [--repeat-seconds S] [--batches 1,32,256]
Prints one JSON line per (model, batch): {"model", "batch", "ns_per_event"}.
"""
import json
import os
import sys

import numpy as np

from ort_models import best_ns_per_event, single_thread_session


def load(zoo, spec):
    path = os.path.join(zoo, spec["file"])
    if spec["type"] == "float":
        return np.fromfile(path, dtype="<f4").reshape(spec["shape"])
    if spec["type"] == "int64":
        return np.fromfile(path, dtype="<i8").reshape(spec["shape"])
    with open(path) as f:
        return np.array(f.read().split("\n")[:-1], dtype=object).reshape(spec["shape"])


def main():
    zoo = sys.argv[1]
    seconds = float(sys.argv[sys.argv.index("--repeat-seconds") + 1]) if "--repeat-seconds" in sys.argv else 1.0
    batches = [int(b) for b in sys.argv[sys.argv.index("--batches") + 1].split(",")] if "--batches" in sys.argv else [1, 32, 256]
    for file in sorted(os.listdir(zoo)):
        if not file.endswith(".json"):
            continue
        meta = json.load(open(os.path.join(zoo, file)))
        session = single_thread_session(os.path.join(zoo, meta["model"]))
        inputs = {spec["name"]: load(zoo, spec) for spec in meta["inputs"]}
        # A map input (DictVectorizer) takes one map a run: a batch is that many runs.
        maps = {spec["name"]: spec["columns"] for spec in meta["inputs"] if spec.get("columns")}
        for batch in batches:
            if maps:
                name, keys = next(iter(maps.items()))
                feeds = [{name: {k: float(v) for k, v in zip(keys, row) if v != 0}} for row in inputs[name][:batch]]
            else:
                feeds = [{name: np.ascontiguousarray(value[:batch]) for name, value in inputs.items()}]
            best = best_ns_per_event(session, feeds, batch, seconds)
            print(json.dumps({"peer": "onnxruntime", "model": meta["name"], "batch": batch, "ns_per_event": best}), flush=True)


if __name__ == "__main__":
    main()
