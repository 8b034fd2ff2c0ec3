import Foundation

/// What live values are compared with: one column of the training data, profiled once by
/// `weir model package` and shipped in the bundle's `reference.json`.
public struct ReferenceProfile: Codable, Sendable, Equatable {
    public var name: String
    /// Bin edges: the 0, 5, ..., 100th percentiles of the training values, duplicates removed
    /// (a constant column keeps its one value twice).
    /// Bins are: underflow (< first edge), [edge i, edge i+1) for each pair (the last one closed),
    /// overflow (> last edge).
    public var edges: [Double]
    /// Reference probability of each bin, underflow and overflow included (`edges.count + 1` values).
    public var probabilities: [Double]
    public var count: Int
    public var min: Double
    public var max: Double
    public var mean: Double
    public var variance: Double
    /// Share of training rows without a value (empty CSV cell).
    public var missingRate: Double
    /// At most `sampleLimit` training values, sorted (evenly spaced order statistics when there
    /// are more), for the KS and Wasserstein tests.
    public var sample: [Double]
    /// For a categorical feature, its training categories in code order: category i is bin 2i + 1
    /// (its code ± 0.5, codes being the model's numbers for categories); every other bin holds
    /// categories never seen in training. Nil for a numeric feature.
    public var categories: [String]?

    enum CodingKeys: String, CodingKey {
        case name, edges, probabilities, count, min, max, mean, variance, sample, categories
        case missingRate = "missing_rate"
    }

    /// Whether the feature is a category.
    public var isCategorical: Bool { categories != nil }

    public static let sampleLimit = 10_000
    public static let quantileBins = 20

    public var std: Double { variance.squareRoot() }

    /// Profiles `values` (missing ones as nil).
    public init(name: String, values: [Double?]) {
        self.name = name
        let present = values.compactMap { $0 }.filter(\.isFinite).sorted()
        count = present.count
        missingRate = values.isEmpty ? 0 : Double(values.count - present.count) / Double(values.count)
        guard !present.isEmpty else {
            edges = []
            probabilities = [1]
            min = 0; max = 0; mean = 0; variance = 0
            sample = []
            return
        }
        min = present.first!
        max = present.last!
        var runningMean = 0.0, m2 = 0.0
        for (index, value) in present.enumerated() {
            let delta = value - runningMean
            runningMean += delta / Double(index + 1)
            m2 += delta * (value - runningMean)
        }
        mean = runningMean
        variance = present.count > 1 ? m2 / Double(present.count - 1) : 0
        var cuts = [Double]()
        for step in 0...Self.quantileBins {
            let edge = DriftStatistics.quantile(sorted: present, Double(step) / Double(Self.quantileBins))
            if cuts.last != edge { cuts.append(edge) }
        }
        // A constant column keeps its value twice: one inner bin, between underflow and overflow.
        if cuts.count == 1 { cuts.append(cuts[0]) }
        edges = cuts
        var counts = [Int](repeating: 0, count: cuts.count + 1)
        for value in present { counts[Self.bin(of: value, edges: cuts)] += 1 }
        probabilities = counts.map { Double($0) / Double(present.count) }
        if present.count <= Self.sampleLimit {
            sample = present
        } else {
            sample = (0..<Self.sampleLimit).map { present[$0 * (present.count - 1) / (Self.sampleLimit - 1)] }
        }
    }

    /// Profiles a categorical feature: its categories' shares (missing ones as nil). `code` gives
    /// a category's number as the live rows carry it; categories with one code (the model knows
    /// neither) share a bin, named by the first.
    public init(name: String, categories cells: [String?], code: (String) -> Double) {
        self.name = name
        let present = cells.compactMap { $0 }
        count = present.count
        missingRate = cells.isEmpty ? 0 : Double(cells.count - present.count) / Double(cells.count)
        var countsByCode = [Double: Int](), labelByCode = [Double: String]()
        var codes = [Double]()
        codes.reserveCapacity(present.count)
        for text in present.sorted() {
            let c = code(text)
            codes.append(c)
            countsByCode[c, default: 0] += 1
            if labelByCode[c] == nil { labelByCode[c] = text }
        }
        let ordered = countsByCode.keys.sorted()
        categories = ordered.map { labelByCode[$0]! }
        edges = ordered.flatMap { [$0 - 0.5, $0 + 0.5] }
        var shares = [Double](repeating: 0, count: 2 * ordered.count + 1)
        for (i, c) in ordered.enumerated() { shares[2 * i + 1] = Double(countsByCode[c]!) / Double(Swift.max(present.count, 1)) }
        probabilities = present.isEmpty ? [1] : shares
        min = ordered.first ?? 0
        max = ordered.last ?? 0
        mean = 0
        variance = 0
        codes.sort()
        if codes.count <= Self.sampleLimit {
            sample = codes
        } else {
            sample = (0..<Self.sampleLimit).map { codes[$0 * (codes.count - 1) / (Self.sampleLimit - 1)] }
        }
    }

