import Foundation
import WeirControl
import WeirModel
import WeirTestSupport

/// One line of the onnxruntime tabular peer (bench/python/ort_tabular.py).
struct TabularPeerLine: Decodable {
    let model: String
    let batch: Int
    let ns_per_event: Double
}

/// Every model of the tabular zoo: whether `weir model package` makes a bundle of it (from a CSV of
/// its held-out rows) that loads, whether it agrees with onnxruntime
/// (labels on ≥ 99.9% of held-out rows, fp32 scores within 1e-4), and ns/event against
/// onnxruntime's in the same run (one thread each, best of repeated runs over `seconds`).
func runTabularBenchmark(peerFile: String, seconds: Double) throws {
    let peers = try String(contentsOfFile: peerFile, encoding: .utf8).split(separator: "\n")
        .compactMap { try? JSONDecoder().decode(TabularPeerLine.self, from: Data($0.utf8)) }
    let batches = Array(Set(peers.map(\.batch))).sorted()
    print("tabular models vs onnxruntime (one thread each; Weir's default plan; agreement checked with every step in fp32)")
    print("")
    print("| model | family | packages | agrees with onnxruntime | " + batches.map { "Weir / onnxruntime ns at batch \($0)" }.joined(separator: " | ") + " |")
    print("|---|---|---|---|" + batches.map { _ in "---:|" }.joined())
    var summary = [[String: Any]]()
    // WEIR_BENCH_MODELS=a,b limits the models (e.g. for a profiler run).
    let chosen = ProcessInfo.processInfo.environment["WEIR_BENCH_MODELS"].map { Set($0.split(separator: ",").map(String.init)) }
    for name in TabularFixture.all where chosen?.contains(name) ?? true {
        let fixture = try TabularFixture(name)
        var cells = [String]()
        var record: [String: Any] = ["model": name, "family": fixture.meta.family]
        do {
            var fp32 = ModelOptions()
            fp32.quantize = false
            let reference = try Model(contentsOf: fixture.modelURL, options: fp32)
            let agreement = try fixture.compare(try reference.run(inputs: try fixture.inputs()))
            let agrees = agreement.labelShare >= 0.999 && agreement.worstScoreDifference <= 1e-4
            let model = try Model(contentsOf: fixture.modelURL)
            let rows = try model.featureRows(try fixture.inputs())
            let scratch = model.makeScratch()
            cells.append(packages(fixture))
            cells.append(String(format: "%@ (labels %.1f%%, scores ≤ %.1e)", agrees ? "yes" : "NO", 100 * agreement.labelShare,
                                Double(agreement.worstScoreDifference)))
            record["agrees"] = agrees
            for batch in batches {
                let ns = try bestNanosecondsPerEvent(model, rows: rows, batch: batch, scratch: scratch, seconds: seconds, eventsPerRound: 2000)
                let peer = peers.first { $0.model == name && $0.batch == batch }?.ns_per_event ?? .nan
                cells.append(String(format: "%.0f / %.0f = %.2f×", ns, peer, ns / peer))
                record["weir_ns_\(batch)"] = ns
                record["ort_ns_\(batch)"] = peer
            }
        } catch {
            cells = ["NO: \(error)", "-"] + batches.map { _ in "-" }
            record["error"] = "\(error)"
        }
        print("| \(name) | \(fixture.meta.family) | " + cells.joined(separator: " | ") + " |")
        summary.append(record)
    }
    try FileManager.default.createDirectory(atPath: "bench/out", withIntermediateDirectories: true)
    try JSONSerialization.data(withJSONObject: summary, options: [.prettyPrinted, .sortedKeys])
        .write(to: URL(fileURLWithPath: "bench/out/tabular.json"))
}

/// "yes" when the model packages from a CSV of its rows into a bundle that loads, else why not.
func packages(_ fixture: TabularFixture) -> String {
    if fixture.meta.name == "preprocessing_ops" { return "- (operators, not a model)" }
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weir-bench-\(fixture.meta.name)-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: directory) }
    do {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let train = directory.appendingPathComponent("train.csv")
        try fixture.writeTrainingCSV(to: train)
        _ = try BundlePackager.package(onnx: fixture.modelURL, train: train, name: fixture.meta.name.replacingOccurrences(of: "_", with: "-"),
                                       version: "1.0.0", out: directory.appendingPathComponent("bundle"), missing: .mean)
        _ = try ModelBundle(directory: directory.appendingPathComponent("bundle"))
        return "yes"
    } catch {
        return "NO: \(error)"
    }
}
