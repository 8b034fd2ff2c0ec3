import WeirWorker
import Foundation
import WeirKafka
import Synchronization

/// One contender's measurement, as printed by the passthrough programs.
struct PassthroughResult: Decodable {
    let contender: String
    let events: Int
    let failed: Int
    let wall_s: Double
    let cpu_s: Double
    let context_switches: Int
    /// Poll-thread time on drift windows (the worker with drift on only).
    var drift_s: Double? = nil
    /// CPU of the contender's librdkafka threads (`rdk:*`); the rest of `cpu_s` is its own threads'.
    var kafka_cpu_s: Double? = nil
    var eventsPerSecond: Double { Double(events) / wall_s }
    var cpuMicrosPerEvent: Double { cpu_s * 1e6 / Double(events) }
    var kafkaMicrosPerEvent: Double { (kafka_cpu_s ?? 0) * 1e6 / Double(events) }
}

/// Runs the C floor and the WeirKafka passthrough over the same topic on one embedded broker,
/// alternating their order over `rounds`, and prints medians and ratios.
func runKafkaBenchmark(events: Int, partitions: Int, eventBytes: Int, rounds: Int) throws {
    let cluster = try EmbeddedCluster(topics: [("bench-in", partitions)])
    let bootstrap = cluster.bootstrapServers
    print("kafka passthrough: \(events) events of ~\(eventBytes) B on \(partitions) partitions, \(rounds) rounds, broker \(bootstrap)")

    try produceBenchmarkInput(bootstrap: bootstrap, topic: "bench-in", events: events, eventBytes: eventBytes)

    let directory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    let commands: [String: [String]] = [
        "c-event": [directory.appendingPathComponent("c-passthrough").path],
        "c-blocking": [directory.appendingPathComponent("c-passthrough").path],
        "swift": [directory.appendingPathComponent("weir-bench").path, "swift-passthrough"],
    ]
    let contenders = ["c-event", "swift", "c-blocking"]
    var results = [String: [PassthroughResult]]()
    for round in 0..<rounds {
        // Rotate the order so no contender always runs first (or last) on a warm broker.
        for offset in 0..<contenders.count {
            let contender = contenders[(round + offset) % contenders.count]
            let output = "out-\(contender)-\(round)"
            try cluster.createTopic(output, partitions: partitions)
            var command = commands[contender]! + [bootstrap, "bench-in", output, "bench-\(contender)-\(round)", String(events)]
            if contender.hasPrefix("c-") { command.append(String(contender.dropFirst(2))) }
            let result = try runContender(command)
            let written = try countMessages(bootstrap: bootstrap, topic: output, partitions: partitions)
            guard result.events == events, result.failed == 0, written == events else {
                throw BenchmarkError("\(contender) round \(round): delivered \(result.events), failed \(result.failed), output holds \(written); expected \(events)")
            }
            results[contender, default: []].append(result)
            print(String(format: "  round %d %-10@ %9.0f events/s  %6.2f µs CPU/event  (%.2f s wall, %.2f s CPU, %d context switches)",
                         round, contender as NSString, result.eventsPerSecond, result.cpuMicrosPerEvent, result.wall_s, result.cpu_s,
                         result.context_switches))
        }
    }
    func median(_ values: [Double]) -> Double { let sorted = values.sorted(); return sorted[sorted.count / 2] }
    struct Figures { let rate, bestRate, cpu, bestCPU: Double }
    var figures = [String: Figures]()
    for contender in contenders {
        let list = results[contender]!
        // On a shared 2-core machine noise only ever adds CPU time: the best round is the steadiest estimate.
        figures[contender] = Figures(rate: median(list.map(\.eventsPerSecond)), bestRate: list.map(\.eventsPerSecond).max()!,
                                     cpu: median(list.map(\.cpuMicrosPerEvent)), bestCPU: list.map(\.cpuMicrosPerEvent).min()!)
    }
    let names = ["c-event": "C, event-driven wake (Weir's flow)", "c-blocking": "C, blocking 10 ms batch consume",
                 "swift": "Swift over WeirKafka"]
    print("")
    print("| passthrough, \(events) events × \(rounds) rounds | events/s median | events/s best | CPU µs/event median | CPU µs/event best |")
    print("|---|---:|---:|---:|---:|")
    for contender in contenders {
        let f = figures[contender]!
        print(String(format: "| %@ | %.0f | %.0f | %.2f | %.2f |", names[contender]! as NSString, f.rate, f.bestRate, f.cpu, f.bestCPU))
    }
    var summary = [String: Double]()
    for peer in ["c-event", "c-blocking"] {
        let s = figures["swift"]!, p = figures[peer]!
        print(String(format: "| ratio Swift / %@ | %.2f× | %.2f× | %.2f× | %.2f× |", peer as NSString,
                     s.rate / p.rate, s.bestRate / p.bestRate, s.cpu / p.cpu, s.bestCPU / p.bestCPU))
        summary["\(peer)_cpu_ratio_median"] = s.cpu / p.cpu
        summary["\(peer)_cpu_ratio_best"] = s.bestCPU / p.bestCPU
        summary["\(peer)_rate_ratio_median"] = s.rate / p.rate
    }
    for (contender, f) in figures {
        summary["\(contender)_events_per_s"] = f.rate
        summary["\(contender)_cpu_us_per_event"] = f.cpu
    }
    let counted: [String: Double]?
    do { counted = try instructionsPerEvent(cluster: cluster, commands: commands, partitions: partitions) } catch {
        // The timed figures above stand on their own; say why the instruction counts are missing.
        print("(callgrind instruction counts skipped: \(error))")
        counted = nil
    }
    if let perEvent = counted {
        let ratio = perEvent["swift"]! / perEvent["c-event"]!
        print(String(format: "| instructions/event (callgrind, 40k - 10k events) | C event %.0f | Swift %.0f | ratio %.2f× |",
                     perEvent["c-event"]!, perEvent["swift"]!, ratio))
        summary["c-event_instructions_per_event"] = perEvent["c-event"]!
        summary["swift_instructions_per_event"] = perEvent["swift"]!
        summary["c-event_instruction_ratio"] = ratio
    }
    try FileManager.default.createDirectory(atPath: "bench/out", withIntermediateDirectories: true)
    try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys, .prettyPrinted])
        .write(to: URL(fileURLWithPath: "bench/out/kafka-passthrough.json"))
    cluster.stop()
}

