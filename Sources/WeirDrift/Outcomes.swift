import Foundation

/// How right a model is against observed outcomes: the figures `weir backtest` reports per model
/// and the live outcome windows will, each as scikit-learn computes it (scripts/make-backtest-goldens.py
/// makes the goldens), with the confidence intervals a reader needs to tell a difference from noise.
public enum OutcomeStatistics {
    /// Area under the ROC curve of `scores` for the positives (ties count a half), as
    /// `sklearn.metrics.roc_auc_score`; nil when one class is absent.
    public static func auc(scores: [Float], positive: [Bool]) -> Double? {
        precondition(scores.count == positive.count)
        let positives = positive.reduce(0) { $0 + ($1 ? 1 : 0) }
        let negatives = positive.count - positives
        guard positives > 0, negatives > 0 else { return nil }
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        // Mann–Whitney: the sum of the positives' ranks (tied scores share their mean rank).
        var rankSum = 0.0
        var start = 0
        while start < order.count {
            var end = start + 1
            while end < order.count, scores[order[end]] == scores[order[start]] { end += 1 }
            let meanRank = Double(start + end + 1) / 2
            for index in start..<end where positive[order[index]] { rankSum += meanRank }
            start = end
        }
        let p = Double(positives), n = Double(negatives)
        return (rankSum - p * (p + 1) / 2) / (p * n)
    }

    /// AUC of rows of `width` class scores (row-major) against each row's observed class:
    /// with two columns, the binary AUC of the second (with Hanley–McNeil's standard error);
    /// with more, the mean one-vs-rest AUC over the classes present (scikit-learn's
    /// `multi_class="ovr", average="macro"`). Nil when no class has both outcomes.
    public static func auc(rows scores: [Float], width: Int, truth: [Int]) -> (value: Double, standardError: Double?)? {
        let count = truth.count
        guard width >= 2, scores.count >= count * width else { return nil }
        let classes = width == 2 ? [1] : Array(0..<width)
        var values = [Double]()
        var standardError: Double?
        for positiveClass in classes {
            let classScores = (0..<count).map { scores[$0 * width + positiveClass] }
            let positive = truth.map { $0 == positiveClass }
            guard let value = auc(scores: classScores, positive: positive) else { continue }
            values.append(value)
            if width == 2 {
                let positives = positive.filter { $0 }.count
                standardError = aucStandardError(value, positives: positives, negatives: count - positives)
            }
        }
        guard !values.isEmpty else { return nil }
        return (values.reduce(0, +) / Double(values.count), standardError)
    }

    /// Hanley and McNeil's standard error of an AUC from `positives` and `negatives` examples.
    public static func aucStandardError(_ auc: Double, positives: Int, negatives: Int) -> Double {
        guard positives > 0, negatives > 0 else { return .nan }
        let q1 = auc / (2 - auc), q2 = 2 * auc * auc / (1 + auc)
        let p = Double(positives), n = Double(negatives)
        let variance = (auc * (1 - auc) + (p - 1) * (q1 - auc * auc) + (n - 1) * (q2 - auc * auc)) / (p * n)
        return max(variance, 0).squareRoot()
    }

    /// Mean negative log of the probability given to the observed class, clipped to [ε, 1 − ε]
    /// with ε = 1e-15 (as `sklearn.metrics.log_loss`).
    public static func logLoss(probabilityOfObserved: [Float]) -> Double {
        guard !probabilityOfObserved.isEmpty else { return .nan }
        let epsilon = 1e-15
        var total = 0.0
        for p in probabilityOfObserved { total -= Foundation.log(min(max(Double(p), epsilon), 1 - epsilon)) }
        return total / Double(probabilityOfObserved.count)
    }

    /// Wilson's score interval for a proportion of `successes` in `n` at `z` (1.96: 95%).
    public static func wilson(successes: Int, n: Int, z: Double = 1.96) -> (low: Double, high: Double) {
        guard n > 0 else { return (0, 1) }
        let phat = Double(successes) / Double(n), nn = Double(n)
        let denominator = 1 + z * z / nn
        let centre = (phat + z * z / (2 * nn)) / denominator
        let half = z * (phat * (1 - phat) / nn + z * z / (4 * nn * nn)).squareRoot() / denominator
        return (max(0, centre - half), min(1, centre + half))
    }

    /// One bin of a reliability diagram.
    public struct CalibrationBin: Codable, Sendable, Equatable {
        /// The bin's range of predicted probability, [lower, upper).
        public var lower: Double
        public var upper: Double
        public var n: Int
        /// Mean predicted probability, and the share observed positive, in the bin.
        public var predicted: Double
        public var observed: Double
    }

