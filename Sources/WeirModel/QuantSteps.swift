/// QuantizeLinear immediately followed by DequantizeLinear (a "fake quant" pair in QDQ models):
/// y = (clamp(rint(x / s) + zp, lo, hi) - zp) · s, per tensor or per column.
struct FakeQuantStep: Step {
    let input: Int, output: Int
    let scales: [Float]
    let zeroPoints: [Float]
    let low: Float, high: Float
    var summary: String { "QuantizeLinear→DequantizeLinear fp32 (\(scales.count == 1 ? "per tensor" : "per column"))" }

    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        y.prepare(.float, rows: x.rows, width: x.width, rank: x.rank)
        let width = x.width
        for r in 0..<x.rows {
            for j in 0..<width {
                let (s, zp) = quantizationParameters(scales, zeroPoints, column: j)
                let q = min(high, max(low, (x.floats[r * width + j] / s).rounded(.toNearestOrEven) + zp))
                y.floats[r * width + j] = (q - zp) * s
            }
        }
    }
}

/// Standalone QuantizeLinear (integers kept as int64) and DequantizeLinear.
struct QuantizeLinearStep: Step {
    let input: Int, output: Int
    let scales: [Float], zeroPoints: [Float]
    let low: Float, high: Float
    var summary: String { "QuantizeLinear" }
    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        y.prepare(.int64, rows: x.rows, width: x.width, rank: x.rank)
        for r in 0..<x.rows {
            for j in 0..<x.width {
                let (s, zp) = quantizationParameters(scales, zeroPoints, column: j)
                y.ints[r * x.width + j] = Int64(min(high, max(low, (x.floats[r * x.width + j] / s).rounded(.toNearestOrEven) + zp)))
            }
        }
    }
}

struct DequantizeLinearStep: Step {
    let input: Int, output: Int
    let scales: [Float], zeroPoints: [Float]
    var summary: String { "DequantizeLinear" }
    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        y.prepare(.float, rows: x.rows, width: x.width, rank: x.rank)
        for r in 0..<x.rows {
            for j in 0..<x.width {
                let (s, zp) = quantizationParameters(scales, zeroPoints, column: j)
                let v = x.kind == .int64 ? Float(x.ints[r * x.width + j]) : x.floats[r * x.width + j]
                y.floats[r * x.width + j] = (v - zp) * s
            }
        }
    }
}

/// Scale and zero point for a column: one pair per tensor, or one per column (axis 1).
@inline(__always)
func quantizationParameters(_ scales: [Float], _ zeroPoints: [Float], column: Int) -> (Float, Float) {
    (scales.count == 1 ? scales[0] : scales[column], zeroPoints.count == 1 ? zeroPoints[0] : zeroPoints[column])
}

/// The integer range of a quantized type, from its zero point's source type (uint8 by default).
func quantizedRange(_ zeroPoint: Tensor?) -> (Float, Float) {
    switch zeroPoint?.sourceElementType {
    case "int8": return (-128, 127)
    case "int32": return (Float(Int32.min), Float(Int32.max))
    case "uint16": return (0, 65535)
    case "int16": return (-32768, 32767)
    default: return (0, 255)
    }
}
