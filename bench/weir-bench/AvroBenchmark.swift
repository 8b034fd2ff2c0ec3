import AvroReference
import Foundation
import WeirCodec
import WeirKafka
import WeirRegistry
import WeirWorker

/// Avro decoding of the demo's event (32 doubles among four strings and a padding string, ~750 B):
/// Weir's AvroDecoder against libavro-c's generic decode of the same bytes, and against Weir's
/// own JSON decoder on the same rows; every Avro row is checked equal to its JSON row first.
func runAvroCodecBenchmark(events count: Int, seconds: Double) throws {
    let names = (0..<SyntheticEvents.featureCount).map { "f\($0)" }
    let schemaID: UInt32 = 1
    let avro = (0..<count).map { SyntheticEvents.avroEvent($0, schemaID: schemaID) }
    let json = (0..<count).map { SyntheticEvents.event($0) }
    let features = FeatureSchema(names: names)
    let store = WriterSchemas()
    store.store(.avro(try AvroType.parse(SyntheticEvents.avroSchema)), for: schemaID)
    let avroDecoder = AvroDecoder(schema: features, writerSchemas: store)
    let jsonDecoder = EventDecoder(schema: features)
    var avroRow = [Float](repeating: 0, count: names.count), jsonRow = avroRow
    for index in 0..<count {
        let a = avro[index].withUnsafeBytes { bytes in avroRow.withUnsafeMutableBufferPointer { avroDecoder.decode(bytes, into: $0.baseAddress!) } }
        let j = json[index].withUnsafeBytes { bytes in jsonRow.withUnsafeMutableBufferPointer { jsonDecoder.decode(bytes, into: $0.baseAddress!) } }
        guard case .success = a, case .success = j, avroRow.map(\.bitPattern) == jsonRow.map(\.bitPattern) else {
            throw BenchmarkError("event \(index): the Avro row differs from the JSON row (\(a), \(j))")
        }
    }
    guard let reference = SyntheticEvents.avroSchema.withCString({ weir_avro_reference_new($0, strlen($0)) }) else {
        throw BenchmarkError("libavro-c cannot parse the demo's Avro schema")
    }
    defer { weir_avro_reference_free(reference) }

    var checksum: Float = 0
    /// Best pass of `body` over every event, ns per event.
    func best(_ body: (Int) throws -> Void) rethrows -> Double {
        var fastest = Double.infinity
        let deadline = wallSeconds() + seconds
        repeat {
            let start = wallSeconds()
            for index in 0..<count { try body(index) }
            fastest = min(fastest, (wallSeconds() - start) * 1e9 / Double(count))
        } while wallSeconds() < deadline
        return fastest
    }
    let avroC = try best { index in
        let status = avro[index].withUnsafeBufferPointer { weir_avro_reference_read_only(reference, $0.baseAddress! + 5, $0.count - 5) }
        if status != 0 { throw BenchmarkError("libavro-c refused event \(index)") }
    }
    let weirAvro = best { index in
        _ = avro[index].withUnsafeBytes { bytes in avroRow.withUnsafeMutableBufferPointer { avroDecoder.decode(bytes, into: $0.baseAddress!) } }
        checksum += avroRow[0]
    }
    let weirJSON = best { index in
        _ = json[index].withUnsafeBytes { bytes in jsonRow.withUnsafeMutableBufferPointer { jsonDecoder.decode(bytes, into: $0.baseAddress!) } }
        checksum += jsonRow[0]
    }
    let avroBytes = avro.reduce(0) { $0 + $1.count } / count, jsonBytes = json.reduce(0) { $0 + $1.count } / count
    print("Avro decoding: \(count) events (~\(avroBytes) B Avro, ~\(jsonBytes) B JSON, 32 doubles), best pass; rows equal to JSON's (checksum \(checksum != 0))")
    print("")
    print("| decoder | ns/event | vs libavro-c |")
    print("|---|---:|---:|")
    print(String(format: "| libavro-c generic decode (C) | %.0f | 1.00× |", avroC))
    print(String(format: "| Weir AvroDecoder (goal ≤ 0.2×) | %.0f | %.3f× |", weirAvro, weirAvro / avroC))
    print(String(format: "| Weir EventDecoder on the same rows as JSON | %.0f | %.3f× |", weirJSON, weirJSON / avroC))
    print(String(format: "| Weir Avro / Weir JSON (goal ≤ 1×) | | %.3f× |", weirAvro / weirJSON))
    try FileManager.default.createDirectory(atPath: "bench/out", withIntermediateDirectories: true)
    try JSONSerialization.data(withJSONObject: ["avro_c_ns": avroC, "weir_avro_ns": weirAvro, "weir_json_ns": weirJSON,
                                                "ratio_vs_avro_c": weirAvro / avroC, "ratio_vs_json": weirAvro / weirJSON],
                               options: [.sortedKeys]).write(to: URL(fileURLWithPath: "bench/out/avro-decoding.json"))
}

