import Foundation
import Testing
import WeirControl

/// The rollout state machine, table-driven: every action in every state, with the state it leads to
/// or the code it is refused with. Pure: no bundles are loaded.
@Suite(.timeLimit(.minutes(1))) struct RolloutTableTests {
    static func ref(_ name: String) -> BundleRef {
        BundleRef(version: "1.0.\(name.unicodeScalars.first!.value)", location: "/models/\(name)",
                  sha256: String(repeating: name.lowercased(), count: 64))
    }

    static let a = ref("A"), b = ref("B"), c = ref("C"), n = ref("N"), x = ref("X")

    /// A state, written compactly: active, previous, candidate (mode and percent), paused.
    struct Shape: Equatable, CustomStringConvertible {
        var active: BundleRef
        var previous: BundleRef?
        var candidate: RolloutCandidate?
        var paused = false

        init(_ active: BundleRef, previous: BundleRef? = nil, candidate: RolloutCandidate? = nil, paused: Bool = false) {
            self.active = active
            self.previous = previous
            self.candidate = candidate
            self.paused = paused
        }

        init(_ state: RolloutState) {
            self.init(state.active, previous: state.previous, candidate: state.candidate, paused: state.paused)
        }

        var description: String {
            "active \(active.version), previous \(previous?.version ?? "-"), candidate \(candidate.map { "\($0.bundle.version) \($0.mode.rawValue) \($0.percent.map { "\($0)" } ?? "")" } ?? "-")\(paused ? ", paused" : "")"
        }

        /// The state machine value for this shape, at `sequence`.
        func state(sequence: Int64 = 10) -> RolloutState {
            var state = RolloutState(active: active)
            state.previous = previous
            state.candidate = candidate
            state.paused = paused
            state.lastSequence = sequence
            return state
        }
    }

    static let steady = Shape(a)
    static let replaced = Shape(b, previous: a)
    static let canary = Shape(a, candidate: RolloutCandidate(bundle: c, mode: .canary, percent: 10))
    static let shadow = Shape(a, candidate: RolloutCandidate(bundle: c, mode: .shadow, percent: nil))
    static let paused = Shape(a, paused: true)
    static let states: [(String, Shape)] = [("steady", steady), ("replaced", replaced), ("canary", canary), ("shadow", shadow), ("paused", paused)]

    /// The actions: a message at sequence 11 (above every state's 10).
    static func deploy(_ bundle: BundleRef, _ kind: RolloutMode, percent: Double? = nil) -> ControlMessage {
        ControlMessage(action: .deploy, model: "m", version: bundle.version, bundle: bundle.location, sha256: bundle.sha256,
                       strategy: RolloutStrategy(kind: kind, percent: percent), sequence: 11)
    }

    static func act(_ action: ControlAction, naming bundle: BundleRef? = nil) -> ControlMessage {
        ControlMessage(action: action, model: "m", version: bundle?.version, bundle: bundle?.location, sha256: bundle?.sha256, sequence: 11)
    }

    static let actions: [(String, @Sendable (Shape) -> ControlMessage)] = [
        ("replace with a new bundle", { _ in deploy(n, .replace) }),
        ("replace with the active bundle", { deploy($0.active, .replace) }),
        ("canary of a new bundle", { _ in deploy(n, .canary, percent: 12.5) }),
        ("canary of the active bundle", { deploy($0.active, .canary, percent: 50) }),
        ("shadow of a new bundle", { _ in deploy(n, .shadow) }),
        ("promote", { _ in act(.promote) }),
        ("promote naming the candidate", { _ in act(.promote, naming: c) }),
        ("promote naming another bundle", { _ in act(.promote, naming: x) }),
        ("rollback", { _ in act(.rollback) }),
        ("rollback naming a bundle", { _ in act(.rollback, naming: x) }),
        ("pause", { _ in act(.pause) }),
        ("resume", { _ in act(.resume) }),
    ]

    /// What each action does in each state: the next shape, or the rejection code.
    enum Outcome: Equatable { case next(Shape), refused(ControlRejection.Code) }

    static func expected(_ state: String, _ action: String) -> Outcome {
        let canaryN = RolloutCandidate(bundle: n, mode: .canary, percent: 12.5)
        let shadowN = RolloutCandidate(bundle: n, mode: .shadow, percent: nil)
        switch (state, action) {
        // A replace makes the named bundle active; the old one stays for rollback (unless it is the same).
        case ("steady", "replace with a new bundle"): return .next(Shape(n, previous: a))
        case ("replaced", "replace with a new bundle"): return .next(Shape(n, previous: b))
        case ("canary", "replace with a new bundle"), ("shadow", "replace with a new bundle"): return .next(Shape(n, previous: a))
        case ("paused", "replace with a new bundle"): return .next(Shape(n, previous: a, paused: true))
        case ("steady", "replace with the active bundle"): return .next(steady)
        case ("replaced", "replace with the active bundle"): return .next(replaced)
        case ("canary", "replace with the active bundle"), ("shadow", "replace with the active bundle"): return .next(steady)
        case ("paused", "replace with the active bundle"): return .next(paused)
        // A canary or shadow puts a new candidate on trial, replacing any other.
        case ("replaced", "canary of a new bundle"): return .next(Shape(b, previous: a, candidate: canaryN))
        case ("paused", "canary of a new bundle"): return .next(Shape(a, candidate: canaryN, paused: true))
        case (_, "canary of a new bundle"): return .next(Shape(a, candidate: canaryN))
        case (_, "canary of the active bundle"): return .refused(.invalidTransition)
        case ("replaced", "shadow of a new bundle"): return .next(Shape(b, previous: a, candidate: shadowN))
        case ("paused", "shadow of a new bundle"): return .next(Shape(a, candidate: shadowN, paused: true))
        case (_, "shadow of a new bundle"): return .next(Shape(a, candidate: shadowN))
        // Promote ends a trial: the candidate becomes active, or a replace's old version is dropped.
        case ("steady", "promote"), ("paused", "promote"): return .refused(.invalidTransition)
        case ("replaced", "promote"): return .next(Shape(b))
        case ("canary", "promote"), ("shadow", "promote"): return .next(Shape(c))
        case ("paused", "promote naming the candidate"): return .next(Shape(c, paused: true))
        case (_, "promote naming the candidate"): return .next(Shape(c))
        case ("canary", "promote naming another bundle"), ("shadow", "promote naming another bundle"): return .refused(.invalidTransition)
        case ("paused", "promote naming another bundle"): return .next(Shape(x, paused: true))
        case (_, "promote naming another bundle"): return .next(Shape(x))
        // Rollback ends a trial the other way; with nothing on trial it serves the bundle it names.
        case ("steady", "rollback"), ("paused", "rollback"): return .refused(.invalidTransition)
        case ("replaced", "rollback"), ("replaced", "rollback naming a bundle"): return .next(Shape(a))
        case ("canary", "rollback"), ("shadow", "rollback"), ("canary", "rollback naming a bundle"), ("shadow", "rollback naming a bundle"):
            return .next(steady)
        case ("steady", "rollback naming a bundle"): return .next(Shape(x))
        case ("paused", "rollback naming a bundle"): return .next(Shape(x, paused: true))
        case ("replaced", "pause"): return .next(Shape(b, previous: a, paused: true))
        case ("canary", "pause"): return .next(Shape(a, candidate: canary.candidate, paused: true))
        case ("shadow", "pause"): return .next(Shape(a, candidate: shadow.candidate, paused: true))
        case (_, "pause"): return .next(paused)
        case ("paused", "resume"): return .next(steady)
        case (let name, "resume"): return .next(states.first { $0.0 == name }!.1)
        default: fatalError("no expectation for \(action) in \(state)")
        }
    }

    @Test func everyActionInEveryState() {
        for (stateName, shape) in Self.states {
            for (actionName, makeMessage) in Self.actions {
                let message = makeMessage(shape)
                let outcome: Outcome
                switch shape.state().applying(message) {
                case .success(let next):
                    #expect(next.lastSequence == 11, "\(actionName) in \(stateName) records its sequence")
                    outcome = .next(Shape(next))
                case .failure(let rejection):
                    outcome = .refused(rejection.code)
                }
                #expect(outcome == Self.expected(stateName, actionName), "\(actionName) in \(stateName)")
                // The same message again is stale, whatever it did.
                if case .success(let next) = shape.state().applying(message), case .failure(let again) = next.applying(message) {
                    #expect(again.code == .staleSequence)
                } else if case .success = shape.state().applying(message) {
                    Issue.record("\(actionName) in \(stateName) applied twice")
                }
            }
        }
    }

    @Test func aStaleSequenceIsRefusedInEveryState() {
        for (stateName, shape) in Self.states {
            for sequence: Int64 in [10, 3, 0, -1] {
                let message = ControlMessage(action: .pause, model: "m", sequence: sequence)
                guard case .failure(let rejection) = shape.state(sequence: 10).applying(message) else {
                    Issue.record("sequence \(sequence) applied in \(stateName) after 10")
                    continue
                }
                #expect(rejection.code == .staleSequence)
            }
        }
    }

    @Test func automaticRollbackTakesTheTrialBundleOut() {
        #expect(RolloutTableTests.steady.state().rolledBackAutomatically() == nil, "nothing on trial")
        #expect(RolloutTableTests.paused.state().rolledBackAutomatically() == nil)
        #expect(RolloutTableTests.replaced.state().rolledBackAutomatically().map(Shape.init) == Shape(Self.a))
        #expect(RolloutTableTests.canary.state().rolledBackAutomatically().map(Shape.init) == RolloutTableTests.steady)
        #expect(RolloutTableTests.shadow.state().rolledBackAutomatically().map(Shape.init) == RolloutTableTests.steady)
        #expect(RolloutTableTests.replaced.state().trial == Self.b)
        #expect(RolloutTableTests.canary.state().trial == Self.c)
        #expect(RolloutTableTests.steady.state().trial == nil)
    }

    /// A canary's share: none at 0, every key at 100, and fractional shares in hundredths of a
    /// percent (the bucket is 0..<10,000), the same on every worker.
    @Test func canaryShares() {
        let keys = (0..<20_000).map { Array("key-\($0)".utf8) }
        func share(_ percent: Double) -> Int {
            keys.filter { key in key.withUnsafeBytes { CanaryRouting.isCanary($0, percent: percent) } }.count
        }
        #expect(share(0) == 0)
        #expect(share(100) == keys.count)
        let eighth = share(12.5)
        #expect(abs(Double(eighth) / Double(keys.count) - 0.125) < 0.01, "12.5% took \(eighth) of \(keys.count)")
        #expect(share(0.01) <= share(12.5) && share(12.5) <= share(12.51), "shares nest: a key in a smaller canary is in every larger one")
        for key in keys.prefix(500) {
            key.withUnsafeBytes { bytes in
                #expect(CanaryRouting.isCanary(bytes, percent: 12.5) == (CanaryRouting.bucket(bytes) < 1250))
            }
        }
        for (percent, accepted) in [(0.0, false), (0.001, true), (100.0, true), (100.5, false), (-5.0, false)] {
            let value = Array(#"{"action":"deploy","model":"m","version":"1.0.1","bundle":"/b","sha256":"\#(String(repeating: "b", count: 64))","strategy":{"kind":"canary","percent":\#(percent)},"sequence":1}"#.utf8)
            let parsed = (try? ControlMessage.parse(value)) != nil
            #expect(parsed == accepted, "canary percent \(percent)")
        }
    }
}
