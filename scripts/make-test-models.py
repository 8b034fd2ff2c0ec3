#!/usr/bin/env python3
"""Generates the ONNX test models and golden outputs that WeirModel's tests read.

Run from the repository root: python3 scripts/make-test-models.py
  (--references-only: recompute the int8 references below from the committed models and inputs,
  without training anything again.)
Writes Tests/WeirModelTests/Fixtures/: for each model NAME
  NAME.onnx            the model, as the real exporter wrote it
  NAME.json            what the test needs: input name and shape, outputs, tolerances
  NAME.input.f32       the input rows (float32, little-endian, row-major)
  NAME.<output>.f32 / .i64   onnxruntime's outputs (CPU provider, fp32 model)
  NAME.int8.<tensor>.f32     the exact int8 reference (below) for each int8 layer's output
  NAME.int8only.<tensor>.f32 the same with every layer at 8 bits, for models with an int7 layer (the
                             plan of kernel sets without a faster 7-bit kernel, AVX-512 VNNI)

The int8 reference implements Weir's quantization scheme in numpy, operation for operation, so
Swift can be checked bit for bit (docs/model.md describes the scheme):
  weights   int8 symmetric per output channel: s_w = max|w| / 127, q = clamp(rint(w * (1/s_w)), -127, 127)
  inputs    uint8 per row: lo = min(0, min x), hi = max(0, max x), s_x = (hi - lo) / 255,
            zp = clamp(rint(-lo * (1/s_x)), 0, 255), q = clamp(rint(x * (1/s_x)) + zp, 0, 255)
  product   acc = sum q_x * q_w (exact int32), y = f32(acc - zp * colsum(q_w)) * (s_x * s_w) + bias
A MatMul/Gemm with a constant weight runs in int8 when it has at least 16 inputs and 8 outputs (the
tests also lower Weir's minimum of multiply-adds per row to 0 so these small models exercise int8).
A layer with at least 65,536 multiply-adds per row (Weir's default for its 7-bit kernel) uses the
same rules with 7-bit operands: weights s_w = max|w| / 63, q in -63...63; inputs s_x = (hi - lo) / 127,
zp and q in 0...127.
A Relu that reads only the layer's output is part of the layer: the recorded tensor is the Relu's.
Each NAME.json records the tool versions that made it (generated_with).
Requires: numpy, onnx, onnxruntime, scikit-learn, skl2onnx, torch, onnxscript.
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

OUT = os.path.join("Tests", "WeirModelTests", "Fixtures")
ROWS = 400
INT8_MIN_INPUTS, INT8_MIN_OUTPUTS = 16, 8
INT7_MIN_MULTIPLY_ADDS = 65536
F32 = np.float32


def run_ort(path, x, input_name):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return names, session.run(None, {input_name: x})


# ---- Weir's int8 scheme, exactly -------------------------------------------------------------

def quantize_weights(w_out_major, limit=127):
    """w_out_major: [M, K] float32. Returns q [M, K] int8 in -limit...limit, scale [M] float32."""
    maxabs = np.max(np.abs(w_out_major), axis=1).astype(F32)
    scale = (maxabs / F32(limit)).astype(F32)
    scale[scale == 0] = F32(1)
    inverse = (F32(1) / scale).astype(F32)
    q = np.clip(np.rint((w_out_major * inverse[:, None]).astype(F32)), -limit, limit).astype(np.int8)
    return q, scale


def quantize_rows(x, levels=255):
    """x: [N, K] float32. Returns q [N, K] uint8 in 0...levels, scale [N], zero point [N] int32."""
    lo = np.minimum(F32(0), x.min(axis=1)).astype(F32)
    hi = np.maximum(F32(0), x.max(axis=1)).astype(F32)
    scale = ((hi - lo) / F32(levels)).astype(F32)
    scale[scale == 0] = F32(1)
    inverse = (F32(1) / scale).astype(F32)
    zp = np.clip(np.rint((-lo * inverse).astype(F32)), 0, levels).astype(np.int32)
    q = np.clip(np.rint((x * inverse[:, None]).astype(F32)).astype(np.int32) + zp[:, None], 0, levels).astype(np.uint8)
    return q, scale, zp


def int8_dense(x, w_out_major, bias, int7_min=INT7_MIN_MULTIPLY_ADDS):
    """Weir's integer layer: 8-bit operands, or 7-bit ones for layers of at least int7_min
    multiply-adds per row (None: never)."""
    seven_bit = int7_min is not None and w_out_major.shape[0] * w_out_major.shape[1] >= int7_min
    qw, sw = quantize_weights(w_out_major, 63 if seven_bit else 127)
    qx, sx, zp = quantize_rows(x, 127 if seven_bit else 255)
    acc = qx.astype(np.int64) @ qw.astype(np.int64).T
    colsum = qw.astype(np.int64).sum(axis=1)
    corrected = (acc - zp[:, None].astype(np.int64) * colsum[None, :]).astype(np.int32)
    y = corrected.astype(F32) * (sx[:, None] * sw[None, :]).astype(F32)
    y = y.astype(F32)
    if bias is not None:
        y = (y + bias.astype(F32)[None, :]).astype(F32)
    return y


def int8_reference(model, x, int7_min=INT7_MIN_MULTIPLY_ADDS):
    """Runs the MLP-shaped graphs used here (MatMul[+Add] / Gemm, Relu, Sigmoid, Tanh, Softmax,
    Scaler, Identity, Cast), applying Weir's int8 scheme to dense layers that qualify, and returns
    the outputs of those int8 layers by tensor name."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    values = {model.graph.input[0].name: x}
    layers = {}
    nodes = list(model.graph.node)
    index = 0
    while index < len(nodes):
        node = nodes[index]
        op = node.op_type
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        get = lambda name: values[name] if name in values else inits[name]
        if op in ("MatMul", "Gemm") and node.input[1] in inits:
            a = get(node.input[0]).astype(F32)
            w = inits[node.input[1]].astype(F32)
            bias = None
            out_name = node.output[0]
            if op == "Gemm":
                if attrs.get("transA", 0):
                    a = a.T
                w_out_major = w if attrs.get("transB", 0) else w.T
                alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
                assert alpha == 1.0
                if len(node.input) > 2 and node.input[2]:
                    bias = (inits[node.input[2]].astype(F32) * F32(beta)).astype(F32).reshape(-1)
            else:
                w_out_major = w.T
                # MatMul followed by Add of a constant vector: the bias is fused.
                if index + 1 < len(nodes):
                    following = nodes[index + 1]
                    if (following.op_type == "Add" and node.output[0] in following.input):
                        other = [n for n in following.input if n != node.output[0]][0]
                        if other in inits and inits[other].size == w_out_major.shape[0]:
                            bias = inits[other].astype(F32).reshape(-1)
                            out_name = following.output[0]
                            index += 1
            m, k = w_out_major.shape
            relu = None
            users = [n for n in nodes if out_name in n.input]
            if len(users) == 1 and users[0].op_type == "Relu" and out_name not in [o.name for o in model.graph.output]:
                relu = users[0]
            if k >= INT8_MIN_INPUTS and m >= INT8_MIN_OUTPUTS:
                y = int8_dense(a, np.ascontiguousarray(w_out_major), bias, int7_min)
                if relu is not None:
                    y = np.maximum(y, F32(0)).astype(F32)
                    out_name = relu.output[0]
                    index = nodes.index(relu)
                layers[out_name] = y
            else:
                y = (a @ w_out_major.T).astype(F32)
                if bias is not None:
                    y = (y + bias).astype(F32)
                if relu is not None:
                    y = np.maximum(y, F32(0)).astype(F32)
                    out_name = relu.output[0]
                    index = nodes.index(relu)
            values[out_name] = y
        elif op in ("Cast", "Identity") and get(node.input[0]).dtype == F32 and attrs.get("to", 1) == 1:
            values[node.output[0]] = get(node.input[0])
        elif op == "Relu":
            values[node.output[0]] = np.maximum(get(node.input[0]), F32(0)).astype(F32)
        elif op in ("Sigmoid", "Tanh", "Softmax", "Identity", "Cast", "Add", "ArgMax", "Reshape",
                    "ZipMap", "Scaler", "Mul", "Sub", "Flatten", "Concat", "ArrayFeatureExtractor"):
            # The remaining ops are fp32 and not compared bit for bit; stop at the first one that is
            # not an exact pass-through of earlier int8 results.
            if op == "Scaler" and index == 0:
                offset = np.array(attrs["offset"], dtype=F32)
                scale = np.array(attrs["scale"], dtype=F32)
                values[node.output[0]] = ((get(node.input[0]) - offset) * scale).astype(F32)
            else:
                break
        else:
            break
        index += 1
    return layers


