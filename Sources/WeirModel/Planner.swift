/// How a model is compiled.
public struct ModelOptions: Sendable {
    /// Run qualifying dense layers in int8 (false: everything fp32, for reference runs).
    public var quantize = true
    /// A dense layer runs in int8 only with at least this many inputs and outputs; smaller ones gain
    /// nothing from int8 (quantizing the row costs as much as the product).
    public var int8MinimumInputs = 16
    public var int8MinimumOutputs = 8
    /// ... and at least this many multiply-adds per row (inputs × outputs): below it, quantizing the
    /// row and dequantizing the result cost more than fp32 FMA saves (measured with `make bench`).
    /// nil: the kernel set's own threshold (`KernelSet.int8MinimumMultiplyAdds`).
    public var int8MinimumMultiplyAdds: Int? = nil
    /// An int8 layer with at least this many multiply-adds per row runs with 7-bit operands
    /// (`int7`: activations 0...127, weights −63...63) on kernel sets whose 7-bit kernel is faster
    /// (AVX2: about 1.5× the multiply-adds per cycle, exactly; not AVX-512 VNNI, where 8 bits run
    /// as fast); nil keeps every layer at 8 bits. The default, 65,536 (a 256 × 256 layer), leaves
    /// small models, where the narrower operands cost the most accuracy and gain the least, at 8 bits
    /// (docs/model.md gives the accuracy cost).
    public var int7MinimumMultiplyAdds: Int? = 65_536
    /// Apply the 7-bit rule on every kernel set, also where 8 bits run as fast (tests check the VNNI
    /// kernel on int7 layers; a fleet can match its AVX2 workers' results this way).
    public var int7EvenWhereNotFaster = false
    /// The kernels to run on: the widest set this CPU runs by default. A narrower set gives the same
    /// integer results (tests compare them); a wider one than the CPU runs falls back to the best it does.
    public var kernels = KernelSet.best
    /// Larger batches run through the whole plan this many rows at a time, so intermediate values
    /// stay in the core's caches (every step is row-independent, so results are the same).
    /// Intermediate values read from the scratch then hold the last tile only. nil: as many rows as
    /// keep the widest intermediate value within 256 KiB, from 32 to 256 (measured with `make bench`:
    /// each tile costs every step's fixed work once, so small models gain from long tiles).
    public var tileRows: Int? = nil
    public init() {}
}

/// One planned step as `weir model inspect` shows it.
public struct LayerDescription: Sendable, Equatable {
    /// The tensor the step writes.
    public let output: String
    /// The ONNX nodes it came from.
    public let nodes: [String]
    public let operation: String
    /// `int8`, `int7` (7-bit operands, for large layers) or `fp32`.
    public let precision: String
    public let parameterBytes: Int
}

struct Plan: Sendable {
    var steps: [any Step]
    var slotCount: Int
    var slotNames: [String: Int]
    var slotInfo: [SlotInfo]
    var inputSlot: Int
    var inputWidth: Int
    var outputSlots: [(name: String, slot: Int)]
    var layers: [LayerDescription]
}

/// Operators Weir runs, by domain ("" is the default ONNX domain).
let supportedOperators: [String: Set<String>] = [
    "": ["Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Softmax",
         "Identity", "Cast", "Reshape", "Flatten", "Concat", "ArgMax", "QuantizeLinear", "DequantizeLinear",
         "DynamicQuantizeLinear", "MatMulInteger"],
    "ai.onnx.ml": ["Scaler", "LinearClassifier", "LinearRegressor", "Normalizer", "ArrayFeatureExtractor",
                   "TreeEnsembleClassifier", "TreeEnsembleRegressor"],
]

struct Planner {
    let graph: ImportedGraph
    let options: ModelOptions
    var constants: [String: Tensor]
    var nodes: [GraphNode]
    var removed: Set<Int> = []
    var slots: [String: Int] = [:]
    var info: [SlotInfo] = []
    var steps: [any Step] = []
    var layers: [LayerDescription] = []

    init(graph: ImportedGraph, options: ModelOptions) {
        self.graph = graph
        self.options = options
        constants = graph.initializers
        nodes = graph.nodes
    }

    // MARK: entry

