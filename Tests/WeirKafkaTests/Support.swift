import Foundation
import Testing
import WeirTestSupport
@testable import WeirKafka

/// Collects owned records from consumer threads and wakes waiters on every batch.
final class RecordCollector: Sendable {
    private let records = Locked([ConsumedRecord]())
    private let changed = EventSignal()

    func append(contentsOf batch: [ConsumedRecord]) {
        records.withLock { $0.append(contentsOf: batch) }
        changed.raise()
    }

    var all: [ConsumedRecord] { records.withLock { $0 } }
    var count: Int { records.withLock { $0.count } }

    /// Waits (event-driven, bounded) until `count >= target`; returns whether it got there.
    @discardableResult
    func waitForCount(_ target: Int, timeoutSeconds: Double = 60) -> Bool {
        waitUntil(timeoutSeconds: timeoutSeconds) { count >= target }
    }

    /// Waits (event-driven, bounded) until every sequence number in `range` has been collected,
    /// however many repeats came with them; returns whether it got there.
    @discardableResult
    func waitForSequences(_ range: Range<Int>, timeoutSeconds: Double = 60) -> Bool {
        waitUntil(timeoutSeconds: timeoutSeconds) { Set(all.map(sequenceNumber)).isSuperset(of: range) }
    }

    /// Waits (event-driven, bounded) until `condition` holds, checking it after each batch arrives.
    private func waitUntil(timeoutSeconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = monotonicMilliseconds() + Int64(timeoutSeconds * 1000)
        while !condition() {
            let left = deadline - monotonicMilliseconds()
            if left <= 0 { return false }
            changed.wait(timeoutMs: Int(min(left, 1000)))
        }
        return true
    }
}

/// Runs one group consumer on its own thread, committing after every batch and on revoke,
/// as Weir's worker will: every record it hands to the collector is committed before its
/// partition can move.
/// Unchecked: `thread` is set once by `init`; everything else it holds is `Locked` or an `EventSignal`.
final class ConsumerLoop: @unchecked Sendable {
    let name: String
    let collector: RecordCollector
    private let stopRequested = Locked(false)
    private let stoppedSignal = EventSignal()
    private let isStopped = Locked(false)
    let assignmentHistory = Locked([[TopicPartition]]())
    let revocations = Locked([[TopicPartition]]())
    /// Per partition this member gave up (not lost): the group's committed offset right after its
    /// revoke commit, and the offset after the last record it handed to the collector. Records in
    /// between may be read again by the next owner; nothing below `committed` may.
    let handovers = Locked([Handover]())

    struct Handover {
        let partition: TopicPartition
        let committed: Int64
        let processedEnd: Int64
    }
    /// Errors while running; errors after `stop()` (commits racing the group's own
    /// rebalance as members leave) are kept apart in `shutdownErrors`.
    let errors = Locked([KafkaError]())
    let shutdownErrors = Locked([KafkaError]())
    /// Commits the group refused because a rebalance had begun (the mock broker accepts commits
    /// only while the group is stable; see docs/kafka.md). Harmless here: every batch was
    /// already committed asynchronously.
    let refusedDuringRebalance = Locked([KafkaError]())
    private var thread: OSThread?
    private let assignedSignal = EventSignal()
    let currentAssignment = Locked(Set<TopicPartition>())

    init(name: String, bootstrap: String, group: String, topics: [String], collector: RecordCollector,
         configure: (inout ConsumerConfiguration) -> Void = { _ in }) {
        self.name = name
        self.collector = collector
        var configuration = ConsumerConfiguration(bootstrapServers: bootstrap, groupID: group)
        configuration.clientID = name
        // The mock broker holds every rebalance open for session.timeout.ms - 1 s: a short session
        // (heartbeats every 500 ms keep it) makes each rebalance take 2 s instead of 5.
        configuration.sessionTimeoutMs = 3_000
        configuration.properties["heartbeat.interval.ms"] = "500"
        if let debug = ProcessInfo.processInfo.environment["WEIR_TEST_KAFKA_DEBUG"] { configuration.properties["debug"] = debug }
        configure(&configuration)
        let config = configuration
        thread = OSThread { [self] in self.run(config, topics) }
    }

