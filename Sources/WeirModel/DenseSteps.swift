import CWeirKernels

/// y = x · W + b in fp32 (W stored input-major for the kernel; output-major too when the layer has
/// fewer than 8 outputs, which run as one dot product per output).
struct DenseStep: Step {
    let input: Int
    let output: Int
    let inputs: Int
    let outputs: Int
    let weightsInputMajor: [Float]
    /// The same weights output-major, for layers with fewer than 8 outputs; empty otherwise.
    let weightsOutputMajor: [Float]
    let bias: [Float]?
    /// A following Relu, fused.
    let relu: Bool
    let name: String
    let kernels: KernelSet

    init(input: Int, output: Int, inputs: Int, outputs: Int, weightsInputMajor: [Float], bias: [Float]?, relu: Bool, name: String,
         kernels: KernelSet) {
        self.input = input
        self.output = output
        self.inputs = inputs
        self.outputs = outputs
        self.weightsInputMajor = weightsInputMajor
        self.weightsOutputMajor = outputs < 8 ? outputMajorWeights(weightsInputMajor, inputs: inputs, outputs: outputs) : []
        self.bias = bias
        self.relu = relu
        self.name = name
        self.kernels = kernels
    }

    var summary: String { "Dense \(inputs)→\(outputs) fp32\(relu ? " + Relu" : "")" }

    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        let rows = x.rows
        guard x.width == inputs else { throw ModelError("\(name): input has \(x.width) columns, the layer expects \(inputs)") }
        y.prepare(.float, rows: rows, width: outputs)
        (bias ?? []).withUnsafeBufferPointer { bp in
            let biasPointer = bias == nil ? nil : bp.baseAddress
            if weightsOutputMajor.isEmpty {
                weightsInputMajor.withUnsafeBufferPointer { wp in
                    weir_sgemm(x.floats, inputs, wp.baseAddress, outputs, y.floats, outputs, rows, inputs, biasPointer, relu ? 1 : 0, kernels.c)
                }
            } else {
                weightsOutputMajor.withUnsafeBufferPointer { wp in
                    weir_sgemm_dot(x.floats, inputs, wp.baseAddress, outputs, y.floats, outputs, rows, inputs, biasPointer, relu ? 1 : 0, kernels.c)
                }
            }
        }
    }
}

/// Weights stored input-major (w[k][j], as ONNX MatMul holds them) rearranged output-major (w[j][k]).
func outputMajorWeights(_ inputMajor: [Float], inputs: Int, outputs: Int) -> [Float] {
    var outputMajor = [Float](repeating: 0, count: inputs * outputs)
    for k in 0..<inputs { for j in 0..<outputs { outputMajor[j * inputs + k] = inputMajor[k * outputs + j] } }
    return outputMajor
}

/// The operand widths of an integer dense layer.
enum IntegerScheme: String, Sendable {
    /// uint8 activations × int8 weights (−127...127); exact int32 sums (`vpmaddwd` on AVX2,
    /// `vpdpbusd` on AVX-512 VNNI).
    case int8
    /// Activations 0...127 × weights −63...63, for AVX2's `vpmaddubsw` with two results pre-added in
    /// int16 (at most 4 · 127 · 63 = 32004, never saturating): exact sums of narrower operands, for
    /// large layers where the multiply ports are the limit. The VNNI kernel runs them as they are.
    case int7

    /// The largest weight magnitude.
    var weightLimit: Float { self == .int8 ? 127 : 63 }
    /// The largest activation value.
    var activationLevels: Int32 { self == .int8 ? 255 : 127 }
}

/// How a layer's quantized weights are laid out for its kernel.
enum PackedWeights: Sendable {
    /// int8 on AVX2 or portable: widened to int16, 8 outputs × 2 inputs per block.
    case pairs([Int16])
    /// int7 on AVX2 or portable: bytes, 8 outputs × 4 inputs per block.
    case quads([Int8])
    /// Either scheme on AVX-512 VNNI: bytes, 16 outputs × 4 inputs per block.
    case vnni([Int8])
}

/// Weights quantized for an integer kernel: symmetric per output channel.
struct QuantizedWeights: Sendable {
    let outputs: Int
    let inputs: Int
    let scheme: IntegerScheme
    let scales: [Float]
    /// Per output channel sum of the quantized weights, for the activation zero-point correction.
    let columnSums: [Int32]
    let packed: PackedWeights

