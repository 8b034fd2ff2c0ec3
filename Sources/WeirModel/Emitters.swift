/// An operator by domain ("" is the default ONNX domain) and type.
struct OperatorKey: Hashable, Sendable {
    let domain: String
    let opType: String
}

/// Turns one node (the planner's node `index`) into steps: one emitter per operator, grouped by
/// family in their own files. A new operator is one entry in its family's table and one method.
typealias Emitter = @Sendable (inout Planner, GraphNode, Int) throws -> Void

extension Planner {
    /// Every operator Weir plans, from all families; `checkOperators` refuses any other.
    static let emitters: [OperatorKey: Emitter] = {
        var table = [OperatorKey: Emitter]()
        for family in [denseFamily, elementwiseFamily, shapeFamily, quantizationFamily, mlFamily, categoricalFamily, mathFamily] {
            table.merge(family) { first, _ in first }
        }
        return table
    }()

    /// A family's table: its operators in `domain`.
    static func family(in domain: String = "", _ operators: [String: Emitter]) -> [OperatorKey: Emitter] {
        Dictionary(uniqueKeysWithValues: operators.map { (OperatorKey(domain: domain, opType: $0.key), $0.value) })
    }
}
