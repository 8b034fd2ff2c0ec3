import Foundation
import WeirDrift
import WeirModel

/// The version of Weir that writes bundles (recorded in each manifest as `created_by`).
public let weirVersion = "0.4.0"

/// How a bundle's model runs (manifest `precision`, a Weir extension; absent means `auto`). The model's
/// owner picks it with the accuracy they validated, and it travels with the bundle to every worker.
public enum ModelPrecision: String, Codable, Sendable, CaseIterable {
    /// Integer kernels where they pay: int8 on mid-sized layers and, on AVX2 (whose 7-bit kernel is
    /// faster), int7 (7-bit operands) on layers of at least 65,536 multiply-adds per row.
    case auto
    /// Integer kernels with 8-bit operands only: never int7.
    case int8
    /// Everything in fp32.
    case fp32

    /// `options` with this precision applied.
    public func applied(to options: ModelOptions) -> ModelOptions {
        var result = options
        switch self {
        case .auto: break
        case .int8: result.int7MinimumMultiplyAdds = nil
        case .fp32: result.quantize = false
        }
        return result
    }
}

/// `manifest.json` of a model bundle (docs/contracts.md): what the model is, what it reads, what it
/// answers, and the hashes of its files.
public struct BundleManifest: Codable, Sendable, Equatable {
    /// One model input feature, in the feature row's order (every ONNX input's columns side by side).
    public struct Input: Codable, Sendable, Equatable {
        /// The event field.
        public var name: String
        /// `float` (the default), `double`, `int64` (numbers) or `string` (a category).
        public var type: String
        /// Used when an event lacks a number feature or has `null`; nil: such an event is rejected.
        public var `default`: Float?
        /// The same for a `string` feature: the category used (written as `default` in the file).
        public var defaultCategory: String?
        /// The ONNX input the feature feeds, and its column there (absent: the model's only input,
        /// column by position).
        public var input: String?
        public var column: Int?

        public init(name: String, type: String = "float", default value: Float? = nil, defaultCategory: String? = nil,
                    input: String? = nil, column: Int? = nil) {
            self.name = name
            self.type = type
            self.default = value
            self.defaultCategory = defaultCategory
            self.input = input
            self.column = column
        }

        /// Whether the feature is a category (event strings).
        public var isCategorical: Bool { type == "string" }

        /// The types a feature may have.
        public static let types: Set<String> = ["float", "double", "int64", "string"]

        enum CodingKeys: String, CodingKey {
            case name, type, input, column
            case `default`
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            name = try container.decode(String.self, forKey: .name)
            type = try container.decodeIfPresent(String.self, forKey: .type) ?? "float"
            input = try container.decodeIfPresent(String.self, forKey: .input)
            column = try container.decodeIfPresent(Int.self, forKey: .column)
            // A number, or a category's text for a string feature.
            if let text = try? container.decodeIfPresent(String.self, forKey: .default) {
                defaultCategory = text
                self.default = nil
            } else {
                self.default = try container.decodeIfPresent(Float.self, forKey: .default)
                defaultCategory = nil
            }
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(name, forKey: .name)
            try container.encode(type, forKey: .type)
            try container.encodeIfPresent(input, forKey: .input)
            try container.encodeIfPresent(column, forKey: .column)
            if let defaultCategory { try container.encode(defaultCategory, forKey: .default) } else {
                try container.encodeIfPresent(self.default, forKey: .default)
            }
        }
    }

    /// What the model answers and which ONNX outputs carry it.
    public struct Outputs: Codable, Sendable, Equatable {
        /// `classification` or `regression`.
        public var task: String
        /// Class labels in score order (classification).
        public var labels: [String]?
        /// The ONNX output holding per-class scores (classification).
        public var scores: String?
        /// The regression output's name in prediction records, and the ONNX output holding it.
        public var name: String?
        public var value: String?
        public init(task: String, labels: [String]? = nil, scores: String? = nil, name: String? = nil, value: String? = nil) {
            self.task = task
            self.labels = labels
            self.scores = scores
            self.name = name
            self.value = value
        }
        public var isClassification: Bool { task == "classification" }
    }

