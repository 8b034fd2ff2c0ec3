/// Appends Avro binary to a reused raw buffer, as `JSONWriter` does JSON: the records Weir
/// publishes as Avro, with no allocation per record once the buffer has grown. One per thread.
public final class AvroRecordWriter {
    @exclusivity(unchecked) private var storage: UnsafeMutablePointer<UInt8>
    @exclusivity(unchecked) private var capacity: Int
    @exclusivity(unchecked) public private(set) var count = 0

    public init(capacity: Int = 512) {
        self.capacity = max(capacity, 64)
        storage = .allocate(capacity: self.capacity)
    }

    deinit { storage.deallocate() }

    /// The bytes written since the last `reset`; valid until the next write.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: storage, count: count) }

    public var array: [UInt8] { Array(bytes) }

    @inline(__always) public func reset() { count = 0 }

    @inline(__always) private func reserve(_ extra: Int) {
        if count + extra > capacity { grow(count + extra) }
    }

    private func grow(_ needed: Int) {
        var size = capacity * 2
        while size < needed { size *= 2 }
        let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: size)
        bigger.update(from: storage, count: count)
        storage.deallocate()
        storage = bigger
        capacity = size
    }

    /// Confluent's frame: magic byte 0 and the schema id.
    public func frame(schemaID: UInt32) {
        reserve(5)
        storage[count] = 0
        storage[count + 1] = UInt8(schemaID >> 24)
        storage[count + 2] = UInt8(truncatingIfNeeded: schemaID >> 16)
        storage[count + 3] = UInt8(truncatingIfNeeded: schemaID >> 8)
        storage[count + 4] = UInt8(truncatingIfNeeded: schemaID)
        count += 5
    }

    /// An int, long, enum index, union branch, array or map block count: a zig-zag varint.
    @inline(__always)
    public func long(_ value: Int64) {
        reserve(10)
        var raw = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        while raw >= 0x80 {
            storage[count] = UInt8(truncatingIfNeeded: raw) | 0x80
            count += 1
            raw >>= 7
        }
        storage[count] = UInt8(raw)
        count += 1
    }

    @inline(__always)
    public func float(_ value: Float) {
        reserve(4)
        UnsafeMutableRawPointer(storage + count).storeBytes(of: value.bitPattern.littleEndian, as: UInt32.self)
        count += 4
    }

    @inline(__always)
    public func double(_ value: Double) {
        reserve(8)
        UnsafeMutableRawPointer(storage + count).storeBytes(of: value.bitPattern.littleEndian, as: UInt64.self)
        count += 8
    }

    public func boolean(_ value: Bool) {
        reserve(1)
        storage[count] = value ? 1 : 0
        count += 1
    }

    /// A string or bytes: the length, then the bytes.
    public func string(_ value: UnsafeRawBufferPointer) {
        long(Int64(value.count))
        reserve(value.count)
        if let base = value.baseAddress, value.count > 0 {
            UnsafeMutableRawPointer(storage + count).copyMemory(from: base, byteCount: value.count)
        }
        count += value.count
    }

    public func string(_ value: [UInt8]) { value.withUnsafeBytes { string($0) } }

    public func string(_ value: String) {
        var value = value
        value.withUTF8 { string(UnsafeRawBufferPointer($0)) }
    }
}
