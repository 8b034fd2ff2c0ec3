import Foundation
import Testing
@testable import WeirCodec

/// A committed fixture file of framed values (`scripts/make-avro-fixtures.py`,
/// `scripts/make-protobuf-fixtures.py`): the writer schemas by id, and per case the value, the
/// model's features, and the row or dead-letter code Weir must give.
struct SchemaFixtures {
    struct Case {
        let name: String
        let value: [UInt8]
        let features: FeatureSchema
        let code: String?
        let row: [Float]
        let defaulted: [Bool]
        let id: Any?
    }

    let schemas: [UInt32: String]
    let cases: [Case]

    init(_ file: String) throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(file)")
        let root = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        schemas = Dictionary(uniqueKeysWithValues: try #require(root["schemas"] as? [String: String]).map { (UInt32($0.key)!, $0.value) })
        cases = try #require(root["cases"] as? [[String: Any]]).map { entry in
            let defaults = (entry["defaults"] as! [Any]).map { ($0 as? NSNumber).map { Float(truncating: $0) } }
            let names = entry["features"] as! [String]
            let categorical = Set(entry["categorical"] as? [String] ?? [])
            let vocabulary = entry["vocabulary"] as? [String] ?? []
            return Case(name: entry["name"] as! String, value: Array(Data(base64Encoded: entry["value"] as! String)!),
                        features: FeatureSchema(names: names, defaults: defaults, featuresPath: entry["features_path"] as! [String],
                                                categorical: names.map(categorical.contains),
                                                categories: categorical.isEmpty ? nil : VocabularyLookup(vocabulary)),
                        code: entry["code"] as? String, row: ((entry["row"] as? [NSNumber]) ?? []).map { Float($0.doubleValue) },
                        defaulted: (entry["defaulted"] as? [Bool]) ?? [], id: entry["id"].flatMap { $0 is NSNull ? nil : $0 })
        }
    }

    /// Checks one decode against its case: the row, the defaulted flags and the echoed id, or the code.
    static func check(_ item: Case, _ result: Result<EventID?, DecodeFailure>, row: [Float], decoder: any RowDecoder) throws {
        switch result {
        case .success(let id):
            #expect(item.code == nil, "\(item.name): expected \(item.code ?? "") but it decoded")
            #expect(row == item.row, "\(item.name)")
            #expect(item.features.names.indices.map(decoder.wasDefaulted) == item.defaulted, "\(item.name)")
            if let text = item.id as? String {
                let echoed = try #require(id, "\(item.name): no id")
                #expect(echoed.form == .text && String(decoding: item.value[echoed.start..<echoed.end], as: UTF8.self) == text, "\(item.name)")
            } else if let number = item.id as? NSNumber {
                #expect(id?.form == .integer && id?.integer == number.int64Value, "\(item.name)")
            } else {
                #expect(id == nil, "\(item.name)")
            }
        case .failure(let failure):
            #expect(failure.code.rawValue == item.code, "\(item.name): \(failure)")
            #expect(!failure.message.isEmpty)
        }
    }
}

/// A fixture's vocabulary as a category lookup: a category's place in it, -1 when absent (as a
/// model's symbol table answers).
final class VocabularyLookup: CategoryLookup {
    let places: [[UInt8]: Int64]
    init(_ vocabulary: [String]) {
        var places = [[UInt8]: Int64]()
        for (index, word) in vocabulary.enumerated() { places[Array(word.utf8)] = Int64(index) }
        self.places = places
    }
    func code(utf8 text: UnsafeRawBufferPointer) -> Int64 { places[Array(text)] ?? -1 }
}
