import Foundation
import WeirCodec
import WeirControl
import WeirDrift
import WeirKafka

/// Live outcomes (docs/outcomes.md): the worker remembers its recent predictions per route, joins
/// the observed labels or values that arrive on `feedback-topic` to them, publishes per-route
/// outcome windows (accuracy, log loss and AUC, or MAE and RMSE, with 95% intervals) to the status
/// topic and metrics, and keeps the running comparison `control.promote-when` tests. Poll thread only.
final class OutcomeTracker {
    private let settings: WorkerSettings
    private let metrics: WorkerMetrics
    let isClassification: Bool
    private let labels: LabelIndex?
    private let classes: Int
    /// The remembered predictions (their answers: a binary classifier's positive-class
    /// probability, every class's score, or a regressor's value).
    let pending: PendingPredictions
    /// Bumped at every serving change: outcomes of predictions made before it are not counted
    /// against the models serving after it.
    private var epoch: UInt32 = 0
    private var windows: [OutcomeWindow]
    /// Since the candidate went on trial: the quality the rule tests, per route (canary against
    /// primary), and per row for a shadow (shadow minus primary on the same rows).
    private var trial = [RunningMoments](repeating: RunningMoments(), count: Route.allCases.count)
    private var pairedDifferences = RunningMoments()
    /// Set once the rule decided for the current candidate (it decides once).
    private(set) var decided = false
    /// The versions answering on each route now (for window records).
    private var versions = [String?](repeating: nil, count: Route.allCases.count)
    private var mode: RolloutMode?
    /// Reads a feedback record's label and id.
    private let reader: OutcomeReader
    private var scratch = [Float](repeating: 0, count: 1)
    private let writer = JSONWriter(capacity: 1024)
    private let modelName: String

    init(settings: WorkerSettings, manifest: BundleManifest, metrics: WorkerMetrics) {
        self.settings = settings
        self.metrics = metrics
        modelName = manifest.name
        isClassification = manifest.outputs.isClassification
        classes = isClassification ? max(manifest.outputs.labels?.count ?? 2, 2) : 1
        labels = isClassification ? LabelIndex(labels: manifest.outputs.labels ?? ["0", "1"]) : nil
        labelNames = isClassification ? manifest.outputs.labels ?? ["0", "1"] : []
        pending = PendingPredictions(capacity: settings.feedbackMaxPending, width: classes == 2 ? 1 : classes)
        windows = Route.allCases.map { OutcomeWindow(route: $0) }
        let field = settings.feedbackLabelField
        let schemas = OutcomeReader.schemas(field: field, labels: labels)
        reader = OutcomeReader(numeric: EventDecoder(schema: schemas.numeric), text: schemas.text.map { EventDecoder(schema: $0) }, labels: labels)
        scratch = [Float](repeating: 0, count: pending.width)
    }

    // MARK: Remembering predictions

    /// The hash an event is joined by: its id's or its key's; nil when it has none.
    @inline(__always)
    func joinHash(id: EventID?, message: KafkaMessage) -> UInt64? {
        switch settings.feedbackJoin {
        case .id:
            guard let id, let value = message.value else { return nil }
            return OutcomeKeys.hash(id, payload: value)
        case .key:
            return message.key.map { OutcomeKeys.hash($0) }
        }
    }

    /// Remembers a model's answer (`width` output floats at `base`) for route `route`.
    @inline(__always)
    func remember(hash: UInt64, route: Route, base: UnsafePointer<Float>, width: Int, nowMs: Int64) -> Int {
        withAnswer(base, width, route) { pending.remember(hash: hash, route: route.rawValue, epoch: epoch, answer: $0, nowMs: nowMs) }
    }

    func rememberShadow(slot: Int, base: UnsafePointer<Float>, width: Int) {
        withAnswer(base, width, .shadow) { pending.rememberShadow(slot: slot, answer: $0) }
    }

