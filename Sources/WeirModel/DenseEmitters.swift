import Foundation

/// Dense layers (MatMul, Gemm): fp32 or int8 by the precision policy, with a following bias Add
/// and Relu fused into the layer.
extension Planner {
    static let denseFamily: [OperatorKey: Emitter] = family([
        "MatMul": { try $0.emitMatMul($1, index: $2) },
        "Gemm": { try $0.emitGemm($1, index: $2) },
    ])

    /// MatMul by a constant weight matrix.
    mutating func emitMatMul(_ node: GraphNode, index: Int) throws {
        guard let weights = constants[node.inputs[1]], weights.shape.count == 2 else {
            throw ModelError("\(node.label): the second input must be a constant 2-D weight matrix")
        }
        let k = weights.shape[0], m = weights.shape[1]
        try emitDense(node: node, index: index, input: node.inputs[0], inputMajor: weights.asFloats, inputs: k, outputs: m, bias: nil)
    }

    /// Gemm with constant B (and C): alpha and beta folded into the weights.
    mutating func emitGemm(_ node: GraphNode, index: Int) throws {
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
}
