import WeirControl

/// The control-message properties, shared by the libFuzzer target (`make fuzz`) and the corpus
/// replay in `make test`. One input: byte 0 splits off a signature header of up to 255 bytes, the
/// rest is a control message value. Checks: parsing never crashes; a parsed message re-encodes to
/// one that parses to the same message; an HMAC and an Ed25519 signature over the value verify,
/// and the fuzzed header never verifies (under either) unless it is that signature; the rollout state machine keeps its invariants for
/// whatever applies (the state carries over between inputs, reset every 64).
public final class ControlProperties {
    private let key = Array("fuzzing key".utf8)
    private let signer = ControlSigner.ed25519(try! ControlPrivateKey.inMemory())
    private lazy var verifier = ControlVerifier(hmacKey: key, publicKeys: signer.verifier.publicKeys)
    private let base = BundleRef(version: "1.0.0", location: "/models/fraud", sha256: String(repeating: "a", count: 64))
    private var state: RolloutState
    private var inputs = 0

    public init() { state = RolloutState(active: base) }

    /// The property an input breaks, described; nil when it keeps them all.
    public func check(_ input: UnsafeRawBufferPointer) -> String? {
        guard let first = input.first else { return nil }
        let headerLength = min(Int(first), input.count - 1)
        let header = Array(input[1..<(1 + headerLength)])
        let value = Array(input[(1 + headerLength)...])

        let signature = ControlSignature.sign(value: value, key: key)
        guard ControlSignature.verify(value: value, header: Array(signature.utf8), key: key) == .valid else {
            return "a fresh signature does not verify"
        }
        let ed25519 = signer.header(for: value)
        guard verifier.check(value: value, header: Array(ed25519.utf8)) == .valid else {
            return "a fresh Ed25519 signature does not verify"
        }
        // Hex digits may come in either case; anything else that verifies would be a forgery.
        if verifier.check(value: value, header: header) == .valid
            && ![signature, ed25519].contains(String(decoding: header, as: UTF8.self).lowercased()) {
            return "a header other than the signature verified: \(header)"
        }

        guard let message = try? ControlMessage.parse(value) else { return nil }
        let again: ControlMessage
        do { again = try ControlMessage.parse(message.encoded()) } catch {
            return "re-encoded message does not parse (\(error)): \(message)"
        }
        if again != message { return "round trip changed the message: \(message) -> \(again)" }

        inputs += 1
        if inputs % 64 == 0 { state = RolloutState(active: base) }
        switch state.applying(message) {
        case .failure:
            return nil
        case .success(let next):
            if next.lastSequence != message.sequence { return "sequence not recorded: \(message)" }
            if let candidate = next.candidate, candidate.bundle.sha256 == next.active.sha256 {
                return "the candidate is the active bundle after \(message)"
            }
            if case .success = next.applying(message) { return "the same sequence applied twice: \(message)" }
            state = next
            return nil
        }
    }
}
