import Foundation

/// ai.onnx: broadcasting element-wise operators, math functions, reductions and normalization
/// (the family's table also names the layout operators of LayoutEmitters.swift).
extension Planner {
    static let mathFamily: [OperatorKey: Emitter] = {
        var table = [String: Emitter]()
        for op in ["Pow", "Max", "Min", "Mod", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor", "Where"] {
            table[op] = { planner, node, _ in try planner.emitElementwise(node, ElementwiseOperator(rawValue: op)!) }
        }
        for op in ["Max", "Min"] {
            table[op] = { planner, node, _ in try planner.emitVariadic(node, ElementwiseOperator(rawValue: op)!) }
        }
        table["Sum"] = { planner, node, _ in try planner.emitVariadic(node, .add) }
        table["Mean"] = { planner, node, _ in try planner.emitVariadic(node, .add, mean: true) }
        for function in ["Sqrt", "Exp", "Log", "Abs", "Neg", "Reciprocal", "Erf", "Floor", "Ceil", "Round", "Sign", "Softplus",
                         "Sin", "Cos", "Atan", "IsNaN", "IsInf", "Not"] {
            table[function] = { planner, node, _ in try planner.emitMath(node, MathFunction(rawValue: function)!) }
        }
        table["Gelu"] = { planner, node, _ in
            try planner.emitMath(node, node.string("approximate", default: "none") == "tanh" ? .geluTanh : .gelu)
        }
        for reduction in ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceLogSumExp", "ReduceSumSquare",
                          "ReduceL1", "ReduceL2", "ReduceLogSum"] {
            table[reduction] = { planner, node, _ in try planner.emitReduce(node, Reduction(rawValue: reduction)!) }
        }
        table["Clip"] = { planner, node, _ in try planner.emitClip(node) }
        table["LayerNormalization"] = { planner, node, _ in try planner.emitLayerNorm(node) }
        table["BatchNormalization"] = { planner, node, _ in try planner.emitBatchNorm(node) }
        table["Gather"] = { planner, node, _ in try planner.emitGather(node) }
        table["Slice"] = { planner, node, _ in try planner.emitSlice(node) }
        table["Squeeze"] = { planner, node, _ in try planner.emitSqueeze(node, unsqueeze: false) }
        table["Unsqueeze"] = { planner, node, _ in try planner.emitSqueeze(node, unsqueeze: true) }
        table["Transpose"] = { planner, node, _ in try planner.emitTranspose(node) }
        table["Shape"] = { planner, node, _ in try planner.emitShape(node) }
        table["ConstantOfShape"] = { planner, node, _ in try planner.emitConstantOfShape(node) }
        table["Constant"] = { _, node, _ in throw ModelError("\(node.label): a constant that could not be read") }
        table["Scan"] = { planner, node, _ in try planner.emitScan(node) }
        table["TopK"] = { planner, node, _ in try planner.emitTopK(node) }
        return family(table)
    }()

    // MARK: broadcasting

    /// An operand's row shape and values: a runtime value, or a constant whose leading dimension
    /// (when it has the runtime value's rank) must be 1.
    private func operandShape(_ name: String, rank: Int, _ node: GraphNode) throws -> (OperandSource.Values, [Int], ValueKind) {
        if let slot = slots[name], let known = slotInfo(name) { return (.slot(slot), known.rowShape, known.kind) }
        guard let constant = constants[name] else { throw ModelError("\(node.label): input '\(name)' is not produced by any earlier node") }
        var shape = constant.shape
        if shape.count >= rank && rank > 0 {
            guard shape.count == rank, shape.first == 1 else {
                throw ModelError("\(node.label): a constant of shape \(constant.shape) would mix rows of the batch")
            }
            shape.removeFirst()
        }
        switch constant.storage {
        case .float(let v): return (.floats(v), shape, .float)
        case .int64(let v): return (.integers(v, constant.sourceElementType == "bool" ? .bool : .int64), shape, constant.sourceElementType == "bool" ? .bool : .int64)
        case .string: return (.integers([], .string), shape, .string)
        }
    }

    /// numpy's broadcast of row shapes (aligned on the right).
    private func broadcast(_ shapes: [[Int]], _ node: GraphNode) throws -> [Int] {
        let rank = shapes.map(\.count).max() ?? 0
        var result = [Int](repeating: 1, count: rank)
        for shape in shapes {
            for (offset, dim) in shape.reversed().enumerated() {
                let at = rank - 1 - offset
                if result[at] == 1 { result[at] = dim } else if dim != 1 && dim != result[at] {
                    throw ModelError("\(node.label): shapes \(shapes) do not broadcast")
                }
            }
        }
        return result
    }

    /// For each position of `output`, the position in a value of row shape `shape` (nil: the same).
    func broadcastMap(from shape: [Int], to output: [Int]) -> [Int32]? {
        if shape == output { return nil }
        let width = output.reduce(1, *)
        var map = [Int32](repeating: 0, count: width)
        let padded = [Int](repeating: 1, count: output.count - shape.count) + shape
        var strides = [Int](repeating: 0, count: padded.count)
        var stride = 1
        for d in padded.indices.reversed() {
            strides[d] = padded[d] == 1 ? 0 : stride
            stride *= padded[d]
        }
        for j in 0..<width {
            var rest = j, position = 0
            for d in output.indices.reversed() {
                let index = rest % output[d]
                rest /= output[d]
                position += index * strides[d]
            }
            map[j] = Int32(position)
        }
        return map
    }

    /// An element-wise operator over two (Where: three) operands, broadcast.
    mutating func emitElementwise(_ node: GraphNode, _ op: ElementwiseOperator, inputs names: [String]? = nil, output: String? = nil) throws {
        let names = names ?? node.inputs
        let rank = names.compactMap { slotInfo($0)?.rank }.max()
        guard let rank else { throw ModelError("\(node.label): every input is a constant") }
        var parts = try names.map { try operandShape($0, rank: rank, node) }
        // String constants compared with string values: by symbol.
        for (k, name) in names.enumerated() where parts[k].2 == .string {
            if case .integers(let v, _) = parts[k].0, v.isEmpty, let constant = constants[name]?.strings {
                parts[k].0 = .integers(constant.map { symbols.intern($0) }, .string)
            }
        }
        let rowShape = try broadcast(parts.map(\.1), node)
        let operands = parts.map { OperandSource(values: $0.0, map: broadcastMap(from: $0.1, to: rowShape)) }
        let valueKinds = (op == .whereSelect ? Array(parts.dropFirst()) : parts).map(\.2)
        let inFloats = valueKinds.contains(.float)
        let outputKind: ValueKind
        if op.isComparison || op.isLogical { outputKind = .bool } else if op == .whereSelect {
            outputKind = inFloats ? .float : valueKinds[0]
        } else { outputKind = inFloats ? .float : .int64 }
        let outputName = output ?? node.outputs[0]
        let out = newSlot(outputName, SlotInfo(kind: outputKind, rowShape: rowShape))
        record(ElementwiseStep(op: op, operands: operands, output: out, outputKind: outputKind, inFloats: inFloats, rowShape: rowShape,
                               operandKinds: parts.map(\.2)),
               output: outputName, nodes: [node.name], precision: inFloats ? "fp32" : "-", bytes: 0)
    }

    /// Sum, Max, Min and Mean of any number of inputs, pairwise.
    mutating func emitVariadic(_ node: GraphNode, _ op: ElementwiseOperator, mean: Bool = false) throws {
        let inputs = node.inputs.filter { !$0.isEmpty }
        if inputs.count == 1 && !mean {
            let x = try runtime(inputs[0], node)
            slots[node.outputs[0]] = x.slot
            return
        }
        var current = inputs[0]
        for (k, next) in inputs.dropFirst().enumerated() {
            let last = k == inputs.count - 2 && !mean
            let name = last ? node.outputs[0] : "\(node.outputs[0])__weir_partial\(k)"
            try emitElementwise(node, op, inputs: [current, next], output: name)
            current = name
        }
        if mean {
            let count = "\(node.outputs[0])__weir_count"
            constants[count] = Tensor(shape: [], floats: [Float(inputs.count)])
            try emitElementwise(node, .div, inputs: [current, count], output: node.outputs[0])
        }
    }

    // MARK: functions

    mutating func emitMath(_ node: GraphNode, _ function: MathFunction) throws {
        var x = try runtime(node.inputs[0], node)
        let keepsIntegers = (function == .neg || function == .abs) && x.info.kind == .int64
        if !function.isTest && !keepsIntegers && x.info.kind != .float { x = try floatInput(node.inputs[0], node) }
        let kind: ValueKind = function.isTest ? .bool : (keepsIntegers ? .int64 : .float)
        let out = newSlot(node.outputs[0], SlotInfo(kind: kind, rowShape: x.info.rowShape))
        record(MathStep(input: x.slot, output: out, function: function, rowShape: x.info.rowShape), output: node.outputs[0],
               nodes: [node.name], precision: function.isTest ? "-" : "fp32", bytes: 0)
    }

    /// Clip with constant bounds (inputs from opset 11, attributes before).
    mutating func emitClip(_ node: GraphNode) throws {
        let x = try floatInput(node.inputs[0], node)
        func bound(_ position: Int, _ attribute: String, _ fallback: Float) throws -> Float {
            if node.inputs.count > position && !node.inputs[position].isEmpty {
                guard let value = constants[node.inputs[position]]?.asFloats.first else {
                    throw ModelError("\(node.label): the bounds must be constants")
                }
                return value
            }
            return node.float(attribute, default: fallback)
        }
        let out = newSlot(node.outputs[0], SlotInfo(kind: .float, rowShape: x.info.rowShape))
        record(ClipStep(input: x.slot, output: out, low: try bound(1, "min", -.infinity), high: try bound(2, "max", .infinity)),
               output: node.outputs[0], nodes: [node.name], precision: "fp32", bytes: 0)
    }

    // MARK: reductions

    /// Axes of the tensor `[rows] + rowShape` from attribute `axes` or input 1, checked to leave the batch alone.
    func rowAxes(_ node: GraphNode, rank: Int, inputPosition: Int = 1) throws -> [Int]? {
        var axes: [Int64]? = node.ints("axes")
        if axes == nil, node.inputs.count > inputPosition, !node.inputs[inputPosition].isEmpty {
            guard let constant = constants[node.inputs[inputPosition]] else { throw ModelError("\(node.label): axes must be constant") }
            axes = constant.asInt64s
        }
        guard let axes else { return nil }
        return try axes.map { axis in
            let normalized = Int(axis < 0 ? axis + Int64(rank) : axis)
            guard normalized >= 1 && normalized < rank else {
                throw ModelError("\(node.label): axis \(axis) would combine rows of the batch (Weir answers each row on its own)")
            }
            return normalized
        }
    }

    mutating func emitReduce(_ node: GraphNode, _ reduction: Reduction) throws {
        let x = try floatInput(node.inputs[0], node)
        let shape = x.info.rowShape
        var axes = try rowAxes(node, rank: x.info.rank)
        if axes == nil || axes!.isEmpty {
            if node.int("noop_with_empty_axes", default: 0) == 1 {
                slots[node.outputs[0]] = x.slot
                return
            }
            axes = Array(1..<x.info.rank)
        }
        let reduced = Set(axes!.map { $0 - 1 })
        let keep = node.int("keepdims", default: 1) == 1
        var outShape = [Int]()
        for (d, dim) in shape.enumerated() {
            if reduced.contains(d) { if keep { outShape.append(1) } } else { outShape.append(dim) }
        }
        // Group the input positions by output position.
        let width = shape.reduce(1, *), outWidth = outShape.reduce(1, *)
        var groups = [[Int32]](repeating: [], count: outWidth)
        for j in 0..<width {
            var rest = j, index = [Int](repeating: 0, count: shape.count)
            for d in shape.indices.reversed() { index[d] = rest % shape[d]; rest /= shape[d] }
            var o = 0
            for d in shape.indices where !reduced.contains(d) { o = o * shape[d] + index[d] }
            groups[o].append(Int32(j))
        }
        let out = newSlot(node.outputs[0], SlotInfo(kind: .float, rowShape: outShape))
        record(ReduceStep(input: x.slot, output: out, reduction: reduction, groups: groups.flatMap { $0 }, groupSize: width / max(outWidth, 1),
                          outputRank: outShape.count + 1),
               output: node.outputs[0], nodes: [node.name], precision: "fp32", bytes: 0)
    }

    // MARK: normalization

    mutating func emitLayerNorm(_ node: GraphNode) throws {
        let x = try floatInput(node.inputs[0], node)
        if node.outputs.count > 1, node.outputs.dropFirst().contains(where: { !$0.isEmpty && !consumers(of: $0).isEmpty }) {
            throw ModelError("\(node.label): the mean and inverse deviation outputs are not supported")
        }
        let rank = x.info.rank
        let axis = Int(node.int("axis", default: -1))
        let first = axis < 0 ? axis + rank : axis
        guard first >= 1 && first < rank else { throw ModelError("\(node.label): normalizing over axis \(axis) would combine rows") }
        let normalized = x.info.rowShape[(first - 1)...].reduce(1, *)
        guard let scale = constants[node.inputs[1]]?.asFloats else { throw ModelError("\(node.label): the scale must be constant") }
        let bias = node.inputs.count > 2 && !node.inputs[2].isEmpty ? constants[node.inputs[2]]?.asFloats : []
        guard let bias, scale.count == normalized || scale.count == 1 else { throw ModelError("\(node.label): scale or bias do not fit") }
        let out = newSlot(node.outputs[0], SlotInfo(kind: .float, rowShape: x.info.rowShape))
        record(LayerNormStep(input: x.slot, output: out, normalizedWidth: normalized, scale: scale, bias: bias,
                             epsilon: node.float("epsilon", default: 1e-5)),
               output: node.outputs[0], nodes: [node.name], precision: "fp32", bytes: (scale.count + bias.count) * 4)
    }

    /// BatchNormalization in inference: x · a + b per channel (the first dimension after the batch).
    mutating func emitBatchNorm(_ node: GraphNode) throws {
        let x = try floatInput(node.inputs[0], node)
        guard node.int("training_mode", default: 0) == 0 else { throw ModelError("\(node.label): training mode is not supported") }
        guard let scale = constants[node.inputs[1]]?.asFloats, let bias = constants[node.inputs[2]]?.asFloats,
              let mean = constants[node.inputs[3]]?.asFloats, let variance = constants[node.inputs[4]]?.asFloats else {
            throw ModelError("\(node.label): scale, bias, mean and variance must be constants")
        }
        let channels = x.info.rowShape.first ?? 1
        guard [scale, bias, mean, variance].allSatisfy({ $0.count == channels }) else {
            throw ModelError("\(node.label): \(channels) channels, but the parameters have other lengths")
        }
        let epsilon = node.float("epsilon", default: 1e-5)
        let multiplier = (0..<channels).map { scale[$0] / (variance[$0] + epsilon).squareRoot() }
        let offset = (0..<channels).map { bias[$0] - mean[$0] * multiplier[$0] }
        let channelShape = [channels] + [Int](repeating: 1, count: max(0, x.info.rowShape.count - 1))
        let scaled = "\(node.outputs[0])__weir_scaled"
        constants["\(scaled)_a"] = Tensor(shape: channelShape, floats: multiplier)
        constants["\(scaled)_b"] = Tensor(shape: channelShape, floats: offset)
        try emitElementwise(node, .mul, inputs: [node.inputs[0], "\(scaled)_a"], output: scaled)
        try emitElementwise(node, .add, inputs: [scaled, "\(scaled)_b"], output: node.outputs[0])
    }
}
