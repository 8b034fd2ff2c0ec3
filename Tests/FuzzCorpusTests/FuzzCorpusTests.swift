import Foundation
import FuzzChecks
import Testing

/// The committed fuzz corpus (`fuzz/corpus`, including the inputs that once crashed a target)
/// replayed through the very checks the libFuzzer targets run, so a regression on any of them
/// fails `make test` without a fuzzing build.
@Suite(.timeLimit(.minutes(2))) struct FuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fuzz/corpus")

    /// The corpus files of `target`, sorted (replay order matters for the control state machine).
    func inputs(_ target: String) throws -> [(name: String, bytes: [UInt8])] {
        let directory = Self.corpus.appendingPathComponent(target)
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        return try names.map { ($0, Array(try Data(contentsOf: directory.appendingPathComponent($0)))) }
    }

    @Test func theDecoderCorpusAgreesWithJansson() throws {
        let corpus = try inputs("decoder")
        #expect(corpus.count >= 70, "the committed decoder corpus: \(corpus.count) inputs")
        #expect(corpus.contains { $0.name.hasPrefix("found-") }, "the inputs the fuzzer found are part of it")
        let differential = DecoderDifferential()
        for (name, bytes) in corpus {
            let failure = bytes.withUnsafeBytes { differential.check($0) }
            #expect(failure == nil, "\(name): \(failure ?? "")")
        }
    }

    @Test func theAvroCorpusAgreesWithLibavroC() throws {
        let corpus = try inputs("avro")
        #expect(corpus.count >= 8, "the committed Avro corpus: \(corpus.count) inputs")
        let differential = AvroDifferential()
        for (name, bytes) in corpus {
            let failure = bytes.withUnsafeBytes { differential.check($0) }
            #expect(failure == nil, "\(name): \(failure ?? "")")
        }
    }

    @Test func theControlCorpusKeepsEveryProperty() throws {
        let corpus = try inputs("control")
        #expect(corpus.count >= 14, "the committed control corpus: \(corpus.count) inputs")
        let properties = ControlProperties()
        for (name, bytes) in corpus {
            let failure = bytes.withUnsafeBytes { properties.check($0) }
            #expect(failure == nil, "\(name): \(failure ?? "")")
        }
    }
}
