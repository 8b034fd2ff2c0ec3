/// The members of the last features object a decoder read, by position: each key's raw bytes from
/// its opening quote to the colon (`"f12":`), and what that key means to the schema.
///
/// Events from one producer repeat their keys in the same order, byte for byte. So the member at
/// position k of the next event is first compared with what was at position k last time: one or
/// two 16-byte compares instead of reading the string, hashing it and looking it up. The learned
/// bytes were a whole, valid key with no escapes, followed at once by the colon, so an identical
/// run of bytes is that same key and means the same thing. A mismatch, or a key that cannot be
/// learned (escapes, whitespace before the colon, longer than 30 bytes), takes the full path,
/// which then relearns the position. Storage is allocated once per decoder: nothing per event.
final class MemberLayout {
    /// Positions learned; later members of a larger object always take the full path.
    static let capacity = 256
    /// Bytes per learned key, quotes and colon included.
    static let maxPatternBytes = 32

    /// Per position: the key bytes, zero padded (`capacity` × 32).
    let patterns: UnsafeMutablePointer<UInt8>
    /// Per position: 0xFF over the key bytes, 0 beyond (`capacity` × 32).
    let masks: UnsafeMutablePointer<UInt8>
    /// Per position: the key's length with quotes and colon; 0 while nothing is learned.
    let lengths: UnsafeMutablePointer<UInt8>
    /// Per position: what the key means (`MemberAction` raw values).
    let actions: UnsafeMutablePointer<Int32>

    init() {
        let bytes = MemberLayout.capacity * MemberLayout.maxPatternBytes
        patterns = .allocate(capacity: bytes)
        patterns.initialize(repeating: 0, count: bytes)
        masks = .allocate(capacity: bytes)
        masks.initialize(repeating: 0, count: bytes)
        lengths = .allocate(capacity: MemberLayout.capacity)
        lengths.initialize(repeating: 0, count: MemberLayout.capacity)
        actions = .allocate(capacity: MemberLayout.capacity)
        actions.initialize(repeating: MemberAction.skip, count: MemberLayout.capacity)
    }

    deinit {
        patterns.deallocate()
        masks.deallocate()
        lengths.deallocate()
        actions.deallocate()
    }

    /// Forgets every position.
    func reset() {
        lengths.update(repeating: 0, count: MemberLayout.capacity)
    }

    var view: MemberLayoutView { MemberLayoutView(patterns: patterns, masks: masks, lengths: lengths, actions: actions) }
}

/// What a member's key means in the features object.
enum MemberAction {
    /// Not a feature and not the id: the value is validated and skipped. (A feature is its index, ≥ 0.)
    static let skip: Int32 = -1
    /// The event's `id` (top-level features object only).
    static let id: Int32 = -2
}

/// The lookup half of `MemberLayout`, as plain pointers (no reference counting in the parser).
struct MemberLayoutView {
    let patterns: UnsafeMutablePointer<UInt8>
    let masks: UnsafeMutablePointer<UInt8>
    let lengths: UnsafeMutablePointer<UInt8>
    let actions: UnsafeMutablePointer<Int32>

    /// If the bytes at `p` (an opening quote) are the key learned at `position`, followed by its
    /// colon: the key's length with quotes and colon, and its action. Needs 32 readable bytes.
    @inline(__always)
    func match(_ position: Int, at p: UnsafePointer<UInt8>, before end: UnsafePointer<UInt8>) -> (length: Int, action: Int32)? {
        guard position < MemberLayout.capacity, end - p >= MemberLayout.maxPatternBytes else { return nil }
        let length = Int(lengths[position])
        guard length != 0 else { return nil }
        let offset = position &* MemberLayout.maxPatternBytes
        let raw = UnsafeRawPointer(p)
        let pattern = UnsafeRawPointer(patterns + offset), mask = UnsafeRawPointer(masks + offset)
        var difference = (raw.loadUnaligned(as: SIMD16<UInt8>.self) ^ pattern.loadUnaligned(as: SIMD16<UInt8>.self))
            & mask.loadUnaligned(as: SIMD16<UInt8>.self)
        if length > 16 {
            difference |= (raw.loadUnaligned(fromByteOffset: 16, as: SIMD16<UInt8>.self)
                ^ pattern.loadUnaligned(fromByteOffset: 16, as: SIMD16<UInt8>.self))
                & mask.loadUnaligned(fromByteOffset: 16, as: SIMD16<UInt8>.self)
        }
        // Two 64-bit halves test the vector faster than a lane-by-lane reduction.
        let halves = unsafeBitCast(difference, to: SIMD2<UInt64>.self)
        guard halves[0] | halves[1] == 0 else { return nil }
        return (length, actions[position])
    }

    /// Learns `key` (its opening quote through its colon) at `position`, or forgets the position
    /// when `key` is nil or too long.
    @inline(__always)
    func learn(_ position: Int, key: UnsafeBufferPointer<UInt8>?, action: Int32) {
        guard position < MemberLayout.capacity else { return }
        guard let key, let start = key.baseAddress, key.count <= MemberLayout.maxPatternBytes else {
            lengths[position] = 0
            return
        }
        let offset = position &* MemberLayout.maxPatternBytes
        for i in 0..<MemberLayout.maxPatternBytes {
            let inside = i < key.count
            patterns[offset + i] = inside ? start[i] : 0
            masks[offset + i] = inside ? 0xFF : 0
        }
        lengths[position] = UInt8(key.count)
        actions[position] = action
    }
}