    /// The answer as stored, in the labels' order of the bundle the worker started with (a
    /// candidate may list its labels in another order): a two-class model's positive-class
    /// probability (from one column or two), else every class's score.
    @inline(__always)
    private func withAnswer<R>(_ base: UnsafePointer<Float>, _ width: Int, _ route: Route, _ body: (UnsafePointer<Float>) -> R) -> R {
        let columns = labelColumns[Int(route.rawValue)]
        if pending.width == 1 {
            let positive = width == 2 ? base[1] : base[0]
            guard let columns, columns[1] == 0 else { return body(width == 2 ? base + 1 : base) }
            scratch[0] = 1 - positive  // the model's first class is this worker's positive one
            return scratch.withUnsafeBufferPointer { body($0.baseAddress!) }
        }
        if width >= pending.width && columns == nil { return body(base) }
        for index in 0..<pending.width {
            let column = columns?[index] ?? index
            scratch[index] = column >= 0 && column < width ? base[column] : .nan
        }
        return scratch.withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    /// Per route: for each of this worker's labels, the column of the route's model that scores it
    /// (nil: the same order).
    private var labelColumns = [[Int]?](repeating: nil, count: Route.allCases.count)
    private let labelNames: [String]

    private func columns(for manifest: BundleManifest?) -> [Int]? {
        guard isClassification, let theirs = manifest?.outputs.labels, theirs != labelNames else { return nil }
        return labelNames.map { name in theirs.firstIndex(of: name) ?? -1 }
    }

    // MARK: Joining outcomes

    /// Joins one feedback record to its prediction, if this worker made it and still remembers it.
    func receive(_ message: KafkaMessage, nowMs: Int64) {
        guard let value = message.value else { return }
        guard let (observed, id) = reader.read(value) else {
            metrics.countOutcome(.unreadable)
            return
        }
        let hash: UInt64?
        switch settings.feedbackJoin {
        case .id: hash = id.map { OutcomeKeys.hash($0, payload: value) }
        case .key: hash = message.key.map { OutcomeKeys.hash($0) }
        }
        guard let hash, !observed.isNaN else {
            metrics.countOutcome(.unreadable)
            return
        }
        guard let entry = pending.take(hash: hash) else {
            metrics.countOutcome(.unmatched)
            return
        }
        guard entry.epoch == epoch, let route = Route(rawValue: entry.route) else {
            metrics.countOutcome(.stale)
            return
        }
        if isClassification && observed < 0 {
            metrics.countOutcome(.unknownLabel, route: route)
            return
        }
        let answer = pending.answers + entry.slot * pending.width
        let quality = record(answer, observed: observed, in: route, nowMs: nowMs)
        metrics.countOutcome(.joined, route: route)
        trial[Int(route.rawValue)].add(quality)
        let shadow = pending.shadowAnswers + entry.slot * pending.width
        if route == .primary, !shadow[0].isNaN {
            let shadowQuality = record(shadow, observed: observed, in: .shadow, nowMs: nowMs, pairedWith: answer)
            metrics.countOutcome(.joined, route: .shadow)
            trial[Int(Route.shadow.rawValue)].add(shadowQuality)
            pairedDifferences.add(shadowQuality - quality)
        }
    }

    /// Adds one outcome to `route`'s window; returns the quality the promotion rule tests (higher is better).
    private func record(_ answer: UnsafePointer<Float>, observed: Float, in route: Route, nowMs: Int64,
                        pairedWith primary: UnsafePointer<Float>? = nil) -> Double {
        // In place: a copy of the window would copy its score arrays on every outcome.
        let index = Int(route.rawValue)
        if windows[index].outcomes == 0 { windows[index].startMs = nowMs }
        if isClassification {
            let truth = Int(observed)
            let predicted = predictedClass(answer)
            let probability: Float = pending.width == 1 ? (truth == 1 ? answer[0] : 1 - answer[0]) : (truth < pending.width ? answer[truth] : 0)
            let loss = -Foundation.log(min(max(Double(probability), 1e-15), 1 - 1e-15))
            windows[index].add(correct: predicted == truth, logLoss: loss, truth: truth, scores: answer, width: pending.width)
            if let primary { windows[index].noteAgreement(predictedClass(primary) == predicted) }
            if settings.promoteWhen?.metric == .logLoss { return -loss }
            return predicted == truth ? 1 : 0
        }
        let error = Double(answer[0]) - Double(observed)
        windows[index].add(error: error)
        if let primary { windows[index].noteAgreement(abs(Double(primary[0]) - Double(answer[0])) <= 1e-6 * max(1, abs(Double(answer[0])))) }
        return settings.promoteWhen?.metric == .mse ? -(error * error) : -abs(error)
    }

    @inline(__always)
    private func predictedClass(_ answer: UnsafePointer<Float>) -> Int {
        PredictionFields.bestClass(answer, width: pending.width)
    }

    // MARK: Windows

    /// Closes the windows that are due (`force`: every one with outcomes) and returns their records.
    func closeWindows(nowMs: Int64, force: Bool = false) -> [[UInt8]] {
        pending.expire(olderThan: nowMs - Int64(settings.feedbackMaxAgeMs))
        metrics.recordPendingPredictions(pending.count)
        var records = [[UInt8]]()
        for index in windows.indices where windows[index].outcomes > 0 {
            let window = windows[index]
            guard force || window.outcomes >= settings.feedbackWindowOutcomes || nowMs - window.startMs >= Int64(settings.feedbackWindowMs) else {
                continue
            }
            records.append(encode(window, endMs: nowMs))
            windows[index].reset()
        }
        return records
    }

    private func encode(_ window: OutcomeWindow, endMs: Int64) -> [UInt8] {
        let route = window.route.name
        writer.reset()
        writer.raw("{\"type\":\"outcome-window\",\"worker\":")
        writer.string(settings.workerID)
        writer.raw(",\"model\":")
        writer.string(modelName)
        writer.raw(",\"route\":")
        writer.string(route)
        writer.raw(",\"version\":")
        if let version = versions[Int(window.route.rawValue)] { writer.string(version) } else { writer.raw("null") }
        writer.raw(",\"window\":{\"start_ms\":")
        writer.integer(window.startMs)
        writer.raw(",\"end_ms\":")
        writer.integer(endMs)
        writer.raw(",\"outcomes\":")
        writer.integer(Int64(window.outcomes))
        writer.raw("}")
        func figure(_ name: String, _ value: Double?, _ interval: (Double, Double)?) {
            writer.raw(Array(",\"\(name)\":".utf8))
            if let value, value.isFinite { writer.double(value) } else { writer.raw("null") }
            writer.raw(Array(",\"\(name)_ci\":".utf8))
            if let interval, interval.0.isFinite, interval.1.isFinite {
                writer.raw("[")
                writer.double(interval.0)
                writer.raw(",")
                writer.double(interval.1)
                writer.raw("]")
            } else {
                writer.raw("null")
            }
            if let value { metrics.recordOutcome(name, route: route, value: value) }
        }
        let n = Double(window.outcomes)
        if isClassification {
            let accuracy = Double(window.correct) / n
            let wilson = OutcomeStatistics.wilson(successes: window.correct, n: window.outcomes)
            figure("accuracy", accuracy, (wilson.low, wilson.high))
            let logLoss = window.errors.mean
            let se = window.errors.standardError
            figure("log_loss", logLoss, (logLoss - 1.96 * se, logLoss + 1.96 * se))
            if let auc = OutcomeStatistics.auc(rows: window.classScores, width: max(pending.width, 2), truth: window.truths) {
                let interval = auc.standardError.map { (max(0, auc.value - 1.96 * $0), min(1, auc.value + 1.96 * $0)) }
                figure("auc", auc.value, interval)
            } else {
                figure("auc", nil, nil)
            }
        } else {
            let mae = window.errors.mean, maeSE = window.errors.standardError
            figure("mae", mae, (mae - 1.96 * maeSE, mae + 1.96 * maeSE))
            let mse = window.squaredErrors.mean, mseSE = window.squaredErrors.standardError
            figure("rmse", mse.squareRoot(), (max(0, mse - 1.96 * mseSE).squareRoot(), (mse + 1.96 * mseSE).squareRoot()))
        }
        writer.raw(",\"agreement\":")
        if window.route == .shadow, window.paired > 0 { writer.double(Double(window.agreed) / Double(window.paired)) } else { writer.raw("null") }
        writer.raw(",\"test\":")
        if let rule = settings.promoteWhen, window.route != .primary, let verdict = currentVerdict(rule) {
            let (low, high, word) = verdict.parts
            writer.raw("{\"metric\":")
            writer.string(rule.metric.rawValue)
            writer.raw(",\"low\":")
            writer.double(low)
            writer.raw(",\"high\":")
            writer.double(high)
            writer.raw(",\"verdict\":")
            writer.string(word)
            writer.raw("}")
        } else {
            writer.raw("null")
        }
        writer.raw(",\"ts\":")
        writer.string(rfc3339Now())
        writer.raw("}")
        return writer.array
    }

    // MARK: Serving changes and the rule

    /// A new serving plan: windows of the old models close (returned for publishing), the trial
    /// restarts, and outcomes of earlier predictions no longer count.
    func servingChanged(primary: BundleManifest, candidate: BundleManifest?, mode: RolloutMode?, nowMs: Int64) -> [[UInt8]] {
        let closing = closeWindows(nowMs: nowMs, force: true)
        epoch &+= 1
        trial = [RunningMoments](repeating: RunningMoments(), count: Route.allCases.count)
        pairedDifferences = RunningMoments()
        decided = false
        self.mode = mode
        versions = [primary.version, mode == .canary ? candidate?.version : nil, mode == .shadow ? candidate?.version : nil]
        labelColumns = [columns(for: primary), mode == .canary ? columns(for: candidate) : nil, mode == .shadow ? columns(for: candidate) : nil]
        return closing
    }

    /// The rule's verdict on the candidate so far (nil before enough outcomes, or without a candidate).
    func currentVerdict(_ rule: PromotionRule) -> SequentialTest.Verdict? {
        let alpha = 1 - rule.confidence
        switch mode {
        case .canary?:
            return SequentialTest.compare(a: trial[Int(Route.primary.rawValue)], b: trial[Int(Route.canary.rawValue)],
                                          margin: rule.margin, alpha: alpha, minimum: rule.minimumOutcomes)
        case .shadow?:
            return SequentialTest.comparePaired(differences: pairedDifferences, margin: rule.margin, alpha: alpha, minimum: rule.minimumOutcomes)
        default:
            return nil
        }
    }

    /// A decision to act on, once: promote or roll back, with the reason for the status record.
    func decision(_ rule: PromotionRule) -> (action: ControlAction, reason: String, evidence: [(String, Double)])? {
        guard !decided, let verdict = currentVerdict(rule) else { return nil }
        let route: Route = mode == .shadow ? .shadow : .canary
        let n = trial[Int(route.rawValue)].count, primaryN = trial[Int(Route.primary.rawValue)].count
        let (low, high, _) = verdict.parts
        let difference = String(format: "[%.4f, %.4f]", low, high)
        let counts = mode == .shadow ? "\(pairedDifferences.count) paired outcomes" : "\(n) \(route.name) and \(primaryN) primary outcomes"
        let sign = rule.metric.higherIsBetter ? "" : " (loss: primary minus \(route.name))"
        let evidence: [(String, Double)] = [("difference_low", low), ("difference_high", high), ("margin", rule.margin),
                                            ("trial_outcomes", Double(mode == .shadow ? pairedDifferences.count : n)),
                                            ("primary_outcomes", Double(mode == .shadow ? pairedDifferences.count : primaryN))]
        switch verdict {
        case .promote:
            decided = true
            return (.promote, "outcome test: \(route.name) \(rule.metric.rawValue) is not worse than the primary's by more than \(rule.margin) at \(Int((rule.confidence * 100).rounded()))% (difference \(route.name) minus primary\(sign) in \(difference) after \(counts))", evidence)
        case .rollBack:
            decided = true
            return (.rollback, "outcome test: \(route.name) \(rule.metric.rawValue) is worse than the primary's by more than \(rule.margin) at \(Int((rule.confidence * 100).rounded()))% (difference \(route.name) minus primary\(sign) in \(difference) after \(counts))", evidence)
        case .undecided:
            return nil
        }
    }
}

extension SequentialTest.Verdict {
    var parts: (Double, Double, String) {
        switch self {
        case .promote(let low, let high): return (low, high, "promote")
        case .rollBack(let low, let high): return (low, high, "roll-back")
        case .undecided(let low, let high): return (low, high, "undecided")
        }
    }
}

/// What became of a feedback record (`weir_outcomes_total{result}`).
enum OutcomeResult: UInt8 {
    /// Joined to a remembered prediction and counted in its route's window.
    case joined
    /// No remembered prediction has its id or key (another worker's, or it left the ring).
    case unmatched
    /// Its prediction was made before the last serving change.
    case stale
    /// A label the model does not have.
    case unknownLabel
    /// Not an object with a label and an id (or key) Weir can read.
    case unreadable

