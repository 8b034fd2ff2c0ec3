import WeirControl

private let key = Array("fuzzing key".utf8)
private let base = BundleRef(version: "1.0.0", location: "/models/fraud", sha256: String(repeating: "a", count: 64))
nonisolated(unsafe) private var state = RolloutState(active: base)
nonisolated(unsafe) private var inputs = 0

/// One input: byte 0 splits off a signature header of up to 255 bytes, the rest is a control
/// message value. Checks: parsing never crashes; a parsed message re-encodes to one that parses
/// to the same message; a signature over the value verifies and the fuzzed header never verifies
/// unless it is that signature; the rollout state machine keeps its invariants for whatever applies.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzControl(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let headerLength = min(Int(data[0]), size - 1)
    let header = Array(UnsafeBufferPointer(start: data + 1, count: headerLength))
    let value = Array(UnsafeBufferPointer(start: data + 1 + headerLength, count: size - 1 - headerLength))

    let signature = ControlSignature.sign(value: value, key: key)
    guard ControlSignature.verify(value: value, header: Array(signature.utf8), key: key) == .valid else {
        fatalError("a fresh signature does not verify")
    }
    // Hex digits may come in either case; anything else that verifies would be a forgery.
    if ControlSignature.verify(value: value, header: header, key: key) == .valid
        && String(decoding: header, as: UTF8.self).lowercased() != signature {
        fatalError("a header other than the signature verified: \(header)")
    }

    guard let message = try? ControlMessage.parse(value) else { return 0 }
    let again: ControlMessage
    do { again = try ControlMessage.parse(message.encoded()) } catch {
        fatalError("re-encoded message does not parse (\(error)): \(message)")
    }
    if again != message { fatalError("round trip changed the message: \(message) -> \(again)") }

    inputs += 1
    if inputs % 64 == 0 { state = RolloutState(active: base) }
    switch state.applying(message) {
    case .failure:
        break
    case .success(let next):
        if next.lastSequence != message.sequence { fatalError("sequence not recorded: \(message)") }
        if let candidate = next.candidate, candidate.bundle.sha256 == next.active.sha256 {
            fatalError("the candidate is the active bundle after \(message)")
        }
        if case .success = next.applying(message) { fatalError("the same sequence applied twice: \(message)") }
        state = next
    }
    return 0
}
