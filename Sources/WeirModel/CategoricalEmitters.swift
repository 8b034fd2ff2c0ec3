import Foundation

/// ai.onnx.ml: categorical encoders, imputation and support vector machines.
extension Planner {
    static let categoricalFamily: [OperatorKey: Emitter] = family(in: "ai.onnx.ml", [
        "OneHotEncoder": { planner, node, _ in try planner.emitOneHotEncoder(node) },
        "LabelEncoder": { planner, node, _ in try planner.emitLabelEncoder(node) },
        "CategoryMapper": { planner, node, _ in try planner.emitCategoryMapper(node) },
        "Imputer": { planner, node, _ in try planner.emitImputer(node) },
        "Binarizer": { planner, node, _ in try planner.emitBinarizer(node) },
        "SVMClassifier": { planner, node, _ in try planner.emitSVMClassifier(node) },
        "SVMRegressor": { planner, node, _ in try planner.emitSVMRegressor(node) },
        "ZipMap": { planner, node, _ in try planner.emitIgnoredZipMap(node) },
        "DictVectorizer": { planner, node, _ in try planner.emitDictVectorizer(node) },
    ])

    /// Keys for an encoder: strings become symbols.
    private mutating func keys(strings: [String]?, integers: [Int64]?, floats: [Float]?, _ node: GraphNode) throws -> EncoderKeys {
        if let strings, !strings.isEmpty { return .integers(CategoryIndex(strings.map { symbols.intern($0) })) }
        if let integers, !integers.isEmpty { return .integers(CategoryIndex(integers)) }
        if let floats, !floats.isEmpty {
            var table = [Float: Int32]()
            for (position, key) in floats.enumerated() { table[key] = Int32(position) }
            return .floats(table)
        }
        throw ModelError("\(node.label): no categories (keys) are given")
    }

    /// OneHotEncoder: [rows, columns] → [rows, columns × categories] floats.
    mutating func emitOneHotEncoder(_ node: GraphNode) throws {
        let x = try runtime(node.inputs[0], node)
        let categoryKeys = try keys(strings: node.strings("cats_strings"), integers: node.ints("cats_int64s"), floats: nil, node)
        let count = node.strings("cats_strings")?.count ?? node.ints("cats_int64s")?.count ?? 0
        if x.info.kind == .string && node.strings("cats_strings") == nil {
            throw ModelError("\(node.label): a string input needs cats_strings")
        }
        let out = newSlot(node.outputs[0], SlotInfo(kind: .float, rank: 2, width: x.info.width * count))
        record(OneHotEncoderStep(input: x.slot, output: out, keys: categoryKeys, categories: count), output: node.outputs[0],
               nodes: [node.name], precision: "-", bytes: count * 8)
    }

    /// LabelEncoder (opset 1: strings ↔ positions in classes_strings; opset 2: key and value lists;
    /// opset 4: key and value tensors).
    mutating func emitLabelEncoder(_ node: GraphNode) throws {
        let x = try runtime(node.inputs[0], node)
        var keyStrings = node.strings("keys_strings"), keyInts = node.ints("keys_int64s"), keyFloats = node.floats("keys_floats")
        var values: Tensor
        var defaultValue: Tensor
        if let classes = node.strings("classes_strings") {
            // Opset 1: a string input gives its class's position, an integer input the class.
            if x.info.kind == .string {
                keyStrings = classes
                values = Tensor(shape: [classes.count], int64s: (0..<Int64(classes.count)).map { $0 })
                defaultValue = Tensor(shape: [1], int64s: [node.int("default_int64", default: -1)])
            } else {
                keyInts = (0..<Int64(classes.count)).map { $0 }
                values = Tensor(shape: [classes.count], strings: classes)
                defaultValue = Tensor(shape: [1], strings: [node.string("default_string", default: "_Unused")])
            }
        } else {
            if case .tensor(let keys)? = node.attributes["keys_tensor"] {
                keyStrings = keys.strings
                keyInts = keys.int64s
                keyFloats = keys.floats
            }
            if case .tensor(let tensor)? = node.attributes["values_tensor"] {
                values = tensor
            } else if let strings = node.strings("values_strings") {
                values = Tensor(shape: [strings.count], strings: strings)
            } else if let ints = node.ints("values_int64s") {
                values = Tensor(shape: [ints.count], int64s: ints)
            } else if let floats = node.floats("values_floats") {
                values = Tensor(shape: [floats.count], floats: floats)
            } else {
                throw ModelError("\(node.label): no values are given")
            }
            if case .tensor(let tensor)? = node.attributes["default_tensor"] {
                defaultValue = tensor
            } else {
                switch values.storage {
                case .string: defaultValue = Tensor(shape: [1], strings: [node.string("default_string", default: "_Unused")])
                case .int64: defaultValue = Tensor(shape: [1], int64s: [node.int("default_int64", default: -1)])
                case .float: defaultValue = Tensor(shape: [1], floats: [node.float("default_float", default: -0.0)])
                }
            }
        }
        try emitEncoder(node, x, keyStrings: keyStrings, keyInts: keyInts, keyFloats: keyFloats, values: values, defaultValue: defaultValue)
    }

