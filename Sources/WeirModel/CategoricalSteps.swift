/// Positions of integer keys (string symbols or int64 categories): a dense table over the keys'
/// span when it is small, a dictionary otherwise. Built once when planned; a lookup allocates nothing.
struct CategoryIndex: Sendable {
    private let offset: Int64
    private let dense: [Int32]
    private let sparse: [Int64: Int32]
    let count: Int

    init(_ keys: [Int64]) {
        count = keys.count
        let low = keys.min() ?? 0, high = keys.max() ?? 0
        if keys.isEmpty || high &- low < 65_536 && high >= low {
            offset = low
            var table = [Int32](repeating: -1, count: keys.isEmpty ? 0 : Int(high - low) + 1)
            // A key listed twice keeps its last position, as onnxruntime's map does.
            for (position, key) in keys.enumerated() { table[Int(key - low)] = Int32(position) }
            dense = table
            sparse = [:]
        } else {
            offset = 0
            dense = []
            var table = [Int64: Int32]()
            for (position, key) in keys.enumerated() { table[key] = Int32(position) }
            sparse = table
        }
    }

    /// The key's position, or -1.
    @inline(__always)
    func position(_ key: Int64) -> Int {
        if !dense.isEmpty || sparse.isEmpty {
            let at = key &- offset
            return at >= 0 && at < Int64(dense.count) ? Int(dense[Int(at)]) : -1
        }
        return Int(sparse[key] ?? -1)
    }
}

/// The keys an encoder matches: integer ones (string symbols, int64 values) through a
/// `CategoryIndex`, float ones by value.
enum EncoderKeys: Sendable {
    case integers(CategoryIndex)
    case floats([Float: Int32])

    /// The position of element `i` of `x`, or -1.
    @inline(__always)
    func position(in x: Buffer, _ i: Int) -> Int {
        switch self {
        case .integers(let index):
            return x.kind == .float ? (x.floats[i].isNaN ? -1 : index.position(saturatingInt64(x.floats[i]))) : index.position(x.ints[i])
        case .floats(let table):
            let v = x.kind == .float ? x.floats[i] : Float(x.ints[i])
            return Int(table[v] ?? -1)
        }
    }
}

/// ai.onnx.ml OneHotEncoder: each value becomes `categories` columns, 1 where it matches. A value of
/// no category is all zeros (also with `zeros=0`, where onnxruntime refuses the whole batch: Weir
/// answers each row on its own).
struct OneHotEncoderStep: Step {
    let input: Int, output: Int
    let keys: EncoderKeys
    let categories: Int
    var summary: String { "OneHotEncoder (\(categories) categories)" }

    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        let values = x.count, width = x.width * categories
        y.prepare(.float, rows: x.rows, width: width)
        y.floats.update(repeating: 0, count: x.rows * width)
        for i in 0..<values {
            let position = keys.position(in: x, i)
            if position >= 0 { y.floats[i * categories + position] = 1 }
        }
    }
}

/// ai.onnx.ml LabelEncoder and CategoryMapper: each value mapped through a table, the default where
/// it has no key.
struct LabelEncoderStep: Step {
    let input: Int, output: Int
    let keys: EncoderKeys
    let values: ConstantTable
    let defaultValue: ConstantTable
    let name: String
    var summary: String { "\(name) (\(values.count) keys)" }

    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        y.prepare(values.kind, rows: x.rows, width: x.width, rank: x.rank)
        for i in 0..<x.count {
            let position = keys.position(in: x, i)
            if position >= 0 { values.write(position, to: y, at: i) } else { defaultValue.write(0, to: y, at: i) }
        }
    }
}

/// ai.onnx.ml Imputer: a column's missing values (NaN, or the `replaced` value) take its imputed value.
struct ImputerStep: Step {
    let input: Int, output: Int
    let imputed: [Float]
    let replaced: Float
    var summary: String { "Imputer fp32" }

    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        let width = x.width
        guard imputed.count == 1 || imputed.count == width else {
            throw ModelError("Imputer: \(imputed.count) imputed values for \(width) columns")
        }
        if x.kind != .float {
            y.prepare(x.kind, rows: x.rows, width: width, rank: x.rank)
            for r in 0..<x.rows {
                for j in 0..<width {
                    let v = x.ints[r * width + j]
                    y.ints[r * width + j] = Float(v) == replaced ? Int64(imputed[imputed.count == 1 ? 0 : j]) : v
                }
            }
            return
        }
        y.prepare(.float, rows: x.rows, width: width, rank: x.rank)
        let matchNaN = replaced.isNaN
        for r in 0..<x.rows {
            for j in 0..<width {
                let v = x.floats[r * width + j]
                let missing = matchNaN ? v.isNaN : v == replaced
                y.floats[r * width + j] = missing ? imputed[imputed.count == 1 ? 0 : j] : v
            }
        }
    }
}

/// ai.onnx.ml Binarizer: 1 above the threshold, else 0.
struct BinarizerStep: Step {
    let input: Int, output: Int
    let threshold: Float
    var summary: String { "Binarizer" }

    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        y.prepare(.float, rows: x.rows, width: x.width, rank: x.rank)
        for i in 0..<x.count { y.floats[i] = x.floats[i] > threshold ? 1 : 0 }
    }
}