    public var name: String
    public var version: String
    public var inputs: [Input]
    public var outputs: Outputs
    /// SHA-256 (hex) of each file of the bundle by file name: `model.onnx`, and `reference.json` when present.
    public var sha256: [String: String]
    public var createdBy: String
    /// `auto`, `int8` or `fp32` (nil: `auto`); kept as text so a bad value is named by validation.
    public var precision: String?
    /// `ignore`: the model's ZipMap (a classifier's list of maps) is read as the score tensor it maps.
    public var zipmap: String?

    enum CodingKeys: String, CodingKey {
        case name, version, inputs, outputs, sha256, precision, zipmap
        case createdBy = "created_by"
    }

    public init(name: String, version: String, inputs: [Input], outputs: Outputs, sha256: [String: String],
                createdBy: String = "weir \(weirVersion)", precision: ModelPrecision? = nil) {
        self.name = name
        self.version = version
        self.inputs = inputs
        self.outputs = outputs
        self.sha256 = sha256
        self.createdBy = createdBy
        self.precision = precision?.rawValue
    }

    /// The precision the model runs at.
    public var modelPrecision: ModelPrecision { precision.flatMap(ModelPrecision.init(rawValue:)) ?? .auto }

    /// `options` as this bundle says the model runs: its precision, and ZipMap ignored when asked.
    public func modelOptions(_ options: ModelOptions = ModelOptions()) -> ModelOptions {
        var result = modelPrecision.applied(to: options)
        if zipmap == "ignore" { result.ignoresZipMap = true }
        return result
    }
}

/// A bundle problem, naming the file or field to fix.
public struct BundleError: Error, CustomStringConvertible, Sendable {
    /// What is wrong, for callers that react by kind (a control message's rejection code).
    public enum Kind: Sendable, Equatable {
        /// A file is missing or cannot be read.
        case unreadable
        /// A remote store did not answer (network, 5xx, an object not uploaded yet): worth retrying.
        case unavailable
        /// A file's sha256 is not the one manifest.json lists.
        case hashMismatch
        /// The manifest, reference or model is malformed or does not fit together.
        case invalid
    }

    public let kind: Kind
    public let description: String
    public init(_ description: String, kind: Kind = .invalid) {
        self.kind = kind
        self.description = description
    }
}

/// A verified model bundle, loaded and compiled: what a worker serves.
public final class ModelBundle: Sendable {
    public let directory: URL
    public let manifest: BundleManifest
    /// SHA-256 of `manifest.json`: the bundle's identity.
    public let id: String
    public let model: Model
    /// The drift baseline (`reference.json`), when the bundle has one.
    public let reference: DriftReference?
    /// The numbers events' categories get: the model's symbols, then the training categories it
    /// does not know (from `reference.json`), as `weir model package` numbered them. Made once, at load.
    public let categorySymbols: SymbolTable
    /// The verified `model.onnx` bytes, kept for `compiledCopy` (the file may change after load).
    private let onnx: Data
    /// How the model was compiled.
    private let options: ModelOptions

    /// Reads `directory`, checks every hash in the manifest and the model's fit to its inputs and
    /// outputs, and compiles the model. Errors name the file and what is wrong.
    public convenience init(directory: URL, options: ModelOptions = ModelOptions()) throws {
        try self.init(files: try BundleFiles(directory: directory), directory: directory, options: options)
    }

    /// Compiles a verified bundle from its bytes (read once: from a directory, the download cache
    /// or an object store); `directory` is where it is kept, for messages.
    public init(files: BundleFiles, directory: URL, options: ModelOptions = ModelOptions()) throws {
        self.directory = directory
        let manifest = files.manifest
        let referencePath = directory.appendingPathComponent("reference.json").path
        let modelPath = directory.appendingPathComponent("model.onnx").path
        let model: Model
        // validate() requires model.onnx among the hashed files.
        let onnx = files.files["model.onnx"] ?? Data()
        do {
            model = try Model(data: onnx, options: manifest.modelOptions(options), inputWidth: manifest.inputs.count)
        } catch {
            throw BundleError("\(modelPath): \(error)")
        }
        self.onnx = onnx
        self.options = options
        try Self.check(model, fits: manifest, path: modelPath)
        if let referenceData = files.files["reference.json"] {
            do {
                reference = try JSONDecoder().decode(DriftReference.self, from: referenceData)
            } catch {
                throw BundleError("\(referencePath): \(describe(error))")
            }
            let names = manifest.inputs.map(\.name)
            if reference!.features.map(\.name) != names {
                throw BundleError("\(referencePath): profiles features \(reference!.features.map(\.name)) but manifest.json lists \(names)")
            }
        } else {
            reference = nil
        }
        categorySymbols = model.symbols.extended(with: (reference?.features ?? []).flatMap { $0.categories ?? [] })
        self.manifest = manifest
        self.model = model
        id = files.identity
    }

