import Foundation
import SwiftProtobuf

/// An attribute value of an ONNX node, reduced to the kinds Weir's operators read.
enum AttributeValue {
    case int(Int64)
    case float(Float)
    case string(String)
    case ints([Int64])
    case floats([Float])
    case strings([String])
    case tensor(Tensor)
    /// A subgraph (Scan's body): its inputs and outputs by name, nodes and constants.
    case graph(Subgraph)
}

/// A node's subgraph attribute, imported like the main graph.
struct Subgraph {
    var inputs: [String]
    var outputs: [String]
    var nodes: [GraphNode]
    var initializers: [String: Tensor]
}

/// One ONNX node after import.
struct GraphNode {
    var opType: String
    var domain: String
    var name: String
    var inputs: [String]
    var outputs: [String]
    var attributes: [String: AttributeValue]

    /// `op 'Gemm' (node '/fc1/Gemm')`, for error messages.
    var label: String {
        let shownDomain = domain.isEmpty || domain == "ai.onnx" ? "" : "\(domain)."
        return "\(shownDomain)\(opType) (node '\(name.isEmpty ? outputs.first ?? "?" : name)')"
    }

    func int(_ key: String, default value: Int64) -> Int64 {
        if case .int(let v)? = attributes[key] { return v }
        return value
    }
    func float(_ key: String, default value: Float) -> Float {
        if case .float(let v)? = attributes[key] { return v }
        return value
    }
    func string(_ key: String, default value: String) -> String {
        if case .string(let v)? = attributes[key] { return v }
        return value
    }
    func ints(_ key: String) -> [Int64]? {
        if case .ints(let v)? = attributes[key] { return v }
        if case .int(let v)? = attributes[key] { return [v] }
        return nil
    }
    func floats(_ key: String) -> [Float]? {
        if case .floats(let v)? = attributes[key] { return v }
        if case .float(let v)? = attributes[key] { return [v] }
        return nil
    }
    func strings(_ key: String) -> [String]? {
        if case .strings(let v)? = attributes[key] { return v }
        return nil
    }
}

/// A graph input or output: name, element type and shape (nil for a symbolic dimension).
public struct TensorSignature: Sendable, Equatable {
    public let name: String
    public let elementType: String
    public let shape: [Int?]
}

/// The imported model: what the planner consumes.
struct ImportedGraph {
    var inputs: [TensorSignature]
    var outputs: [TensorSignature]
    var initializers: [String: Tensor]
    var nodes: [GraphNode]
    var opsets: [String: Int64]
    var producer: String
    var irVersion: Int64
}

