import Testing
import WeirTestSupport
@testable import WeirKafka

@Suite("Produce and consume round trips", .timeLimit(.minutes(3)))
struct RoundTripTests {
    @Test("100k keyed messages with headers round-trip in per-partition order")
    func hundredThousandKeyedMessages() throws {
        let cluster = try EmbeddedCluster(topics: [("rt", 8)])
        defer { cluster.stopCheckingClients() }
        let total = 100_000
        let tally = DeliveryTally()
        let producer = try makeProducer(cluster.bootstrapServers, tally: tally)
        let topic = try producer.topic("rt")
        for i in 0..<total {
            var headers = OutgoingHeaders(capacity: 2)
            headers.append(name: "seq", value: String(i))
            headers.append(name: "traceparent", value: "00-\(i)-01")
            try producer.send(to: topic, key: Array("key-\(i % 997)".utf8), value: Array("seq=\(i)".utf8), headers: headers)
        }
        try producer.flush(timeoutMs: 60_000)
        #expect(tally.delivered.withLock { $0 } == total)
        #expect(tally.failed.withLock { $0 }.isEmpty)

        let collector = RecordCollector()
        let loop = ConsumerLoop(name: "rt", bootstrap: cluster.bootstrapServers, group: uniqueGroup("rt"),
                                topics: ["rt"], collector: collector)
        let complete = collector.waitForCount(total, timeoutSeconds: 120)
        loop.stop()
        #expect(complete)
        let records = collector.all
        #expect(records.count == total)
        #expect(Set(records.map(sequenceNumber)).count == total)

        var lastOffset = [Int32: Int64]()
        var lastSequenceByKey = [String: Int]()
        var partitionOfKey = [String: Int32]()
        for record in records {
            let sequence = sequenceNumber(record)
            #expect(record.headers.map(\.name) == ["seq", "traceparent"])
            #expect(record.headers[0].value == Array(String(sequence).utf8))
            #expect(record.headers[1].value == Array("00-\(sequence)-01".utf8))
            let key = record.keyString!
            #expect(key == "key-\(sequence % 997)")
            #expect(partitionOfKey[key, default: record.partition] == record.partition, "a key stays on one partition")
            partitionOfKey[key] = record.partition
            #expect(record.offset > lastOffset[record.partition, default: -1], "offsets rise within a partition")
            lastOffset[record.partition] = record.offset
            #expect(sequence > lastSequenceByKey[key, default: -1], "send order is kept per key")
            lastSequenceByKey[key] = sequence
        }
        #expect(Set(records.map(\.partition)).count == 8)
        #expect(loop.errors.withLock { $0 }.isEmpty)
    }

    @Test("Headers copied from a consumed message as a filter allows are produced in order, with room for more; the message keeps its own")
    func headersCopiedWithRoom() throws {
        let cluster = try EmbeddedCluster(topics: [("copy-in", 1), ("copy-out", 1)])
        defer { cluster.stopCheckingClients() }
        let tally = DeliveryTally()
        let producer = try makeProducer(cluster.bootstrapServers, tally: tally)
        let input = try producer.topic("copy-in")
        for i in 0..<3 {
            var headers = OutgoingHeaders()
            headers.append(name: "seq", value: String(i))
            headers.append(name: "drop-me", value: "x")
            headers.append(name: "null-one", value: nil)
            try producer.send(to: input, key: nil, value: Array("seq=\(i)".utf8), headers: headers)
        }
        let consumer = try joinedConsumer(cluster.bootstrapServers, group: uniqueGroup("copy"), topics: ["copy-in"], expectPartitions: 1)
        let topic = try producer.topic("copy-out")
        var copied = 0
        let deadline = monotonicMilliseconds() + 30_000
        while copied < 3 && monotonicMilliseconds() < deadline {
            try consumer.poll(maxMessages: 10, timeoutMs: 200) { (batch: KafkaMessageBatch) throws(KafkaError) in
                for message in batch {
                    var headers = OutgoingHeaders(copying: message, room: 2) { String(cString: $0) == "drop-me" }
                    #expect(message.headers.map(\.name) == ["seq", "drop-me", "null-one"])
                    // More than the room: the list grows.
                    for extra in ["added", "more", "beyond-the-room"] { headers.append(name: extra, value: "yes") }
                    try producer.send(to: topic, key: nil, value: message.value.map(Array.init), headers: headers)
                    copied += 1
                }
            }
        }
        #expect(copied == 3)
        try consumer.close()
        try producer.flush(timeoutMs: 10_000)
        #expect(tally.delivered.withLock { $0 } == 6)
        let collector = RecordCollector()
        let loop = ConsumerLoop(name: "copy", bootstrap: cluster.bootstrapServers, group: uniqueGroup("copy-check"),
                                topics: ["copy-out"], collector: collector)
        #expect(collector.waitForCount(3))
        loop.stop()
        for record in collector.all {
            let sequence = sequenceNumber(record)
            #expect(record.headers.map(\.name) == ["seq", "null-one", "added", "more", "beyond-the-room"])
            #expect(record.headers.first?.value == Array(String(sequence).utf8))
            #expect(record.headers[1].value == nil, "a null header stays null")
        }
    }

