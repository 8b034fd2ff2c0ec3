import Foundation
import Testing
import WeirKafka
import WeirTestSupport
import WeirWorker

@Suite struct ServeProcessTests {
    /// SIGTERM mid-stream: `weir serve` finishes the batch, flushes, commits and exits 0 within 10 s,
    /// and every input offset below the committed one has its prediction.
    @Test func sigtermDrainsCommitsAndExitsZero() throws {
        let cluster = try makeCluster()
        defer { cluster.stop() }
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
        defer { if process.isRunning { process.interrupt(); process.waitUntilExit() } }
        // Mid-stream: some predictions are out, most events are not answered yet.
        try waitFor("the first predictions", timeoutSeconds: 30) {
            try highWatermarks(cluster, topic: "predictions").values.reduce(0, +) >= 500
        }
        let signalled = Date()
        process.terminate()  // SIGTERM
        let exited = DispatchSemaphore(value: 0)
        DispatchQueue.global().async { process.waitUntilExit(); exited.signal() }
        let inTime = exited.wait(timeout: .now() + 10) == .success
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
}