    /// CategoryMapper: strings → int64 through cats_strings/cats_int64s, or back.
    mutating func emitCategoryMapper(_ node: GraphNode) throws {
        let x = try runtime(node.inputs[0], node)
        guard let strings = node.strings("cats_strings"), let ints = node.ints("cats_int64s"), strings.count == ints.count else {
            throw ModelError("\(node.label): cats_strings and cats_int64s must be given, of one length")
        }
        if x.info.kind == .string {
            try emitEncoder(node, x, keyStrings: strings, keyInts: nil, keyFloats: nil, values: Tensor(shape: [ints.count], int64s: ints),
                            defaultValue: Tensor(shape: [1], int64s: [node.int("default_int64", default: -1)]))
        } else {
            try emitEncoder(node, x, keyStrings: nil, keyInts: ints, keyFloats: nil, values: Tensor(shape: [strings.count], strings: strings),
                            defaultValue: Tensor(shape: [1], strings: [node.string("default_string", default: "_Unused")]))
        }
    }

    private mutating func emitEncoder(_ node: GraphNode, _ x: (slot: Int, info: SlotInfo), keyStrings: [String]?, keyInts: [Int64]?,
                                      keyFloats: [Float]?, values: Tensor, defaultValue: Tensor) throws {
        if x.info.kind == .string && keyStrings == nil { throw ModelError("\(node.label): a string input needs string keys") }
        if x.info.kind != .string && keyStrings != nil && keyInts == nil && keyFloats == nil {
            throw ModelError("\(node.label): string keys need a string input (the input is \(x.info.kind))")
        }
        let encoderKeys = try keys(strings: x.info.kind == .string ? keyStrings : nil, integers: keyInts, floats: keyFloats, node)
        let table = ConstantTable(values, symbols: &symbols)
        let fallback = ConstantTable(defaultValue, symbols: &symbols)
        guard fallback.kind == table.kind, fallback.count >= 1 else { throw ModelError("\(node.label): the default is not of the values' type") }
        let out = newSlot(node.outputs[0], SlotInfo(kind: table.kind, rowShape: x.info.rowShape))
        record(LabelEncoderStep(input: x.slot, output: out, keys: encoderKeys, values: table, defaultValue: fallback, name: node.opType),
               output: node.outputs[0], nodes: [node.name], precision: "-", bytes: table.count * 16)
    }

    /// Imputer: per-column replacement of missing values.
    mutating func emitImputer(_ node: GraphNode) throws {
        let x = try runtime(node.inputs[0], node)
        let imputed = node.floats("imputed_value_floats") ?? node.ints("imputed_value_int64s")?.map { Float($0) } ?? []
        guard !imputed.isEmpty else { throw ModelError("\(node.label): no imputed values are given") }
        let replaced = node.floats("imputed_value_floats") != nil
            ? node.float("replaced_value_float", default: 0) : Float(node.int("replaced_value_int64", default: 0))
        let out = newSlot(node.outputs[0], x.info)
        record(ImputerStep(input: x.slot, output: out, imputed: imputed, replaced: replaced), output: node.outputs[0], nodes: [node.name],
               precision: "fp32", bytes: imputed.count * 4)
    }

    /// Binarizer: 1 above the threshold.
    mutating func emitBinarizer(_ node: GraphNode) throws {
        let x = try floatInput(node.inputs[0], node)
        let out = newSlot(node.outputs[0], SlotInfo(kind: .float, rowShape: x.info.rowShape))
        record(BinarizerStep(input: x.slot, output: out, threshold: node.float("threshold", default: 0)), output: node.outputs[0],
               nodes: [node.name], precision: "fp32", bytes: 0)
    }

    private func supportVectors(_ node: GraphNode, count: Int, features: Int) throws -> SupportVectors? {
        guard count > 0 else { return nil }
        let vectors = node.floats("support_vectors") ?? []
        guard vectors.count == count * features else {
            throw ModelError("\(node.label): \(vectors.count) support vector values for \(count) vectors of \(features) features")
        }
        let parameters = node.floats("kernel_params") ?? []
        return SupportVectors(kernel: try node.choice("kernel_type", default: SVMKernel.linear),
                              gamma: parameters.count > 0 ? parameters[0] : 0, coef0: parameters.count > 1 ? parameters[1] : 0,
                              degree: parameters.count > 2 ? Int(parameters[2]) : 0, vectors: vectors, count: count, features: features,
                              kernels: options.kernels.usable)
    }

