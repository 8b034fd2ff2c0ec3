import Foundation
import Synchronization
import Testing
import WeirControl
import WeirKafka
import WeirTestSupport
@testable import WeirWorker

/// One bad record or one refused write never stops, stalls or loops a worker (docs/reliability.md):
/// a stream of every poison class is answered in full, refused predictions become `output-refused`
/// dead letters, and only a dead-letter topic that refuses for good stops the worker, with one line
/// naming the event.
@Suite(.serialized, .timeLimit(.minutes(4))) struct PoisonTests {
    let bundle = try! ModelBundle(directory: demoBundleURL)

    /// A record to produce, with any key, binary headers and timestamp (0: the producer's clock).
    struct Input {
        var name: String
        var key: [UInt8]?
        var value: [UInt8]?
        var headers: [(String, [UInt8])] = []
        var timestampMs: Int64 = 0
    }

    /// Produces `records` in order to `topic` with `compression`; every one must be delivered.
    static func produce(_ cluster: EmbeddedCluster, _ records: [Input], topic: String = "events", compression: String = "none") throws {
        let delivered = Atomic<Int>(0)
        var configuration = ProducerConfiguration(bootstrapServers: cluster.bootstrapServers)
        configuration.lingerMs = 5
        configuration.compression = compression
        configuration.properties["message.max.bytes"] = String(4 << 20)
        let producer = try KafkaProducer(configuration: configuration, onDelivery: { reports in
            for report in reports where report.error == nil { delivered.add(1, ordering: .relaxed) }
        })
        let handle = try producer.topic(topic)
        for record in records {
            var headers = OutgoingHeaders()
            for (name, value) in record.headers { value.withUnsafeBytes { headers.append(name: name, value: $0) } }
            try producer.send(to: handle, key: record.key, value: record.value, headers: headers, timestampMilliseconds: record.timestampMs)
        }
        try producer.flush(timeoutMs: 30_000)
        guard delivered.load(ordering: .relaxed) == records.count else {
            throw TestFailure("produced \(delivered.load(ordering: .relaxed)) of \(records.count) with \(compression)")
        }
    }

    /// Good event `index` with its key.
    static func good(_ index: Int, timestampMs: Int64 = 0, name: String = "good") -> Input {
        Input(name: name, key: SyntheticEvents.key(index), value: SyntheticEvents.event(index), timestampMs: timestampMs)
    }

    /// Every poison class: timestamps of any value, hostile JSON, a key and headers too large for
    /// the output producer. Each is a record the worker must answer and go on.
    static func poison() -> (records: [Input], implausibleTimestamps: Int) {
        let event = SyntheticEvents.event(7)
        let text = String(decoding: event, as: UTF8.self)
        let body = String(text.dropFirst())
        let extraKeys = "{" + (0..<40_000).map { "\"x\($0)\":0," }.joined() + body
        let stamps: [(String, Int64)] = [("nanoseconds", 1_733_000_000_000_000_000), ("seconds", 1_733_000_000), ("year 3000", 32_503_680_000_000),
                                          ("1970", 1), ("Int64.max", .max)]
        var records = stamps.map { good(7, timestampMs: $0.1, name: "timestamp \($0.0)") }
        records += [
            Input(name: "50,000-deep nesting", key: Array("deep".utf8), value: BadInputTests.nested(50_000)),
            Input(name: "40,000 extra keys", key: Array("keys".utf8), value: Array(extraKeys.utf8)),
            Input(name: "duplicate keys", key: Array("dup".utf8), value: Array(("{\"f0\":1,\"f0\":2," + body).utf8)),
            Input(name: "escaped keys", key: Array("esc".utf8), value: Array(text.replacingOccurrences(of: "\"f0\":", with: "\"f\\u0030\":").utf8)),
            Input(name: "NUL in a string", key: Array("nul".utf8), value: BadInputTests.withNote(Array("a\\u0000b".utf8))),
            Input(name: "a byte-order mark", key: Array("bom".utf8), value: [0xEF, 0xBB, 0xBF] + event),
            Input(name: "trailing garbage", key: Array("trail".utf8), value: event + Array(" }}garbage".utf8)),
            Input(name: "1e999", key: Array("huge-number".utf8), value: BadInputTests.withF3("1e999")),
            // Over the worker producer's 100,000-byte limit once copied into an answer.
            Input(name: "a 150 KB key", key: Array(repeating: UInt8(ascii: "k"), count: 150_000), value: event),
            Input(name: "150 KB of headers", key: Array("headers".utf8), value: event,
                  headers: (0..<3).map { ("h\($0)", Array(repeating: UInt8(ascii: "h"), count: 50_000)) }),
        ]
        return (records, stamps.count)
    }

    @Test func aPoisonStreamIsAnsweredInFullAndTheWorkerKeepsServing() throws {
        let cluster = try EmbeddedCluster(brokers: 1, topics: [("events", 4), ("predictions", 4), ("dead-letters", 4), ("drift", 1)])
        defer { cluster.stopCheckingClients() }
        var settings = testSettings(cluster)
        settings.kafka["producer.message.max.bytes"] = "100000"
        settings.driftTopic = "drift"
        settings.driftWindowMs = 60_000
        let (poison, implausiblePerRound) = Self.poison()
        var stream = [Input]()
        for round in 0..<2 {
            for (index, record) in poison.enumerated() {
                stream += (0..<10).map { Self.good(10_000 * (round + 1) + index * 10 + $0) }
                stream.append(record)
            }
        }
        try Self.produce(cluster, stream)
        // Every compression codec librdkafka reads.
        for (index, codec) in ["gzip", "snappy", "lz4", "zstd"].enumerated() {
            try Self.produce(cluster, (0..<50).map { Self.good(50_000 + index * 100 + $0, name: codec) }, compression: codec)
        }
        let running = try RunningWorker(settings: settings, bundle: bundle)
        let beforeLast = stream.count + 200
        try waitFor("the poison stream answered", timeoutSeconds: 60) { running.answered >= beforeLast }
        // After all of it, the worker still serves.
        try Self.produce(cluster, (0..<200).map { Self.good(90_000 + $0, name: "after") })
        let total = beforeLast + 200
        do {
            try waitFor("every event answered", timeoutSeconds: 60) { running.answered >= total }
        } catch {
            throw TestFailure("\(error): \(running.answered) of \(total); log \(running.log.lines.withLock { $0 }.suffix(10))")
        }
        let marks = try highWatermarks(cluster)
        try waitForCommitted(cluster, group: settings.group, marks)
        #expect(running.worker.isRunning, "the worker is still up")
        try running.stop()

        // Every input offset has exactly one answer: a prediction, or a dead letter naming it.
        let predictions = try readTopic(cluster, "predictions"), deadLetters = try readTopic(cluster, "dead-letters")
        var answers = [String: Int]()
        for record in predictions {
            let source = try jsonObject(record)["source"] as! [String: Any]
            answers["\(source["partition"] as! Int)@\(source["offset"] as! Int)", default: 0] += 1
        }
        for record in deadLetters {
            answers["\(header(record, "weir-source-partition") ?? "?")@\(header(record, "weir-source-offset") ?? "?")", default: 0] += 1
        }
        var expected = Set<String>()
        for (partition, high) in marks { for offset in 0..<high { expected.insert("\(partition)@\(offset)") } }
        #expect(Set(answers.keys) == expected, "answered \(answers.count) of \(expected.count) offsets")
        #expect(answers.values.allSatisfy { $0 == 1 }, "one answer per offset: \(answers.filter { $0.value > 1 }.prefix(5))")
        #expect(expected.count == total)

        // The oversized ones: answered by output-refused dead letters, made small enough to deliver.
        let byKey = Dictionary(deadLetters.map { (String(decoding: $0.key ?? [], as: UTF8.self), $0) }, uniquingKeysWith: { first, _ in first })
        let bigKey = deadLetters.filter { header($0, "weir-key-omitted") == "150000" }
        #expect(bigKey.count == 2 && bigKey.allSatisfy { header($0, "weir-error") == "output-refused" && $0.key == nil },
                "the 150 KB key's dead letters: \(bigKey.map { $0.headers.map(\.name) })")
        #expect(bigKey.allSatisfy { header($0, "weir-error-message")?.contains("MSG_SIZE_TOO_LARGE") == true })
        let bigHeaders = deadLetters.filter { String(decoding: $0.key ?? [], as: UTF8.self) == "headers" }
        #expect(bigHeaders.count == 2 && bigHeaders.allSatisfy {
            header($0, "weir-error") == "output-refused" && header($0, "weir-headers-omitted") == "3" && !$0.headers.contains { $0.name == "h0" }
        }, "the 150 KB of headers: \(bigHeaders.map { $0.headers.map(\.name) })")
        #expect(byKey["deep"].flatMap { header($0, "weir-error") } == "malformed-json")
        let metrics = running.worker.metrics
        #expect(metrics.implausibleTimestampTotal.load(ordering: .relaxed) == 2 * implausiblePerRound)
        let exposition = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(metricValue(exposition, "weir_implausible_timestamps_total") == Double(2 * implausiblePerRound))
        #expect(metricSum(exposition, "weir_dead_letters_total", #"code="output-refused""#) == 4)

        // Figure: the longest wait between two answers, by their record timestamps.
        let times = (predictions + deadLetters).compactMap(\.timestampMilliseconds).sorted()
        let gap = zip(times, times.dropFirst()).map { $1 - $0 }.max() ?? 0
        print("poison stream: \(answers.count) of \(expected.count) offsets answered, \(deadLetters.count) dead letters, longest gap between answers \(gap) ms")
    }

    @Test func recordsTheConsumerCannotReadAreDeadLetteredAndSkipped() throws {
        let cluster = try EmbeddedCluster(brokers: 1, topics: [("events", 1), ("predictions", 1), ("dead-letters", 1)])
        defer { cluster.stopCheckingClients() }
        let address = String(cluster.bootstrapServers.split(separator: ",")[0])
        // Offsets 0-19 good, 20-22 one batch that cannot be decompressed, 23-42 good, 43 another, 44-53 good.
        try Self.produce(cluster, (0..<20).map { Self.good($0) })
        try RawProduce.corruptCompressedBatch(address: address, topic: "events", partition: 0, records: 3)
        try Self.produce(cluster, (20..<40).map { Self.good($0) })
        try RawProduce.corruptCompressedBatch(address: address, topic: "events", partition: 0)
        try Self.produce(cluster, (40..<50).map { Self.good($0) })
        let settings = testSettings(cluster)
        let running = try RunningWorker(settings: settings, bundle: bundle)
        let marks = try highWatermarks(cluster, partitions: 1)
        #expect(marks == [0: 54])
        do {
            try waitForCommitted(cluster, group: settings.group, marks)
        } catch {
            throw TestFailure("\(error); log \(running.log.lines.withLock { $0 }.suffix(8))")
        }
        #expect(running.worker.isRunning)
        try running.stop()
        let deadLetters = try readTopic(cluster, "dead-letters", partitions: 1)
        let predictions = try readTopic(cluster, "predictions", partitions: 1)
        #expect(deadLetters.allSatisfy { header($0, "weir-error") == "consume-error" && header($0, "weir-error-message")?.contains("_BAD_COMPRESSION") == true })
        #expect(deadLetters.compactMap { header($0, "weir-source-offset") }.sorted() == ["20", "21", "22", "43"],
                "one dead letter per unreadable offset: \(deadLetters.compactMap { header($0, "weir-source-offset") })")
        let predicted = try predictions.map { try (jsonObject($0)["source"] as! [String: Any])["offset"] as! Int }.sorted()
        #expect(predicted == Array(0..<20) + Array(23..<43) + Array(44..<54))
    }

    /// A cluster whose `refusing` topic's partitions all live on broker 2, everything else on broker 1.
    static func splitCluster(refusing: String, group: String, partitions: Int = 4, extra: [String] = []) throws -> EmbeddedCluster {
        let topics = ["events", "predictions", "dead-letters"] + extra
        let cluster = try EmbeddedCluster(brokers: 2, topics: topics.map { ($0, partitions) })
        for topic in topics {
            for partition in Int32(0)..<Int32(partitions) { try cluster.setPartitionLeader(topic, partition, broker: topic == refusing ? 2 : 1) }
        }
        try cluster.setCoordinator(keyType: "group", key: group, broker: 1)
        return cluster
    }

    @Test func predictionsTheBrokerRefusesForGoodBecomeDeadLetters() throws {
        let group = "refused-\(UUID().uuidString)"
        let cluster = try Self.splitCluster(refusing: "predictions", group: group)
        defer { cluster.stopCheckingClients() }
        try Self.produce(cluster, (0..<1_000).map { Self.good($0) })
        var settings = testSettings(cluster, group: group)
        // One request in flight: with more, the embedded broker keeps a later batch after an
        // earlier one failed and librdkafka counts the failed one as written (docs/reliability.md).
        settings.kafka["producer.max.in.flight.requests.per.connection"] = "1"
        let running = try RunningWorker(settings: settings, bundle: bundle)
        // Answers delivered, by the output topics (a prediction refused on delivery is counted once
        // as sent and once as a dead letter in the worker's own counters).
        func delivered() throws -> Int64 {
            try highWatermarks(cluster, topic: "predictions").values.reduce(0, +) + highWatermarks(cluster, topic: "dead-letters").values.reduce(0, +)
        }
        try waitFor("the first answers", timeoutSeconds: 30) { try delivered() >= 1_000 }
        // TOPIC_AUTHORIZATION_FAILED last: librdkafka then holds the topic as refused until its next
        // metadata refresh, so every later prediction is refused at send.
        let refusals: [KafkaErrorCode] = [.messageTooLarge, .invalidRecord, .topicAuthorizationFailed]
        try cluster.injectBrokerRequestErrors(.produce, [.messageTooLarge, .messageTooLarge, .invalidRecord, .invalidRecord, .topicAuthorizationFailed],
                                              broker: 2)
        var next = 1_000
        do {
            // A few events at a time until every injected refusal has met a request.
            try waitFor("every injected refusal met a request", timeoutSeconds: 30) {
                if try cluster.pendingRequestErrors(.produce, broker: 2) == 0 { return true }
                try Self.produce(cluster, (next..<(next + 20)).map { Self.good($0) })
                next += 20
                try waitFor("those answered", timeoutSeconds: 20) { try delivered() >= Int64(next) }
                return false
            }
        } catch {
            throw TestFailure("\(error): \(try delivered()) delivered of \(next), \(try cluster.pendingRequestErrors(.produce, broker: 2)) errors left; log \(running.log.lines.withLock { $0 }.suffix(12))")
        }
        // Nothing stuck behind the refusals: more events flow and every offset is committed.
        try Self.produce(cluster, (next..<(next + 500)).map { Self.good($0) })
        let total = next + 500
        try waitFor("the events after answered", timeoutSeconds: 60) { try delivered() >= Int64(total) }
        let marks = try highWatermarks(cluster)
        try waitForCommitted(cluster, group: group, marks)
        #expect(running.worker.isRunning)
        try running.stop()

        let predictions = try readTopic(cluster, "predictions"), deadLetters = try readTopic(cluster, "dead-letters")
        #expect(predictions.count + deadLetters.count == total, "\(predictions.count) predictions + \(deadLetters.count) dead letters")
        #expect(deadLetters.allSatisfy { header($0, "weir-error") == "output-refused" })
        let causes = Set(deadLetters.compactMap { header($0, "weir-error-message") }.compactMap { message in
            refusals.first { message.contains($0.name) }
        })
        #expect(causes == Set(refusals), "each refusal answered by dead letters: \(causes.map(\.name))")
        // The dead letter names its event, and carries the input's key and headers.
        let ids = Set(predictions.map { String(decoding: $0.key ?? [], as: UTF8.self) } + deadLetters.map { String(decoding: $0.key ?? [], as: UTF8.self) })
        #expect(ids.count == total, "every event's key answered once")
        #expect(deadLetters.allSatisfy { header($0, "weir-source-offset") != nil && header($0, "weir-version") == "1.0.0" })
        print("refused predictions: \(deadLetters.count) output-refused dead letters of \(total) events for 5 injected refusals")
    }

    @Test func retriableFailuresAreRetriedABoundedNumberOfTimes() throws {
        let group = "retry-\(UUID().uuidString)"
        let cluster = try Self.splitCluster(refusing: "predictions", group: group)
        defer { cluster.stopCheckingClients() }
        var settings = testSettings(cluster, group: group)
        settings.outputMaxRetries = 2
        settings.kafka["producer.message.timeout.ms"] = "300"
        try Self.produce(cluster, (0..<100).map { Self.good($0) })
        // Read before the outage: helper clients in groups of their own may find their coordinator
        // on the broker that goes down, and wait for it when they close.
        let marks = try highWatermarks(cluster)
        // The predictions' broker is gone: every prediction times out, is sent twice more, then dead-lettered.
        try cluster.setBrokerDown(2)
        let running = try RunningWorker(settings: settings, bundle: bundle)
        try waitFor("every event dead-lettered", timeoutSeconds: 60) {
            running.worker.metrics.deadLetterTotal.load(ordering: .relaxed) >= 100
        }
        try waitForCommitted(cluster, group: group, marks)
        try running.stop()
        try cluster.setBrokerUp(2)
        let deadLetters = try readTopic(cluster, "dead-letters")
        #expect(deadLetters.count == 100)
        #expect(deadLetters.allSatisfy { header($0, "weir-error") == "output-refused" && header($0, "weir-error-message")?.contains("_MSG_TIMED_OUT") == true })
        let retries = metricValue(String(decoding: running.worker.metrics.exposition(), as: UTF8.self), "weir_delivery_retries_total") ?? 0
        #expect(retries >= 200 && retries <= 200 + 100, "two retries per event (the last ones counted once): \(retries)")
    }

    /// Exactly-once: a failed delivery aborts the transaction and its events are read again. An
    /// answer whose delivery fails in three transactions in a row is dead-lettered instead, so the
    /// worker does not abort forever.
    @Test func exactlyOnceDeadLettersAnAnswerThatAbortsThreeTransactions() throws {
        let group = "eos-refused-\(UUID().uuidString)"
        // One partition: after each abort the same first batch is sent first again.
        let cluster = try Self.splitCluster(refusing: "predictions", group: group, partitions: 1)
        defer { cluster.stopCheckingClients() }
        var settings = testSettings(cluster, group: group)
        settings.kafka["producer.max.in.flight.requests.per.connection"] = "1"
        settings.guarantee = .exactlyOnce
        settings.commitIntervalMs = 200
        try cluster.setCoordinator(keyType: "transaction", key: settings.transactionalID, broker: 1)
        try Self.produce(cluster, (0..<200).map { Self.good($0) })
        let running = try RunningWorker(settings: settings, bundle: bundle)
        try waitFor("the first 200 answered in committed transactions", timeoutSeconds: 30) {
            running.answered >= 200 && running.worker.committedEverything
        }
        // Three refusals for good by the predictions' broker, one of each kind: three aborted
        // transactions in a row for the events of the first batch after them.
        try cluster.injectBrokerRequestErrors(.produce, [.messageTooLarge, .invalidRecord, .topicAuthorizationFailed], broker: 2)
        try Self.produce(cluster, (200..<260).map { Self.good($0) })
        do {
            // (After an abort the ledger is empty, so "everything committed" holds then too: wait for
            // the dead letters, then for a commit after them.)
            try waitFor("the dead letters", timeoutSeconds: 60) { running.worker.metrics.deadLetterTotal.load(ordering: .relaxed) >= 1 }
            let commits = running.worker.metrics.transactionCommitTotal.load(ordering: .relaxed)
            try waitFor("a commit after them", timeoutSeconds: 30) {
                running.worker.metrics.transactionCommitTotal.load(ordering: .relaxed) > commits && running.worker.committedEverything
            }
        } catch {
            let failed = (try? running.waitStopped(timeoutSeconds: 0.1)).map { "running" } ?? "stopped"
            throw TestFailure("\(error) (\(failed)): aborts \(running.worker.metrics.transactionAbortTotal.load(ordering: .relaxed)), errors left \(try cluster.pendingRequestErrors(.produce, broker: 2)); log \(running.log.lines.withLock { $0 }.filter { !$0.hasPrefix("[thrd") || $0.contains("transaction") }.suffix(30))")
        }
        #expect(running.worker.isRunning, "the worker did not stop")
        try running.stop()
        let aborts = running.worker.metrics.transactionAbortTotal.load(ordering: .relaxed)
        #expect(aborts == 3, "one abort per refusal, then the dead letters commit: \(aborts)")
        // The mock broker shows aborted records to every reader, so count what the last
        // transaction wrote: each of the 60 later events has an answer, and some are dead letters.
        let audit = try OutputAudit(cluster, partitions: 1)
        #expect(audit.lost == 0, "\(audit)")
        let deadLetters = try readTopic(cluster, "dead-letters", partitions: 1)
        #expect(!deadLetters.isEmpty && deadLetters.allSatisfy {
            header($0, "weir-error") == "output-refused" && header($0, "weir-error-message")?.contains("3 transactions") == true
        }, "\(deadLetters.map { header($0, "weir-error-message") ?? "-" }.prefix(3))")
        let offsets = deadLetters.compactMap { header($0, "weir-source-offset").flatMap { Int($0) } }
        #expect(Set(offsets) == Set(200..<260) && offsets.count == 60,
                "the 60 events whose answers failed three times, once each: \(offsets.min() ?? -1)...\(offsets.max() ?? -1), \(offsets.count)")
        print("exactly-once poison: \(aborts) aborts, \(deadLetters.count) answers dead-lettered after three failed transactions; \(audit)")
    }

    /// Exactly-once with `auto.offset.reset: latest`: an abort before the first commit rewinds each
    /// partition to where its assignment started, neither to the beginning of the topic (answering
    /// events from before the worker) nor to the end (losing the aborted transaction's events).
    @Test func anAbortBeforeAnyCommitRewindsToWhereTheAssignmentStarted() throws {
        let cluster = try makeCluster(partitions: 1)
        defer { cluster.stopCheckingClients() }
        var settings = testSettings(cluster)
        settings.guarantee = .exactlyOnce
        settings.kafka["consumer.auto.offset.reset"] = "latest"
        try Self.produce(cluster, (0..<100).map { Self.good($0, name: "before the worker") })
        let running = try RunningWorker(settings: settings, bundle: bundle)
        try running.waitUntilReady()
        // The worker's first transaction is refused: nothing has been committed yet. Events go in
        // ten at a time until the worker reads some ("latest" is resolved at its first fetch).
        cluster.injectRequestErrors(.addPartitionsToTxn, [.topicAuthorizationFailed])
        var next = 100
        try waitFor("the worker reading", timeoutSeconds: 30) {
            try Self.produce(cluster, (next..<(next + 10)).map { Self.good($0) })
            next += 10
            return running.worker.metrics.consumedTotal.load(ordering: .relaxed) > 0
        }
        try waitFor("the abort", timeoutSeconds: 30) { running.worker.metrics.transactionAbortTotal.load(ordering: .relaxed) >= 1 }
        try waitFor("a committed transaction after it", timeoutSeconds: 30) {
            running.worker.metrics.transactionCommitTotal.load(ordering: .relaxed) >= 1 && running.worker.committedEverything
        }
        try running.stop()
        let answered = Set(try readTopic(cluster, "predictions", partitions: 1).map { try (jsonObject($0)["source"] as! [String: Any])["offset"] as! Int })
        let first = answered.min() ?? -1
        #expect(first >= 100, "nothing from before the worker started is answered: first \(first)")
        #expect(answered == Set(first..<next), "everything from where it started, again after the abort: \(answered.count) of \(next - first)")
    }

    /// Exactly-once with a drift topic that refuses every record: drift records go through a plain
    /// producer beside the transactional one, so their failures abort nothing.
    @Test func exactlyOnceBestEffortFailuresAbortNothing() throws {
        let group = "eos-drift-\(UUID().uuidString)"
        let cluster = try Self.splitCluster(refusing: "drift", group: group, extra: ["drift"])
        defer { cluster.stopCheckingClients() }
        var settings = testSettings(cluster, group: group)
        settings.guarantee = .exactlyOnce
        settings.commitIntervalMs = 200
        settings.driftTopic = "drift"
        settings.driftWindowEvents = 50
        try cluster.setCoordinator(keyType: "transaction", key: settings.transactionalID, broker: 1)
        try cluster.injectBrokerRequestErrors(.produce, [.topicAuthorizationFailed], broker: 2)
        try Self.produce(cluster, (0..<1_000).map { Self.good($0) })
        let running = try RunningWorker(settings: settings, bundle: bundle)
        try waitFor("every event answered and committed", timeoutSeconds: 60) {
            running.answered >= 1_000 && running.worker.committedEverything
                && running.worker.metrics.driftWindowTotal.load(ordering: .relaxed) >= 10
        }
        try waitFor("the drift refusals met", timeoutSeconds: 30) { try cluster.pendingRequestErrors(.produce, broker: 2) == 0 }
        try running.stop()
        #expect(running.worker.metrics.transactionAbortTotal.load(ordering: .relaxed) == 0)
        #expect(running.log.lines.withLock { $0 }.contains { $0.contains("best-effort record was not delivered") || $0.contains("cannot produce a drift record") })
        let audit = try OutputAudit(cluster, partitions: 4)
        #expect(audit.lost == 0 && audit.duplicated == 0, "\(audit)")
    }

    /// A stop with the broker gone still ends within shutdown-timeout-ms (plus the loop's turn):
    /// leaving the group is bounded by what is left of the one deadline.
    @Test func aStopWithTheBrokerGoneEndsWithinItsDeadline() throws {
        let cluster = try makeCluster()
        defer { cluster.stopCheckingClients() }
        var settings = testSettings(cluster)
        settings.shutdownTimeoutMs = 3_000
        try Self.produce(cluster, (0..<100).map { Self.good($0) })
        let running = try RunningWorker(settings: settings, bundle: bundle)
        try waitFor("the events answered", timeoutSeconds: 30) { running.answered >= 100 }
        try cluster.setBrokerDown()
        running.worker.stop()
        defer { try? cluster.setBrokerUp() }
        do {
            try running.waitStopped(timeoutSeconds: 6)
        } catch {
            throw TestFailure("\(error); log \(running.log.lines.withLock { $0 }.filter { !$0.hasPrefix("[thrd") }.suffix(6))")
        }
    }

    @Test func aDeadLetterTopicThatRefusesForGoodStopsTheWorkerNamingTheEvent() throws {
        let group = "dlq-refused-\(UUID().uuidString)"
        let cluster = try Self.splitCluster(refusing: "dead-letters", group: group)
        defer { cluster.stopCheckingClients() }
        try Self.produce(cluster, (0..<50).map { Self.good($0) })
        let running = try RunningWorker(settings: testSettings(cluster, group: group), bundle: bundle)
        try waitFor("the good events answered", timeoutSeconds: 30) { running.answered >= 50 }
        try cluster.injectBrokerRequestErrors(.produce, Array(repeating: .topicAuthorizationFailed, count: 20), broker: 2)
        try Self.produce(cluster, [Input(name: "bad", key: Array("bad".utf8), value: Array("{not json".utf8))])
        var failure = ""
        do {
            try running.waitStopped(timeoutSeconds: 30)
        } catch {
            failure = "\(error)"
        }
        cluster.clearRequestErrors(.produce)
        #expect(failure.contains("the dead-letter topic 'dead-letters' refused the answer to events[")
                    && failure.contains("] offset ") && failure.contains("TOPIC_AUTHORIZATION_FAILED"),
                "one line naming topic, partition, offset and code: \(failure)")
        // Not committed past the event nothing could answer: a restart answers it again.
        let committed = try committedOffsets(cluster, group: group).values.reduce(0, +)
        #expect(committed <= 50, "committed \(committed) of 51")
    }
}

