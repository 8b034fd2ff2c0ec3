import Foundation

/// ai.onnx: the gathers, slices and shape operators that keep rows apart, and the k-nearest-neighbour
/// Scan and TopK (entries of `mathFamily`).
extension Planner {
    // MARK: gathers and layout

    /// Positions of a row of shape `shape` in row-major order, as multi-indices.
    private func positions(_ shape: [Int]) -> [[Int]] {
        let width = shape.reduce(1, *)
        return (0..<width).map { j in
            var rest = j, index = [Int](repeating: 0, count: shape.count)
            for d in shape.indices.reversed() { index[d] = rest % shape[d]; rest /= shape[d] }
            return index
        }
    }

    private func offset(_ index: [Int], in shape: [Int]) -> Int32 {
        var o = 0
        for d in shape.indices { o = o * shape[d] + index[d] }
        return Int32(o)
    }

    private mutating func emitRearrange(_ node: GraphNode, _ x: (slot: Int, info: SlotInfo), map: [Int32], outShape: [Int]) {
        let out = newSlot(node.outputs[0], SlotInfo(kind: x.info.kind, rowShape: outShape))
        record(RearrangeStep(input: x.slot, output: out, map: map, rank: outShape.count + 1, name: node.opType), output: node.outputs[0],
               nodes: [node.name], precision: "-", bytes: map.count * 4)
    }

    /// Gather: constant indices along a row axis of a runtime value, or runtime indices into a
    /// constant table (an embedding).
    mutating func emitGather(_ node: GraphNode) throws {
        let axis = Int(node.int("axis", default: 0))
        if let table = constants[node.inputs[0]] {
            let ix = try runtime(node.inputs[1], node)
            guard axis == 0 || axis == -table.shape.count, table.floats != nil, !table.shape.isEmpty else {
                throw ModelError("\(node.label): a constant table is gathered by rows (axis 0) of floats only")
            }
            let rowWidth = table.shape.dropFirst().reduce(1, *)
            let outShape = ix.info.rowShape + table.shape.dropFirst()
            let out = newSlot(node.outputs[0], SlotInfo(kind: .float, rowShape: outShape))
            record(EmbeddingStep(indices: ix.slot, output: out, table: table.floats!, tableRows: table.shape[0], rowWidth: rowWidth,
                                 rank: outShape.count + 1),
                   output: node.outputs[0], nodes: [node.name], precision: "fp32", bytes: table.count * 4)
            return
        }
        let x = try runtime(node.inputs[0], node)
        guard let indices = constants[node.inputs[1]] else {
            throw ModelError("\(node.label): gathering a batch value needs constant indices")
        }
        let rank = x.info.rank
        let a = axis < 0 ? axis + rank : axis
        guard a >= 1 && a < rank else { throw ModelError("\(node.label): gathering along axis \(axis) would mix rows") }
        let shape = x.info.rowShape, dim = shape[a - 1]
        let picks = indices.asInt64s.map { Int($0 < 0 ? $0 + Int64(dim) : $0) }
        guard picks.allSatisfy({ $0 >= 0 && $0 < dim }) else { throw ModelError("\(node.label): an index is outside 0..<\(dim)") }
        let outShape = Array(shape[..<(a - 1)]) + indices.shape + Array(shape[a...])
        let map = positions(outShape).map { index -> Int32 in
            let k = indices.shape.count
            var flat = 0
            for (d, i) in index[(a - 1)..<(a - 1 + k)].enumerated() { flat = flat * indices.shape[d] + i }
            let source = Array(index[..<(a - 1)]) + [picks[flat]] + Array(index[(a - 1 + k)...])
            return offset(source, in: shape)
        }
        emitRearrange(node, x, map: map, outShape: outShape)
    }

