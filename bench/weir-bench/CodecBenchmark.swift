import WeirWorker
import Foundation
import WeirCodec
import WeirDrift

/// Weir's event decoder against jansson's DOM parse on the same ~750-byte, 32-feature events.
func runCodecBenchmark(events count: Int, seconds: Double, peer runPeer: Bool = true) throws {
    let names = (0..<SyntheticEvents.featureCount).map { "f\($0)" }
    let events = (0..<count).map { SyntheticEvents.event($0) }
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("weir-bench-events-\(getpid()).jsonl")
    var blob = Data()
    for event in events { blob.append(contentsOf: event); blob.append(10) }
    try blob.write(to: file)
    defer { try? FileManager.default.removeItem(at: file) }

    struct Peer: Decodable { let ns_per_event: Double }
    var peer = Peer(ns_per_event: .nan)
    if runPeer {
    let directory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    let process = Process()
    process.executableURL = directory.appendingPathComponent("jansson-peer")
    process.arguments = [file.path, String(seconds)] + names
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let peerLine = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    peer = try JSONDecoder().decode(Peer.self, from: Data(peerLine.utf8))
    }

    var checksum: Float = 0
    /// Best pass over `events` with one decoder, ns per event.
    func timeDecoder(_ events: [[UInt8]]) throws -> Double {
        let decoder = EventDecoder(schema: FeatureSchema(names: names))
        var row = [Float](repeating: 0, count: names.count)
        var best = Double.infinity
        let deadline = wallSeconds() + seconds
        while wallSeconds() < deadline {
            let start = wallSeconds()
            for event in events {
                let result = event.withUnsafeBytes { bytes in row.withUnsafeMutableBufferPointer { decoder.decode(bytes, into: $0.baseAddress!) } }
                if case .failure(let failure) = result { throw BenchmarkError("decoder rejected a benchmark event: \(failure)") }
                checksum += row[0]
            }
            best = min(best, (wallSeconds() - start) * 1e9 / Double(events.count))
        }
        return best
    }
    let best = try timeDecoder(events)
    // The decoder's worst case: the same events with their members in a different order each time,
    // so the key layout learned from one event never fits the next (every member takes the full
    // path and is relearned). Members hold no commas, so splitting on them is safe here.
    var generator = SplitMix64(seed: 7)
    let shuffled = events.map { event -> [UInt8] in
        let members = String(decoding: event.dropFirst().dropLast(), as: UTF8.self).split(separator: ",")
        var order = Array(members.indices)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(generator.next() % UInt64(i + 1))) }
        return Array(("{" + order.map { String(members[$0]) }.joined(separator: ",") + "}").utf8)
    }
    let bestShuffled = try timeDecoder(shuffled)
    let bytes = events.reduce(0) { $0 + $1.count } / events.count
    print("event decoding: \(events.count) events of ~\(bytes) B with \(names.count) features, best pass (checksum \(checksum != 0))")
    print("")
    print("| decoder | ns/event | ratio |")
    print("|---|---:|---:|")
    print(String(format: "| jansson DOM + lookups (C) | %.0f | 1.00× |", peer.ns_per_event))
    print(String(format: "| Weir EventDecoder | %.0f | %.3f× |", best, best / peer.ns_per_event))
    print(String(format: "| Weir EventDecoder, members in a new order in every event (the learned layout never fits) | %.0f | %.3f× |",
                 bestShuffled, bestShuffled / peer.ns_per_event))
    guard runPeer else { return }  // --no-peer: a profiling run; nothing to compare or record
    try FileManager.default.createDirectory(atPath: "bench/out", withIntermediateDirectories: true)
    try JSONSerialization.data(withJSONObject: ["jansson_ns": peer.ns_per_event, "weir_ns": best, "ratio": best / peer.ns_per_event,
                                                     "weir_shuffled_ns": bestShuffled],
                               options: [.sortedKeys]).write(to: URL(fileURLWithPath: "bench/out/event-decoding.json"))
}
