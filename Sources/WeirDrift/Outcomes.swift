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