    mutating func plan(inputWidth requestedWidth: Int?) throws -> Plan {
        try checkOperators()
        guard graph.inputs.count == 1, let input = graph.inputs.first else {
            throw ModelError("the model has \(graph.inputs.count) inputs; Weir feeds one [rows, features] float tensor")
        }
        guard input.elementType == "float" else {
            throw ModelError("input '\(input.name)' is \(input.elementType); Weir feeds float32 rows (export with a float input)")
        }
        let declaredWidth = input.shape.count == 2 ? input.shape[1] : nil
        guard let width = declaredWidth ?? requestedWidth else {
            throw ModelError("input '\(input.name)' has shape \(input.shape.map { $0.map(String.init) ?? "?" }); the feature count must be fixed")
        }
        let inputSlot = newSlot(input.name, SlotInfo(kind: .float, rank: 2, width: width))
        try foldConstants()
        try fuseDynamicQuantization()
        for index in nodes.indices where !removed.contains(index) {
            try emit(index)
        }
        var outputs = [(String, Int)]()
        for output in graph.outputs {
            guard let slot = slots[output.name] else {
                throw ModelError("graph output '\(output.name)' is not computed from the input")
            }
            outputs.append((output.name, slot))
        }
        return Plan(steps: steps, slotCount: info.count, slotNames: slots, slotInfo: info, inputSlot: inputSlot,
                    inputWidth: width, outputSlots: outputs, layers: layers)
    }

    private func checkOperators() throws {
        for node in nodes {
            let domain = node.domain == "ai.onnx" ? "" : node.domain
            if node.opType == "ZipMap" {
                throw ModelError("\(node.label) outputs a list of maps, which Weir cannot batch: export the classifier with skl2onnx options={'zipmap': False}")
            }
            guard supportedOperators[domain]?.contains(node.opType) == true else {
                throw ModelError("unsupported operator \(node.opType) (domain \(domain.isEmpty ? "ai.onnx" : domain)) in node '\(node.name.isEmpty ? node.outputs.first ?? "?" : node.name)'")
            }
        }
    }

    // MARK: helpers

    private mutating func newSlot(_ name: String, _ slotInfo: SlotInfo) -> Int {
        let slot = info.count
        info.append(slotInfo)
        slots[name] = slot
        return slot
    }

    private func runtime(_ name: String, _ node: GraphNode) throws -> (slot: Int, info: SlotInfo) {
        guard let slot = slots[name] else {
            if constants[name] != nil {
                throw ModelError("\(node.label): input '\(name)' is a constant where Weir expects a batch value")
            }
            throw ModelError("\(node.label): input '\(name)' is not produced by any earlier node")
        }
        return (slot, info[slot])
    }

    private func consumers(of name: String) -> [Int] {
        nodes.indices.filter { !removed.contains($0) && nodes[$0].inputs.contains(name) }
    }

    private func isGraphOutput(_ name: String) -> Bool { graph.outputs.contains { $0.name == name } }

    private mutating func record(_ step: any Step, output: String, nodes names: [String], precision: String, bytes: Int) {
        steps.append(step)
        layers.append(LayerDescription(output: output, nodes: names, operation: step.summary, precision: precision,
                                       parameterBytes: bytes))
    }

    // MARK: constant folding

    private mutating func foldConstants() throws {
        for index in nodes.indices {
            let node = nodes[index]
            let inputs = node.inputs.filter { !$0.isEmpty }
            guard !inputs.isEmpty, inputs.allSatisfy({ constants[$0] != nil }) else { continue }
            guard let value = try evaluateConstant(node) else { continue }
            constants[node.outputs[0]] = value
            removed.insert(index)
        }
    }

