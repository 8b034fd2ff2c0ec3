import Foundation

/// The distance of each row to each of a constant set of points (skl2onnx's k-nearest-neighbours
/// Scan): Σ (x − p)² or Σ |x − p| over the features. Output `[rows, points]`.
struct PairwiseDistanceStep: Step {
    enum Metric: Sendable { case squaredEuclidean, manhattan }
    let input: Int, output: Int
    let points: [Float]
    let pointCount: Int, features: Int
    let metric: Metric
    var summary: String { "Scan: distances to \(pointCount) points" }

    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        y.prepare(.float, rows: x.rows, width: pointCount)
        points.withUnsafeBufferPointer { p in
            for r in 0..<x.rows {
                let row = x.floats + r * x.width, out = y.floats + r * pointCount
                for m in 0..<pointCount {
                    let point = p.baseAddress! + m * features
                    var sum: Float = 0
                    switch metric {
                    case .squaredEuclidean: for f in 0..<features { let d = row[f] - point[f]; sum += d * d }
                    case .manhattan: for f in 0..<features { sum += Swift.abs(row[f] - point[f]) }
                    }
                    out[m] = sum
                }
            }
        }
    }
}

/// TopK along the last axis: the k largest (or smallest) values of each row and their positions,
/// ties to the lower position (as onnxruntime).
struct TopKStep: Step {
    let input: Int, values: Int, indices: Int
    let k: Int
    let largest: Bool
    var summary: String { "TopK (\(k), \(largest ? "largest" : "smallest"))" }

    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input]
        let width = x.width
        guard k <= width else { throw ModelError("TopK: k = \(k) but rows have \(width) values") }
        let v = scratch.buffers[values], ix = scratch.buffers[indices]
        v.prepare(.float, rows: x.rows, width: k)
        ix.prepare(.int64, rows: x.rows, width: k)
        for r in 0..<x.rows {
            let row = x.floats + r * width
            // Selection by insertion into the k best so far: k is small (neighbours).
            var count = 0
            for j in 0..<width {
                let value = row[j]
                func better(_ a: Float, _ b: Float) -> Bool { largest ? a > b : a < b }
                if count == k && !better(value, v.floats[r * k + k - 1]) { continue }
                var at = Swift.min(count, k - 1)
                if count < k { count += 1 }
                while at > 0 && better(value, v.floats[r * k + at - 1]) {
                    v.floats[r * k + at] = v.floats[r * k + at - 1]
                    ix.ints[r * k + at] = ix.ints[r * k + at - 1]
                    at -= 1
                }
                v.floats[r * k + at] = value
                ix.ints[r * k + at] = Int64(j)
            }
        }
    }
}