struct BenchmarkError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Writes the benchmark input: keyed events with a traceparent header, delivered before timing starts.
/// `avroSchemaID`: the same events as Confluent-framed Avro under that registry id.
func produceBenchmarkInput(bootstrap: String, topic: String, events: Int, eventBytes: Int, avroSchemaID: UInt32? = nil) throws {
    let delivered = DeliveryCounter()
    var configuration = ProducerConfiguration(bootstrapServers: bootstrap)
    configuration.lingerMs = 20
    let producer = try KafkaProducer(configuration: configuration, onDelivery: { delivered.add($0) })
    let handle = try producer.topic(topic)
    for index in 0..<events {
        var headers = OutgoingHeaders(capacity: 1)
        headers.append(name: "traceparent", value: "00-\(String(index, radix: 16))-0000000000000001-01")
        let value = avroSchemaID.map { SyntheticEvents.avroEvent(index, schemaID: $0, targetBytes: eventBytes) }
            ?? SyntheticEvents.event(index, targetBytes: eventBytes)
        try producer.send(to: handle, key: SyntheticEvents.key(index), value: value, headers: headers)
    }
    try producer.flush(timeoutMs: 120_000)
    guard delivered.ok == events else { throw BenchmarkError("input: delivered \(delivered.ok) of \(events)") }
}

final class DeliveryCounter: Sendable {
    private let count = Atomic<Int>(0)
    func add(_ reports: DeliveryReportBatch) {
        count.add(reports.filter { $0.error == nil }.count, ordering: .relaxed)
    }
    var ok: Int { count.load(ordering: .relaxed) }
}

/// Runs one contender process (bounded to 5 minutes) and parses its JSON result line.
/// `wrapper` runs it under a tool such as callgrind.
func runContender(_ command: [String], wrapper: [String] = []) throws -> PassthroughResult {
    let full = wrapper + command
    let process = Process()
    process.executableURL = URL(fileURLWithPath: wrapper.isEmpty ? full[0] : "/usr/bin/env")
    process.arguments = wrapper.isEmpty ? Array(full.dropFirst()) : full
    let stdout = Pipe()
    process.standardOutput = stdout
    try process.run()
    let killer = DispatchWorkItem { if process.isRunning { process.terminate() } }
    DispatchQueue.global().asyncAfter(deadline: .now() + 300, execute: killer)
    let data = stdout.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    killer.cancel()
    guard process.terminationStatus == 0,
          let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last(where: { $0.hasPrefix("{") })
    else {
        throw BenchmarkError("\(command[0]) exited \(process.terminationStatus): \(String(decoding: data, as: UTF8.self))")
    }
    return try JSONDecoder().decode(PassthroughResult.self, from: Data(line.utf8))
}

/// Messages in a topic, from its high watermarks (every topic here starts at offset 0).
func countMessages(bootstrap: String, topic: String, partitions: Int) throws -> Int {
    let reader = try KafkaConsumer(configuration: ConsumerConfiguration(bootstrapServers: bootstrap, groupID: "bench-watermarks"))
    var total = 0
    for partition in 0..<partitions { total += Int(try reader.watermarks(topic, Int32(partition)).high) }
    try reader.close()
    return total
}