def write_int8_references(name, model, x):
    """Writes the int8 references of a model: with Weir's default 7-bit rule, and (when that rule
    makes any layer int7) with every layer at 8 bits. Returns both lists of layer entries."""
    def write(layers, kind):
        entries = []
        for tensor, value in layers.items():
            file = f"{name}.{kind}.{tensor.replace('/', '_')}.f32"
            np.ascontiguousarray(value).tofile(os.path.join(OUT, file))
            entries.append({"tensor": tensor, "shape": list(value.shape), "file": file})
        return entries
    default = int8_reference(model, x)
    eight_bit = int8_reference(model, x, int7_min=None)
    differs = any(not np.array_equal(default[t].view(np.uint32), eight_bit[t].view(np.uint32)) for t in default)
    return write(default, "int8"), write(eight_bit, "int8only") if differs else []


def references_only():
    """Recomputes the int8 references of every committed fixture from its model and input."""
    for meta_file in sorted(f for f in os.listdir(OUT) if f.endswith(".json")):
        path = os.path.join(OUT, meta_file)
        with open(path) as f:
            meta = json.load(f)
        if not meta.get("int8_layers"):
            continue
        model = onnx.load(os.path.join(OUT, meta["model"]))
        x = np.fromfile(os.path.join(OUT, meta["input"]["file"]), dtype=F32).reshape(meta["input"]["rows"], meta["input"]["columns"])
        meta["int8_layers"], int8_only = write_int8_references(meta["name"], model, x)
        meta.pop("int8_only_layers", None)
        if int8_only:
            meta["int8_only_layers"] = int8_only
        with open(path, "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
        print(f"{meta['name']}: {len(meta['int8_layers'])} int8 layers, {len(int8_only)} 8-bit-only references")


# ---- model builders ----------------------------------------------------------------------------

def save(name, model, x, kind, labels=None, notes="", int8_expected=True, extra=None, run=True):
    path = os.path.join(OUT, name + ".onnx")
    onnx.save(model, path)
    if not run:
        print(f"{name}: model only")
        return
    input_name = model.graph.input[0].name
    x = np.ascontiguousarray(x.astype(F32))
    x.tofile(os.path.join(OUT, name + ".input.f32"))
    names, results = run_ort(path, x, input_name)
    outputs = []
    for out_name, value in zip(names, results):
        value = np.asarray(value)
        if value.dtype == np.int64:
            suffix, dtype = "i64", "int64"
        else:
            value = value.astype(F32)
            suffix, dtype = "f32", "float32"
        file = f"{name}.{out_name}.{suffix}"
        np.ascontiguousarray(value).tofile(os.path.join(OUT, file))
        outputs.append({"name": out_name, "shape": list(value.shape), "dtype": dtype, "file": file})
    int8_layers, int8_only_layers = write_int8_references(name, model, x) if int8_expected else ([], [])
    meta = {"name": name, "model": name + ".onnx", "input": {"name": input_name, "rows": int(x.shape[0]),
            "columns": int(x.shape[1]), "file": name + ".input.f32"}, "outputs": outputs, "kind": kind,
            "int8_layers": int8_layers, "notes": notes, "generated_with": tool_versions()}
    if int8_only_layers:
        meta["int8_only_layers"] = int8_only_layers
    if labels is not None:
        meta["labels"] = labels
    if extra:
        meta.update(extra)
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    print(f"{name}: {len(outputs)} outputs, {len(int8_layers)} int8 layers")


def skl(model, x, **options):
    onx = to_onnx(model, x[:1].astype(F32), target_opset={"": 17, "ai.onnx.ml": 3}, options=options)
    return onx


def torch_mlp():
    """A 32-64-32-1 MLP with a sigmoid head, written by torch.onnx.export's default exporter
    (torch.export + onnxscript, opset 18, dynamic batch): the file a PyTorch team ships. The
    weights are torch's own initialisation under a fixed seed; torch's answers are checked
    against onnxruntime's before the model is kept."""
    import torch

    class FraudMLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.fc3 = torch.nn.Linear(32, 64), torch.nn.Linear(64, 32), torch.nn.Linear(32, 1)

        def forward(self, x):
            return torch.sigmoid(self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x))))))

    torch.manual_seed(20261206)
    module = FraudMLP().eval()
    path = os.path.join(OUT, "torch_mlp.onnx")
    torch.onnx.export(module, (torch.randn(8, 32),), path, input_names=["input"], output_names=["output"],
                      dynamic_shapes={"x": {0: torch.export.Dim("batch_size")}}, opset_version=18)
    model = onnx.load(path)
    onnx.checker.check_model(model)
    probe = np.random.default_rng(1).normal(size=(64, 32)).astype(F32)
    with torch.no_grad():
        expected = module(torch.from_numpy(probe)).numpy()
    _, (answered,) = run_ort(path, probe, "input")
    assert np.max(np.abs(answered - expected)) < 1e-6, "onnxruntime disagrees with torch"
    return model


