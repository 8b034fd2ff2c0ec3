import CWeirKernels
#if canImport(Glibc)
import Glibc
#endif

/// Unary float functions applied element by element.
enum UnaryFunction: Sendable {
    case relu, leakyRelu(Float), sigmoid, tanh, identity
    var name: String {
        switch self {
        case .relu: return "Relu"
        case .leakyRelu: return "LeakyRelu"
        case .sigmoid: return "Sigmoid"
        case .tanh: return "Tanh"
        case .identity: return "Identity"
        }
    }
}

struct UnaryStep: Step {
    let input: Int, output: Int
    let function: UnaryFunction
    var summary: String { "\(function.name) fp32" }

    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        if case .identity = function {
            copy(x, to: y)
            return
        }
        y.prepare(.float, rows: x.rows, width: x.width, rank: x.rank)
        let count = x.count
        let xp = x.floats, yp = y.floats
        switch function {
        case .relu: for i in 0..<count { yp[i] = max(xp[i], 0) }
        case .leakyRelu(let alpha): for i in 0..<count { yp[i] = xp[i] < 0 ? xp[i] * alpha : xp[i] }
        case .sigmoid: for i in 0..<count { yp[i] = sigmoid(xp[i]) }
        case .tanh: for i in 0..<count { yp[i] = tanhf(xp[i]) }
        case .identity: break
        }
    }
}

func copy(_ x: Buffer, to y: Buffer) {
    y.prepare(x.kind, rows: x.rows, width: x.width, rank: x.rank)
    let count = x.count
    if x.kind == .float {
        y.floats.update(from: x.floats, count: count)
    } else {
        y.ints.update(from: x.ints, count: count)
    }
}

enum BinaryOperator: String, Sendable {
    case add = "Add", sub = "Sub", mul = "Mul", div = "Div"
    @inline(__always) func apply(_ a: Float, _ b: Float) -> Float {
        switch self {
        case .add: return a + b
        case .sub: return a - b
        case .mul: return a * b
        case .div: return a / b
        }
    }
}

/// An operand of a binary step: a runtime value, or a constant broadcast over rows (a scalar or
/// one value per column).
enum Operand: Sendable {
    case slot(Int)
    case constant([Float])  // count 1 (scalar) or the width
}

struct BinaryStep: Step {
    let left: Operand, right: Operand
    let output: Int
    let op: BinaryOperator
    let name: String
    var summary: String { "\(op.rawValue) fp32" }

    func run(_ scratch: ModelScratch, index: Int) throws {
        var rows = 1, width = 1, rank = 2
        for operand in [left, right] {
            if case .slot(let s) = operand {
                let b = scratch.buffers[s]
                rows = b.rows
                width = max(width, b.width)
                rank = b.rank
            }
        }
        if case .constant(let c) = left { width = max(width, c.count) }
        if case .constant(let c) = right { width = max(width, c.count) }
        let y = scratch.buffers[output]
        y.prepare(.float, rows: rows, width: width, rank: rank)
        func value(_ operand: Operand, _ r: Int, _ j: Int) -> Float {
            switch operand {
            case .slot(let s):
                let b = scratch.buffers[s]
                return b.floats[r * b.width + (b.width == 1 ? 0 : j)]
            case .constant(let c):
                return c.count == 1 ? c[0] : c[j]
            }
        }
        // Fast path: runtime [rows, width] with a per-column or scalar constant.
        if case .slot(let s) = left, case .constant(let c) = right, scratch.buffers[s].width == width {
            let xp = scratch.buffers[s].floats, yp = y.floats
            c.withUnsafeBufferPointer { cp in
                for r in 0..<rows {
                    for j in 0..<width { yp[r * width + j] = op.apply(xp[r * width + j], cp.count == 1 ? cp[0] : cp[j]) }
                }
            }
            return
        }
        for r in 0..<rows {
            for j in 0..<width { y.floats[r * width + j] = op.apply(value(left, r, j), value(right, r, j)) }
        }
    }
}

struct SoftmaxStep: Step {
    let input: Int, output: Int
    let kernels: KernelSet
    var summary: String { "Softmax fp32" }
    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        y.prepare(.float, rows: x.rows, width: x.width, rank: x.rank)
        weir_softmax_rows(x.floats, y.floats, x.rows, x.width, kernels.c)
    }
}

