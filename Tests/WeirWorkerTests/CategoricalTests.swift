import CAllocationCounter
import Foundation
import Testing
import WeirCodec
import WeirControl
import WeirDrift
import WeirKafka
import WeirModel
import WeirTestSupport
import WeirWorker

/// A scikit-learn ColumnTransformer (20 scaled numbers, 6 one-hot categories) → gradient-boosted
/// trees, exported by skl2onnx with one input per column: packaged from a training CSV with text
/// categories, then served from JSON events that carry the categories as strings.
@Suite(.serialized, .timeLimit(.minutes(3))) struct CategoricalTests {
    static let categorical = ["merchant_category", "country", "channel", "device", "card", "segment"]
    let fixture: TabularFixture
    /// The held-out rows by column name (numbers as text), and onnxruntime's labels.
    let columns: [String: [String]]
    let labels: [Int64]

    init() throws {
        fixture = try TabularFixture("ct_onehot_gbt")
        var columns = [String: [String]]()
        for (name, tensor) in try fixture.inputs() {
            switch tensor.storage {
            case .float(let values): columns[name] = values.map { "\($0)" }
            case .string(let values): columns[name] = values
            case .int64(let values): columns[name] = values.map { "\($0)" }
            }
        }
        self.columns = columns
        labels = try TabularFixture.load(fixture.meta.outputs.first { $0.name == "label" }!).int64s!
    }

    /// A training CSV of the held-out rows (features in an order unlike the model's, the label last),
    /// packaged into a fresh bundle.
    func packagedBundle(missing: MissingValuePolicy = .mean) throws -> (URL, BundleManifest) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weir-categorical-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let names = columns.keys.sorted()
        var csv = (names + ["label"]).joined(separator: ",") + "\n"
        for row in 0..<labels.count {
            csv += (names.map { columns[$0]![row] } + [String(labels[row])]).joined(separator: ",") + "\n"
        }
        let train = directory.appendingPathComponent("train.csv")
        try csv.write(to: train, atomically: true, encoding: .utf8)
        let out = directory.appendingPathComponent("bundle")
        let manifest = try BundlePackager.package(onnx: fixture.modelURL, train: train, name: "payments", version: "1.0.0", out: out,
                                                  missing: missing, driftWindowEvents: 200)
        return (out, manifest)
    }

    /// One event as JSON: numbers as numbers, categories as strings.
    func event(_ row: Int, overriding overrides: [String: String] = [:], dropping dropped: Set<String> = []) -> [UInt8] {
        var members = ["\"id\":\"evt-\(row)\""]
        for name in columns.keys.sorted() where !dropped.contains(name) {
            let value = overrides[name] ?? (Self.categorical.contains(name) ? "\"\(columns[name]![row])\"" : columns[name]![row])
            members.append("\"\(name)\":\(value)")
        }
        return Array(("{" + members.joined(separator: ",") + "}").utf8)
    }

    @Test("weir model package maps every column to its ONNX input by name, types categories as strings and profiles their shares")
    func packagesCategories() throws {
        let (out, manifest) = try packagedBundle()
        #expect(manifest.inputs.count == 26)
        #expect(manifest.inputs.map(\.name) == (0..<20).map { "n\($0)" } + Self.categorical)
        #expect(manifest.inputs.allSatisfy { $0.input == $0.name && $0.column == 0 })
        #expect(manifest.inputs.filter(\.isCategorical).map(\.name) == Self.categorical)
        // --missing mean: a category defaults to its most frequent value.
        let countries = columns["country"]!
        let mostFrequent = Dictionary(grouping: countries, by: { $0 }).max { $0.value.count < $1.value.count || ($0.value.count == $1.value.count && $0.key > $1.key) }!.key
        #expect(manifest.inputs.first { $0.name == "country" }?.defaultCategory == mostFrequent)
        let bundle = try ModelBundle(directory: out)
        let country = try #require(bundle.reference?.features.first { $0.name == "country" })
        #expect(Set(country.categories ?? []) == Set(countries))
        let shares = (country.categories ?? []).indices.map { country.probabilities[2 * $0 + 1] }
        #expect(abs(shares.reduce(0, +) - 1) < 1e-9)
        #expect(bundle.reference?.features.first { $0.name == "n0" }?.isCategorical == false)
        // The manifest round-trips: a category default is written as text.
        let text = try String(contentsOf: out.appendingPathComponent("manifest.json"), encoding: .utf8)
        #expect(text.contains("\"default\" : \"\(mostFrequent)\""))
        #expect(text.contains("\"type\" : \"string\""))
    }

    @Test("A manifest whose types disagree with the model is refused, naming the feature and the type to use")
    func refusesWrongTypes() throws {
        let (out, manifest) = try packagedBundle()
        var wrong = manifest
        wrong.inputs[20].type = "float"
        wrong.inputs[20].defaultCategory = nil
        try BundlePackager.write(wrong, to: out)
        #expect {
            _ = try ModelBundle(directory: out)
        } throws: { error in
            "\(error)".contains("input 'merchant_category' is float") && "\(error)".contains("set its type to string")
        }
        var badDefault = manifest
        badDefault.inputs[0].defaultCategory = "web"
        badDefault.inputs[0].default = nil
        try BundlePackager.write(badDefault, to: out)
        #expect(throws: BundleError.self) { _ = try ModelBundle(directory: out) }
    }

    @Test("String events are served end to end: labels equal onnxruntime's; a number for a category and an unknown category are handled")
    func servesStringEvents() throws {
        let (out, _) = try packagedBundle()
        let bundle = try ModelBundle(directory: out)
        let cluster = try makeCluster()
        defer { cluster.stopCheckingClients() }
        let count = 300
        var events = (0..<count).map { (key: Optional(Array("k\($0)".utf8)), value: Optional(event($0)), headers: [(String, String)]()) }
        // A number where a category belongs: dead-lettered, naming the field.
        events.append((key: nil, value: event(0, overriding: ["country": "7"]).replacing(Array("evt-0".utf8), with: Array("bad-type".utf8)), headers: []))
        // A missing category takes the bundle's default.
        events.append((key: nil, value: event(1, dropping: ["channel"]).replacing(Array("evt-1".utf8), with: Array("no-channel".utf8)), headers: []))
        try produce(cluster, events)
        var settings = testSettings(cluster)
        settings.model = out.path
        let running = try RunningWorker(settings: settings, bundle: bundle)
        try waitFor("\(count + 2) answers") { running.answered >= count + 2 }
        try running.stop()

        var labelByID = [String: Int]()
        for record in try readTopic(cluster, "predictions") {
            let object = try jsonObject(record)
            if let id = object["id"] as? String, let label = object["label"] as? Int { labelByID[id] = label }
        }
        let agreeing = (0..<count).filter { labelByID["evt-\($0)"] == Int(labels[$0]) }.count
        #expect(agreeing == count, "labels equal onnxruntime's on \(agreeing) of \(count) events")
        #expect(labelByID["no-channel"] != nil)
        let letters = try readTopic(cluster, "dead-letters")
        #expect(letters.count == 1)
        #expect(letters.first.flatMap { header($0, "weir-error") } == "not-a-number")
        #expect(letters.first.flatMap { header($0, "weir-error-message") }?.contains("'country'") == true)
    }

    @Test("The JSON decoder writes a category's symbol without allocating per event; unknown categories read as unknown")
    func decodesCategories() throws {
        let (out, _) = try packagedBundle()
        let bundle = try ModelBundle(directory: out)
        let symbols = bundle.model.symbols
        let names = bundle.manifest.inputs.map(\.name)
        let decoder = EventDecoder(schema: FeatureSchema(names: names, categorical: bundle.manifest.inputs.map(\.isCategorical),
                                                         categories: ModelCategories(symbols)))
        var row = [Float](repeating: 0, count: names.count)
        func decode(_ payload: [UInt8]) -> Result<EventID?, DecodeFailure> {
            payload.withUnsafeBytes { bytes in row.withUnsafeMutableBufferPointer { decoder.decode(bytes, into: $0.baseAddress!) } }
        }
        guard case .success = decode(event(3, overriding: ["channel": "\"w\\u0065b\"", "country": "\"Atlantis\""])) else {
            Issue.record("decode failed")
            return
        }
        #expect(row[names.firstIndex(of: "channel")!] == Float(symbols.symbol(of: "web")))
        #expect(row[names.firstIndex(of: "country")!] == Float(SymbolTable.unknown))
        #expect(row[names.firstIndex(of: "n0")!] == Float(columns["n0"]![3]))
        guard case .failure(let failure) = decode(event(3, overriding: ["device": "true"])) else {
            Issue.record("a boolean category was accepted")
            return
        }
        #expect(failure.code == .notANumber && failure.message.contains("'device'") && failure.message.contains("category"))
    }

    @Test("Warm decoders allocate nothing per event: JSON and Avro categories (known, unknown, escaped) become symbols without a malloc")
    func categoriesAllocateNothing() throws {
        let (out, _) = try packagedBundle()
        let bundle = try ModelBundle(directory: out)
        let names = bundle.manifest.inputs.map(\.name)
        let schema = FeatureSchema(names: names, categorical: bundle.manifest.inputs.map(\.isCategorical),
                                   categories: ModelCategories(bundle.categorySymbols))
        let events = (0..<200).map { row in
            row % 3 == 0 ? event(row, overriding: ["country": "\"Atlan\\u0074is\""]) : event(row)
        }
        let json = EventDecoder(schema: schema)
        // Avro: the same rows as a record of doubles and strings, and one enum.
        let fields = names.map { name -> String in
            Self.categorical.contains(name) ? #"{"name":"\#(name)","type":"string"}"# : #"{"name":"\#(name)","type":"double"}"#
        }
        let text = #"{"type":"record","name":"Payment","fields":["# + fields.joined(separator: ",")
            + #",{"name":"tier","type":{"type":"enum","name":"Tier","symbols":["web","app"]}}]}"#
        let writers = WriterSchemas()
        writers.store(.avro(try AvroType.parse(text)), for: 7)
        let avro = AvroDecoder(schema: schema, writerSchemas: writers)
        let avroEvents = (0..<200).map { row -> [UInt8] in
            let writer = AvroRecordWriter()
            writer.frame(schemaID: 7)
            for name in names {
                if Self.categorical.contains(name) { writer.string(columns[name]![row]) } else { writer.double(Double(columns[name]![row])!) }
            }
            writer.long(Int64(row % 2))
            return writer.array
        }
        // The payloads in one buffer, walked by offset: iterating an array of arrays in a debug
        // build boxes each element, which would count as the decoder's.
        let row = UnsafeMutablePointer<Float>.allocate(capacity: names.count)
        defer { row.deallocate() }
        /// Decodes every payload; only the decoding runs while `counted` allocations are counted.
        func decodeAll(_ decoder: any RowDecoder, _ payloads: [[UInt8]], counted: Bool = false) -> (decoded: Int, allocations: Int) {
            let bytes = payloads.flatMap { $0 }
            var ends = [Int](), end = 0
            for payload in payloads { end += payload.count; ends.append(end) }
            var decoded = 0, start = 0, index = 0, allocations = 0
            bytes.withUnsafeBytes { all in
                ends.withUnsafeBufferPointer { stops in
                    if counted { weir_allocation_counting(1) }
                    defer {
                        allocations = weir_allocations()
                        weir_allocation_counting(0)
                    }
                    while index < stops.count {
                        let payload = UnsafeRawBufferPointer(rebasing: all[start..<stops[index]])
                        if case .success = decoder.decode(payload, into: row) { decoded += 1 }
                        start = stops[index]
                        index += 1
                    }
                }
            }
            return (decoded, counted ? allocations : 0)
        }
        for (label, decoder, payloads) in [("JSON", json as any RowDecoder, events), ("Avro", avro as any RowDecoder, avroEvents)] {
            #expect(decodeAll(decoder, payloads).decoded == payloads.count, "\(label): every event decodes")  // warm-up: plans, layouts
            let (decoded, allocations) = decodeAll(decoder, payloads, counted: true)
            let frames = (0..<8).map { String(cString: weir_first_allocation_frame(Int32($0))) }.joined(separator: " < ")
            #expect(decoded == payloads.count)
            #expect(allocations == 0, "\(label): \(allocations) mallocs for \(payloads.count) warm decodes: \(frames)")
        }
    }

    @Test("Categorical drift: shares unchanged are not flagged; shifted shares and unseen categories are, with chi-square, JS and the unseen share")
    func categoricalDrift() throws {
        let (out, _) = try packagedBundle()
        let bundle = try ModelBundle(directory: out)
        let reference = try #require(bundle.reference)
        let symbols = bundle.categorySymbols
        let index = reference.features.firstIndex { $0.name == "channel" }!
        let channels = columns["channel"]!
        func close(_ values: [String]) -> ColumnDrift {
            let window = DriftWindow(reference: reference, maxEvents: 10_000, maxMs: nil)
            for value in values { window.addFeature(index, Float(symbols.symbol(of: value)), missing: false) }
            return window.close().features[index]
        }
        let same = close(Array(channels.prefix(600)))
        #expect(same.isCategorical && same.drift == false && (same.chiSquareP ?? 0) > 0.01 && same.unseenShare == 0, "\(same)")
        let shifted = close(Array(repeating: "web", count: 450) + Array(repeating: "pos", count: 150))
        #expect(shifted.drift && (shifted.chiSquareP ?? 1) < 1e-5 && shifted.js > 0.2)
        let unseen = close(Array(channels.prefix(400)) + Array(repeating: "carrier-pigeon", count: 200))
        #expect(unseen.drift && abs((unseen.unseenShare ?? 0) - 1.0 / 3.0) < 1e-9, "\(unseen)")
        // A training category the model does not know (the held-out rows have some) is not unseen.
        let knownToTraining = close(Array(channels.prefix(600)))
        #expect(knownToTraining.unseenShare == 0)
    }
}

