import Foundation
import WeirModel

/// A model of the tabular zoo and onnxruntime's outputs, as scripts/make-tabular-models.py wrote
/// them: read by WeirModel's tests and by `weir-bench tabular`.
public struct TabularFixture: Sendable {
    public struct Tensor: Decodable, Sendable {
        public let name: String
        public let type: String
        public let shape: [Int]
        public let file: String
        /// A map input's keys, one per column.
        public let columns: [String]?
    }
    public struct Meta: Decodable, Sendable {
        public let name: String
        public let model: String
        public let task: String
        public let family: String
        public let notes: String
        public let rows: Int
        public let inputs: [Tensor]
        public let outputs: [Tensor]
        public let operators: [String]
    }

    public static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("WeirModelTests/Fixtures/tabular")

    /// Every model of the zoo, by name.
    public static var all: [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return files.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
    }

    public let meta: Meta
    public var modelURL: URL { Self.directory.appendingPathComponent(meta.model) }

    public init(_ name: String) throws {
        meta = try JSONDecoder().decode(Meta.self, from: Data(contentsOf: Self.directory.appendingPathComponent("\(name).json")))
    }

    /// A stored tensor as a `WeirModel.Tensor`.
    public static func load(_ spec: Tensor) throws -> WeirModel.Tensor {
        let url = directory.appendingPathComponent(spec.file)
        switch spec.type {
        case "float":
            let data = try Data(contentsOf: url)
            return WeirModel.Tensor(shape: spec.shape, floats: data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) })
        case "int64":
            let data = try Data(contentsOf: url)
            return WeirModel.Tensor(shape: spec.shape, int64s: data.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) })
        default:
            var lines = try String(contentsOf: url, encoding: .utf8).components(separatedBy: "\n")
            if lines.last == "" { lines.removeLast() }
            return WeirModel.Tensor(shape: spec.shape, strings: lines)
        }
    }

    public func inputs() throws -> [String: WeirModel.Tensor] {
        Dictionary(uniqueKeysWithValues: try meta.inputs.map { ($0.name, try Self.load($0)) })
    }

    /// How Weir's outputs compare with onnxruntime's.
    public struct Agreement: Sendable {
        /// Rows whose every label (int64 or string output) equals onnxruntime's, of all rows.
        public var labelRows = 0, rows = 0
        /// The largest difference of a float output, relative to max(1, |onnxruntime's value|).
        public var worstScoreDifference: Float = 0
        public var worstOutput = ""
        /// Where: the row and column of the worst float difference, and both values.
        public var worstAt = (row: 0, column: 0, weir: Float(0), onnxruntime: Float(0))
        public var labelShare: Double { rows == 0 ? 1 : Double(labelRows) / Double(rows) }
    }

    public func compare(_ outputs: [String: WeirModel.Tensor]) throws -> Agreement {
        var agreement = Agreement(rows: meta.rows)
        var rowAgrees = [Bool](repeating: true, count: meta.rows)
        var sawLabels = false
        for spec in meta.outputs {
            let expected = try Self.load(spec)
            guard let actual = outputs[spec.name] else { throw ModelError("output '\(spec.name)' missing") }
            guard actual.count == expected.count else {
                throw ModelError("output '\(spec.name)': \(actual.count) values, onnxruntime gave \(expected.count)")
            }
            let perRow = max(1, expected.count / meta.rows)
            switch (expected.storage, actual.storage) {
            case (.float(let want), .float(let got)):
                for i in 0..<want.count {
                    let difference = abs(want[i] - got[i]) / max(1, abs(want[i]))
                    if !(difference <= agreement.worstScoreDifference) && !(want[i].isNaN && got[i].isNaN) {
                        agreement.worstScoreDifference = difference.isNaN ? .infinity : difference
                        agreement.worstOutput = spec.name
                        agreement.worstAt = (i / perRow, i % perRow, got[i], want[i])
                    }
                }
            case (.int64(let want), .int64(let got)):
                sawLabels = true
                for i in 0..<want.count where want[i] != got[i] { rowAgrees[i / perRow] = false }
            case (.string(let want), .string(let got)):
                sawLabels = true
                for i in 0..<want.count where want[i] != got[i] { rowAgrees[i / perRow] = false }
            default:
                throw ModelError("output '\(spec.name)': Weir gave another element type than onnxruntime (\(spec.type))")
            }
        }
        agreement.labelRows = sawLabels ? rowAgrees.filter { $0 }.count : meta.rows
        return agreement
    }
}

extension TabularFixture {
    /// The held-out rows as a training CSV for `weir model package`: one column per feature (an
    /// input's name, or `name_j` for column j of a wider input), categories as text, and a `label`
    /// column from onnxruntime's label output for classifiers.
    public func writeTrainingCSV(to url: URL) throws {
        var header = [String](), columns = [[String]]()
        for spec in meta.inputs {
            let tensor = try Self.load(spec)
            let width = spec.shape.count > 1 ? spec.shape[1] : 1
            for j in 0..<width {
                header.append(spec.columns?[j] ?? (width == 1 ? spec.name : "\(spec.name)_\(j)"))
                columns.append((0..<meta.rows).map { row in
                    switch tensor.storage {
                    case .float(let v): return v[row * width + j].isNaN ? "" : "\(v[row * width + j])"
                    case .int64(let v): return "\(v[row * width + j])"
                    case .string(let v): return v[row * width + j]
                    }
                })
            }
        }
        if meta.task == "classification", let labels = meta.outputs.first(where: { $0.type != "float" }) {
            header.append("label")
            let tensor = try Self.load(labels)
            switch tensor.storage {
            case .int64(let v): columns.append(v.map { "\($0)" })
            case .string(let v): columns.append(v)
            case .float(let v): columns.append(v.map { "\($0)" })
            }
        }
        var text = header.joined(separator: ",") + "\n"
        for row in 0..<meta.rows { text += columns.map { $0[row] }.joined(separator: ",") + "\n" }
        try text.write(to: url, atomically: true, encoding: .utf8)
    }
}
