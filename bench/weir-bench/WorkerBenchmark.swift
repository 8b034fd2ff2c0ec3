import Foundation
import WeirControl
import WeirKafka
import WeirTestSupport
import WeirWorker

/// `weir serve`'s Worker as a contender: runs it in this process on the benchmark topic and prints
/// the same JSON line as the C floor (wall and CPU from the first consumed event until every event
/// is answered and delivered).
func runWorkerContender(bootstrap: String, input: String, output: String, dlq: String, group: String,
                        events: Int, model: String, driftTopic: String? = nil) throws -> Int32 {
    let bundle = try ModelBundle(directory: URL(fileURLWithPath: model))
    var settings = WorkerSettings()
    settings.brokers = bootstrap
    settings.group = group
    settings.input = [input]
    settings.output = output
    settings.dlq = dlq
    settings.model = model
    settings.workerID = "weir-bench"
    settings.commitIntervalMs = 100  // as the C floor
    settings.driftTopic = driftTopic
    if driftTopic != nil { settings.driftWindowEvents = 1000 }
    settings.kafka["consumer.fetch.wait.max.ms"] = "5"
    settings.kafka["consumer.session.timeout.ms"] = "6000"
    // Knobs for studying the worker contender (also WEIR_BENCH_CLOUDEVENTS, below): WEIR_BENCH_WORKER_KAFKA=k=v,k=v (librdkafka settings,
    // `consumer.`/`producer.` prefixed as in `kafka.*`), WEIR_BENCH_MAX_IN_FLIGHT, WEIR_BENCH_BATCH_EVENTS,
    // WEIR_BENCH_WORKER_LOG=1 (the worker's log on stderr), WEIR_BENCH_TIMELINE=1 (consumed/answered
    // every 50 ms on stderr, which shows stalls).
    let env = ProcessInfo.processInfo.environment
    for pair in (env["WEIR_BENCH_WORKER_KAFKA"] ?? "").split(separator: ",") {
        let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
        if parts.count == 2 { settings.kafka[parts[0]] = parts[1] }
    }
    if let value = env["WEIR_BENCH_MAX_IN_FLIGHT"].flatMap({ Int($0) }) { settings.maxInFlightEvents = value }
    if let value = env["WEIR_BENCH_BATCH_EVENTS"].flatMap({ Int($0) }) { settings.batchMaxEvents = value }
    // WEIR_BENCH_CLOUDEVENTS=false: answers without their CloudEvents headers (what the six headers cost).
    if env["WEIR_BENCH_CLOUDEVENTS"] == "false" { settings.outputCloudEvents = false }
    // WEIR_BENCH_TRACING=RATIO: tracing otlp, sampling that share of batches, to the receiver the
    // benchmark's parent process runs (OTEL_* set there).
    if env["WEIR_BENCH_TRACING"] != nil { settings.tracing = .otlp }
    // The Avro benchmark: WEIR_BENCH_SCHEMA_REGISTRY=url reads Confluent-framed Avro through that registry.
    if let registry = env["WEIR_BENCH_SCHEMA_REGISTRY"] {
        settings.inputFormat = .avro
        settings.schemaRegistryURL = registry
    }
    let verbose = env["WEIR_BENCH_WORKER_LOG"] != nil
    let worker = try Worker(settings: settings, bundle: bundle, log: { record in
        if verbose { FileHandle.standardError.write(Data((record.rendered(as: .human) + "\n").utf8)) }
    })
    let finished = DispatchSemaphore(value: 0)
    let thread = Thread {
        do { try worker.run() } catch { FileHandle.standardError.write(Data("weir-bench worker: \(error)\n".utf8)) }
        finished.signal()
    }
    thread.start()
    let metrics = worker.metrics
    func answered() -> Int {
        metrics.predictionTotal.load(ordering: .relaxed) + metrics.deadLetterTotal.load(ordering: .relaxed)
            + metrics.tombstoneTotal.load(ordering: .relaxed)
    }
    // A 2 ms watch loop on a second thread (its small cost is charged to Weir's CPU; its lateness
    // of up to 2 ms at the start and end is under 1% of a 120k-event run).
    let deadline = Date().addingTimeInterval(240)
    while metrics.consumedTotal.load(ordering: .relaxed) == 0 && Date() < deadline { usleep(2_000) }
    let startWall = Date(), startCPU = cpuSeconds(), startKafkaCPU = kafkaThreadCPUSeconds(), startSwitches = contextSwitches()
    let startDrift = metrics.driftNanosecondsTotal.load(ordering: .relaxed)
    // Answered counts records handed to the producer; delivered means the offsets can commit.
    var timeline = [(Double, Int, Int)]()
    while answered() < events && Date() < deadline {
        usleep(2_000)
        if env["WEIR_BENCH_TIMELINE"] != nil { timeline.append((Date().timeIntervalSince(startWall), metrics.consumedTotal.load(ordering: .relaxed), answered())) }
    }
    if env["WEIR_BENCH_TIMELINE"] != nil {
        var line = ""
        var last = (0.0, 0, 0)
        for point in timeline where point.0 - last.0 >= 0.05 { line += String(format: " %.2f:%d/%d", point.0, point.1, point.2); last = point }
        FileHandle.standardError.write(Data("timeline\(line)\n".utf8))
    }
    let consumedAll = answered() >= events
    var deliveredWall = Date()
    while !worker.committedEverything && Date() < deadline { usleep(2_000) }
    deliveredWall = Date()
    let wall = deliveredWall.timeIntervalSince(startWall), cpu = cpuSeconds() - startCPU, kafkaCPU = kafkaThreadCPUSeconds() - startKafkaCPU
    let switches = contextSwitches() - startSwitches
    let drift = Double(metrics.driftNanosecondsTotal.load(ordering: .relaxed) - startDrift) / 1e9
    worker.stop()
    _ = finished.wait(timeout: .now() + 30)
    let result: [String: Any] = ["contender": driftTopic == nil ? (settings.inputFormat == .avro ? "weir-avro" : "weir") : "weir-drift", "events": consumedAll ? events : answered(), "failed": 0,
                                 "wall_s": wall, "cpu_s": cpu, "kafka_cpu_s": kafkaCPU, "context_switches": switches, "drift_s": drift]
    let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
    return consumedAll ? 0 : 1
}

