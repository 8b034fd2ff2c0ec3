import CWeirKernels
import Foundation

/// A loaded, compiled model: immutable and safe to share between threads. Each thread runs it with
/// its own `ModelScratch`.
public final class Model: Sendable {
    /// The graph's input (one float tensor `[rows, features]`).
    public let input: TensorSignature
    /// The graph's outputs, in order.
    public let outputs: [TensorSignature]
    /// Features per row.
    public let inputWidth: Int
    /// The planned steps, with their precision: what `weir model inspect` prints.
    public let layers: [LayerDescription]
    /// Operator set versions by domain ("" is ai.onnx).
    public let opsets: [String: Int64]
    /// The tool that wrote the file.
    public let producer: String
    let plan: Plan
    let tileRows: Int
    /// Whether steps read the caller's rows in place: always, unless the input is also a graph
    /// output (a result must not point into memory the caller may free after `run`).
    let readsInputInPlace: Bool

    /// Loads and compiles an ONNX file. Unsupported operators fail here, naming the node.
    public convenience init(contentsOf url: URL, options: ModelOptions = ModelOptions(), inputWidth: Int? = nil) throws {
        try self.init(graph: ONNXImporter.load(contentsOf: url), options: options, inputWidth: inputWidth)
    }

    /// Loads and compiles ONNX bytes.
    public convenience init(data: Data, options: ModelOptions = ModelOptions(), inputWidth: Int? = nil) throws {
        try self.init(graph: ONNXImporter.load(data: data, source: "model"), options: options, inputWidth: inputWidth)
    }

    init(graph: ImportedGraph, options: ModelOptions, inputWidth: Int?) throws {
        var planner = Planner(graph: graph, options: options)
        plan = try planner.plan(inputWidth: inputWidth)
        input = graph.inputs[0]
        outputs = graph.outputs
        self.inputWidth = plan.inputWidth
        layers = plan.layers
        opsets = graph.opsets
        producer = graph.producer
        let widest = plan.slotInfo.map(\.width).max() ?? 1
        tileRows = options.tileRows ?? min(256, max(32, (256 * 1024) / (MemoryLayout<Float>.stride * max(widest, 1))))
        kernels = options.kernels.usable
        let inputSlot = plan.inputSlot
        readsInputInPlace = !plan.outputSlots.contains { $0.slot == inputSlot }
    }

    /// Working memory for one thread.
    public func makeScratch() -> ModelScratch {
        ModelScratch(slotCount: plan.slotCount, slotNames: plan.slotNames, stepCount: plan.steps.count)
    }

    /// Runs `rows` rows (row-major, `inputWidth` floats each). The steps read `input` in place (no
    /// copy) and never write it. The result reads the scratch and is valid until the scratch's next
    /// run. A row's result does not depend on the other rows.
    public func run(rows: Int, input: UnsafeBufferPointer<Float>, scratch: ModelScratch) throws -> ModelRun {
        guard input.count >= rows * inputWidth else {
            throw ModelError("input holds \(input.count) floats; \(rows) rows of \(inputWidth) features need \(rows * inputWidth)")
        }
        let tile = max(1, tileRows)
        if rows <= tile {
            for slot in scratch.gatheredSlots.indices { scratch.gatheredSlots[slot] = false }
            try runTile(rows: rows, input: input.baseAddress!, scratch: scratch)
            return ModelRun(plan: plan, scratch: scratch)
        }
        var done = 0
        while done < rows {
            let count = min(tile, rows - done)
            try runTile(rows: count, input: input.baseAddress! + done * inputWidth, scratch: scratch)
            for (_, slot) in plan.outputSlots {
                scratch.gathered[slot].append(rowsOf: scratch.buffers[slot], after: done, totalRows: rows)
                scratch.gatheredSlots[slot] = true
            }
            done += count
        }
        return ModelRun(plan: plan, scratch: scratch)
    }

    private func runTile(rows: Int, input: UnsafePointer<Float>, scratch: ModelScratch) throws {
        let first = scratch.buffers[plan.inputSlot]
        if readsInputInPlace {
            first.borrow(input, rows: rows, width: inputWidth)
        } else {
            first.prepare(.float, rows: rows, width: inputWidth)
            _ = memcpy(first.floats, input, rows * inputWidth * MemoryLayout<Float>.stride)
        }
        // By index: each step runs in place, without copying (and retaining) its constants.
        for index in plan.steps.indices {
            try plan.steps[index].run(scratch, index: index)
        }
    }

    /// Convenience for tools and tests: runs an array of rows and copies every output out.
    public func run(_ rows: [Float], scratch: ModelScratch? = nil) throws -> [String: Tensor] {
        let scratch = scratch ?? makeScratch()
        let count = rows.count / max(inputWidth, 1)
        let result = try rows.withUnsafeBufferPointer { try run(rows: count, input: $0, scratch: scratch) }
        var outputs = [String: Tensor]()
        for (name, _) in plan.outputSlots { outputs[name] = result.output(named: name) }
        return outputs
    }

    /// The kernels the model runs on (`ModelOptions.kernels`, as this CPU allows).
    public let kernels: KernelSet
}

/// The outputs of one run, read from the scratch without copying.
public struct ModelRun {
    let plan: Plan
    let scratch: ModelScratch

    /// An output (or an intermediate value, of the last tile only for batches larger than
    /// `ModelOptions.tileRows`) copied into a `Tensor`.
    public func output(named name: String) -> Tensor? {
        scratch.value(named: name)
    }

    /// Calls `body` with the float values of `name` (row-major) and its width, without copying.
    public func withFloats<R>(_ name: String, _ body: (UnsafeBufferPointer<Float>, Int) throws -> R) rethrows -> R? {
        guard let slot = plan.slotNames[name] else { return nil }
        let buffer = scratch.result(slot)
        guard buffer.kind == .float else { return nil }
        return try body(UnsafeBufferPointer(start: buffer.floats, count: buffer.count), buffer.width)
    }

    /// The int64 values of `name` (labels) without copying.
    public func withInt64s<R>(_ name: String, _ body: (UnsafeBufferPointer<Int64>, Int) throws -> R) rethrows -> R? {
        guard let slot = plan.slotNames[name] else { return nil }
        let buffer = scratch.result(slot)
        guard buffer.kind == .int64 else { return nil }
        return try body(UnsafeBufferPointer(start: buffer.ints, count: buffer.count), buffer.width)
    }
}
