import WeirKafka

/// Which partitions the worker owns and which it holds paused: backpressure (unanswered events
/// over the bound), an operator's pause, re-pausing what librdkafka resumed behind the worker,
/// waking a stalled fetcher, and the lag gauges. Poll thread only.
final class PartitionFlow {
    private let consumer: KafkaConsumer
    private let ledger: OffsetLedger
    private let metrics: WorkerMetrics
    private let log: WorkerLog
    private let maxInFlight: Int
    private(set) var assigned = Set<TopicPartition>()
    private(set) var paused = Set<TopicPartition>()
    /// Why the worker holds its partitions paused, if it does.
    private var backpressure = false
    /// An operator paused consumption through the control topic.
    var operatorPaused = false
    /// Partitions whose next event waits for its writer schema (`SchemaGate`): kept paused.
    private var schemaHeld = Set<TopicPartition>()
    /// When the poll last returned events, and when the fetcher was last woken.
    private(set) var lastConsumedAt: UInt64 = 0
    private var lastFetcherWakeAt: UInt64 = 0
    private var fetcherWakeRotation = 0
    /// When the fetcher was last woken for each partition, at which high watermark and consumed
    /// end: a partition whose end is a transaction marker looks one behind forever, so with neither
    /// moved it is woken again only after a second, not every 50 ms (a real stall still recovers).
    private var lastWake: [TopicPartition: (high: Int64, end: Int64, at: UInt64)] = [:]

    init(consumer: KafkaConsumer, ledger: OffsetLedger, settings: WorkerSettings, metrics: WorkerMetrics, log: WorkerLog) {
        self.consumer = consumer
        self.ledger = ledger
        self.metrics = metrics
        self.log = log
        maxInFlight = settings.maxInFlightEvents
    }

    func assign(_ partitions: [TopicPartition]) {
        assigned.formUnion(partitions)
        log("assigned \(partitions.count) partitions: \(partitions.map(\.description).sorted().joined(separator: " "))",
            partitions: partitions)
    }

    func revoke(_ partitions: [TopicPartition], lost: Bool) {
        assigned.subtract(partitions)
        paused.subtract(partitions)
        schemaHeld.subtract(partitions)
        for partition in partitions {
            metrics.removeLag(topic: partition.topic, partition: partition.partition)
            lastWake[partition] = nil
        }
        log("\(lost ? "lost" : "revoked") \(partitions.count) partitions: \(partitions.map(\.description).sorted().joined(separator: " "))",
            level: lost ? .warning : .info, partitions: partitions)
    }

    /// Events arrived: note when, and take any partition the worker holds paused out of `paused`.
    /// librdkafka 2.0.2 can resume the partitions of an incremental assign when it starts their
    /// fetchers, undoing the pause the worker issued right after the assignment; a message from a
    /// paused partition shows it, and this step's `applyBackpressure` pauses it again. Its messages
    /// are answered as usual, so nothing is lost or repeated.
    func noteConsumed(_ messages: [RetainedMessage], at now: UInt64) {
        lastConsumedAt = now
        guard !paused.isEmpty else { return }
        var resumed: [TopicPartition] = []
        for retained in messages {
            let message = retained.message
            let partition = TopicPartition(message.topic, message.partition)
            if paused.remove(partition) != nil { resumed.append(partition) }
        }
        if !resumed.isEmpty {
            log("librdkafka resumed paused partitions \(resumed.map(\.description).sorted().joined(separator: " ")): pausing them again",
                level: .warning, partitions: resumed)
        }
    }

    /// Pauses every owned partition while unanswered events exceed the bound (resuming below
    /// half), or while an operator has paused consumption through the control topic.
    func applyBackpressure() {
        let inFlight = ledger.inFlight
        if !backpressure && inFlight >= maxInFlight {
            backpressure = true
            log("\(inFlight) events in flight (limit \(maxInFlight)): pausing \(assigned.count) partitions", level: .warning,
                partitions: Array(assigned))
        } else if backpressure && inFlight <= maxInFlight / 2 {
            backpressure = false
        }
        if backpressure || operatorPaused {
            pauseAll()
        } else {
            let resumable = schemaHeld.isEmpty ? paused : paused.subtracting(schemaHeld)
            if !resumable.isEmpty {
                do { try consumer.resume(Array(resumable)) } catch { log("resume failed: \(error)", level: .warning) }
                paused.subtract(resumable)
            }
            let toPause = schemaHeld.subtracting(paused)
            if !toPause.isEmpty {
                do { try consumer.pause(Array(toPause)); paused.formUnion(toPause) } catch { log("pause failed: \(error)", level: .warning) }
            }
        }
        metrics.pausedPartitions.record(paused.count)
        metrics.inFlight.record(inFlight)
    }

    /// The partitions whose events wait for a writer schema; paused until they are released.
    func holdForSchemas(_ partitions: Set<TopicPartition>) {
        let added = partitions.subtracting(schemaHeld)
        schemaHeld = partitions.intersection(assigned)
        if !added.isEmpty {
            log("waiting for writer schemas: pausing \(added.map(\.description).sorted().joined(separator: " "))", partitions: Array(added))
        }
    }

    /// Pauses every owned partition not paused yet (also at stop: no new events from then on).
    func pauseAll() {
        let toPause = assigned.subtracting(paused)
        guard !toPause.isEmpty else { return }
        do { try consumer.pause(Array(toPause)); paused.formUnion(toPause) } catch { log("pause failed: \(error)", level: .warning) }
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
    func wakeStalledFetcher(now: UInt64) {
        guard now - lastConsumedAt >= 20_000_000, now - lastFetcherWakeAt >= 50_000_000,
              paused.isEmpty, !assigned.isEmpty else { return }
        lastFetcherWakeAt = now
        var lagging = [TopicPartition]()
        for partition in assigned {
            guard let end = ledger.consumedEnd(of: partition),
                  let marks = consumer.cachedWatermarks(partition.topic, partition.partition), marks.high > end else { continue }
            if let last = lastWake[partition], last.high == marks.high, last.end == end, now - last.at < 1_000_000_000 { continue }
            lagging.append(partition)
        }
        guard !lagging.isEmpty else { return }
        lagging.sort { ($0.topic, $0.partition) < ($1.topic, $1.partition) }
        fetcherWakeRotation = (fetcherWakeRotation + 1) % lagging.count
        let partition = lagging[fetcherWakeRotation]
        if let high = consumer.cachedWatermarks(partition.topic, partition.partition)?.high, let end = ledger.consumedEnd(of: partition) {
            lastWake[partition] = (high, end, now)
        }
        metrics.fetcherWakeups.increment()
        metrics.fetcherWakeupTotal.add(1, ordering: .relaxed)
        // The answer itself is not needed; a failure (broker down) is the fetcher's to report.
        _ = try? consumer.watermarks(partition.topic, partition.partition, timeoutMs: 50)
    }

    /// Lag per owned partition, from the watermarks librdkafka last saw.
    func updateLagGauges() {
        for partition in assigned {
            guard let marks = consumer.cachedWatermarks(partition.topic, partition.partition) else { continue }
            let lag = ledger.position(of: partition).map { max(0, marks.high - $0) } ?? max(0, marks.high - marks.low)
            metrics.setLag(topic: partition.topic, partition: partition.partition, lag: lag)
        }
    }

    #if DEBUG
    /// Tests: resumes every owned partition inside librdkafka without telling the worker, as
    /// librdkafka 2.0.2 itself can just after an incremental assign.
    func resumeInsideLibrdkafka() { try? consumer.resume(Array(assigned)) }
    #endif
}
