import Foundation
import Testing
import WeirControl
import WeirKafka
import WeirTestSupport
import WeirWorker

/// How hard the chaos suite pushes: `make test` runs scale 1, `make chaos` sets `WEIR_CHAOS_SCALE`
/// (more events per scenario, 10 crashes instead of 2).
let chaosScale = max(1, Int(ProcessInfo.processInfo.environment["WEIR_CHAOS_SCALE"] ?? "") ?? 1)
/// Set by `make chaos`: the long scenarios run only then.
let chaosFull = ProcessInfo.processInfo.environment["WEIR_CHAOS_SCALE"] != nil

/// What a scenario left on the output topics, per consumed input offset.
struct OutputAudit: CustomStringConvertible {
    /// Input offsets with no prediction and no dead letter.
    var lost = 0
    /// Outputs beyond the first for an input offset.
    var duplicated = 0
    var predictions = 0
    var deadLetters = 0
    /// The longest gap between two consecutive outputs (by record timestamp), in milliseconds.
    var longestStallMs: Int64 = 0
    var firstLost: [String] = []

    var description: String {
        "\(predictions) predictions, \(deadLetters) dead letters, lost \(lost), duplicated \(duplicated), longest output stall \(longestStallMs) ms"
    }

    /// Reads both output topics and checks them against every offset below the input's high watermarks.
    init(_ cluster: EmbeddedCluster, partitions: Int) throws {
        var count = [Int32: [Int64: Int]]()
        var stamps = [Int64]()
        for record in try readTopic(cluster, "predictions", partitions: partitions) {
            let source = try jsonObject(record)["source"] as? [String: Any] ?? [:]
            guard let partition = source["partition"] as? Int, let offset = source["offset"] as? Int else {
                throw TestFailure("a prediction without its source: \(record)")
            }
            count[Int32(partition), default: [:]][Int64(offset), default: 0] += 1
            predictions += 1
            if let stamp = record.timestampMilliseconds { stamps.append(stamp) }
        }
        for record in try readTopic(cluster, "dead-letters", partitions: partitions) {
            guard let partition = header(record, "weir-source-partition").flatMap({ Int32($0) }),
                  let offset = header(record, "weir-source-offset").flatMap({ Int64($0) }) else {
                throw TestFailure("a dead letter without its source headers: \(record)")
            }
            count[partition, default: [:]][offset, default: 0] += 1
            deadLetters += 1
            if let stamp = record.timestampMilliseconds { stamps.append(stamp) }
        }
        for (partition, high) in try highWatermarks(cluster, partitions: partitions) {
            for offset in 0..<high {
                let seen = count[partition]?[offset] ?? 0
                if seen == 0 {
                    lost += 1
                    if firstLost.count < 5 { firstLost.append("events[\(partition)]@\(offset)") }
                }
                duplicated += max(0, seen - 1)
            }
        }
        stamps.sort()
        for (earlier, later) in zip(stamps, stamps.dropFirst()) { longestStallMs = max(longestStallMs, later - earlier) }
    }
}

/// Faults from the embedded broker while a worker answers a stream: after each, every consumed
/// offset has exactly one prediction or dead letter, and the group's commits reach the end.
@Suite struct ChaosTests {
    let bundle = try! ModelBundle(directory: demoBundleURL)

    /// One scenario: half the events before the fault, half after, a bad event every 50.
    func scenario(_ name: String, fault: (EmbeddedCluster) throws -> Void) throws {
        let cluster = try makeCluster()
        defer { cluster.stop() }
        let events = 3_000 * chaosScale
        func batch(_ range: Range<Int>) -> [(key: [UInt8]?, value: [UInt8]?, headers: [(String, String)])] {
            range.map { index in
                (SyntheticEvents.key(index), index % 50 == 49 ? SyntheticEvents.badEvent(index, kind: SyntheticEvents.badKinds[index / 50 % 3])
                                                               : SyntheticEvents.event(index), [])
            }
        }
        try produce(cluster, batch(0..<events / 2))
        var settings = testSettings(cluster)
        settings.batchMaxEvents = 64
        let running = try RunningWorker(settings: settings, bundle: bundle)
        try waitFor("the first answers") { running.answered >= 200 }
        try fault(cluster)
        try produce(cluster, batch(events / 2..<events))
        do {
            try waitFor("every event answered", timeoutSeconds: 120) { running.answered >= events }
        } catch {
            throw TestFailure("\(name): \(error) (\(running.answered) of \(events)); log \(running.log.lines.withLock { $0 }.suffix(20))")
        }
        try running.stop(timeoutSeconds: 30)
        let audit = try OutputAudit(cluster, partitions: 4)
        print("chaos \(name): \(events) events: \(audit)")
        #expect(audit.lost == 0, "\(name): lost \(audit.firstLost)")
        #expect(audit.duplicated == 0, "\(name): every offset answered once")
        #expect(audit.predictions + audit.deadLetters == events)
        #expect(try committedOffsets(cluster, group: settings.group) == (try highWatermarks(cluster)), "\(name): commits reach the end")
    }

    @Test func produceErrorsAreRetriedWithoutLossOrDuplicates() throws {
        try scenario("produce errors") { cluster in
            cluster.injectRequestErrors(.produce, [.notLeaderForPartition, .requestTimedOut, .notEnoughReplicas, .leaderNotAvailable,
                                                  .notLeaderForPartition, .notEnoughReplicas, .transport, .requestTimedOut])
        }
    }

