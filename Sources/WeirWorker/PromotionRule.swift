import WeirDrift

/// What a feedback record names its prediction by (`feedback.join`).
public enum FeedbackJoin: String, Sendable, CaseIterable {
    /// The event's `id`, echoed in its prediction record.
    case id
    /// The input record's Kafka key.
    case key
}

/// `control.promote-when`: the outcome metric a candidate is tested on, how much worse than the
/// primary it may be, the confidence, and the outcomes each side needs first. Written
/// `accuracy within 0.01 at 95% after 1000` (`within`, `at` and `after` are optional: 0, 95%, 1000).
public struct PromotionRule: Sendable, Equatable, CustomStringConvertible {
    /// A quality measured per outcome, so its mean can be tested as outcomes arrive.
    public enum Metric: String, Sendable, CaseIterable {
        /// Classifiers: whether the label was right (higher is better).
        case accuracy
        /// Classifiers: the log loss of the observed class (lower is better).
        case logLoss = "log-loss"
        /// Regressors: the absolute error (lower is better).
        case mae
        /// Regressors: the squared error (lower is better; the test is on its mean).
        case mse

        /// Whether a larger value is better.
        var higherIsBetter: Bool { self == .accuracy }
        var isClassification: Bool { self == .accuracy || self == .logLoss }
    }

    public var metric: Metric
    /// How much worse than the primary the candidate may be and still be promoted (metric units).
    public var margin = 0.0
    /// 0.95 for 95%.
    public var confidence = 0.95
    /// Outcomes each route needs before the test may decide.
    public var minimumOutcomes = 1_000

    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    public init(parsing text: String) throws(ParseError) {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard let first = words.first, let metric = Metric(rawValue: first) else {
            throw ParseError(description: "start with the metric: \(Metric.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self.metric = metric
        var index = 1
        while index < words.count {
            guard index + 1 < words.count else { throw ParseError(description: "'\(words[index])' needs a value after it") }
            let value = words[index + 1]
            switch words[index] {
            case "within":
                guard let number = Double(value), number >= 0, number.isFinite else {
                    throw ParseError(description: "within: '\(value)' is not a margin of 0 or more")
                }
                margin = number
            case "at":
                let digits = value.hasSuffix("%") ? String(value.dropLast()) : value
                guard let number = Double(digits), number > 50, number < 100 else {
                    throw ParseError(description: "at: '\(value)' is not a confidence between 50% and 100% (like 95%)")
                }
                confidence = number / 100
            case "after":
                guard let number = Int(value), number >= 10 else {
                    throw ParseError(description: "after: '\(value)' is not a count of at least 10 outcomes")
                }
                minimumOutcomes = number
            default:
                throw ParseError(description: "'\(words[index])' is not within, at or after")
            }
            index += 2
        }
    }

    public var description: String {
        "\(metric.rawValue) within \(margin) at \(confidence * 100)% after \(minimumOutcomes)"
    }
}
