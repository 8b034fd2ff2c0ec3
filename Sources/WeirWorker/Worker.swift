import Foundation
import Synchronization
import WeirCodec
import WeirControl
import WeirDrift
import WeirKafka
import WeirModel

/// Why a worker stopped on its own.
public struct WorkerError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One Weir worker: consumes events, answers each with a prediction or a dead letter, and commits
/// only what was delivered. Everything Kafka-facing runs on the thread that calls `run()` (the poll
/// thread): polling, batching, inference, producing, delivery reports, commits, pause/resume and
/// rebalances, so librdkafka 2.0.2 never sees batch consume concurrently with any of them.
public final class Worker: @unchecked Sendable {
    public let settings: WorkerSettings
    /// The bundle the worker was started with (`--model`); the control topic may replace it.
    public let bundle: ModelBundle
    public let metrics: WorkerMetrics
    let log: WorkerLog
    /// Keeps librdkafka's lines of this worker's clients in `log` while `run` is running.
    private var kafkaLogRoute: KafkaLogRoute?

    private let signal = EventSignal()
    private var consumer: KafkaConsumer!
    private var producer: KafkaProducer!
    private var outputTopic: ProducerTopic!
    private var deadLetterTopic: ProducerTopic!
    private var driftTopic: ProducerTopic?
    private var statusTopic: ProducerTopic?
    private var shadowTopic: ProducerTopic?

    // What answers events: the primary model, and a canary or shadow candidate on trial. Swapped
    // only between two batches, on the poll thread (see `applyPlan`).
    @exclusivity(unchecked) private var primary: ServingModel
    @exclusivity(unchecked) private var candidate: ServingModel?
    @exclusivity(unchecked) private var candidateMode: RolloutMode?
    /// Canary keys are those whose bucket (0..<10000) is below this.
    @exclusivity(unchecked) private var canaryThreshold = 0
    private var operatorPaused = false
    private let control: ControlPlane
    private let serving: Mutex<(primary: String, candidate: String?)>
    /// The last few event values the primary model decoded: a candidate's schema check and warm-up.
    private var recentEvents: [[UInt8]] = []
    private var recentNext = 0
    private var lastControlAt: UInt64 = 0
    private var lastTrialCheckAt: UInt64 = 0

    @exclusivity(unchecked) private var driftRows: [Int32] = []
    private var driftOutputs: AnswerWriter.Outputs?
    private let modelKey: [UInt8]

    // The open batch. Hot state is touched only on the poll thread: `@exclusivity(unchecked)`
    // spares it the runtime's per-access exclusivity bookkeeping.
    @exclusivity(unchecked) private var pending: [PendingEvent] = []
    @exclusivity(unchecked) private var batchOpenedAt: UInt64 = 0
    @exclusivity(unchecked) private var polled: [RetainedMessage] = []

    // Offset tracking.
    @exclusivity(unchecked) private var tracks: [UInt64: PartitionTrack] = [:]
    private var trackByPartition: [TopicPartition: PartitionTrack] = [:]
    private var nextTrackIndex: UInt64 = 1
    @exclusivity(unchecked) private var lastTrack: PartitionTrack?
    /// The track of the last delivery report (reports come in runs per partition); cleared with
    /// `lastTrack` whenever tracks are removed, so a late report of a revoked partition is ignored.
    @exclusivity(unchecked) private var lastDeliveredTrack: PartitionTrack?
    @exclusivity(unchecked) private var lastTopicPointer: UnsafePointer<CChar>?
    @exclusivity(unchecked) private var inFlight = 0
    private var assigned = Set<TopicPartition>()
    private var paused = Set<TopicPartition>()
    private var isPausedForBackpressure = false
    private var lastCommitAt: UInt64 = 0
    /// When the poll last returned events, and when the fetcher was last woken (`wakeStalledFetcher`).
    private var lastConsumedAt: UInt64 = 0
    private var lastFetcherWakeAt: UInt64 = 0
    private var fetcherWakeRotation = 0
    private var lastGaugesAt: UInt64 = 0
    private var retries: [RetryRecord] = []
    /// `guarantee: exactly-once`: outputs and input offsets are committed in one transaction per
    /// commit interval (docs/reliability.md).
    private let transactional: Bool
    /// A transaction is open (in exactly-once mode one always is while the worker runs).
    private var inTransaction = false
    /// An output of the open transaction failed: it must be aborted and its events answered again.
    private var transactionBroken = false
    /// Set once shutdown has committed the last transaction: no new one begins.
    private var transactionsClosed = false
    /// Per owned partition, the next offset the last committed transaction recorded: where an
    /// abort rewinds to (the group's committed offset serves partitions not yet in one).
    private var transactionCommitted: [TopicPartition: Int64] = [:]
    @exclusivity(unchecked) private var latencyScratch: [UInt64] = []
    private var failure: WorkerError?

    private let stopRequested = Atomic<Bool>(false)
    /// Tests: resume every partition inside librdkafka on the next step without telling the
    /// worker, as librdkafka 2.0.2 itself can just after an incremental assign.
    private let resumeBehindTheWorker = Atomic<Bool>(false)
    private let assignedCount = Atomic<Int>(0)
    private let running = Atomic<Bool>(false)
    private let committedAll = Atomic<Bool>(false)

    /// An event in the open batch: the consumed message is kept (zero-copy) until it is answered.
    struct PendingEvent {
        let message: RetainedMessage
        let track: PartitionTrack
        let sequence: Int64
        let id: EventID?
        let receivedAt: UInt64
        /// The model answering it, and its row in that model's batch matrix.
        let route: Route
        let row: Int32
        /// Its row in the shadow candidate's matrix; -1 when there is no shadow (or it could not read it).
        let shadowRow: Int32
    }

    /// An output whose delivery failed, copied to be sent again.
    struct RetryRecord {
        let topic: ProducerTopic
        let key: [UInt8]?
        let value: [UInt8]?
        let headers: [(UnsafePointer<CChar>?, String, [UInt8]?)]
        let context: UInt
    }

