import WeirControl
import WeirKafka

/// The worker's side of `feedback-topic`: a reader of every partition of the topic (from its end
/// at start, no group: an outcome may arrive on any partition, whichever worker made its
/// prediction) and the tracker it feeds. The poll loop publishes what it returns. Poll thread only.
final class OutcomeFeed {
    let tracker: OutcomeTracker
    private let consumer: KafkaConsumer
    private let topic: String
    private let settings: WorkerSettings
    private let log: WorkerLog
    private var timer = Periodic(milliseconds: 10)

    /// Nil without a feedback topic. A promotion rule on a metric of the other task (a regression
    /// metric for a classifier) is refused, naming the setting.
    init?(settings: WorkerSettings, manifest: BundleManifest, signal: EventSignal, metrics: WorkerMetrics, log: WorkerLog) throws {
        guard let topic = settings.feedbackTopic else { return nil }
        if let rule = settings.promoteWhen, rule.metric.isClassification != manifest.outputs.isClassification {
            let fitting = PromotionRule.Metric.allCases.filter { $0.isClassification == manifest.outputs.isClassification }.map(\.rawValue)
            throw WorkerError("control.promote-when: \(rule.metric.rawValue) is not a \(manifest.outputs.task) metric; \(manifest.name) is a \(manifest.outputs.task) model, use \(fitting.joined(separator: " or "))",
                              kind: .configuration)
        }
        tracker = OutcomeTracker(settings: settings, manifest: manifest, metrics: metrics)
        var configuration = ConsumerConfiguration(bootstrapServers: settings.brokers!, groupID: "weir-feedback-\(settings.workerID)")
        configuration.clientID = settings.workerID
        configuration.properties = settings.kafkaProperties(for: "consumer")
        configuration.autoOffsetReset = .latest
        consumer = try KafkaConsumer(configuration: configuration, signal: signal, onError: { [log] error in
            log("kafka feedback consumer (\(topic)): \(error)", level: error.isFatal ? .error : .warning)
        })
        self.topic = topic
        self.settings = settings
        self.log = log
    }

    /// Assigns every partition from its end (outcomes of predictions made from now on) and starts
    /// the trial of what `routing` serves.
    func follow(_ routing: Routing) throws {
        let partitions: Int
        do { partitions = try consumer.partitionCount(topic) } catch {
            throw WorkerError("feedback-topic: cannot read the metadata of '\(topic)': \(error)", kind: .configuration)
        }
        try consumer.assign((0..<Int32(partitions)).map { TopicPartitionOffset(topic, $0, -1) })  // -1: the end
        _ = servingChanged(routing)
        log("feedback: joining outcomes from \(topic) (\(partitions) partitions) by \(settings.feedbackJoin.rawValue); up to \(settings.feedbackMaxPending) predictions remembered, \(tracker.pending.bytesPerPrediction) bytes each")
    }

    /// A new serving plan: the windows of the models that served before, to publish.
    func servingChanged(_ routing: Routing) -> [[UInt8]] {
        tracker.servingChanged(primary: routing.primary.bundle.manifest, candidate: routing.candidate?.bundle.manifest, mode: routing.mode,
                               nowMs: wallClockMicroseconds() / 1000)
    }

    /// Every 10 ms: joins the feedback that arrived; returns the windows that are due, and the
    /// promotion rule's decision once it has one.
    func take(at now: UInt64) -> (windows: [[UInt8]], decision: (action: ControlAction, reason: String, evidence: [(String, Double)])?) {
        guard timer.isDue(now) else { return ([], nil) }
        let nowMs = wallClockMicroseconds() / 1000
        consumer.poll(maxMessages: 1_000, timeoutMs: 0) { batch in
            for message in batch { tracker.receive(message, nowMs: nowMs) }
        }
        return (tracker.closeWindows(nowMs: nowMs), settings.promoteWhen.flatMap { tracker.decision($0) })
    }

    /// At stop: every window with outcomes, to publish.
    func closeWindows() -> [[UInt8]] { tracker.closeWindows(nowMs: wallClockMicroseconds() / 1000, force: true) }

    func close() { try? consumer.close() }
}
