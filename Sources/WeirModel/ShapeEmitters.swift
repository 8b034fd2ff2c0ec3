import Foundation

/// Casts and layout: the operators that move or relabel values without arithmetic.
extension Planner {
    static let shapeFamily: [OperatorKey: Emitter] = family([
        "Cast": { try $0.emitCast($1, index: $2) },
        "Reshape": { try $0.emitReshape($1, index: $2) },
        "Flatten": { try $0.emitFlatten($1, index: $2) },
        "Concat": { try $0.emitConcat($1, index: $2) },
        "ArgMax": { try $0.emitArgMax($1, index: $2) },
    ])

    /// Cast to float, int64 or string.
    mutating func emitCast(_ node: GraphNode, index: Int) throws {
        let x = try runtime(node.inputs[0], node)
        let to = node.int("to", default: 1)
        let kind: ValueKind = [1, 10, 11].contains(to) ? .float : (to == 8 ? .string : .int64)
        let out = newSlot(node.outputs[0], SlotInfo(kind: kind, rowShape: x.info.rowShape))
        record(CastStep(input: x.slot, output: out, to: kind), output: node.outputs[0], nodes: [node.name], precision: "-", bytes: 0)
    }

    /// Reshape to a constant shape that keeps rows apart.
    mutating func emitReshape(_ node: GraphNode, index: Int) throws {
        let x = try runtime(node.inputs[0], node)
        guard let shape = constants[node.inputs[1]]?.asInt64s.map(Int.init) else {
            throw ModelError("\(node.label): the target shape must be a constant")
        }
        let rowShape = try reshapedRowShape(x.info, shape, node)
        if !isGraphOutput(node.outputs[0]) {
            view(node.outputs[0], of: x.slot, rowShape: rowShape)
            return
        }
        let out = newSlot(node.outputs[0], SlotInfo(kind: x.info.kind, rowShape: rowShape))
        record(ReshapeStep(input: x.slot, output: out, rank: rowShape.count + 1, width: x.info.width), output: node.outputs[0],
               nodes: [node.name], precision: "-", bytes: 0)
    }

    /// Flatten at axis 1.
    mutating func emitFlatten(_ node: GraphNode, index: Int) throws {
        let x = try runtime(node.inputs[0], node)
        guard node.int("axis", default: 1) == 1 else { throw ModelError("\(node.label): only axis=1 is supported") }
        if !isGraphOutput(node.outputs[0]) {
            view(node.outputs[0], of: x.slot, rowShape: [x.info.width])
            return
        }
        let out = newSlot(node.outputs[0], SlotInfo(kind: x.info.kind, rank: 2, width: x.info.width))
        record(ReshapeStep(input: x.slot, output: out, rank: 2, width: x.info.width), output: node.outputs[0], nodes: [node.name], precision: "-", bytes: 0)
    }

    /// Concat along the features.
    mutating func emitConcat(_ node: GraphNode, index: Int) throws {
        let parts = try node.inputs.map { try runtime($0, node) }
        let axis = Int(node.int("axis", default: 1))
        guard axis == 1 || axis == -1 else { throw ModelError("\(node.label): only concatenation along features (axis 1) is supported") }
        let out = newSlot(node.outputs[0], SlotInfo(kind: parts[0].info.kind, rank: 2, width: parts.reduce(0) { $0 + $1.info.width }))
        record(ConcatStep(inputs: parts.map(\.slot), output: out), output: node.outputs[0], nodes: [node.name], precision: "-", bytes: 0)
    }

    /// ArgMax over the features.
    mutating func emitArgMax(_ node: GraphNode, index: Int) throws {
        let x = try runtime(node.inputs[0], node)
        let axis = Int(node.int("axis", default: 0))
        guard axis == 1 || axis == -1 else { throw ModelError("\(node.label): only ArgMax over features (axis 1) is supported") }
        let keep = node.int("keepdims", default: 1) == 1
        let out = newSlot(node.outputs[0], SlotInfo(kind: .int64, rank: keep ? 2 : 1, width: 1))
        record(ArgMaxStep(input: x.slot, output: out, keepDims: keep, selectLast: node.int("select_last_index", default: 0) == 1),
               output: node.outputs[0], nodes: [node.name], precision: "-", bytes: 0)
    }

    /// The row shape after reshaping `[rows] + x.rowShape` to `shape`, which must keep the batch
    /// first (-1 or 0 there) or, for one value per row, flatten to `[rows]`.
    private func reshapedRowShape(_ x: SlotInfo, _ shape: [Int], _ node: GraphNode) throws -> [Int] {
        let width = x.width
        func mixes() -> ModelError { ModelError("\(node.label): reshaping [rows, \(x.rowShape.map(String.init).joined(separator: ", "))] to \(shape) would mix rows") }
        if shape.count == 1 {
            guard width == 1 else { throw mixes() }
            return []
        }
        guard let first = shape.first, first == -1 || first == 0 else { throw mixes() }
        var rowShape = Array(shape.dropFirst())
        for d in rowShape.indices where rowShape[d] == 0 {
            guard d < x.rowShape.count else { throw mixes() }
            rowShape[d] = x.rowShape[d]
        }
        if let unknown = rowShape.firstIndex(of: -1) {
            guard first == 0 else { throw mixes() }
            let known = rowShape.enumerated().filter { $0.offset != unknown }.map(\.element).reduce(1, *)
            guard known > 0, width % known == 0 else { throw mixes() }
            rowShape[unknown] = width / known
        }
        guard rowShape.reduce(1, *) == width else { throw mixes() }
        return rowShape
    }
}
