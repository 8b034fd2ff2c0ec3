#!/usr/bin/env python3
"""Generates the tabular model zoo: real exports of the models teams ship (scikit-learn pipelines
with categorical columns, SVMs, naive Bayes, boosted trees from LightGBM and XGBoost, a PyTorch
tabular network) and onnxruntime's outputs on held-out rows, which WeirModel's tests compare against.

Run from the repository root: python3 scripts/make-tabular-models.py
Writes Tests/WeirModelTests/Fixtures/tabular/: for each model NAME
  NAME.onnx              the model, as the real converter wrote it
  NAME.json              inputs (name, type, shape, file), outputs (name, type, file), task, notes,
                         the converter and tool versions
  NAME.in.<input>.<ext>  the held-out rows of each input; NAME.out.<output>.<ext> onnxruntime's outputs
                         (.f32 float32 / .i64 int64 little-endian row-major; .txt strings, one per line)
The rows are a synthetic card-payments stream: 20 numeric columns (n0..n19) and 6 categorical ones
(merchant_category, country, channel, device, card, segment). Held-out rows include categories never
seen in training (2%) and, for models with an imputer, missing numbers (NaN, 3%).
Requires: numpy, pandas, onnx, onnxruntime, scikit-learn, skl2onnx, lightgbm, xgboost, onnxmltools, torch.
"""
import json
import os
import platform
import warnings

import numpy as np
import pandas as pd
import onnx
import onnxruntime as ort

warnings.filterwarnings("ignore")

OUT = os.path.join("Tests", "WeirModelTests", "Fixtures", "tabular")
TRAIN_ROWS, HELD_OUT_ROWS = 3000, 1000
NUMERIC = [f"n{i}" for i in range(20)]
CATEGORIES = {
    "merchant_category": [f"mcc_{c}" for c in ("5411", "5812", "5999", "4111", "5732", "7995", "4829", "5311", "5541", "5912", "6011", "7011")],
    "country": ["US", "GB", "DE", "FR", "BR", "IN", "NG", "JP"],
    "channel": ["web", "app", "pos", "phone"],
    "device": ["ios", "android", "desktop", "other"],
    "card": ["visa", "mastercard", "amex"],
    "segment": ["new", "regular", "vip"],
}
CATEGORICAL = list(CATEGORIES)
F32 = np.float32


def make_rows(rng, n, unknown_share=0.0, missing_share=0.0):
    """A DataFrame of n payments and the binary label, a 3-class risk band and a regression target."""
    num = rng.normal(size=(n, len(NUMERIC))).astype(F32)
    num[:, 3] = np.abs(num[:, 3]) * 40 + 1  # an amount-like positive column (for Log/Power)
    cat = {k: rng.choice(v, size=n) for k, v in CATEGORIES.items()}
    if unknown_share > 0:
        for k in CATEGORICAL:
            mask = rng.random(n) < unknown_share
            cat[k] = np.where(mask, "never_seen_" + k, cat[k])
    risk = (num[:, 0] + 0.6 * num[:, 1] - 0.4 * num[:, 2] + 0.01 * num[:, 3]
            + 1.2 * (cat["country"] == "NG") + 0.8 * (cat["channel"] == "web") + 0.7 * (cat["merchant_category"] == "mcc_7995")
            - 0.5 * (cat["segment"] == "vip") + 0.3 * rng.normal(size=n))
    if missing_share > 0:
        num[rng.random(num.shape) < missing_share] = np.nan
    frame = pd.DataFrame({**{c: num[:, i] for i, c in enumerate(NUMERIC)}, **cat})
    binary = (risk > 0.9).astype(np.int64)
    band = np.digitize(risk, [0.3, 1.3]).astype(np.int64)
    return frame, binary, band, risk.astype(F32)


def category_codes(frame):
    """Ordinal codes of the categorical columns (unknown: -1), for the tree libraries' numeric inputs."""
    return np.stack([pd.Categorical(frame[k], categories=v).codes for k, v in CATEGORIES.items()], axis=1).astype(F32)


