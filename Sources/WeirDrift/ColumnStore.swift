import Foundation

/// The accumulators of a window's columns in flat raw storage (one thread, no per-value reference
/// counting or exclusivity checks): counts, Welford moments, reference-bin counts and a bounded
/// reservoir of values for the exact tests.
///
/// Rows are added eight columns at a time with SIMD: each column's bin comes from comparing the
/// value with every edge of its column at once (edges as floats rounded so that each comparison
/// gives the same answer as with the double edge), and the batch's moments are sums of deviations
/// from a shift (the running mean) merged into the Welford state once per batch (Chan et al.).
/// Rows with a missing value take a per-value path. One random draw per row picks the reservoir
/// slot for all its columns, so while no value is missing the reservoir keeps whole rows.
final class ColumnStore {
    let columns: Int
    /// Columns in groups of eight (the last one padded).
    let chunks: Int
    let valueLimit: Int
    /// Bins per column (underflow, inner bins, overflow), the stride of `binCounts`.
    let binStride: Int
    let edgeSlots: Int
    // Per column, padded to chunks * 8.
    let n: UnsafeMutablePointer<Int>
    let missing: UnsafeMutablePointer<Int>
    let outOfRange: UnsafeMutablePointer<Int>
    let mean: UnsafeMutablePointer<Double>
    let m2: UnsafeMutablePointer<Double>
    let kept: UnsafeMutablePointer<Int>
    let referenceMean: UnsafeMutablePointer<Double>
    /// Bin counts of column c: binCounts[c * binStride ..< c * binStride + edges + 1].
    let binCounts: UnsafeMutablePointer<Int32>
    /// Reservoir, row-major (a kept row is one contiguous write): column c's slot s is
    /// values[s * columns + c], for s in 0 ..< kept[c].
    let values: UnsafeMutablePointer<Float>
    let sortColumn: UnsafeMutablePointer<Float>
    let sortScratch: UnsafeMutablePointer<Float>
    /// Edge e of chunk ch at [e * chunks + ch], rounded up to a float (padding: +infinity).
    let edgeTable: UnsafeMutablePointer<SIMD8<Float>>
    /// Per chunk: the last edge when a float equals it (else NaN), and the range bounds as floats.
    let lastEdge: UnsafeMutablePointer<SIMD8<Float>>
    let lowBound: UnsafeMutablePointer<SIMD8<Float>>
    let highBound: UnsafeMutablePointer<SIMD8<Float>>
    /// The double edges, for the per-value path: edges[edgeStart[c] ..< edgeStart[c] + edgeCount[c]].
    let edges: [Double]
    let edgeStart: [Int]
    let edgeCount: [Int]
    let low: [Double]
    let high: [Double]
    // One batch's sums, per chunk (deviations from `shift`) and per column (values counted).
    let shift: UnsafeMutablePointer<SIMD8<Double>>
    let sum: UnsafeMutablePointer<SIMD8<Double>>
    let sumOfSquares: UnsafeMutablePointer<SIMD8<Double>>
    let outside: UnsafeMutablePointer<SIMD8<Int32>>
    let batchCount: UnsafeMutablePointer<Int>
    /// True while every column has the same count and kept values this window (no value missing):
    /// then `n[0]` and `kept[0]` speak for all columns.
    var uniform = true

