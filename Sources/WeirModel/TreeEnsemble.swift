import CWeirKernels

/// ai.onnx.ml TreeEnsembleClassifier / TreeEnsembleRegressor, flattened into arrays for traversal.
struct TreeEnsemble: Sendable {
    enum Mode: UInt8, Sendable { case leq, lt, gte, gt, eq, neq, leaf }

    var feature: [Int32] = []
    var threshold: [Float] = []
    var mode: [Mode] = []
    var trueChild: [Int32] = []
    var falseChild: [Int32] = []
    var missingTracksTrue: [Bool] = []
    /// Per node: the range of (target, weight) pairs in `leafTargets`/`leafWeights`.
    var leafStart: [Int32] = []
    var leafCount: [Int32] = []
    var leafTargets: [Int32] = []
    var leafWeights: [Float] = []
    /// Index of each tree's root.
    var roots: [Int32] = []
    var targetCount = 0
    var maxFeature = 0
    /// The nodes packed for the C traversal (`weir_trees_accumulate`), with their branch tests.
    private(set) var packed: Constants<weir_tree_node>! = nil
    private(set) var packedModes: Constants<UInt8>! = nil
    private(set) var packedRoots: Constants<Int32>! = nil
    private(set) var packedLeafTargets: Constants<Int32>! = nil
    private(set) var packedLeafWeights: Constants<Float>! = nil
    private(set) var packedLeafStart: Constants<Int32>! = nil
    private(set) var packedLeafCount: Constants<Int32>! = nil
    private(set) var packedDepths: Constants<Int32>! = nil
    /// The branch test all nodes share, or WEIR_TREE_MIXED.
    private(set) var uniformMode: Int32 = 0

    /// Reads the node_* and (class|target)_* attributes of `node`.
    init(node: GraphNode, weightPrefix: String) throws {
        func need<T>(_ value: T?, _ name: String) throws -> T {
            guard let value else { throw ModelError("\(node.label): attribute '\(name)' is missing") }
            return value
        }
        let treeIDs = try need(node.ints("nodes_treeids"), "nodes_treeids")
        let nodeIDs = try need(node.ints("nodes_nodeids"), "nodes_nodeids")
        let features = try need(node.ints("nodes_featureids"), "nodes_featureids")
        let values = node.floats("nodes_values") ?? tensorFloats(node, "nodes_values_as_tensor") ?? []
        let modes = try need(node.strings("nodes_modes"), "nodes_modes")
        let trueIDs = try need(node.ints("nodes_truenodeids"), "nodes_truenodeids")
        let falseIDs = try need(node.ints("nodes_falsenodeids"), "nodes_falsenodeids")
        let missing = node.ints("nodes_missing_value_tracks_true") ?? []
        let count = treeIDs.count
        guard [nodeIDs.count, features.count, modes.count, trueIDs.count, falseIDs.count].allSatisfy({ $0 == count }),
              values.count == count else {
            throw ModelError("\(node.label): node attribute lists have different lengths")
        }
        var index = [Int64: [Int64: Int32]]()
        for i in 0..<count { index[treeIDs[i], default: [:]][nodeIDs[i]] = Int32(i) }
        feature = features.map { Int32($0) }
        maxFeature = Int(features.max() ?? 0)
        threshold = values
        mode = try modes.map { name -> Mode in
            switch name {
            case "BRANCH_LEQ": return .leq
            case "BRANCH_LT": return .lt
            case "BRANCH_GTE": return .gte
            case "BRANCH_GT": return .gt
            case "BRANCH_EQ": return .eq
            case "BRANCH_NEQ": return .neq
            case "LEAF": return .leaf
            default: throw ModelError("\(node.label): unknown node mode '\(name)'")
            }
        }
        trueChild = (0..<count).map { i in modes[i] == "LEAF" ? -1 : index[treeIDs[i]]?[trueIDs[i]] ?? -1 }
        falseChild = (0..<count).map { i in modes[i] == "LEAF" ? -1 : index[treeIDs[i]]?[falseIDs[i]] ?? -1 }
        if (0..<count).contains(where: { modes[$0] != "LEAF" && (trueChild[$0] < 0 || falseChild[$0] < 0) }) {
            throw ModelError("\(node.label): a branch points at a node id that does not exist")
        }
        missingTracksTrue = (0..<count).map { $0 < missing.count && missing[$0] != 0 }
        // Roots: node id 0 of each tree, else the first node listed for it.
        var seen = Set<Int64>()
        for i in 0..<count where !seen.contains(treeIDs[i]) {
            seen.insert(treeIDs[i])
            roots.append(index[treeIDs[i]]?[0] ?? Int32(i))
        }
        let weightTrees = try need(node.ints("\(weightPrefix)_treeids"), "\(weightPrefix)_treeids")
        let weightNodes = try need(node.ints("\(weightPrefix)_nodeids"), "\(weightPrefix)_nodeids")
        let weightIDs = try need(node.ints("\(weightPrefix)_ids"), "\(weightPrefix)_ids")
        let weights = node.floats("\(weightPrefix)_weights") ?? tensorFloats(node, "\(weightPrefix)_weights_as_tensor") ?? []
        var perNode = [[(Int32, Float)]](repeating: [], count: count)
        for w in 0..<weightTrees.count {
            guard let target = index[weightTrees[w]]?[weightNodes[w]] else {
                throw ModelError("\(node.label): a leaf weight points at a node that does not exist")
            }
            perNode[Int(target)].append((Int32(weightIDs[w]), weights[w]))
        }
        targetCount = Int((weightIDs.max() ?? 0) + 1)
        guard weightIDs.allSatisfy({ $0 >= 0 }), features.allSatisfy({ $0 >= 0 }) else {
            throw ModelError("\(node.label): a negative feature or target index")
        }
        for list in perNode {
            leafStart.append(Int32(leafTargets.count))
            leafCount.append(Int32(list.count))
            for (t, w) in list {
                leafTargets.append(t)
                leafWeights.append(w)
            }
        }
        guard maxFeature < Int(WEIR_TREE_FEATURE_MASK) else { throw ModelError("\(node.label): feature index \(maxFeature) is too large") }
        pack()
    }

