import Testing
import WeirTestSupport
@testable import WeirKafka

@Suite("Fault injection on the embedded cluster", .timeLimit(.minutes(3)))
struct FaultTests {
    @Test("An injected produce error reaches a producer that may not retry")
    func injectionIsReal() throws {
        let cluster = try EmbeddedCluster(topics: [("inj", 1)])
        defer { cluster.stopCheckingClients() }
        cluster.injectRequestErrors(.produce, [KafkaErrorCode(rawValue: 10)])  // MESSAGE_TOO_LARGE: not retriable
        let tally = DeliveryTally()
        let producer = try makeProducer(cluster.bootstrapServers, tally: tally) {
            $0.idempotent = false
            $0.properties["retries"] = "0"
            $0.properties["acks"] = "1"
        }
        try producer.send(to: try producer.topic("inj"), key: nil, value: Array("x".utf8))
        try producer.flush(timeoutMs: 10_000)
        #expect(tally.failed.withLock { $0 } == [KafkaErrorCode(rawValue: 10)])
    }

    @Test("50 injected produce errors: every message delivered exactly once")
    func producerRetriesExactlyOnce() throws {
        let cluster = try EmbeddedCluster(topics: [("retry", 4)])
        defer { cluster.stopCheckingClients() }
        let errors = (0..<50).map { $0 % 2 == 0 ? KafkaErrorCode.notLeaderForPartition : .requestTimedOut }
        cluster.injectRequestErrors(.produce, errors)
        let total = 5_000
        let tally = try produceSequence(cluster.bootstrapServers, topic: "retry", range: 0..<total)
        #expect(tally.delivered.withLock { $0 } == total)
        #expect(tally.failed.withLock { $0 }.isEmpty)

        let collector = RecordCollector()
        let loop = ConsumerLoop(name: "retry", bootstrap: cluster.bootstrapServers, group: uniqueGroup("retry"),
                                topics: ["retry"], collector: collector)
        #expect(collector.waitForCount(total))
        // Give a duplicate the chance to show up before counting (bounded: 1 s of further polling).
        collector.waitForCount(total + 1, timeoutSeconds: 1)
        loop.stop()
        let sequences = collector.all.map(sequenceNumber)
        #expect(sequences.count == total, "no duplicates")
        #expect(Set(sequences) == Set(0..<total), "nothing lost")
        // Per key, the idempotent producer kept send order through the retries.
        var last = [String: Int]()
        for record in collector.all.sorted(by: { ($0.partition, $0.offset) < ($1.partition, $1.offset) }) {
            let key = record.keyString!
            #expect(sequenceNumber(record) > last[key, default: -1])
            last[key] = sequenceNumber(record)
        }
    }

    @Test("Broker down then up: queued messages are delivered once it returns")
    func brokerDownAndUp() throws {
        let cluster = try EmbeddedCluster(brokers: 1, topics: [("down", 2)])
        defer { cluster.stopCheckingClients() }
        // The producer's connection failures while the broker is down are expected: they come to
        // the test (which checks the outage was seen) instead of the test output.
        let clientID = "down-\(UInt32.random(in: 0...UInt32.max))"
        let refused = Locked(0)
        let route = KafkaLog.route(clientID: clientID) { line in
            if line.facility == "FAIL" { refused.withLock { $0 += 1 } }
        }
        defer { route.cancel() }
        let tally = DeliveryTally()
        let producer = try makeProducer(cluster.bootstrapServers, tally: tally) { $0.clientID = clientID }
        let topic = try producer.topic("down")
        try producer.send(to: topic, key: nil, value: Array("warm-up".utf8))
        try producer.flush(timeoutMs: 10_000)
        try cluster.setBrokerDown()
        for i in 0..<200 { try producer.send(to: topic, key: nil, value: Array("m\(i)".utf8)) }
        // While the broker is down nothing can be acknowledged.
        #expect(!tally.waitForTotal(2, timeoutSeconds: 1.5))
        try cluster.setBrokerUp()
        try producer.flush(timeoutMs: 30_000)
        #expect(refused.withLock { $0 } > 0, "the producer saw the broker refuse connections")
        #expect(tally.delivered.withLock { $0 } == 201)
        #expect(tally.failed.withLock { $0 }.isEmpty)
    }

    /// A refusal librdkafka does not retry by itself reaches the caller, once per refused commit,
    /// with its code; retriable coordinator errors are retried inside librdkafka; either way a later
    /// commit lands.
    @Test("Coordinator errors on commit are reported, and a later commit succeeds")
    func commitErrors() throws {
        let cluster = try EmbeddedCluster(topics: [("cmt", 1)])
        defer { cluster.stopCheckingClients() }
        _ = try produceSequence(cluster.bootstrapServers, topic: "cmt", range: 0..<10)
        let group = uniqueGroup("cmt")
        let consumer = try KafkaConsumer(configuration: ConsumerConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: group))
        try consumer.subscribe(["cmt"])
        var consumed = 0
        let deadline = monotonicMilliseconds() + 30_000
        while consumed < 10 && monotonicMilliseconds() < deadline { consumed += consumer.poll(timeoutMs: 200) { _ in } }
        #expect(consumed == 10)
        let groupAuthorizationFailed = KafkaErrorCode(rawValue: 30)
        cluster.injectRequestErrors(.offsetCommit, [groupAuthorizationFailed, groupAuthorizationFailed])
        var refusals = [KafkaErrorCode]()
        for offset in Int64(4)...6 {
            do { try consumer.commit([TopicPartitionOffset("cmt", 0, offset)]) } catch { refusals.append(error.code) }
        }
        #expect(refusals == [groupAuthorizationFailed, groupAuthorizationFailed], "each refused commit reported with its code: \(refusals)")
        #expect(try consumer.committed([TopicPartition("cmt", 0)]).first?.offset == 6, "the commit after the refusals landed")
        // Retriable coordinator errors: librdkafka finds the coordinator again and the commit lands.
        cluster.injectRequestErrors(.offsetCommit, [.notCoordinator, .coordinatorNotAvailable])
        var landed = false
        for _ in 0..<5 where !landed {
            do { try consumer.commit([TopicPartitionOffset("cmt", 0, 10)]); landed = true } catch {}
        }
        #expect(landed)
        #expect(try consumer.committed([TopicPartition("cmt", 0)]).first?.offset == 10)
        try consumer.close()
    }

    @Test("Round-trip delay slows responses but loses nothing")
    func roundTripDelay() throws {
        let cluster = try EmbeddedCluster(topics: [("rtt", 2)])
        defer { cluster.stopCheckingClients() }
        try cluster.setRoundTripDelay(300)
        let start = monotonicMilliseconds()
        let tally = try produceSequence(cluster.bootstrapServers, topic: "rtt", range: 0..<50)
        #expect(tally.delivered.withLock { $0 } == 50)
        #expect(monotonicMilliseconds() - start >= 300, "every request waited the injected delay")
    }
}