    init(_ profiles: [ReferenceProfile], valueLimit: Int) {
        columns = profiles.count
        chunks = max((profiles.count + 7) / 8, 1)
        self.valueLimit = valueLimit
        edgeSlots = profiles.map(\.edges.count).max() ?? 0
        binStride = edgeSlots + 1
        let padded = chunks * 8
        func make<T>(_ count: Int, _ value: T) -> UnsafeMutablePointer<T> {
            let pointer = UnsafeMutablePointer<T>.allocate(capacity: max(count, 1))
            pointer.initialize(repeating: value, count: max(count, 1))
            return pointer
        }
        n = make(padded, 0); missing = make(padded, 0); outOfRange = make(padded, 0); kept = make(padded, 0)
        mean = make(padded, 0.0); m2 = make(padded, 0.0); referenceMean = make(padded, 0.0)
        batchCount = make(padded, 0)
        binCounts = make(padded * binStride, 0)
        values = make(padded * valueLimit, 0)
        sortColumn = make(valueLimit, 0)
        sortScratch = make(valueLimit, 0)
        edgeTable = make(edgeSlots * chunks, SIMD8<Float>(repeating: .infinity))
        lastEdge = make(chunks, SIMD8<Float>(repeating: .nan))
        lowBound = make(chunks, SIMD8<Float>(repeating: 0))
        highBound = make(chunks, SIMD8<Float>(repeating: 0))
        shift = make(chunks, SIMD8<Double>())
        sum = make(chunks, SIMD8<Double>())
        sumOfSquares = make(chunks, SIMD8<Double>())
        outside = make(chunks, SIMD8<Int32>())
        var edges = [Double](), edgeStart = [Int](), edgeCount = [Int]()
        for (column, profile) in profiles.enumerated() {
            let chunk = column / 8, lane = column % 8
            edgeStart.append(edges.count)
            edgeCount.append(profile.edges.count)
            edges += profile.edges
            for (index, edge) in profile.edges.enumerated() { edgeTable[index * chunks + chunk][lane] = Self.floatAtOrAbove(edge) }
            if let last = profile.edges.last, Double(Float(last)) == last { lastEdge[chunk][lane] = Float(last) }
            lowBound[chunk][lane] = Self.floatAtOrAbove(profile.min)
            highBound[chunk][lane] = Self.floatAtOrBelow(profile.max)
            referenceMean[column] = profile.mean
        }
        self.edges = edges
        self.edgeStart = edgeStart
        self.edgeCount = edgeCount
        low = profiles.map(\.min)
        high = profiles.map(\.max)
    }

    deinit {
        for pointer in [n, missing, outOfRange, kept, batchCount] { pointer.deallocate() }
        for pointer in [mean, m2, referenceMean] { pointer.deallocate() }
        binCounts.deallocate(); values.deallocate(); sortColumn.deallocate(); sortScratch.deallocate()
        for pointer in [edgeTable, lastEdge, lowBound, highBound] { pointer.deallocate() }
        for pointer in [shift, sum, sumOfSquares] { pointer.deallocate() }
        outside.deallocate()
    }

    /// The smallest float at or above `value`: for a float v, `edge <= v` exactly when this `<= v`.
    static func floatAtOrAbove(_ value: Double) -> Float {
        var rounded = Float(value)
        if Double(rounded) < value { rounded = rounded.nextUp }
        return rounded
    }

    /// The largest float at or below `value`: for a float v, `v > value` exactly when `v >` this.
    static func floatAtOrBelow(_ value: Double) -> Float {
        var rounded = Float(value)
        if Double(rounded) > value { rounded = rounded.nextDown }
        return rounded
    }

    func reset() {
        let padded = chunks * 8
        n.update(repeating: 0, count: padded)
        missing.update(repeating: 0, count: padded)
        outOfRange.update(repeating: 0, count: padded)
        mean.update(repeating: 0, count: padded)
        m2.update(repeating: 0, count: padded)
        kept.update(repeating: 0, count: padded)
        binCounts.update(repeating: 0, count: padded * binStride)
        uniform = true
    }