/// No broker: the pieces of the poison rules.
@Suite(.timeLimit(.minutes(1))) struct PoisonRuleTests {
    @Test("Timestamps of any value are accepted; only plausible ones are believed")
    func eventTimes() {
        let now: Int64 = 1_765_000_000_000
        let time = EventTime(wallClockMs: now)
        for implausible: Int64? in [nil, -1, 0, 1, 1_733_000_000, 946_684_799_999, now + 3_600_001, 32_503_680_000_000,
                                    1_733_000_000_000_000_000, .max, .min] {
            #expect(time.plausible(implausible) == 0, "\(String(describing: implausible))")
        }
        for plausible: Int64 in [946_684_800_000, now - 86_400_000 * 365 * 20, now, now + 3_600_000] {
            #expect(time.plausible(plausible) == plausible)
        }
        #expect(EventTime(wallClockMs: .max).plausible(.max) == .max, "the clock's end does not trap")
    }

    @Test("The soak's poison records are what they say")
    func soakPoisonKinds() {
        let time = EventTime(wallClockMs: Int64(Date().timeIntervalSince1970 * 1000))
        for kind in SyntheticEvents.poisonKinds {
            let record = SyntheticEvents.poison(3, kind: kind)
            switch kind {
            case "nanosecond-timestamp", "year-3000-timestamp":
                #expect(time.plausible(record.timestampMs) == 0, "\(kind)")
            case "large-key":
                #expect(record.key.count == 100_000)
            default:
                #expect(record.timestampMs == 0 && record.value.count > SyntheticEvents.event(3).count, "\(kind)")
            }
        }
    }

    @Test("A dead letter too large to publish drops its value, then its copied headers, then its key")
    func deadLettersShrinkStepByStep() throws {
        let source = EventSource(partition: TopicPartition("events", 2), offset: 41)
        let weir = AnswerWriter.deadLetterHeaderList(code: .outputRefused, reason: "refused", source: source,
                                                     model: Array("fraud".utf8), version: Array("1.0.0".utf8))
        let start = FailedDelivery(topic: "dead-letters", partition: 0, error: .messageTooLarge, context: 7,
                                   key: Array(repeating: 1, count: 10), value: Array(repeating: 2, count: 20),
                                   headers: [("traceparent", [3]), ("h", nil)] + weir)
        let noValue = try #require(Outputs.smaller(start))
        #expect(noValue.value == [] && noValue.key == start.key)
        #expect(noValue.headers.last?.name == Outputs.valueOmittedHeader && noValue.headers.last?.value == Array("20".utf8))
        let noHeaders = try #require(Outputs.smaller(noValue))
        #expect(noHeaders.headers.allSatisfy { $0.name.hasPrefix("weir-") || $0.name.hasPrefix("__connect.errors.") })
        #expect(noHeaders.headers.contains { $0.name == "__connect.errors.offset" && $0.value == Array("41".utf8) })
        #expect(noHeaders.headers.contains { $0.name == Outputs.headersOmittedHeader && $0.value == Array("2".utf8) })
        #expect(noHeaders.headers.contains { $0.name == "weir-source-offset" && $0.value == Array("41".utf8) }, "the source stays named")
        let noKey = try #require(Outputs.smaller(noHeaders))
        #expect(noKey.key == nil && noKey.headers.last?.value == Array("10".utf8))
        #expect(Outputs.smaller(noKey) == nil, "nothing left to drop")
    }

    @Test("Refusals that can never pass are told from those that may, by code")
    func refusalClasses() {
        for code: KafkaErrorCode in [.messageTooLarge, .recordListTooLarge, .invalidRecord, .topicAuthorizationFailed,
                                     .unknownTopicOrPartition, .unknownTopic, .policyViolation, .fatal] {
            #expect(code.refusesRecordForGood, "\(code.name)")
        }
        for code: KafkaErrorCode in [.messageTimedOut, .notEnoughReplicas, .notLeaderForPartition, .requestTimedOut, .transport,
                                     .leaderNotAvailable, .networkException] {
            #expect(!code.refusesRecordForGood, "\(code.name)")
        }
    }

    @Test("The worker is unhealthy when its poll loop stops turning or an event waits too long for its answer")
    func liveness() throws {
        var settings = WorkerSettings()
        settings.brokers = "127.0.0.1:1"  // never contacted: the worker does not run
        settings.healthMaxPollGapMs = 30_000
        settings.healthMaxUnansweredAgeMs = 600_000
        let metrics = WorkerMetrics()
        let worker = try Worker(settings: settings, bundle: try ModelBundle(directory: demoBundleURL), metrics: metrics)
        let now: UInt64 = 1_000_000_000_000
        #expect(worker.unhealthyReason(now: now) == nil, "live before the loop's first turn")
        metrics.lastTurnNanos.store(now - 29_000_000_000, ordering: .relaxed)
        #expect(worker.unhealthyReason(now: now) == nil)
        metrics.lastTurnNanos.store(now - 31_000_000_000, ordering: .relaxed)
        #expect(worker.unhealthyReason(now: now)?.contains("the poll loop has not turned for 31 s") == true)
        metrics.lastTurnNanos.store(now, ordering: .relaxed)
        metrics.oldestUnansweredNanos.store(now - 601_000_000_000, ordering: .relaxed)
        #expect(worker.unhealthyReason(now: now)?.contains("an event consumed 601 s ago is still unanswered") == true)
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(metricValue(text, "weir_poll_loop_age_seconds") != nil && metricValue(text, "weir_oldest_unanswered_seconds") != nil)
    }

    @Test("The oldest unanswered event is the first unanswered of its partition")
    func oldestUnanswered() {
        let ledger = OffsetLedger()
        let a = ledger.track(for: TopicPartition("events", 0)), b = ledger.track(for: TopicPartition("events", 1))
        let first = ledger.begin(a, offset: 0, timestampMs: 0, receivedAt: 100)
        _ = ledger.begin(a, offset: 1, timestampMs: 0, receivedAt: 200)
        let other = ledger.begin(b, offset: 0, timestampMs: 0, receivedAt: 150)
        #expect(ledger.oldestUnansweredSince == 100)
        _ = ledger.answer(first)
        #expect(ledger.oldestUnansweredSince == 150)
        _ = ledger.answer(other)
        #expect(ledger.oldestUnansweredSince == 200)
    }

    @Test("A delivery context names its event's partition and offset until it is answered")
    func sourcesOfContexts() {
        let ledger = OffsetLedger()
        let partition = TopicPartition("events", 3)
        let track = ledger.track(for: partition)
        let contexts = (0..<5).map { ledger.begin(track, offset: 100 + Int64($0) * 2, timestampMs: 0) }
        #expect(ledger.source(of: contexts[3]) == EventSource(partition: partition, offset: 106))
        _ = ledger.answer(contexts[3])
        #expect(ledger.source(of: contexts[3]) == nil, "answered")
        #expect(ledger.source(of: contexts[4])?.offset == 108)
        ledger.remove([partition])
        #expect(ledger.source(of: contexts[4]) == nil, "its partition left")
    }
}