    /// Prepares a worker (clients are created by `run`). `log` receives one record per notable
    /// event, stamped with the worker id, model and version (and partition where there is one),
    /// including librdkafka's own lines for this worker's clients while `run` is running.
    public init(settings: WorkerSettings, bundle: ModelBundle, metrics: WorkerMetrics = WorkerMetrics(),
                log: @escaping @Sendable (LogRecord) -> Void = { _ in }) throws {
        guard settings.brokers != nil else { throw WorkerError("brokers: not set; the worker needs a bootstrap address") }
        self.settings = settings
        self.bundle = bundle
        self.metrics = metrics
        transactional = settings.guarantee == "exactly-once"
        let log = WorkerLog(worker: settings.workerID, model: bundle.manifest.name, version: bundle.manifest.version, sink: log)
        self.log = log
        let base = try ServingModel(bundle: bundle, ref: BundleRef(version: bundle.manifest.version, location: bundle.directory.path,
                                                                   sha256: bundle.id),
                                    settings: settings, log: { log($0) })
        primary = base
        control = try ControlPlane(settings: settings, base: base, metrics: metrics, signal: signal, log: log)
        serving = Mutex((bundle.manifest.version, nil))
        pending.reserveCapacity(settings.batchMaxEvents)
        polled.reserveCapacity(settings.batchMaxEvents)
        latencyScratch.reserveCapacity(1024)
        modelKey = Array(bundle.manifest.name.utf8)
        recordServing()
    }

    /// Ready: the model is loaded (always, once constructed) and the consumer owns partitions.
    public var isReady: Bool { running.load(ordering: .relaxed) && assignedCount.load(ordering: .relaxed) > 0 }

    /// Whether every consumed event is answered, delivered and its offset committed (benchmarks).
    public var committedEverything: Bool { committedAll.load(ordering: .relaxed) }

    /// Whether `run` is in its loop.
    public var isRunning: Bool { running.load(ordering: .relaxed) }

    /// The version answering on the primary route, and the candidate's (canary or shadow), if any.
    public var servingVersions: (primary: String, candidate: String?) { serving.withLock { $0 } }

    /// Tests only: makes librdkafka resume every owned partition while the worker still holds them
    /// paused, which librdkafka 2.0.2 does on its own after an incremental assign (docs/reliability.md).
    func resumeInsideLibrdkafkaForTesting() {
        resumeBehindTheWorker.store(true, ordering: .relaxed)
        signal.raise()
    }

    /// Asks `run` to stop: finish the batch, flush, commit, leave the group. Safe from any thread.
    public func stop() {
        stopRequested.store(true, ordering: .relaxed)
        signal.raise()
    }

    /// Runs until `stop()` (returns normally) or a fatal error (throws). Call from one thread.
    public func run() throws {
        Thread.current.name = "weir-poll"
        kafkaLogRoute = KafkaLog.route(clientID: settings.workerID) { [log] line in log.kafka(line) }
        defer { kafkaLogRoute = nil }
        try openClients()
        if settings.controlTopic != nil {
            try control.replay(brokers: settings.brokers!, properties: kafkaProperties(for: "consumer"))
            applyPlan(control.plan)
        }
        running.store(true, ordering: .relaxed)
        defer { running.store(false, ordering: .relaxed) }
        publishStatus(StatusNote(state: nil, reason: "started", message: nil))
        try consumer.subscribe(settings.input)
        log("worker \(settings.workerID): serving \(bundle.manifest.name) \(primary.version) from \(settings.input.joined(separator: ",")) to \(settings.output)")
        while !stopRequested.load(ordering: .relaxed) && failure == nil {
            step()
        }
        shutDown()
        if let failure { throw failure }
    }

    private func openClients() throws {
        var consumerConfig = ConsumerConfiguration(bootstrapServers: settings.brokers!, groupID: settings.group)
        consumerConfig.clientID = settings.workerID
        consumerConfig.properties = kafkaProperties(for: "consumer")
        if consumerConfig.properties["session.timeout.ms"] == nil { consumerConfig.sessionTimeoutMs = 10_000 }
        // librdkafka backs off reconnects up to 10 s: after a broker restart the worker would idle
        // that long. A worker has two connections per broker; retrying each second costs nothing.
        if consumerConfig.properties["reconnect.backoff.max.ms"] == nil { consumerConfig.properties["reconnect.backoff.max.ms"] = "1000" }
        var producerConfig = ProducerConfiguration(bootstrapServers: settings.brokers!)
        producerConfig.clientID = settings.workerID
        // The worker hands the producer a whole batch at once (it already waited up to
        // batch.max-delay-ms), so a long linger would only add its own wait to every answer:
        // 1 ms instead of librdkafka's 5 cut the p50 event-to-delivery latency from 19.5 to 16 ms
        // at 10,000 events/s (`weir-bench latency`). `kafka.producer.linger.ms` overrides it.
        producerConfig.lingerMs = 1
        producerConfig.properties = kafkaProperties(for: "producer")
        if producerConfig.properties["reconnect.backoff.max.ms"] == nil { producerConfig.properties["reconnect.backoff.max.ms"] = "1000" }
        if transactional {
            // One id per worker: a restarted worker with the same worker-id fences its zombie.
            producerConfig.transactionalID = transactionalID
            if consumerConfig.properties["isolation.level"] == nil { consumerConfig.properties["isolation.level"] = "read_committed" }
        }
        let rebalance = RebalanceHandlers(
            partitionsAssigned: { [unowned self] partitions in self.assign(partitions) },
            partitionsRevoked: { [unowned self] partitions, lost in self.revoke(partitions, lost: lost) })
        consumer = try KafkaConsumer(configuration: consumerConfig, signal: signal, rebalance: rebalance,
                                     onError: { [log] error in
                                         log("kafka consumer: \(error)", level: error.isFatal ? .error : .warning)
                                     },
                                     onCommitFailure: { [unowned self] offsets, error in self.commitFailed(offsets, error) })
        producer = try KafkaProducer(configuration: producerConfig, serving: .callerThread(wake: signal),
                                     onDelivery: { [unowned self] reports in self.delivered(reports) },
                                     onError: { [log] error in log("kafka producer: \(error)", level: error.isFatal ? .error : .warning) })
        if transactional {
            try producer.initTransactions()
            try producer.beginTransaction()
            inTransaction = true
        }
        outputTopic = try producer.topic(settings.output)
        deadLetterTopic = try producer.topic(settings.dlq)
        if let topic = settings.driftTopic { driftTopic = try producer.topic(topic) }
        if let topic = settings.statusTopic { statusTopic = try producer.topic(topic) }
        if let topic = settings.shadowTopic { shadowTopic = try producer.topic(topic) }
    }

