import Foundation
import WeirControl
import WeirDrift

/// A condition on a report metric (`agreement>=0.98`): `weir backtest --gate` sets the exit status
/// from them, and `weir control deploy --require-backtest` reads whether they passed.
public struct Gate: Codable, Sendable, Equatable {
    public var expression: String
    public var metric: String
    public var comparison: String
    public var threshold: Double
    public var value: Double?
    public var passed: Bool?

    static let comparisons = [">=", "<=", "==", ">", "<"]

    /// Parses comma-separated conditions, each `metric OP number` with OP one of >= <= == > <.
    public static func parse(_ text: String) throws(BatchError) -> [Gate] {
        var gates = [Gate]()
        for part in text.split(separator: ",") {
            let expression = part.trimmingCharacters(in: .whitespaces)
            guard let comparison = comparisons.first(where: { expression.contains($0) }),
                  let range = expression.range(of: comparison) else {
                throw BatchError("--gate '\(expression)': write metric>=number (or <=, ==, >, <)")
            }
            let metric = expression[..<range.lowerBound].trimmingCharacters(in: .whitespaces)
            let number = expression[range.upperBound...].trimmingCharacters(in: .whitespaces)
            guard let threshold = Double(number), threshold.isFinite else {
                throw BatchError("--gate '\(expression)': '\(number)' is not a number")
            }
            guard BacktestReport.metricNames.contains(metric) else {
                throw BatchError("--gate '\(expression)': no metric '\(metric)'; use one of \(BacktestReport.metricNames.sorted().joined(separator: ", "))")
            }
            gates.append(Gate(expression: expression, metric: metric, comparison: comparison, threshold: threshold))
        }
        return gates
    }

    func holds(for value: Double) -> Bool {
        switch comparison {
        case ">=": return value >= threshold
        case "<=": return value <= threshold
        case ">": return value > threshold
        case "<": return value < threshold
        default: return value == threshold
        }
    }
}

/// What `weir backtest` found: both bundles' identities, the metrics, the plots' data, and the gates.
public struct BacktestReport: Codable, Sendable {
    public struct Bundle: Codable, Sendable, Equatable {
        public var name: String
        public var version: String
        /// The bundle's identity: the sha256 of its manifest (what a deploy message names).
        public var sha256: String
        public var path: String
    }

    public struct Histogram: Codable, Sendable {
        public var edges: [Double]
        public var current: [Int]
        public var candidate: [Int]
    }

    public struct Confusion: Codable, Sendable {
        /// Rows: the current model's label; columns: the candidate's.
        public var labels: [String]
        public var counts: [[Int]]
    }

    public struct Segment: Codable, Sendable {
        public var segment: String
        public var n: Int
        public var agreement: Double
        public var currentMean: Double
        public var candidateMean: Double
        /// Classifiers: accuracy; regressors: mean absolute error (rows with an outcome).
        public var currentError: Double?
        public var candidateError: Double?
        public var labelled: Int
    }

    public var weirVersion = WeirControl.weirVersion
    public var createdAt = ""
    public var current: Bundle
    public var candidate: Bundle
    public var task: String
    public var inputs: [String] = []
    public var threads = 0
    public var seconds = 0.0
    public var tombstones = 0
    public var outsideRange = 0
    /// Every measured figure by name (the names `--gate` takes); absent: not measured.
    public var metrics: [String: Double] = [:]
    /// 95% intervals of the per-model outcome metrics, `[low, high]`.
    public var intervals: [String: [Double]] = [:]
    public var deadLetters: [String: [String: Int]] = [:]
    public var confusion: Confusion?
    public var scoreHistogram: Histogram
    public var calibration: [String: [OutcomeStatistics.CalibrationBin]] = [:]
    public var segmentFeature: String?
    public var segments: [Segment] = []
    public var gates: [Gate] = []
    /// Whether every gate held (true when there are none).
    public var passed = true

