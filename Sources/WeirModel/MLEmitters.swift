import Foundation

/// ai.onnx.ml: the scikit-learn preprocessing and model operators.
extension Planner {
    static let mlFamily: [OperatorKey: Emitter] = family(in: "ai.onnx.ml", [
        "Scaler": { try $0.emitScaler($1, index: $2) },
        "Normalizer": { try $0.emitNormalizer($1, index: $2) },
        "ArrayFeatureExtractor": { try $0.emitArrayFeatureExtractor($1, index: $2) },
        "LinearClassifier": { try $0.emitLinearModel($1, index: $2) },
        "LinearRegressor": { try $0.emitLinearModel($1, index: $2) },
        "TreeEnsembleClassifier": { try $0.emitTreeModel($1, index: $2) },
        "TreeEnsembleRegressor": { try $0.emitTreeModel($1, index: $2) },
        "TreeEnsemble": { planner, node, _ in try planner.emitTreeEnsembleV5(node) },
    ])

    /// Scaler: (x - offset) * scale per feature.
    mutating func emitScaler(_ node: GraphNode, index: Int) throws {
        let x = try runtime(node.inputs[0], node)
        let out = newSlot(node.outputs[0], SlotInfo(kind: .float, rank: 2, width: x.info.width))
        let offset = node.floats("offset") ?? [0], scale = node.floats("scale") ?? [1]
        record(ScalerStep(input: x.slot, output: out, offset: offset, scale: scale), output: node.outputs[0], nodes: [node.name],
               precision: "fp32", bytes: (offset.count + scale.count) * 4)
    }

    /// Normalizer by MAX, L1 or L2 per row.
    mutating func emitNormalizer(_ node: GraphNode, index: Int) throws {
        let x = try runtime(node.inputs[0], node)
        let out = newSlot(node.outputs[0], SlotInfo(kind: .float, rank: 2, width: x.info.width))
        record(NormalizerStep(input: x.slot, output: out, norm: try node.choice("norm", default: Norm.max)), output: node.outputs[0],
               nodes: [node.name], precision: "fp32", bytes: 0)
    }

    /// Column gather, or label lookup from a constant table.
    mutating func emitArrayFeatureExtractor(_ node: GraphNode, index: Int) throws {
        if let labels = constants[node.inputs[0]] {
            let ix = try runtime(node.inputs[1], node)
            let table = ConstantTable(labels, symbols: &symbols)
            let out = newSlot(node.outputs[0], SlotInfo(kind: table.kind, rank: ix.info.rank, width: ix.info.width))
            record(GatherLabelsStep(indices: ix.slot, output: out, labels: table), output: node.outputs[0], nodes: [node.name], precision: "-", bytes: 0)
        } else {
            let x = try runtime(node.inputs[0], node)
            guard let columns = constants[node.inputs[1]]?.asInt64s.map(Int.init) else {
                throw ModelError("\(node.label): column indices must be constant")
            }
            let out = newSlot(node.outputs[0], SlotInfo(kind: x.info.kind, rank: 2, width: columns.count))
            record(GatherColumnsStep(input: x.slot, output: out, columns: columns), output: node.outputs[0], nodes: [node.name], precision: "-", bytes: 0)
        }
    }

    /// LinearClassifier and LinearRegressor.
    mutating func emitLinearModel(_ node: GraphNode, index: Int) throws {
        try emitLinear(node)
    }

    /// TreeEnsembleClassifier and TreeEnsembleRegressor.
    mutating func emitTreeModel(_ node: GraphNode, index: Int) throws {
        try emitTrees(node)
    }

    mutating func classLabels(_ node: GraphNode) -> ClassLabels? {
        if let ints = node.ints("classlabels_ints") ?? node.ints("classlabels_int64s") { return ClassLabels(values: ints, kind: .int64) }
        if let strings = node.strings("classlabels_strings") { return ClassLabels(values: strings.map { symbols.intern($0) }, kind: .string) }
        return nil
    }

    /// A classifier writes labels (output 0) and scores (output 1); a regressor only values (output 0).
    mutating func outputSlots(_ node: GraphNode, labels: ClassLabels?, scoreWidth: Int)
        -> (label: Int?, scoreName: String, score: Int)
    {
        var labelSlot: Int? = nil
        if let labels { labelSlot = newSlot(node.outputs[0], SlotInfo(kind: labels.kind, rank: 1, width: 1)) }
        let scoreName = labels == nil ? node.outputs[0] : node.outputs[1]
        return (labelSlot, scoreName, newSlot(scoreName, SlotInfo(kind: .float, rank: 2, width: scoreWidth)))
    }