    /// Slice with constant starts, ends, axes and steps, along row axes.
    mutating func emitSlice(_ node: GraphNode) throws {
        let x = try runtime(node.inputs[0], node)
        func list(_ position: Int, _ attribute: String) throws -> [Int64]? {
            if node.inputs.count > position && !node.inputs[position].isEmpty {
                guard let c = constants[node.inputs[position]] else { throw ModelError("\(node.label): \(attribute) must be constant") }
                return c.asInt64s
            }
            return node.ints(attribute)
        }
        guard let starts = try list(1, "starts"), let ends = try list(2, "ends") else { throw ModelError("\(node.label): starts and ends are missing") }
        let rank = x.info.rank
        let axes = try list(3, "axes") ?? (0..<Int64(starts.count)).map { $0 }
        let steps = try list(4, "steps") ?? [Int64](repeating: 1, count: starts.count)
        var shape = x.info.rowShape
        var ranges = shape.map { Array(0..<$0) }
        for k in axes.indices {
            let a = Int(axes[k] < 0 ? axes[k] + Int64(rank) : axes[k])
            if a == 0 {
                guard starts[k] == 0, ends[k] >= Int64(Int32.max), steps[k] == 1 else { throw ModelError("\(node.label): slicing the batch axis is not supported") }
                continue
            }
            guard a >= 1 && a < rank, steps[k] != 0 else { throw ModelError("\(node.label): axis \(axes[k]) cannot be sliced") }
            let dim = Int64(shape[a - 1]), step = steps[k]
            func clampIndex(_ v: Int64, low: Int64, high: Int64) -> Int64 { min(max(v < 0 ? v + dim : v, low), high) }
            var picked = [Int]()
            if step > 0 {
                var i = clampIndex(starts[k], low: 0, high: dim)
                let end = clampIndex(ends[k], low: 0, high: dim)
                while i < end { picked.append(Int(i)); i += step }
            } else {
                var i = clampIndex(starts[k], low: 0, high: dim - 1)
                let end = clampIndex(ends[k], low: -1, high: dim - 1)
                while i > end { picked.append(Int(i)); i += step }
            }
            ranges[a - 1] = picked
        }
        let outShape = ranges.map(\.count)
        let map = positions(outShape).map { index in offset(index.enumerated().map { ranges[$0.offset][$0.element] }, in: shape) }
        shape = outShape
        emitRearrange(node, x, map: map, outShape: outShape)
    }

    /// Squeeze and Unsqueeze of row axes: the values stay, the row shape changes.
    mutating func emitSqueeze(_ node: GraphNode, unsqueeze: Bool) throws {
        let x = try runtime(node.inputs[0], node)
        var shape = x.info.rowShape
        let outRank = unsqueeze ? x.info.rank + (try rowAxesCount(node)) : x.info.rank
        if unsqueeze {
            guard let axes = try rowAxes(node, rank: outRank) else { throw ModelError("\(node.label): axes are missing") }
            for axis in axes.sorted() { shape.insert(1, at: axis - 1) }
        } else if let axes = try rowAxes(node, rank: x.info.rank) {
            for axis in axes.sorted(by: >) {
                guard shape[axis - 1] == 1 else { throw ModelError("\(node.label): axis \(axis) has size \(shape[axis - 1]), not 1") }
                shape.remove(at: axis - 1)
            }
        } else {
            shape.removeAll { $0 == 1 }
        }
        if !isGraphOutput(node.outputs[0]) {
            view(node.outputs[0], of: x.slot, rowShape: shape)
            return
        }
        let out = newSlot(node.outputs[0], SlotInfo(kind: x.info.kind, rowShape: shape))
        record(ReshapeStep(input: x.slot, output: out, rank: shape.count + 1, width: shape.reduce(1, *)), output: node.outputs[0],
               nodes: [node.name], precision: "-", bytes: 0)
    }

    private func rowAxesCount(_ node: GraphNode) throws -> Int {
        if let axes = node.ints("axes") { return axes.count }
        if node.inputs.count > 1, let c = constants[node.inputs[1]] { return c.count }
        throw ModelError("\(node.label): axes must be constant")
    }

    /// Transpose that keeps the batch first (or turns a distance Scan's `[points, rows]` into rows).
    mutating func emitTranspose(_ node: GraphNode) throws {
        if let slot = scanDistances[node.inputs[0]] {
            guard (node.ints("perm") ?? [1, 0]) == [1, 0] else { throw ModelError("\(node.label): only [1, 0] of a Scan's distances is supported") }
            view(node.outputs[0], of: slot, rowShape: info[slot].rowShape)
            return
        }
        let x = try runtime(node.inputs[0], node)
        let rank = x.info.rank
        let perm = node.ints("perm")?.map(Int.init) ?? Array((0..<rank).reversed())
        guard perm.count == rank, perm.first == 0 else { throw ModelError("\(node.label): a transpose that moves the batch axis is not supported") }
        let shape = x.info.rowShape
        let outShape = perm.dropFirst().map { shape[$0 - 1] }
        let map = positions(outShape).map { index -> Int32 in
            var source = [Int](repeating: 0, count: shape.count)
            for (d, p) in perm.dropFirst().enumerated() { source[p - 1] = index[d] }
            return offset(source, in: shape)
        }
        emitRearrange(node, x, map: map, outShape: outShape)
    }

    /// Shape of a batch value: remembered, for ConstantOfShape (the batch size is only known at run time).
    mutating func emitShape(_ node: GraphNode) throws {
        let x = try runtime(node.inputs[0], node)
        guard node.int("start", default: 0) == 0, node.ints("end") == nil else { throw ModelError("\(node.label): a partial shape is not supported") }
        shapeSources[node.outputs[0]] = x.slot
        for consumer in consumers(of: node.outputs[0]) where nodes[consumer].opType != "ConstantOfShape" {
            throw ModelError("\(nodes[consumer].label) reads the batch's shape; Weir supports shapes only through ConstantOfShape")
        }
    }

