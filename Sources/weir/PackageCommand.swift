import ArgumentParser
import Foundation
import WeirControl
import WeirModel

/// `weir model package`: builds a bundle (manifest.json + model.onnx) from an ONNX file and the
/// training CSV whose header names the features.
struct PackageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "package", abstract: "Build a model bundle from an ONNX file and its training CSV.")

    @Option(help: "The ONNX model (fp32, or quantized by onnxruntime).")
    var onnx: String
    @Option(help: "The training CSV: its header names the features in the model's input order (a model with one-column inputs: by their names). Cells of string inputs are categories.")
    var train: String
    @Option(help: "The model's name (as in prediction records and control messages).")
    var name: String
    @Option(help: "The bundle's semantic version, like 1.3.0.")
    var version: String
    @Option(help: "The bundle directory to write.")
    var out: String
    @Option(help: "The CSV column holding the target; it is not a feature.")
    var label = "label"
    @Option(help: "classification or regression (default: decided from the model's outputs).")
    var task: String?
    @Option(help: "What an event without a feature gets: reject, mean (of the training column) or zero; a category gets the most frequent one unless reject.")
    var missing = "reject"
    @Option(help: "Drift window size the thresholds in reference.json are calibrated for.")
    var driftWindowEvents = 1000
    @Option(help: "How workers run the model: auto (int8, and 7-bit int7 on large layers), int8 (8-bit operands only) or fp32.")
    var precision = "auto"
    @Option(help: "ignore: read a classifier's ZipMap output (a list of maps) as the scores it maps, instead of refusing the model.")
    var zipmap: String?

    func run() throws {
        guard let policy = MissingValuePolicy(rawValue: missing) else {
            throw CommandFailure("--missing '\(missing)': use reject, mean or zero")
        }
        guard let modelPrecision = ModelPrecision(rawValue: precision) else {
            throw CommandFailure("--precision '\(precision)': use auto, int8 or fp32")
        }
        if let zipmap, zipmap != "ignore" { throw CommandFailure("--zipmap '\(zipmap)': the only value is ignore") }
        let manifest: BundleManifest
        do {
            manifest = try BundlePackager.package(
                onnx: URL(fileURLWithPath: onnx), train: URL(fileURLWithPath: train), name: name, version: version,
                out: URL(fileURLWithPath: out), labelColumn: label, task: task, missing: policy,
                driftWindowEvents: driftWindowEvents, precision: modelPrecision, ignoreZipMap: zipmap == "ignore")
        } catch {
            throw CommandFailure("\(error)")
        }
        let bundle = try ModelBundle(directory: URL(fileURLWithPath: out))
        print("bundle \(out): \(manifest.name) \(manifest.version), \(manifest.inputs.count) inputs, \(manifest.outputs.task)"
              + (manifest.outputs.labels.map { " (labels \($0.joined(separator: ", ")))" } ?? ""))
        print("id (sha256 of manifest.json) \(bundle.id)")
    }
}

/// `weir model verify PATH`: checks a bundle's hashes and runs the model once.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Check a bundle's hashes and fit, and run the model once.")

    @Argument(help: "A bundle directory.")
    var path: String

    func run() throws {
        let bundle: ModelBundle
        do { bundle = try ModelBundle(directory: URL(fileURLWithPath: path)) } catch {
            throw CommandFailure("\(error)")
        }
        let manifest = bundle.manifest
        let row = manifest.inputs.map { $0.default ?? 0 }
        let outputs: [String: Tensor]
        do { outputs = try bundle.model.run(row) } catch { throw CommandFailure("\(path): the model failed on one row: \(error)") }
        let name = manifest.outputs.scores ?? manifest.outputs.value ?? ""
        let values = outputs[name]?.floats ?? []
        guard !values.isEmpty, values.allSatisfy(\.isFinite) else {
            throw CommandFailure("\(path): output '\(name)' is \(values) for a row of defaults; expected finite numbers")
        }
        print("ok \(manifest.name) \(manifest.version): hashes match, \(manifest.inputs.count) inputs, '\(name)' = \(values)")
        print("id (sha256 of manifest.json) \(bundle.id)")
    }
}