    var name: String { ["joined", "unmatched", "stale", "unknown-label", "unreadable"][Int(rawValue)] }
}

/// One route's open outcome window.
struct OutcomeWindow {
    let route: Route
    var startMs: Int64 = 0
    var outcomes = 0
    var correct = 0
    /// Log losses (classifiers) or absolute errors (regressors), and squared errors.
    var errors = RunningMoments()
    var squaredErrors = RunningMoments()
    /// Classifiers: every class's score (a binary one's as [1 − p, p]) and the observed class, per outcome (AUC).
    var classScores: [Float] = []
    var truths: [Int] = []
    /// Shadow: rows whose primary answer is known too, and how many of them agreed.
    var paired = 0
    var agreed = 0

    init(route: Route) { self.route = route }

    /// Empties the window for the next one, keeping its arrays' storage.
    mutating func reset() {
        startMs = 0
        outcomes = 0
        correct = 0
        errors = RunningMoments()
        squaredErrors = RunningMoments()
        classScores.removeAll(keepingCapacity: true)
        truths.removeAll(keepingCapacity: true)
        paired = 0
        agreed = 0
    }

    mutating func add(correct isCorrect: Bool, logLoss: Double, truth: Int, scores: UnsafePointer<Float>, width: Int) {
        outcomes += 1
        if isCorrect { correct += 1 }
        errors.add(logLoss)
        truths.append(truth)
        if width == 1 {
            classScores.append(1 - scores[0])
            classScores.append(scores[0])
        } else {
            classScores.append(contentsOf: UnsafeBufferPointer(start: scores, count: width))
        }
    }

    mutating func add(error: Double) {
        outcomes += 1
        errors.add(abs(error))
        squaredErrors.add(error * error)
    }

    mutating func noteAgreement(_ agrees: Bool) {
        paired += 1
        if agrees { agreed += 1 }
    }
}

extension RunningMoments {
    /// The standard error of the mean.
    var standardError: Double { count > 1 ? (variance / Double(count)).squareRoot() : .nan }
}
