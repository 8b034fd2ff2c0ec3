import Foundation
import FuzzChecks
import Testing
import WeirTestSupport
@testable import WeirCodec

/// The committed Avro cases, with every schema parsed into a store the decoders read.
extension SchemaFixtures {
    func writerSchemas() throws -> WriterSchemas {
        let store = WriterSchemas()
        for (id, text) in schemas { store.store(.avro(try AvroType.parse(text)), for: id) }
        return store
    }
}

/// Decodes with a fresh decoder: the row and the outcome.
func avroDecode(_ value: [UInt8], _ features: FeatureSchema, _ schemas: WriterSchemas) -> (Result<EventID?, DecodeFailure>, [Float], AvroDecoder) {
    let decoder = AvroDecoder(schema: features, writerSchemas: schemas)
    var row = [Float](repeating: .nan, count: features.names.count)
    let result = value.withUnsafeBytes { bytes in row.withUnsafeMutableBufferPointer { decoder.decode(bytes, into: $0.baseAddress!) } }
    return (result, row, decoder)
}

/// The same decision in the oracle's terms.
func outcome(_ result: Result<EventID?, DecodeFailure>, _ row: [Float]) -> AvroOracle.Outcome {
    switch result {
    case .success: return .accepted(row.map(\.bitPattern))
    case .failure(let failure): return .rejected(failure.code)
    }
}

@Suite("Avro decoder", .timeLimit(.minutes(5)))
struct AvroDecoderTests {
    let fixtures: SchemaFixtures

    init() throws { fixtures = try SchemaFixtures("avro-cases.json") }

    @Test("values written by confluent-kafka's AvroSerializer and fastavro: the rows, ids and dead-letter codes the fixtures name")
    func fixtureCases() throws {
        let schemas = try fixtures.writerSchemas()
        #expect(fixtures.cases.count >= 20)
        for item in fixtures.cases {
            let (result, row, decoder) = avroDecode(item.value, item.features, schemas)
            try SchemaFixtures.check(item, result, row: row, decoder: decoder)
        }
    }

    @Test("every fixture gets the same decision and the same floats from libavro-c")
    func fixturesAgainstAvroC() throws {
        let schemas = try fixtures.writerSchemas()
        // libavro-c knows numbers only: categorical cases are checked against their fixture rows alone.
        for item in fixtures.cases where item.value.count >= 5 && item.value[0] == 0 && !item.features.categorical.contains(true) {
            let id = UInt32(item.value[1]) << 24 | UInt32(item.value[2]) << 16 | UInt32(item.value[3]) << 8 | UInt32(item.value[4])
            let text = try #require(fixtures.schemas[id])
            let oracle = try #require(AvroOracle(schemaText: text, features: item.features), "libavro-c parses schema \(id)")
            let (result, row, _) = avroDecode(item.value, item.features, schemas)
            #expect(outcome(result, row) == oracle.decide(item.value), "\(item.name)")
        }
    }

    @Test("a malformed value names the field where it broke")
    func malformedNamesTheField() throws {
        let schemas = try fixtures.writerSchemas()
        let item = try #require(fixtures.cases.first { $0.name == "truncated in a double" })
        let (result, _, _) = avroDecode(item.value, item.features, schemas)
        guard case .failure(let failure) = result else { Issue.record("decoded"); return }
        #expect(failure.code == .malformedAvro)
        #expect(failure.message.contains("field 'c'") || failure.message.contains("field 'b'"), "\(failure.message)")
        let badMagic = try #require(fixtures.cases.first { $0.name == "wrong magic byte" })
        if case .failure(let failure) = avroDecode(badMagic.value, badMagic.features, schemas).0 {
            #expect(failure.message.contains("magic byte"))
        }
    }

    @Test("an id the registry does not know, a schema that is not Avro, one never fetched")
    func schemaEntries() throws {
        let store = WriterSchemas()
        store.store(.unknown("the Schema Registry does not know it"), for: 7)
        store.store(.unusable("it is a PROTOBUF schema"), for: 8)
        let features = FeatureSchema(names: ["a"])
        for (id, code) in [(UInt32(7), DecodeFailure.Code.unknownSchema), (8, .malformedAvro), (9, .unknownSchema)] {
            let value = ConfluentFrame.header(schemaID: id) + [0]
            guard case .failure(let failure) = avroDecode(value, features, store).0 else { Issue.record("decoded id \(id)"); continue }
            #expect(failure.code == code, "id \(id): \(failure)")
        }
    }

