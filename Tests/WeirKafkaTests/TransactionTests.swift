import Testing
import WeirTestSupport
@testable import WeirKafka

@Suite("Transactional producer", .timeLimit(.minutes(3)))
struct TransactionTests {
    /// Consumes exactly `count` messages with a fresh consumer in `group`, returning their next offsets.
    private func consume(_ consumer: KafkaConsumer, count: Int) -> [TopicPartitionOffset] {
        var next = [TopicPartition: Int64]()
        var consumed = 0
        let deadline = monotonicMilliseconds() + 30_000
        while consumed < count && monotonicMilliseconds() < deadline {
            consumed += consumer.poll(maxMessages: count - consumed, timeoutMs: 200) { messages in
                for m in messages { next[TopicPartition(m.topic, m.partition)] = m.offset + 1 }
            }
        }
        return next.map { TopicPartitionOffset($0.key.topic, $0.key.partition, $0.value) }
    }

    @Test("init, begin, send, send offsets, commit; then abort; then commit again")
    func transactionFlow() throws {
        let cluster = try EmbeddedCluster(topics: [("tx-in", 1), ("tx-out", 1)])
        defer { cluster.stopCheckingClients() }
        let bootstrap = cluster.bootstrapServers
        _ = try produceSequence(bootstrap, topic: "tx-in", range: 0..<30)
        let group = uniqueGroup("tx")
        let consumer = try KafkaConsumer(configuration: ConsumerConfiguration(bootstrapServers: bootstrap, groupID: group))
        try consumer.subscribe(["tx-in"])

        let tally = DeliveryTally()
        let producer = try makeProducer(bootstrap, tally: tally) { $0.transactionalID = "weir-test-\(group)" }
        try producer.initTransactions()
        let out = try producer.topic("tx-out")

        for (round, commit) in [(0, true), (1, false), (2, true)] {
            let offsets = consume(consumer, count: 10)
            #expect(offsets == [TopicPartitionOffset("tx-in", 0, Int64(10 * (round + 1)))])
            try producer.beginTransaction()
            for i in 0..<10 { try producer.send(to: out, key: nil, value: Array("out-\(round)-\(i)".utf8)) }
            try producer.sendOffsetsToTransaction(offsets, group: consumer.groupMetadata())
            if commit { try producer.commitTransaction() } else { try producer.abortTransaction() }
        }
        // Committing flushes: every output of the committed rounds was acknowledged.
        #expect(tally.delivered.withLock { $0 } + tally.failed.withLock { $0.count } >= 20)
        #expect(tally.failed.withLock { $0 }.allSatisfy { $0 == .purged })
        try consumer.close()
    }

    @Test("Committing with no open transaction is a state error; the producer stays usable")
    func stateError() throws {
        let cluster = try EmbeddedCluster(topics: [("tx-state", 1)])
        defer { cluster.stopCheckingClients() }
        let producer = try makeProducer(cluster.bootstrapServers, tally: DeliveryTally()) {
            $0.transactionalID = "weir-state-\(UInt32.random(in: 0...UInt32.max))"
        }
        try producer.initTransactions()
        #expect {
            try producer.commitTransaction(timeoutMs: 5_000)
        } throws: { error in
            guard let error = error as? KafkaError else { return false }
            return error.code == .invalidState && !error.isFatal
        }
        try producer.beginTransaction()
        try producer.send(to: try producer.topic("tx-state"), key: nil, value: Array("ok".utf8))
        try producer.commitTransaction()
    }
}
