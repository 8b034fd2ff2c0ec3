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
    /// Treat a ZipMap node (a classifier's list of {label: probability} maps) as its input, the
    /// score tensor: the bundle manifest's `"zipmap": "ignore"`.
    public var ignoresZipMap = false
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

/// One graph input as Weir feeds it: its columns sit side by side with the other inputs' in the
/// feature row (graph input order), a string column holding the category's symbol.
public struct ModelInput: Sendable, Equatable {
    /// The element types an input may have.
    public enum Kind: String, Sendable, CaseIterable {
        case float, double, int64, string
    }
    public let name: String
    public let kind: Kind
    /// Columns per row.
    public let width: Int
    /// Where its columns start in the feature row.
    public let firstColumn: Int
    /// Whether the graph reads it as `[rows]` rather than `[rows, width]`.
    let rankOne: Bool
    /// The names of its columns, when the model gives them: a map input (DictVectorizer) is one
    /// column per vocabulary key, an absent key being 0.
    public var columnNames: [String]? = nil
}

struct Plan: Sendable {
    var steps: [any Step]
    var slotCount: Int
    var slotNames: [String: Int]
    var slotInfo: [SlotInfo]
    /// Each graph input and the slot it fills.
    var inputs: [(input: ModelInput, slot: Int)]
    var inputWidth: Int
    var symbols: SymbolTable
    var outputSlots: [(name: String, slot: Int)]
    var layers: [LayerDescription]
}

