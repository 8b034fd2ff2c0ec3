#!/usr/bin/env python3
"""Benchmark peer for Weir's inference core: builds the benchmark MLPs and times onnxruntime on them.

usage: ort_models.py OUT_DIR [--repeat-seconds S]
Writes OUT_DIR/<name>.onnx (fp32, shaped like torch.onnx.export), OUT_DIR/<name>.int8.onnx
(onnxruntime quantize_dynamic), OUT_DIR/<name>.input.f32 (256 rows), and prints one JSON line per
(model, precision, batch) with onnxruntime's ns/event on one thread.
"""
import json
import os
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

MODELS = {"mlp_32_64_32_1": [32, 64, 32, 1], "mlp_64_128_10": [64, 128, 10], "mlp_128_512_512_1": [128, 512, 512, 1]}
BATCHES = [1, 32, 256]


def build(sizes, seed):
    rng = np.random.default_rng(seed)
    nodes, inits, current = [], [], "input"
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        bound = 1 / np.sqrt(fan_in)
        inits.append(numpy_helper.from_array(rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32), f"fc{layer}.weight"))
        inits.append(numpy_helper.from_array(rng.uniform(-bound, bound, (fan_out,)).astype(np.float32), f"fc{layer}.bias"))
        out = f"/fc{layer}/Gemm_output_0"
        nodes.append(helper.make_node("Gemm", [current, f"fc{layer}.weight", f"fc{layer}.bias"], [out], name=f"/fc{layer}/Gemm", transB=1))
        current = out
        if layer < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [current], [f"/relu{layer}/Relu_output_0"], name=f"/relu{layer}/Relu"))
            current = f"/relu{layer}/Relu_output_0"
    nodes.append(helper.make_node("Sigmoid" if sizes[-1] == 1 else "Softmax", [current], ["output"]))
    graph = helper.make_graph(nodes, "main_graph", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", sizes[0]])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", sizes[-1]])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8, producer_name="pytorch")


def single_thread_session(path):
    """An onnxruntime session on one thread, every graph optimization on (the peers' setting)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # converters declare [1]-shaped labels; onnxruntime would warn on every run
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def best_ns_per_event(session, feeds, batch, seconds):
    """The fastest of repeated rounds (after a warm-up) of running every feed once, in ns per
    event for a batch of `batch` events."""
    for _ in range(20):
        for feed in feeds:
            session.run(None, feed)
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        iterations = max(1, int(2000 / batch))
        start = time.perf_counter_ns()
        for _ in range(iterations):
            for feed in feeds:
                session.run(None, feed)
        best = min(best, (time.perf_counter_ns() - start) / (iterations * batch))
    return best


def time_session(path, x, batch, seconds):
    return best_ns_per_event(single_thread_session(path), [{"input": np.ascontiguousarray(x[:batch])}], batch, seconds)


def main():
    out = sys.argv[1]
    seconds = float(sys.argv[sys.argv.index("--repeat-seconds") + 1]) if "--repeat-seconds" in sys.argv else 1.0
    os.makedirs(out, exist_ok=True)
    for seed, (name, sizes) in enumerate(MODELS.items()):
        fp32 = os.path.join(out, name + ".onnx")
        int8 = os.path.join(out, name + ".int8.onnx")
        onnx.save(build(sizes, seed), fp32)
        quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8)
        x = np.random.default_rng(100 + seed).normal(size=(256, sizes[0])).astype(np.float32)
        x.tofile(os.path.join(out, name + ".input.f32"))
        for precision, path in (("fp32", fp32), ("int8", int8)):
            for batch in BATCHES:
                ns = time_session(path, x, batch, seconds)
                print(json.dumps({"peer": "onnxruntime", "model": name, "precision": precision, "batch": batch,
                                  "ns_per_event": ns, "macs_per_event": sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))}), flush=True)


if __name__ == "__main__":
    main()
