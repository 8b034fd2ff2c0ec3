import Foundation
import Testing
import WeirCodec
import WeirRegistry
@testable import WeirWorker

/// Schemas that use other schemas through the registry's references (an Avro record type defined
/// under its own subject, a Protobuf import): fetched by subject and version, each before the
/// schemas that use it, over the registry's REST API.
@Suite(.timeLimit(.minutes(1))) struct SchemaReferencesTests {
    func decode(_ value: [UInt8], _ decoder: any RowDecoder) -> (Result<EventID?, DecodeFailure>, [Float]) {
        var row = [Float](repeating: .nan, count: decoder.schema.names.count)
        let result = value.withUnsafeBytes { bytes in row.withUnsafeMutableBufferPointer { decoder.decode(bytes, into: $0.baseAddress!) } }
        return (result, row)
    }

    @Test func avroRecordTypesFromReferencedSubjectsTwoLevelsDeep() throws {
        let registry = try SchemaRegistryServer()
        defer { registry.stop() }
        registry.register(subject: "point", schema: #"{"type":"record","name":"Point","namespace":"acme","fields":[{"name":"lat","type":"double"},{"name":"lon","type":"double"}]}"#)
        registry.register(subject: "address", schema: #"{"type":"record","name":"Address","namespace":"acme","fields":[{"name":"street","type":"string"},{"name":"at","type":"acme.Point"}]}"#,
                          references: [SchemaReference(name: "acme.Point", subject: "point", version: 1)])
        let customer = #"{"type":"record","name":"Customer","namespace":"acme","fields":[{"name":"id","type":"long"},{"name":"home","type":"Address"},{"name":"score","type":"double"}]}"#
        let id = registry.register(subject: "customers-value", schema: customer,
                                   references: [SchemaReference(name: "acme.Address", subject: "address", version: -1)])
        let client = SchemaRegistryClient(RegistryConfiguration(url: registry.url))
        let entry = try SchemaFetcher.entry(for: id, client: client, format: .avro).get()
        guard case .avro(let type) = entry else { Issue.record("\(entry)"); return }
        let store = WriterSchemas()
        store.store(.avro(type), for: id)
        let writer = AvroRecordWriter()
        writer.frame(schemaID: id)
        writer.long(42)
        writer.string("Main St")
        writer.double(52.5)
        writer.double(13.25)
        writer.double(0.75)
        let top = AvroDecoder(schema: FeatureSchema(names: ["score"]), writerSchemas: store)
        #expect(decode(writer.array, top).1 == [0.75])
        let nested = AvroDecoder(schema: FeatureSchema(names: ["lat", "lon"], featuresPath: ["home", "at"]), writerSchemas: store)
        let (result, row) = decode(writer.array, nested)
        #expect(row == [52.5, 13.25])
        #expect((try? result.get())??.integer == 42)
    }

    @Test func protobufImportsFromReferencedSubjects() throws {
        let registry = try SchemaRegistryServer()
        defer { registry.stop() }
        registry.register(subject: "acme/common.proto", schema: "syntax = \"proto3\";\npackage acme.common;\nmessage Money { double amount = 1; string currency = 2; }\n",
                          schemaType: "PROTOBUF")
        let order = "syntax = \"proto3\";\npackage acme.orders;\nimport \"acme/common.proto\";\nimport \"google/protobuf/wrappers.proto\";\n"
            + "message Order { acme.common.Money price = 1; double qty = 2; google.protobuf.DoubleValue discount = 3; }\n"
        let id = registry.register(subject: "orders-value", schema: order, schemaType: "PROTOBUF",
                                   references: [SchemaReference(name: "acme/common.proto", subject: "acme/common.proto", version: 1)])
        let client = SchemaRegistryClient(RegistryConfiguration(url: registry.url))
        let entry = try SchemaFetcher.entry(for: id, client: client, format: .protobuf).get()
        guard case .protobuf(let file) = entry else { Issue.record("\(entry)"); return }
        #expect(file.topLevel.map { file.messages[$0].fullName } == ["acme.orders.Order"], "imported messages are not the file's own")
        let store = WriterSchemas()
        store.store(entry, for: id)
        // Order { price: Money { amount: 9.5 }, qty: 3, discount: DoubleValue { value: 0.5 } }
        var value = ConfluentFrame.header(schemaID: id) + [0]
        value += [0x0A, 9, 0x09] + withUnsafeBytes(of: (9.5).bitPattern.littleEndian) { Array($0) }
        value += [0x11] + withUnsafeBytes(of: (3.0).bitPattern.littleEndian) { Array($0) }
        value += [0x1A, 9, 0x09] + withUnsafeBytes(of: (0.5).bitPattern.littleEndian) { Array($0) }
        let top = ProtobufDecoder(schema: FeatureSchema(names: ["qty", "discount"]), writerSchemas: store)
        #expect(decode(value, top).1 == [3, 0.5])
        let price = ProtobufDecoder(schema: FeatureSchema(names: ["amount"]), writerSchemas: store)
        let nested = ProtobufDecoder(schema: FeatureSchema(names: ["amount"], featuresPath: ["price"]), writerSchemas: store)
        #expect(decode(value, nested).1 == [9.5])
        guard case .failure(let failure) = decode(value, price).0 else { Issue.record("amount is not a top-level field"); return }
        #expect(failure.code == .missingFeature)
        // A schema whose import the registry does not reference is unusable, naming the file.
        let orphan = registry.register(subject: "orphans-value", schema: "syntax = \"proto3\";\nimport \"elsewhere.proto\";\nmessage A { double a = 1; }\n",
                                       schemaType: "PROTOBUF")
        guard case .unusable(let why) = try SchemaFetcher.entry(for: orphan, client: client, format: .protobuf).get() else {
            Issue.record("an unresolved import was usable"); return
        }
        #expect(why.contains("elsewhere.proto"), "\(why)")
    }
}