    private func evaluateConstant(_ node: GraphNode) throws -> Tensor? {
        let values = node.inputs.map { $0.isEmpty ? nil : constants[$0] }
        switch node.opType {
        case "DequantizeLinear":
            let x = values[0]!, scale = values[1]!.asFloats
            let zero = values.count > 2 ? values[2]?.asFloats ?? [0] : [0]
            let axis = perAxis(node, rank: x.shape.count, count: scale.count)
            let ints = x.asFloats
            var out = [Float](repeating: 0, count: ints.count)
            let inner = axis.map { x.shape[($0 + 1)...].reduce(1, *) } ?? 1
            for i in 0..<ints.count {
                let c = scale.count == 1 ? 0 : (i / inner) % scale.count
                out[i] = (ints[i] - (zero.count == 1 ? zero[0] : zero[c])) * scale[c]
            }
            return Tensor(shape: x.shape, floats: out)
        case "Identity":
            return values[0]
        case "Cast":
            let to = node.int("to", default: 1)
            let x = values[0]!
            return [1, 10, 11].contains(to) ? Tensor(shape: x.shape, floats: x.asFloats) : Tensor(shape: x.shape, int64s: x.asInt64s)
        case "Reshape":
            let x = values[0]!
            var shape = values[1]!.asInt64s.map(Int.init)
            for i in shape.indices where shape[i] == 0 { shape[i] = x.shape[i] }
            if let unknown = shape.firstIndex(of: -1) {
                shape[unknown] = x.count / max(1, shape.filter { $0 != -1 }.reduce(1, *))
            }
            var y = x
            y.shape = shape
            return y
        case "Mul", "Add", "Sub", "Div":
            let a = values[0]!, b = values[1]!
            let op = BinaryOperator(rawValue: node.opType)!
            let av = a.asFloats, bv = b.asFloats
            guard av.count == bv.count || av.count == 1 || bv.count == 1 else { return nil }
            let count = max(av.count, bv.count)
            let out = (0..<count).map { op.apply(av[av.count == 1 ? 0 : $0], bv[bv.count == 1 ? 0 : $0]) }
            return Tensor(shape: av.count >= bv.count ? a.shape : b.shape, floats: out)
        default:
            return nil
        }
    }

    private func perAxis(_ node: GraphNode, rank: Int, count: Int) -> Int? {
        guard count > 1 else { return nil }
        let axis = Int(node.int("axis", default: 1))
        return axis < 0 ? axis + rank : axis
    }

    // MARK: DynamicQuantizeLinear + MatMulInteger (onnxruntime quantize_dynamic)

    /// Rewrites X → DynamicQuantizeLinear → MatMulInteger(·, W) → Cast → Mul(·, x_scale · w_scale)
    /// into one dense layer with W dequantized. Weir then quantizes activations per row, so a row's
    /// result never depends on the other rows of its batch (per-tensor dynamic quantization would).
    private mutating func fuseDynamicQuantization() throws {
        for d in nodes.indices where !removed.contains(d) && nodes[d].opType == "DynamicQuantizeLinear" {
            let dql = nodes[d]
            let (q, s, zp) = (dql.outputs[0], dql.outputs[1], dql.outputs.count > 2 ? dql.outputs[2] : "")
            var fused: [Int] = []
            for m in consumers(of: q) where nodes[m].opType == "MatMulInteger" {
                let matmul = nodes[m]
                guard let weights = constants[matmul.inputs[1]], weights.shape.count == 2 else { continue }
                let weightZero = matmul.inputs.count > 3 && !matmul.inputs[3].isEmpty ? constants[matmul.inputs[3]]?.asFloats ?? [0] : [0]
                guard let cast = consumers(of: matmul.outputs[0]).first, nodes[cast].opType == "Cast",
                      let mul = consumers(of: nodes[cast].outputs[0]).first, nodes[mul].opType == "Mul" else { continue }
                let scaleName = nodes[mul].inputs.first { $0 != nodes[cast].outputs[0] }!
                guard let scaleMul = nodes.indices.first(where: { !removed.contains($0) && nodes[$0].outputs.contains(scaleName) }),
                      nodes[scaleMul].opType == "Mul", nodes[scaleMul].inputs.contains(s),
                      let weightScale = constants[nodes[scaleMul].inputs.first { $0 != s } ?? ""]?.asFloats else { continue }
                let k = weights.shape[0], n = weights.shape[1]
                let w = weights.asFloats
                var inputMajor = [Float](repeating: 0, count: k * n)
                for row in 0..<k {
                    for col in 0..<n {
                        let zero = weightZero.count == 1 ? weightZero[0] : weightZero[col]
                        let scale = weightScale.count == 1 ? weightScale[0] : weightScale[col]
                        inputMajor[row * n + col] = (w[row * n + col] - zero) * scale
                    }
                }
                let name = "\(matmul.name.isEmpty ? matmul.outputs[0] : matmul.name)"
                constants["__weir_dequantized_\(name)"] = Tensor(shape: [k, n], floats: inputMajor)
                // Replace the Mul with a MatMul on the float input; drop the integer chain.
                nodes[mul] = GraphNode(opType: "MatMul", domain: "", name: name,
                                       inputs: [dql.inputs[0], "__weir_dequantized_\(name)"], outputs: nodes[mul].outputs,
                                       attributes: [:])
                removed.formUnion([m, cast, scaleMul])
                fused.append(m)
            }
            let stillUsed = [q, s, zp].contains { name in !name.isEmpty && !consumers(of: name).isEmpty }
            if !fused.isEmpty && !stillUsed { removed.insert(d) }
        }
    }

