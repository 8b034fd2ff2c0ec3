import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Writes one record batch to a broker over the Kafka protocol by hand (ProduceRequest v3), so a test
/// can put into a topic what no client library writes: a batch whose compressed payload is garbage.
/// A consumer fetching it gets a record-level error (`_BAD_COMPRESSION`) at the batch's offset.
public enum RawProduce {
    /// Appends a batch of `records` records marked gzip-compressed whose payload is not gzip to
    /// `topic[partition]` on the broker at `address` ("host:port", the partition's leader).
    public static func corruptCompressedBatch(address: String, topic: String, partition: Int32, records: Int32 = 1) throws {
        var batch = Bytes()
        batch.int64(0)                                   // base offset (the broker assigns it)
        let lengthAt = batch.count
        batch.int32(0)                                   // batch length, patched below
        batch.int32(-1)                                  // partition leader epoch
        batch.int8(2)                                    // magic
        let crcAt = batch.count
        batch.int32(0)                                   // CRC-32C, patched below
        let crcFrom = batch.count
        batch.int16(1)                                   // attributes: gzip
        batch.int32(records - 1)                         // last offset delta
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        batch.int64(now)                                 // first timestamp
        batch.int64(now)                                 // max timestamp
        batch.int64(-1)                                  // producer id
        batch.int16(-1)                                  // producer epoch
        batch.int32(-1)                                  // base sequence
        batch.int32(records)                             // record count
        batch.bytes.append(contentsOf: Array("this is not a gzip stream, whatever the attributes say".utf8))
        batch.patch(Int32(batch.count - lengthAt - 4), at: lengthAt)
        batch.patch(Int32(bitPattern: crc32c(batch.bytes[crcFrom...])), at: crcAt)

        var request = Bytes()
        request.int16(0)                                 // api key: Produce
        request.int16(3)                                 // api version
        request.int32(1)                                 // correlation id
        request.string("weir-raw-produce")               // client id
        request.int16(-1)                                // transactional id: null
        request.int16(-1)                                // acks: all
        request.int32(10_000)                            // timeout
        request.int32(1)                                 // one topic
        request.string(topic)
        request.int32(1)                                 // one partition
        request.int32(partition)
        request.int32(Int32(batch.count))
        request.bytes += batch.bytes
        var framed = Bytes()
        framed.int32(Int32(request.count))
        framed.bytes += request.bytes

        let response = try exchange(framed.bytes, address: address)
        // Response v3: correlation id, [topic [partition, error code, ...]]: the error code sits after
        // the topic name and the partition index.
        let nameLength = Int(topic.utf8.count)
        let errorAt = 4 + 4 + 2 + nameLength + 4 + 4
        guard response.count >= errorAt + 2 else { throw RawProduceError("short Produce response (\(response.count) bytes)") }
        let code = Int16(bitPattern: UInt16(response[errorAt]) << 8 | UInt16(response[errorAt + 1]))
        guard code == 0 else { throw RawProduceError("the broker refused the raw batch with error code \(code)") }
    }

    /// Sends `request` and reads one size-prefixed response (bounded by a 10 s socket timeout).
    static func exchange(_ request: [UInt8], address: String) throws -> [UInt8] {
        let parts = address.split(separator: ":")
        guard parts.count == 2, let port = UInt16(parts[1]) else { throw RawProduceError("bad address \(address)") }
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw RawProduceError("socket: \(errno)") }
        defer { close(socket) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(socket, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var target = sockaddr_in()
        target.sin_family = sa_family_t(AF_INET)
        target.sin_port = port.bigEndian
        inet_pton(AF_INET, String(parts[0]), &target.sin_addr)
        let connected = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw RawProduceError("connect to \(address): \(errno)") }
        var sent = 0
        while sent < request.count {
            let written = request[sent...].withUnsafeBytes { send(socket, $0.baseAddress, $0.count, 0) }
            guard written > 0 else { throw RawProduceError("send: \(errno)") }
            sent += written
        }
        func read(_ count: Int) throws -> [UInt8] {
            var buffer = [UInt8](repeating: 0, count: count)
            var got = 0
            while got < count {
                let n = buffer[got...].withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
                guard n > 0 else { throw RawProduceError("recv: \(n == 0 ? "closed" : String(errno))") }
                got += n
            }
            return buffer
        }
        let size = try read(4).reduce(0) { $0 << 8 | Int($1) }
        return try read(size)
    }

    /// CRC-32C (Castagnoli), as record batches carry it.
    static func crc32c(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }

    /// Big-endian encoding.
    struct Bytes {
        var bytes: [UInt8] = []
        var count: Int { bytes.count }
        mutating func int8(_ value: Int8) { bytes.append(UInt8(bitPattern: value)) }
        mutating func int16(_ value: Int16) { append(UInt64(UInt16(bitPattern: value)), 2) }
        mutating func int32(_ value: Int32) { append(UInt64(UInt32(bitPattern: value)), 4) }
        mutating func int64(_ value: Int64) { append(UInt64(bitPattern: value), 8) }
        mutating func string(_ value: String) {
            int16(Int16(value.utf8.count))
            bytes += Array(value.utf8)
        }
        mutating func patch(_ value: Int32, at index: Int) {
            let raw = UInt32(bitPattern: value)
            for byte in 0..<4 { bytes[index + byte] = UInt8(truncatingIfNeeded: raw >> (24 - 8 * byte)) }
        }
        private mutating func append(_ value: UInt64, _ width: Int) {
            for byte in (0..<width).reversed() { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * byte))) }
        }
    }
}

public struct RawProduceError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
