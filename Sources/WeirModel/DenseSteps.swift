import CWeirKernels

/// y = x · W + b in fp32 (W stored input-major for the kernel; output-major instead when the layer
/// has fewer than 8 outputs, which run as one dot product per output).
final class DenseStep: Step {
    let input: Int
    let output: Int
    let inputs: Int
    let outputs: Int
    /// Input-major (w[k][j]) for `weir_sgemm`, or output-major (w[j][k]) for `weir_sgemm_dot` when `dot`.
    let weights: Constants<Float>
    let dot: Bool
    let bias: Constants<Float>?
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
        dot = outputs < 8
        weights = Constants(dot ? outputMajorWeights(weightsInputMajor, inputs: inputs, outputs: outputs) : weightsInputMajor)
        self.bias = bias.map { Constants($0) }
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
        let kernel = dot ? weir_sgemm_dot : weir_sgemm
        kernel(x.floats, inputs, weights.base, outputs, y.floats, outputs, rows, inputs, bias?.base, relu ? 1 : 0, kernels.c)
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
enum WeightLayout: Sendable {
    /// int8 on AVX2 or portable: widened to int16, 8 outputs × 2 inputs per block.
    case pairs
    /// int7 on AVX2 or portable: bytes, 8 outputs × 4 inputs per block.
    case quads
    /// Either scheme on AVX-512 VNNI: bytes, 16 outputs × 4 inputs per block.
    case vnni
}

/// Weights quantized for an integer kernel: symmetric per output channel.
struct QuantizedWeights: Sendable {
    let outputs: Int
    let inputs: Int
    let scheme: IntegerScheme
    let scales: Constants<Float>
    /// Per output channel sum of the quantized weights, for the activation zero-point correction.
    let columnSums: Constants<Int32>
    let layout: WeightLayout
    /// The packed weights: int16 for `pairs`, bytes otherwise.
    let pairs: Constants<Int16>?
    let bytes: Constants<Int8>?

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
        self.scales = Constants(scales)
        self.columnSums = Constants(sums)
        switch (kernels.usable, scheme) {
        case (.avx512, _):
            layout = .vnni
            var packed = [Int8](repeating: 0, count: weir_qgemm_vnni_packed_count(outputs, inputs))
            weir_qgemm_vnni_pack_b(values, outputs, inputs, &packed)
            bytes = Constants(packed)
            pairs = nil
        case (_, .int8):
            layout = .pairs
            var packed = [Int16](repeating: 0, count: weir_qgemm_packed_count(outputs, inputs))
            weir_qgemm_pack_b(values, outputs, inputs, &packed)
            pairs = Constants(packed)
            bytes = nil
        case (_, .int7):
            layout = .quads
            var packed = [Int8](repeating: 0, count: weir_qgemm7_packed_count(outputs, inputs))
            weir_qgemm7_pack_b(values, outputs, inputs, &packed)
            bytes = Constants(packed)
            pairs = nil
        }
    }

    /// Bytes per quantized activation row (the kernel reads whole blocks of inputs; padding is zero).
    var activationStride: Int {
        switch layout {
        case .pairs: (inputs + 1) / 2 * 2
        case .quads: (inputs + 7) / 8 * 8
        case .vnni: (inputs + 3) / 4 * 4
        }
    }
}

/// y = dequantize(q(x) · q(W)) + b: activations asymmetric per row, weights symmetric per channel,
/// exact int32 sums; `weights.scheme` says how wide the operands are. Immutable after init (its
/// pointers address constants it owns), so it is safe to share: hence `@unchecked Sendable`.
final class QuantizedDenseStep: Step, @unchecked Sendable {
    let input: Int
    let output: Int
    let weights: QuantizedWeights
    let bias: Constants<Float>?
    /// A following Relu, fused into the epilogue (exact: max with 0).
    let relu: Bool
    let name: String
    /// The kernel set the weights were packed for.
    let kernels: KernelSet
    // The constants' addresses, taken once (`weights` and `bias` keep them alive): the run reads
    // them without touching reference counts.
    private let columnSumsBase: UnsafePointer<Int32>
    private let weightScalesBase: UnsafePointer<Float>
    private let biasBase: UnsafePointer<Float>?
    private let packedBytes: UnsafePointer<Int8>?
    private let packedPairs: UnsafePointer<Int16>?

