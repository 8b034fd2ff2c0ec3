/// The element kind of a runtime value. Strings are held as their symbols (`SymbolTable`) and
/// booleans as 0 or 1, both in the integer storage.
enum ValueKind: Sendable, Equatable {
    case float, int64, string, bool

    /// Whether values live in the integer storage.
    var isInteger: Bool { self != .float }
}

/// What the planner knows about a runtime value: its kind and the shape of one row. Every runtime
/// value is batch-major: `[rows] + rowShape`, stored row after row (`width` values each).
struct SlotInfo: Sendable {
    var kind: ValueKind
    /// The dimensions after the batch: [] for `[rows]`, [w] for `[rows, w]`, [a, b] for `[rows, a, b]`.
    var rowShape: [Int]

    init(kind: ValueKind, rank: Int, width: Int) {
        self.kind = kind
        rowShape = rank == 1 ? [] : [width]
    }

    init(kind: ValueKind, rowShape: [Int]) {
        self.kind = kind
        self.rowShape = rowShape
    }

    var rank: Int { rowShape.count + 1 }
    var width: Int { rowShape.reduce(1, *) }
}

/// The state of one runtime value: storage kept between runs so a warm run allocates nothing. Raw
/// pointers rather than arrays: the hot loops index them without uniqueness or exclusivity checks.
struct BufferStorage {
    var kind: ValueKind = .float
    var rows = 0
    var width = 0
    var rank = 2
    /// The float values: `ownFloats`, or the caller's rows after `borrow`.
    var floats: UnsafeMutablePointer<Float>
    var ownFloats: UnsafeMutablePointer<Float>
    var ints: UnsafeMutablePointer<Int64>
    var floatCapacity = 1
    var intCapacity = 1

    init() {
        ownFloats = .allocate(capacity: 1)
        floats = ownFloats
        ints = .allocate(capacity: 1)
    }

    func release() {
        ownFloats.deallocate()
        ints.deallocate()
    }
}

/// One runtime value of a scratch: a handle on storage the scratch owns (no reference counting on
/// the hot path). Valid while its scratch lives.
struct Buffer {
    let storage: UnsafeMutablePointer<BufferStorage>

    var kind: ValueKind { storage.pointee.kind }
    var rows: Int { storage.pointee.rows }
    var width: Int {
        get { storage.pointee.width }
        nonmutating set { storage.pointee.width = newValue }
    }
    var rank: Int {
        get { storage.pointee.rank }
        nonmutating set { storage.pointee.rank = newValue }
    }
    var floats: UnsafeMutablePointer<Float> { storage.pointee.floats }
    /// Integers, string symbols or booleans (0/1).
    var ints: UnsafeMutablePointer<Int64> { storage.pointee.ints }

    /// Reads `rows` x `width` floats in place from the caller's memory instead of copying them
    /// (for the model input: steps only read their inputs). Valid until the next `prepare`/`borrow`.
    func borrow(_ values: UnsafePointer<Float>, rows: Int, width: Int) {
        storage.pointee.kind = .float
        storage.pointee.rows = rows
        storage.pointee.width = width
        storage.pointee.rank = 2
        storage.pointee.floats = UnsafeMutablePointer(mutating: values)
    }

    var count: Int { rows * width }

    /// Sizes the buffer for `rows` x `width` of `kind`; grows storage only when needed (contents
    /// are not kept: every step writes its whole output).
    func prepare(_ kind: ValueKind, rows: Int, width: Int, rank: Int = 2) {
        storage.pointee.kind = kind
        storage.pointee.rows = rows
        storage.pointee.width = width
        storage.pointee.rank = rank
        let needed = max(rows * width, 1)
        switch kind {
        case .float:
            if storage.pointee.floatCapacity < needed {
                storage.pointee.ownFloats.deallocate()
                storage.pointee.ownFloats = .allocate(capacity: needed)
                storage.pointee.floatCapacity = needed
            }
            storage.pointee.floats = storage.pointee.ownFloats
        case .int64, .string, .bool:
            if storage.pointee.intCapacity < needed {
                storage.pointee.ints.deallocate()
                storage.pointee.ints = .allocate(capacity: needed)
                storage.pointee.intCapacity = needed
            }
        }
    }

    /// Appends `tile`'s rows after the first `rowsBefore` rows of this buffer (same kind and width).
    func append(rowsOf tile: Buffer, after rowsBefore: Int, totalRows: Int) {
        if rowsBefore == 0 {
            prepare(tile.kind, rows: totalRows, width: tile.width, rank: tile.rank)
        }
        let start = rowsBefore * tile.width, count = tile.count
        if tile.kind == .float {
            (floats + start).update(from: tile.floats, count: count)
        } else {
            (ints + start).update(from: tile.ints, count: count)
        }
    }

    /// An owned copy, as a `Tensor` (strings spelled out through `symbols`; booleans as int64 0/1).
    func tensor(symbols: SymbolTable) -> Tensor {
        let shape = rank == 1 ? [rows] : [rows, width]
        let integers = UnsafeBufferPointer(start: ints, count: count)
        switch kind {
        case .float: return Tensor(shape: shape, floats: Array(UnsafeBufferPointer(start: floats, count: count)))
        case .int64, .bool: return Tensor(shape: shape, int64s: Array(integers))
        case .string: return Tensor(shape: shape, strings: integers.map { symbols.string($0) })
        }
    }
}