    /// `kafka.<property>` applies to both clients; `kafka.consumer.<property>` and
    /// `kafka.producer.<property>` to one (so consumer-only settings do not warn on the producer).
    private func kafkaProperties(for client: String) -> [String: String] {
        var properties = [String: String]()
        for (key, value) in settings.kafka where !key.hasPrefix("consumer.") && !key.hasPrefix("producer.") {
            properties[key] = value
        }
        for (key, value) in settings.kafka where key.hasPrefix(client + ".") {
            properties[String(key.dropFirst(client.count + 1))] = value
        }
        return properties
    }

    // MARK: The loop

    private func step() {
        if resumeBehindTheWorker.load(ordering: .relaxed) {
            resumeBehindTheWorker.store(false, ordering: .relaxed)
            try? consumer.resume(Array(assigned))
        }
        let now = monotonicNanoseconds()
        var timeoutMs = 100
        if !pending.isEmpty {
            let deadline = batchOpenedAt + UInt64(settings.batchMaxDelayMs) * 1_000_000
            timeoutMs = deadline > now ? Int((deadline - now + 999_999) / 1_000_000) : 0
        }
        let room = settings.batchMaxEvents - pending.count
        let consumed = consumer.poll(maxMessages: max(room, 1), timeoutMs: timeoutMs, retainingInto: &polled)
        if consumed > 0 {
            take(polled)
            lastConsumedAt = monotonicNanoseconds()
        } else {
            wakeStalledFetcher()
        }
        polled.removeAll(keepingCapacity: true)
        producer.serveDeliveryReports()
        let after = monotonicNanoseconds()
        if !pending.isEmpty &&
            (pending.count >= settings.batchMaxEvents || after >= batchOpenedAt + UInt64(settings.batchMaxDelayMs) * 1_000_000) {
            closeBatch()
        }
        if !retries.isEmpty { resendFailed() }
        if settings.controlTopic != nil && after - lastControlAt >= 10_000_000 {
            lastControlAt = after
            control.poll(recent: { recentEvents })
        }
        if after - lastTrialCheckAt >= 100_000_000 {
            lastTrialCheckAt = after
            checkTrial()
        }
        if let ready = control.ready {
            // Between two batches: answer what is open with the old models, then swap.
            closeBatch()
            applyPlan(ready.plan)
            control.didApply()
            publishStatus(ready.note)
        }
        if !control.outbox.isEmpty {
            for note in control.outbox { publishStatus(note) }
            control.outbox.removeAll()
        }
        applyBackpressure()
        if after - lastCommitAt >= UInt64(settings.commitIntervalMs) * 1_000_000 || transactionBroken {
            lastCommitAt = after
            if transactional { commitTransaction() } else { commit(async: true) }
        }
        committedAll.store(inFlight == 0 && pending.isEmpty && !trackByPartition.values.contains { $0.hasUncommitted },
                           ordering: .relaxed)
        if after - lastGaugesAt >= 1_000_000_000 {
            lastGaugesAt = after
            updateGauges()
        }
        if let fatal = producer.fatalError(), failure == nil { failure = producerFailure(fatal) }
    }

    private func take(_ messages: [RetainedMessage]) {
        metrics.eventsIn.increment(by: Int64(messages.count))
        metrics.consumedTotal.add(messages.count, ordering: .relaxed)
        let now = monotonicNanoseconds()
        // librdkafka 2.0.2 can resume the partitions of an incremental assign when it starts their
        // fetchers, undoing the pause the worker issued right after the assignment (under
        // backpressure or an operator pause). A message from a partition the worker holds paused
        // shows it: the partition no longer counts as paused, so this step's `applyBackpressure`
        // pauses it again. Its messages are answered as usual, so nothing is lost or repeated.
        var resumedBehindTheWorker: [TopicPartition] = []
        for retained in messages {
            let message = retained.message
            let track = trackFor(message)
            if !paused.isEmpty, paused.remove(track.partition) != nil { resumedBehindTheWorker.append(track.partition) }
            inFlight += 1
            let sequence = track.track(offset: message.offset, timestampMs: message.timestamp?.milliseconds ?? 0)
            guard let value = message.value else {
                metrics.tombstones.increment()
                metrics.tombstoneTotal.add(1, ordering: .relaxed)
                finish(track, sequence, deliveredAt: nil)
                retained.release()
                continue
            }
            if pending.isEmpty { batchOpenedAt = now }
            var route = Route.primary
            // Unowned: `primary` and `candidate` hold the models for the whole call.
            unowned(unsafe) var model = primary
            if let candidate, candidateMode == .canary, let key = message.key, CanaryRouting.bucket(key) < canaryThreshold {
                route = .canary
                model = candidate
            }
            let row = model.count
            switch model.decoder.decode(value, into: model.rows + row * model.width) {
            case .success(let id):
                if model.drift != nil {
                    let flags = model.missingFlags + row * model.width
                    if model.decoder.defaultedCount == 0 {
                        flags.update(repeating: false, count: model.width)
                    } else {
                        for feature in 0..<model.width { flags[feature] = model.decoder.wasDefaulted(feature) }
                    }
                }
                model.count += 1
                var shadowRow: Int32 = -1
                if candidateMode == .shadow, let shadow = candidate {
                    if case .success = shadow.decoder.decode(value, into: shadow.rows + shadow.count * shadow.width) {
                        shadowRow = Int32(shadow.count)
                        shadow.count += 1
                    } else {
                        // The primary reads this event and the candidate cannot: a candidate failure.
                        shadow.trialEvents += 1
                        shadow.trialErrors += 1
                    }
                }
                pending.append(PendingEvent(message: retained, track: track, sequence: sequence, id: id, receivedAt: now,
                                            route: route, row: Int32(row), shadowRow: shadowRow))
            case .failure(let failure):
                sendDeadLetter(message, from: model, code: failure.code.rawValue, reason: failure.message,
                               context: deliveryContext(track: track.index, sequence: sequence))
                retained.release()
            }
            if pending.count >= settings.batchMaxEvents { closeBatch() }
        }
        if !resumedBehindTheWorker.isEmpty {
            log("librdkafka resumed paused partitions \(resumedBehindTheWorker.map(\.description).sorted().joined(separator: " ")): pausing them again",
                level: .warning, partitions: resumedBehindTheWorker)
        }
    }