    mutating func emitConstantOfShape(_ node: GraphNode) throws {
        guard let source = shapeSources[node.inputs[0]] else {
            throw ModelError("\(node.label): the shape must come from Shape of a batch value")
        }
        var value: Float = 0, kind = ValueKind.float
        if case .tensor(let t)? = node.attributes["value"] {
            value = t.asFloats.first ?? 0
            if t.floats == nil { kind = t.sourceElementType == "bool" ? .bool : .int64 }
        }
        let shape = info[source].rowShape
        let out = newSlot(node.outputs[0], SlotInfo(kind: kind, rowShape: shape))
        record(FillStep(like: source, output: out, value: value, kind: kind, width: shape.reduce(1, *), rank: shape.count + 1),
               output: node.outputs[0], nodes: [node.name], precision: "-", bytes: 0)
    }

    // MARK: nearest neighbours

    /// skl2onnx's k-nearest-neighbours Scan: the batch as the state, a constant set of points
    /// scanned, and a body giving each row's distance to the point (Σ (x − p)², or Σ |x − p|).
    /// Its stacked output `[points, rows]` is only read through Transpose(perm [1, 0]).
    mutating func emitScan(_ node: GraphNode) throws {
        guard node.int("num_scan_inputs", default: 0) == 1, node.inputs.count == 2, node.outputs.count == 2,
              case .graph(let body)? = node.attributes["body"], body.inputs.count == 2, body.outputs.count == 2 else {
            throw ModelError("\(node.label): only the pairwise-distance Scan of k-nearest-neighbour exports is supported")
        }
        let x = try runtime(node.inputs[0], node)
        guard let points = constants[node.inputs[1]], points.shape.count == 2, points.shape[1] == x.info.width, let values = points.floats else {
            throw ModelError("\(node.label): the scanned points must be a constant [points, \(x.info.width)] float table")
        }
        let (state, point) = (body.inputs[0], body.inputs[1])
        func producer(_ name: String) -> GraphNode? { body.nodes.first { $0.outputs.contains(name) } }
        func through(_ name: String) -> String { if let n = producer(name), n.opType == "Identity" { return through(n.inputs[0]) }; return name }
        guard through(body.outputs[0]) == state else { throw ModelError("\(node.label): the Scan's state must pass through unchanged") }
        var metric: PairwiseDistanceStep.Metric?
        if let reduce = producer(through(body.outputs[1])) {
            let difference = reduce.opType == "ReduceSum" ? producer(reduce.inputs[0]).flatMap { $0.opType == "Abs" ? producer($0.inputs[0]) : nil } : producer(reduce.inputs[0])
            let axes = reduce.ints("axes") ?? (reduce.inputs.count > 1 ? body.initializers[reduce.inputs[1]]?.asInt64s : nil)
            if let difference, difference.opType == "Sub", Set(difference.inputs) == Set([state, point]), axes == [1] || axes == [-1],
               reduce.int("keepdims", default: 1) == 0 {
                metric = reduce.opType == "ReduceSumSquare" ? .squaredEuclidean : (reduce.opType == "ReduceSum" ? .manhattan : nil)
            }
        }
        guard let metric else { throw ModelError("\(node.label): the Scan's body is not a squared-Euclidean or Manhattan distance") }
        view(node.outputs[0], of: x.slot, rowShape: x.info.rowShape)
        let name = "\(node.outputs[1])__weir_rows"
        let out = newSlot(name, SlotInfo(kind: .float, rank: 2, width: points.shape[0]))
        scanDistances[node.outputs[1]] = out
        record(PairwiseDistanceStep(input: x.slot, output: out, points: values, pointCount: points.shape[0], features: x.info.width, metric: metric),
               output: name, nodes: [node.name], precision: "fp32", bytes: values.count * 4)
    }

    /// TopK along the last axis with a constant k.
    mutating func emitTopK(_ node: GraphNode) throws {
        let x = try floatInput(node.inputs[0], node)
        guard let k = node.inputs.count > 1 ? constants[node.inputs[1]]?.asInt64s.first.map(Int.init) : Int(node.int("k", default: 0)), k >= 1 else {
            throw ModelError("\(node.label): k must be a positive constant")
        }
        let axis = Int(node.int("axis", default: -1))
        guard axis == -1 || axis == x.info.rank - 1, x.info.rank == 2 else { throw ModelError("\(node.label): TopK runs along the last axis of [rows, values]") }
        let values = newSlot(node.outputs[0], SlotInfo(kind: .float, rank: 2, width: k))
        let indices = newSlot(node.outputs.count > 1 ? node.outputs[1] : "\(node.outputs[0])__weir_indices", SlotInfo(kind: .int64, rank: 2, width: k))
        record(TopKStep(input: x.slot, values: values, indices: indices, k: k, largest: node.int("largest", default: 1) == 1),
               output: node.outputs[0], nodes: [node.name], precision: "-", bytes: 0)
    }
}
