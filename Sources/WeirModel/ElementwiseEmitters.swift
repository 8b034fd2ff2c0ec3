import Foundation

/// Element-wise arithmetic and activations over a batch.
extension Planner {
    static let elementwiseFamily: [OperatorKey: Emitter] = family([
        "Add": { planner, node, _ in try planner.emitBinary(node) },
        "Sub": { planner, node, _ in try planner.emitBinary(node) },
        "Mul": { planner, node, _ in try planner.emitBinary(node) },
        "Div": { planner, node, _ in try planner.emitBinary(node) },
        "Relu": { planner, node, _ in try planner.emitUnary(node, .relu) },
        "LeakyRelu": { planner, node, _ in try planner.emitUnary(node, .leakyRelu(node.float("alpha", default: 0.01))) },
        "Sigmoid": { planner, node, _ in try planner.emitUnary(node, .sigmoid) },
        "Tanh": { planner, node, _ in try planner.emitUnary(node, .tanh) },
        "Identity": { planner, node, _ in try planner.emitUnary(node, .identity) },
        "Softmax": { try $0.emitSoftmax($1, index: $2) },
    ])

    /// `function` applied to every value.
    mutating func emitUnary(_ node: GraphNode, _ function: UnaryFunction) throws {
        let x = try runtime(node.inputs[0], node)
        if case .identity = function, !isGraphOutput(node.outputs[0]) {
            view(node.outputs[0], of: x.slot, rowShape: x.info.rowShape)
            return
        }
        let out = newSlot(node.outputs[0], x.info)
        record(UnaryStep(input: x.slot, output: out, function: function), output: node.outputs[0], nodes: [node.name],
               precision: "fp32", bytes: 0)
    }

    /// Softmax over the features of each row.
    mutating func emitSoftmax(_ node: GraphNode, index: Int) throws {
        let x = try runtime(node.inputs[0], node)
        let axis = Int(node.int("axis", default: (graph.opsets[""] ?? 13) >= 13 ? -1 : 1))
        guard axis == -1 || axis == x.info.rank - 1 else { throw ModelError("\(node.label): softmax over axis \(axis) of a batch is not supported") }
        let out = newSlot(node.outputs[0], x.info)
        record(SoftmaxStep(input: x.slot, output: out, kernels: options.kernels.usable), output: node.outputs[0], nodes: [node.name], precision: "fp32", bytes: 0)
    }

    /// Add, Sub, Mul, Div of batch values and broadcast constants.
    mutating func emitBinary(_ node: GraphNode) throws {
        // Float rows of one rank with scalar or per-column constants take the fast step; anything
        // else (integers, more dimensions, row-shaped broadcasts) the general one.
        let runtimeInfos = node.inputs.compactMap { slotInfo($0) }
        let fast = runtimeInfos.allSatisfy { $0.kind == .float && $0.rank <= 2 }
            && Set(runtimeInfos.map(\.rank)).count == 1
            && node.inputs.allSatisfy { name in
                guard slots[name] == nil else { return true }
                guard let c = constants[name], c.floats != nil else { return false }
                return c.count == 1 || c.shape.count == 1 || (c.shape.count == 2 && c.shape[0] == 1)
            }
        if !fast {
            try emitElementwise(node, ElementwiseOperator(rawValue: node.opType)!)
            return
        }
        let op = BinaryOperator(rawValue: node.opType)!
        func operand(_ name: String) throws -> (Operand, SlotInfo?) {
            if let slot = slots[name] { return (.slot(slot), slotInfo(name)) }
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
}
