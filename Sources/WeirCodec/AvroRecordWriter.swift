/// Appends Avro binary to a reused raw buffer, as `JSONWriter` does JSON: the records Weir
/// publishes as Avro, with no allocation per record once the buffer has grown. One per thread.
public final class AvroRecordWriter: ByteWriter {
    public init(capacity: Int = 512) { super.init(reserving: capacity) }

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

    public func boolean(_ value: Bool) { raw(value ? 1 : 0) }

    /// A string or bytes: the length, then the bytes.
    public func string(_ value: UnsafeRawBufferPointer) {
        long(Int64(value.count))
        raw(value)
    }

    public func string(_ value: [UInt8]) { value.withUnsafeBytes { string($0) } }

    public func string(_ value: String) {
        var value = value
        value.withUTF8 { string(UnsafeRawBufferPointer($0)) }
    }
}
