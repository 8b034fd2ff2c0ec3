import Foundation

/// A tumbling drift window for one model version. It closes after `maxEvents` events, or when an
/// event's timestamp reaches the end of the `maxMs` event-time span that began with the window's
/// first timed event, whichever comes first. Events with earlier timestamps (out of order within or
/// across partitions) belong to the open window: event time only ever closes a window, never
/// reopens an older one. An event without a plausible time (nil) counts toward the window but
/// neither moves its span nor closes it. Used from one thread.
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
    private let featureCDFs: [ReferenceCDF]
    private let predictionCDFs: [ReferenceCDF]
    private var events = 0
    /// Whether some event of the open window had a time (`startMs`/`endMs` are set).
    private var timed = false
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
        featureCDFs = reference.features.map { ReferenceCDF(sorted: $0.sample) }
        predictionCDFs = reference.predictions.map { ReferenceCDF(sorted: $0.sample) }
    }

    public var isEmpty: Bool { events == 0 }

    /// Whether an event with this timestamp (nil: none plausible) belongs to a new window (the open
    /// one must close first).
    public func closesBefore(timestampMs: Int64?) -> Bool {
        events > 0 && (events >= maxEvents || (timestampMs.map { $0 >= windowEndMs } ?? false))
    }

    /// Whether the window is full by count.
    public var isFull: Bool { events >= maxEvents }

    /// Counts an event: its time (nil: none plausible) and source position.
    public func noteEvent(timestampMs: Int64?, topic: String, partition: Int32, offset: Int64) {
        if let timestampMs {
            if !timed {
                timed = true
                startMs = timestampMs
                endMs = timestampMs
                // Saturating: a time near Int64.max ends the span at the end of time, not in a trap.
                windowEndMs = maxMs.map { timestampMs.addingReportingOverflow($0).overflow ? .max : timestampMs + $0 } ?? .max
            }
            startMs = min(startMs, timestampMs)
            endMs = max(endMs, timestampMs)
        }
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
        store.addValue(column, value, missing: missing, random: &random)
    }

    /// Adds the features of `rows` (indices into a row-major batch matrix of `reference.features.count`
    /// columns); `missing` marks defaulted values in the same layout. Row by row, eight columns at a
    /// time: much cheaper than value by value.
    public func addFeatureRows(_ matrix: UnsafePointer<Float>, rows: UnsafeBufferPointer<Int32>, missing: UnsafePointer<Bool>?) {
        features.addRows(matrix, stride: features.columns, rows: rows, missingFlags: missing, random: &random)
    }

    /// Adds the model outputs of `rows` (`stride` floats per row: scores in label order, or the value).
    public func addPredictionRows(_ matrix: UnsafePointer<Float>, stride: Int, rows: UnsafeBufferPointer<Int32>) {
        guard stride >= predictions.columns else {
            // Fewer outputs than profiled columns: value by value for the ones there are.
            for row in rows {
                for column in 0..<stride { addOne(predictions, column, matrix[Int(row) * stride + column], missing: false) }
            }
            return
        }
        predictions.addRows(matrix, stride: stride, rows: rows, missingFlags: nil, random: &random)
    }

    /// Computes the window's statistics and starts a new, empty window.
    public func close() -> WindowDrift {
        let featureDrift = reference.features.indices.map { column(features, $0, profile: reference.features[$0], cdf: featureCDFs[$0]) }
        let predictionDrift = reference.predictions.indices.map {
            column(predictions, $0, profile: reference.predictions[$0], cdf: predictionCDFs[$0])
        }
        let flagged = featureDrift.filter(\.drift).count
        let share = featureDrift.isEmpty ? 0 : Double(flagged) / Double(featureDrift.count)
        var offsets = [String: [Int32: (first: Int64, last: Int64)]]()
        for source in sources { offsets[source.topic, default: [:]][source.partition] = (source.first, source.last) }
        let result = WindowDrift(events: events, startMs: startMs, endMs: endMs, offsets: offsets, features: featureDrift,
                                 predictions: predictionDrift, driftedShare: share, drift: share >= Self.datasetShare)
        features.reset()
        predictions.reset()
        events = 0
        timed = false
        startMs = 0
        endMs = 0
        sources.removeAll(keepingCapacity: true)
        lastSource = 0
        windowEndMs = .max
        return result
    }

    private func column(_ store: ColumnStore, _ index: Int, profile: ReferenceProfile, cdf: ReferenceCDF) -> ColumnDrift {
        let threshold = reference.thresholds.psi[profile.name] ?? DriftReference.Thresholds.fallbackPSI
        let n = store.count(index)
        guard n > 0 else {
            return ColumnDrift(name: profile.name, n: 0, missing: store.missing[index], nan: 0, outOfRange: 0, mean: 0, std: 0,
                               psi: 0, js: 0, wasserstein: 0, ks: 0, ksP: 1, drift: false, threshold: threshold)
        }
        let window = store.binProbabilities(index)
        let psi = DriftStatistics.psi(window: window, reference: profile.probabilities)
        let js = DriftStatistics.jensenShannon(window, profile.probabilities)
        if let categories = profile.categories {
            // Category i is bin 2i + 1; every other bin is a category unseen in training.
            var observed = [Double](repeating: 0, count: categories.count + 1)
            for (bin, share) in window.enumerated() {
                let count = share * Double(n)
                if bin % 2 == 1 && bin / 2 < categories.count { observed[bin / 2] += count } else { observed[categories.count] += count }
            }
            let shares = categories.indices.map { profile.probabilities[2 * $0 + 1] }
            let (statistic, p) = DriftStatistics.chiSquare(observed: observed.map { $0.rounded() }, referenceShares: shares)
            var result = ColumnDrift(name: profile.name, n: n, missing: store.missing[index], nan: 0, outOfRange: 0, mean: 0, std: 0,
                                     psi: psi, js: js, wasserstein: 0, ks: 0, ksP: 1,
                                     drift: psi > threshold && p < Self.ksAlpha, threshold: threshold)
            result.chiSquare = statistic
            result.chiSquareP = p
            result.unseenShare = observed[categories.count] / Double(n)
            return result
        }
        let sorted = store.sortedValues(index)
        let (ks, rawWasserstein) = cdf.ksAndWasserstein(sorted: sorted)
        let ksP = DriftStatistics.kolmogorovSmirnovPValue(d: ks, n: sorted.count, m: profile.sample.count)
        let wasserstein = profile.std > 0 ? rawWasserstein / profile.std : rawWasserstein
        let std = n > 1 ? (store.m2[index] / Double(n - 1)).squareRoot() : 0
        return ColumnDrift(name: profile.name, n: n, missing: store.missing[index], nan: 0, outOfRange: store.outOfRange[index],
                           mean: store.mean[index], std: std, psi: psi, js: js, wasserstein: wasserstein, ks: ks, ksP: ksP,
                           drift: psi > threshold && ksP < Self.ksAlpha, threshold: threshold)
    }
}
