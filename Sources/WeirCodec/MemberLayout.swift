/// The members of the last features object a decoder read, by position: each key's raw bytes from
/// its opening quote to the colon (`"f12":`), and what that key means to the schema.
///
/// Events from one producer repeat their keys in the same order, byte for byte. So the member at
/// position k of the next event is first compared with what was at position k last time: one or
/// two 16-byte compares instead of reading the string, hashing it and looking it up. The learned
/// bytes were a whole, valid key with no escapes, followed at once by the colon, so an identical
/// run of bytes is that same key and means the same thing. A mismatch, or a key that cannot be
/// learned (escapes, whitespace before the colon, longer than 32 bytes), takes the full path,
/// which then relearns the position. A stream whose keys come in a new order every time would
/// only pay for the relearning: when an object's learned positions mismatch more often than they
/// match, the layout rests for `restEvents` events (full path only), then learns again.
/// Storage is allocated once per decoder: nothing per event.
final class MemberLayout {
    /// Positions learned; later members of a larger object always take the full path.
    static let capacity = 256
    /// Bytes per learned key, quotes and colon included.
    static let maxPatternBytes = 32

    /// Events the layout rests for after an object that mostly mismatched it.
    static let restEvents = 64

    /// Per position: the key bytes, zero padded (`capacity` × 32).
    let patterns: UnsafeMutablePointer<UInt8>
    /// Per key length 0...32: 0xFF over that many bytes, 0 beyond (33 × 32).
    let masks: UnsafeMutablePointer<UInt8>
    /// Per position: the key's length with quotes and colon; 0 while nothing is learned.
    let lengths: UnsafeMutablePointer<UInt8>
    /// Per position: what the key means (`MemberAction` raw values).
    let actions: UnsafeMutablePointer<Int32>
    /// [0]: events left to rest (0: in use).
    let control: UnsafeMutablePointer<Int>

    init() {
        let width = MemberLayout.maxPatternBytes
        patterns = .allocate(capacity: MemberLayout.capacity * width)
        patterns.initialize(repeating: 0, count: MemberLayout.capacity * width)
        masks = .allocate(capacity: (width + 1) * width)
        for length in 0...width {
            for i in 0..<width { (masks + length * width + i).initialize(to: i < length ? 0xFF : 0) }
        }
        lengths = .allocate(capacity: MemberLayout.capacity)
        lengths.initialize(repeating: 0, count: MemberLayout.capacity)
        actions = .allocate(capacity: MemberLayout.capacity)
        actions.initialize(repeating: MemberAction.skip, count: MemberLayout.capacity)
        control = .allocate(capacity: 1)
        control.initialize(to: 0)
    }

    deinit {
        patterns.deallocate()
        masks.deallocate()
        lengths.deallocate()
        actions.deallocate()
        control.deallocate()
    }

    /// Forgets every position, and ends a rest.
    func reset() { view.forget(restingFor: 0) }

    /// Called once per event: counts down a rest.
    @inline(__always)
    func startEvent() {
        if control[0] > 0 { control[0] -= 1 }
    }

    var view: MemberLayoutView { MemberLayoutView(patterns: patterns, masks: masks, lengths: lengths, actions: actions, control: control) }
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
    let control: UnsafeMutablePointer<Int>

    /// Whether the layout is in use (not resting).
    @inline(__always)
    var isActive: Bool { control[0] == 0 }

    /// Forgets every position and rests for the next `events` events (full path only; each event's
    /// start counts one down). After an object that mostly mismatched the layout, so that the first
    /// event after the rest learns afresh instead of mismatching what was learned before it.
    func forget(restingFor events: Int) {
        // The current event's start has passed: the count-down begins with the next one.
        control[0] = events == 0 ? 0 : events + 1
        lengths.update(repeating: 0, count: MemberLayout.capacity)
    }

    /// Whether `position` holds a learned key.
    @inline(__always)
    func hasLearned(_ position: Int) -> Bool { position < MemberLayout.capacity && lengths[position] != 0 }

    /// If the bytes at `p` (an opening quote) are the key learned at `position`, followed by its
    /// colon: the key's length with quotes and colon, and its action. Needs 32 readable bytes.
    @inline(__always)
    func match(_ position: Int, at p: UnsafePointer<UInt8>, before end: UnsafePointer<UInt8>) -> (length: Int, action: Int32)? {
        guard position < MemberLayout.capacity, end - p >= MemberLayout.maxPatternBytes else { return nil }
        let length = Int(lengths[position])
        guard length != 0 else { return nil }
        let raw = UnsafeRawPointer(p)
        let pattern = UnsafeRawPointer(patterns + position &* MemberLayout.maxPatternBytes)
        let mask = UnsafeRawPointer(masks + length &* MemberLayout.maxPatternBytes)
        var difference = (raw.loadUnaligned(as: SIMD16<UInt8>.self) & mask.loadUnaligned(as: SIMD16<UInt8>.self))
            ^ pattern.loadUnaligned(as: SIMD16<UInt8>.self)
        if length > 16 {
            difference |= (raw.loadUnaligned(fromByteOffset: 16, as: SIMD16<UInt8>.self)
                & mask.loadUnaligned(fromByteOffset: 16, as: SIMD16<UInt8>.self))
                ^ pattern.loadUnaligned(fromByteOffset: 16, as: SIMD16<UInt8>.self)
        }
        // Two 64-bit halves test the vector faster than a lane-by-lane reduction.
        let halves = unsafeBitCast(difference, to: SIMD2<UInt64>.self)
        guard halves[0] | halves[1] == 0 else { return nil }
        return (length, actions[position])
    }

    /// Learns `key` (its opening quote through its colon; `end` bounds the payload) at `position`,
    /// or forgets the position when `key` is nil or too long.
    @inline(__always)
    func learn(_ position: Int, key: UnsafeBufferPointer<UInt8>?, end: UnsafePointer<UInt8>, action: Int32) {
        guard position < MemberLayout.capacity else { return }
        guard let key, let start = key.baseAddress, key.count <= MemberLayout.maxPatternBytes else {
            lengths[position] = 0
            return
        }
        let width = MemberLayout.maxPatternBytes
        let pattern = patterns + position &* width
        if end - start >= width {
            // Two masked 16-byte stores: the key's bytes, zeros after them.
            let raw = UnsafeRawPointer(start), mask = UnsafeRawPointer(masks + key.count &* width)
            let target = UnsafeMutableRawPointer(pattern)
            target.storeBytes(of: raw.loadUnaligned(as: SIMD16<UInt8>.self) & mask.loadUnaligned(as: SIMD16<UInt8>.self),
                              as: SIMD16<UInt8>.self)
            target.storeBytes(of: raw.loadUnaligned(fromByteOffset: 16, as: SIMD16<UInt8>.self)
                & mask.loadUnaligned(fromByteOffset: 16, as: SIMD16<UInt8>.self), toByteOffset: 16, as: SIMD16<UInt8>.self)
        } else {
            for i in 0..<width { pattern[i] = i < key.count ? start[i] : 0 }
        }
        lengths[position] = UInt8(key.count)
        actions[position] = action
    }
}
