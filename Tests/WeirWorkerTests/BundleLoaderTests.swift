import Foundation
import Testing
import WeirCodec
import WeirControl
import WeirStore
import WeirTestSupport
@testable import WeirWorker

/// The loader's refusals, one test per code it can give (no broker): a deploy the worker cannot
/// serve is answered by a `rejected` status with one of these codes (docs/contracts.md), never
/// by a stalled or crashed worker. The control-topic tests produce the signature, sequence,
/// hash and schema codes end to end; these cover the rest of the list.
@Suite("Bundle loader rejections", .timeLimit(.minutes(2)))
struct BundleLoaderTests {
    let bundles = TestBundles()
    let loader = BundleLoader(settings: WorkerSettings(), modelName: "fraud", writerSchemas: WriterSchemas(), records: OutputRecords(format: .json),
                              log: WorkerLog(worker: "test", model: "fraud", version: "1.0.0", sink: { _ in }),
                              store: BundleStore(settings: BundleStoreSettings(cacheDirectory: FileManager.default.temporaryDirectory.appendingPathComponent("weir-loader-cache").path,
                                                                               environment: ["HOME": "/nonexistent"])),
                              inUse: { [] })
    let active = try! ModelBundle(directory: demoBundleURL).manifest
    let recent = (0..<64).map { SyntheticEvents.event($0) }

    func ref(_ directory: URL, version: String) -> BundleRef {
        BundleRef(version: version, location: "file://" + directory.path, sha256: ModelBundle.identity(of: directory) ?? "")
    }

    func rejection(_ ref: BundleRef) -> ControlRejection? {
        if case .failure(let rejection) = loader.load(ref, recent: recent, active: active) { return rejection }
        return nil
    }

    @Test("Every rejection code the worker can give is produced by some test")
    func everyCodeHasAProducer() {
        // The codes tested end to end in ControlTests and ControlMessageTests, plus this suite's.
        let endToEnd: Set<ControlRejection.Code> = [.missingSignature, .badSignature, .malformed, .staleSequence,
                                                    .invalidTransition, .bundleHash, .incompatibleSchema, .unknownKey, .tooLarge]
        let here: Set<ControlRejection.Code> = [.bundleUnavailable, .bundleInvalid, .warmUpFailed]
        #expect(endToEnd.union(here) == Set(ControlRejection.Code.allCases), "a new code needs a test that produces it")
    }

    @Test("A location no worker can read is bundle-unavailable")
    func unavailable() throws {
        defer { bundles.remove() }
        let good = try bundles.make("1.1.0")
        let identity = try #require(ModelBundle.identity(of: good))
        for location in ["file:///nonexistent/weir/fraud-1.1.0", "s3://models/fraud/1.1.0", "relative/fraud-1.1.0"] {
            let refused = rejection(BundleRef(version: "1.1.0", location: location, sha256: identity))
            #expect(refused?.code == .bundleUnavailable, "\(location): \(String(describing: refused))")
        }
        #expect(rejection(ref(good, version: "1.1.0")) == nil, "the same bundle where it exists loads")
    }

    @Test("A bundle that is not the named version, or whose model cannot compile, is bundle-invalid")
    func invalid() throws {
        defer { bundles.remove() }
        let good = try bundles.make("1.1.0")
        let wrongVersion = rejection(ref(good, version: "1.2.0"))
        #expect(wrongVersion?.code == .bundleInvalid && wrongVersion?.reason.contains("not fraud 1.2.0") == true,
                "\(String(describing: wrongVersion))")
        // Hashes that match a file that is not an ONNX model: readable and signed, but no model.
        let notAModel = FileManager.default.temporaryDirectory.appendingPathComponent("weir-not-a-model-\(UUID().uuidString).onnx")
        defer { try? FileManager.default.removeItem(at: notAModel) }
        try Data("this is not protobuf".utf8).write(to: notAModel)
        let broken = try bundles.make("1.3.0", onnx: notAModel)
        let refused = rejection(ref(broken, version: "1.3.0"))
        #expect(refused?.code == .bundleInvalid, "\(String(describing: refused))")
    }

    @Test("A model with no finite answer on any recent event is warm-up-failed")
    func warmUpFailed() throws {
        defer { bundles.remove() }
        let never = try bundles.make("1.4.0", onnx: repositoryRoot.appendingPathComponent("Tests/WeirWorkerTests/Fixtures/non-finite-candidate.onnx"))
        let refused = rejection(ref(never, version: "1.4.0"))
        #expect(refused?.code == .warmUpFailed && refused?.reason.contains("no finite answer on any of 64") == true,
                "\(String(describing: refused))")
        // The half-failing candidate warms up (some answers are finite); the rollback handles it.
        let half = try bundles.make("1.5.0", onnx: repositoryRoot.appendingPathComponent("Tests/WeirWorkerTests/Fixtures/failing-candidate.onnx"))
        #expect(rejection(ref(half, version: "1.5.0")) == nil)
    }
}