    /// The bin of `value` (0 = underflow, `edges.count` = overflow).
    public static func bin(of value: Double, edges: [Double]) -> Int {
        edges.withUnsafeBufferPointer { bin(of: value, edges: $0) }
    }

    /// `bin(of:edges:)` over raw storage (the window's hot path): a branch-free count of the edges
    /// at or below the value, which the compiler vectorises, instead of an unpredictable search.
    @inline(__always)
    static func bin(of value: Double, edges: UnsafeBufferPointer<Double>) -> Int {
        let count = edges.count
        guard count > 0 else { return 0 }
        if value < edges[0] { return 0 }
        if value > edges[count - 1] { return count }
        var atOrBelow = 0
        for index in 0..<count { atOrBelow &+= edges[index] <= value ? 1 : 0 }
        return Swift.min(atOrBelow, count - 1)
    }

    public func bin(of value: Double) -> Int { Self.bin(of: value, edges: edges) }
}

/// `reference.json`: the training profile of every input feature and of the model's outputs,
/// and the thresholds a window's statistics are compared with.
public struct DriftReference: Codable, Sendable, Equatable {
    public var features: [ReferenceProfile]
    /// Profiles of the model's outputs on the training rows (`score:<label>` or `value`).
    public var predictions: [ReferenceProfile]
    public var thresholds: Thresholds
    public var createdBy: String

    enum CodingKeys: String, CodingKey {
        case features, predictions, thresholds
        case createdBy = "created_by"
    }

    /// Per-statistic thresholds, each the p99 over bootstrap windows of `windowEvents` training
    /// values (per feature), or the fixed fallback when calibration was not possible.
    public struct Thresholds: Codable, Sendable, Equatable {
        public var windowEvents: Int
        public var calibrated: Bool
        /// Per feature name: the PSI and JS thresholds.
        public var psi: [String: Double]
        public var js: [String: Double]
        enum CodingKeys: String, CodingKey {
            case windowEvents = "window_events"
            case calibrated, psi, js
        }
        public static let fallbackPSI = 0.2
        public static let fallbackJS = 0.1
    }

    public init(features: [ReferenceProfile], predictions: [ReferenceProfile], thresholds: Thresholds, createdBy: String) {
        self.features = features
        self.predictions = predictions
        self.thresholds = thresholds
        self.createdBy = createdBy
    }

    /// Calibrates thresholds by drawing `rounds` windows of `windowEvents` values with replacement
    /// from each profile's sample (deterministically seeded) and taking the p99 of PSI and JS.
    /// Profiles with fewer than 100 values get the fallbacks.
    public static func calibrate(_ profiles: [ReferenceProfile], windowEvents: Int, rounds: Int = 200) -> Thresholds {
        var psi = [String: Double](), js = [String: Double]()
        var calibratedAll = true
        var generator = SplitMix64(seed: 0x5EED_0F_D81F7)
        for profile in profiles {
            guard profile.sample.count >= 100, windowEvents >= 10 else {
                psi[profile.name] = Thresholds.fallbackPSI
                js[profile.name] = Thresholds.fallbackJS
                calibratedAll = false
                continue
            }
            var psiValues = [Double](), jsValues = [Double]()
            var counts = [Double](repeating: 0, count: profile.probabilities.count)
            for _ in 0..<rounds {
                for index in counts.indices { counts[index] = 0 }
                for _ in 0..<windowEvents {
                    let value = profile.sample[Int(generator.next() % UInt64(profile.sample.count))]
                    counts[profile.bin(of: value)] += 1
                }
                let window = counts.map { $0 / Double(windowEvents) }
                psiValues.append(DriftStatistics.psi(window: window, reference: profile.probabilities))
                jsValues.append(DriftStatistics.jensenShannon(window, profile.probabilities))
            }
            psiValues.sort()
            jsValues.sort()
            psi[profile.name] = DriftStatistics.quantile(sorted: psiValues, 0.99)
            js[profile.name] = DriftStatistics.quantile(sorted: jsValues, 0.99)
        }
        return Thresholds(windowEvents: windowEvents, calibrated: calibratedAll, psi: psi, js: js)
    }
}
