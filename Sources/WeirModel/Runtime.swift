/// The element kind of a runtime value.
enum ValueKind: Sendable, Equatable {
    case float, int64, string
}

/// What the planner knows about a runtime value: its kind and its per-row width. Every runtime
/// value is batch-major: rank 1 (`[rows]`) or rank 2 (`[rows, width]`).
struct SlotInfo: Sendable {
    var kind: ValueKind
    var rank: Int
    var width: Int
}

/// One runtime value in a scratch: storage kept between runs so a warm run allocates nothing.
final class Buffer {
    var kind: ValueKind = .float
    var rows = 0
    var width = 0
    var rank = 2
    var floats: [Float] = []
    var ints: [Int64] = []
    var strings: [String] = []

    var count: Int { rows * width }

    /// Sizes the buffer for `rows` x `width` of `kind`; grows storage only when needed.
    func prepare(_ kind: ValueKind, rows: Int, width: Int, rank: Int = 2) {
        self.kind = kind
        self.rows = rows
        self.width = width
        self.rank = rank
        let needed = rows * width
        switch kind {
        case .float: if floats.count < needed { floats = [Float](repeating: 0, count: needed) }
        case .int64: if ints.count < needed { ints = [Int64](repeating: 0, count: needed) }
        case .string: if strings.count < needed { strings = [String](repeating: "", count: needed) }
        }
    }

    /// An owned copy, as a `Tensor`.
    func tensor() -> Tensor {
        let shape = rank == 1 ? [rows] : [rows, width]
        switch kind {
        case .float: return Tensor(shape: shape, floats: Array(floats[0..<count]))
        case .int64: return Tensor(shape: shape, int64s: Array(ints[0..<count]))
        case .string: return Tensor(shape: shape, strings: Array(strings[0..<count]))
        }
    }
}

/// Per-thread working memory for `Model.run`. Create one per thread with `Model.makeScratch()`;
/// it keeps every intermediate value of the last run (readable by name, for tracing).
public final class ModelScratch {
    let buffers: [Buffer]
    let slotNames: [String: Int]
    /// Extra per-step working memory (quantized rows, accumulators), indexed by step.
    var stepMemory: [AnyObject?]

    init(slotCount: Int, slotNames: [String: Int], stepCount: Int) {
        buffers = (0..<slotCount).map { _ in Buffer() }
        self.slotNames = slotNames
        stepMemory = Array(repeating: nil, count: stepCount)
    }

    /// The value called `name` in the last run, copied out (nil if the plan has no such runtime value).
    public func value(named name: String) -> Tensor? {
        slotNames[name].map { buffers[$0].tensor() }
    }
}

/// A step of an execution plan. Steps read and write buffers of the scratch by slot index.
protocol Step: Sendable {
    /// For `weir model inspect`: what the step does.
    var summary: String { get }
    func run(_ scratch: ModelScratch, index: Int) throws
}

@inline(__always)
func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }

#if canImport(Glibc)
import Glibc
#endif
