/// ai.onnx.ml `post_transform`: what a classifier or regressor applies to each row's scores.
/// Resolved once when the model is planned; an unknown value fails there, naming the node.
enum PostTransform: String, CaseIterable, Sendable {
    case none = "NONE"
    case logistic = "LOGISTIC"
    case softmax = "SOFTMAX"
    case softmaxZero = "SOFTMAX_ZERO"
    case probit = "PROBIT"
}

/// ai.onnx.ml Normalizer's `norm`.
enum Norm: String, CaseIterable, Sendable {
    case max = "MAX"
    case l1 = "L1"
    case l2 = "L2"
}

/// ai.onnx.ml tree ensembles' `aggregate_function`: how the trees' leaf weights combine.
enum TreeAggregate: String, CaseIterable, Sendable {
    case sum = "SUM"
    case average = "AVERAGE"
    case min = "MIN"
    case max = "MAX"
}

extension GraphNode {
    /// A string attribute read as one of `Value`'s cases; a value Weir does not know fails here,
    /// naming the node, the attribute and the values it knows.
    func choice<Value: RawRepresentable & CaseIterable>(_ key: String, default value: Value) throws -> Value
        where Value.RawValue == String
    {
        let text = string(key, default: value.rawValue)
        guard let chosen = Value(rawValue: text) else {
            throw ModelError("\(label): attribute '\(key)' is '\(text)'; Weir supports \(Value.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return chosen
    }
}