enum ONNXImporter {
    static func load(contentsOf url: URL) throws -> ImportedGraph {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ModelError("cannot read model file \(url.path): \(error.localizedDescription)")
        }
        return try load(data: data, source: url.lastPathComponent)
    }

    static func load(data: Data, source: String) throws -> ImportedGraph {
        let proto: Onnx_ModelProto
        do { proto = try Onnx_ModelProto(serializedBytes: data) } catch {
            throw ModelError("\(source) is not an ONNX model (protobuf decoding failed: \(error))")
        }
        guard proto.hasGraph else { throw ModelError("\(source) has no graph") }
        var opsets = [String: Int64]()
        for entry in proto.opsetImport {
            // skl2onnx may list a domain twice (e.g. with zipmap=False); the highest version wins.
            let domain = entry.domain == "ai.onnx" ? "" : entry.domain
            opsets[domain] = max(opsets[domain] ?? 0, entry.version)
        }
        let graph = proto.graph
        var initializers = [String: Tensor]()
        for tensor in graph.initializer {
            initializers[tensor.name] = try convert(tensor, context: "initializer '\(tensor.name)'")
        }
        var nodes = [GraphNode]()
        for node in graph.node {
            var attributes = [String: AttributeValue]()
            for attribute in node.attribute {
                attributes[attribute.name] = try convert(attribute, node: node)
            }
            nodes.append(GraphNode(opType: node.opType, domain: node.domain, name: node.name,
                                   inputs: node.input, outputs: node.output, attributes: attributes))
        }
        let inputs = graph.input.filter { initializers[$0.name] == nil }.map(signature)
        return ImportedGraph(inputs: inputs, outputs: graph.output.map(signature), initializers: initializers,
                             nodes: nodes, opsets: opsets, producer: "\(proto.producerName) \(proto.producerVersion)",
                             irVersion: proto.irVersion)
    }

    private static func subgraph(_ graph: Onnx_GraphProto) throws -> Subgraph {
        var initializers = [String: Tensor]()
        for tensor in graph.initializer { initializers[tensor.name] = try convert(tensor, context: "initializer '\(tensor.name)'") }
        let nodes = try graph.node.map { node in
            var attributes = [String: AttributeValue]()
            for attribute in node.attribute { attributes[attribute.name] = try convert(attribute, node: node) }
            return GraphNode(opType: node.opType, domain: node.domain, name: node.name, inputs: node.input, outputs: node.output,
                             attributes: attributes)
        }
        return Subgraph(inputs: graph.input.map(\.name), outputs: graph.output.map(\.name), nodes: nodes, initializers: initializers)
    }

    private static func signature(_ info: Onnx_ValueInfoProto) -> TensorSignature {
        if case .mapType(let map)? = info.type.value {
            // A map (DictVectorizer's input): one per row, "map(key,value)".
            let valueType = map.valueType.tensorType.elemType
            return TensorSignature(name: info.name, elementType: "map(\(elementTypeName(map.keyType)),\(elementTypeName(valueType)))", shape: [nil])
        }
        let tensorType = info.type.tensorType
        let shape: [Int?] = tensorType.shape.dim.map { dim in
            if case .dimValue(let value)? = dim.value { return Int(value) }
            return nil
        }
        return TensorSignature(name: info.name, elementType: elementTypeName(tensorType.elemType), shape: shape)
    }

    static func elementTypeName(_ code: Int32) -> String {
        switch code {
        case 1: return "float"
        case 2: return "uint8"
        case 3: return "int8"
        case 6: return "int32"
        case 7: return "int64"
        case 8: return "string"
        case 9: return "bool"
        case 10: return "float16"
        case 11: return "double"
        default: return "type\(code)"
        }
    }

    private static func convert(_ attribute: Onnx_AttributeProto, node: Onnx_NodeProto) throws -> AttributeValue {
        switch attribute.type {
        case .int: return .int(attribute.i)
        case .float: return .float(attribute.f)
        case .string: return .string(String(decoding: attribute.s, as: UTF8.self))
        case .ints: return .ints(attribute.ints)
        case .floats: return .floats(attribute.floats)
        case .strings: return .strings(attribute.strings.map { String(decoding: $0, as: UTF8.self) })
        case .tensor: return .tensor(try convert(attribute.t, context: "attribute '\(attribute.name)' of node '\(node.name)'"))
        case .graph: return .graph(try subgraph(attribute.g))
        default:
            // Older exporters leave `type` unset; infer from what is filled in.
            if !attribute.floats.isEmpty { return .floats(attribute.floats) }
            if !attribute.ints.isEmpty { return .ints(attribute.ints) }
            if !attribute.strings.isEmpty { return .strings(attribute.strings.map { String(decoding: $0, as: UTF8.self) }) }
            if attribute.hasT { return .tensor(try convert(attribute.t, context: "attribute '\(attribute.name)'")) }
            if attribute.hasS { return .string(String(decoding: attribute.s, as: UTF8.self)) }
            if attribute.hasF { return .float(attribute.f) }
            return .int(attribute.i)
        }
    }

    /// Reads an initializer from `raw_data`, `float_data`, `int32_data`, `int64_data` (or strings).
    static func convert(_ tensor: Onnx_TensorProto, context: String) throws -> Tensor {
        let shape = tensor.dims.map { Int($0) }
        let count = shape.reduce(1, *)
        let raw = tensor.rawData
        func fromRaw<T>(_ type: T.Type) -> [T] {
            raw.withUnsafeBytes { bytes in
                (0..<(bytes.count / MemoryLayout<T>.stride)).map { bytes.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.stride, as: T.self) }
            }
        }
        let values: Tensor
        switch tensor.dataType {
        case 1:  // float
            values = Tensor(shape: shape, floats: raw.isEmpty ? tensor.floatData : fromRaw(Float.self))
        case 11:  // double
            let doubles = raw.isEmpty ? tensor.doubleData : fromRaw(Double.self)
            values = Tensor(shape: shape, floats: doubles.map { Float($0) })
        case 7:  // int64
            values = Tensor(shape: shape, int64s: raw.isEmpty ? tensor.int64Data : fromRaw(Int64.self))
        case 6, 5, 4:  // int32, int16, uint16: int32_data
            let ints: [Int64]
            if raw.isEmpty { ints = tensor.int32Data.map { Int64($0) } } else {
                switch tensor.dataType {
                case 6: ints = fromRaw(Int32.self).map { Int64($0) }
                case 5: ints = fromRaw(Int16.self).map { Int64($0) }
                default: ints = fromRaw(UInt16.self).map { Int64($0) }
                }
            }
            values = Tensor(shape: shape, int64s: ints)
        case 3:  // int8
            let ints = raw.isEmpty ? tensor.int32Data.map { Int64($0) } : fromRaw(Int8.self).map { Int64($0) }
            values = Tensor(shape: shape, int64s: ints)
        case 2:  // uint8
            let ints = raw.isEmpty ? tensor.int32Data.map { Int64($0) } : fromRaw(UInt8.self).map { Int64($0) }
            values = Tensor(shape: shape, int64s: ints)
        case 9:  // bool
            let ints = raw.isEmpty ? tensor.int32Data.map { Int64($0) } : fromRaw(UInt8.self).map { Int64($0) }
            values = Tensor(shape: shape, int64s: ints)
        case 8:  // string
            values = Tensor(shape: shape, strings: tensor.stringData.map { String(decoding: $0, as: UTF8.self) })
        default:
            throw ModelError("\(context): element type \(elementTypeName(tensor.dataType)) is not supported")
        }
        var typed = values
        typed.sourceElementType = elementTypeName(tensor.dataType)
        guard values.storageCount == count else {
            throw ModelError("\(context): \(values.storageCount) values for shape \(shape) (\(count) expected); external data is not supported")
        }
        return typed
    }
}

extension Tensor {
    var storageCount: Int {
        switch storage {
        case .float(let v): return v.count
        case .int64(let v): return v.count
        case .string(let v): return v.count
        }
    }
}