    private func run(_ configuration: ConsumerConfiguration, _ topics: [String]) {
        // Next offset to read per partition, for everything handed to the collector.
        var processed = [TopicPartition: Int64]()
        var consumerRef: KafkaConsumer?
        let handlers = RebalanceHandlers(
            partitionsAssigned: { [self] partitions in
                assignmentHistory.withLock { $0.append(partitions) }
                currentAssignment.withLock { $0.formUnion(partitions) }
                assignedSignal.raise()
            },
            partitionsRevoked: { [self] partitions, lost in
                revocations.withLock { $0.append(partitions) }
                currentAssignment.withLock { $0.subtract(partitions) }
                let toCommit = partitions.compactMap { tp in processed[tp].map { TopicPartitionOffset(tp.topic, tp.partition, $0) } }
                if !lost, let consumer = consumerRef {
                    do throws(KafkaError) { try consumer.commit(toCommit) } catch { record(error) }
                    let committed = (try? consumer.committed(partitions, timeoutMs: 5_000)) ?? []
                    handovers.withLock { list in
                        for tp in partitions {
                            let offset = committed.first { $0.topicPartition == tp }?.offset ?? -1
                            list.append(Handover(partition: tp, committed: offset, processedEnd: processed[tp] ?? offset))
                        }
                    }
                }
                for tp in partitions { processed[tp] = nil }
            })
        do {
            let consumer = try KafkaConsumer(configuration: configuration, rebalance: handlers) { [self] error in
                record(error)
            }
            consumerRef = consumer
            try consumer.subscribe(topics)
            while !stopRequested.withLock({ $0 }) {
                var batch = [ConsumedRecord]()
                consumer.poll(maxMessages: 500, timeoutMs: 200) { messages in
                    for message in messages {
                        batch.append(message.record())
                        processed[TopicPartition(message.topic, message.partition)] = message.offset + 1
                    }
                }
                if !batch.isEmpty {
                    collector.append(contentsOf: batch)
                    try consumer.commit(processed.map { TopicPartitionOffset($0.key.topic, $0.key.partition, $0.value) },
                                        async: true)
                }
            }
            // close() revokes everything first: the revoke handler commits what was processed.
            try consumer.close()
            consumerRef = nil
        } catch {
            record(error as? KafkaError ?? KafkaError(operation: "\(error)", code: .fatal))
        }
        isStopped.withLock { $0 = true }
        stoppedSignal.raise()
    }

    private func record(_ error: KafkaError) {
        if error.operation == "commit" && [.rebalanceInProgress, .illegalGeneration].contains(error.code) {
            refusedDuringRebalance.withLock { $0.append(error) }
        } else if stopRequested.withLock({ $0 }) {
            shutdownErrors.withLock { $0.append(error) }
        } else {
            errors.withLock { $0.append(error) }
        }
    }

    /// Waits until this consumer owns at least one partition.
    @discardableResult
    func waitForAssignment(timeoutSeconds: Double = 30) -> Bool {
        let deadline = monotonicMilliseconds() + Int64(timeoutSeconds * 1000)
        while currentAssignment.withLock({ $0.isEmpty }) {
            let left = deadline - monotonicMilliseconds()
            if left <= 0 { return false }
            assignedSignal.wait(timeoutMs: Int(min(left, 500)))
        }
        return true
    }

    /// Asks the loop to commit, leave the group and end; waits for it (bounded).
    func stop(timeoutSeconds: Double = 30) {
        stopRequested.withLock { $0 = true }
        let deadline = monotonicMilliseconds() + Int64(timeoutSeconds * 1000)
        while !isStopped.withLock({ $0 }) && monotonicMilliseconds() < deadline {
            stoppedSignal.wait(timeoutMs: 200)
        }
        let joined = thread?.join(timeoutMs: Int(max(deadline - monotonicMilliseconds(), 0)) + 5_000) ?? true
        #expect(joined, "the consumer loop \(name) ended within \(timeoutSeconds) s of stop")
    }
}

