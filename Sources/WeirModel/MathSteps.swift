import Foundation

/// Where an element-wise operand's value for output position `j` of a row comes from: the same
/// position (`map` nil), or `map[j]` within its row (broadcasting, computed once when planned).
struct OperandSource: Sendable {
    enum Values: Sendable {
        case slot(Int)
        case floats([Float])
        case integers([Int64], ValueKind)
    }
    let values: Values
    let map: [Int32]?

    var kind: (ValueKind, isConstant: Bool) {
        switch values {
        case .slot: return (.float, false)
        case .floats: return (.float, true)
        case .integers(_, let kind): return (kind, true)
        }
    }
}

/// The element-wise operators over two or three operands with numpy broadcasting.
enum ElementwiseOperator: String, Sendable {
    case add = "Add", sub = "Sub", mul = "Mul", div = "Div", pow = "Pow", max = "Max", min = "Min", mod = "Mod"
    case equal = "Equal", less = "Less", lessOrEqual = "LessOrEqual", greater = "Greater", greaterOrEqual = "GreaterOrEqual"
    case and = "And", or = "Or", xor = "Xor"
    case whereSelect = "Where"

    var isComparison: Bool { [.equal, .less, .lessOrEqual, .greater, .greaterOrEqual].contains(self) }
    var isLogical: Bool { [.and, .or, .xor].contains(self) }

    @inline(__always)
    func float(_ a: Float, _ b: Float) -> Float {
        switch self {
        case .add: return a + b
        case .sub: return a - b
        case .mul: return a * b
        case .div: return a / b
        case .pow: return powf(a, b)
        case .max: return a.isNaN || b.isNaN ? .nan : Swift.max(a, b)
        case .min: return a.isNaN || b.isNaN ? .nan : Swift.min(a, b)
        case .mod: return fmodf(a, b)
        default: return 0
        }
    }

    @inline(__always)
    func integer(_ a: Int64, _ b: Int64) -> Int64 {
        switch self {
        case .add: return a &+ b
        case .sub: return a &- b
        case .mul: return a &* b
        case .div: return b == 0 ? 0 : (a == .min && b == -1 ? .min : a / b)
        case .max: return Swift.max(a, b)
        case .min: return Swift.min(a, b)
        case .mod: return b == 0 ? 0 : (a == .min && b == -1 ? 0 : ((a % b) + b) % b)
        case .pow:
            var result: Int64 = 1
            if b < 0 { return 0 }
            for _ in 0..<Swift.min(b, 64) { result = result &* a }
            return result
        default: return 0
        }
    }

    /// A comparison of two floats or two integers (symbols, booleans).
    @inline(__always)
    func compare<Value: Comparable>(_ a: Value, _ b: Value) -> Bool {
        switch self {
        case .equal: return a == b
        case .less: return a < b
        case .lessOrEqual: return a <= b
        case .greater: return a > b
        case .greaterOrEqual: return a >= b
        default: return false
        }
    }

    /// And, Or and Xor of two booleans (0 or 1).
    @inline(__always)
    func logical(_ a: Int64, _ b: Int64) -> Bool {
        switch self {
        case .and: return a != 0 && b != 0
        case .or: return a != 0 || b != 0
        case .xor: return (a != 0) != (b != 0)
        default: return false
        }
    }
}

/// An element-wise operator over broadcast operands: arithmetic (float or int64), comparisons and
/// logic (bool), or Where (condition, then, else).
struct ElementwiseStep: Step {
    let op: ElementwiseOperator
    let operands: [OperandSource]
    let output: Int
    let outputKind: ValueKind
    /// Whether arithmetic and comparisons run on floats (else on integers).
    let inFloats: Bool
    let rowShape: [Int]
    /// For two float operands (slots or constants): each one's position per output position, and
    /// its constant values; the fast path reads them through raw pointers.
    private let fastPositions: [Constants<Int32>]?
    private let fastConstants: [Constants<Float>?]

    init(op: ElementwiseOperator, operands: [OperandSource], output: Int, outputKind: ValueKind, inFloats: Bool, rowShape: [Int],
         operandKinds: [ValueKind]) {
        self.op = op
        self.operands = operands
        self.output = output
        self.outputKind = outputKind
        self.inFloats = inFloats
        self.rowShape = rowShape
        let width = rowShape.reduce(1, *)
        let floatsOnly = operands.count == 2 && operandKinds.allSatisfy { $0 == .float } && inFloats && !op.isLogical
        fastPositions = floatsOnly ? operands.map { Constants($0.map ?? (0..<width).map(Int32.init)) } : nil
        fastConstants = operands.map { operand in
            if case .floats(let values) = operand.values { return Constants(values) }
            return nil
        }
    }