    // MARK: emitting steps

    private mutating func emit(_ index: Int) throws {
        let node = nodes[index]
        switch node.opType {
        case "MatMul":
            guard let weights = constants[node.inputs[1]], weights.shape.count == 2 else {
                throw ModelError("\(node.label): the second input must be a constant 2-D weight matrix")
            }
            let k = weights.shape[0], m = weights.shape[1]
            try emitDense(node: node, index: index, input: node.inputs[0], inputMajor: weights.asFloats, inputs: k, outputs: m, bias: nil)
        case "Gemm":
            guard node.int("transA", default: 0) == 0 else { throw ModelError("\(node.label): transA=1 is not supported") }
            guard let b = constants[node.inputs[1]], b.shape.count == 2 else {
                throw ModelError("\(node.label): input B must be a constant 2-D weight matrix")
            }
            let alpha = node.float("alpha", default: 1), beta = node.float("beta", default: 1)
            let transB = node.int("transB", default: 0) == 1
            let (k, m) = transB ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
            let values = b.asFloats
            var inputMajor = [Float](repeating: 0, count: k * m)
            for kk in 0..<k { for j in 0..<m { inputMajor[kk * m + j] = alpha * (transB ? values[j * k + kk] : values[kk * m + j]) } }
            var bias: [Float]? = nil
            if node.inputs.count > 2, !node.inputs[2].isEmpty {
                guard let c = constants[node.inputs[2]] else { throw ModelError("\(node.label): input C must be a constant") }
                let cv = c.asFloats
                guard cv.count == m || cv.count == 1 else { throw ModelError("\(node.label): C has \(cv.count) values for \(m) outputs") }
                bias = (0..<m).map { beta * cv[cv.count == 1 ? 0 : $0] }
            }
            try emitDense(node: node, index: index, input: node.inputs[0], inputMajor: inputMajor, inputs: k, outputs: m, bias: bias)
        case "Add", "Sub", "Mul", "Div":
            try emitBinary(node)
        case "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Identity":
            let x = try runtime(node.inputs[0], node)
            let function: UnaryFunction
            switch node.opType {
            case "Relu": function = .relu
            case "LeakyRelu": function = .leakyRelu(node.float("alpha", default: 0.01))
            case "Sigmoid": function = .sigmoid
            case "Tanh": function = .tanh
            default: function = .identity
            }
            let out = newSlot(node.outputs[0], x.info)
            record(UnaryStep(input: x.slot, output: out, function: function), output: node.outputs[0], nodes: [node.name],
                   precision: "fp32", bytes: 0)
        case "Softmax":
            let x = try runtime(node.inputs[0], node)
            let axis = Int(node.int("axis", default: (graph.opsets[""] ?? 13) >= 13 ? -1 : 1))
            guard axis == -1 || axis == x.info.rank - 1 else { throw ModelError("\(node.label): softmax over axis \(axis) of a batch is not supported") }
            let out = newSlot(node.outputs[0], x.info)
            record(SoftmaxStep(input: x.slot, output: out, kernels: options.kernels.usable), output: node.outputs[0], nodes: [node.name], precision: "fp32", bytes: 0)
        case "Cast":
            let x = try runtime(node.inputs[0], node)
            let to = node.int("to", default: 1)
            let kind: ValueKind = [1, 10, 11].contains(to) ? .float : (to == 8 ? .string : .int64)
            let out = newSlot(node.outputs[0], SlotInfo(kind: kind, rank: x.info.rank, width: x.info.width))
            record(CastStep(input: x.slot, output: out, to: kind), output: node.outputs[0], nodes: [node.name], precision: "-", bytes: 0)
        case "Reshape":
            let x = try runtime(node.inputs[0], node)
            guard let shape = constants[node.inputs[1]]?.asInt64s.map(Int.init) else {
                throw ModelError("\(node.label): the target shape must be a constant")
            }
            let (rank, width) = try reshapedLayout(x.info, shape, node)
            let out = newSlot(node.outputs[0], SlotInfo(kind: x.info.kind, rank: rank, width: width))
            record(ReshapeStep(input: x.slot, output: out, rank: rank, width: width), output: node.outputs[0], nodes: [node.name], precision: "-", bytes: 0)
        case "Flatten":
            let x = try runtime(node.inputs[0], node)
            guard node.int("axis", default: 1) == 1 else { throw ModelError("\(node.label): only axis=1 is supported") }
            let out = newSlot(node.outputs[0], SlotInfo(kind: x.info.kind, rank: 2, width: x.info.width))
            record(ReshapeStep(input: x.slot, output: out, rank: 2, width: x.info.width), output: node.outputs[0], nodes: [node.name], precision: "-", bytes: 0)
        case "Concat":
            let parts = try node.inputs.map { try runtime($0, node) }
            let axis = Int(node.int("axis", default: 1))
            guard axis == 1 || axis == -1 else { throw ModelError("\(node.label): only concatenation along features (axis 1) is supported") }
            let out = newSlot(node.outputs[0], SlotInfo(kind: parts[0].info.kind, rank: 2, width: parts.reduce(0) { $0 + $1.info.width }))
            record(ConcatStep(inputs: parts.map(\.slot), output: out), output: node.outputs[0], nodes: [node.name], precision: "-", bytes: 0)
        case "ArgMax":
            let x = try runtime(node.inputs[0], node)
            let axis = Int(node.int("axis", default: 0))
            guard axis == 1 || axis == -1 else { throw ModelError("\(node.label): only ArgMax over features (axis 1) is supported") }
            let keep = node.int("keepdims", default: 1) == 1
            let out = newSlot(node.outputs[0], SlotInfo(kind: .int64, rank: keep ? 2 : 1, width: 1))
            record(ArgMaxStep(input: x.slot, output: out, keepDims: keep, selectLast: node.int("select_last_index", default: 0) == 1),
                   output: node.outputs[0], nodes: [node.name], precision: "-", bytes: 0)
        case "ArrayFeatureExtractor":
            if let labels = constants[node.inputs[0]] {
                let ix = try runtime(node.inputs[1], node)
                let kind: ValueKind = labels.strings != nil ? .string : (labels.floats != nil ? .float : .int64)
                let out = newSlot(node.outputs[0], SlotInfo(kind: kind, rank: ix.info.rank, width: ix.info.width))
                record(GatherLabelsStep(indices: ix.slot, output: out, labels: labels), output: node.outputs[0], nodes: [node.name], precision: "-", bytes: 0)
            } else {
                let x = try runtime(node.inputs[0], node)
                guard let columns = constants[node.inputs[1]]?.asInt64s.map(Int.init) else {
                    throw ModelError("\(node.label): column indices must be constant")
                }
                let out = newSlot(node.outputs[0], SlotInfo(kind: x.info.kind, rank: 2, width: columns.count))
                record(GatherColumnsStep(input: x.slot, output: out, columns: columns), output: node.outputs[0], nodes: [node.name], precision: "-", bytes: 0)
            }
        case "Scaler":
            let x = try runtime(node.inputs[0], node)
            let out = newSlot(node.outputs[0], SlotInfo(kind: .float, rank: 2, width: x.info.width))
            let offset = node.floats("offset") ?? [0], scale = node.floats("scale") ?? [1]
            record(ScalerStep(input: x.slot, output: out, offset: offset, scale: scale), output: node.outputs[0], nodes: [node.name],
                   precision: "fp32", bytes: (offset.count + scale.count) * 4)
        case "Normalizer":
            let x = try runtime(node.inputs[0], node)
            let out = newSlot(node.outputs[0], SlotInfo(kind: .float, rank: 2, width: x.info.width))
            record(NormalizerStep(input: x.slot, output: out, norm: try node.choice("norm", default: Norm.max)), output: node.outputs[0],
                   nodes: [node.name], precision: "fp32", bytes: 0)
        case "LinearClassifier", "LinearRegressor":
            try emitLinear(node)
        case "TreeEnsembleClassifier", "TreeEnsembleRegressor":
            try emitTrees(node)
        case "QuantizeLinear":
            try emitQuantize(node, index: index)
        case "DequantizeLinear":
            let x = try runtime(node.inputs[0], node)
            let (scales, zeros) = try quantParameters(node)
            let out = newSlot(node.outputs[0], SlotInfo(kind: .float, rank: x.info.rank, width: x.info.width))
            record(DequantizeLinearStep(input: x.slot, output: out, scales: scales, zeroPoints: zeros), output: node.outputs[0],
                   nodes: [node.name], precision: "fp32", bytes: 0)
        case "DynamicQuantizeLinear", "MatMulInteger":
            throw ModelError("\(node.label): only the DynamicQuantizeLinear → MatMulInteger → Cast → Mul chain that onnxruntime's quantize_dynamic writes is supported")
        default:
            throw ModelError("unsupported operator \(node.opType) in node '\(node.name)'")
        }
    }