/// The worker on Avro input against the same worker on JSON input and the C floor, on topics
/// holding the same events (a Schema Registry in this process serves the writer schema). CPU per
/// event is the measure: the goal is Avro no higher than JSON. WEIR_BENCH_INSTRUCTIONS_ONLY=1
/// counts instructions per event with callgrind instead.
func runAvroWorkerBenchmark(events: Int, partitions: Int, rounds: Int, model: String) throws {
    let cluster = try EmbeddedCluster(topics: [("bench-in", partitions), ("bench-in-avro", partitions)])
    defer { cluster.stop() }
    let registry = try SchemaRegistryServer()
    defer { registry.stop() }
    let schemaID = registry.register(subject: "bench-in-avro-value", schema: SyntheticEvents.avroSchema)
    let bootstrap = cluster.bootstrapServers
    print("worker on Avro: \(events) events of ~750 B on \(partitions) partitions, \(rounds) rounds, model \(model), registry \(registry.url)")
    let directory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    /// The contender's environment: the Avro worker reads through the registry.
    func prepare(_ contender: String) {
        if contender == "weir-avro" { setenv("WEIR_BENCH_SCHEMA_REGISTRY", registry.url, 1) } else { unsetenv("WEIR_BENCH_SCHEMA_REGISTRY") }
    }
    defer { unsetenv("WEIR_BENCH_SCHEMA_REGISTRY") }
    func command(_ contender: String, _ count: Int, _ output: String, _ input: String, group: String) -> [String] {
        contender.hasPrefix("c-event")
            ? [directory.appendingPathComponent("c-passthrough").path, bootstrap, input, output, group, String(count), "event"]
            : [directory.appendingPathComponent("weir-bench").path, "worker-contender", bootstrap, input, output, output + "-dlq",
               group, String(count), model]
    }
    if ProcessInfo.processInfo.environment["WEIR_BENCH_INSTRUCTIONS_ONLY"] != nil {
        let counted = try instructionsPerEvent(cluster: cluster, contenders: ["c-event-avro", "weir", "weir-avro"], partitions: partitions,
                                               ownInputs: true, avroSchemaID: schemaID, prepare: prepare) { contender, count, output, input in
            command(contender, count, output, input, group: output)
        }
        if let counted {
            print(String(format: "instructions/event (callgrind, 40k - 10k events): C floor on Avro %.0f, Weir on JSON %.0f, Weir on Avro %.0f: Avro / JSON %.2f×",
                         counted["c-event-avro"]!, counted["weir"]!, counted["weir-avro"]!, counted["weir-avro"]! / counted["weir"]!))
        }
        return
    }
    try produceBenchmarkInput(bootstrap: bootstrap, topic: "bench-in", events: events, eventBytes: 750)
    try produceBenchmarkInput(bootstrap: bootstrap, topic: "bench-in-avro", events: events, eventBytes: 750, avroSchemaID: schemaID)
    let contenders = ["c-event-avro", "weir", "weir-avro"]
    var cpu = [String: [Double]](), rate = [String: [Double]]()
    for round in 0..<rounds {
        for offset in 0..<contenders.count {
            let contender = contenders[(round + offset) % contenders.count]
            let output = "aout-\(contender)-\(round)"
            try cluster.createTopic(output, partitions: partitions)
            try cluster.createTopic(output + "-dlq", partitions: partitions)
            prepare(contender)
            let input = contender.hasSuffix("-avro") ? "bench-in-avro" : "bench-in"
            let result = try runContender(command(contender, events, output, input, group: "abench-\(contender)-\(round)"))
            let written = try countMessages(bootstrap: bootstrap, topic: output, partitions: partitions)
            guard result.events == events, written == events else {
                throw BenchmarkError("\(contender) round \(round): answered \(result.events), output holds \(written); expected \(events)")
            }
            print("  round \(round) \(contender.padding(toLength: 12, withPad: " ", startingAt: 0)) "
                  + String(format: "%9.0f events/s  %6.2f µs CPU/event", result.eventsPerSecond, result.cpuMicrosPerEvent))
            cpu[contender, default: []].append(result.cpuMicrosPerEvent)
            rate[contender, default: []].append(result.eventsPerSecond)
        }
    }
    func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
    print("")
    print("| worker, \(events) events × \(rounds) rounds, medians | events/s | CPU µs/event |")
    print("|---|---:|---:|")
    let names = ["c-event-avro": "C passthrough floor on the Avro topic", "weir": "Weir worker, JSON input", "weir-avro": "Weir worker, Avro input"]
    for contender in contenders {
        print(String(format: "| %@ | %.0f | %.2f |", names[contender]! as NSString, median(rate[contender]!), median(cpu[contender]!)))
    }
    let ratio = median(cpu["weir-avro"]!) / median(cpu["weir"]!)
    print(String(format: "| Weir Avro / Weir JSON (goal ≤ 1×) | %.2f× | %.2f× |", median(rate["weir-avro"]!) / median(rate["weir"]!), ratio))
    print(String(format: "| Weir Avro / C floor | %.2f× | %.2f× |", median(rate["weir-avro"]!) / median(rate["c-event-avro"]!),
                 median(cpu["weir-avro"]!) / median(cpu["c-event-avro"]!)))
    try FileManager.default.createDirectory(atPath: "bench/out", withIntermediateDirectories: true)
    try JSONSerialization.data(withJSONObject: ["avro_vs_json_cpu": ratio,
                                                "weir_avro_cpu_us_per_event": median(cpu["weir-avro"]!),
                                                "weir_json_cpu_us_per_event": median(cpu["weir"]!),
                                                "c_floor_avro_cpu_us_per_event": median(cpu["c-event-avro"]!)],
                               options: [.sortedKeys, .prettyPrinted]).write(to: URL(fileURLWithPath: "bench/out/avro-worker.json"))
}