    /// SVMClassifier: labels and scores (pairwise decision values, or probabilities when trained with them).
    mutating func emitSVMClassifier(_ node: GraphNode) throws {
        let x = try floatInput(node.inputs[0], node)
        guard let labels = classLabels(node) else { throw ModelError("\(node.label): class labels are missing") }
        let perClass = (node.ints("vectors_per_class") ?? []).map(Int.init)
        let count = perClass.reduce(0, +)
        let coefficients = node.floats("coefficients") ?? []
        let rho = node.floats("rho") ?? [0]
        let probA = node.floats("prob_a") ?? [], probB = node.floats("prob_b") ?? []
        let classes = labels.count, pairs = classes * (classes - 1) / 2
        let sv = try supportVectors(node, count: count, features: x.info.width)
        if sv != nil {
            guard perClass.count == classes, coefficients.count >= (classes - 1) * count, rho.count >= pairs,
                  probA.isEmpty || (probA.count >= pairs && probB.count >= pairs) else {
                throw ModelError("\(node.label): vectors_per_class, coefficients, rho or prob_a/prob_b do not fit \(classes) classes")
            }
        } else {
            guard coefficients.count == classes * x.info.width else {
                throw ModelError("\(node.label): \(coefficients.count) coefficients for \(classes) classes × \(x.info.width) features")
            }
        }
        let width: Int
        if sv == nil { width = classes } else if !probA.isEmpty { width = classes } else { width = pairs == 1 && rho.count == 1 ? 2 : pairs }
        let (labelSlot, scoreName, scoreSlot) = outputSlots(node, labels: labels, scoreWidth: width)
        record(SVMClassifierStep(input: x.slot, labelOutput: labelSlot!, scoreOutput: scoreSlot, supportVectors: sv, vectorsPerClass: perClass,
                                 coefficients: coefficients, rho: rho, probA: probA, probB: probB, labels: labels,
                                 postTransform: try node.choice("post_transform", default: PostTransform.none), scoreWidth: width),
               output: scoreName, nodes: [node.name], precision: "fp32", bytes: (coefficients.count + (sv?.vectors.count ?? 0)) * 4)
    }

    /// SVMRegressor: one value per row.
    mutating func emitSVMRegressor(_ node: GraphNode) throws {
        let x = try floatInput(node.inputs[0], node)
        let count = Int(node.int("n_supports", default: 0))
        let coefficients = node.floats("coefficients") ?? []
        let sv = try supportVectors(node, count: count, features: x.info.width)
        guard coefficients.count == (sv == nil ? x.info.width : count) else {
            throw ModelError("\(node.label): \(coefficients.count) coefficients do not fit \(count) support vectors")
        }
        guard try node.choice("post_transform", default: PostTransform.none) == .none else {
            throw ModelError("\(node.label): only post_transform NONE is defined for SVMRegressor")
        }
        let out = newSlot(node.outputs[0], SlotInfo(kind: .float, rank: 2, width: 1))
        record(SVMRegressorStep(input: x.slot, output: out, supportVectors: sv, coefficients: coefficients,
                                rho: node.floats("rho")?.first ?? 0, oneClass: node.int("one_class", default: 0) != 0),
               output: node.outputs[0], nodes: [node.name], precision: "fp32", bytes: (coefficients.count + (sv?.vectors.count ?? 0)) * 4)
    }

    /// DictVectorizer of a map input: the feature row already holds one column per vocabulary key.
    mutating func emitDictVectorizer(_ node: GraphNode) throws {
        guard graph.inputs.contains(where: { $0.name == node.inputs[0] && $0.elementType.hasPrefix("map(") }) else {
            throw ModelError("\(node.label): its input must be a graph input of map type")
        }
        let x = try runtime(node.inputs[0], node)
        view(node.outputs[0], of: x.slot, rowShape: x.info.rowShape)
    }

    /// ZipMap, when the bundle says to ignore it: its output is its input (the scores).
    mutating func emitIgnoredZipMap(_ node: GraphNode) throws {
        guard options.ignoresZipMap else {
            throw ModelError("\(node.label) outputs a list of maps, which Weir cannot batch: export the classifier with skl2onnx options={'zipmap': False}, or set \"zipmap\": \"ignore\" in the bundle manifest")
        }
        let x = try runtime(node.inputs[0], node)
        slots[node.outputs[0]] = x.slot
    }

    /// A runtime input as floats: integer and boolean values are converted by a Cast step first.
    mutating func floatInput(_ name: String, _ node: GraphNode) throws -> (slot: Int, info: SlotInfo) {
        let x = try runtime(name, node)
        if x.info.kind == .float { return x }
        guard x.info.kind != .string else { throw ModelError("\(node.label): input '\(name)' is a string; this operator reads numbers") }
        let converted = "\(name)__weir_float"
        if let slot = slots[converted] { return (slot, info[slot]) }
        let out = newSlot(converted, SlotInfo(kind: .float, rowShape: x.info.rowShape))
        record(CastStep(input: x.slot, output: out, to: .float), output: converted, nodes: [node.name], precision: "-", bytes: 0)
        return (out, info[out])
    }
}
