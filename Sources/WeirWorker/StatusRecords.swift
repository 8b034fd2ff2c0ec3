import Foundation
import WeirCodec
import WeirControl

/// A status record to publish (docs/contracts.md): the state word, why, and the message it answers.
struct StatusNote {
    /// `serving`, `loading`, `rejected` or `paused` (`serving`/`paused` follow the rollout state).
    var state: String?
    var reason: String
    var message: ControlMessage?
}

/// Writes a status record (docs/contracts.md) for `state` into `writer`: the worker, the model,
/// the active bundle, the candidate, the state word and `note`'s reason and message.
func encodeStatusRecord(_ note: StatusNote, state: RolloutState, worker: String, model: String, into writer: JSONWriter) -> [UInt8] {
    writer.reset()
    writer.raw("{\"worker\":")
    writer.string(worker)
    writer.raw(",\"model\":")
    writer.string(model)
    writer.raw(",\"active\":{\"version\":")
    writer.string(state.active.version)
    writer.raw(",\"sha256\":")
    writer.string(state.active.sha256)
    writer.raw("},\"candidate\":")
    if let candidate = state.candidate {
        writer.raw("{\"version\":")
        writer.string(candidate.bundle.version)
        writer.raw(",\"sha256\":")
        writer.string(candidate.bundle.sha256)
        writer.raw(",\"mode\":")
        writer.string(candidate.mode.rawValue)
        writer.raw(",\"percent\":")
        if let percent = candidate.percent { writer.double(percent) } else { writer.raw("null") }
        writer.raw(UInt8(ascii: "}"))
    } else {
        writer.raw("null")
    }
    writer.raw(",\"previous\":")
    if let previous = state.previous { writer.string(previous.version) } else { writer.raw("null") }
    writer.raw(",\"last_sequence\":")
    writer.integer(state.lastSequence)
    writer.raw(",\"state\":")
    writer.string(note.state ?? (state.paused ? "paused" : "serving"))
    writer.raw(",\"reason\":")
    writer.string(note.reason)
    writer.raw(",\"message\":")
    if let message = note.message {
        writer.raw("{\"action\":")
        writer.string(message.action.rawValue)
        writer.raw(",\"sequence\":")
        writer.integer(message.sequence)
        writer.raw(UInt8(ascii: "}"))
    } else {
        writer.raw("null")
    }
    writer.raw(",\"ts\":")
    writer.string(rfc3339Now())
    writer.raw(UInt8(ascii: "}"))
    return writer.array
}

/// The current UTC time as RFC 3339 with milliseconds.
func rfc3339Now() -> String {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    var parts = tm()
    var seconds = now.tv_sec
    gmtime_r(&seconds, &parts)
    func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
    let millis = Int(now.tv_nsec) / 1_000_000
    let fraction = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
    return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(fraction)Z"
}
