import Foundation
import SwiftProtobuf
import Testing
@testable import WeirModel

@Suite("ONNX import details", .timeLimit(.minutes(5)))
struct ImportTests {
    /// A Gemm + Reshape model whose initializers use the typed fields instead of raw_data.
    private func typedFieldModel(outputsInput: Bool = false) throws -> Data {
        var weights = Onnx_TensorProto()
        weights.name = "w"
        weights.dataType = 1
        weights.dims = [2, 3]
        weights.floatData = [1, 2, 3, 4, 5, 6]  // float_data, [outputs=2, inputs=3] with transB
        var bias = Onnx_TensorProto()
        bias.name = "b"
        bias.dataType = 6  // int32, read from int32_data and used as floats by Gemm
        bias.dims = [2]
        bias.int32Data = [10, -10]
        var shape = Onnx_TensorProto()
        shape.name = "shape"
        shape.dataType = 7
        shape.dims = [2]
        shape.int64Data = [-1, 2]  // int64_data
        var gemm = Onnx_NodeProto()
        gemm.opType = "Gemm"
        gemm.name = "dense"
        gemm.input = ["x", "w", "b"]
        gemm.output = ["h"]
        var transB = Onnx_AttributeProto()
        transB.name = "transB"
        transB.type = .int
        transB.i = 1
        gemm.attribute = [transB]
        var reshape = Onnx_NodeProto()
        reshape.opType = "Reshape"
        reshape.input = ["h", "shape"]
        reshape.output = ["y"]
        func info(_ name: String, _ dims: [Int64?]) -> Onnx_ValueInfoProto {
            var value = Onnx_ValueInfoProto()
            value.name = name
            value.type.tensorType.elemType = 1
            value.type.tensorType.shape.dim = dims.map { d in
                var dim = Onnx_TensorShapeProto.Dimension()
                if let d { dim.dimValue = d } else { dim.dimParam = "N" }
                return dim
            }
            return value
        }
        var graph = Onnx_GraphProto()
        graph.node = [gemm, reshape]
        graph.initializer = [weights, bias, shape]
        graph.input = [info("x", [nil, 3])]
        graph.output = [info("y", [nil, 2])] + (outputsInput ? [info("x", [nil, 3])] : [])
        var model = Onnx_ModelProto()
        model.irVersion = 8
        model.graph = graph
        var opset = Onnx_OperatorSetIdProto()
        opset.version = 17
        var repeated = opset
        repeated.version = 13  // a repeated entry: the highest version wins
        model.opsetImport = [repeated, opset]
        return try model.serializedBytes()
    }

    @Test("float_data, int32_data and int64_data initializers; a repeated opset entry")
    func typedFields() throws {
        let model = try Model(data: try typedFieldModel())
        #expect(model.opsets[""] == 17)
        let out = try model.run([1, 0, 2, -1, 1, 1])
        // Row 1: [1·1 + 2·0 + 3·2 + 10, 4·1 + 5·0 + 6·2 − 10] = [17, 6]; row 2: [-1 + 2 + 3 + 10, -4 + 5 + 6 − 10] = [14, -3]
        #expect(out["y"]?.floats == [17, 6, 14, -3])
        #expect(out["y"]?.shape == [2, 2])
    }

    @Test("Steps read the caller's rows in place and never write them; an input that is also an output is copied")
    func inputInPlace() throws {
        for fixture in try Fixture.all.map(Fixture.init) {
            let model = try Model(contentsOf: fixture.modelURL, options: int8Everywhere())
            // Two reads of the file: separate storage, so a write through the run's pointer shows.
            let input = fixture.input
            let rows = fixture.input
            let scratch = model.makeScratch()
            _ = try rows.withUnsafeBufferPointer { try model.run(rows: rows.count / model.inputWidth, input: $0, scratch: scratch) }
            #expect(rows.map(\.bitPattern) == input.map(\.bitPattern), "\(fixture.meta.name) changed its input")
        }
        let model = try Model(data: try typedFieldModel(outputsInput: true))
        let scratch = model.makeScratch()
        let pointer = UnsafeMutableBufferPointer<Float>.allocate(capacity: 6)
        _ = pointer.initialize(from: [1, 0, 2, -1, 1, 1])
        let run = try model.run(rows: 2, input: UnsafeBufferPointer(pointer), scratch: scratch)
        pointer.update(repeating: .nan)
        pointer.deallocate()
        #expect(run.output(named: "x")?.floats == [1, 0, 2, -1, 1, 1])
        #expect(run.output(named: "y")?.floats == [17, 6, 14, -3])
    }

    @Test("one Model serves several threads at once, each with its own scratch, with identical results")
    func concurrentUse() async throws {
        let fixture = try Fixture("mlp_regressor")
        var options = ModelOptions()
        options.int8MinimumMultiplyAdds = 0
        let model = try Model(contentsOf: fixture.modelURL, options: options)
        let input = fixture.input
        let expected = try model.run(input)["variable"]!.floats!
        let results = try await withThrowingTaskGroup(of: [Float].self) { group in
            for _ in 0..<4 {
                group.addTask {
                    let scratch = model.makeScratch()
                    var last = [Float]()
                    for _ in 0..<20 { last = try model.run(input, scratch: scratch)["variable"]!.floats! }
                    return last
                }
            }
            return try await group.reduce(into: [[Float]]()) { $0.append($1) }
        }
        #expect(results.count == 4)
        #expect(results.allSatisfy { $0.map(\.bitPattern) == expected.map(\.bitPattern) })
    }
}