    /// A dense layer (fp32 or int8 by policy); fuses a following Add of a constant bias.
    private mutating func emitDense(node: GraphNode, index: Int, input: String, inputMajor: [Float], inputs k: Int, outputs m: Int,
                                    bias initialBias: [Float]?) throws {
        let x = try runtime(input, node)
        guard x.info.width == k else {
            throw ModelError("\(node.label): input '\(input)' has \(x.info.width) features, the weights expect \(k)")
        }
        var bias = initialBias
        var outputName = node.outputs[0]
        var names = [node.name]
        if bias == nil, !isGraphOutput(outputName) {
            let users = consumers(of: outputName)
            if users.count == 1, nodes[users[0]].opType == "Add" {
                let add = nodes[users[0]]
                let other = add.inputs.first { $0 != outputName } ?? ""
                if let b = constants[other], b.count == m {
                    bias = b.asFloats
                    outputName = add.outputs[0]
                    names.append(add.name)
                    removed.insert(users[0])
                }
            }
        }
        // A Relu that is the only reader of the layer's output runs in the layer's epilogue.
        var relu = false
        if !isGraphOutput(outputName) {
            let users = consumers(of: outputName)
            if users.count == 1, nodes[users[0]].opType == "Relu" {
                relu = true
                outputName = nodes[users[0]].outputs[0]
                names.append(nodes[users[0]].name)
                removed.insert(users[0])
            }
        }
        let out = newSlot(outputName, SlotInfo(kind: .float, rank: 2, width: m))
        let label = node.name.isEmpty ? outputName : node.name
        let kernels = options.kernels.usable
        if options.quantize && k >= options.int8MinimumInputs && m >= options.int8MinimumOutputs
            && k * m >= options.int8MinimumMultiplyAdds ?? kernels.int8MinimumMultiplyAdds {
            let outputMajor = outputMajorWeights(inputMajor, inputs: k, outputs: m)
            let sevenBit = (kernels.hasFasterSevenBitKernel || options.int7EvenWhereNotFaster)
                && options.int7MinimumMultiplyAdds.map { k * m >= $0 } == true
            let scheme: IntegerScheme = sevenBit ? .int7 : .int8
            let weights = QuantizedWeights(outputMajor: outputMajor, outputs: m, inputs: k, scheme: scheme, kernels: options.kernels.usable)
            record(QuantizedDenseStep(input: x.slot, output: out, weights: weights, bias: bias, relu: relu, name: label,
                                      kernels: options.kernels),
                   output: outputName, nodes: names, precision: scheme.rawValue, bytes: k * m + m * 8 + (bias?.count ?? 0) * 4)
        } else {
            record(DenseStep(input: x.slot, output: out, inputs: k, outputs: m, weightsInputMajor: inputMajor, bias: bias, relu: relu, name: label,
                             kernels: options.kernels.usable),
                   output: outputName, nodes: names, precision: "fp32", bytes: (k * m + (bias?.count ?? 0)) * 4)
        }
    }