    /// Reads ai.onnx.ml TreeEnsemble (opset 5): interior nodes and leaves in separate lists, each
    /// child naming a node or a leaf, one (target, weight) per leaf. A set-membership node
    /// (BRANCH_MEMBER) becomes a chain of equality tests, one per member.
    init(v5 node: GraphNode) throws {
        func need<T>(_ value: T?, _ name: String) throws -> T {
            guard let value else { throw ModelError("\(node.label): attribute '\(name)' is missing") }
            return value
        }
        func tensorValues(_ name: String) -> [Float]? {
            if case .tensor(let t)? = node.attributes[name] { return t.asFloats }
            return node.floats(name)
        }
        let features = try need(node.ints("nodes_featureids"), "nodes_featureids")
        let splits = try need(tensorValues("nodes_splits"), "nodes_splits")
        let modeCodes = tensorValues("nodes_modes").map { $0.map { Int($0) } } ?? node.ints("nodes_modes")?.map(Int.init) ?? []
        let trueIDs = try need(node.ints("nodes_truenodeids"), "nodes_truenodeids")
        let falseIDs = try need(node.ints("nodes_falsenodeids"), "nodes_falsenodeids")
        let trueLeafs = node.ints("nodes_trueleafs") ?? [], falseLeafs = node.ints("nodes_falseleafs") ?? []
        let missing = node.ints("nodes_missing_value_tracks_true") ?? []
        let treeRoots = try need(node.ints("tree_roots"), "tree_roots")
        let leafTargetIDs = try need(node.ints("leaf_targetids"), "leaf_targetids")
        let weights = try need(tensorValues("leaf_weights"), "leaf_weights")
        let members = tensorValues("membership_values") ?? []
        let count = features.count
        guard [splits.count, modeCodes.count, trueIDs.count, falseIDs.count, trueLeafs.count, falseLeafs.count].allSatisfy({ $0 == count }),
              leafTargetIDs.count == weights.count else {
            throw ModelError("\(node.label): node or leaf attribute lists have different lengths")
        }
        let leafBase = Int32(count)
        // Set-membership chains go after the nodes and leaves.
        var extraStart = Int32(count + weights.count)
        var memberSets = [[Float]](), current = [Float]()
        for value in members { if value.isNaN { memberSets.append(current); current = [] } else { current.append(value) } }
        if !current.isEmpty { memberSets.append(current) }
        var memberIndex = 0
        func child(_ id: Int64, _ isLeaf: Int64) throws -> Int32 {
            let limit = isLeaf != 0 ? weights.count : count
            guard id >= 0 && id < Int64(limit) else { throw ModelError("\(node.label): a child points at a node or leaf that does not exist") }
            return isLeaf != 0 ? leafBase + Int32(id) : Int32(id)
        }
        var chains = [(feature: Int32, value: Float, yes: Int32, no: Int32, missing: Bool)]()
        for i in 0..<count {
            let yes = try child(trueIDs[i], trueLeafs[i]), no = try child(falseIDs[i], falseLeafs[i])
            let tracks = i < missing.count && missing[i] != 0
            feature.append(Int32(clamping: features[i]))
            missingTracksTrue.append(tracks)
            switch modeCodes[i] {
            case 0...5:
                mode.append([Mode.leq, .lt, .gte, .gt, .eq, .neq][modeCodes[i]])
                threshold.append(splits[i])
                trueChild.append(yes)
                falseChild.append(no)
            case 6:
                guard memberIndex < memberSets.count, !memberSets[memberIndex].isEmpty else {
                    throw ModelError("\(node.label): a BRANCH_MEMBER node has no set in membership_values")
                }
                let set = memberSets[memberIndex]
                memberIndex += 1
                // This node tests the first member; the others follow as a chain ending at `no`.
                mode.append(.eq)
                threshold.append(set[0])
                trueChild.append(yes)
                falseChild.append(set.count == 1 ? no : extraStart)
                for (k, value) in set.dropFirst().enumerated() {
                    let isLast = k == set.count - 2
                    chains.append((Int32(clamping: features[i]), value, yes, isLast ? no : extraStart + 1, tracks))
                    extraStart += 1
                }
            default:
                throw ModelError("\(node.label): node mode \(modeCodes[i]) is not one of the 7 TreeEnsemble defines")
            }
            leafStart.append(0)
            leafCount.append(0)
        }
        for l in 0..<weights.count {
            feature.append(0); threshold.append(0); mode.append(.leaf); trueChild.append(-1); falseChild.append(-1)
            missingTracksTrue.append(false)
            leafStart.append(Int32(leafTargets.count))
            leafCount.append(1)
            leafTargets.append(Int32(clamping: leafTargetIDs[l]))
            leafWeights.append(weights[l])
        }
        for link in chains {
            feature.append(link.feature); threshold.append(link.value); mode.append(.eq)
            trueChild.append(link.yes); falseChild.append(link.no); missingTracksTrue.append(link.missing)
            leafStart.append(0); leafCount.append(0)
        }
        roots = try treeRoots.map { root in
            guard root >= 0 && root < Int64(count) else { throw ModelError("\(node.label): a tree root points at a node that does not exist") }
            return Int32(root)
        }
        maxFeature = Int(features.max() ?? 0)
        guard (features.min() ?? 0) >= 0 else { throw ModelError("\(node.label): a negative feature index") }
        targetCount = Int(node.int("n_targets", default: (leafTargetIDs.max() ?? 0) + 1))
        guard leafTargetIDs.allSatisfy({ $0 >= 0 && $0 < Int64(targetCount) }) else {
            throw ModelError("\(node.label): a leaf's target is outside n_targets")
        }
        guard maxFeature < Int(WEIR_TREE_FEATURE_MASK) else { throw ModelError("\(node.label): feature index \(maxFeature) is too large") }
        pack()
    }