/// The buffers of a scratch by slot, owned by it.
struct BufferTable {
    let base: UnsafeMutablePointer<BufferStorage>
    let count: Int

    init(count: Int) {
        self.count = count
        base = .allocate(capacity: max(count, 1))
        for i in 0..<count { (base + i).initialize(to: BufferStorage()) }
    }

    subscript(slot: Int) -> Buffer { Buffer(storage: base + slot) }

    func release() {
        for i in 0..<count { base[i].release() }
        base.deinitialize(count: count)
        base.deallocate()
    }
}

/// Per-thread working memory for `Model.run`. Create one per thread with `Model.makeScratch()`;
/// it keeps every intermediate value of the last run (readable by name, for tracing).
public final class ModelScratch {
    let buffers: BufferTable
    /// Whole-batch copies of the graph outputs when a batch ran in tiles (by slot), valid where
    /// `gatheredSlots` says so.
    let gathered: BufferTable
    var gatheredSlots: [Bool]
    let slotNames: [String: Int]
    /// Extra per-step working memory (quantized rows, accumulators), indexed by step.
    let stepMemory: UnsafeMutablePointer<StepMemory>
    private let stepCount: Int

    let symbols: SymbolTable

    init(slotCount: Int, slotNames: [String: Int], stepCount: Int, symbols: SymbolTable) {
        self.symbols = symbols
        buffers = BufferTable(count: slotCount)
        gathered = BufferTable(count: slotCount)
        gatheredSlots = Array(repeating: false, count: slotCount)
        self.slotNames = slotNames
        self.stepCount = stepCount
        stepMemory = .allocate(capacity: max(stepCount, 1))
        for index in 0..<stepCount { (stepMemory + index).initialize(to: StepMemory()) }  // each its own storage
    }

    deinit {
        buffers.release()
        gathered.release()
        for index in 0..<stepCount { stepMemory[index].release() }
        stepMemory.deinitialize(count: stepCount)
        stepMemory.deallocate()
    }

    /// The value called `name` in the last run, copied out (nil if the plan has no such runtime value).
    public func value(named name: String) -> Tensor? {
        slotNames[name].map { result($0).tensor(symbols: symbols) }
    }

    /// The buffer holding a value of the last run: the gathered whole batch for tiled outputs.
    func result(_ slot: Int) -> Buffer { gatheredSlots[slot] ? gathered[slot] : buffers[slot] }
}

/// One step's working memory (quantized rows, their scales and zero points, integer sums): raw
/// storage that grows to the largest batch seen and is then reused, read through pointers with no
/// reference counting or exclusivity checks.
struct StepMemory {
    private(set) var rows = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
    private(set) var scales = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var zeroPoints = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
    private(set) var sums = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
    private var rowBytes = 64, rowCount = 1, sumCount = 1

    /// Room for `rowBytes` bytes of quantized rows, `rows` scales and zero points, and `sums` sums
    /// (contents are not kept when something grows).
    @inline(__always)
    mutating func reserve(rowBytes needed: Int, rows: Int, sums: Int) {
        if needed > rowBytes || rows > rowCount || sums > sumCount { grow(rowBytes: needed, rows: rows, sums: sums) }
    }

    private mutating func grow(rowBytes needed: Int, rows: Int, sums needSums: Int) {
        if needed > rowBytes {
            self.rows.deallocate()
            self.rows = .allocate(byteCount: needed, alignment: 64)
            rowBytes = needed
        }
        if rows > rowCount {
            scales.deallocate()
            zeroPoints.deallocate()
            scales = .allocate(capacity: rows)
            zeroPoints = .allocate(capacity: rows)
            rowCount = rows
        }
        if needSums > sumCount {
            sums.deallocate()
            sums = .allocate(capacity: needSums)
            sumCount = needSums
        }
    }

    func release() {
        rows.deallocate()
        scales.deallocate()
        zeroPoints.deallocate()
        sums.deallocate()
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

/// A plan's constant values (weights, scales, biases) in memory of their own: allocated once,
/// 64-byte aligned for vector loads, never written after init, read through `base` without
/// copy-on-write, uniqueness or exclusivity checks.
/// Unchecked: written only by `init`, read-only after, so sharing it across threads is safe.
final class Constants<Element: BitwiseCopyable>: @unchecked Sendable {
    let base: UnsafeMutablePointer<Element>
    let count: Int

    init(_ values: [Element]) {
        count = values.count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<Element>.stride, alignment: 64)
        base = raw.bindMemory(to: Element.self, capacity: max(count, 1))
        values.withUnsafeBufferPointer { base.initialize(from: $0.baseAddress!, count: count) }
    }

    deinit { UnsafeMutableRawPointer(base).deallocate() }

    /// The values as an array (for tests and tools).
    var array: [Element] { Array(UnsafeBufferPointer(start: base, count: count)) }
}
