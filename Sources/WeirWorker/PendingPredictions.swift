/// Predictions waiting for their observed outcomes, within a fixed memory: slots in a ring (the
/// oldest is overwritten first) and an open-addressing index from the join hash (the event's id,
/// or its key) to the slot. Nothing is allocated per prediction. Poll thread only.
public final class PendingPredictions {
    /// Slots; `width` floats of the answer per slot (and as many for a shadow's answer).
    public let capacity: Int
    public let width: Int
    private let hashes: UnsafeMutablePointer<UInt64>
    private let bornMs: UnsafeMutablePointer<Int64>
    /// Route raw value, or `empty`.
    private let routes: UnsafeMutablePointer<UInt8>
    private let epochs: UnsafeMutablePointer<UInt32>
    public let answers: UnsafeMutablePointer<Float>
    let shadowAnswers: UnsafeMutablePointer<Float>
    /// Slot per position; -1 is free. Twice the slots, so probes stay short.
    private let index: UnsafeMutablePointer<Int32>
    private let mask: Int
    /// The oldest written slot, and how many slots from it up to the next one written.
    private var tail = 0
    private var span = 0
    /// Live entries (taken, overwritten or expired ones leave).
    public private(set) var count = 0
    static let empty: UInt8 = 0xFF

    public init(capacity: Int, width: Int) {
        self.capacity = max(capacity, 1)
        self.width = max(width, 1)
        hashes = .allocate(capacity: self.capacity)
        bornMs = .allocate(capacity: self.capacity)
        routes = .allocate(capacity: self.capacity)
        routes.initialize(repeating: Self.empty, count: self.capacity)
        epochs = .allocate(capacity: self.capacity)
        answers = .allocate(capacity: self.capacity * self.width)
        shadowAnswers = .allocate(capacity: self.capacity * self.width)
        var size = 16
        while size < self.capacity * 2 { size <<= 1 }
        mask = size - 1
        index = .allocate(capacity: size)
        index.initialize(repeating: -1, count: size)
    }

    deinit {
        hashes.deallocate()
        bornMs.deallocate()
        routes.deallocate()
        epochs.deallocate()
        answers.deallocate()
        shadowAnswers.deallocate()
        index.deallocate()
    }

    /// Bytes held per slot: what one pending prediction costs.
    public var bytesPerPrediction: Int {
        MemoryLayout<UInt64>.size + MemoryLayout<Int64>.size + 1 + MemoryLayout<UInt32>.size + 2 * width * MemoryLayout<Float>.size
            + (mask + 1) * MemoryLayout<Int32>.size / capacity
    }

    @inline(__always)
    private func home(_ hash: UInt64) -> Int { Int(truncatingIfNeeded: ((hash ^ (hash >> 31)) &* 0x9E37_79B9_7F4A_7C15) >> 17) & mask }

    /// The index position holding `hash`'s slot, if any.
    @inline(__always)
    private func position(of hash: UInt64) -> Int? {
        var position = home(hash)
        while true {
            let slot = index[position]
            if slot < 0 { return nil }
            if hashes[Int(slot)] == hash { return position }
            position = (position + 1) & mask
        }
    }

    /// Frees an index position, moving later entries of the probe run back (no tombstones).
    private func clear(position start: Int) {
        var hole = start
        index[hole] = -1
        var probe = hole
        while true {
            probe = (probe + 1) & mask
            let slot = index[probe]
            if slot < 0 { return }
            let wanted = home(hashes[Int(slot)])
            // Moves back when its home is not in (hole, probe], cyclically.
            let between = hole <= probe ? (wanted > hole && wanted <= probe) : (wanted > hole || wanted <= probe)
            if !between {
                index[hole] = slot
                index[probe] = -1
                hole = probe
            }
        }
    }

    private func leave(slot: Int) {
        if let position = position(of: hashes[slot]), Int(index[position]) == slot { clear(position: position) }
        routes[slot] = Self.empty
        count -= 1
    }

    /// Remembers an answer (`width` floats) under `hash`; returns its slot (for a shadow's answer).
    /// The same hash again replaces the older entry: the newest prediction is the one answered.
    @discardableResult
    public func remember(hash: UInt64, route: UInt8, epoch: UInt32, answer: UnsafePointer<Float>, nowMs: Int64) -> Int {
        if span == capacity {
            if routes[tail] != Self.empty { leave(slot: tail) }
            tail = (tail + 1) % capacity
            span -= 1
        }
        if let existing = position(of: hash) {
            let slot = Int(index[existing])
            clear(position: existing)
            routes[slot] = Self.empty
            count -= 1
        }
        let slot = (tail + span) % capacity
        span += 1
        hashes[slot] = hash
        bornMs[slot] = nowMs
        routes[slot] = route
        epochs[slot] = epoch
        (answers + slot * width).update(from: answer, count: width)
        shadowAnswers[slot * width] = .nan
        var probe = home(hash)
        while index[probe] >= 0 { probe = (probe + 1) & mask }
        index[probe] = Int32(slot)
        count += 1
        return slot
    }

    /// Adds the shadow candidate's answer to the same event's entry.
    func rememberShadow(slot: Int, answer: UnsafePointer<Float>) {
        (shadowAnswers + slot * width).update(from: answer, count: width)
    }

    /// The entry of `hash`, taken out (its answers stay readable until the next `remember`).
    public func take(hash: UInt64) -> (slot: Int, route: UInt8, epoch: UInt32)? {
        guard let position = position(of: hash) else { return nil }
        let slot = Int(index[position])
        let found = (slot, routes[slot], epochs[slot])
        clear(position: position)
        routes[slot] = Self.empty
        count -= 1
        return found
    }

    /// Forgets entries older than `cutoffMs`.
    public func expire(olderThan cutoffMs: Int64) {
        while span > 0 && (routes[tail] == Self.empty || bornMs[tail] < cutoffMs) {
            if routes[tail] != Self.empty { leave(slot: tail) }
            tail = (tail + 1) % capacity
            span -= 1
        }
    }
}
