/// A row's values rearranged by a fixed index map: Gather, Slice, Transpose and Squeeze of the
/// dimensions after the batch (computed when planned).
struct RearrangeStep: Step {
    let input: Int, output: Int
    let map: [Int32]
    let rank: Int
    let name: String
    var summary: String { name }

    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        let width = map.count
        y.prepare(x.kind, rows: x.rows, width: width, rank: rank)
        if x.kind == .float {
            for r in 0..<x.rows { for j in 0..<width { y.floats[r * width + j] = x.floats[r * x.width + Int(map[j])] } }
        } else {
            for r in 0..<x.rows { for j in 0..<width { y.ints[r * width + j] = x.ints[r * x.width + Int(map[j])] } }
        }
    }
}

/// Gather on axis 0 of a constant table by runtime indices (an embedding lookup): each index
/// becomes the table's row. An index outside the table reads zeros (onnxruntime refuses the batch).
struct EmbeddingStep: Step {
    let indices: Int, output: Int
    let table: [Float]
    let tableRows: Int, rowWidth: Int
    let rank: Int
    var summary: String { "Gather (\(tableRows) × \(rowWidth) table)" }

    func run(_ scratch: ModelScratch, index: Int) throws {
        let ix = scratch.buffers[indices], y = scratch.buffers[output]
        let perRow = ix.width, width = perRow * rowWidth
        y.prepare(.float, rows: ix.rows, width: width, rank: rank)
        table.withUnsafeBufferPointer { t in
            for r in 0..<ix.rows {
                for k in 0..<perRow {
                    var i = ix.kind == .float ? saturatingInt64(ix.floats[r * perRow + k]) : ix.ints[r * perRow + k]
                    if i < 0 { i += Int64(tableRows) }
                    let target = y.floats + r * width + k * rowWidth
                    if i >= 0 && i < Int64(tableRows) {
                        target.update(from: t.baseAddress! + Int(i) * rowWidth, count: rowWidth)
                    } else {
                        target.update(repeating: 0, count: rowWidth)
                    }
                }
            }
        }
    }
}

/// A runtime value of constant content with another value's rows (ConstantOfShape of a Shape).
struct FillStep: Step {
    let like: Int, output: Int
    let value: Float
    let kind: ValueKind
    let width: Int, rank: Int
    var summary: String { "ConstantOfShape" }

    func run(_ scratch: ModelScratch, index: Int) throws {
        let rows = scratch.buffers[like].rows, y = scratch.buffers[output]
        y.prepare(kind, rows: rows, width: width, rank: rank)
        if kind == .float {
            y.floats.update(repeating: value, count: rows * width)
        } else {
            y.ints.update(repeating: saturatingInt64(value), count: rows * width)
        }
    }
}
