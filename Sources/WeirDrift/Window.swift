import Foundation

/// The accumulators of a window's columns in flat raw storage (one thread, no per-value reference
/// counting or exclusivity checks): counts, Welford moments, reference-bin counts and a bounded
/// reservoir of values for the exact tests.
final class ColumnStore {
    let columns: Int
    let valueLimit: Int
    let n: UnsafeMutablePointer<Int>
    let missing: UnsafeMutablePointer<Int>
    let outOfRange: UnsafeMutablePointer<Int>
    let mean: UnsafeMutablePointer<Double>
    let m2: UnsafeMutablePointer<Double>
    let low: UnsafeMutablePointer<Double>
    let high: UnsafeMutablePointer<Double>
    /// Edges of column c: edges[edgeStart[c] ..< edgeStart[c] + edgeCount[c]]; bins likewise with
    /// edgeCount[c] + 1 entries starting at binStart[c].
    let edges: UnsafeMutablePointer<Double>
    let edgeStart: UnsafeMutablePointer<Int>
    let edgeCount: UnsafeMutablePointer<Int>
    let bins: UnsafeMutablePointer<Double>
    let binStart: UnsafeMutablePointer<Int>
    let binTotal: Int
    /// Reservoir of column c: values[c * valueLimit ..< c * valueLimit + kept[c]].
    let values: UnsafeMutablePointer<Double>
    let kept: UnsafeMutablePointer<Int>

    init(_ profiles: [ReferenceProfile], valueLimit: Int) {
        columns = profiles.count
        self.valueLimit = valueLimit
        let count = max(profiles.count, 1)
        func make<T>(_ value: T) -> UnsafeMutablePointer<T> {
            let pointer = UnsafeMutablePointer<T>.allocate(capacity: count)
            pointer.initialize(repeating: value, count: count)
            return pointer
        }
        n = make(0); missing = make(0); outOfRange = make(0); mean = make(0.0); m2 = make(0.0)
        low = make(0.0); high = make(0.0); edgeStart = make(0); edgeCount = make(0); binStart = make(0); kept = make(0)
        let totalEdges = max(profiles.reduce(0) { $0 + $1.edges.count }, 1)
        binTotal = max(profiles.reduce(0) { $0 + $1.edges.count + 1 }, 1)
        edges = .allocate(capacity: totalEdges)
        edges.initialize(repeating: 0, count: totalEdges)
        bins = .allocate(capacity: binTotal)
        bins.initialize(repeating: 0, count: binTotal)
        values = .allocate(capacity: count * valueLimit)
        values.initialize(repeating: 0, count: count * valueLimit)
        var edgeOffset = 0, binOffset = 0
        for (column, profile) in profiles.enumerated() {
            low[column] = profile.min
            high[column] = profile.max
            edgeStart[column] = edgeOffset
            edgeCount[column] = profile.edges.count
            for (index, edge) in profile.edges.enumerated() { edges[edgeOffset + index] = edge }
            edgeOffset += profile.edges.count
            binStart[column] = binOffset
            binOffset += profile.edges.count + 1
        }
    }

    deinit {
        for pointer in [n, missing, outOfRange, edgeStart, edgeCount, binStart, kept] { pointer.deallocate() }
        for pointer in [mean, m2, low, high, edges, bins, values] { pointer.deallocate() }
    }

    func reset() {
        n.update(repeating: 0, count: columns)
        missing.update(repeating: 0, count: columns)
        outOfRange.update(repeating: 0, count: columns)
        mean.update(repeating: 0, count: columns)
        m2.update(repeating: 0, count: columns)
        kept.update(repeating: 0, count: columns)
        bins.update(repeating: 0, count: binTotal)
    }