struct CastStep: Step {
    let input: Int, output: Int
    let to: ValueKind
    var summary: String { "Cast" }
    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        if x.kind == to { copy(x, to: y); return }
        y.prepare(to, rows: x.rows, width: x.width, rank: x.rank)
        let count = x.count, symbols = scratch.symbols
        switch (x.kind, to) {
        case (.float, .int64): for i in 0..<count { y.ints[i] = saturatingInt64(x.floats[i]) }
        case (.float, .bool): for i in 0..<count { y.ints[i] = x.floats[i] != 0 ? 1 : 0 }
        case (.int64, .float), (.bool, .float): for i in 0..<count { y.floats[i] = Float(x.ints[i]) }
        case (.int64, .bool): for i in 0..<count { y.ints[i] = x.ints[i] != 0 ? 1 : 0 }
        case (.bool, .int64): for i in 0..<count { y.ints[i] = x.ints[i] }
        case (.int64, .string), (.bool, .string):
            // Only strings the model knows can match anything downstream.
            for i in 0..<count { y.ints[i] = symbols.integerSymbols[x.ints[i]] ?? SymbolTable.unknown }
        case (.float, .string):
            for i in 0..<count {
                let v = x.floats[i]
                y.ints[i] = v.rounded() == v && abs(v) < 1e15 ? symbols.integerSymbols[Int64(v)] ?? SymbolTable.unknown : SymbolTable.unknown
            }
        case (.string, .float):
            for i in 0..<count { let s = x.ints[i]; y.floats[i] = s >= 0 ? symbols.numericValues[Int(s)] : .nan }
        case (.string, .int64):
            for i in 0..<count { let s = x.ints[i]; y.ints[i] = s >= 0 ? saturatingInt64(symbols.numericValues[Int(s)]) : 0 }
        case (.string, .bool):
            for i in 0..<count { y.ints[i] = x.ints[i] >= 0 && !symbols.strings[Int(x.ints[i])].isEmpty ? 1 : 0 }
        default: break
        }
    }
}

/// A float as an integer toward zero, without trapping: NaN is 0, values beyond Int64 saturate.
@inline(__always)
func saturatingInt64(_ value: Float) -> Int64 {
    if value.isNaN { return 0 }
    if value >= 9.2233715e18 { return .max }
    if value <= -9.2233715e18 { return .min }
    return Int64(value.rounded(.towardZero))
}

/// Reshape/Flatten of a batch-major value: the row count stays, the per-row width and rank change.
struct ReshapeStep: Step {
    let input: Int, output: Int
    let rank: Int
    let width: Int
    var summary: String { "Reshape" }
    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        copy(x, to: y)
        y.rank = rank
        y.width = width
    }
}

struct ConcatStep: Step {
    let inputs: [Int], output: Int
    var summary: String { "Concat" }
    func run(_ scratch: ModelScratch, index: Int) throws {
        let parts = inputs.map { scratch.buffers[$0] }
        let rows = parts[0].rows, width = parts.reduce(0) { $0 + $1.width }
        let y = scratch.buffers[output]
        y.prepare(parts[0].kind, rows: rows, width: width)
        var column = 0
        for part in parts {
            let partWidth = part.width
            switch part.kind {
            case .float:
                let source = part.floats, target = y.floats + column
                // Narrow parts (one-column inputs, small one-hot blocks) by element: a memmove call each costs more.
                if partWidth < 16 {
                    for r in 0..<rows { for j in 0..<partWidth { target[r * width + j] = source[r * partWidth + j] } }
                } else {
                    for r in 0..<rows { (target + r * width).update(from: source + r * partWidth, count: partWidth) }
                }
            case .int64, .string, .bool:
                let source = part.ints, target = y.ints + column
                for r in 0..<rows { for j in 0..<partWidth { target[r * width + j] = source[r * partWidth + j] } }
            }
            column += partWidth
        }
    }
}

struct ArgMaxStep: Step {
    let input: Int, output: Int
    let keepDims: Bool
    let selectLast: Bool
    var summary: String { "ArgMax" }
    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        y.prepare(.int64, rows: x.rows, width: 1, rank: keepDims ? 2 : 1)
        for r in 0..<x.rows {
            var best = 0
            for j in 1..<max(x.width, 1) {
                let v = x.floats[r * x.width + j], b = x.floats[r * x.width + best]
                if v > b || (selectLast && v == b) { best = j }
            }
            y.ints[r] = Int64(best)
        }
    }
}

/// ArrayFeatureExtractor: runtime rows indexed by constant columns, or a constant list (class
/// labels) indexed by runtime indices.
struct GatherColumnsStep: Step {
    let input: Int, output: Int
    let columns: [Int]
    var summary: String { "ArrayFeatureExtractor (columns)" }
    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        y.prepare(x.kind, rows: x.rows, width: columns.count)
        for r in 0..<x.rows {
            for (j, c) in columns.enumerated() {
                guard c < x.width else { throw ModelError("ArrayFeatureExtractor: column \(c) out of range (width \(x.width))") }
                if x.kind == .float {
                    y.floats[r * columns.count + j] = x.floats[r * x.width + c]
                } else {
                    y.ints[r * columns.count + j] = x.ints[r * x.width + c]
                }
            }
        }
    }
}

