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
/// Raw pointers rather than arrays: the hot loops index them without uniqueness or exclusivity checks.
final class Buffer {
    var kind: ValueKind = .float
    var rows = 0
    var width = 0
    var rank = 2
    /// The float values: this buffer's own storage, or the caller's rows after `borrow`.
    private(set) var floats: UnsafeMutablePointer<Float>
    private var ownFloats = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var ints = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
    private var floatCapacity = 1
    private var intCapacity = 1
    var strings: [String] = []

    init() { floats = ownFloats }

    deinit {
        ownFloats.deallocate()
        ints.deallocate()
    }

    /// Reads `rows` x `width` floats in place from the caller's memory instead of copying them
    /// (for the model input: steps only read their inputs). Valid until the next `prepare`/`borrow`.
    func borrow(_ values: UnsafePointer<Float>, rows: Int, width: Int) {
        kind = .float
        self.rows = rows
        self.width = width
        rank = 2
        floats = UnsafeMutablePointer(mutating: values)
    }

    var count: Int { rows * width }

    /// Sizes the buffer for `rows` x `width` of `kind`; grows storage only when needed (contents
    /// are not kept: every step writes its whole output).
    func prepare(_ kind: ValueKind, rows: Int, width: Int, rank: Int = 2) {
        self.kind = kind
        self.rows = rows
        self.width = width
        self.rank = rank
        let needed = max(rows * width, 1)
        switch kind {
        case .float:
            if floatCapacity < needed {
                ownFloats.deallocate()
                ownFloats = .allocate(capacity: needed)
                floatCapacity = needed
            }
            floats = ownFloats
        case .int64:
            if intCapacity < needed {
                ints.deallocate()
                ints = .allocate(capacity: needed)
                intCapacity = needed
            }
        case .string:
            if strings.count < needed { strings = [String](repeating: "", count: needed) }
        }
    }

    /// Appends `tile`'s rows after the first `rowsBefore` rows of this buffer (same kind and width).
    func append(rowsOf tile: Buffer, after rowsBefore: Int, totalRows: Int) {
        if rowsBefore == 0 {
            prepare(tile.kind, rows: totalRows, width: tile.width, rank: tile.rank)
        }
        let start = rowsBefore * tile.width, count = tile.count
        switch tile.kind {
        case .float: (floats + start).update(from: tile.floats, count: count)
        case .int64: (ints + start).update(from: tile.ints, count: count)
        case .string: for i in 0..<count { strings[start + i] = tile.strings[i] }
        }
    }

    /// An owned copy, as a `Tensor`.
    func tensor() -> Tensor {
        let shape = rank == 1 ? [rows] : [rows, width]
        switch kind {
        case .float: return Tensor(shape: shape, floats: Array(UnsafeBufferPointer(start: floats, count: count)))
        case .int64: return Tensor(shape: shape, int64s: Array(UnsafeBufferPointer(start: ints, count: count)))
        case .string: return Tensor(shape: shape, strings: Array(strings[0..<count]))
        }
    }
}

/// Per-thread working memory for `Model.run`. Create one per thread with `Model.makeScratch()`;
/// it keeps every intermediate value of the last run (readable by name, for tracing).
public final class ModelScratch {
    let buffers: [Buffer]
    let slotNames: [String: Int]
    /// Whole-batch copies of the graph outputs when a batch ran in tiles (by slot).
    var gathered: [Int: Buffer] = [:]
    /// Extra per-step working memory (quantized rows, accumulators), indexed by step.
    var stepMemory: [AnyObject?]

    init(slotCount: Int, slotNames: [String: Int], stepCount: Int) {
        buffers = (0..<slotCount).map { _ in Buffer() }
        self.slotNames = slotNames
        stepMemory = Array(repeating: nil, count: stepCount)
    }

    /// The value called `name` in the last run, copied out (nil if the plan has no such runtime value).
    public func value(named name: String) -> Tensor? {
        slotNames[name].map { (gathered[$0] ?? buffers[$0]).tensor() }
    }

    /// The buffer holding a value of the last run: the gathered whole batch for tiled outputs.
    func result(_ slot: Int) -> Buffer { gathered[slot] ?? buffers[slot] }
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