    /// Adds to column `column` the values of the given rows, row r's value at `values[r * stride]`
    /// (a column of a row-major matrix), skipping rows whose `missingFlags` entry (same layout) is
    /// set: those count as missing. The batch's moments are
    /// computed in two passes and merged into the running Welford state (Chan et al.), so the
    /// per-value work has no division and the column's state stays in registers.
    func addColumn(_ column: Int, values matrix: UnsafePointer<Float>, stride: Int, rows: UnsafeBufferPointer<Int32>,
                   missingFlags: UnsafePointer<Bool>?, random: inout UInt64) {
        let edgeBuffer = UnsafeBufferPointer(start: edges + edgeStart[column], count: edgeCount[column])
        let binBase = bins + binStart[column]
        let lowBound = low[column], highBound = high[column]
        let reservoir = values + column * valueLimit
        var count = n[column]
        var keptCount = kept[column]
        var batchCount = 0
        var batchSum = 0.0
        var outside = 0
        var missed = 0
        for row in rows {
            let offset = Int(row) * stride
            if let missingFlags, missingFlags[offset] {
                missed += 1
                continue
            }
            let value = Double(matrix[offset])
            batchCount += 1
            batchSum += value
            if value < lowBound || value > highBound { outside += 1 }
            binBase[ReferenceProfile.bin(of: value, edges: edgeBuffer)] += 1
            count += 1
            if keptCount < valueLimit {
                reservoir[keptCount] = value
                keptCount += 1
            } else {
                random = random &* 6364136223846793005 &+ 1442695040888963407
                // A uniform slot in 0..<count by multiply-shift (no division per value).
                let slot = Int(((random >> 32) &* UInt64(count)) >> 32)
                if slot < valueLimit { reservoir[slot] = value }
            }
        }
        missing[column] += missed
        guard batchCount > 0 else { return }
        let batchMean = batchSum / Double(batchCount)
        var batchM2 = 0.0
        for row in rows {
            let offset = Int(row) * stride
            if let missingFlags, missingFlags[offset] { continue }
            let delta = Double(matrix[offset]) - batchMean
            batchM2 += delta * delta
        }
        let before = Double(n[column]), added = Double(batchCount), total = before + added
        let delta = batchMean - mean[column]
        mean[column] += delta * added / total
        m2[column] += batchM2 + delta * delta * before * added / total
        n[column] = count
        kept[column] = keptCount
        outOfRange[column] += outside
    }

    func binProbabilities(_ column: Int) -> [Double] {
        let total = Double(max(n[column], 1))
        return (0...edgeCount[column]).map { bins[binStart[column] + $0] / total }
    }

    /// The column's kept values, sorted in place (they are not needed unsorted again this window).
    func sortedValues(_ column: Int) -> UnsafeBufferPointer<Double> {
        let buffer = UnsafeMutableBufferPointer(start: values + column * valueLimit, count: kept[column])
        DriftStatistics.sortInPlace(buffer)
        return UnsafeBufferPointer(buffer)
    }
}

/// Statistics of one column in a closed window.
public struct ColumnDrift: Sendable {
    public let name: String
    public let n: Int
    public let missing: Int
    public let nan: Int
    public let outOfRange: Int
    public let mean: Double
    public let std: Double
    public let psi: Double
    public let js: Double
    /// Wasserstein-1 divided by the reference std (raw when the reference is constant).
    public let wasserstein: Double
    public let ks: Double
    public let ksP: Double
    public let drift: Bool
    /// The PSI threshold the flag used.
    public let threshold: Double
}

/// A closed window: what a drift record reports.
public struct WindowDrift: Sendable {
    public let events: Int
    public let startMs: Int64
    public let endMs: Int64
    /// Per input topic and partition: first and last offset the window covers.
    public let offsets: [String: [Int32: (first: Int64, last: Int64)]]
    public let features: [ColumnDrift]
    public let predictions: [ColumnDrift]
    public let driftedShare: Double
    public let drift: Bool
}

