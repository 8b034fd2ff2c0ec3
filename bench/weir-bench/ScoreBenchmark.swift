import Foundation
import WeirBatch
import WeirControl
import WeirKafka
import WeirWorker

/// `weir score` against its Python peer (bench/python/score_peer.py: orjson, pandas or numpy
/// columns, onnxruntime's batch API, one process per core) on the same JSONL file, best of
/// `rounds` wall-clock runs each, as each reports its own time (weir's --summary-json, the peer's
/// JSON line: neither counts interpreter or process start-up). Both write every prediction record.
/// Files live on tmpfs (/dev/shm) when there is one: on two cores the kernel's writeback of a disk
/// file would take the second core from whichever run is writing. The 1-to-2-thread scaling is the
/// median over rounds of back-to-back pairs (this machine's speed drifts by a third between runs;
/// a pair sees the same spell).
func runScoreBenchmark(events: Int, rounds: Int, model: String, peer: String, weir: String) throws {
    try FileManager.default.createDirectory(atPath: "bench/out", withIntermediateDirectories: true)
    let directory = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm/weir-bench-score" : "bench/out"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { if directory.hasPrefix("/dev/shm") { try? FileManager.default.removeItem(atPath: directory) } }
    let input = directory + "/score-events.jsonl"
    var text = [UInt8]()
    text.reserveCapacity(events * 760)
    for index in 0..<events {
        text.append(contentsOf: SyntheticEvents.event(index))
        text.append(0x0A)
    }
    try Data(text).write(to: URL(fileURLWithPath: input))
    print("\(events) events of about 750 bytes in \(input); model \(model); best of \(rounds) rounds (wall clock)")

    func weirRate(threads: Int, rounds: Int) throws -> Double {
        var best = 0.0
        for _ in 0..<rounds {
            let summary = directory + "/score-summary.json"
            let result = try runCommand([weir, "score", "--model", model, "--input", input, "--output", directory + "/score-weir.jsonl",
                                         "--threads", String(threads), "--summary-json", summary, "--no-progress"])
            guard result.status == 0 else { throw BenchmarkError("weir score exited \(result.status): \(result.errors)") }
            let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: summary))) as? [String: Any]
            guard let scored = object?["scored"] as? Int, scored == events, let rate = object?["events_per_second"] as? Double else {
                throw BenchmarkError("weir score did not score every event: \(object ?? [:])")
            }
            best = max(best, rate)
        }
        return best
    }

    func peerRate(processes: Int, frame: String) throws -> Double {
        var best = 0.0
        for _ in 0..<rounds {
            let result = try runCommand(["python3", peer, model, input, directory + "/score-peer.jsonl", "--processes", String(processes),
                                         "--frame", frame])
            guard result.status == 0, let line = result.output.split(separator: "\n").last,
                  let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let rate = object["events_per_second"] as? Double, object["events"] as? Int == events else {
                throw BenchmarkError("score peer failed (\(result.status)): \(result.output) \(result.errors)")
            }
            best = max(best, rate)
        }
        return best
    }

    // The machine's own ceiling, measured alike: two independent 1-thread processes at once, on
    // two copies of the file (their rates summed).
    let copy = directory + "/score-events-2.jsonl"
    try? FileManager.default.removeItem(atPath: copy)
    try FileManager.default.copyItem(atPath: input, toPath: copy)
    func twoProcesses() throws -> Double {
        let other = Process()
        other.executableURL = URL(fileURLWithPath: weir)
        other.arguments = ["score", "--model", model, "--input", copy, "--output", directory + "/score-weir-2.jsonl", "--threads", "1",
                           "--summary-json", directory + "/score-summary-2.json", "--no-progress"]
        other.standardError = FileHandle.nullDevice
        try other.run()
        let mine = try weirRate(threads: 1, rounds: 1)
        other.waitUntilExit()
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/score-summary-2.json"))) as? [String: Any]
        return mine + ((object?["events_per_second"] as? Double) ?? 0)
    }
    // Rounds run 1 thread, 2 threads and two processes back to back, so a noisy spell on the
    // machine hits all three alike; the ratios are the medians over rounds.
    var one = 0.0, two = 0.0
    var ratios = [Double](), ceilings = [Double]()
    for _ in 0..<rounds {
        let single = try weirRate(threads: 1, rounds: 1), double = try weirRate(threads: 2, rounds: 1), pair = try twoProcesses()
        one = max(one, single)
        two = max(two, double)
        ratios.append(double / single)
        ceilings.append(pair / single)
    }
    func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }
    let medianRatio = median(ratios), medianCeiling = median(ceilings)
    // The same records: the first prediction of each, scores to float precision.
    let numpyTwo = try peerRate(processes: 2, frame: "numpy")
    try checkSameFirstRecord(directory + "/score-weir.jsonl", directory + "/score-peer.jsonl")
    let numpyOne = try peerRate(processes: 1, frame: "numpy")
    let pandasTwo = try peerRate(processes: 2, frame: "pandas")
    let bestPeer = max(numpyTwo, numpyOne, pandasTwo)
    print("| contender | events/s | vs best Python peer |")
    print("| --- | ---: | ---: |")
    for (name, rate) in [("weir score, 2 threads", two), ("weir score, 1 thread", one),
                         ("Python peer, 2 processes, numpy columns", numpyTwo), ("Python peer, 1 process, numpy columns", numpyOne),
                         ("Python peer, 2 processes, pandas frame", pandasTwo)] {
        print(String(format: "| %@ | %.0f | %.2fx |", name as NSString, rate, rate / bestPeer))
    }
    print(String(format: "weir score scaling from 1 to 2 threads: %.2fx (median of %d rounds: %@); best of each: %.2fx",
                 medianRatio, ratios.count, ratios.map { String(format: "%.2f", $0) }.joined(separator: " ") as NSString, two / one))
    print(String(format: "this machine's ceiling, two 1-thread processes at once against one: %.2fx (median: %@)",
                 medianCeiling, ceilings.map { String(format: "%.2f", $0) }.joined(separator: " ") as NSString))
    print(String(format: "weir score (2 threads) against the best Python peer: %.2fx", two / bestPeer))
}