    /// Quantizes output-major fp32 weights: s = max|w| / L per channel, q = clamp(rint(w · (1/s)), −L, L)
    /// with L = 127 (int8) or 63 (int7), and packs them for `kernels`.
    init(outputMajor weights: [Float], outputs: Int, inputs: Int, scheme: IntegerScheme = .int8, kernels: KernelSet = .best) {
        self.outputs = outputs
        self.inputs = inputs
        self.scheme = scheme
        let limit = scheme.weightLimit
        var values = [Int8](repeating: 0, count: outputs * inputs)
        var scales = [Float](repeating: 1, count: outputs)
        var sums = [Int32](repeating: 0, count: outputs)
        for n in 0..<outputs {
            var maxAbs: Float = 0
            for k in 0..<inputs { maxAbs = max(maxAbs, abs(weights[n * inputs + k])) }
            var scale = maxAbs / limit
            if scale == 0 { scale = 1 }
            let inverse = 1 / scale
            var sum: Int32 = 0
            for k in 0..<inputs {
                let q = Int32(min(limit, max(-limit, (weights[n * inputs + k] * inverse).rounded(.toNearestOrEven))))
                values[n * inputs + k] = Int8(q)
                sum += q
            }
            scales[n] = scale
            sums[n] = sum
        }
        self.scales = scales
        self.columnSums = sums
        packed = values.withUnsafeBufferPointer { v in
            switch (kernels.usable, scheme) {
            case (.avx512, _):
                var bytes = [Int8](repeating: 0, count: weir_qgemm_vnni_packed_count(outputs, inputs))
                bytes.withUnsafeMutableBufferPointer { weir_qgemm_vnni_pack_b(v.baseAddress, outputs, inputs, $0.baseAddress) }
                return .vnni(bytes)
            case (_, .int8):
                var pairs = [Int16](repeating: 0, count: weir_qgemm_packed_count(outputs, inputs))
                pairs.withUnsafeMutableBufferPointer { weir_qgemm_pack_b(v.baseAddress, outputs, inputs, $0.baseAddress) }
                return .pairs(pairs)
            case (_, .int7):
                var bytes = [Int8](repeating: 0, count: weir_qgemm7_packed_count(outputs, inputs))
                bytes.withUnsafeMutableBufferPointer { weir_qgemm7_pack_b(v.baseAddress, outputs, inputs, $0.baseAddress) }
                return .quads(bytes)
            }
        }
    }
}

/// Per-step working memory of a quantized dense layer.
final class QuantizedDenseMemory {
    /// int8 on AVX2 or portable: quantized rows centered on their zero point (q - zp, −255...255), as int16.
    var centered: [Int16] = []
    /// Otherwise: quantized rows as bytes, 0...255 (int8) or 0...127 (int7).
    var bytes: [UInt8] = []
    var scales: [Float] = []
    var zeroPoints: [Int32] = []
    var accumulators: [Int32] = []
}

/// y = dequantize(q(x) · q(W)) + b: activations asymmetric per row, weights symmetric per channel,
/// exact int32 sums; `weights.scheme` says how wide the operands are.
struct QuantizedDenseStep: Step {
    let input: Int
    let output: Int
    let weights: QuantizedWeights
    let bias: [Float]?
    /// A following Relu, fused into the epilogue (exact: max with 0).
    let relu: Bool
    let name: String
    /// The kernel set the weights were packed for.
    let kernels: KernelSet

    init(input: Int, output: Int, weights: QuantizedWeights, bias: [Float]?, relu: Bool, name: String, kernels: KernelSet) {
        self.input = input
        self.output = output
        self.weights = weights
        self.bias = bias
        self.relu = relu
        self.name = name
        self.kernels = kernels.usable
    }