/// Pins every thread of this process (the embedded broker's too) to CPU 0 and returns the
/// wrapper that starts a contender on CPU 1 (`taskset`); empty with fewer than 2 CPUs, without
/// taskset, or with WEIR_BENCH_PIN=0.
func pinBrokerApart() -> [String] {
    guard ProcessInfo.processInfo.activeProcessorCount >= 2, ProcessInfo.processInfo.environment["WEIR_BENCH_PIN"] != "0",
          FileManager.default.isExecutableFile(atPath: "/usr/bin/taskset") else { return [] }
    let pin = Process()
    pin.executableURL = URL(fileURLWithPath: "/usr/bin/taskset")
    pin.arguments = ["-a", "-c", "-p", "0", String(getpid())]
    pin.standardOutput = FileHandle.nullDevice
    guard (try? pin.run()) != nil else { return [] }
    pin.waitUntilExit()
    return pin.terminationStatus == 0 ? ["/usr/bin/taskset", "-c", "1"] : []
}

/// The worker benchmark: the C passthrough floor, the Python worker and Weir's worker on the same
/// topic contents (one embedded broker), rotating their order over `rounds`; then Weir's
/// event-to-prediction latency with a producer at half of Weir's measured rate.
func runWorkerBenchmark(events: Int, partitions: Int, rounds: Int, model: String, python: String,
                        pythonModel: String, latencySeconds: Int, driftRounds: Int = 6, only: [String]? = nil) throws {
    let cluster = try EmbeddedCluster(topics: [("bench-in", partitions)])
    let bootstrap = cluster.bootstrapServers
    print("worker: \(events) events of ~750 B on \(partitions) partitions, \(rounds) rounds, model \(model), broker \(bootstrap)")
    try produceBenchmarkInput(bootstrap: bootstrap, topic: "bench-in", events: events, eventBytes: 750)
    let directory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    let manifest = URL(fileURLWithPath: model).appendingPathComponent("manifest.json").path
    let every = ["c-event", "weir", "weir-drift", "python"]
    // WEIR_BENCH_TRACING=RATIO: the Weir contender traces, exporting to an OTLP receiver run here
    // (outside the counted process), sampling RATIO of its batches.
    var receiver: OTLPReceiver?
    if let ratio = ProcessInfo.processInfo.environment["WEIR_BENCH_TRACING"] {
        let sink = try OTLPReceiver()
        receiver = sink
        for (name, value) in ["OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                              "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": ratio] {
            setenv(name, value, 1)
        }
    }
    defer {
        if let receiver {
            print("tracing: \(receiver.spans.count) spans received in \(receiver.requestCount) exports")
            receiver.stop()
        }
    }
    // WEIR_BENCH_INSTRUCTIONS_ONLY=1: only the callgrind comparison of the floor and Weir.
    if ProcessInfo.processInfo.environment["WEIR_BENCH_INSTRUCTIONS_ONLY"] != nil {
        if let counted = workerInstructionsPerEvent(cluster: cluster, directory: directory, partitions: partitions, model: model) {
            print(String(format: "instructions/event (callgrind, 40k - 10k events): C floor %.0f, Weir %.0f: %.2f×",
                         counted["c-event"]!, counted["weir"]!, counted["weir"]! / counted["c-event"]!))
        }
        return
    }
    // The broker (every thread of this process) on one core, each contender on the other, so
    // events/s measures a contender's single-core capacity rather than how it shares a core.
    let pinning = pinBrokerApart()
    print(pinning.isEmpty ? "  not pinned (fewer than 2 CPUs, no taskset, or WEIR_BENCH_PIN=0)" : "  broker on CPU 0, each contender on CPU 1")
    // `--contenders a,b` runs a subset (for profiling one of them); the ratios need all four.
    let contenders = only.map { wanted in every.filter(wanted.contains) } ?? every
    var results = [String: [PassthroughResult]]()
    func median(_ values: [Double]) -> Double { let sorted = values.sorted(); return sorted[sorted.count / 2] }
    /// Runs one contender over the whole input (outputs to fresh topics named by `tag`) and checks
    /// that every event was answered.
    func run(_ contender: String, tag: String) throws -> PassthroughResult {
        let output = "wout-\(contender)-\(tag)", dlq = "wdlq-\(contender)-\(tag)", group = "wbench-\(contender)-\(tag)"
        try cluster.createTopic(output, partitions: partitions)
        try cluster.createTopic(dlq, partitions: partitions)
        var command: [String]
        switch contender {
        case "c-event":
            command = [directory.appendingPathComponent("c-passthrough").path, bootstrap, "bench-in", output, group, String(events), "event"]
        case "weir", "weir-drift":
            command = [directory.appendingPathComponent("weir-bench").path, "worker-contender", bootstrap, "bench-in", output, dlq,
                       group, String(events), model]
            if contender == "weir-drift" {
                try cluster.createTopic("wdrift-\(tag)", partitions: 1)
                command.append("wdrift-\(tag)")
            }
        default:
            command = ["/usr/bin/env", "python3", python, bootstrap, "bench-in", output, dlq, group, String(events), pythonModel, manifest]
        }
        let result = try runContender(command, wrapper: pinning)
        let written = try countMessages(bootstrap: bootstrap, topic: output, partitions: partitions)
        guard result.events == events, result.failed == 0, written == events else {
            throw BenchmarkError("\(contender) round \(tag): answered \(result.events), failed \(result.failed), output holds \(written); expected \(events)")
        }
        print("  round \(tag) \(contender.padding(toLength: 8, withPad: " ", startingAt: 0)) "
              + String(format: "%9.0f events/s  %6.2f µs CPU/event (librdkafka threads %5.2f)  (%.2f s wall, %.2f s CPU, %d context switches)",
                       result.eventsPerSecond, result.cpuMicrosPerEvent, result.kafkaMicrosPerEvent, result.wall_s, result.cpu_s,
                       result.context_switches))
        return result
    }
    // Drift on against off, round by round: the runs of a pair are back to back, so the VM's slow
    // stretches mostly hit both.
    var driftPairs = [Double]()
    var extraDriftRuns = [PassthroughResult]()
    for round in 0..<rounds {
        var plain: PassthroughResult?, drifting: PassthroughResult?
        for offset in 0..<contenders.count {
            let contender = contenders[(round + offset) % contenders.count]
            let result = try run(contender, tag: String(round))
            results[contender, default: []].append(result)
            if contender == "weir" { plain = result }
            if contender == "weir-drift" { drifting = result }
        }
        if let plain, let drifting { driftPairs.append(drifting.cpuMicrosPerEvent / plain.cpuMicrosPerEvent) }
    }
    // Extra back-to-back pairs for the drift ratio, alternating which goes first.
    if contenders.contains("weir") && contenders.contains("weir-drift") {
        for pair in 0..<driftRounds {
            let order = pair % 2 == 0 ? ["weir", "weir-drift"] : ["weir-drift", "weir"]
            var runs = [String: PassthroughResult]()
            for contender in order { runs[contender] = try run(contender, tag: "d\(pair)") }
            extraDriftRuns.append(runs["weir-drift"]!)
            driftPairs.append(runs["weir-drift"]!.cpuMicrosPerEvent / runs["weir"]!.cpuMicrosPerEvent)
        }
        print(String(format: "  drift on / off, CPU per event, paired rounds: median %.2f× of %d (range %.2f×–%.2f×)",
                     median(driftPairs), driftPairs.count, driftPairs.min()!, driftPairs.max()!))
    }
    var rate = [String: Double](), cpu = [String: Double]()
    for contender in contenders {
        rate[contender] = median(results[contender]!.map(\.eventsPerSecond))
        cpu[contender] = median(results[contender]!.map(\.cpuMicrosPerEvent))
    }
    // Drift's own cost inside the drift-on runs (timed on the poll thread around the window work),
    // against the rest of those runs' CPU: free of the run-to-run spread of the on/off comparison.
    let driftRuns = (results["weir-drift"] ?? []) + extraDriftRuns
    let driftShares = driftRuns.compactMap { result in
        result.drift_s.map { $0 / max(result.cpu_s - $0, 1e-9) }
    }
    let driftMicros = driftRuns.compactMap { result in result.drift_s.map { $0 * 1e6 / Double(result.events) } }
    if !driftShares.isEmpty {
        print(String(format: "  drift work timed inside the drift-on runs: %.2f µs/event, %.1f%% of the rest of their CPU (median of %d)",
                     median(driftMicros), median(driftShares) * 100, driftShares.count))
    }
    guard contenders == every else { return }
    let names = ["c-event": "C passthrough floor (no decode, no model)", "weir": "Weir worker (decode, int8 model, JSON out)",
                 "weir-drift": "Weir worker with drift windows of 1000 events",
                 "python": "Python worker (confluent-kafka batches of 1000, orjson, numpy, one onnxruntime int8 call per batch, flush and commit each second)"]
    print("")
    print("| worker, \(events) events × \(rounds) rounds, median (range) | events/s | CPU µs/event | of which librdkafka's threads |")
    print("|---|---:|---:|---:|")
    for contender in contenders {
        let runs = results[contender]!
        let rates = runs.map(\.eventsPerSecond), cpus = runs.map(\.cpuMicrosPerEvent)
        print(String(format: "| %@ | %.0f (%.0f–%.0f) | %.2f (%.2f–%.2f) | %.2f |", names[contender]! as NSString, rate[contender]!,
                     rates.min()!, rates.max()!, cpu[contender]!, cpus.min()!, cpus.max()!, median(runs.map(\.kafkaMicrosPerEvent))))
    }
    print(String(format: "| Weir / C floor | %.2f× (goal ≥ 0.95×) | %.2f× (goal ≤ 1.3×) |",
                 rate["weir"]! / rate["c-event"]!, cpu["weir"]! / cpu["c-event"]!))
    if !driftShares.isEmpty {
        print(String(format: "| drift work timed inside the drift-on runs | | %.2f µs/event: %.2f× (goal ≤ 1.10×) |",
                     median(driftMicros), 1 + median(driftShares)))
    }
    print(String(format: "| drift on / off (CPU: median of %d back-to-back pairs) | %.2f× | %.2f× (goal ≤ 1.10×) |",
                 driftPairs.count, rate["weir-drift"]! / rate["weir"]!, median(driftPairs)))
    print(String(format: "| Weir / Python | %.1f× (goal ≥ 5×) | %.2f× |", rate["weir"]! / rate["python"]!, cpu["weir"]! / cpu["python"]!))
    // Instructions per event (callgrind) take minutes under valgrind: WEIR_BENCH_INSTRUCTIONS_ONLY=1 runs them alone.

    // Latency at half of Weir's rate: a paced producer, one worker, event-time to delivery.
    let halfRate = Int(rate["weir"]! / 2)
    let latency = try measureLatency(cluster: cluster, rate: halfRate, seconds: latencySeconds, model: model, partitions: partitions)
    print(String(format: "| Weir event-to-prediction latency at %d events/s (half its max) | p50 %.2f ms | p99 %.2f ms |",
                 halfRate, latency.p50, latency.p99))
    var summary: [String: Double] = ["latency_rate": Double(halfRate), "latency_p50_ms": latency.p50, "latency_p99_ms": latency.p99,
                                     "weir_vs_floor_rate": rate["weir"]! / rate["c-event"]!,
                                     "weir_vs_floor_cpu": cpu["weir"]! / cpu["c-event"]!,
                                     "weir_vs_python_rate": rate["weir"]! / rate["python"]!,
                                     "drift_cpu_overhead": median(driftPairs),
                                     "drift_timed_share": driftShares.isEmpty ? 0 : median(driftShares)]
    for contender in contenders {
        summary["\(contender)_events_per_s"] = rate[contender]!
        summary["\(contender)_cpu_us_per_event"] = cpu[contender]!
    }
    try FileManager.default.createDirectory(atPath: "bench/out", withIntermediateDirectories: true)
    try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys, .prettyPrinted])
        .write(to: URL(fileURLWithPath: "bench/out/worker.json"))
    cluster.stop()
}