    var summary: String { "\(op.rawValue)\(inFloats ? " fp32" : "")" }

    /// Two float operands: the operator chosen once, then one loop over the rows.
    private func runFloats(_ scratch: ModelScratch, positions: [Constants<Int32>]) {
        var rows = 0
        /// Operand k's values and the stride between its rows (0 for a constant).
        func source(_ k: Int) -> (UnsafePointer<Float>, Int) {
            if case .slot(let s) = operands[k].values {
                let b = scratch.buffers[s]
                rows = b.rows
                return (UnsafePointer(b.floats), b.width)
            }
            return (UnsafePointer(fastConstants[k]!.base), 0)
        }
        let (a, sa) = source(0), (b, sb) = source(1)
        let width = rowShape.reduce(1, *)
        let y = scratch.buffers[output]
        y.prepare(outputKind, rows: rows, width: width, rank: rowShape.count + 1)
        let (pa, pb) = (positions[0].base, positions[1].base)
        @inline(__always) func arithmetic(_ f: (Float, Float) -> Float) {
            let out = y.floats
            for r in 0..<rows {
                let ra = a + r * sa, rb = b + r * sb, ro = out + r * width
                for j in 0..<width { ro[j] = f(ra[Int(pa[j])], rb[Int(pb[j])]) }
            }
        }
        @inline(__always) func compare(_ f: (Float, Float) -> Bool) {
            let out = y.ints
            for r in 0..<rows {
                let ra = a + r * sa, rb = b + r * sb, ro = out + r * width
                for j in 0..<width { ro[j] = f(ra[Int(pa[j])], rb[Int(pb[j])]) ? 1 : 0 }
            }
        }
        switch op {
        case .add: arithmetic { $0 + $1 }
        case .sub: arithmetic { $0 - $1 }
        case .mul: arithmetic { $0 * $1 }
        case .div: arithmetic { $0 / $1 }
        case .pow:
            if case .floats(let e) = operands[1].values, e.allSatisfy({ $0 == 2 }) { arithmetic { x, _ in x * x } } else { arithmetic { powf($0, $1) } }
        case .equal: compare { $0 == $1 }
        case .less: compare { $0 < $1 }
        case .lessOrEqual: compare { $0 <= $1 }
        case .greater: compare { $0 > $1 }
        case .greaterOrEqual: compare { $0 >= $1 }
        default: arithmetic { op.float($0, $1) }
        }
    }

    func run(_ scratch: ModelScratch, index: Int) throws {
        if let fastPositions {
            runFloats(scratch, positions: fastPositions)
            return
        }
        var rows = 0
        for operand in operands { if case .slot(let s) = operand.values { rows = scratch.buffers[s].rows } }
        let width = rowShape.reduce(1, *)
        let y = scratch.buffers[output]
        y.prepare(outputKind, rows: rows, width: width, rank: rowShape.count + 1)
        let buffers = operands.map { operand -> Buffer? in
            if case .slot(let s) = operand.values { return scratch.buffers[s] }
            return nil
        }
        @inline(__always) func position(_ k: Int, _ j: Int) -> Int { operands[k].map.map { Int($0[j]) } ?? j }
        @inline(__always) func floatValue(_ k: Int, _ r: Int, _ j: Int) -> Float {
            let p = position(k, j)
            switch operands[k].values {
            case .slot:
                let b = buffers[k]!
                return b.kind == .float ? b.floats[r * b.width + p] : Float(b.ints[r * b.width + p])
            case .floats(let v): return v[p]
            case .integers(let v, _): return Float(v[p])
            }
        }
        @inline(__always) func intValue(_ k: Int, _ r: Int, _ j: Int) -> Int64 {
            let p = position(k, j)
            switch operands[k].values {
            case .slot:
                let b = buffers[k]!
                return b.kind == .float ? saturatingInt64(b.floats[r * b.width + p]) : b.ints[r * b.width + p]
            case .floats(let v): return saturatingInt64(v[p])
            case .integers(let v, _): return v[p]
            }
        }
        for r in 0..<rows {
            let base = r * width
            switch op {
            case .whereSelect:
                for j in 0..<width {
                    let condition = intValue(0, r, j) != 0
                    if outputKind == .float {
                        y.floats[base + j] = floatValue(condition ? 1 : 2, r, j)
                    } else {
                        y.ints[base + j] = intValue(condition ? 1 : 2, r, j)
                    }
                }
            case _ where op.isComparison:
                if inFloats {
                    for j in 0..<width { y.ints[base + j] = op.compare(floatValue(0, r, j), floatValue(1, r, j)) ? 1 : 0 }
                } else {
                    for j in 0..<width { y.ints[base + j] = op.compare(intValue(0, r, j), intValue(1, r, j)) ? 1 : 0 }
                }
            case _ where op.isLogical:
                for j in 0..<width { y.ints[base + j] = op.logical(intValue(0, r, j), intValue(1, r, j)) ? 1 : 0 }
            default:
                if inFloats {
                    for j in 0..<width { y.floats[base + j] = op.float(floatValue(0, r, j), floatValue(1, r, j)) }
                } else {
                    for j in 0..<width { y.ints[base + j] = op.integer(intValue(0, r, j), intValue(1, r, j)) }
                }
            }
        }
    }
}