    private mutating func emitBinary(_ node: GraphNode) throws {
        let op = BinaryOperator(rawValue: node.opType)!
        func operand(_ name: String) throws -> (Operand, SlotInfo?) {
            if let slot = slots[name] { return (.slot(slot), info[slot]) }
            guard let c = constants[name] else { throw ModelError("\(node.label): input '\(name)' is not produced by any earlier node") }
            return (.constant(c.asFloats), nil)
        }
        let (left, leftInfo) = try operand(node.inputs[0])
        let (right, rightInfo) = try operand(node.inputs[1])
        guard let shapeInfo = leftInfo ?? rightInfo else { throw ModelError("\(node.label): both inputs are constants") }
        var width = max(leftInfo?.width ?? 1, rightInfo?.width ?? 1)
        for side in [left, right] {
            if case .constant(let c) = side {
                guard c.count == 1 || c.count == width || width == 1 else {
                    throw ModelError("\(node.label): a constant of \(c.count) values cannot broadcast over \(width) features")
                }
                width = max(width, c.count)
            }
        }
        let out = newSlot(node.outputs[0], SlotInfo(kind: .float, rank: shapeInfo.rank == 1 && width == 1 ? 1 : 2, width: width))
        record(BinaryStep(left: left, right: right, output: out, op: op, name: node.name), output: node.outputs[0], nodes: [node.name],
               precision: "fp32", bytes: 0)
    }