    /// Adds the given rows of a row-major matrix (`stride` floats per row, the first `columns` of
    /// them used), skipping values whose `missingFlags` entry (same layout) is set: those count as
    /// missing. `random` is the window's generator state.
    func addRows(_ matrix: UnsafePointer<Float>, stride: Int, rows: UnsafeBufferPointer<Int32>, missingFlags: UnsafePointer<Bool>?,
                 random: inout UInt64) {
        guard columns > 0, !rows.isEmpty else { return }
        beginBatch()
        var fastRows = 0
        let fullChunks = columns / 8
        for row in rows {
            let base = matrix + Int(row) * stride
            random = random &* 6364136223846793005 &+ 1442695040888963407
            let draw = random >> 32
            if let missingFlags, Self.anySet(missingFlags + Int(row) * stride, count: columns) {
                addRowValueByValue(base, missingFlags + Int(row) * stride, fastRows: fastRows, draw: draw)
                continue
            }
            fastRows += 1
            for chunk in 0..<chunks {
                let vector: SIMD8<Float>
                if chunk < fullChunks {
                    vector = UnsafeRawPointer(base + chunk * 8).loadUnaligned(as: SIMD8<Float>.self)
                } else {
                    var partial = SIMD8<Float>()
                    for lane in 0..<(columns - chunk * 8) { partial[lane] = base[chunk * 8 + lane] }
                    vector = partial
                }
                let deviation = SIMD8<Double>(vector) - shift[chunk]
                sum[chunk] += deviation
                sumOfSquares[chunk] += deviation * deviation
                outside[chunk] &-= unsafeBitCast((vector .< lowBound[chunk]) .| (vector .> highBound[chunk]), to: SIMD8<Int32>.self)
                var bin = SIMD8<Int32>()
                var edge = edgeTable + chunk
                for _ in 0..<edgeSlots {
                    bin &-= unsafeBitCast(edge.pointee .<= vector, to: SIMD8<Int32>.self)
                    edge += chunks
                }
                // A value equal to the last edge belongs to the last inner bin (it is closed), not overflow.
                bin &+= unsafeBitCast(vector .== lastEdge[chunk], to: SIMD8<Int32>.self)
                let first = chunk * 8
                let counts = binCounts + first * binStride
                for lane in 0..<Swift.min(8, columns - first) { counts[lane * binStride + Int(bin[lane])] &+= 1 }
            }
            if uniform {
                let seen = n[0] + fastRows
                if kept[0] < valueLimit {
                    store(row: base, at: kept[0])
                    kept[0] += 1
                } else {
                    let slot = Int((draw &* UInt64(seen)) >> 32)
                    if slot < valueLimit { store(row: base, at: slot) }
                }
            } else {
                for column in 0..<columns {
                    keep(base[column], column: column, seen: n[column] + batchCount[column] + fastRows, draw: draw)
                }
            }
        }
        endBatch(fastRows: fastRows)
    }

    /// Adds one value to one column (a run of one row).
    func addValue(_ column: Int, _ value: Float, missing isMissing: Bool, random: inout UInt64) {
        beginBatch()
        random = random &* 6364136223846793005 &+ 1442695040888963407
        if columns > 1 { spreadUniformState() }
        if isMissing {
            missing[column] += 1
            spreadUniformState()
        } else {
            addOne(column, value, fastRows: 0, draw: random >> 32)
        }
        endBatch(fastRows: 0)
    }

    @inline(__always)
    private static func anySet(_ flags: UnsafePointer<Bool>, count: Int) -> Bool {
        let raw = UnsafeRawPointer(flags)
        var index = 0, any: UInt64 = 0
        while index + 8 <= count {
            any |= raw.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            index += 8
        }
        while index < count {
            any |= UInt64(raw.load(fromByteOffset: index, as: UInt8.self))
            index += 1
        }
        return any != 0
    }

    @inline(__always)
    private func store(row: UnsafePointer<Float>, at slot: Int) {
        (values + slot * columns).update(from: row, count: columns)
    }

    /// Reservoir step for one value: the `seen`-th of its column.
    @inline(__always)
    private func keep(_ value: Float, column: Int, seen: Int, draw: UInt64) {
        if kept[column] < valueLimit {
            values[kept[column] * columns + column] = value
            kept[column] += 1
        } else {
            // A uniform slot in 0..<seen by multiply-shift (no division per value).
            let slot = Int((draw &* UInt64(seen)) >> 32)
            if slot < valueLimit { values[slot * columns + column] = value }
        }
    }