    /// Lays the nodes out for `weir_trees_accumulate`.
    private mutating func pack() {
        let codes: [Mode: UInt8] = [.leq: UInt8(WEIR_TREE_LEQ), .lt: UInt8(WEIR_TREE_LT), .gte: UInt8(WEIR_TREE_GTE),
                                    .gt: UInt8(WEIR_TREE_GT), .eq: UInt8(WEIR_TREE_EQ), .neq: UInt8(WEIR_TREE_NEQ), .leaf: 0]
        var nodes = [weir_tree_node]()
        nodes.reserveCapacity(mode.count)
        for n in mode.indices {
            if mode[n] == .leaf {
                nodes.append(weir_tree_node(threshold: 0, feature: 0, children: (Int32(n), Int32(n))))
            } else {
                let missing: UInt32 = missingTracksTrue[n] ? 0x8000_0000 : 0
                nodes.append(weir_tree_node(threshold: threshold[n], feature: UInt32(feature[n]) | missing,
                                            children: (trueChild[n], falseChild[n])))
            }
        }
        let branchModes = Set(mode.filter { $0 != .leaf })
        uniformMode = branchModes.count == 1 && (branchModes.first == .leq || branchModes.first == .lt)
            ? Int32(codes[branchModes.first!]!) : Int32(WEIR_TREE_MIXED)
        packed = Constants(nodes)
        packedModes = Constants(mode.map { codes[$0]! })
        packedRoots = Constants(roots)
        packedLeafTargets = Constants(leafTargets)
        packedLeafWeights = Constants(leafWeights)
        packedLeafStart = Constants(leafStart)
        packedLeafCount = Constants(mode.indices.map { mode[$0] == .leaf ? leafCount[$0] : -1 })
        packedDepths = Constants(roots.map { depth(from: Int($0)) })
    }