def write_tensor(stem, name, value):
    safe = name.replace("/", "_").replace(":", "_")
    if value.dtype.kind in "OUS":
        path = f"{stem}.{safe}.txt"
        with open(os.path.join(OUT, path), "w") as f:
            for v in value.reshape(-1):
                f.write(str(v) + "\n")
        kind = "string"
    elif value.dtype.kind == "f":
        path = f"{stem}.{safe}.f32"
        value.astype("<f4").tofile(os.path.join(OUT, path))
        kind = "float"
    else:
        path = f"{stem}.{safe}.i64"
        value.astype("<i8").tofile(os.path.join(OUT, path))
        kind = "int64"
    return path, kind


def versions():
    import sklearn, skl2onnx, lightgbm, xgboost, onnxmltools, torch
    return {"python": platform.python_version(), "numpy": np.__version__, "onnx": onnx.__version__,
            "onnxruntime": ort.__version__, "scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__,
            "lightgbm": lightgbm.__version__, "xgboost": xgboost.__version__, "onnxmltools": onnxmltools.__version__,
            "torch": torch.__version__}


def save(name, model, feeds, task, family, notes):
    """Writes the model, runs onnxruntime on `feeds` and records everything the Swift test reads."""
    path = os.path.join(OUT, f"{name}.onnx")
    onnx.save(model, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    outputs = session.run(None, feeds)
    meta = {"name": name, "model": f"{name}.onnx", "task": task, "family": family, "notes": notes,
            "rows": HELD_OUT_ROWS, "inputs": [], "outputs": [], "generated_with": versions(),
            "operators": sorted({(n.domain or "ai.onnx") + ":" + n.op_type for n in model.graph.node})}
    for graph_input in session.get_inputs():
        value = feeds[graph_input.name]
        file, kind = write_tensor(f"{name}.in", graph_input.name, value)
        meta["inputs"].append({"name": graph_input.name, "type": kind, "shape": list(value.shape), "file": file})
    for spec, value in zip(session.get_outputs(), outputs):
        value = np.asarray(value)
        file, kind = write_tensor(f"{name}.out", spec.name, value)
        meta["outputs"].append({"name": spec.name, "type": kind, "shape": list(value.shape), "file": file})
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    print(f"{name:24s} {' '.join(meta['operators'])}")


def tree_ensemble_v5(model):
    """The model with its TreeEnsembleRegressor rewritten as ai.onnx.ml TreeEnsemble (opset 5), the
    form the converters are moving to: interior nodes and leaves in separate lists."""
    from onnx import helper, numpy_helper
    node = next(n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor")
    a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
    trees = sorted(set(a["nodes_treeids"]))
    index = {(t, n): i for i, (t, n) in enumerate(zip(a["nodes_treeids"], a["nodes_nodeids"]))}
    modes = [m.decode() if isinstance(m, bytes) else m for m in a["nodes_modes"]]
    interior = [i for i, m in enumerate(modes) if m != "LEAF"]
    leaves = [i for i, m in enumerate(modes) if m == "LEAF"]
    interior_at = {i: k for k, i in enumerate(interior)}
    leaf_at = {i: k for k, i in enumerate(leaves)}
    weight = {}
    for t, n, target, w in zip(a["target_treeids"], a["target_nodeids"], a["target_ids"], a["target_weights"]):
        weight[index[(t, n)]] = (target, w)
    codes = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4, "BRANCH_NEQ": 5}

    def child(tree, node_id):
        i = index[(tree, node_id)]
        return (leaf_at[i], 1) if modes[i] == "LEAF" else (interior_at[i], 0)

    true_children = [child(a["nodes_treeids"][i], a["nodes_truenodeids"][i]) for i in interior]
    false_children = [child(a["nodes_treeids"][i], a["nodes_falsenodeids"][i]) for i in interior]
    missing = a.get("nodes_missing_value_tracks_true", [0] * len(modes))
    base = list(a.get("base_values", [])) or [0.0]
    replacement = helper.make_node(
        "TreeEnsemble", list(node.input), list(node.output), domain="ai.onnx.ml", name=node.name,
        n_targets=int(a.get("n_targets", 1)), post_transform=0,
        aggregate_function={"AVERAGE": 0, "SUM": 1, "MIN": 2, "MAX": 3}[(a.get("aggregate_function", b"SUM")).decode()],
        tree_roots=[interior_at[index[(t, 0)]] for t in trees],
        nodes_featureids=[a["nodes_featureids"][i] for i in interior],
        nodes_splits=numpy_helper.from_array(np.array([a["nodes_values"][i] for i in interior], dtype=F32)),
        nodes_modes=numpy_helper.from_array(np.array([codes[modes[i]] for i in interior], dtype=np.uint8)),
        nodes_truenodeids=[c[0] for c in true_children], nodes_trueleafs=[c[1] for c in true_children],
        nodes_falsenodeids=[c[0] for c in false_children], nodes_falseleafs=[c[1] for c in false_children],
        nodes_missing_value_tracks_true=[missing[i] for i in interior],
        leaf_targetids=[weight[i][0] for i in leaves],
        # The regressor's base value folded into the first tree's leaves (TreeEnsemble has none; an
        # average spreads it over every tree's leaves).
        leaf_weights=numpy_helper.from_array(np.array(
            [weight[i][1] + (base[weight[i][0]] if a["nodes_treeids"][i] == trees[0] or a.get("aggregate_function", b"SUM") == b"AVERAGE" else 0.0)
             for i in leaves], dtype=F32)))
    nodes = [replacement if n is node else n for n in model.graph.node]
    graph = helper.make_graph(nodes, model.graph.name, model.graph.input, model.graph.output, model.graph.initializer)
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("ai.onnx.ml", 5)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=10, producer_name=model.producer_name,
                             producer_version=model.producer_version)