    /// The metric names a gate may use.
    public static let metricNames: Set<String> = [
        "rows", "agreement", "ks", "ks_p", "psi", "mean_abs_diff", "max_abs_diff", "current_latency_us", "candidate_latency_us",
        "latency_ratio", "current_dead_letter_share", "candidate_dead_letter_share", "dead_letter_share_delta", "labelled_rows",
        "current_accuracy", "candidate_accuracy", "accuracy_delta", "current_log_loss", "candidate_log_loss", "log_loss_delta",
        "current_auc", "candidate_auc", "auc_delta", "current_ece", "candidate_ece", "ece_delta",
        "current_mae", "candidate_mae", "mae_delta", "current_rmse", "candidate_rmse", "rmse_delta",
    ]

    mutating func apply(_ wanted: [Gate]) {
        gates = wanted.map { gate in
            var gate = gate
            gate.value = metrics[gate.metric]
            gate.passed = gate.value.map { gate.holds(for: $0) } ?? false
            return gate
        }
        passed = gates.allSatisfy { $0.passed == true }
    }

    // MARK: Computing

    static func compute(from data: ComparedChunk, current: Bundle, candidate: Bundle, isClassification: Bool, labels: [String],
                        segment: (name: String, source: SegmentSource)?, segmentBuckets: Int, categoryNames: [String],
                        tolerance: Double) -> BacktestReport {
        let rows = data.outcomes.count
        let aw = rows > 0 ? data.currentScores.count / rows : 1, bw = rows > 0 ? data.candidateScores.count / rows : 1
        var scalarA = [Float](repeating: 0, count: rows), scalarB = [Float](repeating: 0, count: rows)
        var labelA = [Int](repeating: 0, count: rows), labelB = [Int](repeating: 0, count: rows)
        var agree = [Bool](repeating: false, count: rows)
        var absDiffSum = 0.0, absDiffMax = 0.0
        let classes = isClassification ? max(labels.count, 2) : 1
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        data.currentScores.withUnsafeBufferPointer { a in
            data.candidateScores.withUnsafeBufferPointer { b in
                for row in 0..<rows {
                    let ra = a.baseAddress! + row * aw, rb = b.baseAddress! + row * bw
                    if isClassification {
                        labelA[row] = best(ra, aw)
                        labelB[row] = best(rb, bw)
                        scalarA[row] = aw == 2 ? ra[1] : ra[labelA[row]]
                        scalarB[row] = bw == 2 ? rb[1] : rb[labelB[row]]
                        agree[row] = labelA[row] == labelB[row]
                        if labelA[row] < classes, labelB[row] < classes { confusion[labelA[row]][labelB[row]] += 1 }
                    } else {
                        scalarA[row] = ra[0]
                        scalarB[row] = rb[0]
                        agree[row] = abs(Double(ra[0]) - Double(rb[0])) <= tolerance
                    }
                    let diff = abs(Double(scalarA[row]) - Double(scalarB[row]))
                    absDiffSum += diff
                    absDiffMax = max(absDiffMax, diff)
                }
            }
        }
        var report = BacktestReport(current: current, candidate: candidate, task: isClassification ? "classification" : "regression",
                                    scoreHistogram: histogram(scalarA, scalarB, unit: isClassification))
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        report.createdAt = formatter.string(from: Date())
        var metrics = [String: Double]()
        metrics["rows"] = Double(rows)
        if rows > 0 {
            metrics["agreement"] = Double(agree.reduce(0) { $0 + ($1 ? 1 : 0) }) / Double(rows)
            metrics["mean_abs_diff"] = absDiffSum / Double(rows)
            metrics["max_abs_diff"] = absDiffMax
            let sortedA = scalarA.map(Double.init).sorted(), sortedB = scalarB.map(Double.init).sorted()
            let ks = DriftStatistics.kolmogorovSmirnov(sorted: sortedA, sorted: sortedB)
            metrics["ks"] = ks
            metrics["ks_p"] = DriftStatistics.kolmogorovSmirnovPValue(d: ks, n: rows, m: rows)
            metrics["psi"] = psi(reference: sortedA, window: sortedB)
        }
        let deadA = data.currentDeadLetters.values.reduce(0, +), deadB = data.candidateDeadLetters.values.reduce(0, +)
        // Per event read: every record either model saw (answered by both, or a dead letter of one).
        let seenA = max(rows + deadA, 1), seenB = max(rows + deadB, 1)
        metrics["current_latency_us"] = Double(data.currentNanoseconds) / Double(seenA) / 1000
        metrics["candidate_latency_us"] = Double(data.candidateNanoseconds) / Double(seenB) / 1000
        if data.currentNanoseconds > 0 { metrics["latency_ratio"] = Double(data.candidateNanoseconds) / Double(data.currentNanoseconds) }
        let everything = Double(max(rows + max(deadA, deadB), 1))
        metrics["current_dead_letter_share"] = Double(deadA) / everything
        metrics["candidate_dead_letter_share"] = Double(deadB) / everything
        metrics["dead_letter_share_delta"] = Double(deadB - deadA) / everything
        report.deadLetters = ["current": Dictionary(uniqueKeysWithValues: data.currentDeadLetters.map { ($0.key.rawValue, $0.value) }),
                              "candidate": Dictionary(uniqueKeysWithValues: data.candidateDeadLetters.map { ($0.key.rawValue, $0.value) })]
        if isClassification { report.confusion = Confusion(labels: labels, counts: confusion) }

        // Outcomes.
        let labelled = (0..<rows).filter { isClassification ? data.outcomes[$0] >= 0 : data.outcomes[$0].isFinite }
        metrics["labelled_rows"] = Double(labelled.count)
        if !labelled.isEmpty {
            for (side, scores, width, predicted) in [("current", data.currentScores, aw, labelA), ("candidate", data.candidateScores, bw, labelB)] {
                if isClassification {
                    var correct = 0
                    var observedProbability = [Float](), confidence = [Float](), hit = [Bool]()
                    observedProbability.reserveCapacity(labelled.count)
                    for row in labelled {
                        let truth = Int(data.outcomes[row])
                        let right = predicted[row] == truth
                        if right { correct += 1 }
                        observedProbability.append(truth < width ? scores[row * width + truth] : 0)
                        if width == 2 {
                            confidence.append(scores[row * 2 + 1])
                            hit.append(truth == 1)
                        } else {
                            confidence.append(scores[row * width + predicted[row]])
                            hit.append(right)
                        }
                    }
                    metrics["\(side)_accuracy"] = Double(correct) / Double(labelled.count)
                    let wilson = OutcomeStatistics.wilson(successes: correct, n: labelled.count)
                    report.intervals["\(side)_accuracy"] = [wilson.low, wilson.high]
                    metrics["\(side)_log_loss"] = OutcomeStatistics.logLoss(probabilityOfObserved: observedProbability)
                    let labelledScores = labelled.flatMap { scores[($0 * width)..<(($0 + 1) * width)] }
                    if let auc = OutcomeStatistics.auc(rows: labelledScores, width: width, truth: labelled.map { Int(data.outcomes[$0]) }) {
                        metrics["\(side)_auc"] = auc.value
                        if let se = auc.standardError { report.intervals["\(side)_auc"] = [max(0, auc.value - 1.96 * se), min(1, auc.value + 1.96 * se)] }
                    }
                    let calibration = OutcomeStatistics.calibration(predicted: confidence, observed: hit)
                    report.calibration[side] = calibration.bins
                    metrics["\(side)_ece"] = calibration.ece
                } else {
                    let errors = labelled.map { Double(scores[$0]) - Double(data.outcomes[$0]) }
                    let absolute = OutcomeStatistics.meanAndStandardError(errors.map(abs))
                    let squared = OutcomeStatistics.meanAndStandardError(errors.map { $0 * $0 })
                    metrics["\(side)_mae"] = absolute.mean
                    metrics["\(side)_rmse"] = squared.mean.squareRoot()
                    if absolute.standardError.isFinite {
                        report.intervals["\(side)_mae"] = [absolute.mean - 1.96 * absolute.standardError, absolute.mean + 1.96 * absolute.standardError]
                    }
                }
            }
            for name in ["accuracy", "log_loss", "auc", "ece", "mae", "rmse"] {
                if let a = metrics["current_\(name)"], let b = metrics["candidate_\(name)"] { metrics["\(name)_delta"] = b - a }
            }
        }
        report.metrics = metrics
        if let segment {
            report.segmentFeature = segment.name
            report.segments = segments(data, segment.source, buckets: segmentBuckets, names: categoryNames, agree: agree, scalarA: scalarA,
                                       scalarB: scalarB, labelA: labelA, labelB: labelB, isClassification: isClassification)
        }
        return report
    }

