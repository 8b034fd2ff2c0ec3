import Foundation

/// The reductions over axes after the batch.
enum Reduction: String, Sendable {
    case sum = "ReduceSum", mean = "ReduceMean", max = "ReduceMax", min = "ReduceMin", prod = "ReduceProd"
    case logSumExp = "ReduceLogSumExp", sumSquare = "ReduceSumSquare", l1 = "ReduceL1", l2 = "ReduceL2", logSum = "ReduceLogSum"
}

/// A reduction over some of a row's axes: each output position reduces the input positions listed
/// for it (computed when planned).
struct ReduceStep: Step {
    let input: Int, output: Int
    let reduction: Reduction
    /// For each output position of a row, the input positions it reduces (all groups have one size).
    let groups: [Int32]
    let groupSize: Int
    let outputRank: Int
    var summary: String { "\(reduction.rawValue) fp32" }

    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        let outWidth = groups.count / Swift.max(groupSize, 1)
        y.prepare(.float, rows: x.rows, width: outWidth, rank: outputRank)
        for r in 0..<x.rows {
            let row = x.floats + r * x.width
            for o in 0..<outWidth {
                let members = o * groupSize
                var result: Float
                switch reduction {
                case .max, .min:
                    // A NaN makes the result NaN, as the ONNX reference computes it (onnxruntime's
                    // vectorized reduction gives NaN or passes over it depending on its lane).
                    result = reduction == .max ? -.infinity : .infinity
                    for m in 0..<groupSize {
                        let v = row[Int(groups[members + m])]
                        if v.isNaN { result = v; break }
                        result = reduction == .max ? Swift.max(result, v) : Swift.min(result, v)
                    }
                case .prod:
                    result = 1
                    for m in 0..<groupSize { result *= row[Int(groups[members + m])] }
                case .logSumExp:
                    var highest = -Float.infinity
                    for m in 0..<groupSize { highest = Swift.max(highest, row[Int(groups[members + m])]) }
                    var sum: Float = 0
                    for m in 0..<groupSize { sum += expf(row[Int(groups[members + m])] - highest) }
                    result = highest.isFinite ? highest + logf(sum) : highest
                default:
                    result = 0
                    for m in 0..<groupSize {
                        let v = row[Int(groups[members + m])]
                        switch reduction {
                        case .sumSquare, .l2: result += v * v
                        case .l1: result += Swift.abs(v)
                        default: result += v
                        }
                    }
                    if reduction == .mean { result /= Float(groupSize) }
                    if reduction == .l2 { result = result.squareRoot() }
                    if reduction == .logSum { result = logf(result) }
                }
                y.floats[r * outWidth + o] = result
            }
        }
    }
}

/// LayerNormalization over the last `normalizedWidth` values of each row (groups of that size).
struct LayerNormStep: Step {
    let input: Int, output: Int
    let normalizedWidth: Int
    let scale: [Float], bias: [Float]
    let epsilon: Float
    var summary: String { "LayerNormalization fp32" }

    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        y.prepare(.float, rows: x.rows, width: x.width, rank: x.rank)
        let n = normalizedWidth, groups = x.count / Swift.max(n, 1)
        for g in 0..<groups {
            let xp = x.floats + g * n, yp = y.floats + g * n
            var mean: Float = 0
            for i in 0..<n { mean += xp[i] }
            mean /= Float(n)
            var variance: Float = 0
            for i in 0..<n { let d = xp[i] - mean; variance += d * d }
            variance /= Float(n)
            let inverse = 1 / (variance + epsilon).squareRoot()
            for i in 0..<n {
                yp[i] = (xp[i] - mean) * inverse * scale[scale.count == 1 ? 0 : i] + (bias.isEmpty ? 0 : bias[bias.count == 1 ? 0 : i])
            }
        }
    }
}
