/// A dense tensor: the shape and one of the element storages Weir's operators need.
/// Row-major. Used for constants (initializers, folded values) and runtime values alike.
public struct Tensor: Sendable, Equatable {
    public enum Storage: Sendable, Equatable {
        case float([Float])
        case int64([Int64])
        case string([String])
    }

    public var shape: [Int]
    public var storage: Storage
    /// The ONNX element type an integer tensor came from (`uint8`, `int8`, ...), when it matters
    /// (QuantizeLinear saturates to its zero point's type).
    public var sourceElementType: String? = nil

    public init(shape: [Int], floats: [Float]) { self.shape = shape; storage = .float(floats) }
    public init(shape: [Int], int64s: [Int64]) { self.shape = shape; storage = .int64(int64s) }
    public init(shape: [Int], strings: [String]) { self.shape = shape; storage = .string(strings) }

    public var count: Int { shape.reduce(1, *) }

    public var floats: [Float]? { if case .float(let values) = storage { return values } else { return nil } }
    public var int64s: [Int64]? { if case .int64(let values) = storage { return values } else { return nil } }
    public var strings: [String]? { if case .string(let values) = storage { return values } else { return nil } }

    /// The values as floats, converting integers (for scales, offsets and the like).
    var asFloats: [Float] {
        switch storage {
        case .float(let values): return values
        case .int64(let values): return values.map { Float($0) }
        case .string: return []
        }
    }

    var asInt64s: [Int64] {
        switch storage {
        case .float(let values): return values.map { Int64($0) }
        case .int64(let values): return values
        case .string: return []
        }
    }

    var elementTypeName: String {
        switch storage {
        case .float: return "float"
        case .int64: return "int64"
        case .string: return "string"
        }
    }
}

/// Why a model could not be loaded or run. Each message names the node, operator or field.
public struct ModelError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
