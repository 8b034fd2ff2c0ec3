import Foundation
import Testing
import WeirControl
import WeirModel
import WeirTestSupport

@Suite(.timeLimit(.minutes(3))) struct BundleTests {
    func temporaryDirectory() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("weir-bundle-\(UUID().uuidString)")
    }

    @Test func packageWritesAVerifiableBundle() throws {
        let out = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: out) }
        let training = repositoryRoot.appendingPathComponent("models/demo-training")
        let manifest = try BundlePackager.package(
            onnx: training.appendingPathComponent("model.onnx"), train: training.appendingPathComponent("train.csv"),
            name: "fraud", version: "2.1.0", out: out, missing: .mean)
        #expect(manifest.inputs.map(\.name) == (0..<32).map { "f\($0)" })
        #expect(manifest.inputs.allSatisfy { $0.default != nil })
        #expect(manifest.outputs.task == "classification")
        #expect(manifest.outputs.labels == ["0", "1"])
        #expect(manifest.outputs.scores == "probabilities")
        let bundle = try ModelBundle(directory: out)
        #expect(bundle.manifest == manifest)
        let onnx = try Data(contentsOf: out.appendingPathComponent("model.onnx"))
        #expect(manifest.sha256["model.onnx"] == sha256Hex(onnx))
        #expect(bundle.id == sha256Hex(try Data(contentsOf: out.appendingPathComponent("manifest.json"))))
        let reference = try #require(bundle.reference)
        #expect(manifest.sha256["reference.json"] == sha256Hex(try Data(contentsOf: out.appendingPathComponent("reference.json"))))
        #expect(reference.features.map(\.name) == manifest.inputs.map(\.name))
        #expect(reference.features.allSatisfy { $0.count == 1500 && $0.edges.count >= 2 && $0.sample.count == 1500 })
        #expect(reference.predictions.map(\.name) == ["score:0", "score:1"])
        #expect(reference.thresholds.calibrated && reference.thresholds.windowEvents == 1000)

        try Data("{}".utf8).write(to: out.appendingPathComponent("reference.json"))
        #expect { _ = try ModelBundle(directory: out) } throws: { "\($0)".contains("reference.json: sha256 is") }
    }

    @Test func aChangedModelFileIsRefusedNamingTheHash() throws {
        let out = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: out) }
        try FileManager.default.copyItem(at: demoBundleURL, to: out)
        var bytes = try Data(contentsOf: out.appendingPathComponent("model.onnx"))
        bytes[bytes.count - 1] ^= 0xFF
        try bytes.write(to: out.appendingPathComponent("model.onnx"))
        #expect {
            _ = try ModelBundle(directory: out)
        } throws: { error in
            "\(error)".contains("model.onnx: sha256 is") && "\(error)".contains("but manifest.json says")
        }
    }

    @Test func manifestProblemsNameTheField() throws {
        let out = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: out) }
        try FileManager.default.copyItem(at: demoBundleURL, to: out)
        let url = out.appendingPathComponent("manifest.json")
        let original = try String(contentsOf: url, encoding: .utf8)
        try original.replacingOccurrences(of: "\"version\" : \"1.0.0\"", with: "\"version\" : \"one\"").write(to: url, atomically: true, encoding: .utf8)
        #expect { _ = try ModelBundle(directory: out) } throws: { "\($0)".contains("version 'one' is not a semantic version") }
        try original.replacingOccurrences(of: "\"name\" : \"fraud\",", with: "").write(to: url, atomically: true, encoding: .utf8)
        #expect { _ = try ModelBundle(directory: out) } throws: { "\($0)".contains("missing field 'name'") }
    }

    @Test func aRegressorPackagesWithAValueOutput() throws {
        let out = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: out) }
        let onnx = repositoryRoot.appendingPathComponent("Tests/WeirModelTests/Fixtures/mlp_regressor.onnx")
        let model = try Model(contentsOf: onnx)
        let csv = out.appendingPathComponent("train.csv")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let header = (0..<model.inputWidth).map { "x\($0)" }.joined(separator: ",") + ",target"
        let row = (0..<model.inputWidth).map { _ in "0.5" }.joined(separator: ",") + ",1.25"
        try (header + "\n" + row + "\n").write(to: csv, atomically: true, encoding: .utf8)
        let manifest = try BundlePackager.package(onnx: onnx, train: csv, name: "price", version: "0.1.0",
                                                  out: out.appendingPathComponent("bundle"), labelColumn: "target")
        #expect(manifest.outputs.task == "regression")
        #expect(manifest.outputs.value == "variable")
        _ = try ModelBundle(directory: out.appendingPathComponent("bundle"))
        #expect {
            _ = try BundlePackager.package(onnx: onnx, train: csv, name: "price", version: "0.1", out: out.appendingPathComponent("b2"))
        } throws: { "\($0)".contains("--version '0.1' is not a semantic version") }
    }

    /// Packages the 64-256-256-1 classifier (its 256 × 256 layer runs 7-bit by default on AVX2)
    /// under `out` with `precision` once, and returns its dense layers' precisions as planned for `kernels`.
    func widePrecisions(_ out: URL, _ precision: ModelPrecision, kernels: KernelSet = .avx2) throws -> [String] {
        // A 64-256-256-1 classifier: by default its 256 × 256 layer runs with 7-bit operands.
        let onnx = repositoryRoot.appendingPathComponent("Tests/WeirModelTests/Fixtures/mlp_wide.onnx")
        let csv = out.appendingPathComponent("train.csv")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let header = (0..<64).map { "x\($0)" }.joined(separator: ",") + ",label"
        var rows = [String]()
        for r in 0..<4 {
            let values: [String] = (0..<64).map { (c: Int) -> String in String(Double((r * 7 + c) % 11) / 5 - 1) }
            rows.append(values.joined(separator: ",") + ",\(r % 2)")
        }
        try ([header] + rows).joined(separator: "\n").write(to: csv, atomically: true, encoding: .utf8)
        let directory = out.appendingPathComponent(precision.rawValue)
        if !FileManager.default.fileExists(atPath: directory.path) {
            let manifest = try BundlePackager.package(onnx: onnx, train: csv, name: "wide", version: "1.0.0", out: directory,
                                                      precision: precision)
            #expect(manifest.precision == (precision == .auto ? nil : precision.rawValue))
        }
        var options = ModelOptions()
        options.kernels = kernels
        return try ModelBundle(directory: directory, options: options).model.layers.filter { $0.operation.hasPrefix("Dense") }
            .map(\.precision)
    }

    @Test func theManifestPrecisionDecidesHowWorkersRunTheModel() throws {
        let out = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: out) }
        // The plan a worker makes on AVX2 (as a `kernels: avx2` worker does on any machine).
        #expect(try widePrecisions(out, .auto) == ["int8", "int7", "fp32"])
        #expect(try widePrecisions(out, .int8) == ["int8", "int8", "fp32"])
        #expect(try widePrecisions(out, .fp32) == ["fp32", "fp32", "fp32"])
        // An auto bundle's manifest does not mention precision, so bundles made before it keep their ids.
        let autoManifest = try String(contentsOf: out.appendingPathComponent("auto/manifest.json"), encoding: .utf8)
        #expect(!autoManifest.contains("precision"))
        let url = out.appendingPathComponent("int8/manifest.json")
        let text = try String(contentsOf: url, encoding: .utf8)
        try text.replacingOccurrences(of: "\"precision\" : \"int8\"", with: "\"precision\" : \"int4\"").write(to: url, atomically: true, encoding: .utf8)
        #expect { _ = try ModelBundle(directory: out.appendingPathComponent("int8")) } throws: { "\($0)".contains("precision 'int4'; use auto, int8 or fp32") }
    }

    /// With VNNI, 8 bits run as fast as 7: an auto bundle keeps every layer at 8 bits there.
    @Test(.enabled(if: KernelSet.best == .avx512, "this CPU has no AVX-512 VNNI: its plan is not checked here"))
    func anAutoBundleStaysAtEightBitsOnVNNI() throws {
        let out = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: out) }
        #expect(try widePrecisions(out, .auto, kernels: .avx512) == ["int8", "int8", "fp32"])
    }

    @Test func packageAndVerifyFromTheCommandLine() throws {
        let out = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: out) }
        let weir = builtProduct("weir").path
        let training = repositoryRoot.appendingPathComponent("models/demo-training")
        let packaged = try run([weir, "model", "package", "--onnx", training.appendingPathComponent("model.onnx").path,
                                "--train", training.appendingPathComponent("train.csv").path, "--name", "fraud",
                                "--version", "1.0.0", "--out", out.path])
        #expect(packaged.status == 0, "\(packaged.errors)")
        let verified = try run([weir, "model", "verify", out.path])
        #expect(verified.status == 0, "\(verified.errors)")
        #expect(verified.output.hasPrefix("ok fraud 1.0.0: hashes match"))
        let badPrecision = try run([weir, "model", "package", "--onnx", training.appendingPathComponent("model.onnx").path,
                                    "--train", training.appendingPathComponent("train.csv").path, "--name", "fraud",
                                    "--version", "1.0.0", "--out", out.path + "-bad", "--precision", "int4"])
        #expect(badPrecision.status != 0)
        #expect(badPrecision.errors.contains("--precision 'int4': use auto, int8 or fp32"))
        #expect(!FileManager.default.fileExists(atPath: out.path + "-bad"))
        let missing = try run([weir, "model", "verify", "/nonexistent"])
        #expect(missing.status != 0)
        #expect(missing.errors.contains("/nonexistent/manifest.json: cannot read the bundle manifest"))
    }
}