struct GatherLabelsStep: Step {
    let indices: Int, output: Int
    let labels: ConstantTable
    var summary: String { "ArrayFeatureExtractor (labels)" }
    func run(_ scratch: ModelScratch, index: Int) throws {
        let ix = scratch.buffers[indices], y = scratch.buffers[output]
        let count = ix.count
        y.prepare(labels.kind, rows: ix.rows, width: ix.width, rank: ix.rank)
        for i in 0..<count {
            let position = ix.ints[i]
            guard position >= 0 && position < Int64(labels.count) else {
                throw ModelError("ArrayFeatureExtractor: index \(position) is outside the \(labels.count) values")
            }
            labels.write(Int(position), to: y, at: i)
        }
    }
}

/// A constant list read by position at run time (labels, an embedding's rows): floats, integers or
/// string symbols.
enum ConstantTable: Sendable {
    case floats([Float])
    case integers([Int64], ValueKind)

    /// `tensor`'s values, its strings numbered by `symbols`.
    init(_ tensor: Tensor, symbols: inout SymbolTableBuilder) {
        switch tensor.storage {
        case .float(let values): self = .floats(values)
        case .int64(let values): self = .integers(values, .int64)
        case .string(let values): self = .integers(values.map { symbols.intern($0) }, .string)
        }
    }

    var kind: ValueKind {
        switch self {
        case .floats: return .float
        case .integers(_, let kind): return kind
        }
    }

    var count: Int {
        switch self {
        case .floats(let v): return v.count
        case .integers(let v, _): return v.count
        }
    }

    @inline(__always)
    func write(_ index: Int, to buffer: Buffer, at position: Int) {
        switch self {
        case .floats(let v): buffer.floats[position] = v[index]
        case .integers(let v, _): buffer.ints[position] = v[index]
        }
    }
}

/// ai.onnx.ml Scaler: (x - offset) * scale, per column or for all.
struct ScalerStep: Step {
    let input: Int, output: Int
    let offset: [Float], scale: [Float]
    var summary: String { "Scaler fp32" }
    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        y.prepare(.float, rows: x.rows, width: x.width)
        let width = x.width, rows = x.rows
        guard (offset.count == 1 || offset.count == width) && (scale.count == 1 || scale.count == width) else {
            throw ModelError("Scaler: \(offset.count) offsets and \(scale.count) scales for \(width) features")
        }
        // Per-column parameters spread to the row's width once, then one tight loop per row.
        let offsets = offset.count == width ? offset : [Float](repeating: offset[0], count: width)
        let scales = scale.count == width ? scale : [Float](repeating: scale[0], count: width)
        let xp = x.floats, yp = y.floats
        offsets.withUnsafeBufferPointer { o in
            scales.withUnsafeBufferPointer { sc in
                let op = o.baseAddress!, sp = sc.baseAddress!
                let wide = width / 8 * 8
                for r in 0..<rows {
                    let row = xp + r * width, out = yp + r * width
                    // Eight columns per step as explicit vectors: the output may be the input
                    // buffer, so the compiler would not vectorize the plain loop by itself.
                    var j = 0
                    while j < wide {
                        let v = UnsafeRawPointer(row + j).loadUnaligned(as: SIMD8<Float>.self)
                        let shift = UnsafeRawPointer(op + j).loadUnaligned(as: SIMD8<Float>.self)
                        let factor = UnsafeRawPointer(sp + j).loadUnaligned(as: SIMD8<Float>.self)
                        UnsafeMutableRawPointer(out + j).storeBytes(of: (v - shift) * factor, as: SIMD8<Float>.self)
                        j += 8
                    }
                    while j < width { out[j] = (row[j] - op[j]) * sp[j]; j += 1 }
                }
            }
        }
    }
}

/// ai.onnx.ml Normalizer.
struct NormalizerStep: Step {
    let input: Int, output: Int
    let norm: Norm
    var summary: String { "Normalizer \(norm.rawValue)" }
    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        y.prepare(.float, rows: x.rows, width: x.width)
        let width = x.width
        for r in 0..<x.rows {
            var denominator: Float = 0
            for j in 0..<width {
                let v = x.floats[r * width + j]
                switch norm {
                case .max: denominator = j == 0 ? v : max(denominator, v)
                case .l1: denominator += abs(v)
                case .l2: denominator += v * v
                }
            }
            if norm == .l2 { denominator = denominator.squareRoot() }
            for j in 0..<width { y.floats[r * width + j] = denominator == 0 ? x.floats[r * width + j] : x.floats[r * width + j] / denominator }
        }
    }
}

