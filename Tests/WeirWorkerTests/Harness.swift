import Foundation
import Synchronization
import WeirControl
import WeirKafka
import WeirTestSupport
import WeirWorker

/// The repository root (tests read the committed demo bundle from models/demo).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let demoBundleURL = repositoryRoot.appendingPathComponent("models/demo")

/// A cluster with the worker's three topics.
func makeCluster(partitions: Int = 4) throws -> EmbeddedCluster {
    try EmbeddedCluster(brokers: 1, topics: [("events", partitions), ("predictions", partitions), ("dead-letters", partitions)])
}

/// Settings for a test worker on `cluster`: fast joins and fetches.
func testSettings(_ cluster: EmbeddedCluster, group: String = "weir-test-\(UInt32.random(in: 0...UInt32.max))") -> WorkerSettings {
    var settings = WorkerSettings()
    settings.brokers = cluster.bootstrapServers
    settings.group = group
    settings.model = demoBundleURL.path
    // The mock broker holds every rebalance open for session.timeout.ms - 1 s: 2 s with this session.
    settings.kafka["consumer.session.timeout.ms"] = "3000"
    settings.kafka["consumer.heartbeat.interval.ms"] = "500"
    settings.kafka["consumer.fetch.wait.max.ms"] = "5"
    settings.commitIntervalMs = 100
    return settings
}

/// A worker running on its own thread.
final class RunningWorker: Sendable {
    let worker: Worker
    private let finished = DispatchSemaphore(value: 0)
    private let failure = Mutex<String?>(nil)
    let log = LineLog()

    init(settings: WorkerSettings, bundle: ModelBundle) throws {
        let log = self.log
        worker = try Worker(settings: settings, bundle: bundle, log: { record in log.lines.withLock { $0.append(record.message) } })
        let thread = Thread { [self] in
            do { try worker.run() } catch { failure.withLock { $0 = "\(error)" } }
            finished.signal()
        }
        thread.start()
    }

    /// Waits (bounded) until the worker owns partitions.
    func waitUntilReady(timeoutSeconds: Double = 30) throws {
        try waitFor("the worker to be assigned partitions", timeoutSeconds: timeoutSeconds) { worker.isReady }
    }

    /// Stops the worker and waits for `run` to return; throws if it failed or took longer than the bound.
    func stop(timeoutSeconds: Double = 15) throws {
        worker.stop()
        try waitStopped(timeoutSeconds: timeoutSeconds)
    }

    /// Waits for `run` to return after `worker.stop()`.
    func waitStopped(timeoutSeconds: Double = 15) throws {
        guard finished.wait(timeout: .now() + timeoutSeconds) == .success else {
            let tail = log.lines.withLock { $0 }.filter { !$0.hasPrefix("[thrd") }.suffix(8).joined(separator: " | ")
            throw TestFailure("worker \(worker.settings.workerID) did not stop within \(timeoutSeconds) s; last lines: \(tail)")
        }
        if let failure = failure.withLock({ $0 }) { throw TestFailure("worker failed: \(failure)") }
    }

    /// Why `run` threw, once it has (nil while running or after a clean stop).
    var failureDescription: String? { failure.withLock { $0 } }

    var answered: Int {
        worker.metrics.predictionTotal.load(ordering: .relaxed) + worker.metrics.deadLetterTotal.load(ordering: .relaxed)
            + worker.metrics.tombstoneTotal.load(ordering: .relaxed)
    }
}

/// Lines a worker logged.
final class LineLog: Sendable {
    let lines = Mutex<[String]>([])
}

/// Polls `condition` every 20 ms until it holds; a bounded wait for state owned by another thread.
func waitFor(_ what: String, timeoutSeconds: Double = 30, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeoutSeconds)
    while try !condition() {
        if Date() > deadline { throw TestFailure("timed out after \(timeoutSeconds) s waiting for \(what)") }
        usleep(20_000)
    }
}

/// Produces records and waits until all are delivered.
func produce(_ cluster: EmbeddedCluster, topic: String = "events",
             _ records: [(key: [UInt8]?, value: [UInt8]?, headers: [(String, String)])]) throws {
    let delivered = Atomic<Int>(0)
    let failed = Atomic<Int>(0)
    var configuration = ProducerConfiguration(bootstrapServers: cluster.bootstrapServers)
    configuration.lingerMs = 1
    let producer = try KafkaProducer(configuration: configuration, onDelivery: { reports in
        for report in reports {
            if report.error == nil { delivered.add(1, ordering: .relaxed) } else { failed.add(1, ordering: .relaxed) }
        }
    })
    let handle = try producer.topic(topic)
    for record in records {
        var headers = OutgoingHeaders()
        for (name, value) in record.headers { headers.append(name: name, value: value) }
        try producer.send(to: handle, key: record.key, value: record.value, headers: headers)
    }
    try producer.flush(timeoutMs: 30_000)
    guard delivered.load(ordering: .relaxed) == records.count else {
        throw TestFailure("produced \(delivered.load(ordering: .relaxed)) of \(records.count) (\(failed.load(ordering: .relaxed)) failed)")
    }
}

