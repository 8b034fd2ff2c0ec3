import Foundation
import Testing
@testable import WeirModel
import WeirTestSupport

/// The tabular zoo against onnxruntime: every model plans, labels agree on at least 99.9% of the
/// held-out rows and fp32 scores are within 1e-4 (relative above 1).
@Suite struct TabularZooTests {
    @Test(arguments: TabularFixture.all)
    func agreesWithOnnxruntime(_ name: String) throws {
        let fixture = try TabularFixture(name)
        var options = ModelOptions()
        options.quantize = false
        let model = try Model(contentsOf: fixture.modelURL, options: options)
        let agreement = try fixture.compare(try model.run(inputs: try fixture.inputs()))
        #expect(agreement.labelShare >= 0.999, "\(name): labels agree on \(agreement.labelRows) of \(agreement.rows) rows")
        #expect(agreement.worstScoreDifference <= 1e-4, "\(name): \(agreement.worstOutput) differs by \(agreement.worstScoreDifference) at \(agreement.worstAt)")
    }
}