    private mutating func emitLinear(_ node: GraphNode) throws {
        let x = try runtime(node.inputs[0], node)
        let classifier = node.opType == "LinearClassifier"
        let labels = classifier ? classLabels(node) : nil
        if classifier && labels == nil { throw ModelError("\(node.label): class labels are missing") }
        guard let coefficients = node.floats("coefficients") else { throw ModelError("\(node.label): attribute 'coefficients' is missing") }
        let targets = classifier ? coefficients.count / max(x.info.width, 1) : Int(node.int("targets", default: 1))
        let intercepts = node.floats("intercepts") ?? []
        let post = try node.choice("post_transform", default: PostTransform.none)
        let binary = classifier && targets == 1 && labels!.count == 2
        let (labelSlot, scoreName, scoreSlot) = outputSlots(node, labels: labels, scoreWidth: binary ? 2 : targets)
        record(LinearStep(input: x.slot, labelOutput: labelSlot, scoreOutput: scoreSlot, coefficients: coefficients, intercepts: intercepts,
                          targets: targets, postTransform: post, labels: labels),
               output: scoreName, nodes: [node.name], precision: "fp32", bytes: (coefficients.count + intercepts.count) * 4)
    }

    /// TreeEnsemble (ai.onnx.ml opset 5): scores per target, aggregated as its attribute says. Its
    /// post_transform is checked but not applied: onnxruntime (1.32) and the ONNX reference both
    /// return the raw aggregate, and Weir answers as onnxruntime does.
    mutating func emitTreeEnsembleV5(_ node: GraphNode) throws {
        let x = try floatInput(node.inputs[0], node)
        let ensemble = try TreeEnsemble(v5: node)
        let aggregates: [TreeAggregate] = [.average, .sum, .min, .max]
        let transforms: [PostTransform] = [.none, .softmax, .logistic, .softmaxZero, .probit]
        let aggregateCode = Int(node.int("aggregate_function", default: 1)), transformCode = Int(node.int("post_transform", default: 0))
        guard aggregates.indices.contains(aggregateCode), transforms.indices.contains(transformCode) else {
            throw ModelError("\(node.label): aggregate_function \(aggregateCode) or post_transform \(transformCode) is not defined")
        }
        let out = newSlot(node.outputs[0], SlotInfo(kind: .float, rank: 2, width: ensemble.targetCount))
        record(TreeEnsembleStep(input: x.slot, labelOutput: nil, scoreOutput: out, ensemble: ensemble, baseValues: [],
                                postTransform: .none, aggregate: aggregates[aggregateCode], labels: nil,
                                targets: ensemble.targetCount),
               output: node.outputs[0], nodes: [node.name], precision: "fp32",
               bytes: ensemble.threshold.count * 13 + ensemble.leafWeights.count * 8)
    }

    private mutating func emitTrees(_ node: GraphNode) throws {
        let x = try runtime(node.inputs[0], node)
        let classifier = node.opType == "TreeEnsembleClassifier"
        let labels = classifier ? classLabels(node) : nil
        if classifier && labels == nil { throw ModelError("\(node.label): class labels are missing") }
        let ensemble = try TreeEnsemble(node: node, weightPrefix: classifier ? "class" : "target")
        let targets = classifier ? labels!.count : Int(node.int("n_targets", default: Int64(ensemble.targetCount)))
        let binary = classifier && labels!.count == 2 && ensemble.targetCount == 1
        let (labelSlot, scoreName, scoreSlot) = outputSlots(node, labels: labels, scoreWidth: binary ? 2 : targets)
        let base = node.floats("base_values") ?? []
        record(TreeEnsembleStep(input: x.slot, labelOutput: labelSlot, scoreOutput: scoreSlot, ensemble: ensemble, baseValues: base,
                                postTransform: try node.choice("post_transform", default: PostTransform.none),
                                aggregate: try node.choice("aggregate_function", default: TreeAggregate.sum), labels: labels, targets: targets),
               output: scoreName, nodes: [node.name], precision: "fp32",
               bytes: ensemble.threshold.count * 13 + ensemble.leafWeights.count * 8)
    }
}