/// A tumbling drift window for one model version. It closes after `maxEvents` events, or when an
/// event's timestamp reaches the end of the `maxMs` event-time span that began with the window's
/// first event, whichever comes first. Events with earlier timestamps (out of order within or
/// across partitions) belong to the open window: event time only ever closes a window, never
/// reopens an older one. Used from one thread.
public final class DriftWindow {
    public let reference: DriftReference
    public let maxEvents: Int
    public let maxMs: Int64?
    /// Values kept per column for KS and Wasserstein (a uniform reservoir beyond that). 256 keeps a
    /// window close cheap (sorting is most of its cost) while a one-std shift still gives KS
    /// p-values below 1e-20 against a 1,500-value reference sample.
    public let valueLimit: Int
    /// A feature drifts when its PSI passes its calibrated threshold *and* its KS p-value is below
    /// this. Either alone fires too often across 32 stationary features over many windows (a p99
    /// threshold flags ~6 of 640 feature-windows); the p-value bound is Bonferroni-like for
    /// thousands of feature-windows, while a one-std shift over 500 events gives p far below it.
    public static let ksAlpha = 1e-5
    /// The dataset drifts when at least this share of features drift.
    public static let datasetShare = 0.5

    private let features: ColumnStore
    private let predictions: ColumnStore
    private var events = 0
    private var startMs: Int64 = 0
    private var endMs: Int64 = 0
    private var windowEndMs: Int64 = .max
    /// Offset ranges per source partition, looked up from the last one used (events come in runs).
    @exclusivity(unchecked) private var sources: [(topic: String, partition: Int32, first: Int64, last: Int64)] = []
    @exclusivity(unchecked) private var lastSource = 0
    @exclusivity(unchecked) private var random: UInt64 = 0x0D81_F7

    public init(reference: DriftReference, maxEvents: Int, maxMs: Int?, valueLimit: Int = 256) {
        self.reference = reference
        self.maxEvents = maxEvents
        self.maxMs = maxMs.map(Int64.init)
        self.valueLimit = valueLimit
        features = ColumnStore(reference.features, valueLimit: valueLimit)
        predictions = ColumnStore(reference.predictions, valueLimit: valueLimit)
    }

    public var isEmpty: Bool { events == 0 }

    /// Whether an event with this timestamp belongs to a new window (the open one must close first).
    public func closesBefore(timestampMs: Int64) -> Bool {
        events > 0 && (events >= maxEvents || timestampMs >= windowEndMs)
    }

    /// Whether the window is full by count.
    public var isFull: Bool { events >= maxEvents }

    /// Counts an event: its time and source position.
    public func noteEvent(timestampMs: Int64, topic: String, partition: Int32, offset: Int64) {
        if events == 0 {
            startMs = timestampMs
            endMs = timestampMs
            windowEndMs = maxMs.map { timestampMs + $0 } ?? .max
        }
        startMs = min(startMs, timestampMs)
        endMs = max(endMs, timestampMs)
        events += 1
        if lastSource < sources.count, sources[lastSource].partition == partition, sources[lastSource].topic == topic {
            // the common case: same partition as the previous event
        } else if let found = sources.firstIndex(where: { $0.partition == partition && $0.topic == topic }) {
            lastSource = found
        } else {
            sources.append((topic, partition, offset, offset))
            lastSource = sources.count - 1
        }
        sources[lastSource].first = min(sources[lastSource].first, offset)
        sources[lastSource].last = max(sources[lastSource].last, offset)
    }

    /// Adds one feature value (`missing`: the event lacked it and the default was used): a run of one.
    public func addFeature(_ index: Int, _ value: Float, missing: Bool) {
        addOne(features, index, value, missing: missing)
    }

    /// Adds one prediction column value (scores in label order, or the regression value).
    public func addPrediction(_ index: Int, _ value: Float) {
        guard index < predictions.columns else { return }
        addOne(predictions, index, value, missing: false)
    }