    private func reshapedLayout(_ x: SlotInfo, _ shape: [Int], _ node: GraphNode) throws -> (Int, Int) {
        let perRow = x.width
        switch shape.count {
        case 1:
            guard perRow == 1 else { throw ModelError("\(node.label): reshaping [rows, \(perRow)] to \(shape) would mix rows") }
            return (1, 1)
        case 2:
            let second = shape[1] == 0 ? perRow : (shape[1] == -1 ? perRow : shape[1])
            guard second == perRow else { throw ModelError("\(node.label): reshaping [rows, \(perRow)] to \(shape) would mix rows") }
            return (2, second)
        default:
            let trailing = shape.dropFirst(2)
            guard trailing.allSatisfy({ $0 == 1 }) else { throw ModelError("\(node.label): tensors above rank 2 are not supported (shape \(shape))") }
            return (2, shape[1] <= 0 ? perRow : shape[1])
        }
    }

    private func quantParameters(_ node: GraphNode) throws -> ([Float], [Float]) {
        guard let scale = constants[node.inputs[1]]?.asFloats else { throw ModelError("\(node.label): the scale must be a constant") }
        let zero = node.inputs.count > 2 && !node.inputs[2].isEmpty ? constants[node.inputs[2]]?.asFloats ?? [0] : [0]
        return (scale, zero)
    }

    private mutating func emitQuantize(_ node: GraphNode, index: Int) throws {
        let x = try runtime(node.inputs[0], node)
        let (scales, zeros) = try quantParameters(node)
        let zeroTensor = node.inputs.count > 2 ? constants[node.inputs[2]] : nil
        let (low, high) = quantizedRange(zeroTensor)
        let users = consumers(of: node.outputs[0])
        if users.count == 1, nodes[users[0]].opType == "DequantizeLinear", !isGraphOutput(node.outputs[0]) {
            let dq = nodes[users[0]]
            let (dqScales, dqZeros) = try quantParameters(dq)
            if dqScales == scales && dqZeros == zeros {
                let out = newSlot(dq.outputs[0], SlotInfo(kind: .float, rank: x.info.rank, width: x.info.width))
                record(FakeQuantStep(input: x.slot, output: out, scales: scales, zeroPoints: zeros, low: low, high: high),
                       output: dq.outputs[0], nodes: [node.name, dq.name], precision: "fp32", bytes: 0)
                removed.insert(users[0])
                return
            }
        }
        let out = newSlot(node.outputs[0], SlotInfo(kind: .int64, rank: x.info.rank, width: x.info.width))
        record(QuantizeLinearStep(input: x.slot, output: out, scales: scales, zeroPoints: zeros, low: low, high: high),
               output: node.outputs[0], nodes: [node.name], precision: "-", bytes: 0)
    }

    private func classLabels(_ node: GraphNode) -> ClassLabels? {
        if let ints = node.ints("classlabels_ints") ?? node.ints("classlabels_int64s") { return .ints(ints) }
        if let strings = node.strings("classlabels_strings") { return .strings(strings) }
        return nil
    }

    /// A classifier writes labels (output 0) and scores (output 1); a regressor only values (output 0).
    private mutating func outputSlots(_ node: GraphNode, labels: ClassLabels?, scoreWidth: Int)
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