private func checkSameFirstRecord(_ a: String, _ b: String) throws {
    func first(_ path: String) throws -> [String: Any] {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        let data = handle.readData(ofLength: 4096)
        let line = data.split(separator: 0x0A).first ?? Data()
        return (try JSONSerialization.jsonObject(with: line) as? [String: Any]) ?? [:]
    }
    let x = try first(a), y = try first(b)
    let xs = (x["scores"] as? [Double]) ?? [], ys = (y["scores"] as? [Double]) ?? []
    guard x["id"] as? String == y["id"] as? String, xs.count == ys.count, zip(xs, ys).allSatisfy({ abs($0 - $1) < 1e-4 }) else {
        throw BenchmarkError("weir score and the peer disagree on the first record: \(x) vs \(y)")
    }
}

/// Runs a command to its end (bounded to 10 minutes): status, standard output and error.
func runCommand(_ arguments: [String]) throws -> (status: Int32, output: String, errors: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let stdout = Pipe()
    // Standard error to a file: a chatty child never blocks on a full pipe.
    let errorPath = NSTemporaryDirectory() + "weir-bench-\(UUID().uuidString).err"
    _ = FileManager.default.createFile(atPath: errorPath, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: errorPath) }
    let errorHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: errorPath))
    defer { try? errorHandle.close() }
    process.standardOutput = stdout
    process.standardError = errorHandle
    try process.run()
    let killer = DispatchWorkItem { if process.isRunning { process.terminate() } }
    DispatchQueue.global().asyncAfter(deadline: .now() + 600, execute: killer)
    let output = stdout.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    killer.cancel()
    let errors = (try? Data(contentsOf: URL(fileURLWithPath: errorPath))) ?? Data()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self), String(decoding: errors, as: UTF8.self))
}