/// Deterministic CPU cost: instructions per event counted by callgrind over all threads of each
/// contender, as the difference between a 40k-event and a 10k-event run (start-up, group join and
/// shutdown cancel out). Nil when valgrind is not installed.
func instructionsPerEvent(cluster: EmbeddedCluster, commands: [String: [String]], partitions: Int) throws -> [String: Double]? {
    try instructionsPerEvent(cluster: cluster, contenders: ["c-event", "swift"], partitions: partitions) { contender, events, output, _ in
        var command = commands[contender]! + [cluster.bootstrapServers, "bench-in", output, output, String(events)]
        if contender.hasPrefix("c-") { command.append(String(contender.dropFirst(2))) }
        return command
    }
}

/// The same for any contenders: `command(contender, events, output, input)` is the command line
/// that answers `events` events into the fresh topic `output` (and `output`-dlq, created here too).
/// With `ownInputs`, each run reads a topic holding exactly its events (`input`), so a consumer's
/// prefetch past the events it answers is not counted; else `input` is "bench-in".
/// `prepare(contender)` runs before each contender's runs (the Avro benchmark sets its environment there);
/// `avroSchemaID` also makes Avro inputs (`cg-in-avro-N`), read by contenders whose name ends in `-avro`.
func instructionsPerEvent(cluster: EmbeddedCluster, contenders: [String], partitions: Int, ownInputs: Bool = false,
                          avroSchemaID: UInt32? = nil, prepare: (String) -> Void = { _ in },
                          command: (String, Int, String, String) throws -> [String]) throws -> [String: Double]? {
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/valgrind") else {
        print("(valgrind not installed: instruction counts skipped)")
        return nil
    }
    // WEIR_BENCH_CALLGRIND_DIR keeps the profiles (for callgrind_annotate); else they are removed.
    let kept = ProcessInfo.processInfo.environment["WEIR_BENCH_CALLGRIND_DIR"]
    let directory = kept.map { URL(fileURLWithPath: $0) }
        ?? FileManager.default.temporaryDirectory.appendingPathComponent("weir-bench-callgrind-\(getpid())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { if kept == nil { try? FileManager.default.removeItem(at: directory) } }
    var result = [String: Double]()
    if ownInputs {
        for events in [10_000, 40_000] {
            try cluster.createTopic("cg-in-\(events)", partitions: partitions)
            try produceBenchmarkInput(bootstrap: cluster.bootstrapServers, topic: "cg-in-\(events)", events: events, eventBytes: 750)
            if let avroSchemaID {
                try cluster.createTopic("cg-in-avro-\(events)", partitions: partitions)
                try produceBenchmarkInput(bootstrap: cluster.bootstrapServers, topic: "cg-in-avro-\(events)", events: events, eventBytes: 750,
                                          avroSchemaID: avroSchemaID)
            }
        }
    }
    for contender in contenders {
        prepare(contender)
        var totals = [Int: Double]()
        for events in [10_000, 40_000] {
            let output = "cg-\(contender)-\(events)"
            try cluster.createTopic(output, partitions: partitions)
            try cluster.createTopic(output + "-dlq", partitions: partitions)
            let file = directory.appendingPathComponent("\(contender)-\(events).out").path
            let input = !ownInputs ? "bench-in" : contender.hasSuffix("-avro") ? "cg-in-avro-\(events)" : "cg-in-\(events)"
            var line = try command(contender, events, output, input)
            line[0] = try withoutDebugInfo(line[0], in: directory)
            _ = try runContender(line, wrapper: ["valgrind", "--tool=callgrind", "--callgrind-out-file=\(file)"])
            let text = try String(contentsOfFile: file, encoding: .utf8)
            guard let summary = text.split(separator: "\n").first(where: { $0.hasPrefix("summary:") || $0.hasPrefix("totals:") }),
                  let total = Double(summary.split(separator: " ").last!) else {
                throw BenchmarkError("no totals in \(file)")
            }
            totals[events] = total
        }
        result[contender] = (totals[40_000]! - totals[10_000]!) / 30_000
    }
    return result
}

/// A copy of `binary` without its DWARF sections, for valgrind: valgrind 3.19 cannot read the DWARF 5
/// that Swift 6.3's toolchain writes and gives up on the whole binary ("Possibly corrupted debuginfo
/// file"). Instruction counts do not need debug info. The binary itself when objcopy is missing.
func withoutDebugInfo(_ binary: String, in directory: URL) throws -> String {
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/objcopy") else { return binary }
    let copy = directory.appendingPathComponent(URL(fileURLWithPath: binary).lastPathComponent + ".nodebug").path
    if FileManager.default.fileExists(atPath: copy) { return copy }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/objcopy")
    process.arguments = ["--strip-debug", binary, copy]
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw BenchmarkError("objcopy --strip-debug \(binary) exited \(process.terminationStatus)") }
    return copy
}