    @Test("forged counts and deep recursion end quickly as malformed-avro")
    func forgedInputs() throws {
        let store = WriterSchemas()
        let nulls = try AvroType.parse(#"{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"array","items":"null"}},{"name":"x","type":"double"}]}"#)
        let list = try AvroType.parse(#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]},{"name":"x","type":"double"}]}"#)
        let doubles = try AvroType.parse(#"{"type":"record","name":"D","fields":[{"name":"a","type":{"type":"array","items":"double"}},{"name":"x","type":"double"}]}"#)
        store.store(.avro(nulls), for: 1)
        store.store(.avro(list), for: 2)
        store.store(.avro(doubles), for: 3)
        let features = FeatureSchema(names: ["x"])
        let writer = AvroRecordWriter()
        // 2^62 null items: free to forge, bounded at 65,536.
        writer.frame(schemaID: 1); writer.long(1 << 62); writer.long(0); writer.double(1)
        #expect(code(of: writer.array, features, store) == .malformedAvro)
        // A billion doubles claimed in 20 bytes.
        writer.reset(); writer.frame(schemaID: 3); writer.long(1_000_000_000); writer.double(1); writer.double(2)
        #expect(code(of: writer.array, features, store) == .malformedAvro)
        // A list 10,000 nodes deep: refused at depth 128, no stack overflow.
        writer.reset(); writer.frame(schemaID: 2)
        for _ in 0..<10_000 { writer.long(1) }
        writer.long(0)
        for _ in 0..<10_001 { writer.double(1) }
        #expect(code(of: writer.array, features, store) == .malformedAvro)
        // ... and 100 deep decodes.
        writer.reset(); writer.frame(schemaID: 2)
        for _ in 0..<100 { writer.long(1) }
        writer.long(0)
        for index in 0...100 { writer.double(Double(index)) }
        let (result, row, _) = avroDecode(writer.array, features, store)
        guard case .success = result else { Issue.record("\(result)"); return }
        #expect(row == [100])
    }

    private func code(of value: [UInt8], _ features: FeatureSchema, _ store: WriterSchemas) -> DecodeFailure.Code? {
        if case .failure(let failure) = avroDecode(value, features, store).0 { return failure.code }
        return nil
    }

    @Test("schema texts that cannot be used are refused naming the place")
    func schemaErrors() {
        let cases: [(String, String)] = [
            (#"{"type":"record","name":"R","fields":[{"name":"a","type":"Missing"}]}"#, "unknown type 'Missing'"),
            (#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"a","type":"int"}]}"#, "appears twice"),
            (#"{"type":"record","fields":[]}"#, "no \"name\""),
            (#"[["int"],"null"]"#, "a union directly inside a union"),
            ("{not json", "not valid JSON"),
        ]
        for (text, fragment) in cases {
            #expect(throws: AvroSchemaError.self) { try AvroType.parse(text) }
            do { _ = try AvroType.parse(text) } catch { #expect("\(error)".contains(fragment), "\(error)") }
        }
    }

    @Test("differential against libavro-c: random schemas and records, cut and corrupted, give the same decision and the same floats")
    func differentialRandom() throws {
        var random = SeededRandom()
        var tally = (accepted: 0, malformed: 0, other: 0)
        for round in 0..<300 {
            var generator = RandomAvro(random: random)
            let (type, text, features) = generator.schema(round: round)
            random = generator.random
            let store = WriterSchemas()
            store.store(.avro(type), for: 1)
            let oracle = try #require(AvroOracle(schemaText: text, features: features), "libavro-c parses \(text)")
            for _ in 0..<10 {
                let writer = AvroRecordWriter()
                writer.frame(schemaID: 1)
                var valueGenerator = RandomAvro(random: random)
                let value = valueGenerator.value(type, depth: 0)
                random = valueGenerator.random
                try writer.write(value, as: type)
                var variants = [writer.array]
                let body = writer.count - 5
                if body > 0 {
                    variants.append(Array(writer.array.prefix(5 + Int.random(in: 0..<body, using: &random))))
                    var flipped = writer.array
                    flipped[5 + Int.random(in: 0..<body, using: &random)] ^= UInt8.random(in: 1...255, using: &random)
                    variants.append(flipped)
                }
                for variant in variants {
                    let expected = oracle.decide(variant)
                    let (result, row, _) = avroDecode(variant, features, store)
                    let ours = outcome(result, row)
                    #expect(ours == expected, "seed \(random.seed) round \(round): \(text) value \(variant)")
                    if ours != expected { return }
                    switch ours {
                    case .accepted: tally.accepted += 1
                    case .rejected(.malformedAvro): tally.malformed += 1
                    default: tally.other += 1
                    }
                }
            }
        }
        print("Avro differential: \(tally.accepted) accepted, \(tally.malformed) malformed, \(tally.other) other dead letters, all as libavro-c")
        #expect(tally.accepted > 1000 && tally.malformed > 300 && tally.other > 50)
    }
}

/// Random Avro schemas (records of every type, nested records, unions, arrays, maps, enums,
/// fixed, decimals) and random values of them.
struct RandomAvro {
    var random: SeededRandom
    private var names = 0

    init(random: SeededRandom) { self.random = random }

    mutating func schema(round: Int) -> (AvroType, String, FeatureSchema) {
        names = 0
        let count = Int.random(in: 1...8, using: &random)
        var fields: [String] = []
        var featureNames: [String] = []
        for index in 0..<count {
            let name = "f\(index)"
            fields.append(#"{"name":"\#(name)","type":\#(typeText(depth: 0))}"#)
            if Bool.random(using: &random) { featureNames.append(name) }
        }
        if featureNames.isEmpty || Int.random(in: 0..<4, using: &random) == 0 { featureNames.append("absent") }
        let text = #"{"type":"record","name":"Root\#(round)","fields":[\#(fields.joined(separator: ","))]}"#
        let type = try! AvroType.parse(text)
        let defaults: [Float?] = featureNames.map { _ in Bool.random(using: &random) ? -1 : nil }
        return (type, text, FeatureSchema(names: featureNames, defaults: defaults))
    }

    private mutating func typeText(depth: Int) -> String {
        let roll = Int.random(in: 0..<(depth > 2 ? 9 : 16), using: &random)
        switch roll {
        case 0: return #""int""#
        case 1: return #""long""#
        case 2: return #""float""#
        case 3: return #""double""#
        case 4: return #""boolean""#
        case 5: return #""string""#
        case 6: return #"["null","double"]"#
        case 7: return #"{"type":"bytes","logicalType":"decimal","precision":10,"scale":\#(Int.random(in: 0...4, using: &random))}"#
        case 8: return #"{"type":"long","logicalType":"timestamp-millis"}"#
        case 9:
            names += 1
            return #"{"type":"record","name":"N\#(names)","fields":[{"name":"a","type":\#(typeText(depth: depth + 1))},{"name":"b","type":\#(typeText(depth: depth + 1))}]}"#
        case 10: return #"{"type":"array","items":\#(typeText(depth: depth + 1))}"#
        case 11: return #"{"type":"map","values":\#(typeText(depth: depth + 1))}"#
        case 12:
            names += 1
            return #"{"type":"enum","name":"E\#(names)","symbols":["A","B","C"]}"#
        case 13:
            names += 1
            return #"{"type":"fixed","name":"X\#(names)","size":\#(Int.random(in: 1...6, using: &random))}"#
        case 14:
            // A branch may not be another union, nor repeat a type of the union.
            var inner = typeText(depth: depth + 1)
            if inner.hasPrefix("[") || inner == #""string""# { inner = #""long""# }
            return #"["null","string",\#(inner)]"#
        default: return #""bytes""#
        }
    }

    mutating func value(_ type: AvroType, depth: Int) -> AvroValue {
        switch type.resolved {
        case .null: return .null
        case .boolean: return .boolean(Bool.random(using: &random))
        case .int: return .int(Int32.random(in: Int32.min...Int32.max, using: &random) >> Int32.random(in: 0...31, using: &random))
        case .long: return .long(Int64.random(in: Int64.min...Int64.max, using: &random) >> Int64.random(in: 0...63, using: &random))
        case .float: return .float(special() ?? Float(Double.random(in: -1e6...1e6, using: &random)))
        case .double:
            if let special = special() { return .double(Double(special)) }
            return .double(Int.random(in: 0..<10, using: &random) == 0 ? 1e300 : Double.random(in: -1e12...1e12, using: &random))
        case .bytes: return .bytes((0..<Int.random(in: 0...9, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) })
        case .string: return .string(String((0..<Int.random(in: 0...6, using: &random)).map { _ in "aé€x".randomElement(using: &random)! }))
        case .record(let record): return .record(record.fields.map { value($0.type, depth: depth + 1) })
        case .enumeration(_, let symbols): return .enumeration(Int.random(in: 0..<symbols.count, using: &random))
        case .array(let items): return .array((0..<Int.random(in: 0...3, using: &random)).map { _ in value(items, depth: depth + 1) })
        case .map(let values): return .map((0..<Int.random(in: 0...3, using: &random)).map { ("k\($0)", value(values, depth: depth + 1)) })
        case .union(let branches):
            let index = Int.random(in: 0..<branches.count, using: &random)
            return .union(index, value(branches[index], depth: depth + 1))
        case .fixed(_, let size, _): return .fixed((0..<size).map { _ in UInt8.random(in: 0...255, using: &random) })
        case .recursive: return .null  // not generated: `resolved` never returns it
        }
    }

    private mutating func special() -> Float? {
        switch Int.random(in: 0..<20, using: &random) {
        case 0: return .nan
        case 1: return .infinity
        case 2: return -0.0
        default: return nil
        }
    }
}

@Suite("Avro schemas")
struct AvroSchemaLifetimeTests {
    @Test("a parsed schema is freed with its last reference: recursive types hold no cycle")
    func schemasAreFreed() throws {
        weak var recursive: AvroRecord?
        weak var plain: AvroRecord?
        do {
            let list = try AvroType.parse(#"{"type":"record","name":"N","fields":[{"name":"v","type":"double"},{"name":"next","type":["null","N"]}]}"#)
            let nested = try AvroType.parse(#"{"type":"record","name":"A","fields":[{"name":"b","type":{"type":"record","name":"B","fields":[{"name":"a","type":["null","A"]}]}}]}"#)
            if case .record(let record) = list { recursive = record }
            if case .record(let record) = nested { plain = record }
            #expect(recursive != nil && plain != nil)
        }
        #expect(recursive == nil, "the recursive record N leaked")
        #expect(plain == nil, "the record A, referenced from its nested record B, leaked")
    }
}
