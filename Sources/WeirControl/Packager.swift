import Foundation
import WeirDrift
import WeirModel

/// A training CSV: the header names the columns; every cell of a feature column is a number.
public struct TrainingTable: Sendable {
    public let columns: [String]
    /// Row-major cells as text (parsed on demand: a label column may hold names).
    public let rows: [[String]]

    /// Reads a CSV with a header line. Cells may be double-quoted. Errors name the line.
    public init(contentsOf url: URL) throws {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw BundleError("\(url.path): cannot read the training CSV")
        }
        var lines = text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
            .map { String($0).trimmingCharacters(in: CharacterSet(charactersIn: "\r")) }
            .filter { !$0.isEmpty }
        guard !lines.isEmpty else { throw BundleError("\(url.path): empty file; the first line must name the columns") }
        let header = Self.cells(of: lines.removeFirst())
        if let duplicate = Dictionary(grouping: header, by: { $0 }).first(where: { $0.value.count > 1 })?.key {
            throw BundleError("\(url.path): column '\(duplicate)' appears twice in the header")
        }
        var rows = [[String]]()
        rows.reserveCapacity(lines.count)
        for (index, line) in lines.enumerated() {
            let cells = Self.cells(of: line)
            guard cells.count == header.count else {
                throw BundleError("\(url.path): line \(index + 2) has \(cells.count) cells; the header has \(header.count)")
            }
            rows.append(cells)
        }
        columns = header
        self.rows = rows
    }

    static func cells(of line: String) -> [String] {
        var cells = [String]()
        var current = ""
        var quoted = false
        var iterator = line.makeIterator()
        while let character = iterator.next() {
            if quoted {
                if character == "\"" { quoted = false } else { current.append(character) }
            } else if character == "\"" {
                quoted = true
            } else if character == "," {
                cells.append(current.trimmingCharacters(in: .whitespaces))
                current = ""
            } else {
                current.append(character)
            }
        }
        cells.append(current.trimmingCharacters(in: .whitespaces))
        return cells
    }

    /// The numbers of `column`, empty cells as missing; fails on the first other non-number.
    public func optionalNumbers(of column: Int, source: String) throws -> [Double?] {
        try rows.enumerated().map { index, row in
            if row[column].isEmpty { return nil }
            guard let value = Double(row[column]) else {
                throw BundleError("\(source): line \(index + 2), column '\(columns[column])': '\(row[column])' is not a number")
            }
            return value
        }
    }
}

/// One feature column of the training CSV: numbers (empty cells missing) or categories.
enum TrainingColumn {
    case numbers([Double?])
    case categories([String?])

    var count: Int {
        switch self {
        case .numbers(let v): return v.count
        case .categories(let v): return v.count
        }
    }
}

/// How `weir model package` fills a feature an event lacks.
public enum MissingValuePolicy: String, Sendable, CaseIterable {
    /// Reject the event (dead letter `missing-feature`).
    case reject
    /// Use the training mean, or zero.
    case mean, zero
}