    var summary: String {
        let operands = weights.scheme == .int8
            ? "u8 activations per row × s8 weights per channel, exact int32"
            : "u7 activations per row × s7 weights per channel, int16 pair-add bounded by 32004, exact int32"
        return "Dense \(weights.inputs)→\(weights.outputs) \(weights.scheme.rawValue)\(relu ? " + Relu" : "") (\(operands))"
    }

    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        let rows = x.rows, inputs = weights.inputs, outputs = weights.outputs
        guard x.width == inputs else { throw ModelError("\(name): input has \(x.width) columns, the layer expects \(inputs)") }
        let memory: QuantizedDenseMemory
        if let existing = scratch.stepMemory[index] as? QuantizedDenseMemory { memory = existing } else {
            memory = QuantizedDenseMemory()
            scratch.stepMemory[index] = memory
        }
        if memory.scales.count < rows {
            memory.scales = [Float](repeating: 0, count: rows)
            memory.zeroPoints = [Int32](repeating: 0, count: rows)
        }
        if memory.accumulators.count < rows * outputs { memory.accumulators = [Int32](repeating: 0, count: rows * outputs) }
        y.prepare(.float, rows: rows, width: outputs)
        let relu: Int32 = self.relu ? 1 : 0
        let kernels = self.kernels.c
        // The two-pass path (portable): integer product, then y = Float(acc - zp · colsum) · (s_x · s_w) + b.
        let portable = self.kernels == .portable
        memory.scales.withUnsafeMutableBufferPointer { sp in
            memory.zeroPoints.withUnsafeMutableBufferPointer { zp in
                memory.accumulators.withUnsafeMutableBufferPointer { ap in
                    weights.columnSums.withUnsafeBufferPointer { cp in
                        weights.scales.withUnsafeBufferPointer { ws in
                            (bias ?? []).withUnsafeBufferPointer { bp in
                                let biasPointer = bias == nil ? nil : bp.baseAddress
                                func bytes(stride: Int, _ body: (UnsafeMutablePointer<UInt8>) -> Void) {
                                    if memory.bytes.count < rows * stride { memory.bytes = [UInt8](repeating: 0, count: rows * stride) }
                                    memory.bytes.withUnsafeMutableBufferPointer { qp in
                                        weir_quantize_rows_bytes(x.floats, inputs, rows, inputs, weights.scheme.activationLevels, qp.baseAddress,
                                                                 stride, sp.baseAddress, zp.baseAddress, kernels)
                                        body(qp.baseAddress!)
                                    }
                                }
                                switch weights.packed {
                                case .vnni(let packed):
                                    bytes(stride: (inputs + 3) / 4 * 4) { q in
                                        packed.withUnsafeBufferPointer { wp in
                                            weir_qdense_vnni(q, (inputs + 3) / 4 * 4, wp.baseAddress, rows, outputs, inputs, sp.baseAddress,
                                                             zp.baseAddress, cp.baseAddress, ws.baseAddress, biasPointer, relu,
                                                             y.floats, outputs, ap.baseAddress, kernels)
                                        }
                                    }
                                case .pairs(let packed):
                                    let stride = (inputs + 1) / 2 * 2
                                    if memory.centered.count < rows * stride { memory.centered = [Int16](repeating: 0, count: rows * stride) }
                                    memory.centered.withUnsafeMutableBufferPointer { qp in
                                        weir_quantize_rows_u8(x.floats, inputs, rows, inputs, qp.baseAddress, stride, sp.baseAddress,
                                                              zp.baseAddress, kernels)
                                        packed.withUnsafeBufferPointer { wp in
                                            // The rows come centered (q - zp), so Σ (q - zp) · q_w is already the corrected
                                            // sum (acc - zp · colsum): no zero points go to the epilogue.
                                            if portable {
                                                weir_qgemm_u8s8(qp.baseAddress, stride, wp.baseAddress, ap.baseAddress, outputs,
                                                                rows, outputs, inputs, kernels)
                                                weir_dequantize_rows(ap.baseAddress, rows, outputs, sp.baseAddress, nil,
                                                                     cp.baseAddress, ws.baseAddress, biasPointer, relu, y.floats, outputs)
                                            } else {
                                                weir_qdense_u8s8(qp.baseAddress, stride, wp.baseAddress, rows, outputs, inputs, sp.baseAddress,
                                                                 nil, cp.baseAddress, ws.baseAddress, biasPointer, relu,
                                                                 y.floats, outputs, ap.baseAddress, kernels)
                                            }
                                        }
                                    }
                                case .quads(let packed):
                                    let stride = (inputs + 7) / 8 * 8
                                    bytes(stride: stride) { q in
                                        packed.withUnsafeBufferPointer { wp in
                                            if portable {
                                                weir_qgemm7(q, stride, wp.baseAddress, ap.baseAddress, outputs, rows, outputs, inputs, kernels)
                                                weir_dequantize_rows(ap.baseAddress, rows, outputs, sp.baseAddress, zp.baseAddress,
                                                                     cp.baseAddress, ws.baseAddress, biasPointer, relu, y.floats, outputs)
                                            } else {
                                                weir_qdense_u7s7(q, stride, wp.baseAddress, rows, outputs, inputs, sp.baseAddress,
                                                                 zp.baseAddress, cp.baseAddress, ws.baseAddress, biasPointer, relu,
                                                                 y.floats, outputs, ap.baseAddress, kernels)
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
}