/// Every record of `topic`, read from the beginning up to the high watermarks at the time of the call.
func readTopic(_ cluster: EmbeddedCluster, _ topic: String, partitions: Int = 4, timeoutSeconds: Double = 30) throws -> [ConsumedRecord] {
    var configuration = ConsumerConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: "reader-\(UInt32.random(in: 0...UInt32.max))")
    configuration.properties["fetch.wait.max.ms"] = "5"
    let consumer = try KafkaConsumer(configuration: configuration)
    var expected = [Int32: Int64]()
    for partition in 0..<Int32(partitions) {
        let marks = try consumer.watermarks(topic, partition)
        if marks.low > 0 {
            try? consumer.close()
            throw TestFailure("the embedded broker dropped the first \(marks.low) records of \(topic)[\(partition)] (it keeps about 5 MiB per partition): spread the topic over more partitions")
        }
        expected[partition] = marks.high
    }
    let total = expected.values.reduce(0, +)
    try consumer.assign((0..<Int32(partitions)).map { TopicPartitionOffset(topic, $0, -2) })  // -2: beginning
    var records = [ConsumedRecord]()
    let deadline = Date().addingTimeInterval(timeoutSeconds)
    while Int64(records.count) < total {
        if Date() > deadline { throw TestFailure("read \(records.count) of \(total) records of \(topic) in \(timeoutSeconds) s") }
        consumer.poll(maxMessages: 1000, timeoutMs: 100) { batch in
            for message in batch { records.append(message.record()) }
        }
    }
    try? consumer.close()
    return records
}

/// The committed offsets of `group` on `topic`, as partition -> next offset.
func committedOffsets(_ cluster: EmbeddedCluster, group: String, topic: String = "events", partitions: Int = 4) throws -> [Int32: Int64] {
    let configuration = ConsumerConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: group)
    let consumer = try KafkaConsumer(configuration: configuration)
    let offsets = try consumer.committed((0..<Int32(partitions)).map { TopicPartition(topic, $0) })
    try? consumer.close()
    return Dictionary(uniqueKeysWithValues: offsets.map { ($0.partition, $0.offset) })
}

/// High watermarks per partition.
func highWatermarks(_ cluster: EmbeddedCluster, topic: String = "events", partitions: Int = 4) throws -> [Int32: Int64] {
    let consumer = try KafkaConsumer(configuration: ConsumerConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: "marks"))
    var result = [Int32: Int64]()
    for partition in 0..<Int32(partitions) { result[partition] = try consumer.watermarks(topic, partition).high }
    return result
}

/// A record's value parsed as a JSON object (tests only: Foundation JSON is fine here).
func jsonObject(_ record: ConsumedRecord) throws -> [String: Any] {
    guard let value = record.value, let object = try JSONSerialization.jsonObject(with: Data(value)) as? [String: Any] else {
        throw TestFailure("record at \(record.topic)[\(record.partition)]@\(record.offset) is not a JSON object")
    }
    return object
}

func header(_ record: ConsumedRecord, _ name: String) -> String? {
    record.headers.last { $0.name == name }?.value.map { String(decoding: $0, as: UTF8.self) }
}

/// The samples of metric `name` in a Prometheus text exposition: their label text and value.
func metricValues(_ text: String, _ name: String) -> [(labels: String, value: Double)] {
    text.split(separator: "\n").compactMap { line -> (String, Double)? in
        guard line.hasPrefix(name), let space = line.lastIndex(of: " ") else { return nil }
        let series = line[..<space]
        let rest = series.dropFirst(name.count)
        guard rest.isEmpty || rest.hasPrefix("{") else { return nil }
        guard let value = Double(line[line.index(after: space)...]) else { return nil }
        return (String(rest), value)
    }
}

/// The sum of metric `name`'s samples whose labels contain every one of `labels` (`code="too-large"`).
func metricSum(_ text: String, _ name: String, _ labels: String...) -> Double {
    metricValues(text, name).filter { sample in labels.allSatisfy { sample.labels.contains($0) } }.reduce(0) { $0 + $1.value }
}

/// The value of an unlabelled metric `name` (or its first sample).
func metricValue(_ text: String, _ name: String) -> Double? { metricValues(text, name).first?.value }

/// Waits (bounded) until `group`'s committed offsets on `topic` equal `marks`, reading them with one
/// consumer (closed before returning). For tests whose worker must finish committing before it stops.
func waitForCommitted(_ cluster: EmbeddedCluster, group: String, _ marks: [Int32: Int64], topic: String = "events",
                      timeoutSeconds: Double = 40) throws {
    let reader = try KafkaConsumer(configuration: ConsumerConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: group))
    defer { try? reader.close() }
    var last = [Int32: Int64]()
    do {
        try waitFor("\(group)'s commits to reach the end of \(topic)", timeoutSeconds: timeoutSeconds) {
            let offsets = try reader.committed(marks.keys.sorted().map { TopicPartition(topic, $0) })
            last = Dictionary(uniqueKeysWithValues: offsets.map { ($0.partition, $0.offset) })
            return last == marks
        }
    } catch {
        throw TestFailure("\(error): committed \(last.sorted { $0.key < $1.key }), high \(marks.sorted { $0.key < $1.key })")
    }
}
