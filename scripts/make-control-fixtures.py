#!/usr/bin/env python3
"""Writes the control tests' deliberately failing candidate models.

Tests/WeirWorkerTests/Fixtures/failing-candidate.onnx reads the demo's 32 features and answers
binary-classification probabilities [1 - p, p] with p = relu(x.w) / relu(x.w): 1 where x.w > 0 and
NaN (0/0) elsewhere, so about half of all events get a non-finite answer (a model-error dead
letter). It loads and warms up fine, then trips the automatic rollback.

Tests/WeirWorkerTests/Fixtures/non-finite-candidate.onnx answers p = x.w / 0: no event ever gets a
finite answer, so a deploy of it is refused at warm-up (`warm-up-failed`). Regenerate with
`python3 scripts/make-control-fixtures.py`.
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Tests", "WeirWorkerTests", "Fixtures")


def main():
    rng = np.random.default_rng(7)
    w = rng.normal(size=(32, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Gemm", ["X", "W"], ["g"], name="score"),
        helper.make_node("Relu", ["g"], ["r"], name="positive"),
        helper.make_node("Div", ["r", "r"], ["p"], name="nan_where_not_positive"),
        helper.make_node("Sub", ["one", "p"], ["q"], name="complement"),
        helper.make_node("Concat", ["q", "p"], ["probabilities"], axis=1, name="scores"),
    ]
    graph = helper.make_graph(
        nodes, "failing_candidate",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 32])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8,
                              producer_name="weir-control-fixtures")
    onnx.checker.check_model(model)
    os.makedirs(OUT, exist_ok=True)
    onnx.save(model, os.path.join(OUT, "failing-candidate.onnx"))
    never = helper.make_graph(
        [helper.make_node("Gemm", ["X", "W"], ["g"], name="score"),
         helper.make_node("Div", ["g", "zero"], ["p"], name="never_finite"),
         helper.make_node("Sub", ["one", "p"], ["q"], name="complement"),
         helper.make_node("Concat", ["q", "p"], ["probabilities"], axis=1, name="scores")],
        "non_finite_candidate",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 32])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one"),
         numpy_helper.from_array(np.array([0.0], dtype=np.float32), "zero")])
    never_model = helper.make_model(never, opset_imports=[helper.make_opsetid("", 17)], ir_version=8,
                                    producer_name="weir-control-fixtures")
    onnx.checker.check_model(never_model)
    onnx.save(never_model, os.path.join(OUT, "non-finite-candidate.onnx"))
    import onnxruntime as ort
    x = rng.normal(size=(1000, 32)).astype(np.float32)
    for name in ("failing-candidate", "non-finite-candidate"):
        p = ort.InferenceSession(os.path.join(OUT, name + ".onnx")).run(None, {"X": x})[0]
        print(name, "non-finite share:", float(np.mean(~np.isfinite(p[:, 1]))))
    print("made with onnx", onnx.__version__, "onnxruntime", ort.__version__, "numpy", np.__version__)


if __name__ == "__main__":
    main()
