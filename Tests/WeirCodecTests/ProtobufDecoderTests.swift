import Foundation
import Testing
import WeirTestSupport
@testable import WeirCodec

/// The committed cases (scripts/make-protobuf-fixtures.py): values written by confluent-kafka's
/// ProtobufSerializer from messages the protobuf runtime built, with the `.proto` text a registry
/// returns, and the rows (by protobuf's own presence rules) or dead-letter codes Weir must give.
@Suite("Protobuf decoder", .timeLimit(.minutes(2)))
struct ProtobufDecoderTests {
    let fixtures: SchemaFixtures
    var schemas: [UInt32: String] { fixtures.schemas }
    var cases: [SchemaFixtures.Case] { fixtures.cases }

    init() throws { fixtures = try SchemaFixtures("protobuf-cases.json") }

    @Test("values written by confluent-kafka's ProtobufSerializer: the rows, ids and dead-letter codes the fixtures name")
    func fixtureCases() throws {
        let store = WriterSchemas()
        for (id, text) in schemas { store.store(.protobuf(try ProtoFile.parse(text)), for: id) }
        #expect(cases.count >= 145)
        for item in cases {
            let decoder = ProtobufDecoder(schema: item.features, writerSchemas: store)
            var row = [Float](repeating: .nan, count: item.features.names.count)
            let result = item.value.withUnsafeBytes { bytes in row.withUnsafeMutableBufferPointer { decoder.decode(bytes, into: $0.baseAddress!) } }
            try SchemaFixtures.check(item, result, row: row, decoder: decoder)
        }
    }

    @Test("the .proto text: nesting, scopes, options and comments; imports and duplicates refused naming why")
    func schemaText() throws {
        let file = try ProtoFile.parse(try #require(schemas[1]))
        #expect(file.isProto3 && file.package == "acme.payments")
        #expect(file.topLevel.map { file.messages[$0].fullName } == ["acme.payments.Payment", "acme.payments.Envelope", "acme.payments.Vector"])
        let features = try #require(file.message(at: [1, 0]))
        #expect(file.messages[features].fullName == "acme.payments.Envelope.Features")
        let payment = file.messages[file.topLevel[0]]
        #expect(payment.fields.first { $0.name == "where" }?.type == .message(file.messages.firstIndex { $0.fullName == "acme.payments.Payment.Where" }!))
        #expect(payment.fields.first { $0.name == "kind" }?.type == .enumeration)
        #expect(payment.fields.first { $0.name == "left" }?.inOneof == true)
        #expect(payment.fields.first { $0.name == "maybe" }?.label == .optional)
        for (text, fragment) in [("syntax = \"proto3\"; import \"other.proto\"; message A { int32 a = 1; }", "imports 'other.proto'"),
                                 ("syntax = \"proto3\"; message A { int32 a = 1; int32 b = 1; }", "used twice"),
                                 ("syntax = \"proto3\"; message A { Missing m = 1; }", "unknown type 'Missing'"),
                                 ("message A { int32 a = 0; }", "has number '0'")] {
            do {
                _ = try ProtoFile.parse(text)
                Issue.record("parsed: \(text)")
            } catch { #expect("\(error)".contains(fragment), "\(error)") }
        }
    }

    @Test("forged input ends as malformed-protobuf: deep groups, long varints, huge lengths")
    func forgedInputs() throws {
        let store = WriterSchemas()
        store.store(.protobuf(try ProtoFile.parse("syntax = \"proto3\"; message A { double x = 1; }")), for: 1)
        let decoder = ProtobufDecoder(schema: FeatureSchema(names: ["x"], defaults: [0]), writerSchemas: store)
        let frame = ConfluentFrame.header(schemaID: 1) + [0]
        let inputs: [[UInt8]] = [
            frame + Array(repeating: 0x13, count: 100),  // 100 nested start-group tags for field 2
            frame + [0x10] + Array(repeating: 0xFF, count: 11),  // a varint of 11 bytes
            frame + [0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F],  // a length of 4 GiB
            frame + [0x00, 0x01],  // field number 0
            ConfluentFrame.header(schemaID: 1) + [0x7F],  // an index count that cannot be
        ]
        for input in inputs {
            var row: [Float] = [0]
            let result = input.withUnsafeBytes { bytes in row.withUnsafeMutableBufferPointer { decoder.decode(bytes, into: $0.baseAddress!) } }
            guard case .failure(let failure) = result else { Issue.record("decoded \(input)"); continue }
            #expect(failure.code == .malformedProtobuf, "\(input): \(failure)")
        }
    }
}