def tool_versions():
    """The versions of every tool that can shape a fixture, recorded in each NAME.json."""
    import importlib.metadata as metadata
    versions = {}
    for package in ("numpy", "onnx", "onnxruntime", "scikit-learn", "skl2onnx", "torch", "onnxscript"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    versions["python"] = sys.version.split()[0]
    return versions


def main():
    if "--references-only" in sys.argv[1:]:
        return references_only()
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261122)

    x, y = make_classification(n_samples=3000, n_features=20, n_informative=12, random_state=1)
    x = x.astype(F32)
    mlp = MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=300, random_state=1).fit(x, y)
    save("mlp_binary", skl(mlp, x, zipmap=False), x[:ROWS], "classifier", labels=[0, 1],
         notes="sklearn MLPClassifier (20-32-16-2, relu) through skl2onnx, zipmap=False")
    save("mlp_binary_zipmap", skl(mlp, x), x[:8], "classifier", int8_expected=False, run=False,
         notes="the same model exported with ZipMap: Weir must refuse it, saying to use zipmap=False")

    x, y = make_classification(n_samples=4000, n_features=16, n_informative=10, n_classes=4,
                               n_clusters_per_class=1, random_state=2)
    x = x.astype(F32)
    mlp = MLPClassifier(hidden_layer_sizes=(64,), max_iter=400, random_state=2).fit(x, y)
    save("mlp_multiclass", skl(mlp, x, zipmap=False), x[:ROWS], "classifier", labels=[0, 1, 2, 3],
         notes="sklearn MLPClassifier (16-64-4, relu, softmax) through skl2onnx")

    # Large enough for the 7-bit kernel: the 256 -> 256 layer has 65,536 multiply-adds per row.
    x, y = make_classification(n_samples=4000, n_features=64, n_informative=24, random_state=8)
    x = x.astype(F32)
    wide = MLPClassifier(hidden_layer_sizes=(256, 256), max_iter=60, random_state=8).fit(x, y)
    save("mlp_wide", skl(wide, x, zipmap=False), x[:ROWS], "classifier", labels=[0, 1],
         notes="sklearn MLPClassifier (64-256-256-1, relu) through skl2onnx: one int8 layer and one int7 layer")

    x, y = make_classification(n_samples=3000, n_features=12, n_informative=8, n_classes=3, random_state=3)
    x = (x * 5 + 20).astype(F32)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    save("scaler_logreg", skl(pipe, x, zipmap=False), x[:ROWS], "classifier", labels=[0, 1, 2], int8_expected=False,
         notes="StandardScaler + LogisticRegression through skl2onnx: Scaler + LinearClassifier (fp32)")

    x, y = make_classification(n_samples=3000, n_features=10, n_informative=6, random_state=4)
    x = x.astype(F32)
    gbdt = GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=4).fit(x, y)
    save("gbdt_binary", skl(gbdt, x, zipmap=False), x[:ROWS], "classifier", labels=[0, 1], int8_expected=False,
         notes="GradientBoostingClassifier through skl2onnx: TreeEnsembleClassifier (fp32)")

    x, y = make_classification(n_samples=3000, n_features=10, n_informative=6, n_classes=3, random_state=5)
    x = x.astype(F32)
    gbdt3 = GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=5).fit(x, y)
    save("gbdt_multiclass", skl(gbdt3, x, zipmap=False), x[:ROWS], "classifier", labels=[0, 1, 2], int8_expected=False,
         notes="3-class GradientBoostingClassifier: TreeEnsembleClassifier with softmax")

    x, y = make_regression(n_samples=3000, n_features=8, noise=0.1, random_state=6)
    x, y = x.astype(F32), (y / 100).astype(F32)
    gbr = GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=6).fit(x, y)
    save("gbdt_regressor", skl(gbr, x), x[:ROWS], "regressor", int8_expected=False,
         notes="GradientBoostingRegressor through skl2onnx: TreeEnsembleRegressor (fp32)")

    x, y = make_regression(n_samples=3000, n_features=24, n_informative=16, noise=0.1, random_state=7)
    x, y = x.astype(F32), (y / 100).astype(F32)
    mlpr = MLPRegressor(hidden_layer_sizes=(64, 32), max_iter=400, random_state=7).fit(x, y)
    regressor = skl(mlpr, x)
    save("mlp_regressor", regressor, x[:ROWS], "regressor",
         notes="sklearn MLPRegressor (24-64-32-1, relu) through skl2onnx")

    from onnxruntime.quantization import QuantType, quantize_dynamic
    source = os.path.join(OUT, "mlp_regressor.onnx")
    target = os.path.join(OUT, "mlp_regressor_dynamic_int8.onnx")
    quantize_dynamic(source, target, weight_type=QuantType.QInt8)
    save("mlp_regressor_dynamic_int8", onnx.load(target), x[:ROWS], "regressor", int8_expected=False,
         notes="onnxruntime.quantization.quantize_dynamic of mlp_regressor: DynamicQuantizeLinear + MatMulInteger",
         extra={"fp32_reference": "mlp_regressor"})

    x = rng.normal(size=(ROWS, 32)).astype(F32)
    torch_model = torch_mlp()
    save("torch_mlp", torch_model, x, "binary-score",
         notes="torch.nn 32-64-32-1 MLP through torch.onnx.export (torch.export + onnxscript, opset 18): Gemm-Relu-Gemm-Relu-Gemm-Sigmoid")

    # Static QDQ quantization (per tensor and per channel) of the torch-shaped model.
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.rows = iter([{"input": x[i:i + 16]} for i in range(0, 256, 16)])

        def get_next(self):
            return next(self.rows, None)

    onnx.save(torch_model, os.path.join(OUT, "_torch_src.onnx"))
    for per_channel in (False, True):
        name = "torch_mlp_qdq_per_channel" if per_channel else "torch_mlp_qdq_per_tensor"
        target = os.path.join(OUT, name + ".onnx")
        quantize_static(os.path.join(OUT, "_torch_src.onnx"), target, Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        save(name, onnx.load(target), x, "binary-score", int8_expected=False,
             notes=f"onnxruntime quantize_static QDQ, per_channel={per_channel}", extra={"fp32_reference": "torch_mlp"})
    os.remove(os.path.join(OUT, "_torch_src.onnx"))

    # Every remaining operator in one hand-built graph (default and ai.onnx.ml domains).
    f = 12
    w1 = rng.normal(size=(f, 24)).astype(F32) / 3
    b1 = rng.normal(size=(24,)).astype(F32)
    w2 = rng.normal(size=(16, 24)).astype(F32) / 4
    nodes = [
        helper.make_node("Scaler", ["input"], ["scaled"], domain="ai.onnx.ml", offset=[0.5], scale=[1.5]),
        helper.make_node("MatMul", ["scaled", "w1"], ["h1"], name="dense1"),
        helper.make_node("Add", ["h1", "b1"], ["h1b"]),
        helper.make_node("LeakyRelu", ["h1b"], ["a1"], alpha=0.1),
        helper.make_node("Gemm", ["a1", "w2"], ["h2"], name="dense2", transB=1, alpha=0.5),
        helper.make_node("Tanh", ["h2"], ["a2"]),
        helper.make_node("Flatten", ["a2"], ["flat"], axis=1),
        helper.make_node("ArrayFeatureExtractor", ["input", "columns"], ["picked"], domain="ai.onnx.ml"),
        helper.make_node("Div", ["picked", "divisor"], ["divided"]),
        helper.make_node("Sub", ["divided", "offsets"], ["shifted"]),
        helper.make_node("Mul", ["shifted", "shifted"], ["squared"]),
        helper.make_node("Concat", ["flat", "squared"], ["joined"], axis=1),
        helper.make_node("Identity", ["joined"], ["features"]),
        helper.make_node("Softmax", ["features"], ["soft"], axis=-1),
        helper.make_node("ArgMax", ["soft"], ["best"], axis=1, keepdims=1),
        helper.make_node("Normalizer", ["features"], ["unit"], domain="ai.onnx.ml", norm="L2"),
        helper.make_node("LinearRegressor", ["unit"], ["regressed"], domain="ai.onnx.ml", targets=2,
                         coefficients=rng.normal(size=(2 * 19,)).astype(F32).tolist(), intercepts=[0.25, -0.5]),
        helper.make_node("Sigmoid", ["regressed"], ["probability"]),
        helper.make_node("Cast", ["best"], ["best_float"], to=TensorProto.FLOAT),
    ]
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"), numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array(np.array([0, 3, 7], dtype=np.int64), "columns"),
             numpy_helper.from_array(np.array([2.0], dtype=F32), "divisor"),
             numpy_helper.from_array(np.array([0.1, -0.2, 0.3], dtype=F32), "offsets")]
    graph = helper.make_graph(nodes, "ops_zoo", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", f])],
                              [helper.make_tensor_value_info("soft", TensorProto.FLOAT, ["N", 19]),
                               helper.make_tensor_value_info("best", TensorProto.INT64, ["N", 1]),
                               helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 2]),
                               helper.make_tensor_value_info("best_float", TensorProto.FLOAT, ["N", 1])], inits)
    zoo = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)], ir_version=8)
    onnx.checker.check_model(zoo)
    save("ops_zoo", zoo, rng.normal(size=(ROWS, f)).astype(F32), "mixed", int8_expected=False,
         notes="hand-built graph using the remaining operators: Scaler, LeakyRelu, Gemm alpha, Tanh, Flatten, "
               "ArrayFeatureExtractor, Div, Sub, Mul, Concat, Identity, Softmax, ArgMax, Normalizer, LinearRegressor, Cast")

    # A model with an operator Weir does not support.
    write_unsupported(rng)


def write_unsupported(rng):
    """A model with an operator Weir does not support (Einsum)."""
    nodes = [helper.make_node("Gemm", ["input", "w"], ["h"], name="dense", transB=1),
             helper.make_node("Einsum", ["h", "h"], ["values"], name="contract", equation="ni,ni->n")]
    graph = helper.make_graph(nodes, "unsupported", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("values", TensorProto.FLOAT, ["N"])],
                              [numpy_helper.from_array(rng.normal(size=(3, 4)).astype(F32), "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), os.path.join(OUT, "unsupported_einsum.onnx"))
    print("unsupported_einsum: written")


if __name__ == "__main__":
    sys.exit(main())
