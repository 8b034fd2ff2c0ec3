#!/usr/bin/env python3
"""The Python peer of `weir score`: the same JSONL events in, the same prediction records out,
done the way a Python team would at its best: orjson to parse, pandas (or numpy columns) to build
the feature frame, onnxruntime's batch API to run the model, orjson to write, and one process per
core over byte ranges of the file (output order kept by concatenating the parts in order).

    python3 score_peer.py MODEL_DIR EVENTS.jsonl OUT.jsonl [--processes N] [--batch 4096] [--frame pandas|numpy]

Prints one JSON line: {"events": n, "seconds": s, "events_per_second": r, "processes": N, "frame": ...}.
Events missing a feature are skipped (counted as dead letters), as `weir score` dead-letters them.
"""
import argparse
import json
import os
import sys
import time
from multiprocessing import Process

import numpy as np
import onnxruntime as ort
import orjson


def ranges(path, parts):
    size = os.path.getsize(path)
    bounds = [0]
    with open(path, "rb") as handle:
        for index in range(1, parts):
            handle.seek(size * index // parts)
            handle.readline()
            bounds.append(handle.tell())
    bounds.append(size)
    return [(bounds[i], bounds[i + 1]) for i in range(parts)]


def work(model_dir, path, start, end, out_path, batch, frame):
    manifest = json.load(open(os.path.join(model_dir, "manifest.json")))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), options, providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    names = [i.name for i in inputs]
    strings = {i.name for i in inputs if "string" in i.type}
    single = len(inputs) == 1 and inputs[0].shape[-1] not in (1, None) and len(manifest["inputs"]) > 1
    features = [f["name"] for f in manifest["inputs"]]
    scores_name = manifest["outputs"].get("scores") or manifest["outputs"].get("value")
    labels = manifest["outputs"].get("labels") or []
    label_values = [int(l) if l.lstrip("-").isdigit() else l for l in labels]
    model, version = manifest["name"], manifest["version"]
    with open(path, "rb") as handle, open(out_path, "wb") as out:
        line_number = handle.read(start).count(b"\n") if start else 0
        data = handle.read(end - start)
        lines = data.split(b"\n")
        for offset in range(0, len(lines), batch):
            numbered = [(line_number + offset + i + 1, orjson.loads(l)) for i, l in enumerate(lines[offset:offset + batch]) if l.strip()]
            numbered = [(n, e) for n, e in numbered if all(e.get(f) is not None for f in features)]
            if not numbered:
                continue
            events = [e for _, e in numbered]
            if frame == "pandas":
                import pandas as pd
                table = pd.DataFrame.from_records(events, columns=features)
                columns = {f: table[f].to_numpy() for f in features}
            else:
                columns = {f: [e[f] for e in events] for f in features}
            if single:
                feeds = {names[0]: np.column_stack([np.asarray(columns[f], dtype=np.float32) for f in features])}
            else:
                feeds = {n: (np.asarray(columns[n], dtype=object) if n in strings else np.asarray(columns[n], dtype=np.float32)).reshape(-1, 1)
                         for n in names}
            result = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
            scores = result[scores_name]
            rows = []
            for row, event in enumerate(events):
                record = {"id": event.get("id"), "model": model, "version": version}
                if labels:
                    values = scores[row]
                    record["label"] = label_values[int(np.argmax(values))]
                    record["scores"] = values.tolist()
                else:
                    record["value"] = float(scores[row][0])
                record["source"] = {"file": path, "line": numbered[row][0]}
                rows.append(orjson.dumps(record))
            out.write(b"\n".join(rows) + b"\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("events")
    parser.add_argument("out")
    parser.add_argument("--processes", type=int, default=os.cpu_count())
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--frame", choices=["pandas", "numpy"], default="numpy")
    args = parser.parse_args()
    started = time.perf_counter()
    parts = ranges(args.events, args.processes)
    outs = [f"{args.out}.part{i}" for i in range(len(parts))]
    workers = [Process(target=work, args=(args.model, args.events, s, e, o, args.batch, args.frame)) for (s, e), o in zip(parts, outs)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
        if w.exitcode != 0:
            sys.exit(f"score peer: a worker process failed ({w.exitcode})")
    events = 0
    with open(args.out, "wb") as out:
        for o in outs:
            with open(o, "rb") as part:
                data = part.read()
            events += data.count(b"\n")
            out.write(data)
            os.remove(o)
    seconds = time.perf_counter() - started
    print(json.dumps({"events": events, "seconds": seconds, "events_per_second": events / seconds, "processes": args.processes,
                      "frame": args.frame}))


if __name__ == "__main__":
    main()