/// Applies an ONNX-ML post_transform to one row of scores in place.
func applyPostTransform(_ transform: PostTransform, _ scores: inout [Float], offset: Int, count: Int) {
    switch transform {
    case .logistic:
        for j in 0..<count { scores[offset + j] = sigmoid(scores[offset + j]) }
    case .softmax, .softmaxZero:
        var highest = -Float.infinity
        for j in 0..<count { highest = max(highest, scores[offset + j]) }
        var sum: Float = 0
        for j in 0..<count {
            let v = scores[offset + j]
            let e = (transform == .softmaxZero && v == 0) ? 0 : expf(v - highest)
            scores[offset + j] = e
            sum += e
        }
        if sum > 0 { for j in 0..<count { scores[offset + j] /= sum } }
    case .probit:
        for j in 0..<count { scores[offset + j] = Float(2).squareRoot() * erfInverse(2 * scores[offset + j] - 1) }
    case .none:
        break
    }
}

/// Applies an ONNX-ML post_transform to `count` scores in place, without allocating.
func applyPostTransform(_ transform: PostTransform, to scores: UnsafeMutablePointer<Float>, count: Int) {
    switch transform {
    case .logistic:
        for j in 0..<count { scores[j] = sigmoid(scores[j]) }
    case .softmax, .softmaxZero:
        var highest = -Float.infinity
        for j in 0..<count { highest = max(highest, scores[j]) }
        var sum: Float = 0
        for j in 0..<count {
            let v = scores[j]
            let e = (transform == .softmaxZero && v == 0) ? 0 : expf(v - highest)
            scores[j] = e
            sum += e
        }
        if sum > 0 { for j in 0..<count { scores[j] /= sum } }
    case .probit:
        for j in 0..<count { scores[j] = Float(2).squareRoot() * erfInverse(2 * scores[j] - 1) }
    case .none:
        break
    }
}

/// Inverse error function (Giles' approximation), for the rare PROBIT post-transform.
func erfInverse(_ x: Float) -> Float {
    var w = -logf((1 - x) * (1 + x)), p: Float
    if w < 5 {
        w -= 2.5
        p = 2.81022636e-08
        for c: Float in [3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087, -0.00125372503, -0.00417768164, 0.246640727, 1.50140941] { p = c + p * w }
    } else {
        w = w.squareRoot() - 3
        p = -0.000200214257
        for c: Float in [0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613, 0.00943887047, 1.00167406, 2.83297682] { p = c + p * w }
    }
    return p * x
}

/// Class labels of a classifier: int64 values or string symbols.
struct ClassLabels: Sendable {
    let values: [Int64]
    let kind: ValueKind
    var count: Int { values.count }
    @inline(__always)
    func write(_ index: Int, to buffer: Buffer, at position: Int) { buffer.ints[position] = values[index] }
}

/// ai.onnx.ml LinearClassifier / LinearRegressor: scores = x · coefficientsᵀ + intercepts.
struct LinearStep: Step {
    let input: Int
    let labelOutput: Int?
    let scoreOutput: Int
    let coefficients: [Float]  // [targets][features]
    let intercepts: [Float]
    let targets: Int
    let postTransform: PostTransform
    let labels: ClassLabels?
    var summary: String { labels == nil ? "LinearRegressor fp32" : "LinearClassifier fp32" }

    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input]
        let features = x.width, rows = x.rows
        guard coefficients.count == targets * features else {
            throw ModelError("Linear model: \(coefficients.count) coefficients for \(targets) targets × \(features) features")
        }
        // Binary classifiers with one coefficient row report two scores.
        let binary = labels != nil && targets == 1 && labels!.count == 2
        let outWidth = binary ? 2 : targets
        let scores = scratch.buffers[scoreOutput]
        scores.prepare(.float, rows: rows, width: outWidth)
        if let labelOutput, let labels { scratch.buffers[labelOutput].prepare(labels.kind, rows: rows, width: 1, rank: 1) }
        var row = [Float](repeating: 0, count: targets)
        for r in 0..<rows {
            for t in 0..<targets {
                var sum = intercepts.isEmpty ? 0 : intercepts[t]
                for f in 0..<features { sum += x.floats[r * features + f] * coefficients[t * features + f] }
                row[t] = sum
            }
            if binary {
                var s = [row[0]]
                applyPostTransform(postTransform, &s, offset: 0, count: 1)
                let positive = postTransform == .none ? s[0] > 0 : s[0] > 0.5
                scores.floats[r * 2] = postTransform == .none ? -s[0] : 1 - s[0]
                scores.floats[r * 2 + 1] = s[0]
                if let labelOutput, let labels { labels.write(positive ? 1 : 0, to: scratch.buffers[labelOutput], at: r) }
                continue
            }
            var best = 0
            for t in 1..<max(targets, 1) where row[t] > row[best] { best = t }
            applyPostTransform(postTransform, &row, offset: 0, count: targets)
            for t in 0..<targets { scores.floats[r * targets + t] = row[t] }
            if let labelOutput, let labels { labels.write(best, to: scratch.buffers[labelOutput], at: r) }
        }
    }
}