    /// Steps from `root` to its deepest leaf (0 for a leaf). A file whose branches loop or share
    /// nodes (no exporter writes one) gets the node count: the descent stays bounded.
    private func depth(from root: Int) -> Int32 {
        var deepest: Int32 = 0, visits = 0
        var stack = [(root, Int32(0))]
        while let (n, d) = stack.popLast() {
            visits += 1
            if visits > 2 * mode.count + 2 { return Int32(mode.count) }
            if mode[n] == .leaf { deepest = max(deepest, d); continue }
            stack.append((Int(trueChild[n]), d + 1))
            stack.append((Int(falseChild[n]), d + 1))
        }
        return deepest
    }

    /// Adds every tree's leaf weights for `rows` rows into `scores` (rows × targets, zeroed by the caller).
    func accumulate(rows: UnsafePointer<Float>, count: Int, stride: Int, into scores: UnsafeMutablePointer<Float>, targets: Int) {
        weir_trees_accumulate(packed.base, packedModes.base, uniformMode, packedRoots.base, packedDepths.base, roots.count, rows,
                              count, stride, packedLeafStart.base, packedLeafCount.base, packedLeafTargets.base, packedLeafWeights.base,
                              scores, targets)
    }

    /// Adds every tree's leaf weights for one row into `scores` (per target).
    @inline(__always)
    func accumulate(row: UnsafePointer<Float>, into scores: inout [Float], aggregate: TreeAggregate, treeCount: inout [Int]) {
        for root in roots {
            var n = Int(root)
            while mode[n] != .leaf {
                let x = row[Int(feature[n])], t = threshold[n]
                let goesTrue: Bool
                if x.isNaN {
                    goesTrue = missingTracksTrue[n]
                } else {
                    switch mode[n] {
                    case .leq: goesTrue = x <= t
                    case .lt: goesTrue = x < t
                    case .gte: goesTrue = x >= t
                    case .gt: goesTrue = x > t
                    case .eq: goesTrue = x == t
                    case .neq: goesTrue = x != t
                    case .leaf: goesTrue = false
                    }
                }
                n = Int(goesTrue ? trueChild[n] : falseChild[n])
            }
            let start = Int(leafStart[n])
            for i in start..<(start + Int(leafCount[n])) {
                let target = Int(leafTargets[i]), weight = leafWeights[i]
                switch aggregate {
                case .min: scores[target] = treeCount[target] == 0 ? weight : min(scores[target], weight)
                case .max: scores[target] = treeCount[target] == 0 ? weight : max(scores[target], weight)
                case .sum, .average: scores[target] += weight
                }
                treeCount[target] += 1
            }
        }
    }
}