    /// The same bundle with its own compiled model (and symbol table): for a thread that must not
    /// share the model's objects with other threads (`weir score` runs one per thread). Compiled
    /// from the verified bytes, without reading or hashing the files again.
    public func compiledCopy() throws -> ModelBundle {
        let model = try Model(data: onnx, options: manifest.modelOptions(options), inputWidth: manifest.inputs.count)
        return ModelBundle(copying: self, model: model)
    }

    private init(copying original: ModelBundle, model: Model) {
        directory = original.directory
        manifest = original.manifest
        id = original.id
        reference = original.reference
        onnx = original.onnx
        options = original.options
        self.model = model
        categorySymbols = model.symbols.extended(with: (original.reference?.features ?? []).flatMap { $0.categories ?? [] })
    }

    /// Reads and checks `manifest.json` and every file hash it lists, without compiling the model:
    /// cheap enough to vet each bundle a control topic names. Returns the manifest and its bytes.
    public static func readVerified(directory: URL) throws -> (BundleManifest, Data) {
        let files = try BundleFiles(directory: directory)
        return (files.manifest, files.manifestData)
    }

    /// SHA-256 of a bundle directory's `manifest.json` (its identity), or nil when unreadable.
    public static func identity(of directory: URL) -> String? {
        (try? BundleFiles.readBounded(directory.appendingPathComponent("manifest.json"), limit: BundleFiles.maximumManifestBytes)).map(sha256Hex)
    }

    static func validate(_ manifest: BundleManifest, at path: String) throws {
        if manifest.name.isEmpty { throw BundleError("\(path): name is empty") }
        if !isSemanticVersion(manifest.version) {
            throw BundleError("\(path): version '\(manifest.version)' is not a semantic version (like 1.3.0)")
        }
        if manifest.inputs.isEmpty { throw BundleError("\(path): inputs is empty") }
        var seen = Set<String>()
        for input in manifest.inputs {
            if !seen.insert(input.name).inserted { throw BundleError("\(path): input '\(input.name)' is listed twice") }
            guard BundleManifest.Input.types.contains(input.type) else {
                throw BundleError("\(path): input '\(input.name)' has type '\(input.type)'; use float, double, int64 or string")
            }
            if input.defaultCategory != nil && !input.isCategorical {
                throw BundleError("\(path): input '\(input.name)' is \(input.type) but its default is text; give a number")
            }
            if input.default != nil && input.isCategorical {
                throw BundleError("\(path): input '\(input.name)' is a string (a category) but its default is a number; give the category as text")
            }
            if let column = input.column, column < 0 { throw BundleError("\(path): input '\(input.name)' has a negative column") }
        }
        if manifest.sha256["model.onnx"] == nil { throw BundleError("\(path): sha256 has no entry for model.onnx") }
        if let precision = manifest.precision, ModelPrecision(rawValue: precision) == nil {
            throw BundleError("\(path): precision '\(precision)'; use auto, int8 or fp32")
        }
        if let zipmap = manifest.zipmap, zipmap != "ignore" {
            throw BundleError("\(path): zipmap '\(zipmap)'; the only value is ignore (or leave it out)")
        }
        switch manifest.outputs.task {
        case "classification":
            guard manifest.outputs.scores != nil, let labels = manifest.outputs.labels, !labels.isEmpty else {
                throw BundleError("\(path): outputs of a classification need scores (an ONNX output) and labels")
            }
        case "regression":
            guard manifest.outputs.value != nil else {
                throw BundleError("\(path): outputs of a regression need value (an ONNX output)")
            }
        default:
            throw BundleError("\(path): outputs.task is '\(manifest.outputs.task)'; use classification or regression")
        }
    }

