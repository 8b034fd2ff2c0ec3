import ArgumentParser
import Foundation
import WeirControl
import WeirModel
import WeirStore

/// `weir model ...`: look at and (later) package models.
struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model", abstract: "Package, inspect and verify models.",
        subcommands: [PackageCommand.self, InspectCommand.self, VerifyCommand.self, PushCommand.self])
}

/// `weir model push BUNDLE s3://bucket/prefix`: uploads a verified bundle where workers fetch it.
struct PushCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "push",
        abstract: "Upload a bundle to s3://bucket/prefix (files first, manifest.json last).",
        discussion: """
        The bundle is verified first (every hash). The store is reached the way the AWS SDKs do: \
        AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL for MinIO, Ceph or another S3-compatible store, \
        AWS_REGION, and credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a web-identity \
        token file, or a profile. Then deploy it with weir control deploy --location.
        """)

    @Argument(help: "A bundle directory.")
    var bundle: String

    @Argument(help: "Where to put it: s3://bucket/prefix.")
    var location: String

    @Option(name: .customLong("s3-addressing"), help: "auto (path-style with a custom endpoint), path or virtual-host.")
    var addressing = "auto"

    func run() throws {
        let pathStyle: Bool?
        switch addressing {
        case "auto": pathStyle = nil
        case "path": pathStyle = true
        case "virtual-host": pathStyle = false
        default: throw CommandFailure("--s3-addressing '\(addressing)': use auto, path or virtual-host")
        }
        let files: BundleFiles
        do { files = try BundleFiles(directory: URL(fileURLWithPath: bundle)) } catch { throw CommandFailure("\(bundle): \(error)") }
        let store = BundleStore(settings: BundleStoreSettings(s3PathStyle: pathStyle))
        do { try store.push(files, to: location) } catch { throw CommandFailure("\(location): \(error)") }
        let bytes = files.files.values.reduce(files.manifestData.count) { $0 + $1.count }
        print("pushed \(files.manifest.name) \(files.manifest.version) (\(files.files.count + 1) files, \(bytes) bytes) to \(location)")
        print("id (sha256 of manifest.json) \(files.identity)")
    }
}

/// `weir model inspect PATH`: what Weir will run, layer by layer.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Print a model's inputs, outputs, operators, per-layer precision and parameter bytes.")

    @Argument(help: "An ONNX file, or a bundle directory holding model.onnx.")
    var path: String

    @Flag(help: "Plan everything in fp32 (what the model looks like without int8).")
    var fp32 = false

    @Option(help: "Plan for these CPU kernels (auto, avx512, avx2, portable): how a machine without this one's runs it.")
    var kernels = "auto"

    func run() throws {
        var url = URL(fileURLWithPath: path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw ValidationError("no such file: \(path)")
        }
        if isDirectory.boolValue { url.appendPathComponent("model.onnx") }
        var options = ModelOptions()
        options.quantize = !fp32
        if kernels != "auto" {
            guard let chosen = KernelSet(name: kernels) else {
                throw ValidationError("--kernels \(kernels): use auto, avx512, avx2 or portable")
            }
            options.kernels = chosen
        }
        let model: Model
        do { model = try Model(contentsOf: url, options: options) } catch {
            throw CommandFailure("\(path): \(error)")
        }
        print(inspectionReport(model, source: url.path))
    }
}

/// The text `weir model inspect` prints.
func inspectionReport(_ model: Model, source: String) -> String {
    func shape(_ dims: [Int?]) -> String { "[" + dims.map { $0.map(String.init) ?? "N" }.joined(separator: ", ") + "]" }
    var lines = [String]()
    lines.append("model     \(source)")
    lines.append("producer  \(model.producer)")
    lines.append("opsets    " + model.opsets.sorted { $0.key < $1.key }.map { "\($0.key.isEmpty ? "ai.onnx" : $0.key) \($0.value)" }.joined(separator: ", "))
    if model.inputs.count == 1 {
        lines.append("input     \(model.input.name) \(model.input.elementType) \(shape(model.input.shape)) (\(model.inputWidth) features)")
    } else {
        // Several inputs: where each one's columns sit in the feature row.
        for (fed, signature) in zip(model.inputs, model.inputSignatures) {
            let columns = fed.width == 1 ? "column \(fed.firstColumn + 1)" : "columns \(fed.firstColumn + 1)-\(fed.firstColumn + fed.width)"
            lines.append("input     \(fed.name) \(signature.elementType) \(shape(signature.shape)) (\(columns) of \(model.inputWidth))")
        }
    }
    for output in model.outputs {
        lines.append("output    \(output.name) \(output.elementType) \(shape(output.shape))")
    }
    lines.append("kernels   \(model.kernels)")
    lines.append("")
    let header = ["#", "output", "operation", "precision", "parameter bytes"]
    var rows = [[String]]()
    for (index, layer) in model.layers.enumerated() {
        rows.append([String(index + 1), layer.output, layer.operation, layer.precision, String(layer.parameterBytes)])
    }
    var widths = header.map(\.count)
    for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
    func format(_ row: [String]) -> String {
        row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }
            .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
    }
    lines.append(format(header))
    for row in rows { lines.append(format(row)) }
    let int8 = model.layers.filter { $0.precision == "int8" }.count
    let int7 = model.layers.filter { $0.precision == "int7" }.count
    let total = model.layers.reduce(0) { $0 + $1.parameterBytes }
    lines.append("")
    let sevenBit = int7 > 0 ? ", \(int7) in int7 (7-bit operands for large layers, see docs/model.md)" : ""
    lines.append("\(model.layers.count) steps, \(int8) in int8\(sevenBit); \(total) parameter bytes")
    return lines.joined(separator: "\n")
}

/// A failure reported as one line (`Error: ...`) with exit status 1, without the usage text.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
