import Foundation
import Synchronization
import WeirControl
import WeirKafka
import WeirWorker

/// The swap benchmark: a worker under steady load is told to switch versions through the control
/// topic `swaps` times (replace deploys, alternating two bundles: the first loads, later ones swap
/// to a loaded bundle). Prints the longest gap between consecutive prediction records (their
/// produce timestamps, all partitions) around each swap and in the steady stretches between,
/// against `batch.max-delay-ms`.
func runSwapBenchmark(rate: Int, swaps: Int, model: String, maxDelayMs: Int, fetchWaitMs: Int, lingerMs: Int) throws {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("weir-swap-\(getpid())")
    defer { try? FileManager.default.removeItem(at: root) }
    let first = URL(fileURLWithPath: model).standardizedFileURL
    let second = root.appendingPathComponent("second")
    try FileManager.default.createDirectory(at: second, withIntermediateDirectories: true)
    var manifest = try JSONDecoder().decode(BundleManifest.self, from: Data(contentsOf: first.appendingPathComponent("manifest.json")))
    let otherVersion = manifest.version + "-swap"
    manifest.version = otherVersion
    for file in manifest.sha256.keys { try FileManager.default.copyItem(at: first.appendingPathComponent(file), to: second.appendingPathComponent(file)) }
    try BundlePackager.write(manifest, to: second)
    let key = Array("swap-benchmark-key-of-at-least-32-bytes".utf8)
    let keyFile = root.appendingPathComponent("key")
    try Data(key).write(to: keyFile)

    let cluster = try EmbeddedCluster(brokers: 1, topics: [("events", 8), ("predictions", 8), ("dead-letters", 8), ("control", 1)])
    defer { cluster.stop() }
    var settings = WorkerSettings()
    settings.brokers = cluster.bootstrapServers
    settings.group = "swap-bench"
    settings.workerID = "swap-bench"
    settings.controlTopic = "control"
    settings.controlKeyFile = keyFile.path
    settings.batchMaxDelayMs = maxDelayMs
    settings.kafka["consumer.fetch.wait.max.ms"] = String(fetchWaitMs)
    settings.kafka["consumer.session.timeout.ms"] = "6000"
    let bundle = try ModelBundle(directory: first)
    let worker = try Worker(settings: settings, bundle: bundle)
    let stopped = DispatchSemaphore(value: 0)
    Thread {
        do { try worker.run() } catch { FileHandle.standardError.write(Data("weir-bench swap: \(error)\n".utf8)) }
        stopped.signal()
    }.start()
    let deadline = Date().addingTimeInterval(60)
    while !worker.isReady && Date() < deadline { usleep(10_000) }
    guard worker.isReady else { throw WorkerError("the worker did not join the group within 60 s") }

    // Every prediction's produce timestamp and version, from a reader of the output topic; and,
    // apart, every input event's produce timestamp, to tell the input's own gaps from the worker's.
    let seen = Mutex<[(ms: Int64, version: String)]>([])
    let inputTimes = Mutex<[Int64]>([])
    let reading = Atomic<Bool>(true)
    var readerConfiguration = ConsumerConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: "swap-reader")
    readerConfiguration.properties["fetch.wait.max.ms"] = "5"
    let readerDone = DispatchSemaphore(value: 0)
    let readerStarted = DispatchSemaphore(value: 0)
    let readerFailure = Mutex<String?>(nil)
    // The reader is confined to its thread: made, used and closed there.
    Thread { [readerConfiguration] in
        let reader: KafkaConsumer
        do {
            reader = try KafkaConsumer(configuration: readerConfiguration)
            try reader.assign((0..<Int32(8)).flatMap { [TopicPartitionOffset("predictions", $0, -2), TopicPartitionOffset("events", $0, -2)] })
        } catch {
            readerFailure.withLock { $0 = "\(error)" }
            readerStarted.signal()
            readerDone.signal()
            return
        }
        readerStarted.signal()
        while reading.load(ordering: .relaxed) {
            reader.poll(maxMessages: 2000, timeoutMs: 20) { batch in
                var rows = [(ms: Int64, version: String)]()
                var inputs = [Int64]()
                for message in batch {
                    if message.topic == "events" { inputs.append(message.timestamp?.milliseconds ?? 0); continue }
                    let version = message.headers.last(named: "weir-version").flatMap { $0 }.map { String(decoding: $0, as: UTF8.self) } ?? ""
                    rows.append((message.timestamp?.milliseconds ?? 0, version))
                }
                seen.withLock { $0.append(contentsOf: rows) }
                inputTimes.withLock { $0.append(contentsOf: inputs) }
            }
        }
        try? reader.close()
        readerDone.signal()
    }.start()
    readerStarted.wait()
    if let failure = readerFailure.withLock({ $0 }) { throw WorkerError("swap reader: \(failure)") }

    let producer = try SyntheticProducer(brokers: cluster.bootstrapServers, topic: "events", rate: rate, lingerMs: lingerMs)
    sleep(3)  // steady state before the first swap
    let client = ControlClient(brokers: cluster.bootstrapServers, topic: "control", key: key)
    var swapTimes = [Int64]()
    for index in 0..<swaps {
        let target = index % 2 == 0 ? second : first
        let targetManifest = try ModelBundle.readVerified(directory: target).0
        let message = try client.prepare(ControlMessage(
            action: .deploy, model: targetManifest.name, version: targetManifest.version, bundle: target.absoluteString,
            sha256: ModelBundle.identity(of: target), strategy: RolloutStrategy(kind: .replace), sequence: 0))
        try client.send(message)
        let waitUntil = Date().addingTimeInterval(10)
        while worker.servingVersions.primary != targetManifest.version && Date() < waitUntil { usleep(1_000) }
        swapTimes.append(Int64(Date().timeIntervalSince1970 * 1000))
        sleep(2)
    }
    producer.stop()
    let sent = producer.sent.load(ordering: .relaxed)
    let drainUntil = Date().addingTimeInterval(30)
    while seen.withLock({ $0.count }) < sent && Date() < drainUntil { usleep(10_000) }
    reading.store(false, ordering: .relaxed)
    _ = readerDone.wait(timeout: .now() + 5)
    worker.stop()
    _ = stopped.wait(timeout: .now() + 30)

    let rows = seen.withLock { $0 }.sorted { $0.ms < $1.ms }
    // Where each swap shows in the output: the first record of the new version after it.
    var swapGaps = [Int64]()
    var switchIndices = [Int]()
    for index in rows.indices.dropFirst() where rows[index].version != rows[index - 1].version {
        switchIndices.append(index)
    }
    // The gap across each switch itself: the last record of the old version to the first of the new.
    let acrossGaps = switchIndices.map { rows[$0].ms - rows[$0 - 1].ms }
    for index in switchIndices {
        // The longest gap within 250 ms either side of the switch.
        let center = rows[index].ms
        var gap: Int64 = 0
        var cursor = index
        while cursor > 0 && rows[cursor].ms >= center - 250 { cursor -= 1 }
        while cursor + 1 < rows.count && rows[cursor + 1].ms <= center + 250 {
            gap = max(gap, rows[cursor + 1].ms - rows[cursor].ms)
            cursor += 1
        }
        swapGaps.append(gap)
    }
    var steadyGap: Int64 = 0
    let nearSwitch = switchIndices.map { rows[$0].ms }
    for index in rows.indices.dropFirst() where rows[index].ms > rows[0].ms + 1_000 {
        if nearSwitch.contains(where: { abs($0 - rows[index].ms) <= 500 }) { continue }
        steadyGap = max(steadyGap, rows[index].ms - rows[index - 1].ms)
    }
    // The input's own longest gap, and the gaps between the worker's batches (distinct output
    // timestamps) in the same steady stretches: the output cannot be smoother than arrivals.
    let inputs = inputTimes.withLock { $0 }.sorted()
    var inputGap: Int64 = 0
    for index in inputs.indices.dropFirst() where inputs[index] > inputs[0] + 1_000 {
        inputGap = max(inputGap, inputs[index] - inputs[index - 1])
    }
    var batchGaps = [Int64]()
    for index in rows.indices.dropFirst() where rows[index].ms > rows[0].ms + 1_000 && rows[index].ms > rows[index - 1].ms {
        batchGaps.append(rows[index].ms - rows[index - 1].ms)
    }
    batchGaps.sort()
    func percentile(_ p: Double) -> Int64 { batchGaps.isEmpty ? -1 : batchGaps[min(batchGaps.count - 1, Int(Double(batchGaps.count) * p))] }
    let delay = settings.batchMaxDelayMs
    let worst = swapGaps.max() ?? -1
    print("swap benchmark: fetch.wait.max.ms \(fetchWaitMs), producer linger.ms \(lingerMs), \(rate) events/s, \(sent) events, \(rows.count) predictions read, \(switchIndices.count) version switches seen (\(swaps) deploys)")
    print("  longest gap between predictions around each swap (ms): \(swapGaps.map(String.init).joined(separator: " "))")
    print("  gap across each switch, last old-version record to first new one (ms): \(acrossGaps.map(String.init).joined(separator: " "))")
    print("  longest gap in steady stretches: \(steadyGap) ms; batch.max-delay-ms \(delay)")
    print("  input events (producer timestamps): longest gap \(inputGap) ms; gaps between output batches: median \(percentile(0.5)) ms, p99 \(percentile(0.99)) ms")
    print(String(format: "  swap gap / batch.max-delay-ms = %.2f (goal <= 2); across the switch itself %.2f", Double(worst) / Double(delay),
                 Double(acrossGaps.max() ?? -1) / Double(delay)))
    let result: [String: Any] = ["rate": rate, "swaps": swaps, "switches_seen": switchIndices.count, "swap_gap_ms": swapGaps,
                                 "max_swap_gap_ms": worst, "across_switch_gap_ms": acrossGaps, "steady_gap_ms": steadyGap, "batch_max_delay_ms": delay,
                                 "input_gap_ms": inputGap, "batch_gap_p50_ms": percentile(0.5), "batch_gap_p99_ms": percentile(0.99)]
    print(String(decoding: try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys]), as: UTF8.self))
}