/// Unary float functions beyond the activations: math, tests and rounding.
enum MathFunction: String, Sendable {
    case sqrt = "Sqrt", exp = "Exp", log = "Log", abs = "Abs", neg = "Neg", reciprocal = "Reciprocal", erf = "Erf"
    case floor = "Floor", ceil = "Ceil", round = "Round", sign = "Sign", softplus = "Softplus"
    case sin = "Sin", cos = "Cos", atan = "Atan"
    case isNaN = "IsNaN", isInf = "IsInf", not = "Not"
    case gelu = "Gelu", geluTanh = "GeluTanh"

    /// Whether the result is a boolean.
    var isTest: Bool { self == .isNaN || self == .isInf || self == .not }

    @inline(__always)
    func apply(_ x: Float) -> Float {
        switch self {
        case .sqrt: return x.squareRoot()
        case .exp: return expf(x)
        case .log: return logf(x)
        case .abs: return Swift.abs(x)
        case .neg: return -x
        case .reciprocal: return 1 / x
        case .erf: return erff(x)
        case .floor: return x.rounded(.down)
        case .ceil: return x.rounded(.up)
        case .round: return x.rounded(.toNearestOrEven)
        case .sign: return x > 0 ? 1 : (x < 0 ? -1 : (x.isNaN ? .nan : 0))
        case .softplus: return x > 20 ? x : log1pf(expf(x))
        case .sin: return sinf(x)
        case .cos: return cosf(x)
        case .atan: return atanf(x)
        case .gelu: return 0.5 * x * (1 + erff(x * 0.70710678118654752))
        case .geluTanh: return 0.5 * x * (1 + tanhf(0.79788456080286536 * (x + 0.044715 * x * x * x)))
        case .isNaN, .isInf, .not: return 0
        }
    }
}

struct MathStep: Step {
    let input: Int, output: Int
    let function: MathFunction
    let rowShape: [Int]
    var summary: String { "\(function.rawValue)\(function.isTest ? "" : " fp32")" }

    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        let count = x.count
        switch function {
        case .isNaN, .isInf:
            y.prepare(.bool, rows: x.rows, width: x.width, rank: rowShape.count + 1)
            for i in 0..<count {
                let v = x.kind == .float ? x.floats[i] : 0
                y.ints[i] = (function == .isNaN ? v.isNaN : v.isInfinite) ? 1 : 0
            }
        case .not:
            y.prepare(.bool, rows: x.rows, width: x.width, rank: rowShape.count + 1)
            for i in 0..<count { y.ints[i] = x.ints[i] == 0 ? 1 : 0 }
        case .neg where x.kind == .int64, .abs where x.kind == .int64:
            y.prepare(.int64, rows: x.rows, width: x.width, rank: rowShape.count + 1)
            for i in 0..<count { y.ints[i] = function == .neg ? 0 &- x.ints[i] : (x.ints[i] < 0 ? 0 &- x.ints[i] : x.ints[i]) }
        default:
            y.prepare(.float, rows: x.rows, width: x.width, rank: rowShape.count + 1)
            let xp = x.floats, yp = y.floats
            // The function chosen once, the loop specialized for it.
            @inline(__always) func each(_ f: (Float) -> Float) { for i in 0..<count { yp[i] = f(xp[i]) } }
            switch function {
            case .sqrt: each { $0.squareRoot() }
            case .exp: each { expf($0) }
            case .log: each { logf($0) }
            case .abs: each { Swift.abs($0) }
            case .neg: each { -$0 }
            case .reciprocal: each { 1 / $0 }
            case .erf: each { erff($0) }
            default: each { function.apply($0) }
            }
        }
    }
}

/// Clip to constant bounds.
struct ClipStep: Step {
    let input: Int, output: Int
    let low: Float, high: Float
    var summary: String { "Clip fp32" }
    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        y.prepare(.float, rows: x.rows, width: x.width, rank: x.rank)
        for i in 0..<x.count {
            let v = x.floats[i]
            y.floats[i] = v.isNaN ? v : Swift.min(Swift.max(v, low), high)
        }
    }
}
