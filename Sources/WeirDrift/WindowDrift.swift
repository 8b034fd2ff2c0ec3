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
    /// For a categorical feature (nil for a number): the chi-square test of the category counts
    /// against the training shares, and the share of the window's values in categories never
    /// seen in training. A categorical feature has no mean, std, KS or Wasserstein (all 0).
    public var chiSquare: Double? = nil
    public var chiSquareP: Double? = nil
    public var unseenShare: Double? = nil
    public var isCategorical: Bool { chiSquare != nil }
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
