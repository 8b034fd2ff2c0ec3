/// A reused byte buffer that grows as needed: what `JSONWriter` and `AvroRecordWriter` write
/// records into, with no allocation per record once it has grown to its working size. One per thread.
public class ByteWriter {
    // Touched for every byte written, only from the owning thread: no dynamic exclusivity checks.
    @exclusivity(unchecked) final var storage: UnsafeMutablePointer<UInt8>
    @exclusivity(unchecked) final var capacity: Int
    /// Bytes written since the last `reset`.
    @exclusivity(unchecked) public internal(set) final var count = 0

    init(reserving capacity: Int) {
        self.capacity = max(capacity, 64)
        storage = .allocate(capacity: self.capacity)
    }

    deinit { storage.deallocate() }

    /// The bytes written so far; valid until the next write or `reset`.
    public final var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: storage, count: count) }

    /// A copy of the bytes (tests, tools).
    public final var array: [UInt8] { Array(bytes) }

    /// Empties the buffer, keeping its storage.
    @inline(__always) public final func reset() { count = 0 }

    @inline(__always) final func reserve(_ extra: Int) {
        if count + extra > capacity { grow(count + extra) }
    }

    private final func grow(_ needed: Int) {
        var newCapacity = capacity * 2
        while newCapacity < needed { newCapacity *= 2 }
        let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        bigger.update(from: storage, count: count)
        storage.deallocate()
        storage = bigger
        capacity = newCapacity
    }

    @inline(__always) public final func raw(_ byte: UInt8) {
        reserve(1)
        storage[count] = byte
        count += 1
    }

    /// Appends bytes as they are.
    public final func raw(_ fragment: UnsafeRawBufferPointer) {
        guard let base = fragment.baseAddress, fragment.count > 0 else { return }
        reserve(fragment.count)
        (storage + count).update(from: base.assumingMemoryBound(to: UInt8.self), count: fragment.count)
        count += fragment.count
    }
}