def membership_tree(rng):
    """A hand-built TreeEnsemble (opset 5) with set-membership splits, as LightGBM's categorical
    splits become in it: category codes in a set go one way."""
    from onnx import TensorProto, helper, numpy_helper
    # Node 0: code in {1, 4, 7} ? node 1 : leaf 2. Node 1: x0 <= 0.3 ? leaf 0 : leaf 1.
    # Node 2 (tree 2): code in {2} ? leaf 3 : leaf 4.
    node = helper.make_node(
        "TreeEnsemble", ["X"], ["Y"], domain="ai.onnx.ml", name="member_trees", n_targets=1, aggregate_function=1, post_transform=2,
        tree_roots=[0, 2], nodes_featureids=[1, 0, 1],
        nodes_splits=numpy_helper.from_array(np.array([0, 0.3, 0], dtype=F32)),
        nodes_modes=numpy_helper.from_array(np.array([6, 0, 6], dtype=np.uint8)),
        nodes_truenodeids=[1, 0, 3], nodes_trueleafs=[0, 1, 1], nodes_falsenodeids=[2, 1, 4], nodes_falseleafs=[1, 1, 1],
        nodes_missing_value_tracks_true=[1, 0, 0],
        membership_values=numpy_helper.from_array(np.array([1, 4, 7, np.nan, 2, np.nan], dtype=F32)),
        leaf_targetids=[0, 0, 0, 0, 0], leaf_weights=numpy_helper.from_array(np.array([0.5, -0.25, 1.0, 0.75, -1.5], dtype=F32)))
    graph = helper.make_graph([node], "membership", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 2])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("ai.onnx.ml", 5)], ir_version=10)
    x = np.stack([rng.normal(size=HELD_OUT_ROWS), rng.integers(0, 9, HELD_OUT_ROWS).astype(np.float64)], axis=1).astype(F32)
    x[::50, 1] = np.nan
    return model, x


