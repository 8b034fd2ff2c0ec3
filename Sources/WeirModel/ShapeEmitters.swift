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
        let out = newSlot(node.outputs[0], SlotInfo(kind: kind, rank: x.info.rank, width: x.info.width))
        record(CastStep(input: x.slot, output: out, to: kind), output: node.outputs[0], nodes: [node.name], precision: "-", bytes: 0)
    }

    /// Reshape to a constant shape that keeps rows apart.
    mutating func emitReshape(_ node: GraphNode, index: Int) throws {
        let x = try runtime(node.inputs[0], node)
        guard let shape = constants[node.inputs[1]]?.asInt64s.map(Int.init) else {
            throw ModelError("\(node.label): the target shape must be a constant")
        }
        let (rank, width) = try reshapedLayout(x.info, shape, node)
        let out = newSlot(node.outputs[0], SlotInfo(kind: x.info.kind, rank: rank, width: width))
        record(ReshapeStep(input: x.slot, output: out, rank: rank, width: width), output: node.outputs[0], nodes: [node.name], precision: "-", bytes: 0)
    }

    /// Flatten at axis 1.
    mutating func emitFlatten(_ node: GraphNode, index: Int) throws {
        let x = try runtime(node.inputs[0], node)
        guard node.int("axis", default: 1) == 1 else { throw ModelError("\(node.label): only axis=1 is supported") }
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

    private func reshapedLayout(_ x: SlotInfo, _ shape: [Int], _ node: GraphNode) throws -> (Int, Int) {
        let perRow = x.width
        switch shape.count {
        case 1:
            guard perRow == 1 else { throw ModelError("\(node.label): reshaping [rows, \(perRow)] to \(shape) would mix rows") }
            return (1, 1)
        case 2:
            let second = shape[1] == 0 ? perRow : (shape[1] == -1 ? perRow : shape[1])
            guard second == perRow else { throw ModelError("\(node.label): reshaping [rows, \(perRow)] to \(shape) would mix rows") }
            return (2, second)
        default:
            let trailing = shape.dropFirst(2)
            guard trailing.allSatisfy({ $0 == 1 }) else { throw ModelError("\(node.label): tensors above rank 2 are not supported (shape \(shape))") }
            return (2, shape[1] <= 0 ? perRow : shape[1])
        }
    }
}