/// Builds model bundles (`weir model package`).
public enum BundlePackager {
    /// Writes `out/manifest.json`, `out/model.onnx` and `out/reference.json` (the drift baseline,
    /// with thresholds calibrated for windows of `driftWindowEvents`) and returns the manifest.
    /// The CSV header names the features in the model's input order; `labelColumn` (if present) is
    /// not a feature and gives classification labels. `task` nil: decided from the model's outputs.
    /// `precision` other than `auto` is recorded in the manifest (and profiles the outputs at it).
    /// A model with several inputs reads its features from the CSV columns named like its inputs
    /// when every input is one column wide (scikit-learn's DataFrame export), else in CSV order.
    /// String inputs are categories: their cells are text, profiled by category shares.
    public static func package(onnx: URL, train: URL, name: String, version: String, out: URL,
                               labelColumn: String = "label", task: String? = nil,
                               missing: MissingValuePolicy = .reject, driftWindowEvents: Int = 1000,
                               precision: ModelPrecision = .auto, ignoreZipMap: Bool = false) throws -> BundleManifest {
        if name.isEmpty || name.contains(where: { $0.isWhitespace || $0 == "/" }) {
            throw BundleError("--name '\(name)' must be non-empty, without spaces or slashes")
        }
        guard isSemanticVersion(version) else {
            throw BundleError("--version '\(version)' is not a semantic version (like 1.3.0)")
        }
        guard let modelBytes = try? Data(contentsOf: onnx) else { throw BundleError("--onnx \(onnx.path): cannot read the file") }
        let table = try TrainingTable(contentsOf: train)
        let labelIndex = table.columns.firstIndex(of: labelColumn)
        var options = precision.applied(to: ModelOptions())
        options.ignoresZipMap = ignoreZipMap
        let model: Model
        do { model = try Model(data: modelBytes, options: options) } catch {
            throw BundleError("--onnx \(onnx.path): \(error)")
        }
        var featureColumns = table.columns.indices.filter { $0 != labelIndex }
        // Columns by name when the model names them all: one-column inputs by their input's name, a
        // map input's columns (DictVectorizer) by its keys.
        let names = model.inputs.flatMap { $0.columnNames ?? ($0.width == 1 ? [$0.name] : []) }
        if names.count == model.inputWidth && (model.inputs.count > 1 || model.inputs[0].columnNames != nil)
            && names.allSatisfy(table.columns.contains) {
            featureColumns = names.map { table.columns.firstIndex(of: $0)! }
        }
        guard model.inputWidth == featureColumns.count else {
            throw BundleError("--train \(train.path): \(featureColumns.count) feature columns, but the model reads \(model.inputWidth) features")
        }
        var inputs = [BundleManifest.Input]()
        var columns = [TrainingColumn]()
        for (position, column) in featureColumns.enumerated() {
            let fed = model.inputs.first { position >= $0.firstColumn && position < $0.firstColumn + $0.width }!
            let place: (input: String?, column: Int?) = model.inputs.count > 1 ? (fed.name, position - fed.firstColumn) : (nil, nil)
            let type = fed.kind.rawValue
            if fed.kind == .string {
                let cells = table.rows.map { $0[column].isEmpty ? nil : $0[column] }
                columns.append(.categories(cells))
                let fill = missing == .reject ? nil : mostFrequent(cells.compactMap { $0 })
                inputs.append(.init(name: table.columns[column], type: type, defaultCategory: fill, input: place.input, column: place.column))
                continue
            }
            let values = try table.optionalNumbers(of: column, source: train.path)
            columns.append(.numbers(values))
            let present = values.compactMap { $0 }
            let fill: Float?
            switch missing {
            case _ where fed.columnNames != nil: fill = 0  // a map without the key: 0, as DictVectorizer reads it
            case .reject: fill = nil
            case .zero: fill = 0
            case .mean: fill = present.isEmpty ? 0 : Float(present.reduce(0, +) / Double(present.count))
            }
            inputs.append(.init(name: table.columns[column], type: type, default: fill, input: place.input, column: place.column))
        }
        let outputs = try describeOutputs(model, task: task, labels: labelIndex.map { index in table.rows.map { $0[index] } })
        let reference = try makeReference(model: model, names: featureColumns.map { table.columns[$0] }, columns: columns,
                                          inputs: inputs, outputs: outputs, windowEvents: driftWindowEvents)
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try modelBytes.write(to: out.appendingPathComponent("model.onnx"))
        let referenceEncoder = JSONEncoder()
        referenceEncoder.outputFormatting = [.sortedKeys]
        let referenceBytes = try referenceEncoder.encode(reference)
        try referenceBytes.write(to: out.appendingPathComponent("reference.json"))
        var manifest = BundleManifest(name: name, version: version, inputs: inputs, outputs: outputs,
                                      sha256: ["model.onnx": sha256Hex(modelBytes), "reference.json": sha256Hex(referenceBytes)],
                                      precision: precision == .auto ? nil : precision)
        if ignoreZipMap { manifest.zipmap = "ignore" }
        try write(manifest, to: out)
        return manifest
    }