    private func trackFor(_ message: KafkaMessage) -> PartitionTrack {
        let topicPointer = message.topicNamePointer
        if let lastTrack, lastTopicPointer == topicPointer, lastTrack.partition.partition == message.partition {
            return lastTrack
        }
        let key = TopicPartition(message.topic, message.partition)
        let track: PartitionTrack
        if let existing = trackByPartition[key] {
            track = existing
        } else {
            track = PartitionTrack(partition: key, index: nextTrackIndex)
            nextTrackIndex += 1
            trackByPartition[key] = track
            tracks[track.index] = track
        }
        lastTrack = track
        lastTopicPointer = topicPointer
        return track
    }

    // MARK: Inference and outputs

    /// One model's run over its rows of the batch.
    private struct RunResult {
        var run: ModelRun?
        var error: (any Error)?
    }

    private func runRows(of model: ServingModel) -> RunResult {
        guard model.count > 0 else { return RunResult() }
        let started = monotonicNanoseconds()
        defer { model.noteInference(nanoseconds: monotonicNanoseconds() - started) }
        do { return RunResult(run: try model.run()) } catch { return RunResult(error: error) }
    }

    /// Runs the open batch through its models and sends one prediction (or model-error dead
    /// letter) per event, in consumption order; shadow records follow their primary answer.
    private func closeBatch() {
        let count = pending.count
        guard count > 0 else { return }
        metrics.batchSize.record(count)
        let started = monotonicNanoseconds()
        let primaryResult = runRows(of: primary)
        let candidateResult = candidate.map { runRows(of: $0) } ?? RunResult()
        let finished = monotonicNanoseconds()
        metrics.inferenceTime.recordNanoseconds(Int64(finished - started))
        rememberRecentEvent()
        var predicted = 0
        // Per event, nothing below copies a struct holding references (an event, a run result) or
        // takes a model out of an optional: each such copy costs reference-count traffic per event.
        let primaryError = primaryResult.error, candidateError = candidateResult.error
        let primaryModel = primary, candidateModel = candidate
        let primaryDrift = primary.drift
        withOutputs(primary, primaryResult) { primaryOutputs in
            withOutputs(candidate, candidateResult) { candidateOutputs in
                driftOutputs = primaryOutputs
                defer {
                    flushDriftRows()
                    driftOutputs = nil
                }
                pending.withUnsafeBufferPointer { events in
                    for index in events.indices {
                        let message = events[index].message.message
                        let context = deliveryContext(track: events[index].track.index, sequence: events[index].sequence)
                        let isPrimary = events[index].route == .primary
                        unowned(unsafe) let model = isPrimary ? primaryModel : candidateModel.unsafelyUnwrapped
                        model.trialEvents += 1
                        if let error = isPrimary ? primaryError : candidateError {
                            model.trialErrors += 1
                            sendDeadLetter(message, from: model, code: "model-error", reason: "the model failed on this batch: \(error)",
                                           context: context)
                        } else if let problem = model.answers.encodePrediction(
                            row: Int(events[index].row), outputs: isPrimary ? primaryOutputs : candidateOutputs, message: message,
                            id: events[index].id, topicJSON: events[index].track.topicJSON,
                            latencyMicros: (finished - events[index].receivedAt) / 1000) {
                            model.trialErrors += 1
                            sendDeadLetter(message, from: model, code: "model-error", reason: problem, context: context)
                        } else {
                            var headers = OutgoingHeaders(takingFrom: message)
                            model.answers.appendPredictionHeaders(to: &headers, route: events[index].route)
                            send(to: outputTopic, writer: model.answers.writer, key: message.key, headers: headers, context: context)
                            predicted += 1
                            if isPrimary, let primaryDrift { observe(row: Int(events[index].row), event: events[index], drift: primaryDrift) }
                        }
                        if events[index].shadowRow >= 0, let shadow = candidateModel {
                            sendShadow(events[index], shadow, candidateResult, candidateOutputs, finished)
                        }
                        events[index].message.release()
                    }
                }
            }
        }
        metrics.predictions.increment(by: Int64(predicted))
        metrics.predictionTotal.add(predicted, ordering: .relaxed)
        pending.removeAll(keepingCapacity: true)
        primary.count = 0
        candidate?.count = 0
    }

    private func withOutputs(_ model: ServingModel?, _ result: RunResult, _ body: (AnswerWriter.Outputs?) -> Void) {
        if let model, let run = result.run { model.answers.withOutputs(of: run, body) } else { body(nil) }
    }

    /// The shadow candidate's answer to an event the primary answered: best effort to the shadow
    /// topic (not retried, does not hold back commits); failures count against the candidate.
    private func sendShadow(_ event: PendingEvent, _ shadow: ServingModel, _ result: RunResult,
                            _ outputs: AnswerWriter.Outputs?, _ finished: UInt64) {
        shadow.trialEvents += 1
        let message = event.message.message
        guard result.error == nil, shadow.answers.encodePrediction(
            row: Int(event.shadowRow), outputs: outputs, message: message, id: event.id, topicJSON: event.track.topicJSON,
            latencyMicros: (finished - event.receivedAt) / 1000) == nil, let shadowTopic else {
            shadow.trialErrors += 1
            return
        }
        var headers = OutgoingHeaders(copying: message)
        shadow.answers.appendPredictionHeaders(to: &headers, route: .shadow)
        do {
            try producer.send(to: shadowTopic, key: message.key, value: shadow.answers.writer.bytes, headers: headers, context: 0)
            metrics.shadowPredictions.increment()
            metrics.shadowTotal.add(1, ordering: .relaxed)
        } catch {
            log("cannot produce a shadow record to '\(shadowTopic.name)': \(error)", level: .warning)
        }
    }

    /// Keeps copies of a few events per batch that the primary model read (a ring of 64).
    private func rememberRecentEvent() {
        let step = max(pending.count / 4, 1)
        for index in stride(from: 0, to: pending.count, by: step) where pending[index].route == .primary {
            guard let value = pending[index].message.message.value else { continue }
            let copy = Array(value)
            if recentEvents.count < 64 { recentEvents.append(copy) } else { recentEvents[recentNext] = copy }
            recentNext = (recentNext + 1) % 64
        }
    }

