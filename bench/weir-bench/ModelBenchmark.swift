import Foundation
import WeirModel

/// One measurement line of the onnxruntime peer (bench/python/ort_models.py).
struct PeerLine: Decodable {
    let model: String
    let precision: String
    let batch: Int
    let ns_per_event: Double
    let macs_per_event: Int
}

/// Times Weir's core on the peer's models and inputs (one thread, best of repeated runs over
/// `seconds`) and prints ns/event against onnxruntime's, plus GMAC/s and the share of the int8
/// compute limit.
func runModelBenchmark(directory: String, peerFile: String, seconds: Double) throws {
    let peers = try String(contentsOfFile: peerFile, encoding: .utf8).split(separator: "\n")
        .compactMap { try? JSONDecoder().decode(PeerLine.self, from: Data($0.utf8)) }
    let names = Array(Set(peers.map(\.model))).sorted { a, b in
        peers.first { $0.model == a }!.macs_per_event < peers.first { $0.model == b }!.macs_per_event
    }
    let ghz = nominalGigahertz()
    // WEIR_BENCH_KERNELS=portable|avx2|avx512 caps the kernel set (ModelOptions.kernels).
    var kernels = KernelSet.best
    if let name = ProcessInfo.processInfo.environment["WEIR_BENCH_KERNELS"] {
        guard let chosen = KernelSet(name: name) else { throw BenchmarkError("WEIR_BENCH_KERNELS=\(name): use portable, avx2 or avx512") }
        kernels = chosen.usable
    }
    // AVX-512 VNNI: vpdpbusd, 64 multiply-adds per instruction, two per cycle; AVX2: vpmaddwd, 16, two per cycle.
    let macsPerCycle: Double = kernels == .avx512 ? 128 : 32
    let limit = macsPerCycle * ghz
    let sevenBit = kernels == .avx512 ? "the VNNI kernel runs them at the same limit"
        : "the 7-bit kernel (64 MAC per 3 multiply uops) can pass it"
    print(String(format: "inference core vs onnxruntime (one thread each); kernels: %@; exact int8 limit %.0f GMAC/s (%.0f MAC/cycle at %.2f GHz nominal; "
                 + "turbo clocks can pass it); layers of 65,536+ multiply-adds per row are int7: %@",
                 kernels.description as NSString, limit, macsPerCycle, ghz, sevenBit as NSString))
    print("")
    print("| model | batch | Weir ns/event | onnxruntime fp32 | onnxruntime int8 | Weir / best onnxruntime | Weir / onnxruntime int8 | Weir GMAC/s | share of exact int8 limit |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    var summary = [[String: Any]]()
    for name in names {
        let url = URL(fileURLWithPath: directory).appendingPathComponent("\(name).onnx")
        var options = ModelOptions()
        options.kernels = kernels
        // WEIR_BENCH_FP32=1 plans every layer in fp32, to see what int8 buys.
        options.quantize = ProcessInfo.processInfo.environment["WEIR_BENCH_FP32"] == nil
        // WEIR_BENCH_TILE=R runs the plan R rows at a time (ModelOptions.tileRows); WEIR_BENCH_EXACT=1
        // keeps every integer layer at 8 bits, to see what the 7-bit kernel buys.
        if let tile = ProcessInfo.processInfo.environment["WEIR_BENCH_TILE"].flatMap({ Int($0) }) { options.tileRows = tile }
        if ProcessInfo.processInfo.environment["WEIR_BENCH_EXACT"] != nil { options.int7MinimumMultiplyAdds = nil }
        // WEIR_BENCH_INT8_MIN=N: the smallest layer (multiply-adds per row) that runs in int8.
        if let minimum = ProcessInfo.processInfo.environment["WEIR_BENCH_INT8_MIN"].flatMap({ Int($0) }) {
            options.int8MinimumMultiplyAdds = minimum
        }
        // WEIR_BENCH_INT7_MIN=N: the smallest integer layer that takes the 7-bit kernel.
        if let minimum = ProcessInfo.processInfo.environment["WEIR_BENCH_INT7_MIN"].flatMap({ Int($0) }) {
            options.int7MinimumMultiplyAdds = minimum
        }
        let model = try Model(contentsOf: url, options: options)
        let input = try Data(contentsOf: URL(fileURLWithPath: directory).appendingPathComponent("\(name).input.f32"))
            .withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let scratch = model.makeScratch()
        // WEIR_BENCH_BATCHES=256 (comma-separated) limits the batch sizes, e.g. for a profiler run.
        let batches = ProcessInfo.processInfo.environment["WEIR_BENCH_BATCHES"]?.split(separator: ",").compactMap { Int($0) } ?? [1, 32, 256]
        for batch in batches {
            let ns = try bestNanosecondsPerEvent(model, rows: input, batch: batch, scratch: scratch, seconds: seconds, eventsPerRound: 4000)
            let fp32 = peers.first { $0.model == name && $0.precision == "fp32" && $0.batch == batch }!
            let int8 = peers.first { $0.model == name && $0.precision == "int8" && $0.batch == batch }!
            let bestPeer = min(fp32.ns_per_event, int8.ns_per_event)
            let gmacs = Double(fp32.macs_per_event) / ns
            print(String(format: "| %@ | %d | %.0f | %.0f | %.0f | %.2f× | %.2f× | %.1f | %.0f%% |", name as NSString, batch, ns,
                         fp32.ns_per_event, int8.ns_per_event, ns / bestPeer, ns / int8.ns_per_event, gmacs, 100 * gmacs / limit))
            summary.append(["model": name, "batch": batch, "weir_ns": ns, "ort_fp32_ns": fp32.ns_per_event,
                            "ort_int8_ns": int8.ns_per_event, "ratio_best": ns / bestPeer, "ratio_int8": ns / int8.ns_per_event])
        }
    }
    try FileManager.default.createDirectory(atPath: "bench/out", withIntermediateDirectories: true)
    try JSONSerialization.data(withJSONObject: summary, options: [.prettyPrinted, .sortedKeys])
        .write(to: URL(fileURLWithPath: "bench/out/inference-core.json"))
}

/// The CPU's nominal clock from /proc/cpuinfo (a VM reports the host's base clock).
func nominalGigahertz() -> Double {
    guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
          let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu MHz") }),
          let mhz = Double(line.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)) else { return 3.0 }
    return mhz / 1000
}

/// The fastest of repeated timed rounds of `model` on the first `batch` of `rows` (after a warm-up),
/// in ns per event; a round runs about `eventsPerRound` events.
func bestNanosecondsPerEvent(_ model: Model, rows input: [Float], batch: Int, scratch: ModelScratch, seconds: Double,
                             eventsPerRound: Int) throws -> Double {
    try input.withUnsafeBufferPointer { rows -> Double in
        for _ in 0..<20 { _ = try model.run(rows: batch, input: rows, scratch: scratch) }
        var best = Double.infinity
        let deadline = wallSeconds() + seconds
        while wallSeconds() < deadline {
            let iterations = max(1, eventsPerRound / batch)
            let start = wallSeconds()
            for _ in 0..<iterations { _ = try model.run(rows: batch, input: rows, scratch: scratch) }
            best = min(best, (wallSeconds() - start) * 1e9 / Double(iterations * batch))
        }
        return best
    }
}
