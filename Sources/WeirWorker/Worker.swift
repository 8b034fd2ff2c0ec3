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
    public let bundle: ModelBundle
    public let metrics: WorkerMetrics
    let log: @Sendable (String) -> Void

    private let signal = EventSignal()
    private var consumer: KafkaConsumer!
    private var producer: KafkaProducer!
    private var outputTopic: ProducerTopic!
    private var deadLetterTopic: ProducerTopic!
    private let decoder: EventDecoder
    private let scratch: ModelScratch
    private let width: Int
    private let answers: AnswerWriter
    /// Drift windows, when `drift-topic` is set; `missingFlags` marks defaulted features per batch row.
    private let drift: DriftTap?
    private var driftTopic: ProducerTopic?
    @exclusivity(unchecked) private var driftRows: [Int32] = []
    private var driftOutputs: AnswerWriter.Outputs?
    private let missingFlags: UnsafeMutablePointer<Bool>
    private let modelKey: [UInt8]

    // The open batch. Hot state is touched only on the poll thread: `@exclusivity(unchecked)`
    // spares it the runtime's per-access exclusivity bookkeeping.
    private let rows: UnsafeMutablePointer<Float>
    @exclusivity(unchecked) private var pending: [PendingEvent] = []
    @exclusivity(unchecked) private var batchOpenedAt: UInt64 = 0
    @exclusivity(unchecked) private var polled: [RetainedMessage] = []

    // Offset tracking.
    @exclusivity(unchecked) private var tracks: [UInt64: PartitionTrack] = [:]
    private var trackByPartition: [TopicPartition: PartitionTrack] = [:]
    private var nextTrackIndex: UInt64 = 1
    @exclusivity(unchecked) private var lastTrack: PartitionTrack?
    @exclusivity(unchecked) private var lastTopicPointer: UnsafePointer<CChar>?
    @exclusivity(unchecked) private var inFlight = 0
    private var assigned = Set<TopicPartition>()
    private var paused = Set<TopicPartition>()
    private var isPausedForBackpressure = false
    private var lastCommitAt: UInt64 = 0
    private var lastGaugesAt: UInt64 = 0
    private var retries: [RetryRecord] = []
    @exclusivity(unchecked) private var latencyScratch: [UInt64] = []
    private var failure: WorkerError?

    private let stopRequested = Atomic<Bool>(false)
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
    }

    /// An output whose delivery failed, copied to be sent again.
    struct RetryRecord {
        let deadLetter: Bool
        let key: [UInt8]?
        let value: [UInt8]?
        let headers: [(UnsafePointer<CChar>?, String, [UInt8]?)]
        let context: UInt
    }

    /// Prepares a worker (clients are created by `run`). `log` receives one line per notable event.
    public init(settings: WorkerSettings, bundle: ModelBundle, metrics: WorkerMetrics = WorkerMetrics(),
                log: @escaping @Sendable (String) -> Void = { _ in }) throws {
        guard settings.brokers != nil else { throw WorkerError("brokers: not set; the worker needs a bootstrap address") }
        self.settings = settings
        self.bundle = bundle
        self.metrics = metrics
        self.log = log
        let manifest = bundle.manifest
        width = manifest.inputs.count
        let path = settings.inputFeaturesPath.map { $0.split(separator: ".").map(String.init) } ?? []
        decoder = EventDecoder(schema: FeatureSchema(names: manifest.inputs.map(\.name), defaults: manifest.inputs.map(\.default),
                                                     featuresPath: path, maxBytes: settings.inputMaxBytes))
        scratch = bundle.model.makeScratch()
        answers = AnswerWriter(manifest: manifest)
        rows = .allocate(capacity: settings.batchMaxEvents * max(width, 1))
        rows.initialize(repeating: 0, count: settings.batchMaxEvents * max(width, 1))
        pending.reserveCapacity(settings.batchMaxEvents)
        polled.reserveCapacity(settings.batchMaxEvents)
        latencyScratch.reserveCapacity(1024)
        metrics.setModel(name: manifest.name, version: manifest.version, bundle: bundle.id)
        modelKey = Array(manifest.name.utf8)
        if settings.driftTopic != nil {
            guard let reference = bundle.reference, let referenceID = manifest.sha256["reference.json"] else {
                throw WorkerError("drift-topic: the bundle at \(bundle.directory.path) has no reference.json; package it again with weir model package")
            }
            drift = DriftTap(bundle: bundle, reference: reference, settings: settings, referenceID: referenceID, log: log)
        } else {
            drift = nil
        }
        let flagCount = drift == nil ? 1 : settings.batchMaxEvents * max(width, 1)
        missingFlags = .allocate(capacity: flagCount)
        missingFlags.initialize(repeating: false, count: flagCount)
    }

    deinit {
        rows.deallocate()
        missingFlags.deallocate()
    }

    /// Ready: the model is loaded (always, once constructed) and the consumer owns partitions.
    public var isReady: Bool { running.load(ordering: .relaxed) && assignedCount.load(ordering: .relaxed) > 0 }

    /// Whether every consumed event is answered, delivered and its offset committed (benchmarks).
    public var committedEverything: Bool { committedAll.load(ordering: .relaxed) }

    /// Whether `run` is in its loop.
    public var isRunning: Bool { running.load(ordering: .relaxed) }

    /// Asks `run` to stop: finish the batch, flush, commit, leave the group. Safe from any thread.
    public func stop() {
        stopRequested.store(true, ordering: .relaxed)
        signal.raise()
    }

    /// Runs until `stop()` (returns normally) or a fatal error (throws). Call from one thread.
    public func run() throws {
        Thread.current.name = "weir-poll"
        try openClients()
        running.store(true, ordering: .relaxed)
        defer { running.store(false, ordering: .relaxed) }
        try consumer.subscribe(settings.input)
        log("worker \(settings.workerID): serving \(bundle.manifest.name) \(bundle.manifest.version) from \(settings.input.joined(separator: ",")) to \(settings.output)")
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
        var producerConfig = ProducerConfiguration(bootstrapServers: settings.brokers!)
        producerConfig.clientID = settings.workerID
        producerConfig.lingerMs = 5
        producerConfig.properties = kafkaProperties(for: "producer")
        let rebalance = RebalanceHandlers(
            partitionsAssigned: { [unowned self] partitions in self.assign(partitions) },
            partitionsRevoked: { [unowned self] partitions, lost in self.revoke(partitions, lost: lost) })
        consumer = try KafkaConsumer(configuration: consumerConfig, signal: signal, rebalance: rebalance,
                                     onError: { [log] error in
                                         log("kafka consumer: \(error)")
                                     })
        producer = try KafkaProducer(configuration: producerConfig, serving: .callerThread(wake: signal),
                                     onDelivery: { [unowned self] reports in self.delivered(reports) },
                                     onError: { [log] error in log("kafka producer: \(error)") })
        outputTopic = try producer.topic(settings.output)
        deadLetterTopic = try producer.topic(settings.dlq)
        if let topic = settings.driftTopic { driftTopic = try producer.topic(topic) }
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
        let now = monotonicNanoseconds()
        var timeoutMs = 100
        if !pending.isEmpty {
            let deadline = batchOpenedAt + UInt64(settings.batchMaxDelayMs) * 1_000_000
            timeoutMs = deadline > now ? Int((deadline - now + 999_999) / 1_000_000) : 0
        }
        let room = settings.batchMaxEvents - pending.count
        let consumed = consumer.poll(maxMessages: max(room, 1), timeoutMs: timeoutMs, retainingInto: &polled)
        if consumed > 0 { take(polled) }
        polled.removeAll(keepingCapacity: true)
        producer.serveDeliveryReports()
        let after = monotonicNanoseconds()
        if !pending.isEmpty &&
            (pending.count >= settings.batchMaxEvents || after >= batchOpenedAt + UInt64(settings.batchMaxDelayMs) * 1_000_000) {
            closeBatch()
        }
        if !retries.isEmpty { resendFailed() }
        applyBackpressure()
        if after - lastCommitAt >= UInt64(settings.commitIntervalMs) * 1_000_000 {
            lastCommitAt = after
            commit(async: true)
        }
        committedAll.store(inFlight == 0 && pending.isEmpty && !trackByPartition.values.contains { $0.hasUncommitted },
                           ordering: .relaxed)
        if after - lastGaugesAt >= 1_000_000_000 {
            lastGaugesAt = after
            updateGauges()
        }
        if let fatal = producer.fatalError() { failure = WorkerError("producer failed: \(fatal)") }
    }

    private func take(_ messages: [RetainedMessage]) {
        metrics.eventsIn.increment(by: Int64(messages.count))
        metrics.consumedTotal.add(messages.count, ordering: .relaxed)
        let now = monotonicNanoseconds()
        for retained in messages {
            let message = retained.message
            let track = trackFor(message)
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
            let row = rows + pending.count * width
            switch decoder.decode(value, into: row) {
            case .success(let id):
                if drift != nil {
                    let flags = missingFlags + pending.count * width
                    for feature in 0..<width { flags[feature] = decoder.wasDefaulted(feature) }
                }
                pending.append(PendingEvent(message: retained, track: track, sequence: sequence, id: id, receivedAt: now))
            case .failure(let failure):
                sendDeadLetter(message, code: failure.code.rawValue, reason: failure.message,
                               context: deliveryContext(track: track.index, sequence: sequence))
                retained.release()
            }
            if pending.count >= settings.batchMaxEvents { closeBatch() }
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

    /// Runs the open batch through the model and sends one prediction (or model-error dead letter)
    /// per event, in consumption order.
    private func closeBatch() {
        let count = pending.count
        guard count > 0 else { return }
        metrics.batchSize.record(count)
        let started = monotonicNanoseconds()
        let run: ModelRun
        do {
            run = try bundle.model.run(rows: count, input: UnsafeBufferPointer(start: rows, count: count * width), scratch: scratch)
        } catch {
            for event in pending {
                sendDeadLetter(event.message.message, code: "model-error", reason: "the model failed on this batch: \(error)",
                               context: deliveryContext(track: event.track.index, sequence: event.sequence))
                event.message.release()
            }
            pending.removeAll(keepingCapacity: true)
            return
        }
        let finished = monotonicNanoseconds()
        metrics.inferenceTime.recordNanoseconds(Int64(finished - started))
        var predicted = 0
        answers.withOutputs(of: run) { outputs in
            driftOutputs = outputs
            defer {
                flushDriftRows()
                driftOutputs = nil
            }
            for (index, event) in pending.enumerated() {
                let message = event.message.message
                let context = deliveryContext(track: event.track.index, sequence: event.sequence)
                if let problem = answers.encodePrediction(row: index, outputs: outputs, message: message, id: event.id,
                                                          topicJSON: event.track.topicJSON,
                                                          latencyMicros: (finished - event.receivedAt) / 1000) {
                    sendDeadLetter(message, code: "model-error", reason: problem, context: context)
                } else {
                    var headers = OutgoingHeaders(copying: message)
                    answers.appendPredictionHeaders(to: &headers)
                    send(to: outputTopic, key: message.key, headers: headers, context: context)
                    predicted += 1
                    if let drift { observe(row: index, event: event, drift: drift) }
                }
                event.message.release()
            }
        }
        metrics.predictions.increment(by: Int64(predicted))
        metrics.predictionTotal.add(predicted, ordering: .relaxed)
        pending.removeAll(keepingCapacity: true)
    }

    /// Notes one answered event in the drift window; its values are added in column runs by
    /// `flushDriftRows` (before a window closes, and after the batch).
    private func observe(row: Int, event: PendingEvent, drift: DriftTap) {
        let message = event.message.message
        let timestamp = message.timestamp?.milliseconds ?? 0
        let window = drift.window
        if window.closesBefore(timestampMs: timestamp) {
            flushDriftRows()
            publishDrift()
        }
        window.noteEvent(timestampMs: timestamp, topic: event.track.partition.topic, partition: message.partition,
                         offset: message.offset)
        driftRows.append(Int32(row))
    }

    /// Adds the noted rows' features and outputs to the open window.
    private func flushDriftRows() {
        guard let drift, !driftRows.isEmpty, let outputs = driftOutputs else { return }
        driftRows.withUnsafeBufferPointer { indices in
            drift.window.addFeatureRows(rows, rows: indices, missing: missingFlags)
            drift.window.addPredictionRows(outputs.values.baseAddress!, stride: outputs.width, rows: indices)
        }
        driftRows.removeAll(keepingCapacity: true)
    }

    /// Closes the open drift window and produces its record (keyed by model name). Drift records
    /// are not answers: their delivery does not hold back commits.
    private func publishDrift() {
        guard let drift, let driftTopic, !drift.window.isEmpty else { return }
        let result = drift.window.close()
        drift.encode(result)
        metrics.recordDrift(result)
        do {
            try modelKey.withUnsafeBytes { key in
                try producer.send(to: driftTopic, key: key, value: drift.writer.bytes, context: 0)
            }
        } catch {
            log("cannot produce a drift record to '\(driftTopic.name)': \(error)")
        }
    }

    private func send(to topic: ProducerTopic, key: UnsafeRawBufferPointer?, headers: consuming OutgoingHeaders, context: UInt) {
        do {
            try producer.send(to: topic, key: key, value: answers.writer.bytes, headers: headers, context: context)
        } catch {
            failure = WorkerError("cannot produce to '\(topic.name)': \(error)")
        }
    }

    private func sendDeadLetter(_ message: KafkaMessage, code: String, reason: String, context: UInt) {
        var headers = OutgoingHeaders(copying: message)
        answers.appendDeadLetterHeaders(to: &headers, code: code, reason: reason, message: message)
        metrics.deadLetter(code: code)
        do {
            try producer.send(to: deadLetterTopic, key: message.key, value: message.value ?? UnsafeRawBufferPointer(start: nil, count: 0),
                              headers: headers, context: context)
        } catch {
            failure = WorkerError("cannot produce to '\(settings.dlq)': \(error)")
        }
    }

    // MARK: Deliveries and offsets

    private func delivered(_ reports: DeliveryReportBatch) {
        let wallMicros = wallClockMicroseconds()
        for report in reports {
            if report.context == 0 {
                if let error = report.error { log("a drift record was not delivered: \(error)") }
                continue
            }
            if let error = report.error {
                retries.append(copyForRetry(report))
                metrics.deliveryRetries.increment()
                if retries.count == 1 { log("delivery to \(report.topic) failed (\(error)); sending again") }
                continue
            }
            let (trackIndex, sequence) = unpackDeliveryContext(report.context)
            guard let track = tracks[trackIndex] else { continue }
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
        return RetryRecord(deadLetter: report.topic == settings.dlq, key: message.key.map { Array($0) },
                           value: message.value.map { Array($0) }, headers: headers, context: report.context)
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
                try producer.send(to: record.deadLetter ? deadLetterTopic : outputTopic, key: record.key, value: record.value,
                                  headers: headers, context: record.context)
            } catch {
                failure = WorkerError("cannot produce again after a failed delivery: \(error)")
            }
        }
    }

    /// Commits, per partition, the offset after the longest delivered prefix. Returns the failure.
    @discardableResult
    private func commit(async: Bool, only partitions: Set<TopicPartition>? = nil, quiet: Bool = false) -> KafkaError? {
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
            try consumer.commit(offsets, async: async)
            for offset in offsets { trackByPartition[offset.topicPartition]?.committed = offset.offset }
            return nil
        } catch {
            if !quiet { log("commit of \(offsets.count) partitions failed (\(error)); will retry") }
            return error
        }
    }

    // MARK: Rebalances and backpressure

    private func assign(_ partitions: [TopicPartition]) {
        assigned.formUnion(partitions)
        assignedCount.store(assigned.count, ordering: .relaxed)
        log("assigned \(partitions.count) partitions: \(partitions.map(\.description).sorted().joined(separator: " "))")
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
        if !lost { commit(async: false, only: leaving) }
        for partition in leaving {
            if let track = trackByPartition.removeValue(forKey: partition) {
                inFlight -= track.inFlight
                tracks.removeValue(forKey: track.index)
            }
        }
        lastTrack = nil
        assigned.subtract(leaving)
        paused.subtract(leaving)
        assignedCount.store(assigned.count, ordering: .relaxed)
        log("\(lost ? "lost" : "revoked") \(partitions.count) partitions")
    }

    /// Pauses every owned partition while unanswered events exceed the bound; resumes below half.
    private func applyBackpressure() {
        let limit = settings.maxInFlightEvents
        if !isPausedForBackpressure && inFlight >= limit {
            isPausedForBackpressure = true
            log("\(inFlight) events in flight (limit \(limit)): pausing \(assigned.count) partitions")
        } else if isPausedForBackpressure && inFlight <= limit / 2 {
            isPausedForBackpressure = false
            if !paused.isEmpty {
                do { try consumer.resume(Array(paused)) } catch { log("resume failed: \(error)") }
                paused.removeAll()
            }
        }
        if isPausedForBackpressure {
            let toPause = assigned.subtracting(paused)
            if !toPause.isEmpty {
                do { try consumer.pause(Array(toPause)); paused.formUnion(toPause) } catch { log("pause failed: \(error)") }
            }
        }
        metrics.pausedPartitions.record(paused.count)
        metrics.inFlight.record(inFlight)
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
            do { try consumer.pause(Array(assigned)) } catch { log("pause at stop: \(error)") }
        }
        while true {
            closeBatch()
            publishDrift()
            if !retries.isEmpty { resendFailed() }
            let left = Int((Int64(deadline) - Int64(monotonicNanoseconds())) / 1_000_000)
            do { try producer.flush(timeoutMs: max(left, 100)) } catch { log("flush at stop: \(error)") }
            let retrying = monotonicNanoseconds() < deadline
            guard let failure = commit(async: false, quiet: true) else { break }
            guard retrying, !failure.isFatal else {
                log("final commit failed (\(failure)); the next owner answers the uncommitted events again")
                break
            }
            let got = consumer.poll(maxMessages: settings.batchMaxEvents, timeoutMs: 100, retainingInto: &polled)
            if got > 0 { take(polled) }
            polled.removeAll(keepingCapacity: true)
            if !assigned.isEmpty { try? consumer.pause(Array(assigned)) }
        }
        do { try consumer.close() } catch { log("leaving the group: \(error)") }
        do { try producer.close(timeoutMs: max(budget / 8, 100)) } catch { log("closing the producer: \(error)") }
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
