import Foundation
import Testing
@testable import WeirModel

/// A model and its golden values, as scripts/make-test-models.py wrote them.
struct Fixture {
    struct Output: Decodable {
        let name: String
        let shape: [Int]
        let dtype: String
        let file: String
    }
    struct Int8Layer: Decodable {
        let tensor: String
        let shape: [Int]
        let file: String
    }
    struct Input: Decodable {
        let name: String
        let rows: Int
        let columns: Int
        let file: String
    }
    struct Meta: Decodable {
        let name: String
        let model: String
        let input: Input
        let outputs: [Output]
        let kind: String
        let int8_layers: [Int8Layer]
        /// The same layers with every one at 8 bits, for models whose default plan has an int7 layer.
        let int8_only_layers: [Int8Layer]?
        let fp32_reference: String?
    }

    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    let meta: Meta
    var modelURL: URL { Fixture.directory.appendingPathComponent(meta.model) }

    init(_ name: String) throws {
        let data = try Data(contentsOf: Fixture.directory.appendingPathComponent("\(name).json"))
        meta = try JSONDecoder().decode(Meta.self, from: data)
    }

    var input: [Float] { Fixture.floats(meta.input.file) }

    static func floats(_ file: String) -> [Float] {
        let data = try! Data(contentsOf: directory.appendingPathComponent(file))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    static func int64s(_ file: String) -> [Int64] {
        let data = try! Data(contentsOf: directory.appendingPathComponent(file))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
    }

    /// The float output onnxruntime gave (scores, probabilities or values).
    var scoreOutput: Output? { meta.outputs.first { $0.dtype == "float32" } }
    var labelOutput: Output? { meta.outputs.first { $0.dtype == "int64" } }

    static let all = ["mlp_binary", "mlp_multiclass", "scaler_logreg", "gbdt_binary", "gbdt_multiclass", "gbdt_regressor",
                      "mlp_regressor", "torch_mlp", "ops_zoo", "mlp_wide"]
    static let preQuantized = ["mlp_regressor_dynamic_int8", "torch_mlp_qdq_per_tensor", "torch_mlp_qdq_per_channel"]
    static let withInt8Layers = ["mlp_binary", "mlp_multiclass", "mlp_regressor", "torch_mlp", "mlp_wide"]
}

func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "\(a.count) vs \(b.count) values")
    return zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

/// Labels from a row-major score matrix (argmax per row).
func argmaxRows(_ scores: [Float], width: Int) -> [Int] {
    stride(from: 0, to: scores.count, by: width).map { start in
        (0..<width).max { scores[start + $0] < scores[start + $1] }!
    }
}