    /// A reliability diagram in `bins` equal-width bins of predicted probability (the last bin
    /// includes 1), and the expected calibration error Σ n_b/N · |observed_b − predicted_b|.
    public static func calibration(predicted: [Float], observed: [Bool], bins: Int = 10) -> (bins: [CalibrationBin], ece: Double) {
        precondition(predicted.count == observed.count)
        var counts = [Int](repeating: 0, count: bins), sums = [Double](repeating: 0, count: bins), hits = [Int](repeating: 0, count: bins)
        for (p, hit) in zip(predicted, observed) {
            guard p.isFinite else { continue }
            let bin = min(max(Int(Double(p) * Double(bins)), 0), bins - 1)
            counts[bin] += 1
            sums[bin] += Double(p)
            if hit { hits[bin] += 1 }
        }
        let total = Double(counts.reduce(0, +))
        var ece = 0.0
        var result = [CalibrationBin]()
        for bin in 0..<bins {
            let n = counts[bin]
            let predictedMean = n > 0 ? sums[bin] / Double(n) : 0
            let observedShare = n > 0 ? Double(hits[bin]) / Double(n) : 0
            if total > 0 { ece += Double(n) / total * abs(observedShare - predictedMean) }
            result.append(CalibrationBin(lower: Double(bin) / Double(bins), upper: Double(bin + 1) / Double(bins), n: n,
                                         predicted: predictedMean, observed: observedShare))
        }
        return (result, ece)
    }

    /// Mean and standard error of `values` (MAE and squared errors' intervals).
    public static func meanAndStandardError(_ values: [Double]) -> (mean: Double, standardError: Double) {
        guard !values.isEmpty else { return (.nan, .nan) }
        let n = Double(values.count)
        let mean = values.reduce(0, +) / n
        guard values.count > 1 else { return (mean, .nan) }
        let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)
        return (mean, (variance / n).squareRoot())
    }
}

/// Count, mean and variance of a stream, updated one value at a time (Welford), without keeping
/// the values: what a route's sequential test needs of its outcomes.
public struct RunningMoments: Sendable, Equatable {
    public private(set) var count = 0
    public private(set) var mean = 0.0
    private var sumOfSquares = 0.0

    public init() {}

    public mutating func add(_ value: Double) {
        count += 1
        let delta = value - mean
        mean += delta / Double(count)
        sumOfSquares += delta * (value - mean)
    }

    /// The sample variance (n − 1); 0 below two values.
    public var variance: Double { count > 1 ? sumOfSquares / Double(count - 1) : 0 }
}

/// A confidence sequence for a difference of means: an interval valid at every look at once, so a
/// test may be checked after each outcome window and stopped whenever it decides, without the
/// inflated error of repeated fixed-sample tests. It is the normal-mixture boundary (Robbins;
/// the mixture SPRT of Johari et al., "Always valid inference", 2017): with V the variance of the
/// estimate and τ² the mixture's variance, the half-width is √(2V(V+τ²)/τ² · ln(√((V+τ²)/V)/α)).
public enum SequentialTest {
    /// The interval for `difference` whose estimate has variance `variance`, at level 1 − `alpha`.
    /// `mixtureVariance` (τ²) tunes where the boundary is tightest: the estimate's variance at the
    /// sample size where a decision is wanted.
    public static func interval(difference: Double, variance: Double, mixtureVariance: Double, alpha: Double)
        -> (low: Double, high: Double)
    {
        guard variance > 0, mixtureVariance > 0, alpha > 0, alpha < 1 else {
            return variance == 0 ? (difference, difference) : (-.infinity, .infinity)
        }
        let v = variance, t = mixtureVariance
        let half = (2 * v * (v + t) / t * Foundation.log(((v + t) / v).squareRoot() / alpha)).squareRoot()
        return (difference - half, difference + half)
    }

    /// The verdict of a non-inferiority test of B against A on a quality where higher is better:
    /// B is not worse than A by more than `margin` (`promote`), B is worse by more than that
    /// (`rollBack`), or not known yet.
    public enum Verdict: Equatable, Sendable {
        case promote(low: Double, high: Double)
        case rollBack(low: Double, high: Double)
        case undecided(low: Double, high: Double)
    }

    /// Two independent samples (a canary's outcomes against the primary's): B − A, each side's
    /// variance over its count; decided once both have `minimum` outcomes.
    public static func compare(a: RunningMoments, b: RunningMoments, margin: Double, alpha: Double, minimum: Int) -> Verdict? {
        guard a.count >= max(minimum, 2), b.count >= max(minimum, 2) else { return nil }
        let variance = a.variance / Double(a.count) + b.variance / Double(b.count)
        let planned = (a.variance + b.variance) / Double(minimum)
        return verdict(difference: b.mean - a.mean, variance: variance, planned: planned, margin: margin, alpha: alpha)
    }

    /// Paired outcomes (a shadow's and the primary's on the same rows): the per-row differences
    /// B − A; decided once there are `minimum`.
    public static func comparePaired(differences: RunningMoments, margin: Double, alpha: Double, minimum: Int) -> Verdict? {
        guard differences.count >= max(minimum, 2) else { return nil }
        let variance = differences.variance / Double(differences.count)
        return verdict(difference: differences.mean, variance: variance, planned: differences.variance / Double(minimum),
                       margin: margin, alpha: alpha)
    }

    private static func verdict(difference: Double, variance: Double, planned: Double, margin: Double, alpha: Double) -> Verdict {
        if variance == 0 {
            // Every outcome alike on both sides: the difference is exact.
            return difference >= -margin ? .promote(low: difference, high: difference) : .rollBack(low: difference, high: difference)
        }
        let bounds = interval(difference: difference, variance: variance, mixtureVariance: max(planned, variance * 1e-6), alpha: alpha)
        if bounds.low > -margin { return .promote(low: bounds.low, high: bounds.high) }
        if bounds.high < -margin { return .rollBack(low: bounds.low, high: bounds.high) }
        return .undecided(low: bounds.low, high: bounds.high)
    }
}
