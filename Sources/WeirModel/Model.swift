import CWeirKernels
import Foundation

/// A loaded, compiled model: immutable and safe to share between threads. Each thread runs it with
/// its own `ModelScratch`.
public final class Model: Sendable {
    /// The graph's first input.
    public let input: TensorSignature
    /// Every graph input, in the order their columns sit in the feature row.
    public let inputs: [ModelInput]
    /// The graph's inputs as declared (element type and shape), in the same order.
    public let inputSignatures: [TensorSignature]
    /// The strings the model knows, numbered: a string column of the feature row holds the
    /// category's symbol (`SymbolTable.unknown` for one the model does not know).
    public let symbols: SymbolTable
    /// The graph's outputs, in order.
    public let outputs: [TensorSignature]
    /// Columns per feature row: all inputs' columns side by side.
    public let inputWidth: Int
    /// The planned steps, with their precision: what `weir model inspect` prints.
    public let layers: [LayerDescription]
    /// Operator set versions by domain ("" is ai.onnx).
    public let opsets: [String: Int64]
    /// The tool that wrote the file.
    public let producer: String
    let plan: Plan
    let tileRows: Int
    /// Whether steps read the caller's rows in place (one float input) rather than a copy split by input.
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
        // An output a ZipMap the bundle ignores stands for: the float scores it maps.
        let planned = plan
        outputs = graph.outputs.map { output in
            guard !["float", "double", "int64", "string", "int32", "bool"].contains(output.elementType),
                  let slot = planned.slotNames[output.name], planned.slotInfo[slot].kind == .float else { return output }
            return TensorSignature(name: output.name, elementType: "float", shape: [nil, planned.slotInfo[slot].width])
        }
        input = graph.inputs[0]
        inputs = plan.inputs.map(\.input)
        inputSignatures = graph.inputs
        symbols = plan.symbols
        self.inputWidth = plan.inputWidth
        layers = plan.layers
        opsets = graph.opsets
        producer = graph.producer
        let widest = plan.slotInfo.map(\.width).max() ?? 1
        tileRows = options.tileRows ?? min(256, max(32, (256 * 1024) / (MemoryLayout<Float>.stride * max(widest, 1))))
        kernels = options.kernels.usable
        // One float input read in place, unless it is also a graph output (a result must not point
        // into memory the caller may free after `run`).
        if plan.inputs.count == 1, plan.inputs[0].input.kind != .int64, plan.inputs[0].input.kind != .string {
            let inputSlot = plan.inputs[0].slot
            readsInputInPlace = !plan.outputSlots.contains { $0.slot == inputSlot }
        } else {
            readsInputInPlace = false
        }
    }

    /// Working memory for one thread.
    public func makeScratch() -> ModelScratch {
        ModelScratch(slotCount: plan.slotCount, slotNames: plan.slotNames, stepCount: plan.steps.count, symbols: plan.symbols)
    }

    /// Runs `rows` feature rows (row-major, `inputWidth` floats each: every input's columns in
    /// `inputs` order; a string column holds the category's symbol, an int64 column the integer).
    /// One float input is read in place (no copy); steps never write `input`. The result reads the scratch and is valid until the scratch's next
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
        if readsInputInPlace {
            let first = scratch.buffers[plan.inputs[0].slot]
            first.borrow(input, rows: rows, width: inputWidth)
            first.rank = plan.inputs[0].input.rankOne ? 1 : 2
        } else {
            for (fed, slot) in plan.inputs { split(fed, rows: rows, from: input, into: scratch.buffers[slot]) }
        }
        // By index: each step runs in place, without copying (and retaining) its constants.
        for index in plan.steps.indices {
            try plan.steps[index].run(scratch, index: index)
        }
    }

    /// Copies one input's columns out of the feature rows into its own buffer, in its element kind.
    private func split(_ fed: ModelInput, rows: Int, from input: UnsafePointer<Float>, into buffer: Buffer) {
        let width = fed.width, stride = inputWidth, first = fed.firstColumn
        let symbolCount = Int64(symbols.strings.count)
        switch fed.kind {
        case .float, .double:
            buffer.prepare(.float, rows: rows, width: width, rank: fed.rankOne ? 1 : 2)
            let target = buffer.floats
            if width == 1 {
                for r in 0..<rows { target[r] = input[r * stride + first] }
            } else {
                for r in 0..<rows { (target + r * width).update(from: input + r * stride + first, count: width) }
            }
        case .int64:
            buffer.prepare(.int64, rows: rows, width: width, rank: fed.rankOne ? 1 : 2)
            for r in 0..<rows { for j in 0..<width { buffer.ints[r * width + j] = saturatingInt64(input[r * stride + first + j]) } }
        case .string:
            buffer.prepare(.string, rows: rows, width: width, rank: fed.rankOne ? 1 : 2)
            for r in 0..<rows {
                for j in 0..<width {
                    let symbol = saturatingInt64(input[r * stride + first + j])
                    buffer.ints[r * width + j] = symbol >= 0 && symbol < symbolCount ? symbol : SymbolTable.unknown
                }
            }
        }
    }

    /// Feature rows from one tensor per input (by input name): strings become their symbols,
    /// integers and doubles floats. For tools and tests; the worker's decoders write rows directly.
    public func featureRows(_ tensors: [String: Tensor]) throws -> [Float] {
        guard let rows = tensors[inputs[0].name]?.shape.first else { throw ModelError("no tensor for input '\(inputs[0].name)'") }
        var values = [Float](repeating: 0, count: rows * inputWidth)
        for fed in inputs {
            guard let tensor = tensors[fed.name] else { throw ModelError("no tensor for input '\(fed.name)'") }
            guard tensor.count == rows * fed.width else {
                throw ModelError("input '\(fed.name)': \(tensor.count) values for \(rows) rows of \(fed.width) columns")
            }
            for r in 0..<rows {
                for j in 0..<fed.width {
                    let at = r * fed.width + j, target = r * inputWidth + fed.firstColumn + j
                    switch tensor.storage {
                    case .float(let v): values[target] = v[at]
                    case .int64(let v): values[target] = Float(v[at])
                    case .string(let v): values[target] = Float(symbols.symbol(of: v[at]))
                    }
                }
            }
        }
        return values
    }

    /// Runs one tensor per input (by name) and copies every output out.
    public func run(inputs tensors: [String: Tensor], scratch: ModelScratch? = nil) throws -> [String: Tensor] {
        try run(featureRows(tensors), scratch: scratch)
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