/// `weir backtest` over a retained Kafka range of `events` records (the demo's model against its
/// candidate): the time from the first fetch to the report, on every core.
func runBacktestBenchmark(events: Int, partitions: Int, current: String, candidate: String) throws {
    let cluster = try EmbeddedCluster(topics: [("retained", partitions)])
    defer { cluster.stop() }
    var configuration = ProducerConfiguration(bootstrapServers: cluster.bootstrapServers)
    configuration.lingerMs = 20
    let delivered = DeliveryCounter()
    let producer = try KafkaProducer(configuration: configuration, onDelivery: { delivered.add($0) })
    let topic = try producer.topic("retained")
    let producing = Date()
    for index in 0..<events {
        // Compact events (no padding): the embedded broker keeps about 5 MiB per partition.
        try producer.send(to: topic, partition: Int32(index % partitions), key: SyntheticEvents.key(index),
                          value: SyntheticEvents.event(index, targetBytes: 0))
    }
    try producer.flush(timeoutMs: 300_000)
    try producer.close()
    guard delivered.ok == events else { throw BenchmarkError("produced \(delivered.ok) of \(events)") }
    print(String(format: "%d retained events on %d partitions (produced in %.1f s)", events, partitions, Date().timeIntervalSince(producing)))
    var run = BacktestRun(current: try ModelBundle(directory: URL(fileURLWithPath: current)),
                          candidate: try ModelBundle(directory: URL(fileURLWithPath: candidate)),
                          input: .kafka(KafkaRange(brokers: cluster.bootstrapServers, topic: "retained")))
    run.segmentFeature = "country"
    run.gates = try Gate.parse("agreement>=0.9")
    let started = Date()
    let report = try run.run()
    let seconds = Date().timeIntervalSince(started)
    guard report.metrics["rows"] == Double(events) else { throw BenchmarkError("backtest compared \(report.metrics["rows"] ?? 0) rows of \(events)") }
    print(String(format: "weir backtest of %d retained events: %.1f s (%.0f events/s, both models, %d threads); agreement %.4f",
                 events, seconds, Double(events) / seconds, report.threads, report.metrics["agreement"] ?? 0))
}

/// The outcome join's memory: resident bytes added by a pending store of `pending` predictions
/// once every slot is written (a binary classifier: one probability each), against what the store
/// says a slot costs; and the time to remember and take one.
func runOutcomeMemoryBenchmark(pending: Int) {
    func residentBytes() -> Int {
        let fields = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8))?.split(separator: " ") ?? []
        return (fields.count > 1 ? Int(fields[1]) ?? 0 : 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
    let before = residentBytes()
    let store = PendingPredictions(capacity: pending, width: 1)
    var answer: Float = 0.25
    let started = DispatchTime.now().uptimeNanoseconds
    for index in 0..<pending {
        store.remember(hash: UInt64(index) &* 0x9E37_79B9_7F4A_7C15, route: 0, epoch: 0, answer: &answer, nowMs: Int64(index))
    }
    let remembered = DispatchTime.now().uptimeNanoseconds
    var found = 0
    for index in 0..<pending where store.take(hash: UInt64(index) &* 0x9E37_79B9_7F4A_7C15) != nil { found += 1 }
    let taken = DispatchTime.now().uptimeNanoseconds
    let after = residentBytes()
    print(String(format: "outcome join: %d pending predictions hold %.1f MB resident, %.1f bytes each (the store's own count: %d); remember %.0f ns, take %.0f ns",
                 pending, Double(after - before) / 1e6, Double(after - before) / Double(pending), store.bytesPerPrediction,
                 Double(remembered - started) / Double(pending), Double(taken - remembered) / Double(max(found, 1))))
}