private func tensorFloats(_ node: GraphNode, _ name: String) -> [Float]? {
    if case .tensor(let t)? = node.attributes[name] { return t.asFloats }
    return nil
}

struct TreeEnsembleStep: Step {
    let input: Int
    let labelOutput: Int?
    let scoreOutput: Int
    let ensemble: TreeEnsemble
    let baseValues: [Float]
    let postTransform: PostTransform
    let aggregate: TreeAggregate
    let labels: ClassLabels?
    let targets: Int
    var summary: String {
        "\(labels == nil ? "TreeEnsembleRegressor" : "TreeEnsembleClassifier") fp32 (\(ensemble.roots.count) trees)"
    }

    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input]
        guard ensemble.maxFeature < x.width else {
            throw ModelError("tree ensemble reads feature \(ensemble.maxFeature) but rows have \(x.width) columns")
        }
        let rows = x.rows
        let binary = labels != nil && labels!.count == 2 && ensemble.targetCount == 1
        let width = labels.map { binary ? 2 : $0.count } ?? targets
        let scoresBuffer = scratch.buffers[scoreOutput]
        scoresBuffer.prepare(.float, rows: rows, width: width)
        if let labelOutput, let labels { scratch.buffers[labelOutput].prepare(labels.kind, rows: rows, width: 1, rank: 1) }
        // Raw sums per row and target, in the step's memory (reused between runs).
        let sumWidth = max(ensemble.targetCount, targets, 1)
        scratch.stepMemory[index].reserve(rowBytes: rows * sumWidth * MemoryLayout<Float>.stride, rows: 1, sums: 1)
        let sums = scratch.stepMemory[index].rows.bindMemory(to: Float.self, capacity: rows * sumWidth)
        sums.update(repeating: 0, count: rows * sumWidth)
        if aggregate == .sum || aggregate == .average {
            ensemble.accumulate(rows: x.floats, count: rows, stride: x.width, into: sums, targets: sumWidth)
            if aggregate == .average {
                let trees = Float(ensemble.roots.count)
                for i in 0..<(rows * sumWidth) { sums[i] /= trees }
            }
        } else {
            var scores = [Float](repeating: 0, count: sumWidth), counts = [Int](repeating: 0, count: sumWidth)
            for r in 0..<rows {
                for t in 0..<sumWidth { scores[t] = 0; counts[t] = 0 }
                ensemble.accumulate(row: x.floats + r * x.width, into: &scores, aggregate: aggregate, treeCount: &counts)
                for t in 0..<sumWidth { sums[r * sumWidth + t] = scores[t] }
            }
        }
        let allPositive = ensemble.leafWeights.allSatisfy { $0 >= 0 }
        for r in 0..<rows {
            let row = sums + r * sumWidth
            for t in 0..<min(baseValues.count, sumWidth) { row[t] += baseValues[t] }
            let out = scoresBuffer.floats + r * width
            if binary {
                // One score for the positive class, as scikit-learn's binary boosting writes it.
                let s = transformedSingle(row[0])
                let positive: Bool
                if postTransform == .none {
                    positive = allPositive ? s > 0.5 : s > 0
                    out[0] = allPositive ? 1 - s : -s
                } else {
                    positive = s > 0.5
                    out[0] = 1 - s
                }
                out[1] = s
                if let labelOutput, let labels { labels.write(positive ? 1 : 0, to: scratch.buffers[labelOutput], at: r) }
                continue
            }
            var best = 0
            for t in 1..<max(width, 1) where row[t] > row[best] { best = t }
            for t in 0..<width { out[t] = row[t] }
            applyPostTransform(postTransform, to: out, count: width)
            if let labelOutput, let labels { labels.write(best, to: scratch.buffers[labelOutput], at: r) }
        }
    }

    /// The post-transform of a single score.
    @inline(__always)
    private func transformedSingle(_ value: Float) -> Float {
        switch postTransform {
        case .logistic: return sigmoid(value)
        case .probit: return Float(2).squareRoot() * erfInverse(2 * value - 1)
        case .softmax, .softmaxZero, .none: return postTransform == .none ? value : 1
        }
    }
}