    private static func best(_ row: UnsafePointer<Float>, _ width: Int) -> Int {
        if width == 2 { return row[1] >= 0.5 ? 1 : 0 }
        var best = 0
        for column in 1..<max(width, 1) where row[column] > row[best] { best = column }
        return best
    }

    /// PSI of the candidate's scores in the current's decile bins.
    private static func psi(reference: [Double], window: [Double]) -> Double {
        var edges = (1..<10).map { DriftStatistics.quantile(sorted: reference, Double($0) / 10) }
        edges = Array(Set(edges)).sorted()
        func shares(_ values: [Double]) -> [Double] {
            var counts = [Double](repeating: 0, count: edges.count + 1)
            for value in values {
                var low = 0, high = edges.count
                while low < high {
                    let mid = (low + high) / 2
                    if value <= edges[mid] { high = mid } else { low = mid + 1 }
                }
                counts[low] += 1
            }
            return counts.map { $0 / Double(max(values.count, 1)) }
        }
        return DriftStatistics.psi(window: shares(window), reference: shares(reference))
    }

    private static func histogram(_ a: [Float], _ b: [Float], unit: Bool) -> Histogram {
        let bins = 20
        var low = 0.0, high = 1.0
        if !unit {
            low = Double(min(a.min() ?? 0, b.min() ?? 0))
            high = Double(max(a.max() ?? 1, b.max() ?? 1))
            if high <= low { high = low + 1 }
        }
        let edges = (0...bins).map { low + (high - low) * Double($0) / Double(bins) }
        func counts(_ values: [Float]) -> [Int] {
            var result = [Int](repeating: 0, count: bins)
            for value in values where value.isFinite {
                result[min(max(Int((Double(value) - low) / (high - low) * Double(bins)), 0), bins - 1)] += 1
            }
            return result
        }
        return Histogram(edges: edges, current: counts(a), candidate: counts(b))
    }