    /// Notes one answered event in the drift window; its values are added in column runs by
    /// `flushDriftRows` (before a window closes, and after the batch).
    private func observe(row: Int, event: PendingEvent, drift: DriftTap) {
        let message = event.message.message
        let timestamp = message.timestamp?.milliseconds ?? 0
        let window = drift.window
        if window.closesBefore(timestampMs: timestamp) {
            flushDriftRows()
            publishDrift(of: primary)
        }
        window.noteEvent(timestampMs: timestamp, topic: event.track.partition.topic, partition: message.partition,
                         offset: message.offset)
        driftRows.append(Int32(row))
    }

    /// Adds the noted rows' features and outputs to the primary model's open window.
    private func flushDriftRows() {
        guard let drift = primary.drift, !driftRows.isEmpty, let outputs = driftOutputs else { return }
        let started = monotonicNanoseconds()
        defer { metrics.addDriftTime(nanoseconds: monotonicNanoseconds() - started) }
        driftRows.withUnsafeBufferPointer { indices in
            drift.window.addFeatureRows(primary.rows, rows: indices, missing: primary.missingFlags)
            drift.window.addPredictionRows(outputs.values.baseAddress!, stride: outputs.width, rows: indices)
        }
        driftRows.removeAll(keepingCapacity: true)
    }

    /// Closes `model`'s open drift window and produces its record (keyed by model name). Drift
    /// records are not answers: their delivery does not hold back commits.
    private func publishDrift(of model: ServingModel) {
        guard let drift = model.drift, let driftTopic, !drift.window.isEmpty else { return }
        let started = monotonicNanoseconds()
        defer { metrics.addDriftTime(nanoseconds: monotonicNanoseconds() - started) }
        let result = drift.window.close()
        drift.encode(result)
        metrics.recordDrift(result)
        do {
            try modelKey.withUnsafeBytes { key in
                try producer.send(to: driftTopic, key: key, value: drift.writer.bytes, context: 0)
            }
        } catch {
            log("cannot produce a drift record to '\(driftTopic.name)': \(error)", level: .warning)
        }
    }

    private func send(to topic: ProducerTopic, writer: JSONWriter, key: UnsafeRawBufferPointer?, headers: consuming OutgoingHeaders,
                      context: UInt) {
        do {
            try producer.send(to: topic, key: key, value: writer.bytes, headers: headers, context: context)
        } catch {
            sendFailed(to: topic.name, error)
        }
    }

    /// A send the producer refused. In a transaction that has failed, sends fail too: abort and
    /// answer again. A fenced producer stops the worker naming the fencing, whichever call saw it
    /// first (a send can, right after the transaction's end was refused).
    private func sendFailed(to topic: String, _ error: KafkaError) {
        if isFencedTransaction(error) {
            if failure == nil { failure = producerFailure(error) }
        } else if transactional && !error.isFatal {
            transactionBroken = true
        } else if failure == nil {
            failure = WorkerError("cannot produce to '\(topic)': \(error)")
        }
    }

    private func sendDeadLetter(_ message: KafkaMessage, from model: ServingModel, code: String, reason: String, context: UInt) {
        var headers = OutgoingHeaders(copying: message)
        model.answers.appendDeadLetterHeaders(to: &headers, code: code, reason: reason, message: message)
        metrics.deadLetter(code: code)
        let value = message.value ?? UnsafeRawBufferPointer(start: nil, count: 0)
        do {
            try producer.send(to: deadLetterTopic, key: message.key, value: value, headers: headers, context: context)
        } catch where error.code == .messageTooLarge {
            // Over the producer's message.max.bytes: the dead letter goes without the value (the
            // source headers say where to find it) rather than stopping the worker on it.
            var headers = OutgoingHeaders(copying: message)
            model.answers.appendDeadLetterHeaders(to: &headers, code: code, reason: reason, message: message)
            headers.append(name: Self.valueOmittedHeader, value: String(value.count))
            do {
                try producer.send(to: deadLetterTopic, key: message.key, value: UnsafeRawBufferPointer(start: nil, count: 0),
                                  headers: headers, context: context)
            } catch {
                failure = WorkerError("cannot produce to '\(settings.dlq)': \(error)")
            }
        } catch {
            sendFailed(to: settings.dlq, error)
        }
    }

    /// On a dead letter sent without its value (too large for the producer or the broker): the
    /// value's size in bytes. The value itself stays in the input topic at the source offset.
    static let valueOmittedHeader = "weir-value-omitted"

    // MARK: Control

    /// Switches models between two batches (nothing is pending): the old primary's drift window
    /// closes with its version, and every later event is answered by the plan's models.
    private func applyPlan(_ plan: ServingPlan) {
        if plan.primary !== primary {
            flushDriftRows()
            publishDrift(of: primary)
            primary = plan.primary
        }
        candidate = plan.candidate
        candidateMode = plan.candidate == nil ? nil : plan.mode
        canaryThreshold = Int(((plan.percent ?? 0) * 100).rounded())
        operatorPaused = plan.paused
        recordServing()
    }

    private func recordServing() {
        func entry(_ route: String, _ model: ServingModel) -> (String, String, String, String, String) {
            (route, model.version, model.ref.sha256, model.bundle.manifest.modelPrecision.rawValue, model.bundle.model.kernels.name)
        }
        var routes = [entry("primary", primary)]
        if let candidate, let mode = candidateMode { routes.append(entry(mode.rawValue, candidate)) }
        metrics.setServing(name: bundle.manifest.name, routes)
        let versions = (primary.version, candidate?.version)
        serving.withLock { $0 = versions }
        log.setServingVersion(primary.version)
    }

    /// Takes the model on trial out of service when its model-error share or p99 inference time
    /// passes the configured bound (after enough events to judge).
    private func checkTrial() {
        guard let trial = control.state.trial else { return }
        let model: ServingModel
        if let candidate, candidate.ref == trial { model = candidate } else if primary.ref == trial { model = primary } else { return }
        guard model.trialEvents >= settings.rollbackMinEvents else { return }
        let rate = Double(model.trialErrors) / Double(model.trialEvents)
        if rate > settings.rollbackMaxErrorRate {
            control.rollBackAutomatically(reason: "model-error share \(String(format: "%.3f", rate)) over \(model.trialEvents) events is above control.rollback.max-error-rate \(settings.rollbackMaxErrorRate)")
            return
        }
        let p99 = model.inferenceP99Ms
        if model.inferenceSamples >= 20 && p99 > settings.rollbackMaxP99Ms {
            control.rollBackAutomatically(reason: "p99 batch inference time \(String(format: "%.2f", p99)) ms is above control.rollback.max-p99-ms \(settings.rollbackMaxP99Ms)")
        }
    }