def save_map_model(name, model, dicts, keys, task, family, notes):
    """A model whose input is a map (onnxruntime takes one map a run): runs it row by row, and
    records the input as the dense [rows, keys] matrix Weir feeds (absent keys 0), with the keys."""
    path = os.path.join(OUT, f"{name}.onnx")
    onnx.save(model, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    results = [session.run(None, {input_name: row}) for row in dicts]
    meta = {"name": name, "model": f"{name}.onnx", "task": task, "family": family, "notes": notes, "rows": len(dicts),
            "inputs": [], "outputs": [], "generated_with": versions(),
            "operators": sorted({(n.domain or "ai.onnx") + ":" + n.op_type for n in model.graph.node})}
    dense = np.array([[row.get(k, 0.0) for k in keys] for row in dicts], dtype=F32)
    file, kind = write_tensor(f"{name}.in", input_name, dense)
    meta["inputs"].append({"name": input_name, "type": kind, "shape": list(dense.shape), "file": file, "columns": keys})
    for position, spec in enumerate(session.get_outputs()):
        value = np.concatenate([np.asarray(r[position]).reshape(1, -1) if np.asarray(r[position]).ndim > 1 else np.asarray(r[position])
                                for r in results])
        file, kind = write_tensor(f"{name}.out", spec.name, value)
        meta["outputs"].append({"name": spec.name, "type": kind, "shape": list(value.shape), "file": file})
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    print(f"{name:24s} {' '.join(meta['operators'])}")


def preprocessing_ops(rng):
    """A hand-built graph with the ai.onnx operators tabular preprocessing uses that no export above
    contains: Clip, Abs, Reciprocal, Greater, LessOrEqual, And, Or, Xor, Where, Slice, Squeeze,
    Unsqueeze, ReduceMax, ReduceMin, ReduceL2, Max, Min, Mean, Gelu, Softplus, Floor, Ceil, Sign, IsNaN,
    Mod, and Equal on strings with a string input."""
    from onnx import TensorProto, helper, numpy_helper
    c = lambda name, value, dtype=F32: numpy_helper.from_array(np.array(value, dtype=dtype), name)
    n = helper.make_node
    nodes = [
        n("Clip", ["X", "lo", "hi"], ["clipped"]), n("Abs", ["X"], ["absolute"]), n("Add", ["absolute", "one"], ["shifted"]),
        n("Reciprocal", ["shifted"], ["inverse"]), n("Greater", ["X", "zero"], ["positive"]), n("LessOrEqual", ["X", "hi"], ["below"]),
        n("And", ["positive", "below"], ["inside"]), n("Or", ["positive", "below"], ["either"]), n("Xor", ["inside", "either"], ["only_one"]),
        n("Where", ["inside", "clipped", "inverse"], ["picked"]),
        n("Slice", ["picked", "starts", "ends", "axes", "steps"], ["sliced"]),
        n("Unsqueeze", ["sliced", "axis1"], ["lifted"]), n("Squeeze", ["lifted", "axis1"], ["flat"]),
        # onnxruntime's vectorized ReduceMax/ReduceMin give NaN or pass over it by lane: reduce a filled copy.
        n("IsNaN", ["X"], ["missing"]), n("Where", ["missing", "zero", "X"], ["filled"]),
        n("ReduceMax", ["filled", "axis_last"], ["row_max"], keepdims=1), n("ReduceMin", ["filled", "axis_last"], ["row_min"], keepdims=1),
        n("ReduceL2", ["X", "axis_last"], ["row_norm"], keepdims=1),
        n("Max", ["X", "clipped", "zero"], ["biggest"]), n("Min", ["X", "inverse"], ["smallest"]), n("Mean", ["X", "inverse", "clipped"], ["average"]),
        n("Gelu", ["X"], ["gelu"]), n("Softplus", ["X"], ["softplus"]), n("Floor", ["X"], ["floor"]), n("Ceil", ["X"], ["ceil"]),
        n("Sign", ["X"], ["sign"]), n("Cast", ["missing"], ["missing_float"], to=1),
        n("Cast", ["only_one"], ["only_one_float"], to=1),
        n("Mod", ["floor", "three"], ["remainder"], fmod=1),
        n("Equal", ["channel", "web"], ["is_web"]), n("Cast", ["is_web"], ["is_web_float"], to=1),
        n("Concat", ["flat", "row_max", "row_min", "row_norm", "biggest", "smallest", "average", "gelu", "softplus", "ceil", "sign",
                     "missing_float", "only_one_float", "remainder", "is_web_float"], ["Y"], axis=1),
    ]
    initializers = [c("lo", -1.0), c("hi", 1.5), c("one", 1.0), c("zero", 0.0), c("three", 3.0),
                    c("starts", [1], np.int64), c("ends", [9], np.int64), c("axes", [1], np.int64), c("steps", [2], np.int64),
                    c("axis1", [1], np.int64), c("axis_last", [-1], np.int64),
                    numpy_helper.from_array(np.array(["web"], dtype=object), "web")]
    graph = helper.make_graph(nodes, "preprocessing", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 6]),
                                                       helper.make_tensor_value_info("channel", TensorProto.STRING, [None, 1])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, None])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    onnx.checker.check_model(model)
    x = (rng.normal(size=(HELD_OUT_ROWS, 6)) * 2).astype(F32)
    x[rng.random(x.shape) < 0.03] = np.nan
    channel = rng.choice(["web", "app", "pos", "never_seen"], size=(HELD_OUT_ROWS, 1)).astype(object)
    return model, {"X": x, "channel": channel}