    private static func segments(_ data: ComparedChunk, _ source: SegmentSource, buckets: Int, names: [String], agree: [Bool],
                                 scalarA: [Float], scalarB: [Float], labelA: [Int], labelB: [Int], isClassification: Bool) -> [Segment] {
        let rows = data.outcomes.count
        var keyOf = [Int](repeating: 0, count: rows)
        var titles = [String]()
        if source.isCategorical {
            var index = [Int: Int]()
            for row in 0..<rows {
                let code = Int(data.segments[row])
                if index[code] == nil {
                    index[code] = titles.count
                    titles.append(code >= 0 && code < names.count ? names[code] : "(unknown)")
                }
                keyOf[row] = index[code]!
            }
        } else {
            let sorted = data.segments.map(Double.init).filter(\.isFinite).sorted()
            var edges = sorted.isEmpty ? [] : (1..<max(buckets, 1)).map { DriftStatistics.quantile(sorted: sorted, Double($0) / Double(buckets)) }
            edges = Array(Set(edges)).sorted()
            let bounds = [-Double.infinity] + edges + [Double.infinity]
            titles = (0..<(bounds.count - 1)).map { i in
                let low = bounds[i].isFinite ? String(format: "%g", bounds[i]) : "-inf"
                let high = bounds[i + 1].isFinite ? String(format: "%g", bounds[i + 1]) : "inf"
                return "(\(low), \(high)]"
            }
            for row in 0..<rows {
                let value = Double(data.segments[row])
                keyOf[row] = edges.firstIndex(where: { value <= $0 }) ?? edges.count
            }
        }
        var groups = [[Int]](repeating: [], count: titles.count)
        for row in 0..<rows { groups[keyOf[row]].append(row) }
        var result = [Segment]()
        for (key, members) in groups.enumerated() where !members.isEmpty {
            let n = Double(members.count)
            let labelled = members.filter { isClassification ? data.outcomes[$0] >= 0 : data.outcomes[$0].isFinite }
            func error(_ labels: [Int], _ scalar: [Float]) -> Double? {
                guard !labelled.isEmpty else { return nil }
                if isClassification {
                    return Double(labelled.filter { labels[$0] == Int(data.outcomes[$0]) }.count) / Double(labelled.count)
                }
                return labelled.reduce(0.0) { $0 + abs(Double(scalar[$1]) - Double(data.outcomes[$1])) } / Double(labelled.count)
            }
            result.append(Segment(segment: titles[key], n: members.count,
                                  agreement: Double(members.filter { agree[$0] }.count) / n,
                                  currentMean: members.reduce(0.0) { $0 + Double(scalarA[$1]) } / n,
                                  candidateMean: members.reduce(0.0) { $0 + Double(scalarB[$1]) } / n,
                                  currentError: error(labelA, scalarA), candidateError: error(labelB, scalarB), labelled: labelled.count))
        }
        return result.sorted { $0.n > $1.n }
    }

