import CWeirKernels

/// y = x · W + b in fp32 (W stored input-major for the kernel).
struct DenseStep: Step {
    let input: Int
    let output: Int
    let inputs: Int
    let outputs: Int
    let weightsInputMajor: [Float]
    let bias: [Float]?
    /// A following Relu, fused.
    let relu: Bool
    let name: String

    var summary: String { "Dense \(inputs)→\(outputs) fp32\(relu ? " + Relu" : "")" }

    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        let rows = x.rows
        guard x.width == inputs else { throw ModelError("\(name): input has \(x.width) columns, the layer expects \(inputs)") }
        y.prepare(.float, rows: rows, width: outputs)
        weightsInputMajor.withUnsafeBufferPointer { wp in
            (bias ?? []).withUnsafeBufferPointer { bp in
                weir_sgemm(x.floats, inputs, wp.baseAddress, outputs, y.floats, outputs, rows, inputs,
                           bias == nil ? nil : bp.baseAddress, relu ? 1 : 0)
            }
        }
    }
}

/// Weights quantized for the int8 kernel: int8 symmetric per output channel.
struct QuantizedWeights: Sendable {
    let outputs: Int
    let inputs: Int
    let scales: [Float]
    /// Per output channel sum of the quantized weights, for the activation zero-point correction.
    let columnSums: [Int32]
    /// Widened to int16 and packed for the kernel.
    let packed: [Int16]

    /// Quantizes output-major fp32 weights: s = max|w| / 127 per channel, q = clamp(rint(w · (1/s))).
    init(outputMajor weights: [Float], outputs: Int, inputs: Int) {
        self.outputs = outputs
        self.inputs = inputs
        var values = [Int8](repeating: 0, count: outputs * inputs)
        var scales = [Float](repeating: 1, count: outputs)
        var sums = [Int32](repeating: 0, count: outputs)
        for n in 0..<outputs {
            var maxAbs: Float = 0
            for k in 0..<inputs { maxAbs = max(maxAbs, abs(weights[n * inputs + k])) }
            var scale = maxAbs / 127
            if scale == 0 { scale = 1 }
            let inverse = 1 / scale
            var sum: Int32 = 0
            for k in 0..<inputs {
                let q = Int32(min(127, max(-127, (weights[n * inputs + k] * inverse).rounded(.toNearestOrEven))))
                values[n * inputs + k] = Int8(q)
                sum += q
            }
            scales[n] = scale
            sums[n] = sum
        }
        self.scales = scales
        self.columnSums = sums
        var packed = [Int16](repeating: 0, count: weir_qgemm_packed_count(outputs, inputs))
        values.withUnsafeBufferPointer { v in
            packed.withUnsafeMutableBufferPointer { p in weir_qgemm_pack_b(v.baseAddress, outputs, inputs, p.baseAddress) }
        }
        self.packed = packed
    }
}

/// Per-step working memory of a quantized dense layer.
final class QuantizedDenseMemory {
    /// Quantized rows, 0...255, widened to int16 for the kernel.
    var quantized: [Int16] = []
    var scales: [Float] = []
    var zeroPoints: [Int32] = []
    var accumulators: [Int32] = []
}

/// y = dequantize(q(x) · q(W)) + b: uint8 activations per row, int8 weights per channel, exact int32.
struct QuantizedDenseStep: Step {
    let input: Int
    let output: Int
    let weights: QuantizedWeights
    let bias: [Float]?
    /// A following Relu, fused into the epilogue (exact: max with 0).
    let relu: Bool
    let name: String
    /// Use the portable kernel (tests compare it with the AVX2 one).
    let portable: Bool

    var summary: String { "Dense \(weights.inputs)→\(weights.outputs) int8\(relu ? " + Relu" : "") (u8 activations per row × s8 weights per channel, exact int32)" }

    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        let rows = x.rows, inputs = weights.inputs, outputs = weights.outputs
        guard x.width == inputs else { throw ModelError("\(name): input has \(x.width) columns, the layer expects \(inputs)") }
        let memory: QuantizedDenseMemory
        if let existing = scratch.stepMemory[index] as? QuantizedDenseMemory { memory = existing } else {
            memory = QuantizedDenseMemory()
            scratch.stepMemory[index] = memory
        }
        let stride = (inputs + 1) / 2 * 2
        if memory.quantized.count < rows * stride { memory.quantized = [Int16](repeating: 0, count: rows * stride) }
        if memory.scales.count < rows {
            memory.scales = [Float](repeating: 0, count: rows)
            memory.zeroPoints = [Int32](repeating: 0, count: rows)
        }
        if memory.accumulators.count < rows * outputs { memory.accumulators = [Int32](repeating: 0, count: rows * outputs) }
        y.prepare(.float, rows: rows, width: outputs)

        memory.quantized.withUnsafeMutableBufferPointer { qp in
            memory.scales.withUnsafeMutableBufferPointer { sp in
                memory.zeroPoints.withUnsafeMutableBufferPointer { zp in
                    weir_quantize_rows_u8(x.floats, inputs, rows, inputs, qp.baseAddress, stride, sp.baseAddress, zp.baseAddress)
                }
            }
        }
        memory.quantized.withUnsafeBufferPointer { qp in
            weights.packed.withUnsafeBufferPointer { wp in
                memory.accumulators.withUnsafeMutableBufferPointer { ap in
                    weights.columnSums.withUnsafeBufferPointer { cp in
                        weights.scales.withUnsafeBufferPointer { ws in
                            memory.scales.withUnsafeBufferPointer { sp in
                                memory.zeroPoints.withUnsafeBufferPointer { zp in
                                    (bias ?? []).withUnsafeBufferPointer { bp in
                                        let biasPointer = bias == nil ? nil : bp.baseAddress
                                        if portable {
                                            // Two passes: integer product, then y = Float(acc - zp · colsum) · (s_x · s_w) + b.
                                            weir_qgemm_u8s8_portable(qp.baseAddress, stride, wp.baseAddress, ap.baseAddress, outputs,
                                                                     rows, outputs, inputs)
                                            weir_dequantize_rows(ap.baseAddress, rows, outputs, sp.baseAddress, zp.baseAddress,
                                                                 cp.baseAddress, ws.baseAddress, biasPointer, relu ? 1 : 0, y.floats, outputs)
                                        } else {
                                            weir_qdense_u8s8(qp.baseAddress, stride, wp.baseAddress, rows, outputs, inputs, sp.baseAddress,
                                                             zp.baseAddress, cp.baseAddress, ws.baseAddress, biasPointer, relu ? 1 : 0,
                                                             y.floats, outputs, ap.baseAddress)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