def per_column_feeds(frame, columns):
    """skl2onnx's DataFrame export: one [rows, 1] input per column."""
    feeds = {}
    for c in columns:
        v = frame[c].to_numpy()
        feeds[c] = v.astype(F32).reshape(-1, 1) if c in NUMERIC else v.astype(object).reshape(-1, 1)
    return feeds


def main():
    from skl2onnx import convert_sklearn, to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (AdaBoostClassifier, ExtraTreesRegressor, GradientBoostingClassifier,
                                  GradientBoostingRegressor, RandomForestClassifier)
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import (Binarizer, KBinsDiscretizer, MaxAbsScaler, MinMaxScaler, OneHotEncoder,
                                       OrdinalEncoder, PolynomialFeatures, PowerTransformer, RobustScaler, StandardScaler)
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.svm import SVC, SVR, LinearSVC
    from sklearn.tree import DecisionTreeClassifier

    os.makedirs(OUT, exist_ok=True)
    for old in os.listdir(OUT):
        os.remove(os.path.join(OUT, old))
    rng = np.random.default_rng(23)
    train, y, band, target = make_rows(rng, TRAIN_ROWS)
    test, _, _, _ = make_rows(rng, HELD_OUT_ROWS, unknown_share=0.02)
    train_missing, y_missing, _, _ = make_rows(rng, TRAIN_ROWS, missing_share=0.03)
    test_missing, _, _, _ = make_rows(rng, HELD_OUT_ROWS, missing_share=0.03)
    X, X_test = train[NUMERIC].to_numpy(F32), test[NUMERIC].to_numpy(F32)
    no_zipmap = {"zipmap": False}
    all_columns = NUMERIC + CATEGORICAL

    def column_transformer(numeric_steps=None):
        numeric = make_pipeline(*numeric_steps) if numeric_steps else StandardScaler()
        return ColumnTransformer([("num", numeric, NUMERIC), ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)])

    # --- scikit-learn pipelines over the payments frame: one input per column (DataFrame export) ---
    pipe = make_pipeline(column_transformer(), GradientBoostingClassifier(n_estimators=60, max_depth=3, random_state=0)).fit(train, y)
    save("ct_onehot_gbt", to_onnx(pipe, train[:1], options=no_zipmap), per_column_feeds(test, all_columns), "classification",
         "scikit-learn", "ColumnTransformer(StandardScaler 20 numeric, OneHotEncoder 6 categorical) -> GradientBoostingClassifier; the benchmark model")
    labels = np.where(y == 1, "fraud", "legit")
    pipe = make_pipeline(column_transformer(), LogisticRegression(max_iter=500)).fit(train, labels)
    save("ct_onehot_logreg_string_labels", to_onnx(pipe, train[:1], options=no_zipmap), per_column_feeds(test, all_columns),
         "classification", "scikit-learn", "ColumnTransformer -> LogisticRegression with string class labels")
    pipe = make_pipeline(column_transformer(), MLPClassifier((32,), max_iter=300, random_state=0)).fit(train, band)
    save("ct_onehot_mlp_multiclass", to_onnx(pipe, train[:1], options=no_zipmap), per_column_feeds(test, all_columns),
         "classification", "scikit-learn", "ColumnTransformer -> MLPClassifier, 3 risk bands")
    ordinal = ColumnTransformer([("num", "passthrough", NUMERIC),
                                 ("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), CATEGORICAL)])
    pipe = make_pipeline(ordinal, RandomForestClassifier(n_estimators=25, max_depth=8, random_state=0)).fit(train, y)
    save("ct_ordinal_random_forest", to_onnx(pipe, train[:1], options=no_zipmap), per_column_feeds(test, all_columns),
         "classification", "scikit-learn", "OrdinalEncoder (LabelEncoder) on the categories -> RandomForestClassifier")
    pipe = make_pipeline(column_transformer([SimpleImputer(strategy="median"), StandardScaler()]),
                         GradientBoostingRegressor(n_estimators=40, max_depth=3, random_state=0)).fit(train_missing, target)
    save("ct_imputer_gbt_regressor", to_onnx(pipe, train_missing[:1]), per_column_feeds(test_missing, all_columns),
         "regression", "scikit-learn", "ColumnTransformer(SimpleImputer + StandardScaler, OneHotEncoder) -> GradientBoostingRegressor, with missing numbers")

    # --- column groups: one float input for the numbers, one string input for the categories ---
    groups = ColumnTransformer([("num", make_pipeline(SimpleImputer(), StandardScaler()), list(range(20))),
                                ("cat", OneHotEncoder(handle_unknown="ignore"), list(range(20, 26)))])
    pipe = make_pipeline(groups, LogisticRegression(max_iter=500))
    grouped = np.concatenate([train_missing[NUMERIC].to_numpy(object), train_missing[CATEGORICAL].to_numpy(object)], axis=1)
    pipe.fit(grouped, y_missing)
    model = convert_sklearn(pipe, initial_types=[("numeric", FloatTensorType([None, 20])), ("categorical", StringTensorType([None, 6]))],
                            options={id(pipe.steps[-1][1]): no_zipmap})
    save("groups_imputer_onehot_logreg", model,
         {"numeric": test_missing[NUMERIC].to_numpy(F32), "categorical": test_missing[CATEGORICAL].to_numpy(object)},
         "classification", "scikit-learn", "two inputs (float [N,20], string [N,6]): SimpleImputer + StandardScaler, OneHotEncoder -> LogisticRegression")

    # --- numeric estimators on one float input ---
    numeric_models = [
        ("imputer_logreg", make_pipeline(SimpleImputer(), LogisticRegression(max_iter=500)), "classification", True, "SimpleImputer -> LogisticRegression"),
        ("binarizer_logreg", make_pipeline(Binarizer(threshold=0.2), LogisticRegression(max_iter=500)), "classification", False, "Binarizer -> LogisticRegression"),
        ("scalers_logreg", make_pipeline(MinMaxScaler(), RobustScaler(), MaxAbsScaler(), LogisticRegression(max_iter=500)), "classification", False, "MinMaxScaler, RobustScaler, MaxAbsScaler -> LogisticRegression"),
        ("power_logreg", make_pipeline(PowerTransformer(), LogisticRegression(max_iter=500)), "classification", False, "PowerTransformer (Yeo-Johnson: Log, Pow, Where) -> LogisticRegression"),
        ("kbins_logreg", make_pipeline(KBinsDiscretizer(n_bins=5, encode="onehot-dense", quantile_method="averaged_inverted_cdf"), LogisticRegression(max_iter=500)), "classification", False, "KBinsDiscretizer (one-hot) -> LogisticRegression"),
        ("svc_rbf", make_pipeline(StandardScaler(), SVC(kernel="rbf", probability=True, random_state=0)), "classification", False, "StandardScaler -> SVC rbf with probabilities (Platt)"),
        ("svc_poly_multiclass", make_pipeline(StandardScaler(), SVC(kernel="poly", degree=3, probability=True, random_state=0)), "classification_band", False, "StandardScaler -> SVC poly, 3 classes, probabilities"),
        ("svc_linear_decision", make_pipeline(StandardScaler(), SVC(kernel="linear")), "classification", False, "StandardScaler -> SVC linear, decision function scores"),
        ("svc_sigmoid", make_pipeline(StandardScaler(), SVC(kernel="sigmoid", probability=True, random_state=0)), "classification", False, "StandardScaler -> SVC sigmoid kernel"),
        ("svr_rbf", make_pipeline(StandardScaler(), SVR(kernel="rbf")), "regression", False, "StandardScaler -> SVR rbf"),
        ("svr_poly", make_pipeline(StandardScaler(), SVR(kernel="poly", degree=2)), "regression", False, "StandardScaler -> SVR poly"),
        ("linear_svc", LinearSVC(), "classification", False, "LinearSVC"),
        ("knn_classifier", make_pipeline(StandardScaler(), KNeighborsClassifier(5)), "classification", False, "StandardScaler -> KNeighborsClassifier (Scan, TopK)"),
        ("knn_regressor", make_pipeline(StandardScaler(), KNeighborsRegressor(5, metric="manhattan")), "regression", False, "StandardScaler -> KNeighborsRegressor, Manhattan distance"),
        ("sgd_logloss", SGDClassifier(loss="log_loss", random_state=0), "classification", False, "SGDClassifier log loss"),
        ("gaussian_nb", GaussianNB(), "classification_band", False, "GaussianNB (Exp, Pow, ReduceLogSumExp)"),
        ("decision_tree", DecisionTreeClassifier(max_depth=6, random_state=0), "classification_band", False, "DecisionTreeClassifier"),
        ("extra_trees_regressor", ExtraTreesRegressor(n_estimators=15, max_depth=8, random_state=0), "regression", False, "ExtraTreesRegressor"),
        ("adaboost", AdaBoostClassifier(n_estimators=10, random_state=0), "classification", False, "AdaBoostClassifier (SAMME: Where, Equal, Sum)"),
        ("poly_ridge", make_pipeline(PolynomialFeatures(2), Ridge()), "regression", False, "PolynomialFeatures(2) -> Ridge"),
    ]
    for name, estimator, task, missing, notes in numeric_models:
        x_train = train_missing[NUMERIC].to_numpy(F32) if missing else X
        x_test = test_missing[NUMERIC].to_numpy(F32) if missing else X_test
        labels_train = {"classification": y_missing if missing else y, "classification_band": band, "regression": target}[task]
        if name.startswith("sv") or name.startswith("knn"):
            # Kernel machines keep their support vectors, neighbours their training set: a smaller one keeps the file small.
            x_train, labels_train = x_train[:600], labels_train[:600]
        estimator.fit(x_train, labels_train)
        options = no_zipmap if task.startswith("classification") and hasattr(estimator, "classes_") else None
        try:
            model = to_onnx(estimator, x_train[:1], options=options)
        except (RuntimeError, NameError, ValueError):
            model = to_onnx(estimator, x_train[:1])
        save(name, model, {model.graph.input[0].name: x_test}, task.replace("_band", ""), "scikit-learn", notes)

    # --- LightGBM and XGBoost through onnxmltools ---
    import lightgbm
    import xgboost
    from onnxmltools import convert_lightgbm, convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType as ToolsFloat
    codes_train = np.concatenate([X, category_codes(train)], axis=1)
    codes_test = np.concatenate([X_test, category_codes(test)], axis=1)
    codes_test[codes_test == -1] = np.nan
    boosted = [
        ("lightgbm_binary", lightgbm.LGBMClassifier(n_estimators=80, num_leaves=15, verbose=-1), y, False),
        ("lightgbm_multiclass", lightgbm.LGBMClassifier(n_estimators=40, num_leaves=15, verbose=-1), band, False),
        ("lightgbm_regressor", lightgbm.LGBMRegressor(n_estimators=60, num_leaves=15, verbose=-1), target, False),
        ("lightgbm_categorical", lightgbm.LGBMClassifier(n_estimators=60, num_leaves=15, verbose=-1), y, True),
        ("xgboost_binary", xgboost.XGBClassifier(n_estimators=60, max_depth=4), y, False),
        ("xgboost_multiclass", xgboost.XGBClassifier(n_estimators=30, max_depth=4), band, False),
        ("xgboost_regressor", xgboost.XGBRegressor(n_estimators=60, max_depth=4), target, False),
    ]
    for name, estimator, labels_train, categorical in boosted:
        x_train, x_test = (codes_train, codes_test) if name.startswith("lightgbm") else (X, X_test)
        if categorical:
            estimator.fit(x_train, labels_train, categorical_feature=list(range(20, 26)))
        else:
            estimator.fit(x_train[:, :20] if not name.startswith("lightgbm") else x_train[:, :20], labels_train)
            x_test = x_test[:, :20]
        width = x_test.shape[1]
        if name.startswith("lightgbm"):
            model = convert_lightgbm(estimator, initial_types=[("input", ToolsFloat([None, width]))], zipmap=False, target_opset=15)
        else:
            model = convert_xgboost(estimator, initial_types=[("input", ToolsFloat([None, width]))], target_opset=15)
        task = "regression" if "regressor" in name else "classification"
        note = "categorical splits on 6 category-code columns (unknown: NaN)" if categorical else "20 numeric features"
        save(name, model, {"input": x_test.astype(F32)}, task, name.split("_")[0], f"{type(estimator).__name__}: {note}")

    # --- DictVectorizer: each event a map of the features it has (absent keys read 0) ---
    from sklearn.feature_extraction import DictVectorizer
    from skl2onnx.common.data_types import DictionaryType
    def sparse_rows(frame, rng):
        return [{c: float(frame[c].iloc[i]) for c in NUMERIC[:12] if rng.random() < 0.7} for i in range(len(frame))]
    dict_rng = np.random.default_rng(31)
    train_dicts, test_dicts = sparse_rows(train, dict_rng), sparse_rows(test, dict_rng)
    pipe = make_pipeline(DictVectorizer(sparse=False), LogisticRegression(max_iter=500)).fit(train_dicts, y)
    model = convert_sklearn(pipe, initial_types=[("features", DictionaryType(StringTensorType([1]), FloatTensorType([1])))],
                            options={id(pipe.steps[-1][1]): no_zipmap})
    save_map_model("dict_vectorizer_logreg", model, test_dicts, list(pipe.steps[0][1].feature_names_), "classification",
                   "scikit-learn", "DictVectorizer (a map of the features present; absent keys read 0) -> LogisticRegression")

    # --- the remaining preprocessing operators, hand-built ---
    model, feeds = preprocessing_ops(np.random.default_rng(41))
    save("preprocessing_ops", model, feeds, "regression", "onnx", "hand-built graph of the ai.onnx preprocessing operators no export above uses")

    # --- TreeEnsemble (ai.onnx.ml opset 5), the form the converters are moving to ---
    for source, name in [("lightgbm_regressor", "tree_ensemble_v5_lightgbm"), ("extra_trees_regressor", "tree_ensemble_v5_extra_trees")]:
        original = onnx.load(os.path.join(OUT, f"{source}.onnx"))
        feeds = {spec["name"]: np.fromfile(os.path.join(OUT, spec["file"]), dtype="<f4").reshape(spec["shape"])
                 for spec in json.load(open(os.path.join(OUT, f"{source}.json")))["inputs"]}
        save(name, tree_ensemble_v5(original), feeds, "regression", "onnx",
             f"the {source} export rewritten as TreeEnsemble (ai.onnx.ml opset 5)")
    model, x = membership_tree(np.random.default_rng(5))
    save("tree_ensemble_v5_membership", model, {"X": x}, "regression", "onnx",
         "hand-built TreeEnsemble (opset 5) with BRANCH_MEMBER splits on a category code (its LOGISTIC post_transform, which onnxruntime does not apply)")

    # --- PyTorch: a tabular network with category embeddings ---
    import torch
    torch.manual_seed(0)

    class Tabular(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = torch.nn.ModuleList([torch.nn.Embedding(len(v) + 1, 4) for v in CATEGORIES.values()])
            self.norm = torch.nn.LayerNorm(20 + 4 * len(CATEGORIES))
            self.hidden = torch.nn.Linear(20 + 4 * len(CATEGORIES), 32)
            self.batch_norm = torch.nn.BatchNorm1d(32)
            self.out = torch.nn.Linear(32, 1)

        def forward(self, numeric, codes):
            parts = [numeric] + [e(codes[:, i]) for i, e in enumerate(self.embeddings)]
            h = torch.nn.functional.gelu(self.batch_norm(self.hidden(self.norm(torch.cat(parts, dim=1)))))
            return torch.sigmoid(self.out(h))

    network = Tabular()
    codes_int = (category_codes(train) + 1).astype(np.int64)
    optimizer = torch.optim.Adam(network.parameters(), lr=0.01)
    xt, ct, yt = torch.tensor(X), torch.tensor(codes_int), torch.tensor(y, dtype=torch.float32).reshape(-1, 1)
    for _ in range(60):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy(network(xt, ct), yt)
        loss.backward()
        optimizer.step()
    network.eval()
    path = os.path.join(OUT, "torch_embeddings.onnx")
    torch.onnx.export(network, (xt[:2], ct[:2]), path, input_names=["numeric", "category_codes"], output_names=["probability"],
                      dynamic_axes={"numeric": {0: "rows"}, "category_codes": {0: "rows"}, "probability": {0: "rows"}},
                      opset_version=18, dynamo=False)
    model = onnx.load(path)
    save("torch_embeddings", model, {"numeric": X_test, "category_codes": (category_codes(test) + 1).astype(np.int64)},
         "regression", "pytorch", "Embedding (Gather) per category, LayerNormalization, Linear, BatchNorm, GELU, Sigmoid")


if __name__ == "__main__":
    main()