    /// Publishes a status record (keyed by worker id) when the worker has a status topic.
    private func publishStatus(_ note: StatusNote) {
        guard let statusTopic else { return }
        let record = control.statusRecord(note)
        do {
            try producer.send(to: statusTopic, key: Array(settings.workerID.utf8), value: record, context: 0)
        } catch {
            log("cannot produce a status record to '\(statusTopic.name)': \(error)", level: .warning)
        }
    }

    // MARK: Deliveries and offsets

    private func delivered(_ reports: DeliveryReportBatch) {
        let wallMicros = wallClockMicroseconds()
        for report in reports {
            if report.context == 0 {
                if let error = report.error { log("a best-effort record was not delivered: \(error)", level: .warning, topic: report.topic) }
                continue
            }
            if let error = report.error, transactional {
                // Reports of an aborted transaction's records (purged) belong to tracks already cleared.
                guard tracks[unpackDeliveryContext(report.context).0] != nil else { continue }
                if !transactionBroken {
                    log("delivery failed (\(error)); aborting the transaction to answer its events again", level: .warning,
                        topic: report.topic, partition: report.partition)
                }
                transactionBroken = true
                continue
            }
            if let error = report.error {
                retries.append(copyForRetry(report))
                metrics.deliveryRetries.increment()
                if retries.count == 1 {
                    log("delivery failed (\(error)); sending again", level: .warning, topic: report.topic, partition: report.partition)
                }
                continue
            }
            let (trackIndex, sequence) = unpackDeliveryContext(report.context)
            let track: PartitionTrack
            if let last = lastDeliveredTrack, last.index == trackIndex {
                track = last
            } else {
                guard let found = tracks[trackIndex] else { continue }
                track = found
                lastDeliveredTrack = found
            }
            finish(track, Int64(sequence), deliveredAt: wallMicros)
        }
        if !latencyScratch.isEmpty {
            latencyScratch.withUnsafeBufferPointer { metrics.latency.record($0) }
            latencyScratch.removeAll(keepingCapacity: true)
        }
    }

    private func finish(_ track: PartitionTrack, _ sequence: Int64, deliveredAt wallMicros: Int64?) {
        guard let timestampMs = track.answer(sequence) else { return }
        inFlight -= 1
        if let wallMicros, timestampMs > 0 {
            let latency = max(0, wallMicros - timestampMs * 1000)
            metrics.eventLatency.recordNanoseconds(latency * 1000)
            latencyScratch.append(UInt64(latency))
        }
    }

    private func copyForRetry(_ report: DeliveryReport) -> RetryRecord {
        let message = report.message
        var headers = [(UnsafePointer<CChar>?, String, [UInt8]?)]()
        for header in message.headers { headers.append((nil, header.name, header.value.map { Array($0) })) }
        var value = message.value.map { Array($0) }
        let isDeadLetter = report.topic == settings.dlq
        // The broker refused a dead letter as too large: send it again without the value.
        if isDeadLetter, let size = value?.count, report.error == .messageTooLarge || report.error == .recordListTooLarge {
            value = []
            headers.append((nil, Self.valueOmittedHeader, Array(String(size).utf8)))
        }
        return RetryRecord(topic: isDeadLetter ? deadLetterTopic : outputTopic, key: message.key.map { Array($0) },
                           value: value, headers: headers, context: report.context)
    }

    private func resendFailed() {
        let pendingRetries = retries
        retries.removeAll()
        for record in pendingRetries {
            var headers = OutgoingHeaders(capacity: record.headers.count)
            for (_, name, value) in record.headers {
                if let value { value.withUnsafeBytes { headers.append(name: name, value: $0) } } else { headers.append(name: name, value: nil) }
            }
            do {
                try producer.send(to: record.topic, key: record.key, value: record.value,
                                  headers: headers, context: record.context)
            } catch {
                if transactional && isFencing(error) { sendFailed(to: record.topic.name, error); continue }
                failure = WorkerError("cannot produce again after a failed delivery: \(error)")
            }
        }
    }

    /// Commits, per partition, the offset after the longest delivered prefix. Returns the failure.
    @discardableResult
    private func commit(async: Bool, only partitions: Set<TopicPartition>? = nil, quiet: Bool = false,
                        timeoutMs: Int = 2_000) -> KafkaError? {
        var offsets = [TopicPartitionOffset]()
        for track in trackByPartition.values where track.committable != nil {
            // An async commit may have failed unseen: synchronous commits (revoke, stop) send every
            // partition's point again, not only the ones that moved.
            if async && !track.hasUncommitted { continue }
            if let partitions, !partitions.contains(track.partition) { continue }
            offsets.append(TopicPartitionOffset(track.partition.topic, track.partition.partition, track.committable!))
        }
        guard !offsets.isEmpty else { return nil }
        do {
            // Synchronous commits are bounded: during a rebalance the answer may wait for this thread.
            if async { try consumer.commit(offsets, async: true) } else { try consumer.commit(offsets, timeoutMs: timeoutMs) }
            for offset in offsets { trackByPartition[offset.topicPartition]?.committed = offset.offset }
            return nil
        } catch {
            if !quiet { log("commit of \(offsets.count) partitions failed (\(error)); will retry", level: .warning) }
            return error
        }
    }

    /// An asynchronous commit the coordinator refused (during a rebalance, say): its partitions
    /// count as uncommitted again, so the next tick sends them, even if no new event arrives.
    private func commitFailed(_ offsets: [TopicPartitionOffset], _ error: KafkaErrorCode) {
        var reopened = 0
        for offset in offsets {
            guard let track = trackByPartition[offset.topicPartition], track.committed == offset.offset else { continue }
            track.committed = nil
            reopened += 1
        }
        metrics.commitFailures.increment()
        if reopened > 0 { log("commit of \(reopened) partitions refused (\(error.name)); will send again", level: .warning) }
    }

    // MARK: Exactly-once

    private var transactionalID: String { "weir-\(settings.group)-\(settings.workerID)" }