    @Test("A tombstone is delivered as a null value, an empty value as empty")
    func tombstone() throws {
        let cluster = try EmbeddedCluster(topics: [("tomb", 1)])
        defer { cluster.stopCheckingClients() }
        let tally = DeliveryTally()
        let producer = try makeProducer(cluster.bootstrapServers, tally: tally)
        let topic = try producer.topic("tomb")
        try producer.send(to: topic, key: Array("gone".utf8), value: nil)
        try producer.send(to: topic, key: Array("empty".utf8), value: [])
        try producer.send(to: topic, key: nil, value: Array("no key".utf8))
        try producer.flush(timeoutMs: 10_000)
        #expect(tally.delivered.withLock { $0 } == 3)

        let collector = RecordCollector()
        let loop = ConsumerLoop(name: "tomb", bootstrap: cluster.bootstrapServers, group: uniqueGroup("tomb"),
                                topics: ["tomb"], collector: collector)
        #expect(collector.waitForCount(3))
        loop.stop()
        let records = collector.all.sorted { $0.offset < $1.offset }
        try #require(records.count == 3)
        #expect(records[0].isTombstone)
        #expect(records[0].keyString == "gone")
        #expect(!records[1].isTombstone)
        #expect(records[1].value == [])
        #expect(records[2].key == nil)
        #expect(records[2].valueString == "no key")
    }

    @Test("Delivery reports hand back each message's context and offset")
    func deliveryContext() throws {
        let cluster = try EmbeddedCluster(topics: [("ctx", 2)])
        defer { cluster.stopCheckingClients() }
        let tally = DeliveryTally(recordContexts: true)
        let producer = try makeProducer(cluster.bootstrapServers, tally: tally)
        let topic = try producer.topic("ctx")
        for i in 1...500 {
            try producer.send(to: topic, partition: Int32(i % 2), key: nil, value: Array("v\(i)".utf8), context: UInt(i) << 20)
        }
        try producer.flush(timeoutMs: 10_000)
        #expect(Set(tally.contexts.withLock { $0 }) == Set((1...500).map { UInt($0) << 20 }))
        let offsets = tally.offsets.withLock { $0 }
        #expect(offsets[0]?.sorted() == Array(0..<250).map(Int64.init))
        #expect(offsets[1]?.sorted() == Array(0..<250).map(Int64.init))
    }

    @Test("A full local queue makes send wait, and nothing is dropped")
    func queueFullWaits() throws {
        let cluster = try EmbeddedCluster(topics: [("full", 4)])
        defer { cluster.stopCheckingClients() }
        try cluster.setRoundTripDelay(20)
        let tally = DeliveryTally()
        let producer = try makeProducer(cluster.bootstrapServers, tally: tally) { $0.queueBufferingMaxMessages = 10 }
        let topic = try producer.topic("full")
        for i in 0..<3_000 { try producer.send(to: topic, key: nil, value: Array("m\(i)".utf8)) }
        try producer.flush(timeoutMs: 60_000)
        #expect(tally.delivered.withLock { $0 } == 3_000)
        #expect(tally.failed.withLock { $0 }.isEmpty)
    }

    @Test("Caller-thread delivery serving shares the consumer's wake-up")
    func callerThreadServing() throws {
        let cluster = try EmbeddedCluster(topics: [("pass-in", 4), ("pass-out", 4)])
        defer { cluster.stopCheckingClients() }
        _ = try produceSequence(cluster.bootstrapServers, topic: "pass-in", range: 0..<2_000)
        var consumerConfiguration = ConsumerConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: uniqueGroup("pass"))
        consumerConfiguration.clientID = "pass"
        let consumer = try KafkaConsumer(configuration: consumerConfiguration)
        try consumer.subscribe(["pass-in"])
        var delivered = 0
        var committedUpTo = [Int32: Int64]()
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(bootstrapServers: cluster.bootstrapServers),
            serving: .callerThread(wake: consumer.signal),
            onDelivery: { reports in
                for report in reports where report.error == nil {
                    delivered += 1
                    // context carries the input partition and offset.
                    let partition = Int32(report.context >> 48) - 1
                    committedUpTo[partition] = Int64(report.context & 0xFFFF_FFFF_FFFF) + 1
                }
            })
        let out = try producer.topic("pass-out")
        let deadline = monotonicMilliseconds() + 60_000
        while delivered < 2_000 && monotonicMilliseconds() < deadline {
            consumer.poll(maxMessages: 256, timeoutMs: 500) { messages in
                for message in messages {
                    var headers = OutgoingHeaders()
                    headers.appendAll(from: message)
                    try? producer.send(to: out, partition: message.partition, key: message.key, value: message.value,
                                       headers: headers,
                                       context: UInt(message.partition + 1) << 48 | UInt(message.offset))
                }
            }
            producer.serveDeliveryReports()
        }
        try producer.flush(timeoutMs: 10_000)
        #expect(delivered == 2_000)
        try consumer.commit(committedUpTo.map { TopicPartitionOffset("pass-in", $0.key, $0.value) })
        let committed = try consumer.committed((0..<4).map { TopicPartition("pass-in", $0) })
        #expect(committed.map(\.offset).reduce(0, +) == 2_000)

        // The shared wake-up itself: with the input drained and every report served, one more send.
        // Its delivery report must raise the consumer's signal; a wait that ends by its 20 s timeout
        // (returns false) means the producer's queue does not wake the consumer's thread.
        _ = consumer.signal.wait(timeoutMs: 0)
        try producer.send(to: out, partition: 0, key: nil, value: Array("wake".utf8), context: 1 << 48)
        var wakeUps = 0
        let wakeDeadline = monotonicMilliseconds() + 60_000
        while delivered == 2_000 && monotonicMilliseconds() < wakeDeadline {
            let raised = consumer.signal.wait(timeoutMs: 20_000)
            #expect(raised, "a delivery report raised the consumer's signal")
            if !raised { break }
            wakeUps += 1
            producer.serveDeliveryReports()
        }
        #expect(delivered == 2_001, "the report was served after \(wakeUps) wake-up(s)")
        try consumer.close()
    }
}