    /// Profiles every feature and the model's outputs on the training rows (rows with a missing
    /// feature use its default, or are left out of the output profile when it has none), and
    /// calibrates thresholds for windows of `windowEvents`.
    static func makeReference(model: Model, names: [String], columns: [TrainingColumn], inputs: [BundleManifest.Input],
                              outputs: BundleManifest.Outputs, windowEvents: Int) throws -> DriftReference {
        // Training categories the model does not know get symbols of their own after the model's.
        var trainingCategories = [String]()
        for column in columns { if case .categories(let cells) = column { trainingCategories += cells.compactMap { $0 } } }
        let symbols = model.symbols.extended(with: trainingCategories)
        let features = zip(names, columns).map { name, column -> ReferenceProfile in
            switch column {
            case .numbers(let values): return ReferenceProfile(name: name, values: values)
            case .categories(let cells): return ReferenceProfile(name: name, categories: cells) { Double(symbols.symbol(of: $0)) }
            }
        }
        let rowCount = columns.first?.count ?? 0
        var matrix = [Float]()
        matrix.reserveCapacity(rowCount * names.count)
        var kept = 0
        for row in 0..<rowCount {
            // A row with a missing value and no default is left out.
            var values = [Float]()
            for (column, input) in zip(columns, inputs) {
                let value: Float?
                switch column {
                case .numbers(let cells): value = cells[row].map { Float($0) } ?? input.default
                case .categories(let cells): value = (cells[row] ?? input.defaultCategory).map { Float(symbols.symbol(of: $0)) }
                }
                guard let value else { break }
                values.append(value)
            }
            if values.count == names.count { matrix.append(contentsOf: values); kept += 1 }
        }
        var predictions = [ReferenceProfile]()
        if kept > 0 {
            let tensorName = (outputs.isClassification ? outputs.scores : outputs.value) ?? ""
            let result = try model.run(matrix)
            guard let scores = result[tensorName]?.floats else { throw BundleError("the model produced no '\(tensorName)' on the training rows") }
            let width = scores.count / kept
            if outputs.isClassification {
                let labels = outputs.labels ?? []
                if width == 1 {
                    predictions.append(ReferenceProfile(name: "score:\(labels.last ?? "1")", values: scores.map { Double($0) }))
                } else {
                    for column in 0..<width {
                        let label = column < labels.count ? labels[column] : String(column)
                        predictions.append(ReferenceProfile(name: "score:\(label)",
                                                            values: stride(from: column, to: scores.count, by: width).map { Double(scores[$0]) }))
                    }
                }
            } else {
                predictions.append(ReferenceProfile(name: outputs.name ?? "value", values: scores.map { Double($0) }))
            }
        }
        let thresholds = DriftReference.calibrate(features + predictions, windowEvents: windowEvents)
        return DriftReference(features: features, predictions: predictions, thresholds: thresholds,
                              createdBy: "weir \(weirVersion)")
    }

    /// Writes `manifest.json` (sorted keys, so the bundle id is stable for the same content).
    public static func write(_ manifest: BundleManifest, to directory: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var data = try encoder.encode(manifest)
        data.append(0x0A)
        try data.write(to: directory.appendingPathComponent("manifest.json"))
    }

    /// Classification when the model has an int64 label output or a float output with several
    /// columns; otherwise regression. Labels come from the label column's distinct values.
    static func describeOutputs(_ model: Model, task: String?, labels labelCells: [String]?) throws -> BundleManifest.Outputs {
        let probe = try model.run([Float](repeating: 0, count: model.inputWidth))
        let floatOutputs = model.outputs.filter { $0.elementType == "float" }
        guard !floatOutputs.isEmpty else { throw BundleError("the model has no float output to read scores or values from") }
        let widest = floatOutputs.max { (probe[$0.name]?.count ?? 0) < (probe[$1.name]?.count ?? 0) }!
        let width = probe[widest.name]?.count ?? 0
        let hasLabelOutput = model.outputs.contains { $0.elementType == "int64" || $0.elementType == "string" }
        let resolved = task ?? ((hasLabelOutput || width > 1) ? "classification" : "regression")
        switch resolved {
        case "classification":
            let classCount = max(width, 2)
            var labels = (0..<classCount).map(String.init)
            if let labelCells {
                let distinct = Array(Set(labelCells))
                let sorted = distinct.allSatisfy({ Double($0) != nil })
                    ? distinct.sorted { Double($0)! < Double($1)! } : distinct.sorted()
                if sorted.count == classCount { labels = sorted.map(canonicalLabel) }
                else if sorted.count > classCount {
                    throw BundleError("the label column has \(sorted.count) distinct values but the model scores \(classCount) classes")
                }
            }
            return .init(task: "classification", labels: labels, scores: widest.name)
        case "regression":
            guard width == 1 else { throw BundleError("--task regression needs a float output with one value per row; '\(widest.name)' has \(width)") }
            return .init(task: "regression", name: "value", value: widest.name)
        default:
            throw BundleError("--task '\(resolved)': use classification or regression")
        }
    }

    /// The most frequent of `values` (the first in sorted order on a tie), or nil when empty.
    static func mostFrequent(_ values: [String]) -> String? {
        var counts = [String: Int]()
        for value in values { counts[value, default: 0] += 1 }
        return counts.max { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }?.key
    }

    /// "1.0" -> "1" so numeric labels print as the integers they are.
    static func canonicalLabel(_ cell: String) -> String {
        if let value = Double(cell), value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return cell
    }
}