    /// Ends the open transaction: flushes (so every answered event's output is delivered and the
    /// delivered prefix covers every answered event), adds those offsets, commits, and begins the
    /// next one. A broken or abortable transaction is aborted and its events answered again; a
    /// fenced or fatal producer stops the worker.
    private func commitTransaction(final: Bool = false) {
        guard inTransaction else { return }
        do { try producer.flush(timeoutMs: max(settings.shutdownTimeoutMs / 2, 1_000)) } catch {
            transactionBroken = true
        }
        if transactionBroken {
            abortTransaction(rewinding: final ? [] : assigned)
            return
        }
        var offsets = [TopicPartitionOffset]()
        for track in trackByPartition.values where track.hasUncommitted {
            offsets.append(TopicPartitionOffset(track.partition.topic, track.partition.partition, track.committable!))
        }
        do {
            if !offsets.isEmpty { try producer.sendOffsetsToTransaction(offsets, group: consumer.groupMetadata()) }
            try producer.commitTransaction()
            inTransaction = false
            for offset in offsets {
                trackByPartition[offset.topicPartition]?.committed = offset.offset
                transactionCommitted[offset.topicPartition] = offset.offset
            }
            metrics.transactions(result: "committed")
        } catch {
            if error.isFatal || isFencing(error) {
                failure = producerFailure(error)
                inTransaction = false
                return
            }
            log("transaction commit failed (\(error)); aborting to answer its events again", level: .warning)
            abortTransaction(rewinding: final ? [] : assigned)
            return
        }
        if !final { beginTransaction() }
    }

    private func isFencing(_ error: KafkaError) -> Bool {
        [.fenced, .producerFenced, .producerFencedByBroker].contains(error.code)
    }

    /// In exactly-once mode, whether `error` says another producer took over this transactional id
    /// (by its code, or by librdkafka's text when a later call reports the earlier fencing).
    private func isFencedTransaction(_ error: KafkaError) -> Bool {
        transactional && (isFencing(error) || error.message.lowercased().contains("fenced"))
    }

    /// Why the worker stops when its producer cannot go on; fencing is named as such.
    private func producerFailure(_ error: KafkaError) -> WorkerError {
        if isFencedTransaction(error) {
            return WorkerError("exactly-once: fenced by another producer with transactional id '\(transactionalID)' (a newer worker with worker-id '\(settings.workerID)'); stopping without committing (\(error))")
        }
        return WorkerError("producer failed: \(error)")
    }

    private func beginTransaction() {
        guard !transactionsClosed, failure == nil else { return }
        do {
            try producer.beginTransaction()
            inTransaction = true
        } catch {
            failure = isFencing(error) ? producerFailure(error) : WorkerError("exactly-once: cannot begin a transaction: \(error)")
        }
    }

    /// Aborts the open transaction: its outputs are discarded and the group's offsets stay where
    /// the last committed transaction left them. The open batch is dropped, the tracks are cleared
    /// and `partitions` are sought back to their committed offsets, so their events are answered again.
    private func abortTransaction(rewinding partitions: Set<TopicPartition>) {
        if inTransaction {
            do { try producer.abortTransaction() } catch {
                failure = isFencing(error) ? producerFailure(error) : WorkerError("exactly-once: cannot abort the transaction: \(error)")
                return
            }
            inTransaction = false
        }
        transactionBroken = false
        metrics.transactions(result: "aborted")
        for event in pending { event.message.release() }
        pending.removeAll(keepingCapacity: true)
        primary.count = 0
        candidate?.count = 0
        tracks.removeAll()
        trackByPartition.removeAll()
        lastTrack = nil
        lastDeliveredTrack = nil
        inFlight = 0
        retries.removeAll()
        if !partitions.isEmpty {
            do {
                let unknown = partitions.filter { transactionCommitted[$0] == nil }
                let group = unknown.isEmpty ? [] : try consumer.committed(Array(unknown))
                var targets = partitions.compactMap { partition in
                    transactionCommitted[partition].map { TopicPartitionOffset(partition.topic, partition.partition, $0) }
                }
                // No committed offset yet: back to the beginning (auto.offset.reset is earliest).
                targets += group.map { TopicPartitionOffset($0.topic, $0.partition, $0.offset >= 0 ? $0.offset : -2) }
                try consumer.seek(targets)
                log("transaction aborted; \(partitions.count) partitions rewound to their committed offsets", level: .warning,
                    partitions: Array(partitions))
            } catch {
                failure = WorkerError("exactly-once: cannot rewind after an aborted transaction: \(error)")
                return
            }
        }
        beginTransaction()
    }

    // MARK: Rebalances and backpressure

    private func assign(_ partitions: [TopicPartition]) {
        assigned.formUnion(partitions)
        // A partition coming (back) to this worker starts from the group's offset, not an old record.
        for partition in partitions { transactionCommitted[partition] = nil }
        assignedCount.store(assigned.count, ordering: .relaxed)
        log("assigned \(partitions.count) partitions: \(partitions.map(\.description).sorted().joined(separator: " "))",
            partitions: partitions)
    }

    /// Before partitions leave: answer the open batch, wait for their outputs, commit them.
    private func revoke(_ partitions: [TopicPartition], lost: Bool) {
        let leaving = Set(partitions)
        closeBatch()
        if !retries.isEmpty { resendFailed() }
        let deadline = monotonicNanoseconds() + UInt64(settings.shutdownTimeoutMs) * 1_000_000
        while leaving.contains(where: { (trackByPartition[$0]?.inFlight ?? 0) > 0 }) && monotonicNanoseconds() < deadline {
            do { try producer.flush(timeoutMs: 100) } catch {}
            if !retries.isEmpty { resendFailed() }
        }
        if transactional {
            // The transaction holds every owned partition's outputs: commit it (abort if the
            // assignment is already lost) before these partitions leave.
            if lost { abortTransaction(rewinding: assigned.subtracting(leaving)) } else { commitTransaction() }
        } else if !lost {
            let left = Int((Int64(deadline) - Int64(monotonicNanoseconds())) / 1_000_000)
            commit(async: false, only: leaving, timeoutMs: max(left, 500))
        }
        for partition in leaving {
            if let track = trackByPartition.removeValue(forKey: partition) {
                inFlight -= track.inFlight
                tracks.removeValue(forKey: track.index)
            }
        }
        lastTrack = nil
        lastDeliveredTrack = nil
        assigned.subtract(leaving)
        paused.subtract(leaving)
        assignedCount.store(assigned.count, ordering: .relaxed)
        log("\(lost ? "lost" : "revoked") \(partitions.count) partitions: \(partitions.map(\.description).sorted().joined(separator: " "))",
            level: lost ? .warning : .info, partitions: partitions)
    }