/// p50/p99 (ms) of event-to-delivery latency measured by a worker while a producer publishes at `rate`.
func measureLatency(cluster: EmbeddedCluster, rate: Int, seconds: Int, model: String, partitions: Int,
                    kafka: [String: String] = [:]) throws -> (p50: Double, p99: Double) {
    try cluster.createTopic("lat-in", partitions: partitions)
    try cluster.createTopic("lat-out", partitions: partitions)
    try cluster.createTopic("lat-dlq", partitions: partitions)
    var settings = WorkerSettings()
    settings.brokers = cluster.bootstrapServers
    settings.group = "lat-\(getpid())"
    settings.input = ["lat-in"]
    settings.output = "lat-out"
    settings.dlq = "lat-dlq"
    settings.kafka["consumer.fetch.wait.max.ms"] = "5"
    settings.kafka["consumer.session.timeout.ms"] = "6000"
    settings.kafka.merge(kafka) { $1 }
    let worker = try Worker(settings: settings, bundle: try ModelBundle(directory: URL(fileURLWithPath: model)))
    let finished = DispatchSemaphore(value: 0)
    Thread { try? worker.run(); finished.signal() }.start()
    let ready = Date().addingTimeInterval(30)
    while !worker.isReady && Date() < ready { usleep(10_000) }
    let producer = try SyntheticProducer(brokers: cluster.bootstrapServers, topic: "lat-in", rate: rate)
    Thread.sleep(forTimeInterval: 2)  // warm-up, not measured
    _ = worker.metrics.latency.snapshot(reset: true)
    Thread.sleep(forTimeInterval: Double(seconds))
    let window = worker.metrics.latency.snapshot(reset: true)
    producer.stop()
    worker.stop()
    _ = finished.wait(timeout: .now() + 30)
    return (Double(window.quantile(0.5) ?? 0) / 1000, Double(window.quantile(0.99) ?? 0) / 1000)
}

/// CPU per event the VM's noise cannot move: instructions counted by callgrind for the C floor and
/// Weir's worker (valgrind runs the AVX2 kernels: it does not emulate AVX-512). Nil when skipped.
func workerInstructionsPerEvent(cluster: EmbeddedCluster, directory: URL, partitions: Int, model: String) -> [String: Double]? {
    let bootstrap = cluster.bootstrapServers
    do {
        return try instructionsPerEvent(cluster: cluster, contenders: ["c-event", "weir"], partitions: partitions,
                                        ownInputs: true) { contender, count, output, input in
            contender == "c-event"
                ? [directory.appendingPathComponent("c-passthrough").path, bootstrap, input, output, output, String(count), "event"]
                : [directory.appendingPathComponent("weir-bench").path, "worker-contender", bootstrap, input, output, output + "-dlq",
                   output, String(count), model]
        }
    } catch {
        print("| instructions/event (callgrind) | skipped: \(error) | |")
        return nil
    }
}
