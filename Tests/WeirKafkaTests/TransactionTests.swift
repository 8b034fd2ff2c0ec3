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

    /// The embedded broker keeps aborted records in the log like committed ones (it does not model
    /// read_committed), so the test tells a commit from an abort by what happens to the round's
    /// outputs: they wait in the producer (a 10 s linger), so a commit must send and deliver all ten
    /// and an abort must purge all ten, and neither leaves anything outstanding.
    @Test("init, begin, send, send offsets, commit; then abort; then commit again")
    func transactionFlow() throws {
        let cluster = try EmbeddedCluster(topics: [("tx-in", 1), ("tx-out", 1)])
        defer { cluster.stopCheckingClients() }
        let bootstrap = cluster.bootstrapServers
        _ = try produceSequence(bootstrap, topic: "tx-in", range: 0..<30)
        let group = uniqueGroup("tx")
        let consumer = try KafkaConsumer(configuration: ConsumerConfiguration(bootstrapServers: bootstrap, groupID: group))
        try consumer.subscribe(["tx-in"])

        // Per output (context round * 100 + i + 1): nil when delivered, else the error.
        let outcomes = Locked([UInt: KafkaErrorCode?]())
        var configuration = ProducerConfiguration(bootstrapServers: bootstrap)
        configuration.transactionalID = "weir-test-\(group)"
        configuration.lingerMs = 10_000
        let producer = try KafkaProducer(configuration: configuration, onDelivery: { reports in
            outcomes.withLock { table in for report in reports { table[report.context] = .some(report.error) } }
        })
        try producer.initTransactions()
        let out = try producer.topic("tx-out")

        for (round, commit) in [(0, true), (1, false), (2, true)] {
            let offsets = consume(consumer, count: 10)
            #expect(offsets == [TopicPartitionOffset("tx-in", 0, Int64(10 * (round + 1)))])
            try producer.beginTransaction()
            let contexts = (0..<10).map { UInt(round * 100 + $0 + 1) }
            for context in contexts { try producer.send(to: out, key: nil, value: Array("out-\(round)-\(context)".utf8), context: context) }
            try producer.sendOffsetsToTransaction(offsets, group: consumer.groupMetadata())
            if commit { try producer.commitTransaction() } else { try producer.abortTransaction() }
            #expect(producer.outstanding == 0, "round \(round): the transaction's end leaves nothing outstanding")
            let reports = outcomes.withLock { table in contexts.map { table[$0] } }
            #expect(reports.allSatisfy { $0 != nil }, "round \(round): every output has its report")
            let delivered = reports.filter { $0 == .some(nil) }.count
            let purged = reports.filter { $0 == .some(.purged) }.count
            if commit {
                #expect(delivered == 10, "round \(round) committed: all ten delivered (\(purged) purged)")
            } else {
                #expect(purged == 10, "round \(round) aborted: all ten purged (\(delivered) delivered)")
            }
        }
        let end = try consumer.watermarks("tx-out", 0).high
        #expect(end >= 20, "the committed rounds' outputs are in the log (high watermark \(end))")
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

    /// What the worker's exactly-once committer relies on: once a transaction has failed (here the
    /// broker refuses AddPartitionsToTxn with TOPIC_AUTHORIZATION_FAILED), the open transaction's
    /// records are purged and every further send is refused with a code that names the producer's
    /// state, not the record (`refusesForProducerState`), until the transaction is aborted.
    @Test("After a transaction fails, sends are refused for the producer's state until the abort; then they go again")
    func sendsAfterAFailedTransaction() throws {
        let cluster = try EmbeddedCluster(topics: [("tx-fail", 1)])
        defer { cluster.stopCheckingClients() }
        let tally = DeliveryTally()
        let producer = try makeProducer(cluster.bootstrapServers, tally: tally) {
            $0.transactionalID = "weir-fail-\(UInt32.random(in: 0...UInt32.max))"
        }
        try producer.initTransactions()
        let topic = try producer.topic("tx-fail")
        cluster.injectRequestErrors(.addPartitionsToTxn, [KafkaErrorCode(rawValue: 29)])
        try producer.beginTransaction()
        try producer.send(to: topic, key: nil, value: Array("first".utf8))
        // The failed transaction purges its record: its report is the event that says it failed.
        #expect(tally.waitForTotal(1, timeoutSeconds: 30))
        #expect(tally.failed.withLock { $0 } == [.purged])
        #expect {
            try producer.send(to: topic, key: nil, value: Array("refused".utf8))
        } throws: { error in
            guard let error = error as? KafkaError else { return false }
            return error.code.refusesForProducerState && !error.code.refusesRecordForGood && !error.isFatal
        }
        try producer.abortTransaction()
        try producer.beginTransaction()
        try producer.send(to: topic, key: nil, value: Array("after".utf8))
        try producer.commitTransaction()
        #expect(tally.delivered.withLock { $0 } == 1, "the record sent after the abort is delivered")
    }
}