    /// Pauses every owned partition while unanswered events exceed the bound (resuming below
    /// half), or while an operator has paused consumption through the control topic.
    private func applyBackpressure() {
        let limit = settings.maxInFlightEvents
        if !isPausedForBackpressure && inFlight >= limit {
            isPausedForBackpressure = true
            log("\(inFlight) events in flight (limit \(limit)): pausing \(assigned.count) partitions", level: .warning,
                partitions: Array(assigned))
        } else if isPausedForBackpressure && inFlight <= limit / 2 {
            isPausedForBackpressure = false
        }
        if isPausedForBackpressure || operatorPaused {
            let toPause = assigned.subtracting(paused)
            if !toPause.isEmpty {
                do { try consumer.pause(Array(toPause)); paused.formUnion(toPause) } catch { log("pause failed: \(error)", level: .warning) }
            }
        } else if !paused.isEmpty {
            do { try consumer.resume(Array(paused)) } catch { log("resume failed: \(error)", level: .warning) }
            paused.removeAll()
        }
        metrics.pausedPartitions.record(paused.count)
        metrics.inFlight.record(inFlight)
    }

    /// librdkafka 2.0.2 stops fetching a partition while its prefetched messages pass
    /// `queued.min.messages` or `queued.max.messages.kbytes`, and its broker thread looks again only
    /// on its next wake-up, up to a second later (2.1.0 made this `fetch.queue.backoff.ms`). A
    /// worker catching up on a backlog drains the queue far sooner and then sat idle: rounds of the
    /// worker benchmark stalled 0.5–0.8 s (6 of 16 rounds here). When nothing has arrived for 20 ms
    /// but a partition's last fetch saw more messages than were consumed, asking its leader for the
    /// watermarks (one small request, which goes through that broker's thread) wakes the fetcher.
    /// One partition per wake-up, rotating, so several leaders all get their turn; at most one
    /// wake-up per 50 ms, and nothing while partitions are paused.
    private func wakeStalledFetcher() {
        let now = monotonicNanoseconds()
        guard now - lastConsumedAt >= 20_000_000, now - lastFetcherWakeAt >= 50_000_000,
              paused.isEmpty, !assigned.isEmpty else { return }
        lastFetcherWakeAt = now
        var lagging = [TopicPartition]()
        for partition in assigned {
            guard let end = trackByPartition[partition]?.consumedEnd,
                  let marks = consumer.cachedWatermarks(partition.topic, partition.partition), marks.high > end else { continue }
            lagging.append(partition)
        }
        guard !lagging.isEmpty else { return }
        lagging.sort { ($0.topic, $0.partition) < ($1.topic, $1.partition) }
        fetcherWakeRotation = (fetcherWakeRotation + 1) % lagging.count
        let partition = lagging[fetcherWakeRotation]
        metrics.fetcherWakeups.increment()
        metrics.fetcherWakeupTotal.add(1, ordering: .relaxed)
        // The answer itself is not needed; a failure (broker down) is the fetcher's to report.
        _ = try? consumer.watermarks(partition.topic, partition.partition, timeoutMs: 50)
    }

    private func updateGauges() {
        for partition in assigned {
            guard let marks = consumer.cachedWatermarks(partition.topic, partition.partition) else { continue }
            let position = trackByPartition[partition]?.consumedEnd ?? trackByPartition[partition]?.committed
            let lag = position.map { max(0, marks.high - $0) } ?? max(0, marks.high - marks.low)
            metrics.setLag(topic: partition.topic, partition: partition.partition, lag: lag)
        }
    }

    // MARK: Shutdown

    private func shutDown() {
        let budget = settings.shutdownTimeoutMs
        let deadline = monotonicNanoseconds() + UInt64(budget * 3 / 4) * 1_000_000
        // No new events from here on: pause everything, answer what is held, then commit. A commit
        // refused while the group rebalances (or after this member was timed out of it) is retried
        // with the consumer served in between, so the rebalance or rejoin can finish (answering any
        // events it hands over before committing).
        if !assigned.isEmpty {
            do { try consumer.pause(Array(assigned)) } catch { log("pause at stop: \(error)", level: .warning) }
        }
        if transactional {
            closeBatch()
            publishDrift(of: primary)
            commitTransaction(final: true)
            transactionsClosed = true
        }
        while !transactional {
            closeBatch()
            publishDrift(of: primary)
            if !retries.isEmpty { resendFailed() }
            // An older asynchronous commit that librdkafka is still retrying would land after the
            // final one and move the group back: let those finish first.
            while consumer.asyncCommitsInFlight > 0 && monotonicNanoseconds() < deadline {
                let got = consumer.poll(maxMessages: settings.batchMaxEvents, timeoutMs: 20, retainingInto: &polled)
                if got > 0 { take(polled) }
                polled.removeAll(keepingCapacity: true)
            }
            if !pending.isEmpty { continue }
            let left = Int((Int64(deadline) - Int64(monotonicNanoseconds())) / 1_000_000)
            do { try producer.flush(timeoutMs: max(left, 100)) } catch { log("flush at stop: \(error)", level: .warning) }
            let retrying = monotonicNanoseconds() < deadline
            guard let failure = commit(async: false, quiet: true, timeoutMs: min(max(left, 100), 1_000)) else { break }
            guard retrying, !failure.isFatal else {
                log("final commit failed (\(failure)); the next owner answers the uncommitted events again", level: .error)
                break
            }
            let got = consumer.poll(maxMessages: settings.batchMaxEvents, timeoutMs: 100, retainingInto: &polled)
            if got > 0 { take(polled) }
            polled.removeAll(keepingCapacity: true)
            if !assigned.isEmpty { try? consumer.pause(Array(assigned)) }
        }
        do { try consumer.close() } catch { log("leaving the group: \(error)", level: .warning) }
        do { try producer.close(timeoutMs: max(budget / 8, 100)) } catch { log("closing the producer: \(error)", level: .warning) }
        log("worker \(settings.workerID) stopped: \(metrics.consumedTotal.load(ordering: .relaxed)) consumed, \(metrics.predictionTotal.load(ordering: .relaxed)) predicted, \(metrics.deadLetterTotal.load(ordering: .relaxed)) dead letters")
    }
}

@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

@inline(__always)
func wallClockMicroseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1000
}