    private func addOne(_ store: ColumnStore, _ column: Int, _ value: Float, missing: Bool) {
        var value = value, missing = missing, row: Int32 = 0
        withUnsafePointer(to: &row) { onlyRow in
            store.addColumn(column, values: &value, stride: 0, rows: UnsafeBufferPointer(start: onlyRow, count: 1),
                            missingFlags: &missing, random: &random)
        }
    }

    /// Adds the features of `rows` (indices into a row-major batch matrix of `reference.features.count`
    /// columns); `missing` marks defaulted values in the same layout. Column by column: much cheaper
    /// than value by value.
    public func addFeatureRows(_ matrix: UnsafePointer<Float>, rows: UnsafeBufferPointer<Int32>, missing: UnsafePointer<Bool>?) {
        let width = features.columns
        for column in 0..<width {
            features.addColumn(column, values: matrix + column, stride: width, rows: rows, missingFlags: missing.map { $0 + column },
                               random: &random)
        }
    }

    /// Adds the model outputs of `rows` (`stride` floats per row: scores in label order, or the value).
    public func addPredictionRows(_ matrix: UnsafePointer<Float>, stride: Int, rows: UnsafeBufferPointer<Int32>) {
        for column in 0..<min(stride, predictions.columns) {
            predictions.addColumn(column, values: matrix + column, stride: stride, rows: rows, missingFlags: nil, random: &random)
        }
    }

    /// Computes the window's statistics and starts a new, empty window.
    public func close() -> WindowDrift {
        let featureDrift = reference.features.indices.map { column(features, $0, profile: reference.features[$0]) }
        let predictionDrift = reference.predictions.indices.map { column(predictions, $0, profile: reference.predictions[$0]) }
        let flagged = featureDrift.filter(\.drift).count
        let share = featureDrift.isEmpty ? 0 : Double(flagged) / Double(featureDrift.count)
        var offsets = [String: [Int32: (first: Int64, last: Int64)]]()
        for source in sources { offsets[source.topic, default: [:]][source.partition] = (source.first, source.last) }
        let result = WindowDrift(events: events, startMs: startMs, endMs: endMs, offsets: offsets, features: featureDrift,
                                 predictions: predictionDrift, driftedShare: share, drift: share >= Self.datasetShare)
        features.reset()
        predictions.reset()
        events = 0
        sources.removeAll(keepingCapacity: true)
        lastSource = 0
        windowEndMs = .max
        return result
    }

    private func column(_ store: ColumnStore, _ index: Int, profile: ReferenceProfile) -> ColumnDrift {
        let threshold = reference.thresholds.psi[profile.name] ?? DriftReference.Thresholds.fallbackPSI
        let n = store.n[index]
        guard n > 0 else {
            return ColumnDrift(name: profile.name, n: 0, missing: store.missing[index], nan: 0, outOfRange: 0, mean: 0, std: 0,
                               psi: 0, js: 0, wasserstein: 0, ks: 0, ksP: 1, drift: false, threshold: threshold)
        }
        let window = store.binProbabilities(index)
        let psi = DriftStatistics.psi(window: window, reference: profile.probabilities)
        let js = DriftStatistics.jensenShannon(window, profile.probabilities)
        let sorted = store.sortedValues(index)
        let (ks, rawWasserstein) = profile.sample.withUnsafeBufferPointer { DriftStatistics.ksAndWasserstein(sorted: sorted, sorted: $0) }
        let ksP = DriftStatistics.kolmogorovSmirnovPValue(d: ks, n: sorted.count, m: profile.sample.count)
        let wasserstein = profile.std > 0 ? rawWasserstein / profile.std : rawWasserstein
        let std = n > 1 ? (store.m2[index] / Double(n - 1)).squareRoot() : 0
        return ColumnDrift(name: profile.name, n: n, missing: store.missing[index], nan: 0, outOfRange: store.outOfRange[index],
                           mean: store.mean[index], std: std, psi: psi, js: js, wasserstein: wasserstein, ks: ks, ksP: ksP,
                           drift: psi > threshold && ksP < Self.ksAlpha, threshold: threshold)
    }
}