private extension Array where Element == UInt8 {
    func replacing(_ old: [UInt8], with new: [UInt8]) -> [UInt8] {
        guard let range = self.firstRange(of: old) else { return self }
        var copy = self
        copy.replaceSubrange(range, with: new)
        return copy
    }
}

/// Every model of the tabular zoo packages into a bundle that loads, from a CSV of its held-out rows
/// (`preprocessing_ops` is a graph of operators with 15 unrelated outputs, not a model: nothing to predict).
@Suite(.timeLimit(.minutes(5))) struct ZooPackagingTests {
    @Test(arguments: TabularFixture.all.filter { $0 != "preprocessing_ops" })
    func packagesAndLoads(_ name: String) throws {
        let fixture = try TabularFixture(name)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weir-zoo-\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let train = directory.appendingPathComponent("train.csv")
        try fixture.writeTrainingCSV(to: train)
        let manifest = try BundlePackager.package(onnx: fixture.modelURL, train: train, name: name.replacingOccurrences(of: "_", with: "-"),
                                                  version: "1.0.0", out: directory.appendingPathComponent("bundle"), missing: .mean)
        #expect(manifest.outputs.task == fixture.meta.task)
        let bundle = try ModelBundle(directory: directory.appendingPathComponent("bundle"))
        #expect(bundle.manifest.inputs.count == bundle.model.inputWidth)
        #expect(bundle.reference?.features.count == bundle.manifest.inputs.count)
    }
}
