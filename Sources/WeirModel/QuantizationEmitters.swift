import Foundation

/// QDQ operators: QuantizeLinear and DequantizeLinear (a matching pair becomes one fake-quant
/// step); the dynamic-quantization chain is fused into a dense layer before emitting.
extension Planner {
    static let quantizationFamily: [OperatorKey: Emitter] = family([
        "QuantizeLinear": { try $0.emitQuantizeLinear($1, index: $2) },
        "DequantizeLinear": { try $0.emitDequantizeLinear($1, index: $2) },
        "DynamicQuantizeLinear": { try $0.emitUnfusedDynamicQuantization($1, index: $2) },
        "MatMulInteger": { try $0.emitUnfusedDynamicQuantization($1, index: $2) },
    ])

    /// QuantizeLinear, or a QuantizeLinear → DequantizeLinear pair.
    mutating func emitQuantizeLinear(_ node: GraphNode, index: Int) throws {
        try emitQuantize(node, index: index)
    }

    /// DequantizeLinear of a batch value.
    mutating func emitDequantizeLinear(_ node: GraphNode, index: Int) throws {
        let x = try runtime(node.inputs[0], node)
        let (scales, zeros) = try quantParameters(node)
        let out = newSlot(node.outputs[0], SlotInfo(kind: .float, rowShape: x.info.rowShape))
        record(DequantizeLinearStep(input: x.slot, output: out, scales: scales, zeroPoints: zeros), output: node.outputs[0],
               nodes: [node.name], precision: "fp32", bytes: 0)
    }

    /// What is left of a dynamic-quantization chain after fusing is not supported.
    mutating func emitUnfusedDynamicQuantization(_ node: GraphNode, index: Int) throws {
        throw ModelError("\(node.label): only the DynamicQuantizeLinear → MatMulInteger → Cast → Mul chain that onnxruntime's quantize_dynamic writes is supported")
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
                let out = newSlot(dq.outputs[0], SlotInfo(kind: .float, rowShape: x.info.rowShape))
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
}