/// Operators Weir runs, by domain ("" is the default ONNX domain): those with an emitter.
let supportedOperators: [String: Set<String>] = Dictionary(
    grouping: Planner.emitters.keys, by: \.domain).mapValues { Set($0.map(\.opType)) }

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
    /// The strings the plan's steps compare with or produce.
    var symbols = SymbolTableBuilder()
    /// Names that view another value's storage with another row shape (Reshape, Identity, ...).
    var views: [String: SlotInfo] = [:]
    /// Distance Scans' stacked outputs (`[points, rows]`), by name: the slot holding them row-major.
    var scanDistances: [String: Int] = [:]
    /// Outputs of Shape nodes: the batch value whose shape they hold.
    var shapeSources: [String: Int] = [:]

    init(graph: ImportedGraph, options: ModelOptions) {
        self.graph = graph
        self.options = options
        constants = graph.initializers
        nodes = graph.nodes
    }

    // MARK: entry

    mutating func plan(inputWidth requestedWidth: Int?) throws -> Plan {
        try checkOperators()
        guard !graph.inputs.isEmpty else { throw ModelError("the model has no inputs") }
        var inputs = [(input: ModelInput, slot: Int)]()
        var column = 0
        for input in graph.inputs {
            if input.elementType.hasPrefix("map(") {
                // A map feeds a DictVectorizer: one float column per vocabulary key.
                guard let vectorizer = nodes.first(where: { $0.opType == "DictVectorizer" && $0.inputs.first == input.name }),
                      let keys = vectorizer.strings("string_vocabulary") ?? vectorizer.ints("int64_vocabulary")?.map({ String($0) }) else {
                    throw ModelError("input '\(input.name)' is a \(input.elementType); Weir feeds a map only to a DictVectorizer")
                }
                var fed = ModelInput(name: input.name, kind: .float, width: keys.count, firstColumn: column, rankOne: false)
                fed.columnNames = keys
                inputs.append((fed, newSlot(input.name, SlotInfo(kind: .float, rank: 2, width: keys.count))))
                column += keys.count
                continue
            }
            guard let kind = ModelInput.Kind(rawValue: input.elementType) else {
                throw ModelError("input '\(input.name)' is \(input.elementType); Weir feeds float, double, int64 or string inputs")
            }
            guard input.shape.count == 1 || input.shape.count == 2 else {
                throw ModelError("input '\(input.name)' has shape \(shapeText(input.shape)); Weir feeds [rows, columns] or [rows]")
            }
            let declared = input.shape.count == 1 ? 1 : input.shape[1]
            guard let width = declared ?? (graph.inputs.count == 1 ? requestedWidth : nil) else {
                throw ModelError("input '\(input.name)' has shape \(shapeText(input.shape)); the column count must be fixed")
            }
            let fed = ModelInput(name: input.name, kind: kind, width: width, firstColumn: column, rankOne: input.shape.count == 1)
            let valueKind: ValueKind = kind == .string ? .string : (kind == .int64 ? .int64 : .float)
            inputs.append((fed, newSlot(input.name, SlotInfo(kind: valueKind, rank: fed.rankOne ? 1 : 2, width: width))))
            column += width
        }
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
        return Plan(steps: steps, slotCount: info.count, slotNames: slots, slotInfo: info, inputs: inputs,
                    inputWidth: column, symbols: symbols.build(), outputSlots: outputs, layers: layers)
    }

    private func shapeText(_ shape: [Int?]) -> String {
        "[\(shape.map { $0.map(String.init) ?? "?" }.joined(separator: ", "))]"
    }

    private func checkOperators() throws {
        for node in nodes {
            let domain = node.domain == "ai.onnx" ? "" : node.domain
            if node.opType == "ZipMap" && !options.ignoresZipMap {
                throw ModelError("\(node.label) outputs a list of maps, which Weir cannot batch: export the classifier with skl2onnx options={'zipmap': False}, or set \"zipmap\": \"ignore\" in the bundle manifest")
            }
            guard Planner.emitters[OperatorKey(domain: domain, opType: node.opType)] != nil else {
                throw ModelError("unsupported operator \(node.opType) (domain \(domain.isEmpty ? "ai.onnx" : domain)) in node '\(node.name.isEmpty ? node.outputs.first ?? "?" : node.name)'")
            }
        }
    }

    // MARK: helpers

    mutating func newSlot(_ name: String, _ slotInfo: SlotInfo) -> Int {
        let slot = info.count
        info.append(slotInfo)
        slots[name] = slot
        return slot
    }

    func runtime(_ name: String, _ node: GraphNode) throws -> (slot: Int, info: SlotInfo) {
        guard let slot = slots[name] else {
            if constants[name] != nil {
                throw ModelError("\(node.label): input '\(name)' is a constant where Weir expects a batch value")
            }
            throw ModelError("\(node.label): input '\(name)' is not produced by any earlier node")
        }
        return (slot, views[name] ?? info[slot])
    }

    /// What the planner knows of the runtime value called `name`, if there is one.
    func slotInfo(_ name: String) -> SlotInfo? {
        slots[name].map { views[name] ?? info[$0] }
    }

    /// Makes `name` another view of `slot`'s storage, with row shape `rowShape` (no copy; a step
    /// reads the row width from its buffer, which is the same).
    mutating func view(_ name: String, of slot: Int, rowShape: [Int]) {
        slots[name] = slot
        views[name] = SlotInfo(kind: info[slot].kind, rowShape: rowShape)
    }

    func consumers(of name: String) -> [Int] {
        nodes.indices.filter { !removed.contains($0) && nodes[$0].inputs.contains(name) }
    }

    func isGraphOutput(_ name: String) -> Bool { graph.outputs.contains { $0.name == name } }

    mutating func record(_ step: any Step, output: String, nodes names: [String], precision: String, bytes: Int) {
        steps.append(step)
        layers.append(LayerDescription(output: output, nodes: names, operation: step.summary, precision: precision,
                                       parameterBytes: bytes))
    }

    // MARK: constant folding

    private mutating func foldConstants() throws {
        for index in nodes.indices {
            let node = nodes[index]
            if node.opType == "Constant" {
                constants[node.outputs[0]] = try constantValue(node)
                removed.insert(index)
                continue
            }
            let inputs = node.inputs.filter { !$0.isEmpty }
            guard !inputs.isEmpty, inputs.allSatisfy({ constants[$0] != nil }) else { continue }
            guard let value = try evaluateConstant(node) else { continue }
            constants[node.outputs[0]] = value
            removed.insert(index)
        }
    }

    /// The value of a Constant node.
    private func constantValue(_ node: GraphNode) throws -> Tensor {
        switch (node.attributes["value"], node.attributes["value_float"], node.attributes["value_floats"],
                node.attributes["value_int"], node.attributes["value_ints"]) {
        case (.tensor(let t)?, _, _, _, _): return t
        case (_, .float(let v)?, _, _, _): return Tensor(shape: [], floats: [v])
        case (_, _, .floats(let v)?, _, _): return Tensor(shape: [v.count], floats: v)
        case (_, _, _, .int(let v)?, _): return Tensor(shape: [], int64s: [v])
        case (_, _, _, _, .ints(let v)?): return Tensor(shape: [v.count], int64s: v)
        default: throw ModelError("\(node.label): only tensor, float and int constants are supported")
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

    /// Emits the steps of node `index` through its operator family's emitter.
    private mutating func emit(_ index: Int) throws {
        let node = nodes[index]
        let domain = node.domain == "ai.onnx" ? "" : node.domain
        guard let emitter = Planner.emitters[OperatorKey(domain: domain, opType: node.opType)] else {
            throw ModelError("unsupported operator \(node.opType) in node '\(node.name)'")
        }
        try emitter(&self, node, index)
    }
}