/// Counts delivery reports from a dedicated-thread producer.
final class DeliveryTally: Sendable {
    let delivered = Locked(0)
    let failed = Locked([KafkaErrorCode]())
    let contexts = Locked([UInt]())
    let offsets = Locked([Int32: [Int64]]())
    private let changed = EventSignal()
    let recordContexts: Bool

    init(recordContexts: Bool = false) { self.recordContexts = recordContexts }

    func handle(_ reports: DeliveryReportBatch) {
        var ok = 0
        var errors = [KafkaErrorCode]()
        var contextList = [UInt]()
        var byPartition = [Int32: [Int64]]()
        for report in reports {
            if let error = report.error { errors.append(error) } else {
                ok += 1
                byPartition[report.partition, default: []].append(report.offset)
            }
            if recordContexts { contextList.append(report.context) }
        }
        delivered.withLock { $0 += ok }
        if !errors.isEmpty { failed.withLock { $0.append(contentsOf: errors) } }
        if recordContexts { contexts.withLock { $0.append(contentsOf: contextList) } }
        offsets.withLock { table in for (p, list) in byPartition { table[p, default: []].append(contentsOf: list) } }
        changed.raise()
    }

    var total: Int { delivered.withLock { $0 } + failed.withLock { $0.count } }

    @discardableResult
    func waitForTotal(_ target: Int, timeoutSeconds: Double = 60) -> Bool {
        let deadline = monotonicMilliseconds() + Int64(timeoutSeconds * 1000)
        while total < target {
            let left = deadline - monotonicMilliseconds()
            if left <= 0 { return false }
            changed.wait(timeoutMs: Int(min(left, 1000)))
        }
        return true
    }
}

func makeProducer(_ bootstrap: String, tally: DeliveryTally,
                  configure: (inout ProducerConfiguration) -> Void = { _ in }) throws -> KafkaProducer {
    var configuration = ProducerConfiguration(bootstrapServers: bootstrap)
    configure(&configuration)
    return try KafkaProducer(configuration: configuration, onDelivery: { tally.handle($0) })
}

/// Produces `count` messages "seq=<i>" keyed "key-<i % keys>", with a `seq` header, and waits for delivery.
func produceSequence(_ bootstrap: String, topic: String, range: Range<Int>, keys: Int = 100) throws -> DeliveryTally {
    let tally = DeliveryTally()
    let producer = try makeProducer(bootstrap, tally: tally)
    let handle = try producer.topic(topic)
    for i in range {
        var headers = OutgoingHeaders()
        headers.append(name: "seq", value: String(i))
        try producer.send(to: handle, key: Array("key-\(i % keys)".utf8), value: Array("seq=\(i)".utf8), headers: headers)
    }
    try producer.flush(timeoutMs: 60_000)
    return tally
}

/// A consumer in `group` that has joined and owns partitions (rebalances run inside poll).
func joinedConsumer(_ bootstrap: String, group: String, topics: [String], expectPartitions: Int,
                    configure: (inout ConsumerConfiguration) -> Void = { _ in }) throws -> KafkaConsumer {
    var configuration = ConsumerConfiguration(bootstrapServers: bootstrap, groupID: group)
    configuration.sessionTimeoutMs = 3_000
    configuration.properties["heartbeat.interval.ms"] = "500"
    configure(&configuration)
    let consumer = try KafkaConsumer(configuration: configuration)
    try consumer.subscribe(topics)
    let deadline = monotonicMilliseconds() + 30_000
    while try consumer.assignment().count < expectPartitions && monotonicMilliseconds() < deadline {
        consumer.poll(maxMessages: 1, timeoutMs: 200) { _ in }
    }
    guard try consumer.assignment().count == expectPartitions else {
        throw TestFailure("consumer did not get \(expectPartitions) partitions within 30 s")
    }
    return consumer
}

func sequenceNumber(_ record: ConsumedRecord) -> Int {
    Int(record.valueString!.dropFirst(4))!
}

func uniqueGroup(_ prefix: String) -> String { "\(prefix)-\(UInt32.random(in: 0...UInt32.max))" }
