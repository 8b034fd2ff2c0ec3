import Foundation

/// One column's accumulator inside a window: counts, Welford moments, reference-bin counts and a
/// bounded reservoir of values for the exact tests.
struct ColumnAccumulator {
    var n = 0
    var missing = 0
    var outOfRange = 0
    var mean = 0.0
    var m2 = 0.0
    var bins: [Double]
    var values: [Double] = []

    init(binCount: Int) { bins = Array(repeating: 0, count: binCount) }

    mutating func reset() {
        n = 0; missing = 0; outOfRange = 0; mean = 0; m2 = 0
        for index in bins.indices { bins[index] = 0 }
        values.removeAll(keepingCapacity: true)
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
    /// Values kept per column for KS and Wasserstein (a uniform reservoir beyond that).
    public let valueLimit: Int
    /// A feature drifts when its PSI passes its calibrated threshold *and* its KS p-value is below
    /// this: either alone fires too often on 32 stationary features over many windows.
    public static let ksAlpha = 0.001
    /// The dataset drifts when at least this share of features drift.
    public static let datasetShare = 0.5

    private var features: [ColumnAccumulator]
    private var predictions: [ColumnAccumulator]
    private var events = 0
    private var startMs: Int64 = 0
    private var endMs: Int64 = 0
    private var windowEndMs: Int64 = .max
    private var offsets: [String: [Int32: (first: Int64, last: Int64)]] = [:]
    private var random: UInt64 = 0x0D81_F7

    public init(reference: DriftReference, maxEvents: Int, maxMs: Int?, valueLimit: Int = 5_000) {
        self.reference = reference
        self.maxEvents = maxEvents
        self.maxMs = maxMs.map(Int64.init)
        self.valueLimit = valueLimit
        features = reference.features.map { ColumnAccumulator(binCount: $0.probabilities.count) }
        predictions = reference.predictions.map { ColumnAccumulator(binCount: $0.probabilities.count) }
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
        if let range = offsets[topic]?[partition] {
            offsets[topic]![partition] = (min(range.first, offset), max(range.last, offset))
        } else {
            offsets[topic, default: [:]][partition] = (offset, offset)
        }
    }

    /// Adds one feature value (`missing`: the event lacked it and the default was used).
    @inline(__always)
    public func addFeature(_ index: Int, _ value: Float, missing: Bool) {
        if missing {
            features[index].missing += 1
            return
        }
        add(&features[index], Double(value), profile: reference.features[index])
    }

    /// Adds one prediction column value (scores in label order, or the regression value).
    public func addPrediction(_ index: Int, _ value: Float) {
        guard index < predictions.count else { return }
        add(&predictions[index], Double(value), profile: reference.predictions[index])
    }

    private func add(_ column: inout ColumnAccumulator, _ value: Double, profile: ReferenceProfile) {
        column.n += 1
        let delta = value - column.mean
        column.mean += delta / Double(column.n)
        column.m2 += delta * (value - column.mean)
        if value < profile.min || value > profile.max { column.outOfRange += 1 }
        column.bins[profile.bin(of: value)] += 1
        if column.values.count < valueLimit {
            column.values.append(value)
        } else {
            random = random &* 6364136223846793005 &+ 1442695040888963407
            let slot = Int((random >> 11) % UInt64(column.n))
            if slot < valueLimit { column.values[slot] = value }
        }
    }

    /// Computes the window's statistics and starts a new, empty window.
    public func close() -> WindowDrift {
        let featureDrift = zip(features, reference.features).map { column(from: $0, profile: $1) }
        let predictionDrift = zip(predictions, reference.predictions).map { column(from: $0, profile: $1) }
        let flagged = featureDrift.filter(\.drift).count
        let share = featureDrift.isEmpty ? 0 : Double(flagged) / Double(featureDrift.count)
        let result = WindowDrift(events: events, startMs: startMs, endMs: endMs, offsets: offsets, features: featureDrift,
                                 predictions: predictionDrift, driftedShare: share, drift: share >= Self.datasetShare)
        for index in features.indices { features[index].reset() }
        for index in predictions.indices { predictions[index].reset() }
        events = 0
        offsets.removeAll(keepingCapacity: true)
        windowEndMs = .max
        return result
    }

    private func column(from column: ColumnAccumulator, profile: ReferenceProfile) -> ColumnDrift {
        let threshold = reference.thresholds.psi[profile.name] ?? DriftReference.Thresholds.fallbackPSI
        guard column.n > 0 else {
            return ColumnDrift(name: profile.name, n: 0, missing: column.missing, nan: 0, outOfRange: 0, mean: 0, std: 0,
                               psi: 0, js: 0, wasserstein: 0, ks: 0, ksP: 1, drift: false, threshold: threshold)
        }
        let window = column.bins.map { $0 / Double(column.n) }
        let psi = DriftStatistics.psi(window: window, reference: profile.probabilities)
        let js = DriftStatistics.jensenShannon(window, profile.probabilities)
        let sorted = column.values.sorted()
        let ks = DriftStatistics.kolmogorovSmirnov(sorted: sorted, sorted: profile.sample)
        let ksP = DriftStatistics.kolmogorovSmirnovPValue(d: ks, n: sorted.count, m: profile.sample.count)
        let rawWasserstein = DriftStatistics.wasserstein(sorted: sorted, sorted: profile.sample)
        let wasserstein = profile.std > 0 ? rawWasserstein / profile.std : rawWasserstein
        let std = column.n > 1 ? (column.m2 / Double(column.n - 1)).squareRoot() : 0
        return ColumnDrift(name: profile.name, n: column.n, missing: column.missing, nan: 0, outOfRange: column.outOfRange,
                           mean: column.mean, std: std, psi: psi, js: js, wasserstein: wasserstein, ks: ks, ksP: ksP,
                           drift: psi > threshold && ksP < Self.ksAlpha, threshold: threshold)
    }
}