    init(input: Int, output: Int, weights: QuantizedWeights, bias: [Float]?, relu: Bool, name: String, kernels: KernelSet) {
        self.input = input
        self.output = output
        self.weights = weights
        let bias = bias.map { Constants($0) }
        self.bias = bias
        self.relu = relu
        self.name = name
        self.kernels = kernels.usable
        columnSumsBase = UnsafePointer(weights.columnSums.base)
        weightScalesBase = UnsafePointer(weights.scales.base)
        biasBase = bias.map { UnsafePointer($0.base) }
        packedBytes = weights.bytes.map { UnsafePointer($0.base) }
        packedPairs = weights.pairs.map { UnsafePointer($0.base) }
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
        y.prepare(.float, rows: rows, width: outputs)
        let stride = weights.activationStride
        let relu: Int32 = self.relu ? 1 : 0, kernels = self.kernels.c
        // The two-pass path (portable): integer product, then y = Float(acc - zp · colsum) · (s_x · s_w) + b.
        let portable = self.kernels == .portable
        let memory = scratch.stepMemory + index
        memory.pointee.reserve(rowBytes: rows * stride * (weights.layout == .pairs ? 2 : 1), rows: rows, sums: portable ? rows * outputs : 0)
        let scales = memory.pointee.scales, zeroPoints = memory.pointee.zeroPoints
        let sums = portable ? memory.pointee.sums : nil
        let columnSums = columnSumsBase, weightScales = weightScalesBase, bias = biasBase
        switch weights.layout {
        case .vnni:
            let q = memory.pointee.rows.assumingMemoryBound(to: UInt8.self)
            weir_quantize_rows_bytes(x.floats, inputs, rows, inputs, weights.scheme.activationLevels, q, stride, scales, zeroPoints, kernels)
            weir_qdense_vnni(q, stride, packedBytes, rows, outputs, inputs, scales, zeroPoints, columnSums, weightScales, bias,
                             relu, y.floats, outputs, sums, kernels)
        case .pairs:
            // The rows come centered (q - zp), so Σ (q - zp) · q_w is already the corrected sum
            // (acc - zp · colsum): no zero points go to the epilogue.
            let q = memory.pointee.rows.assumingMemoryBound(to: Int16.self)
            weir_quantize_rows_u8(x.floats, inputs, rows, inputs, q, stride, scales, zeroPoints, kernels)
            if let sums {
                weir_qgemm_u8s8(q, stride, packedPairs, sums, outputs, rows, outputs, inputs, kernels)
                weir_dequantize_rows(sums, rows, outputs, scales, nil, columnSums, weightScales, bias, relu, y.floats, outputs, kernels)
            } else {
                weir_qdense_u8s8(q, stride, packedPairs, rows, outputs, inputs, scales, nil, columnSums, weightScales, bias, relu,
                                 y.floats, outputs, nil, kernels)
            }
        case .quads:
            let q = memory.pointee.rows.assumingMemoryBound(to: UInt8.self)
            weir_quantize_rows_bytes(x.floats, inputs, rows, inputs, weights.scheme.activationLevels, q, stride, scales, zeroPoints, kernels)
            if let sums {
                weir_qgemm7(q, stride, packedBytes, sums, outputs, rows, outputs, inputs, kernels)
                weir_dequantize_rows(sums, rows, outputs, scales, zeroPoints, columnSums, weightScales, bias, relu, y.floats, outputs, kernels)
            } else {
                weir_qdense_u7s7(q, stride, packedBytes, rows, outputs, inputs, scales, zeroPoints, columnSums, weightScales, bias,
                                 relu, y.floats, outputs, nil, kernels)
            }
        }
    }
}