    // MARK: Reading and writing

    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try encoder.encode(self)
    }

    public static func read(_ data: Data) throws -> BacktestReport {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try decoder.decode(BacktestReport.self, from: data)
    }

    /// The human table.
    public var text: String {
        var lines = [String]()
        lines.append("backtest \(current.name) \(current.version) (current) vs \(candidate.version) (candidate): \(Int(metrics["rows"] ?? 0)) rows compared in \(String(format: "%.2f", seconds)) s")
        lines.append("  current   sha256 \(current.sha256)")
        lines.append("  candidate sha256 \(candidate.sha256)")
        let order = ["agreement", "mean_abs_diff", "max_abs_diff", "ks", "ks_p", "psi", "labelled_rows",
                     "accuracy", "log_loss", "auc", "ece", "mae", "rmse", "latency_us", "dead_letter_share"]
        func row(_ cells: [String]) -> String {
            "  " + cells[0].padding(toLength: 22, withPad: " ", startingAt: 0)
                + cells.dropFirst().map { String(repeating: " ", count: max(0, 12 - $0.count)) + $0 }.joined(separator: " ")
        }
        lines.append(row(["metric", "current", "candidate", "delta"]))
        for name in order {
            if let value = metrics[name] {
                lines.append(row([name, Self.format(value)]))
            } else if metrics["current_\(name)"] != nil || metrics["candidate_\(name)"] != nil {
                let a = metrics["current_\(name)"].map(Self.format) ?? "-", b = metrics["candidate_\(name)"].map(Self.format) ?? "-"
                let delta = (metrics["\(name)_delta"] ?? (name == "latency_us" ? metrics["latency_ratio"] : nil)).map(Self.format) ?? "-"
                let deltaText = name == "latency_us" ? "x" + delta : delta
                lines.append(row([name, a, b, deltaText]))
            }
        }
        if let confusion, confusion.labels.count <= 8 {
            lines.append("  confusion (rows: current label, columns: candidate label)")
            lines.append("    " + confusion.labels.map { $0.padding(toLength: 10, withPad: " ", startingAt: 0) }.joined(separator: " "))
            for (label, row) in zip(confusion.labels, confusion.counts) {
                lines.append("    " + row.map { String($0).padding(toLength: 10, withPad: " ", startingAt: 0) }.joined(separator: " ") + " " + label)
            }
        }
        if let segmentFeature, !segments.isEmpty {
            lines.append("  by \(segmentFeature): segment, n, agreement, mean score current / candidate" + (segments.contains { $0.labelled > 0 } ? (task == "classification" ? ", accuracy current / candidate" : ", MAE current / candidate") : ""))
            for segment in segments.prefix(20) {
                var line = "    \(segment.segment): \(segment.n), \(Self.format(segment.agreement)), \(Self.format(segment.currentMean)) / \(Self.format(segment.candidateMean))"
                if let a = segment.currentError, let b = segment.candidateError { line += ", \(Self.format(a)) / \(Self.format(b))" }
                lines.append(line)
            }
        }
        for gate in gates {
            lines.append("  gate \(gate.expression): \(gate.value.map(Self.format) ?? "not measured") \(gate.passed == true ? "PASS" : "FAIL")")
        }
        lines.append(gates.isEmpty ? "  no gates" : (passed ? "  every gate passed" : "  a gate failed"))
        return lines.joined(separator: "\n")
    }

    static func format(_ value: Double) -> String {
        if value.isNaN { return "nan" }
        if value == value.rounded(), abs(value) < 1e9 { return String(Int(value)) }
        return String(format: "%.4g", value)
    }
}