    @Test func fetchErrorsAreRetried() throws {
        try scenario("fetch errors") { cluster in
            cluster.injectRequestErrors(.fetch, [.notLeaderForPartition, .leaderNotAvailable, .transport, .notLeaderForPartition,
                                                .unknownTopicOrPartition, .leaderNotAvailable])
        }
    }

    @Test func coordinatorErrorsDelayCommitsButLoseNothing() throws {
        try scenario("coordinator errors") { cluster in
            cluster.injectRequestErrors(.offsetCommit, [.coordinatorNotAvailable, .notCoordinator, .requestTimedOut,
                                                       .coordinatorLoadInProgress, .notCoordinator, .coordinatorNotAvailable])
            cluster.injectRequestErrors(.findCoordinator, [.coordinatorNotAvailable, .coordinatorNotAvailable])
            cluster.injectRequestErrors(.heartbeat, [.notCoordinator, .rebalanceInProgress])
        }
    }

    /// The only broker goes away for 3 s (under the 6 s session timeout) while events are in flight.
    @Test func brokerDownAndUp() throws {
        try scenario("broker down 3 s") { cluster in
            try cluster.setBrokerDown()
            Thread.sleep(forTimeInterval: 3)  // the outage itself, not a wait for an event
            try cluster.setBrokerUp()
        }
    }

    /// Every response delayed by 400 ms for 3 s.
    @Test func delaySpike() throws {
        try scenario("400 ms delay spike") { cluster in
            try cluster.setRoundTripDelay(400)
            Thread.sleep(forTimeInterval: 3)  // the spike itself
            try cluster.setRoundTripDelay(0)
        }
    }

    /// Scale 1 -> 3 -> 1 workers under a steady producer: graceful moves commit before partitions
    /// leave, so nothing is lost or answered twice; the longest output stall is printed.
    /// `make chaos` only, and not passing yet: on the embedded broker, a member joining makes the
    /// owner's commits and SyncGroup fail with ILLEGAL_GENERATION, librdkafka reports the assignment
    /// lost, and in some runs the group's commits stop short of the end (under investigation).
    @Test(.enabled(if: chaosFull)) func rebalanceOneToThreeToOne() throws {
        let partitions = 6
        let cluster = try EmbeddedCluster(brokers: 1, topics: [("events", partitions), ("predictions", partitions), ("dead-letters", partitions)])
        defer { cluster.stop() }
        let events = 25_000 * chaosScale
        let producer = try SyntheticProducer(brokers: cluster.bootstrapServers, topic: "events", rate: 1_000, limit: events, badEvery: 97)
        defer { producer.stop() }
        var settings = testSettings(cluster)
        settings.batchMaxEvents = 64
        if let strategy = ProcessInfo.processInfo.environment["CHAOS_STRATEGY"] { settings.kafka["consumer.partition.assignment.strategy"] = strategy }
        func answered(_ workers: [RunningWorker]) -> Int { workers.reduce(0) { $0 + $1.answered } }
        let first = try RunningWorker(settings: settings, bundle: bundle)
        try waitFor("the first worker answering") { first.answered >= 300 }
        var extra = [RunningWorker]()
        for name in ["b", "c"] {
            var more = settings
            more.workerID = "chaos-\(name)-\(UUID().uuidString.prefix(6))"
            let worker = try RunningWorker(settings: more, bundle: bundle)
            extra.append(worker)
            do {
                try waitFor("worker \(name) answering", timeoutSeconds: 60) { worker.answered > 50 }
            } catch {
                let logs = ([first] + extra).map { $0.log.lines.withLock { $0 }.filter { !$0.hasPrefix("[thrd") }.joined(separator: "\n") }
                throw TestFailure("\(error); answered \(([first] + extra).map(\.answered)); logs:\n\(logs.joined(separator: "\n--\n"))")
            }
        }
        let beforeScaleDown = answered([first] + extra)
        try waitFor("the three answering together") { answered([first] + extra) >= beforeScaleDown + 500 }
        for worker in extra { try worker.stop(timeoutSeconds: 30) }
        try waitFor("the producer done", timeoutSeconds: 120) { producer.isFinished }
        let total = producer.sent.load(ordering: .relaxed)
        // Answer counts include repeats, so completion is the group's commits reaching the end.
        let marks = try highWatermarks(cluster, partitions: partitions)
        #expect(marks.values.reduce(0, +) == Int64(total))
        try waitFor("commits at the end of every partition", timeoutSeconds: 120) {
            try committedOffsets(cluster, group: settings.group, partitions: partitions) == marks
        }
        try first.stop(timeoutSeconds: 30)
        let audit = try OutputAudit(cluster, partitions: partitions)
        print("chaos rebalance 1 -> 3 -> 1: \(total) events: \(audit)")
        let logs = ([first] + extra).flatMap { $0.log.lines.withLock { $0 } }
        let lostPartitions = logs.contains { $0.hasPrefix("lost ") }
        if audit.duplicated > 0 || audit.lost > 0 {
            print("rebalance logs:\n" + ([first] + extra).map { $0.log.lines.withLock { $0 }.joined(separator: "\n") }.joined(separator: "\n--\n"))
        }
        #expect(audit.lost == 0, "lost \(audit.firstLost)")
        #expect(lostPartitions || audit.duplicated == 0, "partitions moved only after their commits")
        #expect(logs.filter { $0.hasPrefix("revoked") }.count >= 2, "partitions moved")
        #expect(try committedOffsets(cluster, group: settings.group, partitions: partitions) == (try highWatermarks(cluster, partitions: partitions)))
    }
}