    static func check(_ model: Model, fits manifest: BundleManifest, path: String) throws {
        if model.inputWidth != manifest.inputs.count {
            throw BundleError("\(path): the model reads \(model.inputWidth) features but manifest.json lists \(manifest.inputs.count) inputs")
        }
        // Each feature's type and place must be the model's for that column of the feature row.
        for (position, input) in manifest.inputs.enumerated() {
            guard let fed = model.inputs.first(where: { position >= $0.firstColumn && position < $0.firstColumn + $0.width }) else { continue }
            let wanted: String
            switch fed.kind {
            case .float: wanted = input.type == "double" ? "double" : "float"
            case .double: wanted = input.type == "float" ? "float" : "double"
            case .int64: wanted = "int64"
            case .string: wanted = "string"
            }
            if input.type != wanted {
                throw BundleError("\(path): input '\(input.name)' is \(input.type) but the model's input '\(fed.name)' takes \(fed.kind.rawValue) there; set its type to \(wanted)")
            }
            if let name = input.input, name != fed.name {
                throw BundleError("\(path): input '\(input.name)' names ONNX input '\(name)' but feature \(position + 1) feeds '\(fed.name)'")
            }
            if let column = input.column, column != position - fed.firstColumn {
                throw BundleError("\(path): input '\(input.name)' names column \(column) of '\(fed.name)' but its place is column \(position - fed.firstColumn)")
            }
        }
        let outputs = manifest.outputs
        let wanted = outputs.isClassification ? outputs.scores! : outputs.value!
        guard let signature = model.outputs.first(where: { $0.name == wanted }) else {
            throw BundleError("\(path): has no output '\(wanted)' (outputs: \(model.outputs.map(\.name).joined(separator: ", ")))")
        }
        guard signature.elementType == "float" else {
            throw BundleError("\(path): output '\(wanted)' is \(signature.elementType); scores and values must be float")
        }
        // Probe one row of defaults (or zeros) to learn the width, which some exporters leave symbolic.
        let width = try probeWidth(model, output: wanted)
        if outputs.isClassification {
            let labels = outputs.labels!.count
            if !(width == labels || (width == 1 && labels == 2)) {
                throw BundleError("\(path): output '\(wanted)' has \(width) scores per row but manifest.json lists \(labels) labels")
            }
        } else if width != 1 {
            throw BundleError("\(path): output '\(wanted)' has \(width) values per row; a regression needs 1")
        }
    }

    static func probeWidth(_ model: Model, output: String) throws -> Int {
        let result = try model.run([Float](repeating: 0, count: model.inputWidth))
        guard let tensor = result[output] else { throw BundleError("model produced no '\(output)'") }
        return tensor.count
    }
}

/// Whether `text` is MAJOR.MINOR.PATCH with an optional -prerelease / +build suffix.
public func isSemanticVersion(_ text: String) -> Bool {
    var core = Substring(text)
    if let cut = core.firstIndex(where: { $0 == "-" || $0 == "+" }) {
        if core[core.index(after: cut)...].isEmpty { return false }
        core = core[..<cut]
    }
    let parts = core.split(separator: ".", omittingEmptySubsequences: false)
    return parts.count == 3 && parts.allSatisfy { part in
        !part.isEmpty && part.allSatisfy(\.isASCII) && part.allSatisfy(\.isNumber) && (part == "0" || part.first != "0")
    }
}

func describe(_ error: any Error) -> String {
    switch error {
    case DecodingError.keyNotFound(let key, let context):
        return "missing field '\(path(context.codingPath + [key]))'"
    case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
        return "field '\(path(context.codingPath))': \(context.debugDescription)"
    case DecodingError.dataCorrupted(let context):
        return context.codingPath.isEmpty ? "not valid JSON" : "field '\(path(context.codingPath))': \(context.debugDescription)"
    default:
        return "\(error)"
    }
}

private func path(_ keys: [any CodingKey]) -> String {
    keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
}
