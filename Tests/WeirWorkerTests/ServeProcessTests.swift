import Foundation
import Testing
import WeirKafka
import WeirTestSupport
import WeirWorker

@Suite(.timeLimit(.minutes(3))) struct ServeProcessTests {
    /// SIGTERM mid-stream: `weir serve` finishes the batch, flushes, commits and exits 0 within 10 s,
    /// and every input offset below the committed one has its prediction.
    @Test func sigtermDrainsCommitsAndExitsZero() throws {
        let cluster = try makeCluster()
        defer { cluster.stopCheckingClients() }
        let count = 20_000
        try produce(cluster, (0..<count).map { (SyntheticEvents.key($0), SyntheticEvents.event($0), []) })
        let group = "serve-\(UInt32.random(in: 0...UInt32.max))"
        let process = Process()
        process.executableURL = builtProduct("weir")
        process.arguments = ["serve", "--brokers", cluster.bootstrapServers, "--group", group, "--model", demoBundleURL.path,
                             "--metrics-port", "0", "--kafka-consumer-session-timeout-ms", "6000", "--kafka-consumer-fetch-wait-max-ms", "5",
                             "--batch-max-events", "64"]
        let errorFile = FileManager.default.temporaryDirectory.appendingPathComponent("weir-serve-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: errorFile.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errorFile) }
        process.standardError = try FileHandle(forWritingTo: errorFile)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        defer { stop(process, signal: SIGKILL) }
        // Mid-stream: some predictions are out, most events are not answered yet.
        try waitFor("the first predictions", timeoutSeconds: 30) {
            try highWatermarks(cluster, topic: "predictions").values.reduce(0, +) >= 500
        }
        let signalled = Date()
        let inTime = stop(process, signal: SIGTERM, seconds: 10)
        let log = (try? String(contentsOf: errorFile, encoding: .utf8)) ?? ""
        #expect(inTime, "exited within 10 s of SIGTERM; log:\n\(log)")
        guard inTime else { return }
        #expect(process.terminationStatus == 0, "exit status; log:\n\(log)")
        #expect(Date().timeIntervalSince(signalled) < 10)
        #expect(log.contains("received SIGTERM"))

        let committed = try committedOffsets(cluster, group: group)
        let predictions = try readTopic(cluster, "predictions")
        var answered = [Int32: Set<Int64>]()
        for record in predictions {
            let source = try jsonObject(record)["source"] as! [String: Any]
            answered[Int32(source["partition"] as! Int), default: []].insert(Int64(source["offset"] as! Int))
        }
        var committedTotal: Int64 = 0
        for (partition, offset) in committed where offset >= 0 {
            committedTotal += offset
            let missing = (0..<offset).filter { !(answered[partition]?.contains($0) ?? false) }
            #expect(missing.isEmpty, "events[\(partition)] offsets below the commit \(offset) without a prediction: \(missing.prefix(5))")
        }
        #expect(committedTotal >= 500, "the worker committed what it answered")
        #expect(committedTotal == Int64(predictions.count), "everything predicted before the stop was committed")
    }

    /// `--log-format json`: every stderr line is one JSON object with a timestamp, level and message,
    /// stamped with the worker id, model and version; lines about a partition carry it (a rejected
    /// control message: topic, partition, offset; the assignment: its partitions), and librdkafka's
    /// own lines (the broker going away) come through the same formatter.
    @Test func jsonLogsCarryWorkerModelVersionAndPartition() throws {
        let cluster = try EmbeddedCluster(brokers: 1, topics: [("events", 4), ("predictions", 4), ("dead-letters", 4), ("control", 1)])
        defer { cluster.stopCheckingClients() }
        let keyFile = FileManager.default.temporaryDirectory.appendingPathComponent("weir-log-key-\(UUID().uuidString)")
        try Data("a shared secret of at least 32 bytes".utf8).write(to: keyFile)
        defer { try? FileManager.default.removeItem(at: keyFile) }
        try produce(cluster, (0..<200).map { (SyntheticEvents.key($0), SyntheticEvents.event($0), []) })
        let process = Process()
        process.executableURL = builtProduct("weir")
        process.arguments = ["serve", "--brokers", cluster.bootstrapServers, "--group", "log-\(UUID().uuidString)",
                             "--model", demoBundleURL.path, "--metrics-port", "0", "--worker-id", "log-worker",
                             "--control-topic", "control", "--control-key-file", keyFile.path, "--log-format", "json",
                             "--kafka-consumer-session-timeout-ms", "6000", "--kafka-consumer-fetch-wait-max-ms", "5"]
        let errorFile = FileManager.default.temporaryDirectory.appendingPathComponent("weir-log-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: errorFile.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errorFile) }
        process.standardError = try FileHandle(forWritingTo: errorFile)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        defer { stop(process, signal: SIGKILL) }
        func lines() -> [String] {
            ((try? String(contentsOf: errorFile, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }
        func records() throws -> [[String: Any]] {
            try lines().map { line in
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                    throw TestFailure("a log line is not a JSON object: \(line)")
                }
                return object
            }
        }
        try waitFor("the worker's assignment", timeoutSeconds: 30) {
            try records().contains { ($0["msg"] as? String)?.hasPrefix("assigned") == true }
        }
        // An unsigned control message: rejected, and the line names where it was read.
        try produce(cluster, topic: "control", [(Array("fraud".utf8), Array("{\"action\":\"pause\"}".utf8), [])])
        try waitFor("the rejection line", timeoutSeconds: 30) {
            try records().contains { ($0["msg"] as? String)?.contains("control: rejected") == true }
        }
        // The broker goes away: librdkafka's own lines must come through as JSON too.
        try cluster.setBrokerDown()
        try waitFor("a librdkafka line", timeoutSeconds: 30) { try records().contains { $0["source"] as? String == "kafka" } }
        try cluster.setBrokerUp()
        #expect(stop(process), "the worker ends within 30 s of SIGTERM")
        #expect(process.terminationStatus == 0)

        let all = try records()
        for record in all {
            #expect(record["ts"] is String && record["level"] is String && record["msg"] is String, "\(record)")
            #expect(record["worker"] as? String == "log-worker", "every line names the worker: \(record)")
            #expect(record["model"] as? String == "fraud", "every line names the model: \(record)")
        }
        for start in ["worker log-worker: serving", "assigned", "control: rejected", "worker log-worker stopped"] {
            let line = all.first { ($0["msg"] as? String)?.hasPrefix(start) == true }
            #expect(line?["version"] as? String == "1.0.0", "'\(start)' carries the serving version: \(String(describing: line))")
        }
        let rejection = all.first { ($0["msg"] as? String)?.contains("control: rejected") == true }
        #expect(rejection?["topic"] as? String == "control" && rejection?["partition"] as? Int == 0
                && rejection?["offset"] as? Int == 0, "the rejection names topic, partition and offset: \(String(describing: rejection))")
        #expect(rejection?["level"] as? String == "warning")
        let assignment = all.first { ($0["msg"] as? String)?.hasPrefix("assigned") == true }
        #expect((assignment?["partitions"] as? [String])?.sorted() == ["events[0]", "events[1]", "events[2]", "events[3]"],
                "the assignment lists its partitions: \(String(describing: assignment))")
        let kafka = all.first { $0["source"] as? String == "kafka" }
        #expect(kafka?["facility"] is String && kafka?["version"] as? String == "1.0.0", "\(String(describing: kafka))")
    }
}