    /// From here on columns may differ: give each its own count and kept values.
    private func spreadUniformState() {
        guard uniform else { return }
        uniform = false
        for column in 1..<max(columns, 1) {
            kept[column] = kept[0]
            n[column] = n[0]
        }
    }

    private func beginBatch() {
        for chunk in 0..<chunks {
            var centre = SIMD8<Double>()
            for lane in 0..<8 {
                let column = chunk * 8 + lane
                if column < columns { centre[lane] = (uniform ? n[0] : n[column]) > 0 ? mean[column] : referenceMean[column] }
            }
            shift[chunk] = centre
            sum[chunk] = SIMD8<Double>()
            sumOfSquares[chunk] = SIMD8<Double>()
            outside[chunk] = SIMD8<Int32>()
        }
        batchCount.update(repeating: 0, count: chunks * 8)
    }

    /// A row with a missing value: value by value.
    private func addRowValueByValue(_ row: UnsafePointer<Float>, _ flags: UnsafePointer<Bool>, fastRows: Int, draw: UInt64) {
        spreadUniformState()
        for column in 0..<columns {
            if flags[column] { missing[column] += 1 } else { addOne(column, row[column], fastRows: fastRows, draw: draw) }
        }
    }

    private func addOne(_ column: Int, _ value: Float, fastRows: Int, draw: UInt64) {
        let chunk = column / 8, lane = column % 8
        let deviation = Double(value) - shift[chunk][lane]
        sum[chunk][lane] += deviation
        sumOfSquares[chunk][lane] += deviation * deviation
        if Double(value) < low[column] || Double(value) > high[column] { outside[chunk][lane] &+= 1 }
        let bin = edges.withUnsafeBufferPointer {
            ReferenceProfile.bin(of: Double(value), edges: UnsafeBufferPointer(rebasing: $0[edgeStart[column] ..< edgeStart[column] + edgeCount[column]]))
        }
        binCounts[column * binStride + bin] &+= 1
        batchCount[column] += 1
        // Uniform here only with a single column (addValue spreads the state otherwise).
        keep(value, column: column, seen: (uniform ? n[0] : n[column]) + fastRows + batchCount[column], draw: draw)
    }

    /// Merges the batch's sums into each column's Welford state.
    private func endBatch(fastRows: Int) {
        for column in 0..<columns {
            let chunk = column / 8, lane = column % 8
            outOfRange[column] += Int(outside[chunk][lane])
            let added = batchCount[column] + fastRows
            guard added > 0 else { continue }
            let before = uniform ? n[0] : n[column]
            let count = Double(added)
            let deviationSum = sum[chunk][lane]
            let batchMean = shift[chunk][lane] + deviationSum / count
            let batchM2 = Swift.max(sumOfSquares[chunk][lane] - deviationSum * deviationSum / count, 0)
            let total = Double(before) + count
            let delta = batchMean - mean[column]
            mean[column] += delta * count / total
            m2[column] += batchM2 + delta * delta * Double(before) * count / total
            if !uniform { n[column] = before + added }
        }
        if uniform { n[0] += fastRows + batchCount[0] }
    }

    func count(_ column: Int) -> Int { uniform ? n[0] : n[column] }
    func keptCount(_ column: Int) -> Int { uniform ? kept[0] : kept[column] }

    func binProbabilities(_ column: Int) -> [Double] {
        let total = Double(max(count(column), 1))
        return (0...edgeCount[column]).map { Double(binCounts[column * binStride + $0]) / total }
    }

    /// The column's kept values, sorted (in a buffer reused by the next call).
    func sortedValues(_ column: Int) -> UnsafeBufferPointer<Float> {
        let kept = keptCount(column)
        for slot in 0..<kept { sortColumn[slot] = values[slot * columns + column] }
        let buffer = UnsafeMutableBufferPointer(start: sortColumn, count: kept)
        DriftStatistics.radixSort(buffer, scratch: sortScratch)
        return UnsafeBufferPointer(buffer)
    }
}
